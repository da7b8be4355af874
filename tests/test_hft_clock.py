"""orch hft keeps market hours on one clock: the simulated ticks, and ORCH_HFT_CLOCK_START.

Every moment here is fixed, so the tests answer the same on any day and at any hour they run.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from orch.hft.clock import ProcessClock
from orch.hft.ticks import SimulatedTickSource

SYMBOLS = ["SPY", "AAPL", "BTC/USD", "ETH/USD"]
CRYPTO = {"BTC/USD", "ETH/USD"}
MONDAY_SESSION = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)  # 10:00 New York
SATURDAY = datetime(2026, 12, 5, 15, 0, tzinfo=UTC)
CHRISTMAS = datetime(2026, 12, 25, 15, 0, tzinfo=UTC)  # a Friday: a weekday rule would trade it
BLACK_FRIDAY_AFTER_EARLY_CLOSE = datetime(2026, 11, 27, 18, 30, tzinfo=UTC)  # 13:30 New York, closed at 13:00
BLACK_FRIDAY_BEFORE_EARLY_CLOSE = datetime(2026, 11, 27, 17, 30, tzinfo=UTC)  # 12:30 New York
MONDAY_BEFORE_OPEN = datetime(2026, 12, 7, 14, 29, tzinfo=UTC)  # 09:29 New York
MONDAY_AFTER_CLOSE = datetime(2026, 12, 7, 21, 0, tzinfo=UTC)  # 16:00 New York


def source_at(moment: datetime, seed: int = 7) -> SimulatedTickSource:
    return SimulatedTickSource(SYMBOLS, seed=seed, clock=ProcessClock(moment).now)


def symbols_ticked(moment: datetime) -> set[str]:
    return {tick.symbol for tick in source_at(moment).generate(2_000)}


@pytest.mark.parametrize(
    "moment",
    [SATURDAY, CHRISTMAS, BLACK_FRIDAY_AFTER_EARLY_CLOSE, MONDAY_BEFORE_OPEN, MONDAY_AFTER_CLOSE],
    ids=["weekend", "holiday", "after-early-close", "before-open", "after-close"],
)
def test_equities_do_not_tick_while_their_market_is_closed_and_crypto_does(moment: datetime) -> None:
    assert symbols_ticked(moment) == CRYPTO


@pytest.mark.parametrize(
    "moment", [MONDAY_SESSION, BLACK_FRIDAY_BEFORE_EARLY_CLOSE], ids=["session", "early-close-day-morning"]
)
def test_every_symbol_ticks_inside_a_session(moment: datetime) -> None:
    assert symbols_ticked(moment) == set(SYMBOLS)


def test_an_equity_only_source_sends_nothing_while_closed() -> None:
    source = SimulatedTickSource(["SPY", "AAPL"], seed=7, clock=ProcessClock(CHRISTMAS).now)
    assert source.generate(500) == []


def test_same_seed_and_clock_give_the_same_ticks() -> None:
    def ticks(moment: datetime) -> list[tuple]:
        frozen = moment.timestamp()
        source = SimulatedTickSource(SYMBOLS, seed=11, clock=lambda: frozen)
        return [(t.kind, t.venue, t.symbol, t.bid, t.ask, t.size, t.timestamp) for t in source.generate(300)]

    assert ticks(MONDAY_SESSION) == ticks(MONDAY_SESSION)
    assert ticks(SATURDAY) == ticks(SATURDAY)
    assert ticks(SATURDAY) != ticks(MONDAY_SESSION)


def test_ticks_start_at_the_simulated_markets_close_before_the_clock() -> None:
    """Ticks and bars tell one story: SPY's first quote is near its last daily close at the clock."""
    from orch.market.simulated import SimulatedMarket

    spy_close = float(SimulatedMarket(seed=7).history("SPY", 1, MONDAY_SESSION).close[-1])
    (first,) = [t for t in source_at(MONDAY_SESSION).generate(400) if t.symbol == "SPY"][:1]
    assert first.price == pytest.approx(spy_close, rel=0.01)


def test_the_tick_source_starts_equities_when_the_session_opens() -> None:
    """Run across Monday's open on a clock the test moves: no SPY tick before 09:30, ticks after."""
    moment = [MONDAY_BEFORE_OPEN.timestamp()]
    source = SimulatedTickSource(["SPY", "BTC/USD"], seed=7, rate=2_000, clock=lambda: moment[0])
    seen: list[tuple[float, str]] = []

    async def run() -> None:
        stop = asyncio.Event()

        def sink(tick) -> None:  # type: ignore[no-untyped-def]
            seen.append((tick.timestamp, tick.symbol))
            if len(seen) == 200:
                moment[0] += timedelta(minutes=2).total_seconds()  # 09:31: open
            if sum(1 for _, s in seen if s == "SPY") >= 50:
                stop.set()

        await asyncio.wait_for(source.run(sink, stop), timeout=30)

    asyncio.run(run())
    open_at = datetime(2026, 12, 7, 14, 30, tzinfo=UTC).timestamp()
    assert all(at >= open_at for at, symbol in seen if symbol == "SPY")
    assert any(symbol == "BTC/USD" and at < open_at for at, symbol in seen)


def test_a_set_clock_starts_where_it_is_told_and_ticks_on() -> None:
    clock = ProcessClock(CHRISTMAS)
    first = clock.now()
    assert CHRISTMAS.timestamp() <= first < CHRISTMAS.timestamp() + 5
    assert clock.now() >= first
    assert ProcessClock().start is None
