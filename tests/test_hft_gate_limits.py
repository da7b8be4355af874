"""The risk gate on its own: every denial reason, each limit exactly at it and one step over, the
trading states, reducing against increasing orders, the throttle's window and the daily loss.

These tests are the ones a mutation run of `src/orch/hft/risk.py` is judged by (the README's Tests
section), so each asserts what an operator would see: the reason, the numbers in its sentence, the
state and the status the control API reports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

import orch.hft.risk as risk_module
from orch.contracts.instruments import InstrumentRules
from orch.contracts.system import EmergencyLevel
from orch.contracts.trading import (
    DenialReason,
    Order,
    OrderStatus,
    OrderType,
    RiskLimits,
    RiskUsage,
    Side,
    TradingState,
    TradingStatus,
)
from orch.hft.instruments import Instruments, builtin_rules
from orch.hft.portfolio import Portfolio
from orch.hft.risk import Denial, RiskGate

# NYSE sessions run 14:30-21:00 UTC in December; crypto trades around the clock.
SESSION_OPEN = datetime(2026, 12, 7, 14, 30, tzinfo=UTC).timestamp()  # a Monday
IN_SESSION = datetime(2026, 12, 7, 15, 0, tzinfo=UTC).timestamp()
SESSION_CLOSE = datetime(2026, 12, 7, 21, 0, tzinfo=UTC).timestamp()
SATURDAY = datetime(2026, 12, 12, 15, 0, tzinfo=UTC).timestamp()
SYMBOLS = ["AAPL", "MSFT", "BTC/USD"]  # MSFT is known but never priced
EQUITY_STEP = 1e-6  # the smallest AAPL quantity step in the built-in rules: "one unit over"

LIMITS = {
    "max_order_notional": 10_000.0,
    "max_position_quantity": 50.0,
    "max_position_notional": 20_000.0,
    "max_gross_exposure": 30_000.0,
    "max_orders_per_interval": 1_000,
    "throttle_interval_seconds": 1.0,
    "max_daily_loss": 1_000.0,
}


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class TradingDesk:
    gate: RiskGate
    portfolio: Portfolio
    throttle_clock: FakeClock  # the gate's monotonic clock
    wall_clock: FakeClock  # market hours, the trading day, status times

    def check(
        self, symbol: str, side: Side, quantity: float, price: float | None = None, reduce_only: bool = False
    ) -> Denial | None:
        return self.gate.check(symbol, side, quantity, price, reduce_only)

    def reason(self, symbol: str, side: Side, quantity: float, price: float | None = None) -> DenialReason:
        denial = self.check(symbol, side, quantity, price)
        assert denial is not None, f"{side.value} {quantity:g} {symbol} passed"
        return denial[0]

    def hold(self, symbol: str, quantity: float, average_price: float | None = None) -> None:
        price = self.portfolio.marks[symbol] if average_price is None else average_price
        self.portfolio.set_position(symbol, quantity, price, 0.0, None)

    def open_order(self, symbol: str, side: Side, quantity: float, limit_price: float | None) -> None:
        self.portfolio.track_order(
            Order(
                client_order_id=f"open-{len(self.portfolio.open_orders)}",
                symbol=symbol,
                side=side,
                quantity=quantity,
                order_type=OrderType.MARKET if limit_price is None else OrderType.LIMIT,
                limit_price=limit_price,
                status=OrderStatus.ACCEPTED,
                created_at=datetime.fromtimestamp(self.wall_clock(), UTC),
            )
        )


def trading_desk(
    *,
    wall: float = IN_SESSION,
    state: TradingState = TradingState.ACTIVE,
    rules: list[InstrumentRules] | None = None,
    with_instruments: bool = True,
    **limits: float,
) -> TradingDesk:
    """A reconciled gate (ACTIVE unless told) over an empty portfolio with AAPL at 100, BTC at 50,000."""
    throttle_clock, wall_clock = FakeClock(1_000.0), FakeClock(wall)
    portfolio = Portfolio(wall_clock)
    portfolio.marks.update({"AAPL": 100.0, "BTC/USD": 50_000.0})
    published = {rule.symbol: rule for rule in rules or []}
    gate = RiskGate(
        RiskLimits(**{**LIMITS, **limits}),
        portfolio,
        clock=throttle_clock,
        wall_clock=wall_clock,
        instruments=Instruments(SYMBOLS, published) if with_instruments else None,
    )
    gate.reconciled = True
    gate.set_state(state, "test")
    return TradingDesk(gate, portfolio, throttle_clock, wall_clock)


# ---- Every denial reason has a case that expects it ----------------------------------------------


def _halted() -> Denial | None:
    desk = trading_desk(state=TradingState.HALTED)
    return desk.check("AAPL", Side.BUY, 1)


def _reducing_would_increase() -> Denial | None:
    return trading_desk(state=TradingState.REDUCING).check("AAPL", Side.BUY, 1)


def _entries_paused() -> Denial | None:
    desk = trading_desk()
    desk.gate.apply_kill(EmergencyLevel.PAUSE_ENTRIES, "test")
    return desk.check("AAPL", Side.BUY, 1)


def _position_quantity() -> Denial | None:
    return trading_desk(max_position_quantity=5).check("AAPL", Side.BUY, 6)


def _position_notional() -> Denial | None:
    return trading_desk(max_position_notional=500).check("AAPL", Side.BUY, 6)


def _gross_exposure() -> Denial | None:
    return trading_desk(max_gross_exposure=500).check("AAPL", Side.BUY, 6)


def _rate_throttle() -> Denial | None:
    desk = trading_desk(max_orders_per_interval=1)
    desk.gate.record_sent()
    return desk.check("AAPL", Side.BUY, 1)


def _daily_loss() -> Denial | None:
    desk = trading_desk()
    desk.hold("AAPL", 10, average_price=200.0)  # marked at 100: 1,000 lost today
    return desk.check("BTC/USD", Side.BUY, 0.01)


def _not_shortable() -> Denial | None:
    desk = trading_desk(rules=[builtin_rules("BTC/USD").model_copy(update={"shortable": False})])
    return desk.check("BTC/USD", Side.SELL, 0.01)


def _self_cross() -> Denial | None:
    desk = trading_desk()
    desk.open_order("AAPL", Side.SELL, 1, 101.0)
    return desk.check("AAPL", Side.BUY, 1, 101.0)


DENIAL_CASES: dict[DenialReason, Callable[[], Denial | None]] = {
    DenialReason.HALTED: _halted,
    DenialReason.REDUCING_WOULD_INCREASE: _reducing_would_increase,
    DenialReason.ENTRIES_PAUSED: _entries_paused,
    DenialReason.ORDER_NOTIONAL: lambda: trading_desk().check("AAPL", Side.BUY, 101),
    DenialReason.POSITION_QUANTITY: _position_quantity,
    DenialReason.POSITION_NOTIONAL: _position_notional,
    DenialReason.GROSS_EXPOSURE: _gross_exposure,
    DenialReason.RATE_THROTTLE: _rate_throttle,
    DenialReason.DAILY_LOSS: _daily_loss,
    DenialReason.NO_PRICE: lambda: trading_desk().check("MSFT", Side.BUY, 1),
    DenialReason.INVALID: lambda: trading_desk().check("AAPL", Side.BUY, -1),
    DenialReason.REDUCE_ONLY_WOULD_INCREASE: lambda: trading_desk().check(
        "AAPL", Side.BUY, 1, reduce_only=True
    ),
    DenialReason.INVALID_INCREMENT: lambda: trading_desk().check("AAPL", Side.BUY, 1, 100.005),
    DenialReason.BELOW_MINIMUM: lambda: trading_desk().check("AAPL", Side.BUY, EQUITY_STEP / 2),
    DenialReason.NOT_FRACTIONABLE: lambda: trading_desk(
        rules=[builtin_rules("AAPL").model_copy(update={"fractionable": False})]
    ).check("AAPL", Side.BUY, 1.5),
    DenialReason.ORDER_TYPE_NOT_ALLOWED: lambda: trading_desk(
        rules=[builtin_rules("AAPL").model_copy(update={"order_types": frozenset({OrderType.LIMIT})})]
    ).check("AAPL", Side.BUY, 1),
    DenialReason.MARKET_CLOSED: lambda: trading_desk(wall=SATURDAY).check("AAPL", Side.BUY, 1),
    DenialReason.SELF_CROSS: _self_cross,
    DenialReason.NOT_SHORTABLE: _not_shortable,
}


@pytest.mark.parametrize("reason", list(DenialReason), ids=str)
def test_every_denial_reason_has_a_case_that_gets_it(reason: DenialReason) -> None:
    assert reason in DENIAL_CASES, f"no test expects {reason.value}: add a case to DENIAL_CASES"
    denial = DENIAL_CASES[reason]()
    assert denial is not None and denial[0] is reason, denial
    assert denial[1], "every denial says why in a sentence"


# ---- Limits: exactly at the limit passes, one step over is denied ---------------------------------


def test_order_notional_at_the_limit_passes_and_one_step_over_is_denied() -> None:
    desk = trading_desk(max_position_quantity=1_000)  # AAPL marked at 100, max_order_notional 10,000
    assert desk.check("AAPL", Side.BUY, 100) is None
    reason, detail = desk.check("AAPL", Side.BUY, 100 + EQUITY_STEP)
    assert reason is DenialReason.ORDER_NOTIONAL
    assert detail == "order notional 10,000.00 exceeds max_order_notional 10,000.00"
    # A limit order is valued at its limit, not at the mark.
    assert desk.check("AAPL", Side.BUY, 1, 10_000.00) is None
    assert desk.reason("AAPL", Side.BUY, 1, 10_000.01) is DenialReason.ORDER_NOTIONAL


def test_order_notional_applies_to_reductions_too() -> None:
    desk = trading_desk(max_position_quantity=500, max_position_notional=50_000, max_gross_exposure=50_000)
    desk.hold("AAPL", 200)
    assert desk.check("AAPL", Side.SELL, 100) is None
    assert desk.reason("AAPL", Side.SELL, 100 + EQUITY_STEP) is DenialReason.ORDER_NOTIONAL


@pytest.mark.parametrize("side", list(Side))
def test_position_quantity_at_the_limit_passes_and_one_step_over_is_denied(side: Side) -> None:
    desk = trading_desk()  # max_position_quantity 50
    desk.hold("AAPL", 40 if side is Side.BUY else -40)
    assert desk.check("AAPL", side, 10) is None
    reason, detail = desk.check("AAPL", side, 10 + EQUITY_STEP)
    assert reason is DenialReason.POSITION_QUANTITY
    sign = "" if side is Side.BUY else "-"
    assert detail == f"AAPL position would reach {sign}50, max_position_quantity is 50"


def test_open_orders_on_the_same_side_count_toward_the_position() -> None:
    desk = trading_desk()
    desk.hold("AAPL", 30)
    desk.open_order("AAPL", Side.BUY, 15, 90.0)
    desk.open_order("AAPL", Side.SELL, 20, 120.0)  # might never fill: it does not make room
    assert desk.check("AAPL", Side.BUY, 5, 100.0) is None
    assert desk.reason("AAPL", Side.BUY, 5 + EQUITY_STEP, 100.0) is DenialReason.POSITION_QUANTITY


def test_position_notional_at_the_limit_passes_and_one_step_over_is_denied() -> None:
    desk = trading_desk(max_position_notional=4_000)
    desk.hold("AAPL", 30)
    assert desk.check("AAPL", Side.BUY, 10) is None
    reason, detail = desk.check("AAPL", Side.BUY, 10.01)
    assert reason is DenialReason.POSITION_NOTIONAL
    assert detail == "AAPL position would be worth 4,001.00, max_position_notional is 4,000.00"


def test_gross_exposure_counts_the_growth_of_a_held_position_once() -> None:
    desk = trading_desk(max_position_quantity=100)  # max_gross_exposure 30,000
    desk.hold("BTC/USD", 0.5)  # 25,000
    desk.hold("AAPL", 10)  # 1,000: buying 40 more makes 5,000, so 30,000 in all
    assert desk.check("AAPL", Side.BUY, 40) is None
    reason, detail = desk.check("AAPL", Side.BUY, 40.01)
    assert reason is DenialReason.GROSS_EXPOSURE
    assert detail == "gross exposure would reach 30,001.00, max_gross_exposure is 30,000.00"


def test_reductions_pass_even_where_the_position_is_over_every_limit() -> None:
    desk = trading_desk(
        max_order_notional=20_000,
        max_position_quantity=50,
        max_position_notional=5_000,
        max_gross_exposure=5_000,
    )
    desk.hold("AAPL", 80)  # over all three: the limits were lowered while it was held
    assert desk.check("AAPL", Side.SELL, 10) is None
    assert desk.check("AAPL", Side.SELL, 80) is None
    assert desk.reason("AAPL", Side.BUY, EQUITY_STEP) is DenialReason.POSITION_QUANTITY
    # Selling through zero opens a new position, so the limits apply again.
    assert desk.check("AAPL", Side.SELL, 80 + 50) is None
    assert desk.reason("AAPL", Side.SELL, 80 + 51) is DenialReason.POSITION_QUANTITY


# ---- Trading states -----------------------------------------------------------------------------


def test_halted_denies_reductions_too_and_says_why() -> None:
    desk = trading_desk()
    desk.hold("AAPL", 10)
    desk.gate.apply_kill(EmergencyLevel.HALT, "operator")
    assert desk.check("AAPL", Side.SELL, 10) == (
        DenialReason.HALTED,
        "trading is halted (halt: operator)",
    )


@pytest.mark.parametrize(
    ("held", "side", "quantity"),
    [
        (10, Side.SELL, 10),  # to flat
        (10, Side.SELL, 4),
        (2, Side.SELL, 1),  # down to 1
        (1, Side.SELL, 1),
        (1, Side.SELL, 0.5),
        (-10, Side.BUY, 10),
        (-10, Side.BUY, 3),
    ],
)
def test_reducing_lets_an_order_through_that_shrinks_the_position(
    held: float, side: Side, quantity: float
) -> None:
    desk = trading_desk(state=TradingState.REDUCING)
    desk.hold("AAPL", held)
    assert desk.check("AAPL", side, quantity) is None


@pytest.mark.parametrize(
    ("held", "side", "quantity", "after"),
    [
        (10, Side.BUY, EQUITY_STEP, "10"),
        (10, Side.SELL, 10 + EQUITY_STEP, "-1e-06"),  # through zero
        (-10, Side.BUY, 10 + EQUITY_STEP, "1e-06"),
        (0, Side.SELL, 1, "-1"),
    ],
)
def test_reducing_denies_an_order_that_grows_or_flips_the_position(
    held: float, side: Side, quantity: float, after: str
) -> None:
    desk = trading_desk(state=TradingState.REDUCING)
    desk.gate.reason = "dead man's switch"
    if held:
        desk.hold("AAPL", held)
    reason, detail = desk.check("AAPL", side, quantity)
    assert reason is DenialReason.REDUCING_WOULD_INCREASE
    assert detail == (
        f"reducing (dead man's switch): {side.value} {quantity:g} AAPL would take the position "
        f"from {held:g} to {after}"
    )


def test_reducing_counts_open_exits_so_they_cannot_add_up_to_a_flip() -> None:
    desk = trading_desk(state=TradingState.REDUCING)
    desk.hold("AAPL", 10)
    desk.open_order("AAPL", Side.SELL, 8, 120.0)
    assert desk.check("AAPL", Side.SELL, 2, 120.0) is None
    assert desk.reason("AAPL", Side.SELL, 2.01, 120.0) is DenialReason.REDUCING_WOULD_INCREASE


def test_paused_entries_deny_growth_and_pass_exits() -> None:
    desk = trading_desk()
    desk.hold("AAPL", 10)
    desk.gate.apply_kill(EmergencyLevel.PAUSE_ENTRIES, "news")
    assert desk.gate.state is TradingState.ACTIVE and desk.gate.entries_paused
    assert desk.check("BTC/USD", Side.BUY, 0.01) == (
        DenialReason.ENTRIES_PAUSED,
        "new entries are paused (pause_entries: news)",
    )
    assert desk.reason("AAPL", Side.BUY, 1) is DenialReason.ENTRIES_PAUSED
    assert desk.reason("AAPL", Side.SELL, 11) is DenialReason.ENTRIES_PAUSED
    assert desk.check("AAPL", Side.SELL, 10) is None


def test_a_reduce_only_order_may_shrink_but_never_grow_or_flip() -> None:
    desk = trading_desk()
    desk.hold("AAPL", 10)
    assert desk.check("AAPL", Side.SELL, 10, reduce_only=True) is None
    assert desk.check("AAPL", Side.SELL, 15, reduce_only=True) == (
        DenialReason.REDUCE_ONLY_WOULD_INCREASE,
        "reduce-only sell 15 AAPL would take the position from 10 to -5",
    )
    assert (
        desk.check("BTC/USD", Side.BUY, 0.01, reduce_only=True)[0] is DenialReason.REDUCE_ONLY_WOULD_INCREASE
    )


def test_a_new_gate_waits_for_reconciliation() -> None:
    wall = FakeClock(IN_SESSION)
    gate = RiskGate(RiskLimits(**LIMITS), Portfolio(wall), wall_clock=wall)
    assert gate.status() == TradingStatus(
        state=TradingState.REDUCING,
        entries_paused=False,
        emergency_level=EmergencyLevel.NONE,
        reason="starting: reconciliation pending",
        changed_at=datetime.fromtimestamp(IN_SESSION, UTC),
        reconciled=False,
    )
    assert gate.approvals == 0
    gate.resume("operator")  # not reconciled yet: only reductions
    assert gate.state is TradingState.REDUCING
    assert gate.check("AAPL", Side.BUY, 1, 100.0)[0] is DenialReason.REDUCING_WOULD_INCREASE
    gate.reconciled = True  # as the engine does after a clean reconciliation
    gate.set_state(TradingState.ACTIVE, "reconciliation clean")
    assert gate.check("AAPL", Side.BUY, 1, 100.0) is None  # nothing paused a new gate's entries


@pytest.mark.parametrize(
    ("level", "state"),
    [
        (EmergencyLevel.PAUSE_ENTRIES, TradingState.ACTIVE),
        (EmergencyLevel.REDUCE_ONLY, TradingState.REDUCING),
        (EmergencyLevel.HALT, TradingState.HALTED),
        (EmergencyLevel.FLATTEN, TradingState.REDUCING),
    ],
)
def test_each_kill_level_sets_its_state_and_resume_clears_it(
    level: EmergencyLevel, state: TradingState
) -> None:
    desk = trading_desk()
    desk.wall_clock.now += 60
    desk.gate.apply_kill(level, "operator")
    assert desk.gate.status() == TradingStatus(
        state=state,
        entries_paused=True,
        emergency_level=level,
        reason=f"{level.value}: operator",
        changed_at=datetime.fromtimestamp(IN_SESSION + 60, UTC),
        reconciled=True,
    )
    desk.wall_clock.now += 60
    desk.gate.resume("all clear")
    assert desk.gate.status() == TradingStatus(
        state=TradingState.ACTIVE,
        entries_paused=False,
        emergency_level=EmergencyLevel.NONE,
        reason="all clear",
        changed_at=datetime.fromtimestamp(IN_SESSION + 120, UTC),
        reconciled=True,
    )


def test_a_kill_never_loosens_a_stricter_one_but_a_flatten_may_close_after_a_halt() -> None:
    desk = trading_desk()
    desk.hold("AAPL", 10)
    desk.gate.apply_kill(EmergencyLevel.HALT, "first")
    desk.gate.apply_kill(EmergencyLevel.REDUCE_ONLY, "milder")
    assert (desk.gate.state, desk.gate.emergency_level) == (TradingState.HALTED, EmergencyLevel.HALT)
    assert desk.gate.reason == "halt: milder"
    desk.gate.apply_kill(EmergencyLevel.FLATTEN, "close all")
    assert (desk.gate.state, desk.gate.emergency_level) == (TradingState.REDUCING, EmergencyLevel.FLATTEN)
    assert desk.check("AAPL", Side.SELL, 10, reduce_only=True) is None
    desk.gate.apply_kill(EmergencyLevel.HALT, "milder than a flatten")
    assert desk.gate.emergency_level is EmergencyLevel.FLATTEN


def test_state_changes_reach_listeners_and_the_log_once(caplog: pytest.LogCaptureFixture) -> None:
    desk = trading_desk()
    heard: list[tuple[TradingState, TradingState, str]] = []
    desk.gate.on_state_change(lambda previous, state, reason: heard.append((previous, state, reason)))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="orch.hft.risk"):
        desk.gate.set_state(TradingState.REDUCING, "dead man's switch")
        desk.gate.set_state(TradingState.REDUCING, "still no heartbeat")  # no change: no event
    assert heard == [(TradingState.ACTIVE, TradingState.REDUCING, "dead man's switch")]
    assert [record.getMessage() for record in caplog.records] == [
        "trading state active -> reducing: dead man's switch"
    ]
    assert desk.gate.reason == "still no heartbeat"


# ---- Daily loss: per order and the breaker ------------------------------------------------------


def test_daily_loss_one_cent_short_of_the_limit_passes() -> None:
    desk = trading_desk()  # max_daily_loss 1,000
    desk.hold("AAPL", 10, average_price=199.999)  # marked at 100: 999.99 lost
    assert desk.check("BTC/USD", Side.BUY, 0.01) is None
    assert desk.gate.check_daily_loss() is False
    assert desk.gate.state is TradingState.ACTIVE


def test_an_order_at_the_daily_loss_limit_is_denied_and_halts_the_gate() -> None:
    desk = trading_desk()
    desk.hold("AAPL", 10, average_price=200.0)  # marked at 100: exactly 1,000 lost
    reason, detail = desk.check("BTC/USD", Side.BUY, 0.01)
    assert reason is DenialReason.DAILY_LOSS
    assert detail == "daily loss breaker: P&L today -1,000.00 reached -1,000.00"
    assert desk.gate.status().model_dump(exclude={"changed_at"}) == {
        "state": TradingState.HALTED,
        "entries_paused": True,
        "emergency_level": EmergencyLevel.HALT,
        "reason": detail,
        "reconciled": True,
    }
    assert desk.reason("AAPL", Side.SELL, 10) is DenialReason.HALTED


def test_the_breaker_trips_without_an_order_and_counts_realized_losses() -> None:
    desk = trading_desk()
    desk.portfolio.realized_by_day[desk.portfolio.today()] = -600.0
    desk.hold("AAPL", 10, average_price=140.0)  # 400 unrealized: 1,000 in all
    assert desk.gate.check_daily_loss() is True
    assert desk.gate.state is TradingState.HALTED
    assert desk.gate.check_daily_loss() is True  # still tripped, and still HALTED
    assert desk.gate.emergency_level is EmergencyLevel.HALT


def test_a_flatten_after_the_daily_loss_breaker_can_close_the_losing_position() -> None:
    desk = trading_desk()
    desk.hold("AAPL", 10, average_price=200.0)
    assert desk.gate.check_daily_loss() is True
    desk.gate.apply_kill(EmergencyLevel.FLATTEN, "close the losers")
    assert desk.gate.state is TradingState.REDUCING
    assert desk.check("AAPL", Side.SELL, 10, reduce_only=True) is None
    assert desk.reason("BTC/USD", Side.BUY, 0.01) is DenialReason.REDUCING_WOULD_INCREASE


# ---- The order-rate throttle --------------------------------------------------------------------


def test_throttle_counts_sent_orders_over_a_sliding_window() -> None:
    desk = trading_desk(max_orders_per_interval=3, throttle_interval_seconds=1.0)
    clock = desk.throttle_clock
    for sent_at in (100.0, 100.25, 100.5):
        clock.now = sent_at
        assert desk.check("AAPL", Side.BUY, 1) is None  # the third still passes: two in the window
        desk.gate.record_sent()
    clock.now = 100.875
    assert desk.check("AAPL", Side.BUY, 1) == (
        DenialReason.RATE_THROTTLE,
        "3 orders in the last 1s, max_orders_per_interval is 3",
    )
    assert desk.reason("AAPL", Side.BUY, 1) is DenialReason.RATE_THROTTLE  # denials do not count
    assert desk.gate.usage().orders_in_interval == 3
    clock.now = 101.0  # the order sent at 100.0 is exactly one interval old: out of the window
    assert desk.gate.usage().orders_in_interval == 2
    assert desk.check("AAPL", Side.BUY, 1) is None
    desk.gate.record_sent()
    assert desk.reason("AAPL", Side.BUY, 1) is DenialReason.RATE_THROTTLE
    assert desk.gate.approvals == 4


def test_usage_reports_exposure_loss_orders_and_denials() -> None:
    desk = trading_desk(max_orders_per_interval=10, throttle_interval_seconds=2.0)
    desk.hold("AAPL", 10, average_price=110.0)  # 1,000 at the mark, 100 lost
    desk.throttle_clock.now = 50.0
    desk.gate.record_sent()
    desk.throttle_clock.now = 51.0
    desk.gate.record_sent()
    desk.check("MSFT", Side.BUY, 1)
    desk.check("AAPL", Side.BUY, 1_000)
    desk.check("AAPL", Side.BUY, 1_000)
    desk.throttle_clock.now = 52.5  # the first is out of the 2 s window, the second in
    assert desk.gate.usage() == RiskUsage(
        gross_exposure=1_000.0,
        max_gross_exposure=30_000.0,
        daily_pnl=-100.0,
        max_daily_loss=1_000.0,
        orders_in_interval=1,
        max_orders_per_interval=10,
        denials={"no_price": 1, "max_order_notional": 2},
    )
    assert desk.gate.approvals == 2


# ---- The order itself: its instrument's rules, its market's hours, the account's own orders ------


def test_without_instruments_only_a_positive_quantity_passes() -> None:
    desk = trading_desk(with_instruments=False)
    assert desk.check("AAPL", Side.BUY, 0.5) is None
    for quantity in (0.0, -1.0, float("nan")):
        reason, detail = desk.check("AAPL", Side.BUY, quantity)
        assert reason is DenialReason.INVALID
        assert detail == f"quantity must be positive, got {quantity:g}"


def test_an_order_breaking_its_instruments_rules_is_denied_with_the_rules_words() -> None:
    desk = trading_desk()
    assert desk.check("TSLA", Side.BUY, 1, 100.0) == (
        DenialReason.INVALID,
        "unknown symbol 'TSLA': this process trades AAPL, MSFT, BTC/USD",
    )
    assert desk.check("AAPL", Side.BUY, -1)[0] is DenialReason.INVALID
    assert desk.check("AAPL", Side.BUY, 1.0000005) == (
        DenialReason.INVALID_INCREMENT,
        "quantity 1 is not a multiple of AAPL's increment 1e-06",
    )
    assert desk.check("AAPL", Side.BUY, 1.000001) is None
    assert desk.reason("AAPL", Side.BUY, 1, 100.005) is DenialReason.INVALID_INCREMENT
    assert desk.check("AAPL", Side.BUY, 1, 100.01) is None
    assert desk.reason("AAPL", Side.BUY, EQUITY_STEP / 2) is DenialReason.BELOW_MINIMUM
    assert desk.check("AAPL", Side.BUY, EQUITY_STEP) is None


def test_the_order_type_decides_which_rules_apply() -> None:
    limits_only = builtin_rules("AAPL").model_copy(update={"order_types": frozenset({OrderType.LIMIT})})
    desk = trading_desk(rules=[limits_only])
    assert desk.check("AAPL", Side.BUY, 1) == (
        DenialReason.ORDER_TYPE_NOT_ALLOWED,
        "AAPL takes no market orders",
    )
    assert desk.check("AAPL", Side.BUY, 1, 100.0) is None

    fractional_market_only = builtin_rules("AAPL").model_copy(
        update={"fractional_order_types": frozenset({OrderType.MARKET})}
    )
    desk = trading_desk(rules=[fractional_market_only])
    assert desk.reason("AAPL", Side.BUY, 1.5, 100.0) is DenialReason.NOT_FRACTIONABLE
    assert desk.check("AAPL", Side.BUY, 1.5) is None
    assert desk.check("AAPL", Side.BUY, 2, 100.0) is None


def test_minimum_notional_is_valued_at_the_limit_price() -> None:
    ten_dollar_minimum = builtin_rules("BTC/USD").model_copy(update={"min_notional": 10.0})
    desk = trading_desk(rules=[ten_dollar_minimum])
    assert desk.check("BTC/USD", Side.BUY, 0.0002, 50_000.0) is None  # exactly 10
    reason, detail = desk.check("BTC/USD", Side.BUY, 0.0002, 49_999.99)
    assert reason is DenialReason.BELOW_MINIMUM
    assert detail == "order notional 10.00 is below BTC/USD's minimum 10.00"


def test_market_hours_are_judged_at_each_minute_boundary() -> None:
    desk = trading_desk(wall=SESSION_OPEN - 30)
    assert desk.check("AAPL", Side.BUY, 1) == (DenialReason.MARKET_CLOSED, "AAPL's market is closed now")
    desk.wall_clock.now = SESSION_OPEN - 1
    assert desk.reason("AAPL", Side.BUY, 1) is DenialReason.MARKET_CLOSED
    desk.wall_clock.now = SESSION_OPEN
    assert desk.check("AAPL", Side.BUY, 1) is None
    desk.wall_clock.now = SESSION_CLOSE - 1
    assert desk.check("AAPL", Side.BUY, 1) is None
    desk.wall_clock.now = SESSION_CLOSE
    assert desk.reason("AAPL", Side.BUY, 1) is DenialReason.MARKET_CLOSED
    assert desk.check("BTC/USD", Side.BUY, 0.01) is None  # crypto never closes
    assert trading_desk(wall=SATURDAY).check("BTC/USD", Side.BUY, 0.01) is None


def test_the_calendar_is_asked_once_a_minute_per_symbol(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def counting_is_tradable(symbol: str, epoch_seconds: float) -> bool:
        asked.append(symbol)
        return True

    monkeypatch.setattr(risk_module, "is_tradable", counting_is_tradable)
    desk = trading_desk(wall=IN_SESSION)
    for second in range(60):
        desk.wall_clock.now = IN_SESSION + second
        assert desk.check("AAPL", Side.BUY, 1) is None
        assert desk.check("BTC/USD", Side.BUY, 0.01) is None
    assert asked == ["AAPL", "BTC/USD"]
    desk.wall_clock.now = IN_SESSION + 60
    desk.check("AAPL", Side.BUY, 1)
    assert asked == ["AAPL", "BTC/USD", "AAPL"]


@pytest.mark.parametrize(
    ("open_side", "open_price", "side", "crossing", "not_crossing", "other_side"),
    [
        (Side.SELL, 101.0, Side.BUY, 101.0, 100.99, "sell"),
        (Side.BUY, 99.0, Side.SELL, 99.0, 99.01, "buy"),
    ],
)
def test_an_order_crossing_the_accounts_own_is_denied(
    open_side: Side, open_price: float, side: Side, crossing: float, not_crossing: float, other_side: str
) -> None:
    desk = trading_desk()
    desk.hold("AAPL", 20)
    desk.open_order("AAPL", open_side, 1, open_price)
    assert desk.check("AAPL", side, 1, crossing) == (
        DenialReason.SELF_CROSS,
        f"{side.value} AAPL at limit {crossing:g} would cross the account's own open {other_side} at "
        f"{open_price:g}",
    )
    assert desk.check("AAPL", side, 1) == (
        DenialReason.SELF_CROSS,
        f"{side.value} AAPL at market would cross the account's own open {other_side} at {open_price:g}",
    )
    assert desk.check("AAPL", side, 1, not_crossing) is None
    assert desk.check("BTC/USD", side, 0.01) is None  # another symbol's book


def test_an_instrument_never_shorted_sells_at_most_what_is_held_less_open_sales() -> None:
    desk = trading_desk(rules=[builtin_rules("BTC/USD").model_copy(update={"shortable": False})])
    desk.hold("BTC/USD", 0.1)
    assert desk.check("BTC/USD", Side.SELL, 0.1) is None
    assert desk.reason("BTC/USD", Side.SELL, 0.10000001) is DenialReason.NOT_SHORTABLE
    desk.open_order("BTC/USD", Side.SELL, 0.04, 60_000.0)
    assert desk.check("BTC/USD", Side.SELL, 0.06, 60_000.0) is None
    reason, detail = desk.check("BTC/USD", Side.SELL, 0.06000001, 60_000.0)
    assert reason is DenialReason.NOT_SHORTABLE
    assert detail == "BTC/USD cannot be sold short: selling 0.06 with 0.06 held and not already on sale"
