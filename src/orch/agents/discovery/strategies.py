"""The built-in discovery strategies.

- `legacy_v0`: the original scanner. Raw volume surge plus raw price momentum, no normalisation,
  so high-volatility symbols (crypto) tend to dominate it.
- `hybrid_v1`: four signals, each standardised across the universe and blended by weight:
  volatility-adjusted momentum, a volume z-score and a Bollinger squeeze, with an RSI filter that
  leaves out symbols already overbought (late to the move) or oversold (falling, against momentum).
"""

from __future__ import annotations

import numpy as np

from orch.agents.discovery.indicators import (
    bollinger_width,
    cross_sectional_zscore,
    log_returns,
    momentum,
    rolling_zscore,
    rsi,
)
from orch.agents.discovery.registry import HistoryPanel, Params, ParamSpec, StrategyScores, discovery_strategy


@discovery_strategy(
    "legacy_v0",
    description="Volume surge (recent volume over its average) plus price momentum, unnormalised",
    params={
        "momentum_window": ParamSpec(default=10, low=3, high=60, step=1),
        "volume_window": ParamSpec(default=20, low=5, high=60, step=5),
        "surge_window": ParamSpec(default=3, low=1, high=10, step=1),
        "momentum_weight": ParamSpec(default=1.0, low=0.0, high=5.0, step=0.25),
    },
    lookback=lambda p: max(p["momentum_window"] + 1, p["volume_window"] + p["surge_window"]),
)
def legacy_v0(panel: HistoryPanel, params: Params) -> StrategyScores:
    surge, window = params["surge_window"], params["volume_window"]
    recent_volume = panel.volume[:, -surge:].mean(axis=1)
    usual_volume = panel.volume[:, -(surge + window) : -surge].mean(axis=1)
    volume_ratio = recent_volume / usual_volume
    change = momentum(panel.close, params["momentum_window"])[:, -1]
    score = np.log(volume_ratio) + params["momentum_weight"] * np.log1p(change)
    return StrategyScores(score, {"volume_ratio": volume_ratio, "momentum": change})


def _hybrid_lookback(p: Params) -> int:
    return max(
        p["momentum_window"] + 1,
        p["volume_window"] + p["surge_window"],
        # Band widths need bb_window bars each, and the squeeze compares squeeze_history of them.
        p["bb_window"] + p["squeeze_history"],
        # Wilder's RSI remembers its whole history; five periods make it settle.
        5 * p["rsi_period"] + 1,
    )


@discovery_strategy(
    "hybrid_v1",
    description="Weighted blend of volatility-adjusted momentum, volume z-score and Bollinger "
    "squeeze, each standardised across the universe, with an RSI filter",
    params={
        "momentum_window": ParamSpec(default=20, low=5, high=120, step=5),
        "volume_window": ParamSpec(default=20, low=10, high=60, step=5),
        "surge_window": ParamSpec(default=3, low=1, high=10, step=1),
        "bb_window": ParamSpec(default=20, low=10, high=40, step=2),
        "squeeze_history": ParamSpec(default=100, low=40, high=250, step=10),
        "rsi_period": ParamSpec(default=14, low=5, high=30, step=1),
        "rsi_low": ParamSpec(default=30.0, low=10.0, high=45.0, step=5.0),
        "rsi_high": ParamSpec(default=85.0, low=55.0, high=90.0, step=5.0),
        # Defaults chosen on the simulated market (top 10 of 60, 40 fortnightly scans, two seeds):
        # about half the picks are in a trending regime against a third of the universe. The
        # squeeze alone picks quiet ranging symbols, so it only nudges.
        "momentum_weight": ParamSpec(default=0.6, low=0.0, high=1.0, step=0.05),
        "volume_weight": ParamSpec(default=0.3, low=0.0, high=1.0, step=0.05),
        "squeeze_weight": ParamSpec(default=0.1, low=0.0, high=1.0, step=0.05),
    },
    lookback=_hybrid_lookback,
)
def hybrid_v1(panel: HistoryPanel, params: Params) -> StrategyScores:
    close = panel.close
    window = params["momentum_window"]
    # Momentum as a t-statistic (move over its own noise), so a volatile symbol's big moves do
    # not outrank a quiet symbol's steady trend.
    move = np.log(close[:, -1] / close[:, -1 - window])
    noise = log_returns(close)[:, -window:].std(axis=1) * np.sqrt(window)
    trend = move / noise

    # Volume is compared with each symbol's own history (time series): share counts differ by
    # orders of magnitude between symbols, so only the blend below compares symbols.
    surge, history = params["surge_window"], params["volume_window"]
    log_volume = np.log(panel.volume)
    usual = log_volume[:, -(surge + history) : -surge]
    volume_z = (log_volume[:, -surge:].mean(axis=1) - usual.mean(axis=1)) / usual.std(axis=1)

    # Positive when the bands are narrower than usual for this symbol: a squeeze before a breakout.
    log_width = np.log(bollinger_width(close, params["bb_window"]))
    squeeze = -rolling_zscore(log_width, params["squeeze_history"])[:, -1]

    strength = rsi(close, params["rsi_period"])[:, -1]
    eligible = (strength >= params["rsi_low"]) & (strength <= params["rsi_high"])

    def standardised(factor: np.ndarray) -> np.ndarray:
        """Cross-sectional z-score among the eligible symbols only, so the excluded do not skew it."""
        return cross_sectional_zscore(np.where(eligible, factor, np.nan))

    score = (
        params["momentum_weight"] * standardised(trend)
        + params["volume_weight"] * standardised(volume_z)
        + params["squeeze_weight"] * standardised(squeeze)
    )
    factors = {"momentum": trend, "volume_z": volume_z, "squeeze": squeeze, "rsi": strength}
    return StrategyScores(score, factors)
