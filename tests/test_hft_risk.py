"""The pre-trade risk gate: every limit denies with its reason, the states, the circuit breaker."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orch.brokers.simulated import SimulatedBroker, SimulatedVenueConfig
from orch.contracts.system import EmergencyLevel
from orch.contracts.trading import DenialReason, OrderType, RiskLimits, Side, TradingState
from orch.hft.config import HftSettings
from orch.hft.engine import Engine
from orch.hft.journal import Journal

WEDNESDAY = datetime(2026, 11, 18, 15, 0, tzinfo=UTC).timestamp()
SATURDAY = datetime(2026, 11, 21, 15, 0, tzinfo=UTC).timestamp()


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_engine(wall: float = WEDNESDAY, **limits: float) -> Engine:
    settings = HftSettings(
        symbols=["AAPL", "MSFT", "BTC/USD"],  # MSFT: known, but never priced
        market_making=False,
        arbitrage=False,
        risk=RiskLimits(
            **{
                "max_order_notional": 10_000,
                "max_position_quantity": 50,
                "max_position_notional": 20_000,
                "max_gross_exposure": 30_000,
                "max_orders_per_interval": 1_000,
                "max_daily_loss": 1_000,
                **limits,
            }
        ),
    )
    engine = Engine(
        settings,
        SimulatedBroker(":memory:", SimulatedVenueConfig(latency_seconds=0)),
        Journal(":memory:"),
        wall_clock=FakeClock(wall),
    )
    engine.gate.reconciled = True
    engine.gate.resume("test")
    engine.portfolio.marks.update({"AAPL": 100.0, "BTC/USD": 50_000.0})
    return engine


def test_order_notional_denied_with_reason() -> None:
    engine = make_engine()
    reason, detail = engine.gate.check("AAPL", Side.BUY, 101, None)
    assert reason is DenialReason.ORDER_NOTIONAL
    assert "max_order_notional" in detail
    assert engine.gate.check("AAPL", Side.BUY, 10, None) is None


def test_position_quantity_denied() -> None:
    engine = make_engine(max_position_quantity=20)
    engine.portfolio.set_position("AAPL", 20, 100.0, 0.0, None)
    reason, _ = engine.gate.check("AAPL", Side.BUY, 1, None)
    assert reason is DenialReason.POSITION_QUANTITY


def test_position_notional_denied() -> None:
    engine = make_engine(max_position_notional=4_000)
    engine.portfolio.set_position("AAPL", 35, 100.0, 0.0, None)
    reason, _ = engine.gate.check("AAPL", Side.BUY, 10, None)
    assert reason is DenialReason.POSITION_NOTIONAL


def test_gross_exposure_denied() -> None:
    engine = make_engine(max_order_notional=100_000, max_position_notional=100_000, max_gross_exposure=51_000)
    engine.portfolio.set_position("BTC/USD", 1, 50_000.0, 0.0, None)
    reason, detail = engine.gate.check("AAPL", Side.BUY, 20, None)
    assert reason is DenialReason.GROSS_EXPOSURE
    assert "max_gross_exposure" in detail


def test_open_orders_count_toward_position_limits() -> None:
    engine = make_engine(max_position_quantity=10)
    order, denial = engine.router.submit("AAPL", Side.BUY, 8, OrderType.LIMIT, 90.0)
    assert order is not None and denial is None
    reason, _ = engine.gate.check("AAPL", Side.BUY, 3, 90.0)
    assert reason is DenialReason.POSITION_QUANTITY


def test_order_rate_throttle() -> None:
    engine = make_engine(max_orders_per_interval=3, throttle_interval_seconds=1.0)
    clock = FakeClock(100.0)
    engine.gate._clock = clock
    for _ in range(3):
        assert engine.router.submit("AAPL", Side.BUY, 1, OrderType.LIMIT, 90.0)[1] is None
    order, (reason, detail) = engine.router.submit("AAPL", Side.BUY, 1, OrderType.LIMIT, 90.0)
    assert order is None and reason is DenialReason.RATE_THROTTLE and "max_orders_per_interval" in detail
    clock.now += 1.01
    assert engine.router.submit("AAPL", Side.BUY, 1, OrderType.LIMIT, 90.0)[1] is None


def test_no_price_denied() -> None:
    engine = make_engine()
    reason, _ = engine.gate.check("MSFT", Side.BUY, 1, None)
    assert reason is DenialReason.NO_PRICE


def test_every_denial_is_counted() -> None:
    engine = make_engine()
    engine.gate.check("AAPL", Side.BUY, 1_000, None)
    engine.gate.check("AAPL", Side.BUY, 1_000, None)
    engine.gate.check("MSFT", Side.BUY, 1, None)
    assert engine.gate.denials == {"max_order_notional": 2, "no_price": 1}
    assert engine.gate.usage().denials == {"max_order_notional": 2, "no_price": 1}


async def test_halted_denies_everything_but_cancels() -> None:
    engine = make_engine()
    engine.portfolio.set_position("AAPL", 10, 100.0, 0.0, None)
    order, _ = engine.router.submit("AAPL", Side.BUY, 1, OrderType.LIMIT, 50.0)
    assert order is not None
    engine.kill(EmergencyLevel.HALT, "test")
    assert engine.gate.state is TradingState.HALTED
    for side, quantity in ((Side.BUY, 1), (Side.SELL, 5)):  # a reduction is denied too
        denied, (reason, _) = engine.router.submit("AAPL", side, quantity)
        assert denied is None and reason is DenialReason.HALTED
    await engine.drain()  # the halt cancelled the open order: cancels always pass
    assert engine.journal.order(order.client_order_id).status.value == "cancelled"
    assert not engine.portfolio.open_orders


def test_reducing_allows_only_reductions() -> None:
    engine = make_engine()
    engine.portfolio.set_position("AAPL", 10, 100.0, 0.0, None)
    engine.kill(EmergencyLevel.REDUCE_ONLY, "test")
    assert engine.gate.state is TradingState.REDUCING
    assert engine.gate.check("AAPL", Side.SELL, 4, None) is None
    assert engine.gate.check("AAPL", Side.BUY, 1, None)[0] is DenialReason.REDUCING_WOULD_INCREASE
    assert engine.gate.check("AAPL", Side.SELL, 15, None)[0] is DenialReason.REDUCING_WOULD_INCREASE  # flips
    assert engine.gate.check("BTC/USD", Side.BUY, 0.01, None)[0] is DenialReason.REDUCING_WOULD_INCREASE


def test_reducing_counts_open_exits_so_they_cannot_add_up_to_a_flip() -> None:
    engine = make_engine()
    engine.portfolio.set_position("AAPL", 10, 100.0, 0.0, None)
    engine.kill(EmergencyLevel.REDUCE_ONLY, "test")
    assert engine.router.submit("AAPL", Side.SELL, 8, OrderType.LIMIT, 120.0)[1] is None
    assert engine.gate.check("AAPL", Side.SELL, 5, 120.0)[0] is DenialReason.REDUCING_WOULD_INCREASE
    assert engine.gate.check("AAPL", Side.SELL, 2, 120.0) is None


def test_pause_entries_blocks_new_positions_but_not_exits() -> None:
    engine = make_engine()
    engine.portfolio.set_position("AAPL", 10, 100.0, 0.0, None)
    engine.kill(EmergencyLevel.PAUSE_ENTRIES, "test")
    assert engine.gate.state is TradingState.ACTIVE
    assert engine.gate.check("BTC/USD", Side.BUY, 0.01, None)[0] is DenialReason.ENTRIES_PAUSED
    assert engine.gate.check("AAPL", Side.SELL, 10, None) is None


def test_reduce_only_intent_may_not_grow_a_position() -> None:
    engine = make_engine()
    reason, _ = engine.gate.check("AAPL", Side.BUY, 1, None, reduce_only=True)
    assert reason is DenialReason.REDUCE_ONLY_WOULD_INCREASE


def test_daily_loss_breaker_trips_by_itself() -> None:
    engine = make_engine(max_daily_loss=500)
    engine.portfolio.set_position("AAPL", 40, 100.0, 0.0, None)
    engine.portfolio.marks["AAPL"] = 100.0
    engine.position_manager.evaluate(WEDNESDAY)
    assert engine.gate.state is TradingState.ACTIVE
    engine.portfolio.marks["AAPL"] = 87.0  # 40 * -13 = -520
    engine.position_manager.evaluate(WEDNESDAY)  # no order involved: the cadence alone trips it
    assert engine.gate.state is TradingState.HALTED
    assert "daily loss breaker" in engine.gate.reason
    reason, _ = engine.gate.check("BTC/USD", Side.BUY, 0.01, None)
    assert reason is DenialReason.HALTED
    assert engine.journal.get_meta("emergency_level") == "halt"  # survives a restart


def test_weekend_rule_in_the_gate() -> None:
    engine = make_engine(wall=SATURDAY)
    reason, _ = engine.gate.check("AAPL", Side.BUY, 1, None)
    assert reason is DenialReason.MARKET_CLOSED  # was WEEKEND: the gate now asks the calendar
    assert engine.gate.check("BTC/USD", Side.BUY, 0.01, None) is None
    assert make_engine(wall=WEDNESDAY).gate.check("AAPL", Side.BUY, 1, None) is None


def test_a_kill_never_loosens_a_stricter_one() -> None:
    engine = make_engine()
    engine.kill(EmergencyLevel.HALT, "first")
    engine.kill(EmergencyLevel.PAUSE_ENTRIES, "second")
    assert engine.gate.state is TradingState.HALTED
    assert engine.gate.emergency_level is EmergencyLevel.HALT


async def test_a_flatten_after_a_halt_lets_closing_orders_through_then_halts() -> None:
    engine = make_engine()
    engine.portfolio.set_position("AAPL", 10, 100.0, 0.0, None)
    engine.kill(EmergencyLevel.HALT, "first")
    engine.kill(EmergencyLevel.FLATTEN, "then close everything")
    assert engine.gate.state is TradingState.REDUCING
    assert engine.gate.emergency_level is EmergencyLevel.FLATTEN
    grows, (reason, _) = engine.router.submit("AAPL", Side.BUY, 1)
    assert grows is None and reason is DenialReason.REDUCING_WOULD_INCREASE
    closing, denial = engine.router.submit("AAPL", Side.SELL, 10, reduce_only=True)
    assert closing is not None, denial
    engine.kill(EmergencyLevel.HALT, "a milder kill during the flatten")
    assert engine.gate.emergency_level is EmergencyLevel.FLATTEN


@pytest.mark.parametrize("level", list(EmergencyLevel)[1:])
async def test_resume_returns_to_active(level: EmergencyLevel) -> None:
    engine = make_engine()
    engine.kill(level, "test")
    await engine.drain()
    engine.resume("done")
    assert engine.gate.state is TradingState.ACTIVE and not engine.gate.entries_paused
