from datetime import timedelta

import numpy as np
import pytest

from orch.agents.composition import compose, validate_plan
from orch.agents.conditions import sense_market
from orch.agents.patterns import analyse_patterns
from orch.contracts.cycle import CompositionResult, PortfolioRiskLimits, RegimeThresholds, StrategyWeights
from orch.contracts.discovery import Candidate
from orch.contracts.trading import Account, Position, Side, StrategyKind, StrategyPlan
from tests.test_agents_support import history_from_returns, now_after, range_bound, uptrend, with_last_bar

ACCOUNT = Account(cash=100_000.0, equity=100_000.0, buying_power=100_000.0)
LIMITS = PortfolioRiskLimits()
UNIFORM = StrategyWeights()


def _market(*histories, with_patterns=True):
    by_symbol = {h.symbol: h for h in histories}
    now = now_after(histories[0])
    snapshot = sense_market(by_symbol, now, RegimeThresholds(), source="synthetic", lookback_bars=200)
    patterns = analyse_patterns(by_symbol, snapshot) if with_patterns else None
    return snapshot, patterns, now


def _candidates(*symbols):
    return [Candidate(symbol=s, score=1.0, rank=i + 1, last_price=100.0) for i, s in enumerate(symbols)]


def _compose(histories, *, account=ACCOUNT, positions=(), limits=LIMITS, weights=UNIFORM, with_patterns=True):
    snapshot, patterns, now = _market(*histories, with_patterns=with_patterns)
    result = compose(
        _candidates(*(h.symbol for h in histories)),
        snapshot,
        patterns,
        account,
        list(positions),
        limits,
        weights,
        now=now,
        plan_id_prefix="cycle-7",
    )
    return result, snapshot, now


def _downtrend(symbol="DOWN"):
    rng = np.random.default_rng(4)
    return history_from_returns(symbol, -0.003 + 0.004 * rng.standard_normal(199))


def test_an_uptrend_breakout_becomes_a_valid_long_plan_sized_by_risk():
    history = with_last_bar(uptrend("UP"), close_factor=1.03, volume_factor=3.0)
    result, snapshot, now = _compose([history])
    assert result.rejected == []
    [composed] = result.plans
    plan = composed.plan
    conditions = snapshot.for_symbol("UP")

    assert plan.side is Side.BUY
    assert plan.strategy in (StrategyKind.BREAKOUT, StrategyKind.TREND)
    assert plan.entry_price == pytest.approx(conditions.last_price)
    assert plan.stop_loss < plan.entry_price < plan.take_profit
    assert plan.entry_price - plan.stop_loss == pytest.approx(LIMITS.stop_atr_multiple * conditions.atr)
    # A calm trend: 1% of equity at risk would buy more than the position limit, which binds.
    assert composed.risk_amount < LIMITS.risk_per_trade * ACCOUNT.equity
    assert plan.quantity * plan.entry_price == pytest.approx(LIMITS.max_position_fraction * ACCOUNT.equity)
    assert plan.valid_until == now + timedelta(minutes=5)
    assert plan.plan_id == f"cycle-7-UP-{plan.strategy.value}"
    assert validate_plan(plan, ACCOUNT, LIMITS) == []
    assert CompositionResult.model_validate_json(result.model_dump_json()) == result


def test_a_stretched_range_gets_a_mean_reversion_plan():
    history = with_last_bar(range_bound("RANGE"), close_factor=0.985)
    result, _, _ = _compose([history])
    [composed] = result.plans
    assert composed.plan.strategy is StrategyKind.MEAN_REVERSION
    assert composed.plan.side is Side.BUY
    assert composed.plan.take_profit - composed.plan.entry_price == pytest.approx(
        1.5 * (composed.plan.entry_price - composed.plan.stop_loss)
    )


def test_learned_weights_decide_between_strategies_with_signals():
    history = with_last_bar(uptrend("UP"), close_factor=1.03, volume_factor=3.0)
    trend_heavy = StrategyWeights({"trend": 0.85, "breakout": 0.05, "mean_reversion": 0.05, "generic": 0.05})
    breakout_heavy = StrategyWeights(
        {"trend": 0.05, "breakout": 0.85, "mean_reversion": 0.05, "generic": 0.05}
    )
    assert _compose([history], weights=trend_heavy)[0].plans[0].plan.strategy is StrategyKind.TREND
    assert _compose([history], weights=breakout_heavy)[0].plans[0].plan.strategy is StrategyKind.BREAKOUT


def test_without_patterns_only_the_trend_strategy_can_plan():
    result, _, _ = _compose([uptrend("UP"), range_bound("RANGE")], with_patterns=False)
    assert [(c.plan.symbol, c.plan.strategy) for c in result.plans] == [("UP", StrategyKind.TREND)]
    [rejected] = result.rejected
    assert rejected.symbol == "RANGE" and "no strategy fits a ranging market" in rejected.reasons[0]


def test_a_strategy_at_the_weight_floor_still_trades_when_it_alone_has_a_signal():
    starved = StrategyWeights({"trend": 0.05, "breakout": 0.35, "mean_reversion": 0.3, "generic": 0.3})
    result, _, _ = _compose([uptrend("UP")], weights=starved, with_patterns=False)
    assert [c.plan.strategy for c in result.plans] == [StrategyKind.TREND]


