"""Learning (step 8): new strategy weights and regime thresholds from realised trade outcomes.

Weights follow Hedge (exponential weights): each strategy's weight is multiplied by
exp(learning_rate x its clipped mean R-multiple), then the weights are normalised and lifted to a
floor, so a strategy in a bad spell keeps a small share and can show that it recovered.

Thresholds move by small multiplicative steps, bounded, toward classifying the markets that lost money
differently: trend trades losing in "trending" markets raise the trend threshold, mean-reversion trades
losing in "ranging" markets lower it; breakouts losing in "volatile" markets raise the volatility
threshold, trades losing in calm markets lower it. Winners push the other way.

Everything is a pure function of its inputs (no clock, no randomness), so a replay learns the same.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from orch.contracts.cycle import (
    LearningSettings,
    LearningState,
    LearningUpdate,
    RegimeThresholds,
    StrategyRecord,
    StrategyWeights,
    TradeOutcome,
)
from orch.contracts.market import Regime
from orch.contracts.trading import StrategyKind


def strategy_rewards(outcomes: Sequence[TradeOutcome], clip: float) -> dict[StrategyKind, float]:
    """Each strategy's mean R-multiple over `outcomes`, every trade clipped to ±clip first."""
    by_kind: dict[StrategyKind, list[float]] = {}
    for outcome in outcomes:
        by_kind.setdefault(outcome.strategy, []).append(_clipped(outcome.r_multiple, clip))
    return {kind: sum(rs) / len(rs) for kind in StrategyKind if (rs := by_kind.get(kind))}


def hedge_update(
    weights: StrategyWeights, rewards: Mapping[StrategyKind, float], learning_rate: float, floor: float
) -> StrategyWeights:
    """One Hedge step; strategies without a reward keep their weight relative to each other."""
    # Shift by the largest exponent so exp never overflows, whatever the rewards.
    exponents = {kind: learning_rate * rewards.get(kind, 0.0) for kind in StrategyKind}
    shift = max(exponents.values())
    raw = {kind: weights.of(kind) * math.exp(exponents[kind] - shift) for kind in StrategyKind}
    return StrategyWeights(with_floor(raw, floor))


def with_floor(weights: Mapping[StrategyKind, float], floor: float) -> dict[StrategyKind, float]:
    """Normalise `weights`, then lift any below `floor` to it, taking the mass from the others pro rata."""
    if floor * len(weights) >= 1:
        raise ValueError(f"a floor of {floor} leaves nothing to learn across {len(weights)} strategies")
    total = sum(weights.values())
    result = {kind: w / total for kind, w in weights.items()}
    pinned: set[StrategyKind] = set()
    # Lifting some weights shrinks the rest, which may push another below the floor: repeat until none is.
    while below := {kind for kind, w in result.items() if kind not in pinned and w < floor}:
        pinned |= below
        free_total = sum(w for kind, w in weights.items() if kind not in pinned)
        free_mass = 1.0 - floor * len(pinned)
        result = {
            kind: floor if kind in pinned else free_mass * weights[kind] / free_total for kind in weights
        }
    return result


def refine_thresholds(
    thresholds: RegimeThresholds, outcomes: Sequence[TradeOutcome], settings: LearningSettings
) -> tuple[RegimeThresholds, list[str]]:
    """Nudge the regime thresholds from outcomes that carry the regime they were traded in."""
    trend_votes: list[float] = []
    vol_votes: list[float] = []
    for outcome in outcomes:
        r = _clipped(outcome.r_multiple, settings.reward_clip)
        if outcome.strategy is StrategyKind.TREND and outcome.regime is Regime.TRENDING:
            trend_votes.append(-r)  # a losing trend trade: that market was not trending enough
        elif outcome.strategy is StrategyKind.MEAN_REVERSION and outcome.regime is Regime.RANGING:
            trend_votes.append(r)  # a losing range trade: that market was trending after all
        if outcome.strategy is StrategyKind.BREAKOUT and outcome.regime is Regime.VOLATILE:
            vol_votes.append(-r)
        elif outcome.regime in (Regime.TRENDING, Regime.RANGING):
            vol_votes.append(r)  # a loss in a "calm" market: call volatility sooner

    step = settings.threshold_step
    trend = _nudged(thresholds.trend_efficiency, trend_votes, step, settings.trend_efficiency_bounds)
    volatility = _nudged(thresholds.volatility_ratio, vol_votes, step, settings.volatility_ratio_bounds)
    notes = []
    if trend != thresholds.trend_efficiency:
        notes.append(
            f"trend threshold {thresholds.trend_efficiency:.3f} -> {trend:.3f} ({len(trend_votes)} outcomes)"
        )
    if volatility != thresholds.volatility_ratio:
        notes.append(
            f"volatility threshold {thresholds.volatility_ratio:.3f} -> {volatility:.3f} "
            f"({len(vol_votes)} outcomes)"
        )
    return RegimeThresholds(trend_efficiency=trend, volatility_ratio=volatility), notes


def learn(
    state: LearningState, outcomes: Sequence[TradeOutcome], settings: LearningSettings | None = None
) -> LearningUpdate:
    """Step 8: the new learning state after this cycle's realised outcomes (unchanged if there are none)."""
    settings = settings or LearningSettings()
    if not outcomes:
        return LearningUpdate(state=state, notes=["no realised outcomes: weights and thresholds unchanged"])

    rewards = strategy_rewards(outcomes, settings.reward_clip)
    weights = hedge_update(state.weights, rewards, settings.learning_rate, settings.weight_floor)
    thresholds, notes = refine_thresholds(state.thresholds, outcomes, settings)

    records = dict(state.records)
    for outcome in outcomes:
        record = records.get(outcome.strategy, StrategyRecord())
        records[outcome.strategy] = StrategyRecord(
            trades=record.trades + 1, total_r=record.total_r + outcome.r_multiple
        )
    weight_notes = [
        f"{kind.value} weight {state.weights.of(kind):.3f} -> {weights.of(kind):.3f} (mean R {reward:+.2f})"
        for kind, reward in rewards.items()
    ]
    new_state = LearningState(
        weights=weights, thresholds=thresholds, updates=state.updates + 1, records=records
    )
    return LearningUpdate(state=new_state, rewards=rewards, notes=weight_notes + notes)


def _clipped(value: float, limit: float) -> float:
    return max(-limit, min(limit, value))


def _nudged(value: float, votes: Sequence[float], step: float, bounds: tuple[float, float]) -> float:
    if not votes:
        return value
    low, high = bounds
    return max(low, min(high, value * math.exp(step * sum(votes) / len(votes))))
