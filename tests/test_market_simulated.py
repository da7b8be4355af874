"""The simulated market: determinism, one path per symbol, valid bars, regimes that really differ."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from orch.contracts.market import Regime
from orch.market import simulated
from orch.market.base import MarketDataError, UnknownSymbolError, is_crypto
from orch.market.calendars import current_sessions
from orch.market.simulated import EPOCH, SimulatedMarket, clear_cache

# A Friday evening after the New York close (EST), so the day's equity bar is complete.
FRIDAY_EVENING = datetime(2026, 11, 20, 22, 0, tzinfo=UTC)


def as_datetime(timestamp: np.datetime64) -> datetime:
    return timestamp.astype("datetime64[us]").item().replace(tzinfo=UTC)


def runs(labels: list[Regime]) -> list[tuple[Regime, int, int]]:
    """(regime, first index, stop index) of each stretch of equal labels."""
    found, start = [], 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            found.append((labels[start], start, i))
            start = i
    return found


# ---- The universe --------------------------------------------------------------------------------


def test_default_universe_has_sixty_distinct_symbols_including_crypto():
    universe = SimulatedMarket().universe()
    assert len(universe) == 60 == len(set(universe))
    assert {"BTC/USD", "ETH/USD"} <= set(universe)
    assert {"SPY", "AAPL"} <= set(universe)
    assert 2 <= sum(map(is_crypto, universe)) <= 6


def test_universe_is_stable_and_sized_by_the_constructor():
    assert SimulatedMarket(seed=1).universe() == SimulatedMarket(seed=2).universe()
    assert len(SimulatedMarket(universe_size=50).universe()) == 50
    assert SimulatedMarket(universe_size=50).universe()[:10] == SimulatedMarket().universe()[:10]


@pytest.mark.parametrize("kwargs", [{"universe_size": 3}, {"universe_size": 10_000}, {"timeframe": "5Min"}])
def test_bad_construction_is_refused(kwargs):
    with pytest.raises(ValueError):
        SimulatedMarket(**kwargs)


def test_is_crypto_reads_base_quote_pairs():
    assert is_crypto("BTC/USD") and is_crypto("ETH/USDT")
    assert not any(map(is_crypto, ["AAPL", "BRK.B", "/USD", "BTC/", "BTCUSD"]))


def test_unknown_symbol_and_bad_bar_count_are_refused():
    market = SimulatedMarket()
    with pytest.raises(UnknownSymbolError) as raised:
        market.history("NOPE", 10, FRIDAY_EVENING)
    assert isinstance(raised.value, MarketDataError)
    with pytest.raises(UnknownSymbolError):
        market.regime_at("NOPE", FRIDAY_EVENING)
    with pytest.raises(ValueError):
        market.history("AAPL", 0, FRIDAY_EVENING)


# ---- Determinism and one path per symbol ---------------------------------------------------------


def test_same_seed_regenerates_identical_bars_in_any_request_order():
    first = SimulatedMarket(seed=123).history("MSFT", 300, FRIDAY_EVENING)
    clear_cache()
    # Asked the other way round: a far future window first, then a tiny one.
    again = SimulatedMarket(seed=123)
    again.history("MSFT", 5, FRIDAY_EVENING + timedelta(days=3000))
    second = again.history("MSFT", 300, FRIDAY_EVENING)
    for column in ("timestamps", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(first, column), getattr(second, column))


def test_different_seeds_give_different_paths():
    a = SimulatedMarket(seed=1).history("AAPL", 100, FRIDAY_EVENING)
    b = SimulatedMarket(seed=2).history("AAPL", 100, FRIDAY_EVENING)
    np.testing.assert_array_equal(a.timestamps, b.timestamps)
    assert not np.allclose(a.close, b.close)


def test_bars_are_identical_in_a_fresh_interpreter():
    """No process-dependent randomness (hash() is salted per process)."""
    script = (
        "from datetime import datetime, UTC\n"
        "from orch.market.simulated import SimulatedMarket\n"
        "h = SimulatedMarket(seed=99).history('ETH/USD', 50, datetime(2025, 3, 3, tzinfo=UTC))\n"
        "print(repr(h.close.tolist()), repr(h.volume.tolist()))\n"
    )
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    here = SimulatedMarket(seed=99).history("ETH/USD", 50, datetime(2025, 3, 3, tzinfo=UTC))
    assert output.stdout.strip() == f"{here.close.tolist()!r} {here.volume.tolist()!r}"


@pytest.mark.parametrize("timeframe", ["1D", "1Min"])
def test_a_window_is_a_slice_of_one_path(timeframe):
    market = SimulatedMarket(seed=5, timeframe=timeframe)
    for symbol in ("AAPL", "BTC/USD"):
        long = market.history(symbol, 2000, FRIDAY_EVENING)
        short = market.history(symbol, 300, FRIDAY_EVENING)
        np.testing.assert_array_equal(short.close, long.close[-300:])
        np.testing.assert_array_equal(short.timestamps, long.timestamps[-300:])
        # An earlier end is the same path, cut earlier.
        earlier_end = as_datetime(long.timestamps[-700])
        earlier = market.history(symbol, 100, earlier_end)
        position = int(np.searchsorted(long.timestamps, earlier.timestamps[-1]))
        np.testing.assert_array_equal(earlier.close, long.close[position - 99 : position + 1])


# ---- Bars ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("timeframe", "bars"), [("1D", 1500), ("1Min", 3000)])
def test_every_bar_is_a_valid_ohlcv_bar(timeframe, bars):
    market = SimulatedMarket(seed=3, timeframe=timeframe)
    for symbol in market.universe():
        h = market.history(symbol, bars, FRIDAY_EVENING)
        assert len(h) == bars
        prices = np.stack([h.open, h.high, h.low, h.close])
        assert np.isfinite(prices).all() and (prices > 0).all()
        assert (h.low <= np.minimum(h.open, h.close)).all()
        assert (h.high >= np.maximum(h.open, h.close)).all()
        assert (np.isfinite(h.volume) & (h.volume >= 0)).all()
        assert (np.diff(h.timestamps) > np.timedelta64(0, "s")).all()


def test_prices_stay_plausible_over_the_whole_simulation():
    market = SimulatedMarket(seed=8)
    for symbol in market.universe():
        close = market.history(symbol, 10_000, FRIDAY_EVENING).close
        assert close.max() / close[0] < 100 and close[0] / close.min() < 100, symbol


def test_history_starts_at_the_epoch_and_nothing_exists_before():
    market = SimulatedMarket()
    first = market.history("AAPL", 10_000, FRIDAY_EVENING)
    # The epoch is New Year's Day: equities start at the first session after it, crypto on the day.
    assert as_datetime(first.timestamps[0]) == EPOCH + timedelta(days=1)
    assert as_datetime(market.history("BTC/USD", 10_000, FRIDAY_EVENING).timestamps[0]) == EPOCH
    assert len(first) < 10_000
    assert len(market.history("AAPL", 10, EPOCH - timedelta(days=30))) == 0
    assert len(SimulatedMarket(timeframe="1Min").history("BTC/USD", 10, EPOCH)) == 0


def test_equities_trade_the_nyse_sessions_and_crypto_every_day():
    market = SimulatedMarket()
    equity_days = market.history("AAPL", 300, FRIDAY_EVENING).timestamps.astype("datetime64[D]")
    crypto_days = market.history("BTC/USD", 300, FRIDAY_EVENING).timestamps.astype("datetime64[D]")
    sessions = current_sessions(FRIDAY_EVENING.timestamp())
    first, last = (day.item() for day in (equity_days[0], equity_days[-1]))
    assert [day.item() for day in equity_days] == sessions.between(first, last)
    assert date(2026, 7, 3) not in {day.item() for day in equity_days}  # Independence Day, observed
    assert (~np.is_busday(crypto_days)).sum() > 60
    assert (np.diff(crypto_days) == np.timedelta64(1, "D")).all()


def test_only_finished_bars_are_served():
    market = SimulatedMarket()
    friday = datetime(2026, 11, 20, tzinfo=UTC)
    before_close = market.history("AAPL", 1, friday.replace(hour=20, minute=59))  # 15:59 New York
    after_close = market.history("AAPL", 1, friday.replace(hour=21))
    assert as_datetime(before_close.timestamps[-1]).day == 19
    assert as_datetime(after_close.timestamps[-1]).day == 20
    # A crypto day ends at midnight UTC; naive datetimes are UTC.
    assert as_datetime(market.history("BTC/USD", 1, datetime(2026, 11, 20, 23, 59)).timestamps[-1]).day == 19
    assert as_datetime(market.history("BTC/USD", 1, datetime(2026, 11, 21)).timestamps[-1]).day == 20
    minute = SimulatedMarket(timeframe="1Min").history(
        "BTC/USD", 1, friday.replace(hour=12, minute=30, second=59)
    )
    assert as_datetime(minute.timestamps[-1]) == friday.replace(hour=12, minute=29)


def test_no_bar_on_a_holiday_and_none_for_it_after():
    market = SimulatedMarket()
    christmas_evening = datetime(2026, 12, 25, 23, 0, tzinfo=UTC)
    assert as_datetime(market.history("AAPL", 1, christmas_evening).timestamps[-1]).date() == date(
        2026, 12, 24
    )
    assert as_datetime(market.history("BTC/USD", 1, christmas_evening).timestamps[-1]).date() == date(
        2026, 12, 24
    )
    assert as_datetime(
        market.history("BTC/USD", 1, christmas_evening + timedelta(hours=1)).timestamps[-1]
    ).date() == (date(2026, 12, 25))
    minutes = SimulatedMarket(timeframe="1Min").history("AAPL", 30, datetime(2026, 12, 25, 16, 0, tzinfo=UTC))
    assert as_datetime(minutes.timestamps[-1]) == datetime(2026, 12, 24, 17, 59, tzinfo=UTC)  # 12:59 New York


def test_an_early_close_ends_the_day_and_its_minute_bars_at_13_00_new_york():
    daily = SimulatedMarket(seed=4)
    minute = SimulatedMarket(seed=4, timeframe="1Min")
    black_friday = datetime(2026, 11, 27, tzinfo=UTC)
    # The day's bar is served at the early close (18:00 UTC), not at 16:00 New York.
    assert as_datetime(daily.history("AAPL", 1, black_friday.replace(hour=18)).timestamps[-1]).day == 27
    bars = minute.history("AAPL", 210, black_friday.replace(hour=23))
    assert as_datetime(bars.timestamps[0]) == black_friday.replace(hour=14, minute=30)
    assert as_datetime(bars.timestamps[-1]) == black_friday.replace(hour=17, minute=59)
    whole_day = daily.history("AAPL", 1, black_friday.replace(hour=23))
    assert bars.open[0] == whole_day.open[0] and bars.close[-1] == whole_day.close[0]
    assert bars.volume.sum() == pytest.approx(whole_day.volume[0])
    # A window reaching back over the early close and Thanksgiving: 30 + 210 + 260 minutes.
    monday = minute.history("AAPL", 500, datetime(2026, 11, 30, 15, 0, tzinfo=UTC))
    days = monday.timestamps.astype("datetime64[D]").astype(object).tolist()
    assert [days.count(d) for d in (date(2026, 11, 25), date(2026, 11, 27), date(2026, 11, 30))] == [
        260,
        210,
        30,
    ]
    assert (np.diff(monday.timestamps) > np.timedelta64(0, "s")).all()


def test_end_defaults_to_now():
    latest = as_datetime(SimulatedMarket().history("BTC/USD", 1).timestamps[-1])
    assert timedelta(days=1) <= datetime.now(UTC) - latest < timedelta(days=2)


# ---- Minute bars ---------------------------------------------------------------------------------


def test_minute_bars_follow_the_new_york_session_and_agree_with_daily_bars():
    daily = SimulatedMarket(seed=4)
    minute = SimulatedMarket(seed=4, timeframe="1Min")
    for day, session_open in (
        (datetime(2026, 7, 1, tzinfo=UTC), 13),
        (datetime(2026, 11, 18, tzinfo=UTC), 14),
    ):
        bars = minute.history("AAPL", 390, day + timedelta(hours=23))
        assert as_datetime(bars.timestamps[0]) == day.replace(hour=session_open, minute=30)
        assert as_datetime(bars.timestamps[-1]) == day.replace(hour=session_open + 6, minute=59)
        whole_day = daily.history("AAPL", 1, day + timedelta(hours=23))
        assert bars.open[0] == whole_day.open[0] and bars.close[-1] == whole_day.close[0]
        assert bars.volume.sum() == pytest.approx(whole_day.volume[0])


def test_crypto_minute_bars_run_around_the_clock():
    bars = SimulatedMarket(timeframe="1Min").history("ETH/USD", 3 * 1440, datetime(2026, 11, 22, tzinfo=UTC))
    assert (np.diff(bars.timestamps) == np.timedelta64(60, "s")).all()
    assert as_datetime(bars.timestamps[0]) == datetime(2026, 11, 19, tzinfo=UTC)


# ---- Regimes -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def labelled_paths() -> list[tuple[np.ndarray, list[Regime]]]:
    """Daily log returns of 30 symbols over three years, each with its true regime per return."""
    market = SimulatedMarket(seed=21)
    labelled = []
    for symbol in market.universe()[:30]:
        history = market.history(symbol, 750, FRIDAY_EVENING)
        regimes = [market.regime_at(symbol, as_datetime(t)) for t in history.timestamps]
        labelled.append((np.diff(np.log(history.close)), regimes[1:], history.volume))
    return labelled


def test_all_three_regimes_occur_and_switch(labelled_paths):
    for _, regimes, _ in labelled_paths:
        assert set(regimes) == set(Regime)
        assert 5 <= len(runs(regimes)) <= 150


def test_volatile_regime_is_far_more_volatile_than_ranging(labelled_paths):
    ratios = []
    for returns, regimes, _ in labelled_paths:
        labels = np.array([r.value for r in regimes])
        ratios.append(returns[labels == "volatile"].std() / returns[labels == "ranging"].std())
    assert np.median(ratios) > 2.5


def test_trends_drift_and_ranges_come_back(labelled_paths):
    """|sum of returns| / (std * sqrt(n)) over a run is about 0.8 for pure noise."""
    efficiency: dict[Regime, list[float]] = {regime: [] for regime in Regime}
    for returns, regimes, _ in labelled_paths:
        for regime, start, stop in runs(regimes):
            run = returns[start:stop]
            if len(run) >= 8:
                efficiency[regime].append(abs(run.sum()) / (run.std() * np.sqrt(len(run))))
    assert np.mean(efficiency[Regime.TRENDING]) > 1.5
    assert np.mean(efficiency[Regime.RANGING]) < 0.8


def test_volume_surges_now_and_then_and_when_trends_begin(labelled_paths):
    surge_share, onset_ratio = [], []
    for _, regimes, volume in labelled_paths:
        volume = volume[1:]
        baseline = np.array([np.median(volume[i - 20 : i]) for i in range(20, len(volume))])
        surge_share.append(np.mean(volume[20:] > 2.5 * baseline))
        onset_ratio += [
            volume[start] / baseline[start - 20]
            for regime, start, _ in runs(regimes)
            if regime is Regime.TRENDING and start >= 20
        ]
    assert 0.01 < np.mean(surge_share) < 0.2
    assert np.median(onset_ratio) > 2.5


def test_regime_at_is_per_day_and_rolls_back_over_weekends():
    market = SimulatedMarket(seed=2)
    friday = datetime(2026, 11, 20, tzinfo=UTC)
    assert market.regime_at("AAPL", friday + timedelta(days=1, hours=5)) == market.regime_at("AAPL", friday)
    assert market.regime_at("AAPL", friday.replace(hour=23)) == market.regime_at("AAPL", friday)
    with pytest.raises(ValueError):
        market.regime_at("AAPL", EPOCH - timedelta(days=1))


# ---- Speed ---------------------------------------------------------------------------------------


def test_each_symbols_daily_path_is_generated_once_per_process_and_shared():
    """What keeps a scan of sixty symbols quick: the second ask, from any instance, reuses the path."""
    clear_cache()
    first = SimulatedMarket(seed=31)
    before = {s: first.history(s, 250, FRIDAY_EVENING) for s in first.universe()}
    generated = len(simulated._PATHS)
    assert generated == len(first.universe())
    second = SimulatedMarket(seed=31)
    again = {s: second.history(s, 250, FRIDAY_EVENING) for s in second.universe()}
    assert len(simulated._PATHS) == generated  # nothing generated again
    assert all(np.array_equal(before[s].close, again[s].close) for s in before)
