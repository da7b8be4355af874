"""The command-workflow framework: named steps, the `progress` query, UI details, retries,
timeouts, the durable concurrency cap, and one way to fail.

A command workflow subclasses `CommandWorkflow`, declares its `steps`, and runs each with
`self.run_step(...)`. Everything a user checks while it runs (progress, current step, what
failed and why) lives in `CommandRun`, which the `progress` query serialises.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, RetryState

with workflow.unsafe.imports_passed_through():
    from orch.activities.system import SystemActivities
    from orch.contracts.commands import (
        CommandOptions,
        CommandResult,
        CommandStatus,
        Progress,
        ProgressDetails,
        StepOutcome,
        StepReport,
    )
    from orch.contracts.names import SYSTEM_STATE_WORKFLOW_ID
    from orch.contracts.system import CommandSlot, SlotDecision

OutcomeT = TypeVar("OutcomeT", bound=StepOutcome)

# The slot update's local activity: SystemState takes a few updates at a time (the server's in-flight
# limit per workflow) and refuses the rest with RESOURCE_EXHAUSTED, so a busy moment is retried quickly.
SLOT_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=50),
    backoff_coefficient=1.5,
    maximum_interval=timedelta(seconds=2),
    maximum_attempts=40,
)

# Error types that no retry can fix: the step fails at once.
NON_RETRYABLE_ERRORS = ["InvalidInput", "UnknownStrategy", "CommandRejected"]


@dataclass(frozen=True)
class Step:
    name: str  # stable machine name, shown as `current_step` (e.g. "clearing_job_queue")
    title: str  # what a person reads in the Temporal UI


class StepFailed(Exception):
    """Raised inside the workflow when a step has failed for good; the command ends `failed` unless the
    step was not required."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step
        self.message = message


