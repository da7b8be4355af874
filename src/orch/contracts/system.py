"""The system's live configuration held by the `SystemState` entity workflow.

Every change goes through a validated update, so the workflow's history is the audit trail.
"""

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from orch.contracts.discovery import CandidateSet


class TradingMode(StrEnum):
    SIMULATED = "simulated"
    PAPER = "paper"
    LIVE = "live"


class EmergencyLevel(StrEnum):
    """Each level is stricter than the last (DESIGN.md)."""

    NONE = "none"
    PAUSE_ENTRIES = "pause_entries"  # no new positions
    REDUCE_ONLY = "reduce_only"
    HALT = "halt"  # everything denied but cancels; open orders cancelled
    FLATTEN = "flatten"  # halt, then close every position


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
    """SystemState's answer to a slot request, signalled back to the requesting workflow."""

    granted: bool
    reason: str = ""


class SetStrategyRequest(BaseModel):
    strategy: str = Field(min_length=1)
    requested_by: str


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
