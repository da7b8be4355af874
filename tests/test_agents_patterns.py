import math

import numpy as np
import pytest

from orch.agents.conditions import assess_conditions, sense_market
from orch.agents.discovery import indicators
from orch.agents.patterns import (
    analyse_patterns,
    detect_breakout,
    detect_crossover,
    detect_mean_reversion,
    forecast_returns,
    simulate_scenarios,
)
from orch.contracts.cycle import PatternAnalysis, PatternKind, RegimeThresholds
from orch.contracts.market import Regime
from orch.contracts.trading import Side
from tests.test_agents_support import history_from_returns, now_after, range_bound, uptrend, with_last_bar

THRESHOLDS = RegimeThresholds()


def test_a_breakout_on_an_uptrend_with_volume_is_detected_and_confirmed():
    history = with_last_bar(uptrend(), close_factor=1.03, volume_factor=3.0)
    conditions = assess_conditions(history, THRESHOLDS)
    assert conditions.regime in (Regime.TRENDING, Regime.VOLATILE)

    breakout = detect_breakout(history, conditions)
    assert breakout is not None
    assert breakout.kind is PatternKind.BREAKOUT
    assert breakout.direction is Side.BUY
    assert breakout.strength > 1  # well over an ATR beyond the channel
    assert breakout.confirmed, breakout.reasons


def test_a_breakout_without_volume_is_detected_but_not_confirmed():
    history = with_last_bar(uptrend(), close_factor=1.03, volume_factor=1.0)
    breakout = detect_breakout(history, assess_conditions(history, THRESHOLDS))
    assert breakout is not None and not breakout.confirmed
    assert any("no participation" in reason for reason in breakout.reasons)


def test_a_breakout_from_a_range_is_not_confirmed_even_on_volume():
    history = with_last_bar(range_bound(), close_factor=1.015, volume_factor=3.0)
    conditions = assess_conditions(history, THRESHOLDS)
    assert conditions.regime is Regime.RANGING
    breakout = detect_breakout(history, conditions)
    assert breakout is not None and breakout.direction is Side.BUY
    assert not breakout.confirmed
    assert any("ranging" in reason for reason in breakout.reasons)


def test_no_breakout_inside_the_channel():
    history = range_bound()
    assert detect_breakout(history, assess_conditions(history, THRESHOLDS)) is None


def _v_turn():
    """A slow decline, then a strong rise, cut two bars after the 10-bar average crosses the 30-bar."""
    returns = np.concatenate([np.full(100, -0.001), np.full(40, 0.008)])
    close = 100 * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))
    above = indicators.rolling_mean(close, 10) > indicators.rolling_mean(close, 30)
    crossed = 100 + int(np.argmax(above[100:]))
    return history_from_returns("VTURN", returns[: crossed + 1])


def test_a_crossover_is_detected_and_confirmed_only_in_a_trend_moving_its_way():
    history = _v_turn()
    conditions = assess_conditions(history, THRESHOLDS)
    assert conditions.trend > 0

    trending = conditions.model_copy(update={"regime": Regime.TRENDING})
    crossover = detect_crossover(history, trending)
    assert crossover is not None
    assert crossover.kind is PatternKind.MA_CROSSOVER and crossover.direction is Side.BUY
    assert crossover.confirmed, crossover.reasons

    for regime in (Regime.RANGING, Regime.VOLATILE):
        assert not detect_crossover(history, conditions.model_copy(update={"regime": regime})).confirmed
    against = trending.model_copy(update={"trend": -0.02})
    assert not detect_crossover(history, against).confirmed


def test_no_crossover_in_a_steady_trend():
    history = uptrend()
    assert detect_crossover(history, assess_conditions(history, THRESHOLDS)) is None


