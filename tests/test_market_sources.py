"""The source registry, automatic fallback (a primary that stops answering or goes stale), the pool's
cache in front of Alpaca, and the regime-threshold calibration, against the fake Alpaca server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from orch.agents.calibration import calibrate_thresholds
from orch.agents.discovery import indicators
from orch.config import Settings
from orch.contracts.cycle import LearningSettings, RegimeThresholds
from orch.contracts.data import AVAILABLE_SOURCES
from orch.contracts.system import DataSources
from orch.fake_alpaca import FakeAlpacaServer
from orch.market.alpaca import AlpacaMarketData
from orch.market.base import MarketDataError, PriceHistory, UnknownSymbolError
from orch.market.csv import CsvMarketData
from orch.market.simulated import SimulatedMarket
from orch.market.sources import (
    CachedSource,
    ConfiguredMarket,
    FallbackMarket,
    SourceConfigurationError,
    UnknownSourceError,
    open_source,
    stale_reason,
)
from orch.resources import ResourcePool
from tests.data_support import write_csv_folder

FRIDAY_EVENING = datetime(2025, 3, 7, 22, 0, tzinfo=UTC)
SYMBOLS = ("AAPL", "MSFT", "NVDA")
TIMEOUT = 0.5


@pytest.fixture
def server() -> Iterator[FakeAlpacaServer]:
    with FakeAlpacaServer(key="sources-key", secret="sources-secret") as running:
        yield running


@pytest.fixture
def keys(server: FakeAlpacaServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPACA_API_KEY", server.key)
    monkeypatch.setenv("ALPACA_SECRET_KEY", server.secret)


def test_the_registry_opens_each_source_and_refuses_the_rest(
    server: FakeAlpacaServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert AVAILABLE_SOURCES == ("simulated", "csv", "alpaca")
    folder = write_csv_folder(tmp_path / "bars", SimulatedMarket(), SYMBOLS, 40)
    settings = Settings(csv_folder=folder, alpaca_data_url=server.data_url, market_seed=11)

    simulated = open_source("simulated", settings)
    assert isinstance(simulated, SimulatedMarket) and simulated.seed == 11
    csv = open_source("csv", settings)
    assert isinstance(csv, CsvMarketData) and csv.universe() == sorted(SYMBOLS)

    monkeypatch.delenv("ALPACA_API_KEY", raising=False)
    monkeypatch.delenv("ALPACA_SECRET_KEY", raising=False)
    with pytest.raises(SourceConfigurationError, match="ALPACA_API_KEY and ALPACA_SECRET_KEY"):
        open_source("alpaca", settings)
    monkeypatch.setenv("ALPACA_API_KEY", server.key)
    monkeypatch.setenv("ALPACA_SECRET_KEY", server.secret)
    alpaca = open_source("alpaca", settings)
    assert isinstance(alpaca, AlpacaMarketData)
    assert len(alpaca.history("AAPL", 5, FRIDAY_EVENING)) == 5

    with pytest.raises(UnknownSourceError, match="'polygon'; available sources: simulated, csv, alpaca"):
        open_source("polygon", settings)
    with pytest.raises(SourceConfigurationError, match="ORCH_CSV_FOLDER"):
        open_source("csv", Settings(csv_folder=None))


def test_the_fallback_answers_when_the_primary_stops_answering(
    server: FakeAlpacaServer, keys: None, tmp_path: Path
) -> None:
    pool = ResourcePool(rate_limits={"alpaca-data": 1000})
    alpaca = AlpacaMarketData(url_override=server.data_url, timeout_seconds=TIMEOUT, resources=pool)
    # The fallback's prices are half as high again, so the bars show which source served them.
    simulated = SimulatedMarket(seed=server.config.seed)
    folder = write_csv_folder(tmp_path / "bars", simulated, SYMBOLS, 60, scale=1.5)
    market = FallbackMarket(alpaca, [CsvMarketData(folder)], on_fallback=pool.note_fallback)
    assert market.name == "alpaca"

    healthy = market.history("AAPL", 30)
    assert market.served_by["AAPL"] == "alpaca" and not market.events
    assert np.allclose(healthy.close, simulated.history("AAPL", 30).close, atol=1e-3)

    server.fake.inject_fault("data", "hang")
    served = market.history("AAPL", 30)
    assert market.served_by["AAPL"] == "csv"
    assert np.allclose(served.close, healthy.close * 1.5, atol=1e-3)
    (event,) = market.events
    assert (event.symbol, event.skipped, event.used) == ("AAPL", "alpaca", "csv")
    assert "did not answer" in event.reason
    requests = pool.stats().apis["alpaca-data"].requests

    # A primary that just failed is not asked again for a while: one timeout, not one per symbol.
    market.history("MSFT", 30)
    assert market.served_by["MSFT"] == "csv"
    assert market.events[-1].reason.startswith("skipped: failed")
    assert [e.symbol for e in market.events_since(event.at)] == ["AAPL", "MSFT"]
    stats = pool.stats()
    assert stats.apis["alpaca-data"].requests == requests
    assert stats.apis["alpaca-data"].errors == 1
    assert stats.data_fallbacks == 2

    # A symbol only the failing primary serves cannot be served: the error names every source's reason.
    with pytest.raises(MarketDataError, match=r"alpaca: skipped.*csv: no file for 'BTC/USD'"):
        market.history("BTC/USD", 5)

    server.fake.clear_faults()
    market.retry_after = timedelta(0)  # the pause is over: the primary answers again
    market.history("AAPL", 30)
    assert market.served_by["AAPL"] == "alpaca"
    alpaca.close()


def test_a_configured_source_this_worker_cannot_open_is_fallen_back_past_not_swapped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ALPACA_API_KEY", raising=False)
    pool = ResourcePool()
    configured = ConfiguredMarket(None, Settings(), pool)  # type: ignore[arg-type]  # no SystemState needed
    assert configured.name == "simulated"  # before SystemState is first read
    market = configured.market_for(DataSources(primary="alpaca", fallbacks=["simulated"]))
    assert market.name == "alpaca" and len(market.history("AAPL", 5)) == 5
    assert market.served_by["AAPL"] == "simulated"
    assert "needs ALPACA_API_KEY" in market.events[-1].reason and pool.stats().data_fallbacks == 1
    with pytest.raises(MarketDataError, match="alpaca cannot open on this worker"):
        configured.market_for(DataSources(primary="alpaca")).history("AAPL", 5)


def test_a_stale_primary_falls_back_and_stale_data_is_never_served(tmp_path: Path) -> None:
    simulated = SimulatedMarket(seed=3)
    month_ago = datetime.now(UTC) - timedelta(days=30)
    old = CsvMarketData(write_csv_folder(tmp_path / "old", simulated, SYMBOLS, 60, month_ago))

    market = FallbackMarket(old, [simulated])
    history = market.history("AAPL", 30)
    assert market.served_by["AAPL"] == "simulated"
    assert history.timestamps[-1] > np.datetime64(month_ago.replace(tzinfo=None) + timedelta(days=20))
    assert market.events[-1].reason.startswith("stale: last bar at")

    # Thirty days is fresh enough where staleness is set to sixty.
    assert FallbackMarket(old, [simulated], timedelta(days=60)).history("AAPL", 30).close[
        -1
    ] == pytest.approx(old.history("AAPL", 1).close[-1])
    with pytest.raises(MarketDataError, match="no data source could serve 'AAPL': csv: stale"):
        FallbackMarket(old).history("AAPL", 30)
    with pytest.raises(UnknownSymbolError, match="no data source serves 'NOPE'"):
        market.history("NOPE", 5)

    assert stale_reason(old.history("AAPL", 30), datetime.now(UTC)) is not None
    assert stale_reason(old.history("AAPL", 30), month_ago + timedelta(days=1)) is None


def test_the_cache_keeps_alpaca_from_serving_the_same_bars_twice(
    server: FakeAlpacaServer, keys: None
) -> None:
    pool = ResourcePool(cache_ttl_seconds=60)
    source = CachedSource(
        AlpacaMarketData(url_override=server.data_url, timeout_seconds=TIMEOUT, resources=pool), pool
    )

    def bar_requests() -> int:
        return sum(1 for r in server.fake.served_responses() if r.path.endswith("/bars"))

    first = source.history("AAPL", 20, FRIDAY_EVENING)
    again = source.history("AAPL", 20, FRIDAY_EVENING)
    assert again is first
    assert bar_requests() == 1
    stats = pool.stats()
    assert (stats.cache_hits, stats.cache_misses, stats.cache_size) == (1, 1, 1)
    assert stats.hit_rate == 0.5 and stats.apis["alpaca-data"].requests == 1

    source.history("AAPL", 20)  # "the latest bars" moves with the clock: never cached
    source.history("AAPL", 21, FRIDAY_EVENING)  # another window
    assert bar_requests() == 3 and pool.stats().cache_size == 2
    source.close()


def _smoothed(history: PriceHistory, window: int = 4) -> PriceHistory:
    """The same bars with closes averaged over `window`: a smoother, trendier-looking feed."""
    close = indicators.rolling_mean(history.close, window)[window - 1 :]
    cut = len(history) - len(close)
    return PriceHistory(
        history.symbol,
        history.timestamps[cut:],
        close,
        np.maximum(history.high[cut:], close),
        np.minimum(history.low[cut:], close),
        close,
        history.volume[cut:],
    )


def test_calibration_keeps_the_regime_mix_on_a_different_source() -> None:
    market = SimulatedMarket(seed=5)
    now = datetime(2025, 6, 11, 18, tzinfo=UTC)
    reference = [market.history(s, 400, now) for s in market.universe()[:12]]
    current = RegimeThresholds()

    same = calibrate_thresholds(current, reference, reference)
    assert same.thresholds == current  # the same bars: nothing to change

    trendier = [_smoothed(h) for h in reference]
    calibrated = calibrate_thresholds(current, reference, trendier)
    bounds = LearningSettings()
    assert calibrated.thresholds.trend_efficiency > current.trend_efficiency
    assert bounds.trend_efficiency_bounds[0] <= calibrated.thresholds.trend_efficiency
    assert calibrated.thresholds.trend_efficiency <= bounds.trend_efficiency_bounds[1]
    # Under the old thresholds the smoother feed would look far more trending; recalibrated, its mix
    # is the reference's.
    uncalibrated = calibrate_thresholds(current, [], trendier).new_mix
    assert uncalibrated["trending"] > calibrated.reference_mix["trending"] + 0.1
    for regime, share in calibrated.reference_mix.items():
        assert calibrated.new_mix[regime] == pytest.approx(share, abs=0.02), regime

    few = calibrate_thresholds(current, reference, [])
    assert few.thresholds == current and "thresholds kept" in few.notes[0]


def test_a_command_may_set_its_own_staleness_for_the_fallback(tmp_path: Path) -> None:
    """`orch integrate-real-data --max-data-age`: steps 3 and 4 fall back by the command's rule."""
    month_ago = datetime.now(UTC) - timedelta(days=30)
    folder = write_csv_folder(tmp_path / "old", SimulatedMarket(seed=3), SYMBOLS, 60, month_ago)
    configured = ConfiguredMarket(None, Settings(csv_folder=folder), ResourcePool())  # type: ignore[arg-type]
    sources = DataSources(primary="csv", fallbacks=["simulated"])

    by_worker = configured.market_for(sources)  # three bars: a month old is stale
    by_worker.history("AAPL", 30)
    assert by_worker.served_by["AAPL"] == "simulated"
    by_command = configured.market_for(sources, stale_after_seconds=timedelta(days=60).total_seconds())
    by_command.history("AAPL", 30)
    assert by_command.served_by["AAPL"] == "csv"


