"""Re-warming the market-conditions agent on a new data source: regime thresholds by quantile mapping.

The regime thresholds (efficiency ratio for "trending", volatility ratio for "volatile") were learned on
the bars of the source in use. Another source (another feed, another universe, real bars instead of
simulated ones) spreads those two statistics differently, so the same numbers would classify a
different share of the market as trending or volatile, and every strategy choice downstream would
shift. Calibration keeps the regime mix: it measures, bar by bar, the share of the reference
(previous) source's bars that the current thresholds call volatile, and among the calm ones trending,
then picks the thresholds that classify the same shares of the new source's bars the same way
(quantiles), clamped to the learning bounds. The learned strategy weights are kept.

Pure numpy over `PriceHistory`, no clock: the same bars always calibrate the same.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from orch.agents.conditions import LONG_WINDOW, REGIME_WINDOW, VOLATILITY_WINDOW, classify_regime
from orch.agents.discovery import indicators
from orch.contracts.cycle import LearningSettings, RegimeThresholds
from orch.contracts.market import Regime
from orch.market.base import PriceHistory

# Fewer (efficiency, volatility) points than this, and a share measured on them means little.
MIN_POINTS = 50
# A threshold that already classifies the reference's share of the new bars, within this, is kept.
SHARE_TOLERANCE = 0.005


def regime_statistics(history: PriceHistory) -> tuple[np.ndarray, np.ndarray]:
    """(efficiency ratio, volatility ratio) at every bar where both are defined, computed as the
    market-conditions agent computes them at its last bar (conditions.efficiency_ratio, volatility_ratio)."""
    close = np.asarray(history.close, dtype=float)
    if len(close) <= LONG_WINDOW + 1:
        return np.empty(0), np.empty(0)
    moves = np.abs(np.diff(close))
    travelled = np.concatenate([[0.0], np.cumsum(moves)])
    # At bar t: |close[t] - close[t - w]| over the path travelled in those w bars.
    net = np.abs(close[REGIME_WINDOW:] - close[:-REGIME_WINDOW])
    path = travelled[REGIME_WINDOW:] - travelled[:-REGIME_WINDOW]
    efficiency = np.full(len(close), np.nan)
    efficiency[REGIME_WINDOW:] = np.minimum(np.divide(net, path, out=np.zeros_like(net), where=path > 0), 1.0)
    recent = indicators.realized_volatility(close, VOLATILITY_WINDOW)
    long_run = indicators.realized_volatility(close, LONG_WINDOW)
    ratio = np.divide(recent, long_run, out=np.ones_like(recent), where=long_run > 0)
    ratio[np.isnan(long_run) | np.isnan(recent)] = np.nan
    defined = np.isfinite(efficiency) & np.isfinite(ratio)
    return efficiency[defined], ratio[defined]


def regime_mix(
    efficiency: np.ndarray, volatility: np.ndarray, thresholds: RegimeThresholds
) -> dict[str, float]:
    """The share of bars in each regime under `thresholds` (classify_regime's order: volatile first)."""
    if not len(efficiency):
        return {}
    labels = [classify_regime(e, v, thresholds) for e, v in zip(efficiency, volatility, strict=True)]
    return {regime.value: round(labels.count(regime) / len(labels), 4) for regime in Regime}


@dataclass
class Calibration:
    thresholds: RegimeThresholds
    reference_mix: dict[str, float] = field(default_factory=dict)
    new_mix: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _pooled(histories: Iterable[PriceHistory]) -> tuple[np.ndarray, np.ndarray]:
    pairs = [regime_statistics(h) for h in histories]
    if not pairs:
        return np.empty(0), np.empty(0)
    return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])


def _mapped(share_above: float, values: np.ndarray, current: float, bounds: tuple[float, float]) -> float:
    """The value above which `share_above` of `values` lie, within `bounds`. `current` when it already
    puts that share above it (within half a percent), or when the share is undefined."""
    if not len(values) or not 0.0 < share_above < 1.0:
        return current
    if abs(float(np.mean(values >= current)) - share_above) <= SHARE_TOLERANCE:
        return current
    low, high = bounds
    return float(min(max(np.quantile(values, 1.0 - share_above), low), high))


def calibrate_thresholds(
    current: RegimeThresholds,
    reference: Iterable[PriceHistory],
    new: Iterable[PriceHistory],
    settings: LearningSettings | None = None,
) -> Calibration:
    """Thresholds for the `new` source's bars that keep the regime mix `current` gives on `reference`."""
    settings = settings or LearningSettings()
    ref_efficiency, ref_volatility = _pooled(reference)
    new_efficiency, new_volatility = _pooled(new)
    if len(new_efficiency) < MIN_POINTS:
        return Calibration(
            current, notes=[f"{len(new_efficiency)} bars measurable on the new source: thresholds kept"]
        )
    if len(ref_efficiency) < MIN_POINTS:
        return Calibration(
            current,
            new_mix=regime_mix(new_efficiency, new_volatility, current),
            notes=[f"{len(ref_efficiency)} bars measurable on the previous source: thresholds kept"],
        )

    volatile_share = float(np.mean(ref_volatility >= current.volatility_ratio))
    volatility = _mapped(
        volatile_share, new_volatility, current.volatility_ratio, settings.volatility_ratio_bounds
    )
    calm_ref = ref_volatility < current.volatility_ratio
    trending_share = (
        float(np.mean(ref_efficiency[calm_ref] >= current.trend_efficiency)) if calm_ref.any() else 0.0
    )
    trend = _mapped(
        trending_share,
        new_efficiency[new_volatility < volatility],
        current.trend_efficiency,
        settings.trend_efficiency_bounds,
    )
    thresholds = RegimeThresholds(trend_efficiency=trend, volatility_ratio=volatility)
    notes = [
        f"trend threshold {current.trend_efficiency:.3f} -> {trend:.3f}, "
        f"volatility threshold {current.volatility_ratio:.3f} -> {volatility:.3f} "
        f"({len(ref_efficiency)} reference bars, {len(new_efficiency)} new bars)"
    ]
    return Calibration(
        thresholds,
        reference_mix=regime_mix(ref_efficiency, ref_volatility, current),
        new_mix=regime_mix(new_efficiency, new_volatility, thresholds),
        notes=notes,
    )