def test_short_selling_is_refused_unless_allowed():
    result, _, _ = _compose([_downtrend()])
    assert result.plans == []
    assert "short selling is disabled" in result.rejected[0].reasons[0]

    shorting = LIMITS.model_copy(update={"allow_short": True})
    allowed, _, _ = _compose([_downtrend()], limits=shorting)
    [composed] = allowed.plans
    plan = composed.plan
    assert plan.side is Side.SELL
    assert plan.take_profit < plan.entry_price < plan.stop_loss
    assert validate_plan(plan, ACCOUNT, shorting) == []


def test_the_position_limit_caps_the_size_and_counts_what_is_held():
    history = uptrend("UP")
    generous = LIMITS.model_copy(update={"risk_per_trade": 0.1})
    result, snapshot, _ = _compose([history], limits=generous)
    price = snapshot.for_symbol("UP").last_price
    assert result.plans[0].plan.quantity * price == pytest.approx(10_000.0, rel=1e-6)

    held = Position(symbol="UP", quantity=6_000.0 / price, market_price=price)
    result, _, _ = _compose([history], limits=generous, positions=[held])
    assert result.plans[0].plan.quantity * price == pytest.approx(4_000.0, rel=1e-6)


def test_without_a_binding_position_limit_each_plan_risks_its_budget_to_the_stop():
    loose = LIMITS.model_copy(update={"max_position_fraction": 1.0})
    margin = Account(cash=100_000.0, equity=100_000.0, buying_power=400_000.0)
    histories = [uptrend("A", seed=1), with_last_bar(range_bound("B"), close_factor=0.985)]
    result, _, _ = _compose(histories, account=margin, limits=loose)
    assert len(result.plans) == 2
    for composed in result.plans:
        plan = composed.plan
        assert composed.risk_amount == pytest.approx(loose.risk_per_trade * ACCOUNT.equity, rel=1e-4)
        assert plan.quantity * abs(plan.entry_price - plan.stop_loss) == pytest.approx(composed.risk_amount)


def test_plans_of_one_cycle_share_the_buying_power():
    histories = [uptrend("A", seed=1), uptrend("B", seed=2), uptrend("C", seed=3)]
    poor = Account(cash=15_000.0, equity=100_000.0, buying_power=15_000.0)
    generous = LIMITS.model_copy(update={"risk_per_trade": 0.1})
    result, _, _ = _compose(histories, account=poor, limits=generous)
    notionals = [c.plan.quantity * c.plan.entry_price for c in result.plans]
    assert [c.plan.symbol for c in result.plans] == ["A", "B"]
    assert notionals[0] == pytest.approx(10_000.0, rel=1e-6)
    assert notionals[1] == pytest.approx(5_000.0, rel=1e-6)
    assert sum(notionals) <= poor.buying_power + 1e-6
    assert "buying power" in result.rejected[0].reasons[0]


def test_a_position_held_the_other_way_is_left_to_the_position_manager():
    result, _, _ = _compose(
        [uptrend("UP")], positions=[Position(symbol="UP", quantity=-5.0, market_price=150.0)]
    )
    assert result.plans == []
    assert "position manager" in result.rejected[0].reasons[0]


def test_candidates_without_usable_data_and_beyond_the_plan_limit_are_rejected_with_reasons():
    histories = [uptrend("A", seed=1), uptrend("B", seed=2), uptrend("SHORT", bars=10)]
    result, _, _ = _compose(histories, limits=LIMITS.model_copy(update={"max_plans_per_cycle": 1}))
    assert [c.plan.symbol for c in result.plans] == ["A"]
    reasons = {r.symbol: r.reasons for r in result.rejected}
    assert "limit of 1 plans" in reasons["B"][0]
    assert "data unusable" in reasons["SHORT"][0] and "bars" in reasons["SHORT"][0]


def _plan(**changes) -> StrategyPlan:
    fields = dict(
        plan_id="p",
        symbol="X",
        strategy=StrategyKind.TREND,
        side=Side.BUY,
        quantity=10.0,
        entry_price=100.0,
        stop_loss=95.0,
        take_profit=110.0,
        valid_until="2025-01-01T00:00:00Z",
    )
    return StrategyPlan(**{**fields, **changes})


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"stop_loss": 101.0}, "stop < entry < target"),
        ({"side": Side.SELL, "stop_loss": 105.0, "take_profit": 90.0}, "short selling is disabled"),
        ({"side": Side.SELL}, "target < entry < stop"),
        ({"quantity": 200.0}, "above the limit"),
        ({"quantity": 0.05}, "below the minimum"),
        ({"entry_price": None}, "no entry price"),
    ],
)
def test_validate_plan_names_each_problem(changes, problem):
    problems = validate_plan(_plan(**changes), ACCOUNT, LIMITS)
    assert any(problem in p for p in problems), problems


def test_validate_plan_checks_buying_power():
    assert validate_plan(_plan(), ACCOUNT, LIMITS) == []
    assert "buying power" in validate_plan(_plan(), ACCOUNT, LIMITS, buying_power_left=500.0)[0]
