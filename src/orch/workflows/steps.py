"""Named steps: the one way a workflow runs a step and records how it went.

A workflow owns one `StepRunner` over its `CommandRun`, the record its `progress` query reads, and
runs every step through it:

    stopped = await self.step_runner.run(STOP, DiscoveryActivities.stop_discovery_workers, request,
                                         result_type=DiscoveryStopped, detail="drain scans in flight")

`run` marks the step running (`current_step`, the UI's current details, the activity's summary),
executes one activity (regular, or `local=True`) under a `StepPolicy` (the runner's default, or the
step's own), and records the outcome: its summary and the attempt that succeeded, or its error and
how many attempts were made. `run_body` does the same around a step made of several activities;
`execute` is the bare activity call such a body makes. `skip` records a step that will not run.

A failed step raises `StepFailed` once it is recorded. A `required` step's failure fails the run (the
command ends `failed`); an optional one's is recorded in `steps_failed` and `error_messages`, and the
caller decides what it means (the cycle goes on degraded, a health probe becomes an unhealthy row).
A cancelled activity is the workflow being cancelled, not a step failure: it propagates untouched.

A skipped step is `cancelled` with the summary "skipped: <why>", in every workflow. It did no work, so
it is not `completed` (that would list it in `steps_completed` and count it as its agent's success in
the cycle's error counts) and it is not `failed`; `cancelled` is what the cycle has always recorded and
the README documents. `progress` counts it as passed, so a command that ends well reports 1.0.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, RetryState, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from orch.contracts.commands import (
        CommandOptions,
        CommandStatus,
        Progress,
        ProgressDetails,
        StepOutcome,
        StepReport,
    )
    from orch.contracts.errors import NON_RETRYABLE_ERROR_TYPES

OutcomeT = TypeVar("OutcomeT", bound=StepOutcome)

# What a failed activity raises in the workflow: an ActivityError around the cause, or, for a local
# activity, the cause itself (this SDK delivers a local activity's failure unwrapped).
ACTIVITY_FAILURES = (ActivityError, ApplicationError)


@dataclass(frozen=True)
class Step:
    name: str  # stable machine name, shown as `current_step` (e.g. "clearing_job_queue")
    title: str  # what a person reads in the Temporal UI


def backoff_retry(initial_seconds: float, maximum_seconds: float, maximum_attempts: int) -> RetryPolicy:
    """Doubling backoff; the error types no retry can fix end the step at once."""
    return RetryPolicy(
        initial_interval=timedelta(seconds=initial_seconds),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=maximum_seconds),
        maximum_attempts=maximum_attempts,
        non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES,
    )


@dataclass(frozen=True)
class StepPolicy:
    """How long one step's activity may take and how it is retried."""

    timeout: timedelta  # start-to-close: bounds a step that hangs on a live worker
    retry: RetryPolicy
    # Every regular step activity heartbeats (activities.steps.step_activity), so a worker that dies
    # mid-step costs this, not the whole timeout. A local activity runs in the workflow's worker: none.
    heartbeat: timedelta | None = None

    def activity_options(self, *, local: bool = False) -> dict[str, Any]:
        options: dict[str, Any] = dict(start_to_close_timeout=self.timeout, retry_policy=self.retry)
        if not local:
            options["heartbeat_timeout"] = self.heartbeat
        return options


