import numpy as np
import pytest

from orch.agents.risk import RISK_BARS, evaluate_risk, historical_var, return_matrix, returns_entropy
from orch.contracts.cycle import PortfolioRiskLimits, RiskAssessment, RiskVerdict
from orch.contracts.trading import Account, Position, Side, StrategyKind, StrategyPlan
from tests.test_agents_support import random_walk, uptrend

ACCOUNT = Account(cash=100_000.0, equity=100_000.0, buying_power=100_000.0)
LIMITS = PortfolioRiskLimits()
HISTORIES = {
    s: random_walk(s, bars=300, noise=0.01, seed=i) for i, s in enumerate(["AAA", "BBB", "CCC", "DDD"])
}


def _plan(symbol="AAA", quantity=10.0, stop_distance=2.0, side=Side.BUY) -> StrategyPlan:
    entry = float(HISTORIES[symbol].close[-1])
    direction = 1.0 if side is Side.BUY else -1.0
    return StrategyPlan(
        plan_id=f"p-{symbol}",
        symbol=symbol,
        strategy=StrategyKind.TREND,
        side=side,
        quantity=quantity,
        entry_price=entry,
        stop_loss=entry - direction * stop_distance,
        take_profit=entry + direction * 3 * stop_distance,
        valid_until="2025-01-01T00:00:00Z",
    )


def _notional(symbol: str, fraction: float) -> float:
    """The quantity of `symbol` worth `fraction` of equity at its last close."""
    return fraction * ACCOUNT.equity / float(HISTORIES[symbol].close[-1])


def test_historical_var_and_cvar_of_a_normal_sample_match_the_analytical_values():
    pnl = np.random.default_rng(0).normal(0.0, 1_000.0, 200_000)
    var, cvar = historical_var(pnl, 0.95)
    assert var == pytest.approx(1_644.85, rel=0.02)  # 1.645 sd
    assert cvar == pytest.approx(2_062.71, rel=0.02)  # pdf(1.645) / 0.05 sd
    var99, _ = historical_var(pnl, 0.99)
    assert var99 == pytest.approx(2_326.35, rel=0.02)


def test_var_of_a_sample_that_only_gains_is_zero():
    assert historical_var(np.linspace(1.0, 10.0, 100), 0.95) == (0.0, 0.0)


def test_entropy_is_higher_for_noisy_than_for_constant_sign_returns():
    rng = np.random.default_rng(1)
    noisy = returns_entropy(0.01 * rng.standard_normal(250))
    steady = returns_entropy(0.01 + 0.001 * rng.standard_normal(250))
    one_sided = returns_entropy(np.abs(0.01 * rng.standard_normal(250)))
    assert steady < 0.1
    assert one_sided < noisy
    assert 0.75 < noisy <= 1.0
    assert returns_entropy(np.zeros(50)) == 0.0


def test_return_matrix_lines_symbols_up_on_their_common_bars():
    short = HISTORIES["BBB"]
    trimmed = type(short)(
        short.symbol,
        *(getattr(short, f)[50:] for f in ("timestamps", "open", "high", "low", "close", "volume")),
    )
    matrix = return_matrix({"AAA": HISTORIES["AAA"], "BBB": trimmed}, ["AAA", "BBB"])
    assert matrix.shape == (249, 2)
    aaa = HISTORIES["AAA"].close
    assert matrix[0, 0] == pytest.approx(aaa[51] / aaa[50] - 1)  # the first return both have


def test_a_small_plan_is_approved_as_it_is():
    plan = _plan(quantity=_notional("AAA", 0.02))
    assessment = evaluate_risk([plan], ACCOUNT, [], HISTORIES, LIMITS)
    [decision] = assessment.decisions
    assert decision.verdict is RiskVerdict.APPROVE
    assert decision.approved == plan
    assert assessment.approved_plans == [plan]
    assert assessment.before.gross_exposure == 0
    assert assessment.after.gross_exposure == pytest.approx(0.02)


def test_a_plan_risking_too_much_is_scaled_down_to_the_budget_with_a_reason():
    entry = float(HISTORIES["AAA"].close[-1])
    stop_distance = 0.25 * entry  # a wide stop: 5% of equity risked on a 20% position
    plan = _plan(quantity=_notional("AAA", 0.2), stop_distance=stop_distance)
    limits = LIMITS.model_copy(update={"max_position_fraction": 0.5, "max_var_fraction": 0.5})
    [decision] = evaluate_risk([plan], ACCOUNT, [], HISTORIES, limits).decisions
    assert decision.verdict is RiskVerdict.SCALE_DOWN
    assert any("per-trade budget" in r for r in decision.reasons)
    assert decision.approved.quantity < plan.quantity
    at_risk = decision.approved.quantity * stop_distance
    assert at_risk == pytest.approx(limits.risk_per_trade * ACCOUNT.equity, rel=1e-4)
    # Only the size changes.
    assert decision.approved.model_dump(exclude={"quantity"}) == plan.model_dump(exclude={"quantity"})


def test_concentration_counts_the_position_already_held():
    price = float(HISTORIES["AAA"].close[-1])
    held = Position(symbol="AAA", quantity=_notional("AAA", 0.07), market_price=price)
    plan = _plan(quantity=_notional("AAA", 0.05), stop_distance=0.01 * price)
    [decision] = evaluate_risk([plan], ACCOUNT, [held], HISTORIES, LIMITS).decisions
    assert decision.verdict is RiskVerdict.SCALE_DOWN
    assert any("would exceed 10% of equity" in r for r in decision.reasons)
    assert decision.approved.quantity * price == pytest.approx(3_000.0, rel=1e-4)


