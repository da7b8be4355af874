"""`EmergencyStop`: stop trading everywhere, at once, and say exactly what was done.

In parallel: kill `orch hft` at the level (it cancels, itself, the open orders the level forbids and,
at flatten, closes every position; the stop then confirms it has, at the broker), signal
`emergency_stop` to every running `TradingEngine`, pause the discovery and review schedules, and
record the incident in SystemState. One action failing never holds up the others; the incident is
recorded again with every action's outcome, and the workflow fails at the end if any action failed,
so `orch emergency-stop` exits 1 and says which.

It runs on `orch-critical` (its own worker slots) and skips the command slots, so however busy the
system is, nothing queues in front of it. Trading stays stopped until `orch resume --confirm`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from orch.activities.emergency import EmergencyActivities
    from orch.contracts.commands import CommandStatus, StepOutcome
    from orch.contracts.emergency import (
        EMERGENCY_PAUSED_SCHEDULES,
        ActionStatus,
        EmergencyAction,
        EmergencyStopInput,
        EmergencyStopResult,
        EmergencyStopSignal,
        EnginesSignalled,
        HftKilled,
        HftSettled,
        IncidentRecorded,
        KillHftRequest,
        PauseSchedulesRequest,
        RecordIncidentRequest,
        SchedulesChanged,
        SettleHftRequest,
        SignalEnginesRequest,
    )
    from orch.contracts.system import EmergencyIncident
    from orch.workflows.command import CommandWorkflow
    from orch.workflows.steps import ACTIVITY_FAILURES, Step, StepFailed, StepPolicy

RECORD = Step("recording_incident", "Record the incident in SystemState")
KILL = Step("killing_hft", "Kill orch hft at the level")
SETTLE = Step(
    "cancelling_orders", "Confirm orch hft cancelled what the level forbids (flatten: every position closed)"
)
ENGINES = Step("signalling_engines", "Signal emergency_stop to every TradingEngine")
SCHEDULES = Step("pausing_schedules", "Pause the discovery and review schedules")
ACTIONS = Step("recording_actions", "Record every action's outcome with the incident")

OutcomeT = TypeVar("OutcomeT", bound=StepOutcome)
# The local kill's one attempt: orch hft answers a kill in milliseconds; beyond this it is not answering.
FAST_KILL = StepPolicy(timeout=timedelta(seconds=2), retry=RetryPolicy(maximum_attempts=1))


# Malformed input (an empty reason, level "none", unknown fields) fails at once instead of retrying.
# Not sandboxed: the sandbox rebuilds its module state for every new run, which cost ~75 ms of the first
# workflow task on the 2-core machine (bench/emergency_stop.py) — the time before the kill can be sent.
# The code uses only workflow APIs and pass-through contracts, and every test replays its history.
@workflow.defn(name="EmergencyStop", failure_exception_types=[ValidationError], sandboxed=False)
class EmergencyStop(CommandWorkflow):
    command_type = "emergency_stop"
    steps = (RECORD, KILL, SETTLE, ENGINES, SCHEDULES, ACTIONS)
    uses_command_slot = False

    @workflow.init
    def __init__(self, request: EmergencyStopInput) -> None:
        self._begin(request.options)
        self._outcomes: dict[str, StepOutcome] = {}

    @workflow.run
    async def run(self, request: EmergencyStopInput) -> EmergencyStopResult:
        incident = EmergencyIncident(
            incident_id=workflow.info().workflow_id,
            level=request.level,
            reason=request.reason,
            requested_by=request.requested_by,
            at=workflow.now(),
        )
        fields = await self.execute(lambda: self._stop(incident))
        return self._result(fields, incident)

    async def _stop(self, incident: EmergencyIncident) -> None:
        kill = KillHftRequest(
            incident_id=incident.incident_id,
            level=incident.level,
            reason=incident.reason,
            requested_by=incident.requested_by,
        )
        signal = EmergencyStopSignal(
            reason=incident.reason,
            level=incident.level,
            requested_by=incident.requested_by,
            incident_id=incident.incident_id,
        )

        async def kill_then_settle() -> None:
            # The kill goes first: it is what stops orders within milliseconds. The confirmation runs
            # even if the kill's answer was not the one expected: what orch hft shows is what counts.
            await self._kill(kill)
            await self._action(
                SETTLE,
                EmergencyActivities.settle_hft,
                SettleHftRequest(incident_id=incident.incident_id, level=incident.level, since=incident.at),
                result_type=HftSettled,
                detail=incident.level.value,
            )

        await asyncio.gather(
            kill_then_settle(),
            self._action(
                RECORD,
                EmergencyActivities.record_incident,
                RecordIncidentRequest(incident=incident, revision=1),
                result_type=IncidentRecorded,
            ),
            self._action(
                ENGINES,
                EmergencyActivities.signal_engines,
                SignalEnginesRequest(signal="emergency_stop", emergency=signal),
                result_type=EnginesSignalled,
            ),
            self._action(
                SCHEDULES,
                EmergencyActivities.pause_schedules,
                PauseSchedulesRequest(
                    incident_id=incident.incident_id,
                    reason=incident.reason,
                    schedule_ids=list(EMERGENCY_PAUSED_SCHEDULES),
                ),
                result_type=SchedulesChanged,
            ),
        )
        done = [a for a in self._actions() if a.name != ACTIONS.name]
        recorded = incident.model_copy(update={"actions": [a.line() for a in done]})
        await self._action(
            ACTIONS,
            EmergencyActivities.record_incident,
            RecordIncidentRequest(incident=recorded, revision=2),
            result_type=IncidentRecorded,
        )
        failed = [a for a in self._actions() if a.status is not ActionStatus.DONE]
        if failed:
            # The last message is what `orch` shows: every action that did not happen, not just the last.
            self._run.fail(
                f"{len(failed)} of {len(self.steps)} actions did not happen: "
                + "; ".join(f"{a.name}: {a.summary or a.status.value}" for a in failed)
            )

    async def _kill(self, kill: KillHftRequest) -> None:
        """Kill orch hft: first as one local activity, then, if that did not work, as a regular one with
        the command's retries.

        The local attempt starts inside this first workflow task, without the round trip through the
        server that a regular activity needs (p50 ~50 ms less under load, bench/emergency_stop.py).
        It gets one short attempt only, because the other actions are scheduled when this workflow
        task completes, and that waits for the local activity: a hung orch hft may delay them by
        FAST_KILL's timeout at most. A kill sent twice is harmless: it is idempotent and never loosens.
        """
        runner = self.step_runner

        async def fast_then_with_retries(label: str) -> HftKilled:
            try:
                return await runner.execute(
                    EmergencyActivities.kill_hft,
                    kill,
                    result_type=HftKilled,
                    summary=label,
                    policy=FAST_KILL,
                    local=True,
                )
            except ACTIVITY_FAILURES as err:
                # A local activity's failure arrives unwrapped; either way the regular path takes over.
                workflow.logger.warning("fast kill failed, retrying as a regular activity: %s", err)
                return await runner.execute(
                    EmergencyActivities.kill_hft, kill, result_type=HftKilled, summary=label
                )

        try:
            self._outcomes[KILL.name] = await runner.run_body(
                KILL, fast_then_with_retries, detail=kill.level.value
            )
        except StepFailed:
            pass

    async def _action(
        self,
        step: Step,
        activity: Callable[..., Awaitable[OutcomeT]],
        *args: object,
        result_type: type[OutcomeT],
        detail: str = "",
    ) -> None:
        """One action: its failure is recorded (and fails the workflow at the end) but stops nothing else."""
        try:
            self._outcomes[step.name] = await self.step_runner.run(
                step, activity, *args, result_type=result_type, detail=detail
            )
        except StepFailed:
            pass

    def _actions(self) -> list[EmergencyAction]:
        actions = []
        for step in self.steps:
            report = self._run.reports[step.name]
            if report.status == CommandStatus.COMPLETED:
                actions.append(
                    EmergencyAction(name=step.name, status=ActionStatus.DONE, summary=report.summary)
                )
            elif report.status == CommandStatus.FAILED:
                actions.append(
                    EmergencyAction(name=step.name, status=ActionStatus.FAILED, summary=report.error or "")
                )
            else:
                actions.append(EmergencyAction(name=step.name, status=ActionStatus.SKIPPED))
        return actions

    def _result(self, fields: dict, incident: EmergencyIncident) -> EmergencyStopResult:
        outcomes = self._outcomes
        killed, settled = outcomes.get(KILL.name), outcomes.get(SETTLE.name)
        recorded = outcomes.get(ACTIONS.name) or outcomes.get(RECORD.name)
        engines, schedules = outcomes.get(ENGINES.name), outcomes.get(SCHEDULES.name)
        hft_state = None
        if isinstance(settled, HftSettled):
            hft_state = settled.state
        elif isinstance(killed, HftKilled):
            hft_state = killed.state
        return EmergencyStopResult(
            **fields,
            incident_id=incident.incident_id,
            level=incident.level,
            reason=incident.reason,
            level_in_force=recorded.level_in_force if isinstance(recorded, IncidentRecorded) else None,
            hft_state=hft_state,
            actions=self._actions(),
            engines_signalled=engines.signalled if isinstance(engines, EnginesSignalled) else [],
            schedules_paused=schedules.changed if isinstance(schedules, SchedulesChanged) else [],
            orders_cancelled=settled.orders_cancelled if isinstance(settled, HftSettled) else [],
            positions_closed=settled.positions_closed if isinstance(settled, HftSettled) else [],
        )