# ---- Staleness on the NYSE's calendar -------------------------------------------------------------

FRIDAY_LAST_MINUTE = datetime(
    2026, 12, 4, 20, 59, tzinfo=UTC
)  # 15:59 New York, the last bar before the close


def minute_bars_ending(symbol: str, last_bar_at: datetime) -> PriceHistory:
    timestamps = np.datetime64(last_bar_at.replace(tzinfo=None), "s") - np.arange(
        29, -1, -1
    ) * np.timedelta64(60, "s")
    prices = np.full(30, 100.0)
    return PriceHistory(
        symbol, timestamps, prices, prices * 1.001, prices * 0.999, prices, np.full(30, 1_000.0)
    )


@pytest.mark.parametrize(
    ("now", "stale"),
    [
        (datetime(2026, 12, 6, 18, 0, tzinfo=UTC), False),  # Sunday: the market has not been open since
        (datetime(2026, 12, 7, 3, 0, tzinfo=UTC), False),  # Sunday night in New York
        (datetime(2026, 12, 7, 14, 31, tzinfo=UTC), False),  # Monday 09:31: one minute of session
        (datetime(2026, 12, 7, 19, 0, tzinfo=UTC), True),  # Monday afternoon, no bar since Friday
    ],
    ids=["sunday", "sunday-night", "monday-open", "monday-afternoon"],
)
def test_an_equity_minute_bar_from_fridays_close_is_fresh_while_the_market_stays_closed(
    now: datetime, stale: bool
) -> None:
    history = minute_bars_ending("AAPL", FRIDAY_LAST_MINUTE)
    reason = stale_reason(history, now, interval=timedelta(minutes=1))
    assert (reason is not None) == stale, reason
    if stale:
        assert "ended 4:30:00 ago in session time" in reason, reason  # Monday 09:30 to 14:00 New York


