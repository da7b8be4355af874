"""Patterns (step 3): what set-ups a symbol's bars show, and whether the market conditions back them.

From a symbol's bars and its conditions (step 2) this agent finds:

- breakouts: the close beyond the highest high (lowest low) of the previous bars, in ATRs; confirmed
  only in a trending or volatile market on above-normal volume (breakouts in ranges mostly fail);
- moving-average crossovers: the fast average crossing the slow one in the last few bars; confirmed
  only in a trending market whose move points the same way (in ranges and volatile markets they whipsaw);
- mean-reversion set-ups: the close two or more standard deviations from the mean of the bars before
  it; confirmed only in a ranging market without an anomalous last return (a shock may be news);

and, without judging them, a short-horizon forecast (an AR(1) model of log returns with its confidence
interval) and bootstrapped scenarios (paths resampled from the symbol's own returns), which the composer
uses for its generic strategy.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from statistics import NormalDist

import numpy as np

from orch.agents.discovery import indicators
from orch.contracts.cycle import (
    AnomalyKind,
    Forecast,
    MarketConditions,
    MarketSnapshot,
    Pattern,
    PatternAnalysis,
    PatternKind,
    PatternReport,
    ScenarioSummary,
)
from orch.contracts.market import Regime
from orch.contracts.trading import Side
from orch.market.base import PriceHistory

BREAKOUT_WINDOW = 20
BREAKOUT_MIN_VOLUME_RATIO = 1.2
FAST_MA, SLOW_MA = 10, 30
CROSSOVER_WITHIN_BARS = 3
MEAN_REVERSION_WINDOW = 20
MEAN_REVERSION_ZSCORE = 2.0
HORIZON_BARS = 5
FORECAST_CONFIDENCE = 0.95
# Returns behind the forecast and the scenarios: enough for stable estimates, recent enough to matter.
ESTIMATION_BARS = 250
MIN_RETURNS = 30
SCENARIO_PATHS = 2000


def detect_breakout(
    history: PriceHistory, conditions: MarketConditions, window: int = BREAKOUT_WINDOW
) -> Pattern | None:
    if len(history) < window + 1:
        return None
    close = float(history.close[-1])
    channel_high = float(history.high[-window - 1 : -1].max())
    channel_low = float(history.low[-window - 1 : -1].min())
    if close > channel_high:
        direction, beyond = Side.BUY, close - channel_high
        level = f"above the {window}-bar high {channel_high:.4g}"
    elif close < channel_low:
        direction, beyond = Side.SELL, channel_low - close
        level = f"below the {window}-bar low {channel_low:.4g}"
    else:
        return None

    reasons = [f"close {close:.4g} {level}"]
    regime_ok = conditions.regime in (Regime.TRENDING, Regime.VOLATILE)
    reasons.append(
        f"{conditions.regime.value} market supports a breakout"
        if regime_ok
        else f"{conditions.regime.value} market: breakouts from ranges mostly fail"
    )
    volume_ok = conditions.volume_ratio >= BREAKOUT_MIN_VOLUME_RATIO
    reasons.append(
        f"volume {conditions.volume_ratio:.1f}x normal "
        + ("confirms" if volume_ok else f"below {BREAKOUT_MIN_VOLUME_RATIO:.1f}x: no participation")
    )
    return Pattern(
        kind=PatternKind.BREAKOUT,
        direction=direction,
        strength=beyond / _atr(history, conditions),
        confirmed=regime_ok and volume_ok,
        reasons=reasons,
    )


def detect_crossover(
    history: PriceHistory,
    conditions: MarketConditions,
    fast: int = FAST_MA,
    slow: int = SLOW_MA,
    within_bars: int = CROSSOVER_WITHIN_BARS,
) -> Pattern | None:
    close = history.close
    if len(close) < slow + within_bars:
        return None
    recent = slice(-within_bars - 1, None)
    gap = indicators.rolling_mean(close, fast)[recent] - indicators.rolling_mean(close, slow)[recent]
    signs = np.sign(gap)
    if signs[-1] == 0 or np.all(signs == signs[-1]):
        return None
    direction = Side.BUY if signs[-1] > 0 else Side.SELL
    bars_ago = int(np.argmax(signs[::-1] != signs[-1])) - 1
    reasons = [
        f"{fast}-bar average crossed {'above' if direction is Side.BUY else 'below'} the {slow}-bar "
        f"average {bars_ago} bars ago"
    ]
    trend_agrees = (conditions.trend > 0) == (direction is Side.BUY) and conditions.trend != 0
    if conditions.regime is not Regime.TRENDING:
        reasons.append(f"{conditions.regime.value} market: crossovers whipsaw outside trends")
    elif not trend_agrees:
        reasons.append(f"the {conditions.trend:+.1%} move over the regime window points the other way")
    else:
        reasons.append(f"trending market moving {conditions.trend:+.1%} the same way")
    return Pattern(
        kind=PatternKind.MA_CROSSOVER,
        direction=direction,
        strength=abs(float(gap[-1])) / _atr(history, conditions),
        confirmed=conditions.regime is Regime.TRENDING and trend_agrees,
        reasons=reasons,
    )


def detect_mean_reversion(
    history: PriceHistory,
    conditions: MarketConditions,
    window: int = MEAN_REVERSION_WINDOW,
    entry_zscore: float = MEAN_REVERSION_ZSCORE,
) -> Pattern | None:
    # Against the bars before it: a stretched close must not dampen its own score.
    z = float(indicators.rolling_zscore(history.close[-window - 1 :], window)[-1])
    if not np.isfinite(z):
        return None  # too few bars, or no spread to measure a stretch against
    if abs(z) < entry_zscore:
        return None
    # Stretched up: expect a fall back to the mean, and the other way round.
    direction = Side.SELL if z > 0 else Side.BUY
    reasons = [f"close {z:+.1f} sd from the mean of the {window} bars before it"]
    shock = any(a.kind is AnomalyKind.RETURN for a in conditions.anomalies)
    if conditions.regime is not Regime.RANGING:
        reasons.append(f"{conditions.regime.value} market: stretched prices tend to keep going")
    elif shock:
        reasons.append("the last return is anomalous: may be news, not noise")
    else:
        reasons.append("ranging market: stretched prices tend to return")
    return Pattern(
        kind=PatternKind.MEAN_REVERSION,
        direction=direction,
        strength=abs(z),
        confirmed=conditions.regime is Regime.RANGING and not shock,
        reasons=reasons,
    )


def forecast_returns(
    history: PriceHistory, horizon: int = HORIZON_BARS, confidence: float = FORECAST_CONFIDENCE
) -> Forecast | None:
    """The cumulative log return over `horizon` bars from an AR(1) fit, with its normal interval.

    Parameter uncertainty is ignored, so the interval is a little narrow on short histories.
    """
    r = _log_returns(history)
    if len(r) < MIN_RETURNS:
        return None
    previous, current = r[:-1], r[1:]
    variance = float(np.var(previous))
    phi = float(np.cov(previous, current, ddof=0)[0, 1] / variance) if variance > 0 else 0.0
    # |phi| near 1 would make the long-run mean explode; returns are never that persistent.
    phi = float(np.clip(phi, -0.95, 0.95))
    intercept = float(np.mean(current) - phi * np.mean(previous))
    residuals = current - intercept - phi * previous
    sigma = float(np.std(residuals, ddof=2)) if len(residuals) > 2 else 0.0
    drift = intercept / (1.0 - phi)

    powers = phi ** np.arange(1, horizon + 1)
    expected = float(horizon * drift + (float(r[-1]) - drift) * powers.sum())
    # A shock now reaches the cumulative return through all the bars still to come.
    reach = np.array([np.sum(phi ** np.arange(horizon - j + 1)) for j in range(1, horizon + 1)])
    half_width = NormalDist().inv_cdf(0.5 + confidence / 2.0) * sigma * float(np.sqrt(np.sum(reach**2)))
    return Forecast(
        horizon_bars=horizon,
        expected_return=expected,
        lower=expected - half_width,
        upper=expected + half_width,
        confidence=confidence,
        phi=phi,
        drift=drift,
    )


def simulate_scenarios(
    history: PriceHistory, horizon: int = HORIZON_BARS, paths: int = SCENARIO_PATHS, seed: int = 0
) -> ScenarioSummary | None:
    """Horizon log returns over `paths` paths, each bar drawn with replacement from recent returns.

    The draw is seeded by `seed` and the symbol, so the same inputs give the same scenarios.
    """
    r = _log_returns(history)
    if len(r) < MIN_RETURNS:
        return None
    rng = np.random.default_rng([seed, zlib.crc32(history.symbol.encode())])
    outcomes = rng.choice(r, size=(paths, horizon), replace=True).sum(axis=1)
    p05, p50, p95 = np.quantile(outcomes, [0.05, 0.5, 0.95])
    return ScenarioSummary(
        horizon_bars=horizon,
        paths=paths,
        mean=float(outcomes.mean()),
        std=float(outcomes.std()),
        p05=float(p05),
        p50=float(p50),
        p95=float(p95),
        prob_up=float(np.mean(outcomes > 0)),
    )


def analyse(history: PriceHistory, conditions: MarketConditions, seed: int = 0) -> PatternReport:
    """Every pattern of one symbol, judged against its conditions, with its forecast and scenarios."""
    detected = [
        detect_breakout(history, conditions),
        detect_crossover(history, conditions),
        detect_mean_reversion(history, conditions),
    ]
    return PatternReport(
        symbol=history.symbol,
        as_of=conditions.as_of,
        patterns=[p for p in detected if p is not None],
        forecast=forecast_returns(history),
        scenarios=simulate_scenarios(history, seed=seed),
    )


def analyse_patterns(
    histories: Mapping[str, PriceHistory], snapshot: MarketSnapshot, seed: int = 0
) -> PatternAnalysis:
    """Step 3: patterns for every symbol whose conditions step 2 could assess."""
    reports = [
        analyse(histories[c.symbol], c, seed=seed) for c in snapshot.conditions if c.symbol in histories
    ]
    return PatternAnalysis(as_of=snapshot.as_of, reports=reports)


def _log_returns(history: PriceHistory) -> np.ndarray:
    return indicators.log_returns(history.close[-ESTIMATION_BARS - 1 :])[1:]


def _atr(history: PriceHistory, conditions: MarketConditions) -> float:
    # Flat bars have no range: measure in a tiny fraction of the price rather than divide by zero.
    return conditions.atr if conditions.atr > 0 else float(history.close[-1]) * 1e-6
