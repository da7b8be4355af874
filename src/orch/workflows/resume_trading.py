"""`ResumeTrading` (`orch resume --confirm`): undo an emergency stop, in an order that is safe to repeat.

A workflow rather than a few calls from the CLI: resuming touches four things (orch hft, SystemState,
the schedules, the engines), and a CLI that dies half-way would leave trading half-resumed with no
record. As a workflow it finishes wherever the CLI went, its history is the audit trail, `orch watch`
follows it, and it runs on `orch-critical` beside the stop it undoes.

Order: 1 check what is in force (refused when nothing is), 2 resume orch hft (it refuses while its
reconciliation with the broker is not clean: nothing else has changed then), 3 resolve the emergency
in SystemState, 4 unpause the schedules the emergency paused (only those carrying its note), 5 signal
`resume` to every TradingEngine last, so engines never trade against a gate that is still closed. A
resume that stopped half-way is finished by running it again.
"""

from __future__ import annotations

from pydantic import ValidationError
from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from orch.activities.emergency import EmergencyActivities
    from orch.contracts.emergency import (
        CONFIRM_NEEDED,
        EMERGENCY_PAUSED_SCHEDULES,
        ActiveEmergency,
        EmergencyResolved,
        EnginesSignalled,
        HftResumed,
        ResumeSchedulesRequest,
        ResumeTradingInput,
        ResumeTradingResult,
        SchedulesChanged,
        SignalEnginesRequest,
    )
    from orch.contracts.errors import ErrorType
    from orch.contracts.names import RESUME_TRADING
    from orch.contracts.system import EmergencyLevel, ResumeRequest
    from orch.workflows.command import CommandWorkflow, Step

CHECK = Step("checking_emergency", "Check the emergency in force")
RESUME_HFT = Step("resuming_hft", "Resume orch hft")
RESOLVE = Step("resolving_emergency", "Resolve the emergency in SystemState")
SCHEDULES = Step("resuming_schedules", "Unpause the schedules the emergency paused")
ENGINES = Step("signalling_engines", "Signal resume to every TradingEngine")


@workflow.defn(name=RESUME_TRADING, failure_exception_types=[ValidationError])
class ResumeTrading(CommandWorkflow):
    command_type = "resume_trading"
    steps = (CHECK, RESUME_HFT, RESOLVE, SCHEDULES, ENGINES)
    uses_command_slot = False

    @workflow.init
    def __init__(self, request: ResumeTradingInput) -> None:
        self._begin(request.options)
        self._active: ActiveEmergency | None = None
        self._hft: HftResumed | None = None
        self._resolved: list[str] = []
        self._schedules: list[str] = []
        self._engines: list[str] = []

    @workflow.run
    async def run(self, request: ResumeTradingInput) -> ResumeTradingResult:
        if not request.confirm:
            self._run.fail(CONFIRM_NEEDED)
            raise ApplicationError(CONFIRM_NEEDED, type=ErrorType.INVALID_INPUT, non_retryable=True)
        fields = await self.execute(lambda: self._resume(request))
        return ResumeTradingResult(
            **fields,
            resolved_incidents=self._resolved,
            previous_level=self._active.level if self._active else None,
            hft_state=self._hft.state if self._hft else None,
            schedules_resumed=self._schedules,
            engines_signalled=self._engines,
        )

    async def _resume(self, request: ResumeTradingInput) -> None:
        schedules = list(EMERGENCY_PAUSED_SCHEDULES)
        self._active = await self.step_runner.run(
            CHECK, EmergencyActivities.check_emergency, schedules, result_type=ActiveEmergency
        )
        self._hft = await self.step_runner.run(
            RESUME_HFT,
            EmergencyActivities.resume_hft,
            request.reason,
            request.requested_by,
            result_type=HftResumed,
        )
        if self._active.level is not EmergencyLevel.NONE:
            resolved = await self.step_runner.run(
                RESOLVE,
                EmergencyActivities.resolve_emergency,
                ResumeRequest(requested_by=request.requested_by, confirm=True, reason=request.reason),
                workflow.info().workflow_id,
                result_type=EmergencyResolved,
            )
            self._resolved = resolved.resolved
        else:
            self.step_runner.skip(RESOLVE, "no emergency in force in SystemState")
        changed = await self.step_runner.run(
            SCHEDULES,
            EmergencyActivities.resume_schedules,
            ResumeSchedulesRequest(
                incident_ids=self._resolved, requested_by=request.requested_by, schedule_ids=schedules
            ),
            result_type=SchedulesChanged,
        )
        self._schedules = changed.changed
        engines = await self.step_runner.run(
            ENGINES,
            EmergencyActivities.signal_engines,
            SignalEnginesRequest(signal="resume", reason=request.reason),
            result_type=EnginesSignalled,
        )
        self._engines = engines.signalled
