"""What each emergency level allows (contracts/levels.py), on both sides of each rule: which resting
orders a kill cancels, the gate state it sets, and when orch hft's answer counts as the kill taken."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise

import pytest

from orch.contracts.levels import EmergencyLevel, RestingOrders, TradingState
from orch.contracts.trading import LevelSettlement, Order, Position, Side, TradingStatus

NOW = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)
LONG_3 = {"ETH/USD": 3.0}


def order(name: str, side: Side, quantity: float, symbol: str = "ETH/USD", **fields: object) -> Order:
    return Order(client_order_id=name, symbol=symbol, side=side, quantity=quantity, created_at=NOW, **fields)


# Long 3 ETH/USD, nothing else held.
RESTING = [
    order("opens", Side.BUY, 0.01, symbol="BTC/USD"),
    order("grows", Side.BUY, 0.5),
    order("to-flat", Side.SELL, 3),  # shrinks to exactly zero: the last quantity that reduces
    order("past-flat", Side.SELL, 3.5),  # one step beyond: opens a short
    order("reduce-only", Side.SELL, 5, reduce_only=True),
    order("partly-filled", Side.SELL, 4, filled_quantity=1),  # 3 remaining: to flat
]


def names(orders: list[Order]) -> list[str]:
    return [o.client_order_id for o in orders]


@pytest.mark.parametrize(
    ("level", "cancelled"),
    [
        (EmergencyLevel.NONE, []),
        (EmergencyLevel.PAUSE_ENTRIES, ["opens", "grows", "past-flat"]),
        (EmergencyLevel.REDUCE_ONLY, ["opens", "grows", "past-flat"]),
        (EmergencyLevel.HALT, names(RESTING)),
        (EmergencyLevel.FLATTEN, names(RESTING)),
    ],
)
def test_each_level_forbids_its_resting_orders(level: EmergencyLevel, cancelled: list[str]) -> None:
    assert names(level.forbidden_orders(RESTING, LONG_3)) == cancelled


def test_a_short_position_mirrors_a_long_one() -> None:
    short = {"ETH/USD": -3.0}
    orders = [
        order("buy-to-flat", Side.BUY, 3),
        order("buy-past", Side.BUY, 3.01),
        order("sell", Side.SELL, 1),
    ]
    assert names(EmergencyLevel.REDUCE_ONLY.forbidden_orders(orders, short)) == ["buy-past", "sell"]


@pytest.mark.parametrize(
    ("level", "state", "allows_entries", "cancels", "flattens"),
    [
        (EmergencyLevel.NONE, TradingState.ACTIVE, True, RestingOrders.NONE, False),
        (EmergencyLevel.PAUSE_ENTRIES, TradingState.ACTIVE, False, RestingOrders.OPENING, False),
        (EmergencyLevel.REDUCE_ONLY, TradingState.REDUCING, False, RestingOrders.OPENING, False),
        (EmergencyLevel.HALT, TradingState.HALTED, False, RestingOrders.ALL, False),
        (EmergencyLevel.FLATTEN, TradingState.REDUCING, False, RestingOrders.ALL, True),
    ],
)
def test_the_rules_of_each_level(
    level: EmergencyLevel, state: TradingState, allows_entries: bool, cancels: RestingOrders, flattens: bool
) -> None:
    rules = level.rules
    assert (rules.gate_state, rules.allows_entries, rules.cancels, rules.flattens) == (
        state,
        allows_entries,
        cancels,
        flattens,
    )
    assert rules.settled_state is (TradingState.HALTED if flattens else state)


def test_levels_and_states_are_ordered_as_declared() -> None:
    levels = list(EmergencyLevel)
    for milder, stricter in pairwise(levels):
        assert stricter.stricter_than(milder) and not milder.stricter_than(stricter)
        assert stricter.at_least(milder) and not milder.at_least(stricter)
    assert EmergencyLevel.HALT.at_least(EmergencyLevel.HALT) and not EmergencyLevel.HALT.stricter_than(
        EmergencyLevel.HALT
    )
    assert EmergencyLevel.strictest([EmergencyLevel.HALT, EmergencyLevel.REDUCE_ONLY]) is EmergencyLevel.HALT
    assert EmergencyLevel.strictest([]) is EmergencyLevel.NONE
    assert TradingState.HALTED.stricter_than(TradingState.REDUCING)
    assert TradingState.REDUCING.stricter_than(TradingState.ACTIVE)


def status(state: TradingState, level: EmergencyLevel, entries_paused: bool = True) -> TradingStatus:
    return TradingStatus(state=state, emergency_level=level, entries_paused=entries_paused, changed_at=NOW)


def test_a_kill_counts_as_taken_at_its_level_or_a_stricter_one_in_its_state_or_stricter() -> None:
    halt = EmergencyLevel.HALT
    assert status(TradingState.HALTED, halt).took_kill(halt)
    assert not status(TradingState.REDUCING, halt).took_kill(halt)  # the state one step short
    assert not status(TradingState.HALTED, EmergencyLevel.REDUCE_ONLY).took_kill(halt)  # the level short
    reduce_only = EmergencyLevel.REDUCE_ONLY
    assert status(TradingState.REDUCING, reduce_only).took_kill(reduce_only)
    assert status(TradingState.HALTED, halt).took_kill(reduce_only)  # a stricter halt already in force
    assert not status(TradingState.ACTIVE, reduce_only).took_kill(reduce_only)
    pause = EmergencyLevel.PAUSE_ENTRIES
    assert status(TradingState.ACTIVE, pause).took_kill(pause)
    assert not status(TradingState.ACTIVE, pause, entries_paused=False).took_kill(pause)
    assert status(TradingState.REDUCING, EmergencyLevel.FLATTEN).took_kill(EmergencyLevel.FLATTEN)


def test_settlement_waits_for_the_forbidden_orders_and_at_flatten_for_flat_and_halted() -> None:
    held = [Position(symbol="ETH/USD", quantity=3.0), Position(symbol="BTC/USD", quantity=0.0)]
    allowed = [order("to-flat", Side.SELL, 3)]
    pause = EmergencyLevel.PAUSE_ENTRIES
    assert LevelSettlement.of(pause, TradingState.ACTIVE, allowed, held).done
    waiting = LevelSettlement.of(pause, TradingState.ACTIVE, [*allowed, order("grows", Side.BUY, 1)], held)
    assert waiting.orders == ["grows"] and not waiting.done
    halt = EmergencyLevel.HALT
    assert not LevelSettlement.of(halt, TradingState.HALTED, allowed, held).done
    assert not LevelSettlement.of(halt, TradingState.REDUCING, [], held).done
    assert LevelSettlement.of(halt, TradingState.HALTED, [], held).done  # halt keeps positions
    flatten = EmergencyLevel.FLATTEN
    closing = LevelSettlement.of(flatten, TradingState.REDUCING, [], held)
    assert closing.positions == {"ETH/USD": 3.0} and not closing.done
    assert not LevelSettlement.of(flatten, TradingState.REDUCING, [], []).done  # flat, not yet halted
    assert LevelSettlement.of(flatten, TradingState.HALTED, [], []).done
