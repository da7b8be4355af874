"""Day orders left open at the session's close expire at the venue, and orch hft's journal says so.

The engine runs on real files (its journal and the simulated venue) and on a test clock that both share:
Monday 7 December 2026, New York winter time, so the NYSE trades 14:30-21:00 UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from orch.brokers.simulated import SimulatedBroker, SimulatedVenueConfig
from orch.contracts.trading import OrderStatus, OrderType, RiskLimits, Side, TradingState
from orch.hft.config import HftSettings
from orch.hft.engine import Engine
from orch.hft.journal import Journal
from orch.hft.reconcile import reconcile
from orch.market.calendars import day_order_expiry

MONDAY_MIDDAY = datetime(2026, 12, 7, 17, 0, tzinfo=UTC).timestamp()
MONDAY_CLOSE = datetime(2026, 12, 7, 21, 0, tzinfo=UTC).timestamp()


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def start_engine(data: Path, clock: FakeClock) -> Engine:
    """What `orch hft` does on start: open the journal and the venue, restore, reconcile, trade."""
    settings = HftSettings(
        symbols=["AAPL", "BTC/USD"],
        market_making=False,
        arbitrage=False,
        risk=RiskLimits(max_order_notional=1e6, max_position_notional=1e7, max_gross_exposure=1e8),
    )
    venue = SimulatedBroker(
        str(data / "venue.sqlite"),
        SimulatedVenueConfig(latency_seconds=0, slippage_bps=0, fee_bps=0),
        clock=clock,
        day_order_expiry=day_order_expiry,
    )
    engine = Engine(settings, venue, Journal(data / "journal.sqlite"), wall_clock=clock)
    engine.restore()
    differences = await reconcile(engine)
    assert differences == [], f"reconciliation on start found differences: {differences}"
    engine.gate.reconciled = True
    engine.gate.set_state(TradingState.ACTIVE, "reconciliation clean")
    return engine


def rest_buy_orders(engine: Engine) -> tuple[str, str]:
    """A buy limit below the market in AAPL (a day order) and in BTC/USD (good till cancelled)."""
    ids = []
    for symbol in ("AAPL", "BTC/USD"):
        engine.broker.update_quote(symbol, 99.0, 101.0, engine.wall_clock())
        engine.portfolio.marks[symbol] = 100.0
        order, denial = engine.router.submit(symbol, Side.BUY, 10, OrderType.LIMIT, limit_price=90.0)
        assert denial is None and order is not None, f"the gate refused the test's {symbol} order: {denial}"
        ids.append(order.client_order_id)
    engine.router.flush()
    return ids[0], ids[1]


async def test_a_day_order_open_at_the_close_is_journaled_expired_and_reconciliation_stays_clean(
    tmp_path: Path,
) -> None:
    clock = FakeClock(MONDAY_MIDDAY)
    engine = await start_engine(tmp_path, clock)
    equity_id, crypto_id = rest_buy_orders(engine)
    await engine.sync_fills()
    clock.now = MONDAY_CLOSE - 1  # the session's last second: both still open
    await engine.sync_fills()
    assert set(engine.portfolio.open_orders) == {equity_id, crypto_id}

    clock.now = MONDAY_CLOSE
    await engine.sync_fills()
    assert engine.journal.order(equity_id).status is OrderStatus.EXPIRED
    assert [detail["client_order_id"] for _, _, detail in engine.journal.events("order_expired")] == [
        equity_id
    ]
    assert [o.client_order_id for o in engine.status().open_orders] == [crypto_id]
    assert engine.portfolio.pending_buy.get("AAPL", 0.0) == 0.0  # no longer counted toward the position
    assert engine.journal.order(crypto_id).status is OrderStatus.ACCEPTED
    # The periodic pass finds nothing to correct.
    assert await reconcile(engine, on_start=False) == []


async def test_an_order_that_expired_while_orch_hft_was_down_is_expired_not_a_difference(
    tmp_path: Path,
) -> None:
    clock = FakeClock(MONDAY_MIDDAY)
    engine = await start_engine(tmp_path, clock)
    equity_id, _ = rest_buy_orders(engine)
    await engine.broker.close()
    engine.journal.close()

    clock.now = MONDAY_CLOSE + 3600  # restarted an hour after the close
    restarted = await start_engine(tmp_path, clock)  # asserts reconciliation found no difference
    assert restarted.journal.order(equity_id).status is OrderStatus.EXPIRED
    assert equity_id not in restarted.portfolio.open_orders
    assert [detail["client_order_id"] for _, _, detail in restarted.journal.events("order_expired")] == [
        equity_id
    ]
