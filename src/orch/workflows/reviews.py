"""Tiers 3 and 4: `TacticalReview` (every 30 s: market conditions, agent health, portfolio risk) and
`StrategicReview` (every 5 min: portfolio optimisation, strategy performance, system health).

Temporal Schedules (`tactical-review`, `strategic-review`, created by the worker's bootstrap) start
them, skip a run while the previous one is still going, and an emergency stop pauses them. Each area
is one activity wrapping one agent; the areas run in parallel and one failing never stops the others.
A review's findings are its result (and its `report` query); what must change is written to
SystemState: an agent that failed `error_threshold` times in a row is disabled there, and every later
review skips it and says so, until an operator re-enables it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from orch.activities.reviews import ReviewActivities
    from orch.contracts.commands import CommandOptions
    from orch.contracts.emergency import (
        AgentOutcomes,
        HealthCheckInput,
        HealthCheckResult,
        HealthStatus,
        ReviewContext,
        ReviewFinding,
        ReviewInput,
        ReviewReport,
        worst,
    )
    from orch.contracts.errors import NON_RETRYABLE_ERROR_TYPES, ErrorType
    from orch.contracts.names import CRITICAL_QUEUE, HEALTH_CHECK, STRATEGIC_REVIEW, TACTICAL_REVIEW

# (area, agent, activity): what a review looks at, who judges it, and the activity that asks.
Area = tuple[str, str, Callable[..., Any]]


class _Review:
    kind: str
    areas: tuple[Area, ...]

    def _start(self) -> None:
        info = workflow.info()
        self._report = ReviewReport(review=self.kind, workflow_id=info.workflow_id, started_at=workflow.now())
        # The run id too: a schedule's workflow ids repeat when two starts fall in the same second.
        self._outcomes = AgentOutcomes(review=self.kind, review_id=f"{info.workflow_id}/{info.run_id}")

    # Query: a review's findings so far, readable while it runs and after it ends, without touching history.
    @workflow.query(name="report")
    def report(self) -> ReviewReport:
        return self._report

    async def _review(self, request: ReviewInput) -> ReviewReport:
        self._outcomes.error_threshold = request.error_threshold
        workflow.set_current_details(f"Reviewing: {', '.join(area for area, _, _ in self.areas)}")
        context = await self._context(request)
        await asyncio.gather(*(self._area(request, context, *area) for area in self.areas))
        await self._agent_health(request, context)
        await self._extra(request)
        report = self._report
        report.findings.sort(key=lambda f: f.area)
        report.status = worst([f.status for f in report.findings])
        report.finished_at = workflow.now()
        lines = [f"**{self.kind} review: {report.status.value}**"]
        lines += [f"- {f.area}: {f.status.value}: {f.summary}" for f in report.findings]
        workflow.set_current_details("\n".join(lines))
        return report

    async def _extra(self, request: ReviewInput) -> None:
        """What a tier adds beyond its agents (the strategic review's system health)."""

    def _options(self, request: ReviewInput, attempts: int = 2) -> dict[str, Any]:
        # A review runs again in seconds or minutes: a short retry, never a long backlog of attempts.
        return dict(
            start_to_close_timeout=timedelta(seconds=request.step_timeout_seconds),
            heartbeat_timeout=timedelta(seconds=request.heartbeat_timeout_seconds),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=1),
                maximum_attempts=attempts,
                non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES,
            ),
        )

    async def _context(self, request: ReviewInput) -> ReviewContext:
        try:
            return await workflow.execute_activity_method(
                ReviewActivities.load_review_context,
                summary="Read disabled agents and the emergency in force",
                **self._options(request),
            )
        except ActivityError as err:
            self._report.errors.append(f"SystemState unreadable, no agent skipped: {_cause(err)}")
            return ReviewContext()

    async def _area(
        self,
        request: ReviewInput,
        context: ReviewContext,
        area: str,
        agent: str,
        activity: Callable[..., Any],
    ) -> None:
        if agent in context.disabled_agents:
            self._report.skipped_agents.append(agent)
            self._report.findings.append(
                ReviewFinding(
                    area=area,
                    agent=agent,
                    status=HealthStatus.DEGRADED,
                    summary=f"skipped: agent {agent} is disabled after repeated errors",
                )
            )
            return
        try:
            finding = await workflow.execute_activity(
                activity,
                request,
                result_type=ReviewFinding,
                summary=f"{area} ({agent})",
                **self._options(request),
            )
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type == ErrorType.AGENT_ERROR:
                self._outcomes.failed[agent] = cause.message
                summary = cause.message
            else:
                summary = f"data unavailable: {_cause(err)}"
            self._report.errors.append(f"{area}: {summary}")
            finding = ReviewFinding(area=area, agent=agent, status=HealthStatus.UNHEALTHY, summary=summary)
        else:
            self._outcomes.succeeded.append(agent)
        self._report.findings.append(finding)

    async def _agent_health(self, request: ReviewInput, context: ReviewContext) -> None:
        try:
            health = await workflow.execute_activity_method(
                ReviewActivities.record_agent_outcomes,
                self._outcomes,
                summary="Count agent errors; disable agents at the threshold",
                **self._options(request, attempts=3),
            )
        except ActivityError as err:
            self._report.errors.append(f"agent_health: {_cause(err)}")
            self._report.findings.append(
                ReviewFinding(
                    area="agent_health",
                    status=HealthStatus.UNHEALTHY,
                    summary=f"agent errors not recorded: {_cause(err)}",
                )
            )
            return
        self._report.agents_disabled = health.newly_disabled
        disabled = sorted(set(context.disabled_agents) | set(health.newly_disabled))
        failing = [r for r in health.log.agents.values() if r.consecutive_errors]
        status = (
            HealthStatus.UNHEALTHY if disabled else HealthStatus.DEGRADED if failing else HealthStatus.HEALTHY
        )
        summary = f"{len(self._outcomes.succeeded)} agents answered, {len(self._outcomes.failed)} failed"
        if health.newly_disabled:
            summary += f"; disabled now: {', '.join(health.newly_disabled)}"
        if disabled:
            summary += f"; disabled: {', '.join(disabled)}"
        self._report.findings.append(
            ReviewFinding(
                area="agent_health",
                status=status,
                summary=summary,
                figures={r.agent: float(r.consecutive_errors) for r in health.log.agents.values()},
                notes=health.report,
            )
        )


