"""Reporting (step 9): one cycle's report from its steps' outcomes, and its rendering for people.

The cycle's outcome follows from its steps: failed when a critical step failed (nothing was executed),
degraded when only non-critical ones did, completed otherwise. The report keeps counts and one line per
plan rather than the steps' full outputs, so it stays small in the engine's state and history.
`render_markdown` is what `orch cycle report N` prints (rich renders it); `render_text` is a compact
plain form for logs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from orch.contracts.commands import CommandStatus, StepReport
from orch.contracts.cycle import (
    CompositionResult,
    CycleOutcome,
    CycleReport,
    CycleStep,
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
)

# Lists in the report are capped: it lives in workflow state, and a reader wants the first few anyway.
MAX_LINES = 20


def cycle_outcome(steps: Sequence[StepReport]) -> CycleOutcome:
    failed = [s for s in steps if s.status is CommandStatus.FAILED]
    if any(_critical(s.name) for s in failed):
        return CycleOutcome.FAILED
    return CycleOutcome.DEGRADED if failed else CycleOutcome.COMPLETED


def _critical(step_name: str) -> bool:
    # A step this module does not know is counted as critical: better to over-report a failure.
    try:
        return CycleStep(step_name).critical
    except ValueError:
        return True


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


def render_markdown(report: CycleReport) -> str:
    out = [f"# Cycle {report.cycle_number}: {report.outcome.value}", ""]
    if report.started_at:
        finished = f" to {report.finished_at.isoformat()}" if report.finished_at else ""
        out += [f"{report.started_at.isoformat()}{finished}", ""]

    out += ["## Steps", "", "| step | status | attempts | summary |", "|---|---|---|---|"]
    for step in report.steps:
        summary = step.error if step.status is CommandStatus.FAILED and step.error else step.summary
        out.append(f"| {step.name} | {step.status.value} | {step.attempts} | {_cell(summary)} |")

    regimes = ", ".join(f"{regime.value} {n}" for regime, n in sorted(report.regimes.items())) or "none"
    out += ["", "## Market", "", f"- {report.symbols_sensed} symbols sensed; regimes: {regimes}"]
    out += [f"- data: {line}" for line in report.data_issues]
    out += [f"- anomaly: {line}" for line in report.anomalies]
    out.append(f"- patterns: {report.patterns_found} found, {report.patterns_confirmed} confirmed")

    out += ["", "## Plans", ""]
    if report.plans:
        out += [
            "| symbol | side | strategy | quantity | approved | verdict | reasons |",
            "|---|---|---|---|---|---|---|",
        ]
        for line in report.plans:
            verdict = line.verdict.value if line.verdict else "not evaluated"
            out.append(
                f"| {line.symbol} | {line.side.value} | {line.strategy.value} | {line.quantity:g} | "
                f"{line.approved_quantity:g} | {verdict} | {_cell('; '.join(line.reasons))} |"
            )
    else:
        out.append("No plans.")
    out += [f"- not planned: {r.symbol}: {'; '.join(r.reasons)}" for r in report.rejected_candidates]

    if report.risk is not None:
        r = report.risk
        out += [
            "",
            "## Portfolio risk (after approved plans)",
            "",
            f"- exposure: gross {r.gross_exposure:.0%}, net {r.net_exposure:+.0%}, "
            f"largest position {r.largest_position:.0%}",
            f"- drawdown {r.drawdown:.1%}; VaR {r.var_confidence:.0%} {r.var:,.2f}, CVaR {r.cvar:,.2f} "
            f"({r.observations} bars); entropy {r.entropy:.2f}",
        ]
    if report.execution is not None:
        e = report.execution
        latency = f", p50 latency {e.latency_ms_p50:.1f} ms" if e.latency_ms_p50 is not None else ""
        slippage = f", slippage {e.slippage_bps_mean:+.1f} bps" if e.slippage_bps_mean is not None else ""
        out += [
            "",
            "## Execution",
            "",
            f"- {e.plans_sent} plans sent, {e.orders} orders, {e.fills} fills, {e.rejected_orders} rejected"
            f"{latency}{slippage}, fees {e.fees:,.2f}",
        ]
    if report.universe is not None:
        out += ["", "## Universe", ""] + [f"- {line}" for line in report.universe.lines()]
    if report.trading_blocked is not None:
        out += ["", "## Nothing sent", "", f"- {report.trading_blocked.detail}"]
    if report.health_status is not None:
        tripped = ", ".join(b.value for b in report.breakers_tripped) or "none"
        out += ["", "## Health", "", f"- {report.health_status.value}; breakers tripped: {tripped}"]
    if report.weights is not None or report.next_interval_seconds is not None:
        out += ["", "## Adaptation", ""]
        if report.weights is not None:
            out.append(f"- weights: {describe_weights(report)}")
        if report.next_interval_seconds is not None:
            out.append(f"- next cycle in {report.next_interval_seconds:.0f}s")
    if report.notes:
        out += ["", "## Notes", ""] + [f"- {note}" for note in report.notes]
    return "\n".join(out) + "\n"


def render_text(report: CycleReport) -> str:
    """A few plain lines: the outcome, each step, and each plan's verdict."""
    counts = Counter(line.verdict.value if line.verdict else "not evaluated" for line in report.plans)
    verdicts = ", ".join(f"{n} {v}" for v, n in sorted(counts.items())) or "no plans"
    lines = [f"cycle {report.cycle_number} {report.outcome.value}: {verdicts}"]
    if report.trading_blocked is not None:
        lines.append(f"  nothing sent: {report.trading_blocked.detail}")
    if report.universe is not None:
        lines += [f"  {line}" for line in report.universe.lines()]
    lines += [f"  {s.name:<18} {s.status.value:<10} {s.error or s.summary}".rstrip() for s in report.steps]
    lines += [
        f"  {p.symbol} {p.side.value} {p.approved_quantity:g}/{p.quantity:g} {p.strategy.value}: "
        f"{p.verdict.value if p.verdict else 'not evaluated'}"
        for p in report.plans
    ]
    return "\n".join(lines) + "\n"


def format_weights(weights: StrategyWeights) -> str:
    return ", ".join(f"{k.value} {w:.2f}" for k, w in weights.root.items())


def describe_weights(report: CycleReport) -> str:
    """The weights composed with and whose they were: the operator's win over learning's."""
    assert report.weights is not None
    text = format_weights(report.weights)
    if report.weights_source is WeightsSource.OPERATOR:
        text += ' (the operator\'s, set with set_config; they win over learning until set to "learned"'
        if report.learned_weights is not None:
            text += f"; learned: {format_weights(report.learned_weights)}"
        text += ")"
    elif report.weights_source is WeightsSource.LEARNED:
        text += " (learned)"
    return text


def _cell(text: str) -> str:
    # Markdown tables break on pipes and newlines.
    return text.replace("|", "\\|").replace("\n", " ")
