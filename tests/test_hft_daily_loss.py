"""The daily-loss circuit breaker and the realized P&L it reads: history that reconciliation, restarts
and the passing of a day cannot erase.

The engine runs on real files (its journal and the simulated venue), so a "restart" is a new engine
on the same files, exactly as a new process would be.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from orch.brokers.simulated import SimulatedBroker, SimulatedVenueConfig
from orch.contracts.system import EmergencyLevel
from orch.contracts.trading import DenialReason, RiskLimits, Side, TradingState
from orch.hft.config import HftSettings
from orch.hft.engine import Engine
from orch.hft.journal import Journal
from orch.hft.reconcile import reconcile

WEDNESDAY = datetime(2026, 11, 18, 15, 0, tzinfo=UTC).timestamp()
THURSDAY_JUST_AFTER_MIDNIGHT = datetime(2026, 11, 19, 0, 0, 1, tzinfo=UTC).timestamp()
SYMBOL = "BTC/USD"
LIMIT = 1_000.0


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def start_engine(data: Path, clock: FakeClock, max_order_notional: float = 1e7) -> Engine:
    """What `orch hft` does on start: open the journal and the venue, restore, reconcile, trade."""
    settings = HftSettings(
        symbols=[SYMBOL],
        market_making=False,
        arbitrage=False,
        risk=RiskLimits(
            max_order_notional=max_order_notional,
            max_position_quantity=1e4,
            max_position_notional=1e8,
            max_gross_exposure=1e9,
            max_orders_per_interval=100_000,
            max_daily_loss=LIMIT,
        ),
    )
    # The venue shares the test's clock: a fill's trading day is the day it was executed.
    venue = SimulatedBroker(
        str(data / "venue.sqlite"),
        SimulatedVenueConfig(latency_seconds=0, slippage_bps=0, fee_bps=0),
        clock=clock,
    )
    engine = Engine(settings, venue, Journal(data / "journal.sqlite"), wall_clock=clock)
    engine.restore()
    engine.restore_kill()
    assert await reconcile(engine) == []
    engine.gate.reconciled = True
    if not engine.gate.check_daily_loss() and engine.gate.state is not TradingState.HALTED:
        engine.gate.set_state(TradingState.ACTIVE, "reconciliation clean")
    return engine


async def stop_engine(engine: Engine) -> None:
    await engine.broker.close()
    engine.journal.close()


def quote(engine: Engine, price: float) -> None:
    engine.broker.update_quote(SYMBOL, price, price, engine.wall_clock())
    engine.portfolio.marks[SYMBOL] = price


async def trade(engine: Engine, side: Side, quantity: float, price: float) -> None:
    quote(engine, price)
    order, denial = engine.router.submit(SYMBOL, side, quantity)
    assert denial is None, f"the gate refused the test's order: {denial}"
    assert order is not None
    engine.end_of_batch()
    await engine.sync_fills()
    assert engine.order(order.client_order_id).status.value == "filled"  # type: ignore[union-attr]


async def losing_round_trip(engine: Engine, loss: float) -> None:
    """Buy 10 at 100 and sell them at 100 - loss/10: realizes exactly -loss."""
    await trade(engine, Side.BUY, 10, 100.0)
    await trade(engine, Side.SELL, 10, 100.0 - loss / 10)


async def losing_trade_that_trips(engine: Engine, loss: float) -> None:
    """Buy 10 at 100; the price falls by loss/10. The loss counts (unrealized) as soon as the price
    moves, so the breaker trips on the very next check: the sell is refused and trading halts."""
    await trade(engine, Side.BUY, 10, 100.0)
    quote(engine, 100.0 - loss / 10)
    order, denial = engine.router.submit(SYMBOL, Side.SELL, 10)
    assert denial is not None and denial[0] is DenialReason.DAILY_LOSS, f"not tripped: {order} {denial}"
    assert engine.gate.state is TradingState.HALTED
    assert "daily loss breaker" in engine.gate.reason


def figures(engine: Engine) -> tuple[float, float]:
    status = engine.status()
    return status.realized_pnl, status.risk.daily_pnl


async def test_realized_pnl_survives_reconciliation_and_restart(tmp_path: Path) -> None:
    clock = FakeClock(WEDNESDAY)
    engine = await start_engine(tmp_path, clock)
    await losing_round_trip(engine, 29.4)
    assert figures(engine) == pytest.approx((-29.4, -29.4))

    for adopt in (False, True):  # the periodic pass, looking and then adopting
        assert await reconcile(engine, adopt_positions=adopt, on_start=False) == []
        assert figures(engine) == pytest.approx((-29.4, -29.4)), f"after a reconciliation (adopt={adopt})"

    await stop_engine(engine)
    restarted = await start_engine(tmp_path, clock)
    assert figures(restarted) == pytest.approx((-29.4, -29.4)), "after a restart"
    assert restarted.journal.events("realized_pnl_mismatch") == []  # the venue agrees
    await stop_engine(restarted)


async def test_losses_across_many_reconciliations_trip_the_breaker(tmp_path: Path) -> None:
    engine = await start_engine(tmp_path, FakeClock(WEDNESDAY))
    for round_trip in range(1, 10):
        await losing_round_trip(engine, 100.0)
        assert await reconcile(engine, on_start=False) == []
        assert engine.status().risk.daily_pnl == pytest.approx(-100.0 * round_trip)
    # 900 lost of a 1,000 limit: below it, trading goes on.
    assert engine.gate.state is TradingState.ACTIVE, engine.gate.reason
    await losing_trade_that_trips(engine, 100.0)
    assert "P&L today -1,000.00" in engine.gate.reason
    await stop_engine(engine)


async def test_a_restart_keeps_the_days_losses_for_the_breaker(tmp_path: Path) -> None:
    clock = FakeClock(WEDNESDAY)
    engine = await start_engine(tmp_path, clock)
    await losing_round_trip(engine, 900.0)
    await stop_engine(engine)  # the journal's own state only: the process is gone

    restarted = await start_engine(tmp_path, clock)
    assert restarted.status().risk.daily_pnl == pytest.approx(-900.0)
    assert restarted.gate.state is TradingState.ACTIVE, restarted.gate.reason
    await losing_trade_that_trips(restarted, 100.0)
    await stop_engine(restarted)

    # Still halted on the next start, even with no trade at all: the trip is a kill until a resume.
    again = await start_engine(tmp_path, clock)
    assert again.gate.state is TradingState.HALTED
    reason, detail = again.router.submit(SYMBOL, Side.BUY, 1)[1] or (None, "")
    assert reason is DenialReason.HALTED, detail
    await stop_engine(again)


async def test_a_new_day_starts_from_zero(tmp_path: Path) -> None:
    clock = FakeClock(WEDNESDAY)
    engine = await start_engine(tmp_path, clock)
    await losing_round_trip(engine, 900.0)
    assert figures(engine) == pytest.approx((-900.0, -900.0))

    clock.now = THURSDAY_JUST_AFTER_MIDNIGHT
    assert figures(engine) == pytest.approx((-900.0, 0.0)), "the account's history stays, the day is new"
    await losing_round_trip(engine, 900.0)  # would trip on Wednesday (1,800 lost); Thursday lost 900
    assert engine.gate.state is TradingState.ACTIVE, engine.gate.reason
    assert figures(engine) == pytest.approx((-1_800.0, -900.0))
    await stop_engine(engine)

    restarted = await start_engine(tmp_path, clock)
    assert figures(restarted) == pytest.approx((-1_800.0, -900.0))
    assert restarted.journal.realized_pnl_by_day() == pytest.approx(
        {date(2026, 11, 18): -900.0, date(2026, 11, 19): -900.0}
    )
    await stop_engine(restarted)


async def test_a_flatten_after_the_breaker_closes_the_losing_position(tmp_path: Path) -> None:
    """The breaker halts trading with the losing position still open; a flatten must close it (its
    closing orders were denied `daily_loss_breaker` while the loss stood, so nothing was closed)."""
    engine = await start_engine(tmp_path, FakeClock(WEDNESDAY))
    await losing_round_trip(engine, 900.0)
    await losing_trade_that_trips(engine, 100.0)
    assert engine.portfolio.quantity(SYMBOL) == 10

    engine.kill(EmergencyLevel.FLATTEN, "close the loser")
    for _ in range(200):  # orch hft's fill loop, run by hand: until the closing sell has filled
        engine.end_of_batch()
        await engine.sync_fills()
        if engine.portfolio.quantity(SYMBOL) == 0:
            break
        await asyncio.sleep(0.01)
    await engine.drain(timeout=5.0)
    assert engine.portfolio.quantity(SYMBOL) == 0, engine.gate.reason
    assert engine.gate.state is TradingState.HALTED and "(flat)" in engine.gate.reason, engine.gate.reason
    assert engine.router.submit(SYMBOL, Side.BUY, 1)[1][0] is DenialReason.HALTED  # type: ignore[index]
    await stop_engine(engine)


async def test_a_flatten_closes_a_position_worth_more_than_one_order_may_carry(tmp_path: Path) -> None:
    """The order-notional limit holds for closing orders too: a flatten closes in slices under it
    (one order for the whole position was denied `order_notional`, and nothing was closed)."""
    engine = await start_engine(tmp_path, FakeClock(WEDNESDAY), max_order_notional=400.0)
    for _ in range(3):
        await trade(engine, Side.BUY, 3, 100.0)  # 9 held, worth 900: more than two orders' worth
    engine.kill(EmergencyLevel.FLATTEN, "close everything")
    for _ in range(500):  # orch hft's fill loop, run by hand
        engine.end_of_batch()
        await engine.sync_fills()
        if engine.portfolio.quantity(SYMBOL) == 0:
            break
        await asyncio.sleep(0.01)
    await engine.drain(timeout=5.0)
    assert engine.portfolio.quantity(SYMBOL) == 0, engine.gate.reason
    assert "(flat)" in engine.gate.reason, engine.gate.reason
    closing = [o for o in engine.journal.orders() if o.source == "flatten"]
    assert [o.quantity for o in closing] == [4, 4, 1], closing  # each at most 400 at the mark of 100
    assert engine.gate.denials.get("order_notional", 0) == 0
    await stop_engine(engine)
