"""The system's live configuration held by the `SystemState` entity workflow.

Every change goes through a validated update, so the workflow's history is the audit trail.
"""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from orch.contracts.cycle import AgentErrorLog, LearningState
from orch.contracts.discovery import CandidateSet

# Re-exported: callers think of the levels as part of the system's state.
from orch.contracts.levels import EmergencyLevel as EmergencyLevel
from orch.contracts.levels import TradingMode as TradingMode


class DataSources(BaseModel):
    primary: str = "simulated"
    fallbacks: list[str] = Field(default_factory=list)


class SystemConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    active_strategy: str = "hybrid_v1"
    data_sources: DataSources = Field(default_factory=DataSources)
    trading_mode: TradingMode = TradingMode.SIMULATED
    emergency_level: EmergencyLevel = EmergencyLevel.NONE
    max_concurrent_workflows: int = Field(default=5, ge=1, le=1000)


class ConfigChange(BaseModel):
    """One audited change, kept in the state so `orch` can show recent history without reading events."""

    at: datetime
    by: str
    field: str
    old: str
    new: str


class CommandSlot(BaseModel):
    workflow_id: str
    command_type: str
    # A command type that may not run twice at once (RestartDiscoverySystem).
    exclusive: bool = False


class SlotDecision(BaseModel):
    """SystemState's answer to a slot request: the `acquire_command_slot` update's result, or the
    `command_slot_decision` signal sent to a command that had to queue."""

    granted: bool
    reason: str = ""
    queued: bool = False  # not granted yet: the grant follows by signal when a slot frees


class SetStrategyRequest(BaseModel):
    strategy: str = Field(min_length=1)
    requested_by: str


class EmergencyIncident(BaseModel):
    """One emergency stop, recorded durably in SystemState by the `EmergencyStop` workflow."""

    incident_id: str  # the EmergencyStop workflow id
    level: EmergencyLevel
    reason: str = Field(min_length=1)
    requested_by: str
    at: datetime
    actions: list[str] = Field(default_factory=list)  # what was done, one line per action
    resolved_at: datetime | None = None
    resolved_by: str | None = None


class ResumeRequest(BaseModel):
    """`orch resume --confirm`: trading may start again; refused without `confirm`."""

    requested_by: str
    confirm: bool = False
    reason: str = ""


class LearningRecord(BaseModel):
    """What the trading cycle learned, persisted so that every engine and replica starts from it."""

    cycle_id: str  # the TradingCycle workflow id; a retried update with the same id is a no-op
    state: LearningState


class EnableAgentsRequest(BaseModel):
    """`enable_agents`: an operator re-enables agents the reviews disabled (`orch agents enable`)."""

    model_config = ConfigDict(extra="forbid")

    agents: list[str] = Field(min_length=1)
    requested_by: str = Field(default="operator", min_length=1, max_length=64)


class AgentErrorsUpdate(BaseModel):
    """`record_agent_errors`: one source's agent error counts (AgentErrorTracker), replacing its last ones.

    Each source (a review, a trading engine) owns its own log, so two sources never overwrite each other.
    """

    source: str = Field(min_length=1)  # "tactical-review", "strategic-review", an engine's workflow id
    log: AgentErrorLog
    requested_by: str = "orch"


class DataSourcesChange(BaseModel):
    sources: DataSources
    requested_by: str


class TradingModeChange(BaseModel):
    mode: TradingMode
    requested_by: str
    # Live trading needs this second confirmation on top of the mode itself.
    confirm_live: bool = False


class SystemStateSnapshot(BaseModel):
    """The whole state of the entity: what the `state` query returns and continue-as-new carries."""

    config: SystemConfig = Field(default_factory=SystemConfig)
    running_commands: list[CommandSlot] = Field(default_factory=list)
    waiting_commands: list[CommandSlot] = Field(default_factory=list)
    latest_candidates: CandidateSet | None = None
    recent_changes: list[ConfigChange] = Field(default_factory=list)
    # Strategies the workers know; filled by the worker at start-up so validators can check names.
    known_strategies: list[str] = Field(default_factory=list)
    # How often slots held by commands are checked for holders that ended without releasing.
    reap_interval_seconds: float = Field(default=30.0, gt=0)
    # Emergency stops, newest last; the active one (if any) is the newest unresolved.
    incidents: list[EmergencyIncident] = Field(default_factory=list)
    # Strategy weights and regime thresholds learned by the trading cycle.
    learning: LearningState | None = None
    last_learning_cycle: str | None = None
    # Agent error counts per source (record_agent_errors); an agent disabled in any source is disabled.
    agent_errors: dict[str, AgentErrorLog] = Field(default_factory=dict)

    def disabled_agents(self) -> list[str]:
        return sorted(
            {name for log in self.agent_errors.values() for name, r in log.agents.items() if r.disabled}
        )
