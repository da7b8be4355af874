"""`SystemStateClient`: the typed client of the `SystemState` entity workflow.

It is the one place outside the workflow that spells its query and update names; callers pass typed
requests and get typed answers. A refusal by an update's validator raises Temporal's
`WorkflowUpdateFailedError` unchanged, except where the caller only needs a yes or no
(`publish_candidates`), which the client answers from the refusal's `ErrorType`, never its text.
"""

from __future__ import annotations

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from orch.contracts.cycle import LearningState
from orch.contracts.discovery import CandidateSet
from orch.contracts.errors import ErrorType
from orch.contracts.levels import EmergencyLevel, TradingMode
from orch.contracts.names import SYSTEM_STATE_WORKFLOW_ID
from orch.contracts.system import (
    AgentErrorsUpdate,
    CommandSlot,
    DataSourcesChange,
    EmergencyIncident,
    EnableAgentsRequest,
    LearningRecord,
    ResumeRequest,
    SetStrategyRequest,
    SlotDecision,
    SystemStateSnapshot,
    TradingModeChange,
)


def refusal_type(error: WorkflowUpdateFailedError) -> str | None:
    """The `ApplicationError.type` a validator refused with (a plain `ValueError` gives "ValueError")."""
    cause = error.cause
    return cause.type if isinstance(cause, ApplicationError) else None


class SystemStateClient:
    def __init__(self, client: Client) -> None:
        self.handle: WorkflowHandle = client.get_workflow_handle(SYSTEM_STATE_WORKFLOW_ID)

    # ---- Query -----------------------------------------------------------------------------------

    async def snapshot(self) -> SystemStateSnapshot:
        return await self.handle.query("state", result_type=SystemStateSnapshot)

    # ---- Configuration ---------------------------------------------------------------------------
    # An update id makes a retried call a no-op: every write that a retry could repeat takes one.

    async def register_strategies(self, names: list[str]) -> list[str]:
        return await self.handle.execute_update("register_strategies", names, result_type=list[str])

    async def activate_strategy(self, request: SetStrategyRequest, *, update_id: str) -> str:
        """Returns the strategy that was active before."""
        return await self.handle.execute_update("activate_strategy", request, id=update_id, result_type=str)

    async def publish_candidates(self, candidates: CandidateSet, *, update_id: str) -> bool:
        """False when SystemState refused them because their strategy is no longer the active one."""
        try:
            await self.handle.execute_update("publish_candidates", candidates, id=update_id)
        except WorkflowUpdateFailedError as err:
            if refusal_type(err) == ErrorType.STRATEGY_NOT_ACTIVE:
                return False
            raise
        return True

    async def set_max_concurrent_workflows(self, limit: int) -> int:
        return await self.handle.execute_update("set_max_concurrent_workflows", limit, result_type=int)

    async def set_data_sources(self, change: DataSourcesChange, *, update_id: str) -> DataSourcesChange:
        """Returns the sources in force before."""
        return await self.handle.execute_update(
            "set_data_sources", change, id=update_id, result_type=DataSourcesChange
        )

    async def set_trading_mode(self, change: TradingModeChange, *, update_id: str) -> TradingMode:
        """Returns the mode in force before."""
        return await self.handle.execute_update(
            "set_trading_mode", change, id=update_id, result_type=TradingMode
        )

    # ---- Emergencies -----------------------------------------------------------------------------

    async def declare_emergency(self, incident: EmergencyIncident, *, update_id: str) -> EmergencyLevel:
        """Returns the level in force afterwards (a milder incident never lowers it)."""
        return await self.handle.execute_update(
            "declare_emergency", incident, id=update_id, result_type=EmergencyLevel
        )

    async def resolve_emergency(self, request: ResumeRequest, *, update_id: str) -> list[str]:
        """Returns the ids of the incidents resolved."""
        return await self.handle.execute_update(
            "resolve_emergency", request, id=update_id, result_type=list[str]
        )

    # ---- Learning and agents ---------------------------------------------------------------------

    async def record_learning(self, record: LearningRecord, *, update_id: str) -> LearningState:
        """Returns what SystemState holds, which a retried attempt must adopt."""
        return await self.handle.execute_update(
            "record_learning", record, id=update_id, result_type=LearningState
        )

    async def record_agent_errors(self, update: AgentErrorsUpdate, *, update_id: str) -> list[str]:
        """Returns every agent now disabled, by any source."""
        return await self.handle.execute_update(
            "record_agent_errors", update, id=update_id, result_type=list[str]
        )

    async def enable_agents(self, request: EnableAgentsRequest) -> list[str]:
        """Returns the agents still disabled."""
        return await self.handle.execute_update("enable_agents", request, result_type=list[str])

    # ---- Command slots ---------------------------------------------------------------------------

    async def acquire_command_slot(self, slot: CommandSlot, *, update_id: str) -> SlotDecision:
        return await self.handle.execute_update(
            "acquire_command_slot", slot, id=update_id, result_type=SlotDecision
        )
