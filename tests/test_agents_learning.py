import pytest

from orch.agents.learning import hedge_update, learn, with_floor
from orch.contracts.cycle import (
    LearningSettings,
    LearningState,
    RegimeThresholds,
    StrategyWeights,
    TradeOutcome,
)
from orch.contracts.market import Regime
from orch.contracts.trading import StrategyKind

SETTINGS = LearningSettings()


def _outcome(kind: StrategyKind, r: float, regime: Regime | None = None, n: int = 0) -> TradeOutcome:
    return TradeOutcome(
        plan_id=f"{kind.value}-{n}",
        symbol="X",
        strategy=kind,
        pnl=100.0 * r,
        risk_amount=100.0,
        regime=regime,
    )


def test_hedge_shifts_weight_toward_the_winning_strategy():
    outcomes = [
        _outcome(StrategyKind.TREND, 2.0),
        _outcome(StrategyKind.MEAN_REVERSION, -1.0),
        _outcome(StrategyKind.BREAKOUT, -1.0),
    ]
    update = learn(LearningState(), outcomes, SETTINGS)
    weights = update.state.weights
    assert weights.of(StrategyKind.TREND) > 0.25
    assert weights.of(StrategyKind.MEAN_REVERSION) < 0.25
    assert weights.of(StrategyKind.BREAKOUT) == pytest.approx(weights.of(StrategyKind.MEAN_REVERSION))
    # No outcome for generic: its weight moves only through normalisation.
    assert (
        weights.of(StrategyKind.TREND) > weights.of(StrategyKind.GENERIC) > weights.of(StrategyKind.BREAKOUT)
    )
    assert sum(weights.root.values()) == pytest.approx(1.0)
    assert update.rewards == {
        StrategyKind.TREND: 2.0,
        StrategyKind.MEAN_REVERSION: -1.0,
        StrategyKind.BREAKOUT: -1.0,
    }
    assert update.state.updates == 1
    assert update.notes[0].startswith("trend weight 0.250 ->")


def test_a_losing_strategy_never_falls_below_the_floor():
    state = LearningState()
    for i in range(200):
        state = learn(
            state, [_outcome(StrategyKind.GENERIC, -3.0, n=i), _outcome(StrategyKind.TREND, 1.0, n=i)]
        ).state
    assert state.weights.of(StrategyKind.GENERIC) == pytest.approx(SETTINGS.weight_floor)
    assert min(state.weights.root.values()) >= SETTINGS.weight_floor - 1e-12
    assert state.weights.of(StrategyKind.TREND) > 0.8
    assert state.records[StrategyKind.GENERIC].trades == 200
    assert state.records[StrategyKind.GENERIC].total_r == pytest.approx(-600.0)

    # And it recovers once it wins again.
    recovered = learn(state, [_outcome(StrategyKind.GENERIC, 3.0, n=999)]).state
    assert recovered.weights.of(StrategyKind.GENERIC) > SETTINGS.weight_floor


def test_one_huge_win_counts_no_more_than_the_clip():
    huge = learn(LearningState(), [_outcome(StrategyKind.BREAKOUT, 100.0)]).state.weights
    clipped = learn(LearningState(), [_outcome(StrategyKind.BREAKOUT, SETTINGS.reward_clip)]).state.weights
    assert huge == clipped


def test_learning_is_deterministic_and_ignores_outcome_order():
    outcomes = [
        _outcome(k, r, n=i) for i, (k, r) in enumerate(zip(StrategyKind, [1.5, -0.5, 0.2, -1.0], strict=True))
    ]
    first = learn(LearningState(), outcomes)
    assert learn(LearningState(), outcomes) == first
    reordered = learn(LearningState(), list(reversed(outcomes))).state.weights
    for kind in StrategyKind:
        assert reordered.of(kind) == pytest.approx(first.state.weights.of(kind))


def test_no_outcomes_leave_everything_as_it_was():
    state = LearningState(
        weights=StrategyWeights({"trend": 4, "mean_reversion": 3, "breakout": 2, "generic": 1})
    )
    update = learn(state, [])
    assert update.state == state
    assert update.rewards == {}


def test_with_floor_lifts_the_starved_and_keeps_the_rest_in_proportion():
    lifted = with_floor(
        {
            StrategyKind.TREND: 0.9,
            StrategyKind.MEAN_REVERSION: 0.09,
            StrategyKind.BREAKOUT: 0.0099,
            StrategyKind.GENERIC: 0.0001,
        },
        0.05,
    )
    assert lifted[StrategyKind.BREAKOUT] == lifted[StrategyKind.GENERIC] == 0.05
    assert lifted[StrategyKind.TREND] / lifted[StrategyKind.MEAN_REVERSION] == pytest.approx(10.0)
    assert sum(lifted.values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="floor"):
        with_floor(dict.fromkeys(StrategyKind, 1.0), 0.25)


def test_hedge_update_with_no_rewards_is_the_identity():
    weights = StrategyWeights({"trend": 0.4, "mean_reversion": 0.3, "breakout": 0.2, "generic": 0.1})
    assert hedge_update(weights, {}, 0.5, 0.05).root == pytest.approx(weights.root)


def test_losing_trend_trades_raise_the_trend_threshold_and_losing_range_trades_lower_it():
    start = LearningState()
    trend_losses = [_outcome(StrategyKind.TREND, -1.0, Regime.TRENDING, n) for n in range(3)]
    raised = learn(start, trend_losses).state.thresholds
    assert raised.trend_efficiency > start.thresholds.trend_efficiency

    range_losses = [_outcome(StrategyKind.MEAN_REVERSION, -1.0, Regime.RANGING, n) for n in range(3)]
    lowered = learn(start, range_losses).state.thresholds
    assert lowered.trend_efficiency < start.thresholds.trend_efficiency
    # Losing in calm markets also makes the volatility line more cautious.
    assert lowered.volatility_ratio < start.thresholds.volatility_ratio


def test_losing_breakouts_in_volatile_markets_raise_the_volatility_threshold_within_bounds():
    state = LearningState(thresholds=RegimeThresholds(volatility_ratio=2.9))
    for i in range(100):
        state = learn(state, [_outcome(StrategyKind.BREAKOUT, -2.0, Regime.VOLATILE, i)]).state
    assert state.thresholds.volatility_ratio == SETTINGS.volatility_ratio_bounds[1]
    assert state.thresholds.trend_efficiency == RegimeThresholds().trend_efficiency  # untouched


def test_outcomes_without_a_regime_move_no_threshold():
    update = learn(LearningState(), [_outcome(StrategyKind.TREND, -1.0)])
    assert update.state.thresholds == RegimeThresholds()
    assert update.state.weights != StrategyWeights()


def test_weights_survive_any_number_of_serialisation_round_trips_unchanged() -> None:
    """Each hop (an activity's result, continue-as-new, a query) validates the weights again: normalising
    normalised weights must not move their last digit, or the engine and SystemState disagree."""
    # Found by search: normalising these once more moves a last digit.
    raw = (0.6348606582851885, 0.8680453071432968, 0.5231812103833013, 0.7412518562014903)
    weights = StrategyWeights.model_validate(
        dict(zip(("trend", "mean_reversion", "breakout", "generic"), raw, strict=True))
    )
    again = weights
    for _ in range(50):
        again = StrategyWeights.model_validate_json(again.model_dump_json())
    assert again == weights
