"""A cycle's report as people read it: `render_markdown` is what `orch cycle report N` prints (rich
renders it); `render_text` is the compact plain form `orch cycle status` ends with."""

from __future__ import annotations

from collections import Counter

from orch.contracts.commands import CommandStatus
from orch.contracts.cycle import CycleReport, StrategyWeights, WeightsSource


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