@workflow.defn(name=TACTICAL_REVIEW)
class TacticalReview(_Review):
    kind = "tactical"
    areas = (
        ("market_conditions", "conditions", ReviewActivities.assess_market_conditions),
        ("portfolio_risk", "risk", ReviewActivities.assess_portfolio_risk),
    )

    @workflow.init
    def __init__(self, request: ReviewInput) -> None:
        self._start()

    @workflow.run
    async def run(self, request: ReviewInput) -> ReviewReport:
        return await self._review(request)


@workflow.defn(name=STRATEGIC_REVIEW)
class StrategicReview(_Review):
    kind = "strategic"
    areas = (
        ("portfolio_optimisation", "optimisation", ReviewActivities.optimise_portfolio),
        ("strategy_performance", "performance", ReviewActivities.review_strategy_performance),
    )

    @workflow.init
    def __init__(self, request: ReviewInput) -> None:
        self._start()

    @workflow.run
    async def run(self, request: ReviewInput) -> ReviewReport:
        return await self._review(request)

    async def _extra(self, request: ReviewInput) -> None:
        """System health is the HealthCheck command itself, run as a child: one definition of healthy."""
        options = CommandOptions(
            max_retries=1,
            initial_retry_interval_seconds=1,
            step_timeout_seconds=request.step_timeout_seconds,
            heartbeat_timeout_seconds=request.heartbeat_timeout_seconds,
            workflow_timeout_seconds=request.step_timeout_seconds * 2,
        )
        try:
            result = await workflow.execute_child_workflow(
                HEALTH_CHECK,
                HealthCheckInput(options=options),
                id=f"{workflow.info().workflow_id}-health",
                task_queue=CRITICAL_QUEUE,
                result_type=HealthCheckResult,
                static_summary="System health for the strategic review",
            )
        except ChildWorkflowError as err:
            self._report.errors.append(f"system_health: {_cause(err)}")
            finding = ReviewFinding(
                area="system_health",
                status=HealthStatus.UNHEALTHY,
                summary=f"health check failed: {_cause(err)}",
            )
        else:
            report = result.report
            assert report is not None
            bad = [c for c in report.components if c.status is not HealthStatus.HEALTHY]
            finding = ReviewFinding(
                area="system_health",
                status=report.status,
                summary=f"{len(report.components)} components, "
                f"{len(report.unhealthy)} unhealthy, {len(bad) - len(report.unhealthy)} degraded",
                notes=[f"{c.component}: {c.status.value}: {c.detail}" for c in bad],
            )
        self._report.findings.append(finding)


def _cause(err: Exception) -> str:
    """The innermost message of an activity or child failure."""
    cause: BaseException | None = err
    while getattr(cause, "cause", None) is not None:
        cause = cause.cause  # type: ignore[union-attr]
    return getattr(cause, "message", None) or str(cause)
