from datetime import timedelta

import pytest

from orch.agents.composition import compose
from orch.agents.conditions import sense_market
from orch.agents.health import evaluate_health
from orch.agents.patterns import analyse_patterns
from orch.agents.reporting import build_cycle_report
from orch.agents.risk import evaluate_risk
from orch.cli.cycle_report import render_markdown, render_text
from orch.contracts.commands import CommandStatus, StepReport
from orch.contracts.cycle import (
    AdapterHealth,
    CycleOutcome,
    CycleReport,
    CycleStep,
    ExecutionSummary,
    HealthFigures,
    HealthThresholds,
    LearningState,
    PortfolioRiskLimits,
    RegimeThresholds,
    RiskVerdict,
    cycle_outcome,
)
from orch.contracts.discovery import Candidate
from orch.contracts.market import Regime
from orch.contracts.trading import Account
from tests.test_agents_support import now_after, range_bound, uptrend, with_last_bar


def _steps(failed: CycleStep | None = None) -> list[StepReport]:
    steps = []
    for step in CycleStep:
        if step is failed:
            steps.append(
                StepReport(name=step.value, status=CommandStatus.FAILED, attempts=3, error="boom | bang")
            )
        else:
            steps.append(
                StepReport(name=step.value, status=CommandStatus.COMPLETED, attempts=1, summary="ok")
            )
    return steps


@pytest.mark.parametrize(
    ("failed", "outcome"),
    [
        (None, CycleOutcome.COMPLETED),
        (CycleStep.ANALYSE_PATTERNS, CycleOutcome.DEGRADED),
        (CycleStep.MONITOR_HEALTH, CycleOutcome.DEGRADED),
        (CycleStep.LEARN_AND_ADAPT, CycleOutcome.DEGRADED),
        (CycleStep.SENSE_MARKET, CycleOutcome.FAILED),
        (CycleStep.COMPOSE_STRATEGY, CycleOutcome.FAILED),
        (CycleStep.EVALUATE_RISKS, CycleOutcome.FAILED),
    ],
)
def test_the_outcome_follows_which_step_failed(failed, outcome):
    assert cycle_outcome(_steps(failed)) is outcome


def test_an_unknown_failed_step_counts_as_critical():
    steps = [StepReport(name="mystery", status=CommandStatus.FAILED)]
    assert cycle_outcome(steps) is CycleOutcome.FAILED


def _full_report() -> CycleReport:
    histories = {
        h.symbol: h
        for h in (
            with_last_bar(uptrend("UP"), close_factor=1.03, volume_factor=3.0),
            with_last_bar(range_bound("RANGE"), close_factor=0.985),
            uptrend("SHORT", bars=10),
        )
    }
    now = now_after(histories["UP"])
    account = Account(cash=100_000.0, equity=100_000.0, buying_power=100_000.0)
    limits = PortfolioRiskLimits()
    learning = LearningState()
    snapshot = sense_market(histories, now, RegimeThresholds(), source="synthetic", lookback_bars=200)
    patterns = analyse_patterns(histories, snapshot)
    candidates = [
        Candidate(symbol=s, score=1.0, rank=i + 1, last_price=100.0) for i, s in enumerate(histories)
    ]
    composition = compose(
        candidates,
        snapshot,
        patterns,
        account,
        [],
        limits,
        learning.weights,
        now=now,
        plan_id_prefix="cycle-3",
    )
    risk = evaluate_risk([c.plan for c in composition.plans], account, [], histories, limits)
    health = evaluate_health(
        HealthFigures(
            latency_ms_p50=1,
            latency_ms_p99=900,
            requests=10,
            errors=0,
            fees=1,
            gross_pnl=0,
            equity=100_000,
            broker=AdapterHealth(name="simulated", reachable=True),
        ),
        HealthThresholds(),
        now,
    )
    return build_cycle_report(
        3,
        _steps(CycleStep.LEARN_AND_ADAPT),
        started_at=now,
        finished_at=now + timedelta(seconds=2),
        snapshot=snapshot,
        patterns=patterns,
        composition=composition,
        risk=risk,
        execution=ExecutionSummary(plans_sent=2, orders=2, fills=3, latency_ms_p50=1.5, fees=0.8),
        health=health,
        learning=learning,
        next_interval_seconds=45.0,
    )


def test_the_report_summarises_every_step_and_joins_plans_with_their_risk_decisions():
    report = _full_report()
    assert report.outcome is CycleOutcome.DEGRADED
    assert report.symbols_sensed == 3
    assert sum(report.regimes.values()) == 2 and report.regimes[Regime.RANGING] == 1
    assert any("SHORT: insufficient_history (blocking)" in line for line in report.data_issues)
    assert report.patterns_confirmed >= 2
    assert {line.symbol for line in report.plans} == {"UP", "RANGE"}
    assert all(line.verdict in (RiskVerdict.APPROVE, RiskVerdict.SCALE_DOWN) for line in report.plans)
    assert all(0 < line.approved_quantity <= line.quantity for line in report.plans)
    assert [r.symbol for r in report.rejected_candidates] == ["SHORT"]
    assert report.risk is not None and report.risk.gross_exposure > 0
    assert report.breakers_tripped == ["latency"]
    assert CycleReport.model_validate_json(report.model_dump_json()) == report


def test_the_markdown_shows_steps_plans_risk_and_health():
    text = render_markdown(_full_report())
    assert text.startswith("# Cycle 3: degraded")
    assert "| learn_and_adapt | failed | 3 | boom \\| bang |" in text
    assert "| UP | buy |" in text and "| RANGE | buy | mean_reversion |" in text
    assert "not planned: SHORT: data unusable" in text
    assert "VaR 95%" in text
    assert "breakers tripped: latency" in text
    assert "next cycle in 45s" in text


def test_the_text_rendering_is_a_few_plain_lines():
    text = render_text(_full_report())
    first, *rest = text.splitlines()
    assert first.startswith("cycle 3 degraded: ")
    assert len(rest) == len(CycleStep) + 2
    assert any(line.strip().startswith("learn_and_adapt") and "boom" in line for line in rest)


def test_a_cycle_that_failed_early_still_reports():
    report = build_cycle_report(9, _steps(CycleStep.SENSE_MARKET))
    assert report.outcome is CycleOutcome.FAILED
    assert report.plans == []
    assert "No plans." in render_markdown(report)