def test_gross_exposure_is_shared_by_the_plans_in_order():
    positions = [
        Position(symbol=s, quantity=_notional(s, 0.3), market_price=float(HISTORIES[s].close[-1]))
        for s in ("BBB", "CCC", "DDD")
    ]
    first = _plan("AAA", quantity=_notional("AAA", 0.06), stop_distance=0.5)
    second = _plan("AAA", quantity=_notional("AAA", 0.08), stop_distance=0.5).model_copy(
        update={"plan_id": "p2"}
    )
    limits = LIMITS.model_copy(update={"max_var_fraction": 1.0, "max_position_fraction": 0.5})
    decisions = evaluate_risk([first, second], ACCOUNT, positions, HISTORIES, limits).decisions
    assert [d.verdict for d in decisions] == [RiskVerdict.APPROVE, RiskVerdict.SCALE_DOWN]
    assert decisions[1].reasons[0].startswith("gross exposure would reach 104% of equity")
    # 90% held and 6% just approved leave 4% of equity.
    assert decisions[1].approved.quantity * first.entry_price == pytest.approx(4_000.0, rel=1e-4)


def test_a_tight_var_limit_scales_the_plan_until_the_portfolio_fits():
    plan = _plan(quantity=_notional("AAA", 0.1), stop_distance=0.5)
    limits = LIMITS.model_copy(update={"max_var_fraction": 0.0005})
    assessment = evaluate_risk([plan], ACCOUNT, [], HISTORIES, limits)
    [decision] = assessment.decisions
    assert decision.verdict is RiskVerdict.SCALE_DOWN
    assert any("VaR" in r for r in decision.reasons)
    assert assessment.after.var <= limits.max_var_fraction * ACCOUNT.equity * 1.0001
    assert assessment.after.var > 0.9 * limits.max_var_fraction * ACCOUNT.equity  # as much as fits, not less


def test_uncertain_returns_halve_the_plan():
    plan = _plan(quantity=_notional("AAA", 0.05), stop_distance=0.5)
    limits = LIMITS.model_copy(update={"max_entropy": 0.1})
    [decision] = evaluate_risk([plan], ACCOUNT, [], HISTORIES, limits).decisions
    assert decision.verdict is RiskVerdict.SCALE_DOWN
    assert any("too uncertain" in r for r in decision.reasons)
    assert decision.approved.quantity == pytest.approx(plan.quantity / 2, rel=1e-5)


def test_deep_drawdown_rejects_new_entries_as_an_outcome():
    plan = _plan(quantity=_notional("AAA", 0.02))
    assessment = evaluate_risk([plan], ACCOUNT, [], HISTORIES, LIMITS, peak_equity=130_000.0)
    [decision] = assessment.decisions
    assert decision.verdict is RiskVerdict.REJECT
    assert decision.approved is None
    assert "drawdown 23.1%" in decision.reasons[0]
    assert assessment.before.drawdown == pytest.approx(1 - 100 / 130)
    assert assessment.approved_plans == []


def test_a_plan_with_no_room_left_is_rejected_with_every_reason():
    price = float(HISTORIES["AAA"].close[-1])
    held = Position(symbol="AAA", quantity=_notional("AAA", 0.1), market_price=price)
    [decision] = evaluate_risk(
        [_plan(quantity=_notional("AAA", 0.02))], ACCOUNT, [held], HISTORIES, LIMITS
    ).decisions
    assert decision.verdict is RiskVerdict.REJECT
    assert any("would exceed 10%" in r for r in decision.reasons)
    assert "below the minimum" in decision.reasons[-1]


def test_a_symbol_without_history_is_rejected():
    trend = uptrend("NEW", bars=10)
    plan = _plan(quantity=_notional("AAA", 0.02)).model_copy(update={"symbol": "NEW"})
    [decision] = evaluate_risk([plan], ACCOUNT, [], {**HISTORIES, "NEW": trend}, LIMITS).decisions
    assert decision.verdict is RiskVerdict.REJECT
    assert "too little return history" in decision.reasons[0]


def test_the_assessment_serialises_and_reports_exposure():
    positions = [
        Position(
            symbol="BBB", quantity=-_notional("BBB", 0.05), market_price=float(HISTORIES["BBB"].close[-1])
        )
    ]
    assessment = evaluate_risk(
        [_plan(quantity=_notional("AAA", 0.02))], ACCOUNT, positions, HISTORIES, LIMITS
    )
    assert assessment.before.net_exposure == pytest.approx(-0.05)
    assert assessment.after.gross_exposure == pytest.approx(0.07)
    assert assessment.after.largest_position == pytest.approx(0.05)
    assert assessment.after.var > 0 and assessment.after.cvar >= assessment.after.var
    assert assessment.after.observations == RISK_BARS
    assert RiskAssessment.model_validate_json(assessment.model_dump_json()) == assessment


def test_a_position_without_bars_counts_in_exposure_but_not_in_var():
    positions = [Position(symbol="GONE", quantity=100.0, market_price=50.0)]
    assessment = evaluate_risk(
        [_plan(quantity=_notional("AAA", 0.02))], ACCOUNT, positions, HISTORIES, LIMITS
    )
    assert assessment.before.gross_exposure == pytest.approx(0.05)
    assert assessment.before.var == 0
    assert assessment.notes == ["no bars for held GONE: left out of VaR and entropy"]
    assert assessment.decisions[0].verdict is RiskVerdict.APPROVE
