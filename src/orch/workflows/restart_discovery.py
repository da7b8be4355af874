"""`RestartDiscoverySystem`: switch discovery to another strategy, in five real steps.

1 stop discovery workers (pause the schedule; drain or cancel scans in flight), 2 clear the job
queue (remove scans not yet picked up), 3 restart the discovery service (schedule points at the
strategy; one validation scan), 4 validate system health (a worker polls, the scan succeeded,
its output is sane), 5 update configuration (SystemState, then resume the schedule).
A failure after step 1 puts the schedule back as it was.
"""

from __future__ import annotations

from pydantic import ValidationError
from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from orch.activities.discovery import DiscoveryActivities
    from orch.contracts.commands import (
        CommandStatus,
        RestartDiscoveryInput,
        RestartDiscoveryResult,
    )
    from orch.contracts.discovery import (
        ConfigurationUpdated,
        DiscoveryRestarted,
        DiscoveryStopped,
        DiscoveryValidated,
        QueueCleared,
        RestartDiscoveryRequest,
        RestoreDiscoveryRequest,
        StopDiscoveryRequest,
        UpdateConfigurationRequest,
        ValidateDiscoveryRequest,
    )
    from orch.workflows.command import CommandWorkflow, Step

STOP = Step("stopping_rq_workers", "Stop discovery workers")
CLEAR = Step("clearing_job_queue", "Clear the job queue")
RESTART = Step("restarting_discovery_service", "Restart the discovery service")
VALIDATE = Step("validating_system_health", "Validate system health")
UPDATE = Step("updating_configuration", "Update configuration")


# Malformed input fails the workflow at once with InvalidInput (orch.converter); a model built here that
# fails validation fails the workflow too, instead of retrying its task forever.
@workflow.defn(name="RestartDiscoverySystem", failure_exception_types=[ValidationError])
class RestartDiscoverySystem(CommandWorkflow):
    command_type = "restart_discovery_system"
    steps = (STOP, CLEAR, RESTART, VALIDATE, UPDATE)
    exclusive = True

    @workflow.init
    def __init__(self, request: RestartDiscoveryInput) -> None:
        self._begin(request.options)
        self._stopped: DiscoveryStopped | None = None
        self._previous: str | None = None
        self._scan_id: str | None = None
        self._found = 0

    @workflow.run
    async def run(self, request: RestartDiscoveryInput) -> RestartDiscoveryResult:
        await self._refuse_unknown_strategies([request.strategy])
        fields = await self.execute(lambda: self._restart(request), compensate=self._restore)
        return RestartDiscoveryResult(
            **fields,
            previous_strategy=self._previous,
            active_strategy=request.strategy,
            validation_scan_id=self._scan_id,
            candidates_found=self._found,
        )

    async def _restart(self, request: RestartDiscoveryInput) -> None:
        restart_id = workflow.info().workflow_id
        options = request.options
        self._stopped = await self.step_runner.run(
            STOP,
            DiscoveryActivities.stop_discovery_workers,
            StopDiscoveryRequest(
                restart_id=restart_id,
                force_stop=request.force_stop,
                drain_timeout_seconds=request.drain_timeout_seconds,
            ),
            result_type=DiscoveryStopped,
            policy=self.step_policy(request.drain_timeout_seconds + options.step_timeout_seconds),
            detail="cancel scans in flight" if request.force_stop else "drain scans in flight",
        )
        await self.step_runner.run(
            CLEAR, DiscoveryActivities.clear_job_queue, restart_id, result_type=QueueCleared
        )
        restarted = await self.step_runner.run(
            RESTART,
            DiscoveryActivities.restart_discovery_service,
            RestartDiscoveryRequest(
                restart_id=restart_id,
                strategy=request.strategy,
                heartbeat_timeout_seconds=options.heartbeat_timeout_seconds,
            ),
            result_type=DiscoveryRestarted,
            detail=request.strategy,
        )
        self._scan_id = restarted.scan_workflow_id
        validated = await self.step_runner.run(
            VALIDATE,
            DiscoveryActivities.validate_discovery,
            ValidateDiscoveryRequest(
                scan_workflow_id=restarted.scan_workflow_id,
                strategy=request.strategy,
                timeout_seconds=request.validation_timeout_seconds,
            ),
            result_type=DiscoveryValidated,
            policy=self.step_policy(request.validation_timeout_seconds + options.step_timeout_seconds),
        )
        self._found = len(validated.candidates.candidates)
        updated = await self.step_runner.run(
            UPDATE,
            DiscoveryActivities.update_configuration,
            UpdateConfigurationRequest(
                restart_id=restart_id,
                candidates=validated.candidates,
            ),
            result_type=ConfigurationUpdated,
        )
        self._previous = updated.previous_strategy

    async def _restore(self) -> None:
        """Undo a half-done restart: nothing to undo if discovery was never stopped."""
        if self._run.reports[STOP.name].status == CommandStatus.QUEUED:
            return
        try:
            outcome = await workflow.execute_activity_method(
                DiscoveryActivities.restore_discovery,
                RestoreDiscoveryRequest(restart_id=workflow.info().workflow_id),
                **self.activity_options(),
                summary="Compensate: restore the discovery schedule",
            )
            self._run.compensation.append(outcome.summary)
        except ActivityError as err:
            self._run.compensation.append(f"restore failed: {err.cause or err}")
        self._run.touch()
