"""Discovery: the indicators, the strategy registry, `rank`, and the two built-in strategies."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from orch.agents.discovery import (
    HistoryPanel,
    ParamSpec,
    StrategyScores,
    UnknownStrategyError,
    discovery_strategy,
    get_strategy,
    known_strategies,
    rank,
    rank_all,
    unregister_strategy,
)
from orch.agents.discovery import indicators as ind
from orch.contracts.market import Regime
from orch.market.base import PriceHistory
from orch.market.simulated import SimulatedMarket

END = datetime(2026, 11, 20, 22, 0, tzinfo=UTC)
BUILT_IN = ("legacy_v0", "hybrid_v1")


def synthetic(symbol: str, close: np.ndarray, volume: np.ndarray | None = None) -> PriceHistory:
    close = np.asarray(close, dtype=float)
    bars = len(close)
    return PriceHistory(
        symbol=symbol,
        timestamps=np.arange(bars).astype("datetime64[D]").astype("datetime64[s]"),
        open=close.copy(),
        high=close * 1.01,
        low=close * 0.99,
        close=close,
        volume=np.full(bars, 1e6) if volume is None else np.asarray(volume, dtype=float),
    )


@pytest.fixture(scope="module")
def universe() -> dict[str, PriceHistory]:
    market = SimulatedMarket(seed=7)
    return {symbol: market.history(symbol, 250, END) for symbol in market.universe()}


@pytest.fixture
def register():
    """Register test strategies through the real decorator, and remove them afterwards."""
    added: list[str] = []

    def add(name: str, **kwargs):
        added.append(name)
        return discovery_strategy(name, **kwargs)

    yield add
    for name in added:
        if name in known_strategies():
            unregister_strategy(name)


# ---- Indicators ----------------------------------------------------------------------------------


def test_rsi_matches_a_hand_computed_reference():
    # Changes +1, -0.5, +1, -0.5, +1. Period 3: the first averages are plain means of the first
    # three changes (gain 2/3, loss 1/6), then Wilder's smoothing avg = (2 * avg + change) / 3.
    # t=3: 100 * (2/3) / (2/3 + 1/6) = 80
    # t=4: gain 4/9, loss 5/18            -> 100 * 8/13
    # t=5: gain 17/27, loss 5/27          -> 100 * 17/22
    close = np.array([10.0, 11.0, 10.5, 11.5, 11.0, 12.0])
    values = ind.rsi(close, period=3)
    assert np.isnan(values[:3]).all()
    np.testing.assert_allclose(values[3:], [80.0, 800 / 13, 1700 / 22])


def test_rsi_extremes_and_panels():
    rising, falling, flat = np.arange(1.0, 31.0), np.arange(30.0, 0.0, -1.0), np.full(30, 5.0)
    assert ind.rsi(rising)[-1] == 100 and ind.rsi(falling)[-1] == 0 and ind.rsi(flat)[-1] == 50
    panel = np.stack([rising, falling, flat, np.sin(np.arange(30.0)) + 10])
    by_row = np.stack([ind.rsi(row) for row in panel])
    np.testing.assert_array_equal(ind.rsi(panel), by_row)


def test_returns_and_momentum():
    close = np.array([100.0, 110.0, 99.0, 108.9])
    np.testing.assert_allclose(ind.simple_returns(close), [np.nan, 0.1, -0.1, 0.1])
    np.testing.assert_allclose(ind.log_returns(close)[1:], np.log([1.1, 0.9, 1.1]))
    np.testing.assert_allclose(ind.momentum(close, 2), [np.nan, np.nan, -0.01, -0.01])
    assert np.isnan(ind.momentum(close, 4)).all()


def test_rolling_zscore_scores_a_value_against_the_window_before_it():
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 100.0])
    scores = ind.rolling_zscore(values, 5)
    assert np.isnan(scores[:5]).all()
    assert scores[5] == pytest.approx(97 / math.sqrt(2))  # mean 3, population std sqrt(2)
    assert np.isnan(ind.rolling_zscore(np.ones(10), 3)[3:]).all()  # no spread, no score


def test_windowed_indicators_recover_from_nan_and_recursive_ones_do_not():
    values = np.arange(1.0, 13.0)
    values[4] = np.nan
    mean = ind.rolling_mean(values, 3)
    assert np.isnan(mean[4:7]).all() and np.isfinite(mean[7:]).all()
    assert mean[3] == 3.0
    smoothed = ind.wilder_average(values, 3)
    assert np.isfinite(smoothed[2:4]).all() and np.isnan(smoothed[4:]).all()


def test_ema_is_seeded_with_a_simple_mean():
    np.testing.assert_allclose(
        ind.ema(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), 3), [np.nan, np.nan, 2.0, 3.0, 4.0]
    )


def test_bollinger_width_and_atr_by_hand():
    close = np.array([1.0, 2.0, 3.0, 4.0])
    assert ind.bollinger_width(close, 4)[-1] == pytest.approx(4 * math.sqrt(1.25) / 2.5)
    assert ind.bollinger_width(np.full(30, 7.0))[-1] == 0
    high, low, close = np.array([10.0, 12.0, 11.0]), np.array([9.0, 10.0, 8.0]), np.array([9.5, 11.0, 8.5])
    np.testing.assert_allclose(ind.true_range(high, low, close), [1.0, 2.5, 3.0])
    # ATR(2): mean(1, 2.5) = 1.75, then 1.75 + (3 - 1.75) / 2 = 2.375
    np.testing.assert_allclose(ind.atr(high, low, close, 2), [np.nan, 1.75, 2.375])


def test_cross_sectional_zscore_ignores_nan_and_handles_no_spread():
    scores = ind.cross_sectional_zscore(np.array([1.0, np.nan, 3.0, 5.0]))
    assert np.isnan(scores[1])
    finite = scores[~np.isnan(scores)]
    assert finite.mean() == pytest.approx(0) and finite.std() == pytest.approx(1)
    np.testing.assert_array_equal(ind.cross_sectional_zscore(np.array([2.0, 2.0, np.nan])), [0, 0, np.nan])
    assert ind.cross_sectional_zscore(np.array([0.0] * 20 + [1000.0]))[-1] == 3.0


def test_a_window_longer_than_the_series_gives_nan_and_a_bad_window_is_refused():
    assert np.isnan(ind.rolling_std(np.ones(3), 5)).all()
    assert np.isnan(ind.rsi(np.ones(3), 14)).all()
    with pytest.raises(ValueError):
        ind.rolling_mean(np.ones(5), 0)


# ---- Parameters and the registry -----------------------------------------------------------------


def test_param_specs_declare_a_range_and_a_grid():
    assert ParamSpec(5, 1, 10, 1).grid() == list(range(1, 11))
    assert ParamSpec(0.5, 0.0, 1.0, 0.25).grid() == [0.0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ValueError):
        ParamSpec(default=20, low=1, high=10, step=1)
    for name in BUILT_IN:
        strategy = get_strategy(name)
        assert strategy.description and strategy.params
        for spec in strategy.params.values():
            assert spec.low <= spec.default <= spec.high and spec.default in spec.grid()


def test_built_ins_are_registered_and_declare_their_lookback():
    assert set(BUILT_IN) <= set(known_strategies())
    hybrid = get_strategy("hybrid_v1")
    assert hybrid.lookback == 120
    assert hybrid.lookback_for({"squeeze_history": 200}) == 220
    assert get_strategy("legacy_v0").lookback_for({"momentum_window": 60}) == 61


def test_unknown_strategy_error_lists_the_known_ones(universe):
    with pytest.raises(UnknownStrategyError) as raised:
        rank("hybrid_v9", universe, 5)
    assert isinstance(raised.value, ValueError)
    assert "hybrid_v9" in str(raised.value)
    for name in known_strategies():
        assert name in str(raised.value)
    with pytest.raises(UnknownStrategyError):
        get_strategy("")


def test_a_new_strategy_is_one_decorated_function(register, universe):
    @register("cheapest_first", description="lowest price first", lookback=5)
    def cheapest_first(panel: HistoryPanel, params) -> StrategyScores:
        return StrategyScores(-panel.close[:, -1], {"price": panel.close[:, -1]})

    assert "cheapest_first" in known_strategies()
    candidates = rank("cheapest_first", universe, 5)
    cheapest = sorted(universe, key=lambda s: universe[s].close[-1])[:5]
    assert [c.symbol for c in candidates] == cheapest
    assert candidates[0].factors["price"] == candidates[0].last_price == universe[cheapest[0]].close[-1]


def test_a_name_is_registered_once(register):
    register("once", description="", lookback=1)(lambda panel, params: StrategyScores(panel.close[:, -1]))
    with pytest.raises(ValueError, match="already registered"):
        discovery_strategy("once", description="", lookback=1)(lambda panel, params: None)


def test_parameters_are_checked_against_their_ranges(universe):
    with pytest.raises(ValueError, match="no parameter"):
        rank("hybrid_v1", universe, 5, {"windows": 3})
    with pytest.raises(ValueError, match="outside its range"):
        rank("hybrid_v1", universe, 5, {"momentum_window": 500})
    with pytest.raises(ValueError, match="whole number"):
        rank("hybrid_v1", universe, 5, {"momentum_window": 20.5})


def test_parameters_change_the_ranking(universe):
    volume_only = rank("legacy_v0", universe, 10, {"momentum_weight": 0.0})

    def surge(symbol: str) -> float:  # the last 3 bars' volume over the 20 before them
        volume = universe[symbol].volume
        return volume[-3:].mean() / volume[-23:-3].mean()

    assert [c.symbol for c in volume_only] == sorted(universe, key=surge, reverse=True)[:10]
    assert [c.symbol for c in volume_only] != [c.symbol for c in rank("legacy_v0", universe, 10)]


# ---- rank ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", BUILT_IN)
def test_ranks_run_one_to_n_with_scores_descending(strategy, universe):
    candidates = rank(strategy, universe, 15)
    assert [c.rank for c in candidates] == list(range(1, 16))
    scores = [c.score for c in candidates]
    assert scores == sorted(scores, reverse=True) and all(map(math.isfinite, scores))
    for candidate in candidates:
        assert candidate.last_price == universe[candidate.symbol].close[-1]
        assert candidate.factors and all(map(math.isfinite, candidate.factors.values()))
    everyone = rank(strategy, universe, 500)
    assert len(everyone) <= len(universe) and everyone[:15] == candidates


def test_the_two_built_ins_rank_differently(universe):
    legacy = [c.symbol for c in rank("legacy_v0", universe, 10)]
    hybrid = [c.symbol for c in rank("hybrid_v1", universe, 10)]
    assert legacy != hybrid
    assert len(set(legacy) ^ set(hybrid)) >= 4


def test_ties_go_to_the_alphabetically_first_symbol(register):
    register("flat", description="", lookback=1)(lambda panel, params: StrategyScores(np.zeros(len(panel))))
    histories = {s: synthetic(s, np.full(5, 10.0)) for s in ("MSFT", "AAPL", "KO")}
    assert [c.symbol for c in rank("flat", histories, 3)] == ["AAPL", "KO", "MSFT"]


@pytest.mark.parametrize("strategy", BUILT_IN)
def test_short_and_broken_histories_are_left_out(strategy, universe):
    histories = dict(universe)
    lookback = get_strategy(strategy).lookback
    nan_close = universe["AAPL"].close.copy()
    nan_close[-3] = np.nan
    zero_volume = universe["MSFT"].volume.copy()
    zero_volume[-1] = 0.0
    histories.update(
        AAPL=synthetic("AAPL", nan_close),
        SPY=synthetic("SPY", universe["SPY"].close[-(lookback - 1) :]),
        QQQ=synthetic("QQQ", np.r_[universe["QQQ"].close[:-1], 0.0]),
        MSFT=synthetic("MSFT", universe["MSFT"].close, zero_volume),
        EMPTY=synthetic("EMPTY", np.empty(0)),
    )
    ranked = {c.symbol for c in rank(strategy, histories, 500)}
    assert ranked and not ranked & {"AAPL", "SPY", "QQQ", "EMPTY"}
    # Zero volume is valid data; a strategy that takes its log scores the symbol NaN, and it drops out.
    assert ("MSFT" in ranked) == (strategy == "legacy_v0")
    assert rank(strategy, {"SPY": histories["SPY"]}, 5) == []
    assert rank(strategy, {}, 5) == []


def test_a_strategy_must_score_every_symbol(register, universe):
    register("wrong_shape", description="", lookback=1)(lambda panel, params: StrategyScores(np.zeros(3)))
    with pytest.raises(ValueError, match="one value per symbol"):
        rank("wrong_shape", universe, 5)
    with pytest.raises(ValueError):
        rank("hybrid_v1", universe, 0)


def test_hybrid_filters_out_the_overbought_that_legacy_chases():
    rng = np.random.default_rng(0)
    histories = {
        f"S{i}": synthetic(
            f"S{i}", 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 200))), rng.uniform(1e6, 2e6, 200)
        )
        for i in range(20)
    }
    surge = np.r_[np.full(197, 1e6), np.full(3, 5e6)]
    histories["ROCKET"] = synthetic("ROCKET", 100 * 1.02 ** np.arange(200), surge)  # RSI 100
    assert rank("legacy_v0", histories, 1)[0].symbol == "ROCKET"
    assert "ROCKET" not in {c.symbol for c in rank("hybrid_v1", histories, 21)}


# ---- On the simulated market ---------------------------------------------------------------------


def test_strategies_find_trending_symbols_more_often_than_chance():
    market = SimulatedMarket(seed=11)
    hits = {name: [] for name in BUILT_IN}
    base = []
    for scan in range(20):
        end = datetime(2024, 1, 5, 22, tzinfo=UTC) + timedelta(days=21 * scan)
        day = end.replace(hour=0)
        histories = {s: market.history(s, 200, end) for s in market.universe()}
        trending = {s for s in market.universe() if market.regime_at(s, day) is Regime.TRENDING}
        base.append(len(trending) / len(histories))
        for name in BUILT_IN:
            hits[name] += [c.symbol in trending for c in rank(name, histories, 10)]
    chance = float(np.mean(base))
    assert np.mean(hits["legacy_v0"]) > chance + 0.03
    assert np.mean(hits["hybrid_v1"]) > chance + 0.1


def test_rank_all_puts_what_the_strategy_leaves_out_after_its_ranking_at_score_zero(universe) -> None:
    symbols = sorted(universe)[:6]
    histories = {s: universe[s] for s in symbols}
    short = symbols[0]
    histories[short] = PriceHistory(  # too short for the strategy's lookback: it cannot be ranked
        short,
        *(
            column[-5:]
            for column in (
                universe[short].timestamps,
                universe[short].open,
                universe[short].high,
                universe[short].low,
                universe[short].close,
                universe[short].volume,
            )
        ),
    )
    ranked = rank("legacy_v0", histories, len(histories))
    everything = rank_all("legacy_v0", histories, [*symbols, "NOT-IN-HISTORIES"])
    assert everything[: len(ranked)] == ranked and short not in {c.symbol for c in ranked}
    assert [(c.symbol, c.score, c.rank) for c in everything[len(ranked) :]] == [(short, 0.0, len(ranked) + 1)]
    assert [c.rank for c in everything] == list(range(1, len(symbols) + 1))
