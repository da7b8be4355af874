"""The command-workflow framework: the `progress` query, the durable concurrency cap, timeouts, and
one way to fail.

A command workflow subclasses `CommandWorkflow`, declares its `steps`, and runs each through
`self.step_runner` (workflows/steps.py). Everything a user checks while it runs (progress, current
step, what failed and why) lives in `CommandRun`, which the `progress` query serialises.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, ClassVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from orch.activities.discovery import DiscoveryActivities
    from orch.activities.system import SystemActivities
    from orch.contracts.commands import CommandOptions, CommandResult, CommandStatus, Progress, StepReport
    from orch.contracts.errors import NON_RETRYABLE_ERROR_TYPES, ErrorType
    from orch.contracts.names import (
        COMMAND_SLOT_DECISION_SIGNAL,
        RELEASE_COMMAND_SLOT_SIGNAL,
        SYSTEM_STATE_WORKFLOW_ID,
    )
    from orch.contracts.system import CommandSlot, SlotDecision
    from orch.workflows.steps import (
        ACTIVITY_FAILURES,
        CommandRun,
        Step,
        StepFailed,
        StepPolicy,
        StepRunner,
        backoff_retry,
        describe_activity_failure,
    )

__all__ = ["CommandWorkflow", "Step"]

# The slot update's local activity: SystemState takes a few updates at a time (the server's in-flight
# limit per workflow) and refuses the rest with RESOURCE_EXHAUSTED, so a busy moment is retried quickly.
SLOT_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=50),
    backoff_coefficient=1.5,
    maximum_interval=timedelta(seconds=2),
    maximum_attempts=40,
)


class CommandWorkflow:
    """Base of every command workflow. Subclasses set `command_type` and `steps`.

    Handlers defined here are inherited by every command, so `progress` is answered the same way
    by all of them and the concurrency cap cannot be forgotten by a new command.
    """

    command_type: ClassVar[str]
    steps: ClassVar[Sequence[Step]]
    # A command that may not run twice at once (a second start is refused with the running id).
    exclusive: ClassVar[bool] = False
    # False for commands that must run however busy the system is (EmergencyStop, HealthCheck):
    # they skip the concurrency cap instead of queueing behind the commands they may need to stop.
    uses_command_slot: ClassVar[bool] = True

    def _begin(self, options: CommandOptions, *, details_prefix: str = "") -> None:
        self._run = CommandRun(self.command_type, self.steps, options)
        self.step_runner = StepRunner(self._run, self.step_policy(), details_prefix=details_prefix)
        self._slot_decision: SlotDecision | None = None
        self._holds_slot = False
        self._run.touch(f"Queued: waiting for a command slot ({len(self.steps)} steps)")

    # Query, not update: reading progress must never change history, and it must work after the
    # workflow has closed (the server replays the history to answer it).
    @workflow.query(name="progress")
    def progress(self) -> Progress:
        return self._run.progress()

    # Each step's report so far, in step order: what `progress` (a public shape, kept as it is) does not
    # say, such as a skipped step and why (`orch watch` shows it).
    @workflow.query(name="steps")
    def step_reports(self) -> list[StepReport]:
        return list(self._run.reports.values())

    # Signal, not update: a command that had to queue hears from SystemState when a slot frees, and a
    # signal is the only message one workflow can send another.
    @workflow.signal(name=COMMAND_SLOT_DECISION_SIGNAL)
    def command_slot_decision(self, decision: SlotDecision) -> None:
        self._slot_decision = decision

    # ---- The concurrency cap -------------------------------------------------------------------

    async def _acquire_slot(self) -> None:
        """Wait for SystemState to grant a slot: the cap holds however the command was started."""
        if not self.uses_command_slot:
            return
        slot = CommandSlot(
            workflow_id=workflow.info().workflow_id,
            command_type=workflow.info().workflow_type,
            exclusive=self.exclusive,
        )
        decision = await self._ask_for_slot(slot)
        if decision.queued:
            await workflow.wait_condition(lambda: self._slot_decision is not None)
            assert self._slot_decision is not None
            decision = self._slot_decision
        if not decision.granted:
            raise ApplicationError(decision.reason, type=ErrorType.COMMAND_REJECTED, non_retryable=True)
        self._holds_slot = True

    async def _ask_for_slot(self, slot: CommandSlot) -> SlotDecision:
        """One round trip: a local activity sends SystemState the `acquire_command_slot` update."""
        try:
            return await workflow.execute_local_activity_method(
                SystemActivities.acquire_command_slot,
                slot,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=SLOT_RETRY,
            )
        except ACTIVITY_FAILURES as err:
            message, _ = describe_activity_failure(err, SLOT_RETRY.maximum_attempts)
            raise ApplicationError(message, type=ErrorType.COMMAND_REJECTED, non_retryable=True) from err

    async def _release_slot(self) -> None:
        if not self._holds_slot:
            return
        self._holds_slot = False
        system_state = workflow.get_external_workflow_handle(SYSTEM_STATE_WORKFLOW_ID)
        try:
            await system_state.signal(RELEASE_COMMAND_SLOT_SIGNAL, workflow.info().workflow_id)
        except Exception:
            workflow.logger.warning("could not release the command slot; SystemState will reap it")

    # ---- Input that only a worker can check ------------------------------------------------------

    async def _refuse_unknown_strategies(self, strategies: Sequence[str]) -> None:
        """Bad input fails at once, before a slot is taken or anything is stopped or started.

        Regular activities, not local ones: a query on a workflow that failed in the same task as a
        local activity's marker is answered from the state before the marker, so `progress` would say
        `queued` for a command that failed.
        """
        checks = [
            workflow.execute_activity_method(
                DiscoveryActivities.validate_strategy,
                strategy,
                start_to_close_timeout=timedelta(seconds=10),
                summary=f"Check {strategy} is known",
                retry_policy=RetryPolicy(
                    maximum_attempts=3, non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES
                ),
            )
            for strategy in strategies
        ]
        for outcome in await asyncio.gather(*checks, return_exceptions=True):
            if isinstance(outcome, ActivityError):
                cause = outcome.cause
                message = cause.message if isinstance(cause, ApplicationError) else str(outcome)
                self._run.fail(message)
                raise ApplicationError(
                    message, type=ErrorType.UNKNOWN_STRATEGY, non_retryable=True
                ) from outcome
            if isinstance(outcome, BaseException):
                raise outcome

    # ---- Running ---------------------------------------------------------------------------------

    async def execute(
        self,
        body: Callable[[], Any],
        compensate: Callable[[], Any] | None = None,
    ) -> dict[str, Any]:
        """Run `body` under the slot and the workflow timeout; return the result fields.

        On any failure, `compensate` runs (to put back what the steps changed) and the workflow
        fails with a non-retryable `CommandFailed` whose details carry the result.
        """
        run = self._run
        await self._acquire_slot()
        try:
            run.status = CommandStatus.RUNNING
            run.touch("Running")
            try:
                await asyncio.wait_for(body(), timeout=run.options.workflow_timeout_seconds)
            except TimeoutError:
                run.fail(f"timed out after {run.options.workflow_timeout_seconds:g} s")
            except StepFailed:
                pass  # already recorded by the step runner
            except (asyncio.CancelledError, CancelledError, ActivityError) as err:
                # A step's activity cancelled with the workflow arrives as an ActivityError.
                if not is_cancelled_exception(err):
                    raise
                run.status = CommandStatus.CANCELLED
                run.error_messages.append("cancelled")
                run.touch("Cancelled")
                # Cancellation is delivered once: the compensating activities still run.
                if compensate is not None:
                    await compensate()
                raise
            if run.status == CommandStatus.FAILED and compensate is not None:
                await compensate()
        except GeneratorExit:
            # The worker dropped this run from its cache (eviction, or the run was terminated):
            # no workflow call is possible now, and a live run resumes on replay elsewhere.
            self._holds_slot = False
            raise
        finally:
            await self._release_slot()
        if run.status == CommandStatus.FAILED:
            raise ApplicationError(
                f"{self.command_type} failed: {run.error_messages[-1]}",
                CommandResult(**run.result_fields()).model_dump(mode="json"),
                type=ErrorType.COMMAND_FAILED,
                non_retryable=True,
            )
        run.status = CommandStatus.COMPLETED
        run.current_step = None
        run.touch(f"**Completed** all {len(run.steps)} steps")
        return run.result_fields()

    def step_policy(self, timeout_seconds: float | None = None) -> StepPolicy:
        """The command's timeouts and retries for one step (or compensation) activity.

        Every step activity heartbeats (`step_activity`), so a worker that dies mid-step is noticed
        after `heartbeat_timeout_seconds` and the step retried elsewhere; the start-to-close timeout
        only bounds a step that hangs on a live worker.
        """
        options = self._run.options
        return StepPolicy(
            timeout=timedelta(seconds=timeout_seconds or options.step_timeout_seconds),
            retry=self.retry_policy(),
            heartbeat=timedelta(seconds=options.heartbeat_timeout_seconds),
        )

    def activity_options(self, timeout_seconds: float | None = None) -> dict[str, Any]:
        """`step_policy` as keyword arguments, for an activity that is not a step of its own."""
        return self.step_policy(timeout_seconds).activity_options()

    def retry_policy(self) -> RetryPolicy:
        options = self._run.options
        return backoff_retry(
            options.initial_retry_interval_seconds,
            options.max_retry_interval_seconds,
            options.max_retries + 1,
        )