class CommandRun:
    """The progress of one command: what `progress` reports and `CommandResult` records."""

    def __init__(self, command_type: str, steps: Sequence[Step], options: CommandOptions) -> None:
        self.command_type = command_type
        self.steps = list(steps)
        self.options = options
        self.status = CommandStatus.QUEUED
        self.current_step: str | None = None
        self.reports = {s.name: StepReport(name=s.name, status=CommandStatus.QUEUED) for s in steps}
        self.error_messages: list[str] = []
        self.compensation: list[str] = []
        self.updated_at = workflow.now()

    # ---- Reading ---------------------------------------------------------------------------------

    def progress(self) -> Progress:
        done = [r.name for r in self.reports.values() if r.status == CommandStatus.COMPLETED]
        return Progress(
            workflow_id=workflow.info().workflow_id,
            command_type=self.command_type,
            progress=round(len(done) / len(self.steps), 4) if self.steps else 1.0,
            current_step=self.current_step,
            status=self.status,
            timestamp=self.updated_at,
            details=ProgressDetails(
                steps_completed=done,
                steps_failed=[r.name for r in self.reports.values() if r.status == CommandStatus.FAILED],
                error_messages=list(self.error_messages),
            ),
        )

    def result_fields(self) -> dict[str, Any]:
        return {
            "workflow_id": workflow.info().workflow_id,
            "command_type": self.command_type,
            "status": self.status,
            "steps": list(self.reports.values()),
            "error": self.error_messages[-1] if self.error_messages else None,
            "compensation": list(self.compensation),
        }

    # ---- Changing --------------------------------------------------------------------------------

    def touch(self, details: str | None = None) -> None:
        self.updated_at = workflow.now()
        if details is not None:
            workflow.set_current_details(details)

    def fail(self, message: str) -> None:
        self.status = CommandStatus.FAILED
        self.error_messages.append(message)
        self.touch(f"**Failed**: {message}")


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

    def _begin(self, options: CommandOptions) -> None:
        self._run = CommandRun(self.command_type, self.steps, options)
        self._slot_decision: SlotDecision | None = None
        self._holds_slot = False
        self._run.touch(f"Queued: waiting for a command slot ({len(self.steps)} steps)")

    # Query, not update: reading progress must never change history, and it must work after the
    # workflow has closed (the server replays the history to answer it).
    @workflow.query(name="progress")
    def progress(self) -> Progress:
        return self._run.progress()

    # Signal, not update: a command that had to queue hears from SystemState when a slot frees, and a
    # signal is the only message one workflow can send another.
    @workflow.signal(name="command_slot_decision")
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
            raise ApplicationError(decision.reason, type="CommandRejected", non_retryable=True)
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
            message, _ = _describe_activity_failure(err, SLOT_RETRY.maximum_attempts)
            raise ApplicationError(message, type="CommandRejected", non_retryable=True) from err

    async def _release_slot(self) -> None:
        if not self._holds_slot:
            return
        self._holds_slot = False
        system_state = workflow.get_external_workflow_handle(SYSTEM_STATE_WORKFLOW_ID)
        try:
            await system_state.signal("release_command_slot", workflow.info().workflow_id)
        except Exception:
            workflow.logger.warning("could not release the command slot; SystemState will reap it")

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
                pass  # already recorded by run_step
            except (asyncio.CancelledError, CancelledError):
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
                type="CommandFailed",
                non_retryable=True,
            )
        run.status = CommandStatus.COMPLETED
        run.current_step = None
        run.touch(f"**Completed** all {len(run.steps)} steps")
        return run.result_fields()

    def activity_options(self, timeout_seconds: float | None = None) -> dict[str, Any]:
        """The command's timeouts and retries for one step (or compensation) activity.

        Every step activity heartbeats (`step_activity`), so a worker that dies mid-step is noticed
        after `heartbeat_timeout_seconds` and the step retried elsewhere; the start-to-close timeout
        only bounds a step that hangs on a live worker.
        """
        options = self._run.options
        return dict(
            start_to_close_timeout=timedelta(seconds=timeout_seconds or options.step_timeout_seconds),
            heartbeat_timeout=timedelta(seconds=options.heartbeat_timeout_seconds),
            retry_policy=self.retry_policy(),
        )

    def retry_policy(self, non_retryable: Sequence[str] = ()) -> RetryPolicy:
        options = self._run.options
        return RetryPolicy(
            initial_interval=timedelta(seconds=options.initial_retry_interval_seconds),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=options.max_retry_interval_seconds),
            maximum_attempts=options.max_retries + 1,
            non_retryable_error_types=[*NON_RETRYABLE_ERRORS, *non_retryable],
        )

    async def run_step(
        self,
        step: Step,
        activity: Callable[..., Any],
        *args: Any,
        result_type: type[OutcomeT],
        timeout_seconds: float | None = None,
        detail: str = "",
        required: bool = True,
    ) -> OutcomeT:
        """Run one step as one activity with the command's retry policy; record how it went.

        A step that is not `required` failing is recorded (steps_failed, error_messages) and raises
        StepFailed, but the command can still complete: the caller decides what the failure means.
        """
        run = self._run
        report = run.reports[step.name]
        index = run.steps.index(step) + 1
        run.current_step = step.name
        report.status = CommandStatus.RUNNING
        report.started_at = workflow.now()
        label = f"Step {index}/{len(run.steps)}: {step.title}" + (f" ({detail})" if detail else "")
        run.touch(f"**{label}**")
        options = run.options
        try:
            outcome = await workflow.execute_activity(
                activity,
                args=args,
                result_type=result_type,
                summary=label,
                **self.activity_options(timeout_seconds),
            )
        except ActivityError as err:
            message, attempts = _describe_activity_failure(err, options.max_retries + 1)
            report.status = CommandStatus.FAILED
            report.attempts = attempts
            report.error = message
            report.finished_at = workflow.now()
            if required:
                run.fail(f"{step.name}: {message}")
            else:
                run.error_messages.append(f"{step.name}: {message}")
            raise StepFailed(step.name, message) from err
        report.status = CommandStatus.COMPLETED
        report.attempts = outcome.attempt
        report.summary = outcome.summary
        report.finished_at = workflow.now()
        run.touch(f"{label}: done. {outcome.summary}")
        return outcome


# What a failed activity raises in the workflow: an ActivityError around the cause, or, for a local
# activity, the cause itself (this SDK delivers a local activity's failure unwrapped).
ACTIVITY_FAILURES = (ActivityError, ApplicationError)


def _describe_activity_failure(err: ActivityError | ApplicationError, max_attempts: int) -> tuple[str, int]:
    """The root message of an activity failure and how many attempts were made."""
    if isinstance(err, ApplicationError):
        cause, attempts = err, max_attempts
    else:
        cause = err.cause
        attempts = max_attempts if err.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED else 1
    if isinstance(cause, ApplicationError):
        for detail in cause.details:
            if isinstance(detail, dict) and "attempt" in detail:
                attempts = int(detail["attempt"])
        return cause.message, attempts
    if cause is not None:
        return f"{type(cause).__name__}: {cause}", attempts
    return str(err), attempts