class StepFailed(Exception):
    """Raised by the runner once a step's failure is recorded; the run is already `failed` when the step
    was required."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step
        self.message = message


class StepError(Exception):
    """Raised by a `run_body` body to fail its step with this message (one attempt)."""


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
        # A skipped step (`cancelled`) is behind the run as much as a completed one.
        passed = [
            r for r in self.reports.values() if r.status in (CommandStatus.COMPLETED, CommandStatus.CANCELLED)
        ]
        return Progress(
            workflow_id=workflow.info().workflow_id,
            command_type=self.command_type,
            progress=round(len(passed) / len(self.steps), 4) if self.steps else 1.0,
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


class StepRunner:
    """Runs a workflow's named steps and records each in its `CommandRun`."""

    def __init__(self, record: CommandRun, policy: StepPolicy, *, details_prefix: str = "") -> None:
        self.record = record
        self.policy = policy  # for every step run without one of its own
        self._details_prefix = details_prefix  # leads the UI's current details, e.g. "Cycle 7, "

    def label(self, step: Step, detail: str = "") -> str:
        """What the UI shows for the step: its position, title and, when given, what it works on."""
        index = self.record.steps.index(step) + 1
        return f"Step {index}/{len(self.record.steps)}: {step.title}" + (f" ({detail})" if detail else "")

    async def execute(
        self,
        activity: Callable[..., Any],
        *args: Any,
        result_type: type[OutcomeT],
        summary: str,
        policy: StepPolicy | None = None,
        local: bool = False,
    ) -> OutcomeT:
        """One activity under the step's policy, without bookkeeping: what `run` and a body call."""
        options = (policy or self.policy).activity_options(local=local)
        if local:
            return await workflow.execute_local_activity(
                activity, args=args, result_type=result_type, summary=summary, **options
            )
        return await workflow.execute_activity(
            activity, args=args, result_type=result_type, summary=summary, **options
        )

    async def run(
        self,
        step: Step,
        activity: Callable[..., Any],
        *args: Any,
        result_type: type[OutcomeT],
        policy: StepPolicy | None = None,
        local: bool = False,
        required: bool = True,
        detail: str = "",
        consequence: str = "",
    ) -> OutcomeT:
        """Run one step as one activity; raise `StepFailed` once a failure is recorded.

        `consequence` says in the UI what an optional step's failure means for the run.
        """
        policy = policy or self.policy

        async def one_activity(label: str) -> OutcomeT:
            return await self.execute(
                activity, *args, result_type=result_type, summary=label, policy=policy, local=local
            )

        return await self.run_body(
            step, one_activity, required=required, detail=detail, consequence=consequence, policy=policy
        )

    async def run_body(
        self,
        step: Step,
        body: Callable[[str], Awaitable[OutcomeT]],
        *,
        required: bool = True,
        detail: str = "",
        consequence: str = "",
        policy: StepPolicy | None = None,
    ) -> OutcomeT:
        """Run a step whose work is `body(label)`: several activities, a fallback, a child workflow.

        The body returns the step's outcome; an activity failure or a `StepError` it raises fails the
        step (`policy`'s maximum attempts are what an exhausted activity made).
        """
        record = self.record
        report = record.reports[step.name]
        label = self.label(step, detail)
        record.current_step = step.name
        report.status = CommandStatus.RUNNING
        report.started_at = workflow.now()
        record.touch(f"**{self._details_prefix}{label}**")
        try:
            outcome = await body(label)
        except StepError as err:
            raise self._fail(step, label, str(err), 1, required=required, consequence=consequence) from err
        except ACTIVITY_FAILURES as err:
            if is_cancelled_exception(err):
                raise
            maximum_attempts = (policy or self.policy).retry.maximum_attempts
            message, attempts = describe_activity_failure(err, maximum_attempts)
            raise self._fail(
                step, label, message, attempts, required=required, consequence=consequence
            ) from err
        report.status = CommandStatus.COMPLETED
        report.attempts = outcome.attempt
        report.summary = outcome.summary
        report.finished_at = workflow.now()
        record.touch(f"{label}: done. {outcome.summary}")
        return outcome

    def skip(self, step: Step, why: str) -> None:
        """Record that the step will not run, and why (see the module's note on `cancelled`)."""
        report = self.record.reports[step.name]
        report.status = CommandStatus.CANCELLED
        report.summary = f"skipped: {why}"
        report.finished_at = workflow.now()
        self.record.touch(f"{self.label(step)}: {report.summary}")

    def _fail(
        self, step: Step, label: str, message: str, attempts: int, *, required: bool, consequence: str
    ) -> StepFailed:
        """Record the failure; the caller raises what this returns."""
        record = self.record
        report = record.reports[step.name]
        report.status = CommandStatus.FAILED
        report.attempts = attempts
        report.error = message
        report.finished_at = workflow.now()
        if required:
            record.fail(f"{step.name}: {message}")
        else:
            record.error_messages.append(f"{step.name}: {message}")
            record.touch(f"{label}: **failed** ({message})" + (f"; {consequence}" if consequence else ""))
        return StepFailed(step.name, message)


def describe_activity_failure(err: ActivityError | ApplicationError, max_attempts: int) -> tuple[str, int]:
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