def test_a_holiday_does_not_age_an_equity_bar_and_crypto_ages_at_any_hour() -> None:
    christmas_eve_close = datetime(2026, 12, 24, 17, 59, tzinfo=UTC)  # 12:59 New York, an early close
    christmas = datetime(2026, 12, 25, 15, 0, tzinfo=UTC)
    assert (
        stale_reason(
            minute_bars_ending("AAPL", christmas_eve_close), christmas, interval=timedelta(minutes=1)
        )
        is None
    )
    crypto = stale_reason(
        minute_bars_ending("BTC/USD", christmas_eve_close), christmas, interval=timedelta(minutes=1)
    )
    assert crypto is not None and "counted to the last close" not in crypto


def test_an_equity_feed_stalling_mid_session_is_stale_within_minutes() -> None:
    """The old rule gave equities a 72-hour weekend allowance at any hour: a feed stalled at 10:00 on a
    Monday read as fresh until Thursday."""
    stalled_at = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)
    history = minute_bars_ending("AAPL", stalled_at)
    assert stale_reason(history, stalled_at + timedelta(minutes=2), interval=timedelta(minutes=1)) is None
    assert (
        stale_reason(history, stalled_at + timedelta(minutes=10), interval=timedelta(minutes=1)) is not None
    )


def test_a_stale_daily_equity_bar_on_a_closed_market_says_its_age_is_counted_to_the_close() -> None:
    days = np.arange(np.datetime64("2026-11-16"), np.datetime64("2026-11-21")).astype("datetime64[s]")
    prices = np.full(len(days), 100.0)
    history = PriceHistory("AAPL", days, prices, prices, prices, prices, prices)
    sunday = datetime(2026, 12, 6, 18, 0, tzinfo=UTC)
    reason = stale_reason(history, sunday, interval=timedelta(days=1))
    assert reason is not None and "counted to the last close 2026-12-04T21:00:00+00:00" in reason, reason
    # Two weeks earlier, on Sunday 22 November, the same bars are within three bars and a weekend.
    assert stale_reason(history, sunday - timedelta(days=14), interval=timedelta(days=1)) is None