def test_a_stretched_price_in_a_range_is_a_confirmed_mean_reversion_buy():
    history = with_last_bar(range_bound(), close_factor=0.985)
    conditions = assess_conditions(history, THRESHOLDS)
    assert conditions.regime is Regime.RANGING and not conditions.anomalies
    setup = detect_mean_reversion(history, conditions)
    assert setup is not None
    assert setup.direction is Side.BUY and setup.strength >= 2
    assert setup.confirmed, setup.reasons


def test_a_shock_is_not_faded():
    history = with_last_bar(range_bound(), close_factor=0.90)
    conditions = assess_conditions(history, THRESHOLDS).model_copy(update={"regime": Regime.RANGING})
    assert conditions.anomalies
    setup = detect_mean_reversion(history, conditions)
    assert setup is not None and not setup.confirmed
    assert any("anomalous" in reason for reason in setup.reasons)


def _ar1(phi: float, drift: float, sigma: float, n: int, rng: np.random.Generator) -> np.ndarray:
    r = np.empty(n)
    r[0] = drift
    shocks = sigma * rng.standard_normal(n)
    for i in range(1, n):
        r[i] = drift + phi * (r[i - 1] - drift) + shocks[i]
    return r


def test_the_forecast_recovers_an_ar1_process():
    rng = np.random.default_rng(11)
    history = history_from_returns("AR", _ar1(0.5, 0.001, 0.01, 3000, rng))
    forecast = forecast_returns(history, horizon=5)
    assert forecast.phi == pytest.approx(0.5, abs=0.05)
    assert forecast.drift == pytest.approx(0.001, abs=0.001)
    # The analytical 95% half-width for phi 0.5, sigma 0.01 over 5 bars.
    reach = [sum(0.5**i for i in range(5 - j + 1)) for j in range(1, 6)]
    expected_half_width = 1.96 * 0.01 * math.sqrt(sum(x * x for x in reach))
    assert (forecast.upper - forecast.lower) / 2 == pytest.approx(expected_half_width, rel=0.1)


def test_the_forecast_interval_covers_about_95_percent_of_outcomes():
    rng = np.random.default_rng(12)
    covered = 0
    trials = 300
    for _ in range(trials):
        r = _ar1(0.3, 0.0005, 0.01, 505, rng)
        forecast = forecast_returns(history_from_returns("AR", r[:500]), horizon=5)
        covered += forecast.lower <= r[500:].sum() <= forecast.upper
    assert 0.9 <= covered / trials <= 0.99


def test_scenarios_match_the_bootstrapped_returns_and_are_reproducible():
    history = uptrend(bars=400, drift=0.002, noise=0.01)
    r = np.diff(np.log(history.close))[-250:]
    scenarios = simulate_scenarios(history, horizon=10, paths=4000, seed=7)
    assert scenarios.mean == pytest.approx(10 * r.mean(), abs=0.003)
    assert scenarios.std == pytest.approx(math.sqrt(10) * r.std(), rel=0.1)
    assert scenarios.p05 < scenarios.p50 < scenarios.p95
    assert scenarios.prob_up > 0.6
    assert simulate_scenarios(history, horizon=10, paths=4000, seed=7) == scenarios
    assert simulate_scenarios(history, horizon=10, paths=4000, seed=8) != scenarios


def test_analyse_patterns_covers_the_symbols_with_conditions_and_serialises():
    trend = with_last_bar(uptrend("UP"), close_factor=1.03, volume_factor=3.0)
    short = uptrend("SHORT", bars=10)
    histories = {"UP": trend, "SHORT": short}
    snapshot = sense_market(histories, now_after(trend), THRESHOLDS, source="synthetic", lookback_bars=200)
    analysis = analyse_patterns(histories, snapshot, seed=3)
    assert [r.symbol for r in analysis.reports] == ["UP"]
    report = analysis.for_symbol("UP")
    assert [p.kind for p in report.confirmed] == [PatternKind.BREAKOUT]
    assert report.forecast is not None and report.scenarios is not None
    assert PatternAnalysis.model_validate_json(analysis.model_dump_json()) == analysis
