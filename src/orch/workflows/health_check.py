"""`HealthCheck`: every component in one report, from the worker's side of the fence.

Six probes run in parallel (Temporal and SystemState, task-queue pollers, orch hft and the broker,
data freshness per source, schedules, the emergency and the agents' error counts). A probe reports
what it finds as rows; a probe that cannot run at all (its activity failed every attempt) is itself an
unhealthy row, so the report always comes back whole. The report's status is the worst row's:
`degraded` is a warning, `unhealthy` makes `orch health-check` exit 1.

On `orch-critical`, skipping the command slots: a health check is most wanted when the system is busy.
"""

from __future__ import annotations

import asyncio

from pydantic import ValidationError
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orch.activities.health import HealthActivities
    from orch.contracts.emergency import (
        ComponentChecks,
        ComponentHealth,
        HealthCheckInput,
        HealthCheckResult,
        HealthReport,
        HealthStatus,
        worst,
    )
    from orch.contracts.names import HEALTH_CHECK
    from orch.contracts.system import EmergencyLevel
    from orch.workflows.command import CommandWorkflow, Step, StepFailed

TEMPORAL = Step("checking_temporal", "Temporal and SystemState")
QUEUES = Step("checking_task_queues", "Pollers on every task queue")
HFT = Step("checking_hft", "orch hft and the broker")
DATA = Step("checking_data_sources", "Data freshness per source")
SCHEDULES = Step("checking_schedules", "Schedules")
AGENTS = Step("checking_agents", "Emergency state and agents' error counts")
# The row a probe that could not run at all stands for.
PROBE_COMPONENT = {
    TEMPORAL.name: "temporal",
    QUEUES.name: "queues",
    HFT.name: "hft",
    DATA.name: "data",
    SCHEDULES.name: "schedules",
    AGENTS.name: "agents",
}


@workflow.defn(name=HEALTH_CHECK, failure_exception_types=[ValidationError])
class HealthCheck(CommandWorkflow):
    command_type = "health_check"
    steps = (TEMPORAL, QUEUES, HFT, DATA, SCHEDULES, AGENTS)
    uses_command_slot = False

    @workflow.init
    def __init__(self, request: HealthCheckInput) -> None:
        self._begin(request.options)
        self._checks: dict[str, ComponentChecks] = {}

    @workflow.run
    async def run(self, request: HealthCheckInput) -> HealthCheckResult:
        fields = await self.execute(lambda: self._check(request))
        # Rows in the steps' order, whatever order the probes answered in.
        checks = [self._checks[s.name] for s in self.steps if s.name in self._checks]
        components = [c for check in checks for c in check.components]
        agents = self._checks.get(AGENTS.name)
        report = HealthReport(
            checked_at=workflow.now(),
            status=worst([c.status for c in components]),
            components=components,
            emergency_level=agents.emergency_level
            if agents and agents.emergency_level
            else EmergencyLevel.NONE,
            disabled_agents=agents.disabled_agents if agents else [],
            resource_pools=agents.resource_pools if agents else None,
        )
        unhealthy = ", ".join(c.component for c in report.unhealthy)
        self._run.touch(f"**{report.status.value}**" + (f": {unhealthy}" if unhealthy else ""))
        return HealthCheckResult(**fields, report=report)

    async def _check(self, request: HealthCheckInput) -> None:
        async def probe(step: Step, activity, *args) -> None:
            try:
                checks = await self.step_runner.run(
                    step, activity, *args, result_type=ComponentChecks, required=False
                )
            except StepFailed as failed:
                unknown = ComponentHealth(
                    component=PROBE_COMPONENT[step.name],
                    status=HealthStatus.UNHEALTHY,
                    detail=f"could not be checked: {failed.message}",
                )
                checks = ComponentChecks(summary=f"{step.name} failed", components=[unknown])
            self._checks[step.name] = checks

        await asyncio.gather(
            probe(TEMPORAL, HealthActivities.check_temporal),
            probe(QUEUES, HealthActivities.check_task_queues, request.require_backtest_worker),
            probe(HFT, HealthActivities.check_hft),
            probe(DATA, HealthActivities.check_data_sources),
            probe(SCHEDULES, HealthActivities.check_schedules),
            probe(AGENTS, HealthActivities.check_agents),
        )
