"""Reporting (step 9): one cycle's report from its steps' outcomes.

The cycle's outcome follows from its steps: failed when a critical step failed (nothing was executed),
degraded when only non-critical ones did, completed otherwise. The report keeps counts and one line per
plan rather than the steps' full outputs, so it stays small in the engine's state and history. Its
rendering for people is the CLI's (`orch.cli.cycle_report`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from orch.contracts.commands import StepReport
from orch.contracts.cycle import (
    CompositionResult,
    CycleReport,
    ExecutionSummary,
    HealthAssessment,
    LearningState,
    MarketSnapshot,
    PatternAnalysis,
    PlanLine,
    RiskAssessment,
    StrategyWeights,
    TradingBlock,
    UniverseFilter,
    WeightsSource,
    cycle_outcome,
)

# Lists in the report are capped: it lives in workflow state, and a reader wants the first few anyway.
MAX_LINES = 20


def build_cycle_report(
    cycle_number: int,
    steps: Sequence[StepReport],
    *,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
    snapshot: MarketSnapshot | None = None,
    patterns: PatternAnalysis | None = None,
    composition: CompositionResult | None = None,
    risk: RiskAssessment | None = None,
    execution: ExecutionSummary | None = None,
    health: HealthAssessment | None = None,
    learning: LearningState | None = None,
    weights: StrategyWeights | None = None,
    weights_source: WeightsSource | None = None,
    universe: UniverseFilter | None = None,
    blocked: TradingBlock | None = None,
    next_interval_seconds: float | None = None,
    notes: Sequence[str] = (),
) -> CycleReport:
    """Summarise whatever the steps produced; a step that failed or was skipped simply passes None."""
    report = CycleReport(
        cycle_number=cycle_number,
        outcome=cycle_outcome(steps),
        started_at=started_at,
        finished_at=finished_at,
        steps=list(steps),
        execution=execution,
        trading_blocked=blocked,
        universe=universe,
        next_interval_seconds=next_interval_seconds,
        notes=list(notes)[:MAX_LINES],
    )
    if snapshot is not None:
        report.symbols_sensed = len(snapshot.data_quality)
        report.regimes = dict(Counter(c.regime for c in snapshot.conditions))
        report.data_issues = [
            f"{q.symbol}: {issue.kind.value}{' (blocking)' if issue.blocking else ''}: {issue.message}"
            for q in snapshot.data_quality
            for issue in q.issues
        ][:MAX_LINES]
        report.anomalies = [a.message for c in snapshot.conditions for a in c.anomalies][:MAX_LINES]
    if patterns is not None:
        report.patterns_found = sum(len(r.patterns) for r in patterns.reports)
        report.patterns_confirmed = sum(len(r.confirmed) for r in patterns.reports)
    if composition is not None:
        report.plans = _plan_lines(composition, risk)
        report.rejected_candidates = composition.rejected[:MAX_LINES]
    if risk is not None:
        report.risk = risk.after
    if health is not None:
        report.health_status = health.status
        report.breakers_tripped = health.tripped
    report.weights = weights if weights is not None else learning.weights if learning is not None else None
    report.weights_source = weights_source
    if weights_source is WeightsSource.OPERATOR and learning is not None:
        report.learned_weights = learning.weights
    return report


def _plan_lines(composition: CompositionResult, risk: RiskAssessment | None) -> list[PlanLine]:
    decisions = {d.plan.plan_id: d for d in risk.decisions} if risk is not None else {}
    lines = []
    for composed in composition.plans:
        plan = composed.plan
        decision = decisions.get(plan.plan_id)
        approved = decision.approved.quantity if decision and decision.approved else 0.0
        lines.append(
            PlanLine(
                plan_id=plan.plan_id,
                symbol=plan.symbol,
                strategy=plan.strategy,
                side=plan.side,
                quantity=plan.quantity,
                approved_quantity=approved,
                verdict=decision.verdict if decision else None,
                # Why it was composed, then what risk said about it.
                reasons=[plan.reason, *(decision.reasons if decision else [])],
            )
        )
    return lines
