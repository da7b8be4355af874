"""The emergency stop, the resume, the health check and the tier 3/4 reviews: their inputs and reports.

`EmergencyStopSignal` is also the payload of `TradingEngine`'s `emergency_stop` signal, so
`temporal workflow signal --name emergency_stop --input '{"reason": "..."}'` and the `EmergencyStop`
workflow speak the same language.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orch.contracts.commands import CommandOptions, CommandResult
from orch.contracts.levels import EmergencyLevel

# ---- Emergency stop ------------------------------------------------------------------------------


class EmergencyStopSignal(BaseModel):
    """What `TradingEngine` receives on its `emergency_stop` signal."""

    reason: str
    level: EmergencyLevel = EmergencyLevel.HALT
    requested_by: str = "operator"
    incident_id: str | None = None


def _stop_level(level: EmergencyLevel) -> EmergencyLevel:
    if level is EmergencyLevel.NONE:
        levels = ", ".join(lv.value for lv in EmergencyLevel if lv is not EmergencyLevel.NONE)
        raise ValueError(f"an emergency stop needs a level above none ({levels}); to end one, resume")
    return level


class EmergencyStopInput(BaseModel):
    """`temporal workflow start --type EmergencyStop --input '{"reason": "...", "level": "halt"}'`."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1)
    level: EmergencyLevel = EmergencyLevel.HALT
    requested_by: str = "operator"
    options: CommandOptions = Field(default_factory=CommandOptions)

    @field_validator("reason")
    @classmethod
    def _reason_not_blank(cls, reason: str) -> str:
        if not reason.strip():
            raise ValueError("a reason is required (it is recorded with the incident)")
        return reason.strip()

    @field_validator("level")
    @classmethod
    def _level_above_none(cls, level: EmergencyLevel) -> EmergencyLevel:
        return _stop_level(level)


class ActionStatus(StrEnum):
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


class EmergencyAction(BaseModel):
    """The outcome of one of the emergency stop's parallel actions."""

    name: str  # kill_hft, signal_engines, pause_schedules, cancel_orders, close_positions, record_incident
    status: ActionStatus
    summary: str = ""
    error: str | None = None

    def line(self) -> str:
        """One line for the incident record in SystemState."""
        text = f"{self.name}: {self.status.value}"
        if self.summary:
            text += f": {self.summary}"
        if self.error:
            text += f" ({self.error})"
        return text


class EmergencyStopResult(CommandResult):
    incident_id: str
    level: EmergencyLevel
    reason: str
    # The trading state orch hft confirmed after the kill (None when it could not be confirmed).
    hft_state: str | None = None
    actions: list[EmergencyAction] = Field(default_factory=list)
    engines_signalled: list[str] = Field(default_factory=list)
    schedules_paused: list[str] = Field(default_factory=list)
    orders_cancelled: int = 0
    positions_closing: int = 0


class KillHftRequest(BaseModel):
    incident_id: str
    level: EmergencyLevel
    reason: str
    requested_by: str


class KillHftOutcome(BaseModel):
    state: str  # the TradingState orch hft reports after the kill
    open_orders_before: int = 0
    open_orders_after: int = 0
    positions_before: int = 0
    # Orders orch hft had not cancelled by the time the activity gave up waiting.
    still_open: list[str] = Field(default_factory=list)
    closing_orders: int = 0
    summary: str = ""


class SignalEnginesRequest(BaseModel):
    signal: str  # "emergency_stop" or "resume"
    payload: EmergencyStopSignal | None = None


class SignalEnginesOutcome(BaseModel):
    signalled: list[str] = Field(default_factory=list)
    failed: dict[str, str] = Field(default_factory=dict)


class PauseSchedulesRequest(BaseModel):
    incident_id: str
    reason: str
    schedule_ids: list[str]


class SchedulesOutcome(BaseModel):
    changed: list[str] = Field(default_factory=list)  # paused (or unpaused) by this call
    untouched: dict[str, str] = Field(default_factory=dict)  # schedule id -> why it was left alone
    failed: dict[str, str] = Field(default_factory=dict)


# ---- Resume --------------------------------------------------------------------------------------


class ResumeTradingInput(BaseModel):
    """`orch resume --confirm`: refused without `confirm`."""

    model_config = ConfigDict(extra="forbid")

    confirm: bool = False
    reason: str = "resumed by operator"
    requested_by: str = "operator"
    options: CommandOptions = Field(default_factory=CommandOptions)


class ResumeSchedulesRequest(BaseModel):
    incident_ids: list[str]
    schedule_ids: list[str]


class ResumeTradingResult(CommandResult):
    resolved_incidents: list[str] = Field(default_factory=list)
    hft_state: str | None = None
    schedules_resumed: list[str] = Field(default_factory=list)
    engines_signalled: list[str] = Field(default_factory=list)
    actions: list[EmergencyAction] = Field(default_factory=list)


# ---- Health check --------------------------------------------------------------------------------


class HealthStatus(StrEnum):
    HEALTHY = "healthy"
    WARNING = "warning"  # worth a look, not a reason to stop trading (exit code stays 0)
    UNHEALTHY = "unhealthy"

    @property
    def rank(self) -> int:
        return list(HealthStatus).index(self)


class ComponentHealth(BaseModel):
    component: str  # e.g. "temporal", "queue:orch-discovery", "hft", "data:simulated", "agent:risk"
    status: HealthStatus
    detail: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)


class HealthCheckInput(BaseModel):
    """`temporal workflow start --type HealthCheck --input '{}'`."""

    model_config = ConfigDict(extra="forbid")

    # Task queues that must have pollers; others without pollers are warnings.
    required_queues: list[str] = Field(default_factory=lambda: ["orch", "orch-critical", "orch-discovery"])
    optional_queues: list[str] = Field(default_factory=lambda: ["orch-backtest"])
    # Data older than this (seconds, per source) is stale; None uses the worker's settings.
    max_data_age_seconds: float | None = Field(default=None, gt=0)
    options: CommandOptions = Field(default_factory=CommandOptions)


class ResourcePoolStats(BaseModel):
    """Placeholder for issue 5's resource pools; the health check leaves it empty until they exist."""

    pools: dict[str, dict[str, float]] = Field(default_factory=dict)


class HealthReport(BaseModel):
    checked_at: datetime
    status: HealthStatus
    components: list[ComponentHealth] = Field(default_factory=list)
    # Agents disabled after too many errors (AgentErrorTracker), by name.
    disabled_agents: list[str] = Field(default_factory=list)
    emergency_level: EmergencyLevel = EmergencyLevel.NONE
    # Filled by issue 5 (resource pools); None while no pool reports.
    resource_pools: ResourcePoolStats | None = None

    @property
    def unhealthy(self) -> list[ComponentHealth]:
        return [c for c in self.components if c.status is HealthStatus.UNHEALTHY]


class HealthCheckResult(CommandResult):
    report: HealthReport


# ---- Reviews (tiers 3 and 4) ---------------------------------------------------------------------


class ReviewInput(BaseModel):
    """What the `tactical-review` and `strategic-review` schedules start their workflows with."""

    model_config = ConfigDict(extra="forbid")

    symbols: int = Field(default=5, ge=1, le=200)  # how many symbols of the universe to look at
    history_bars: int = Field(default=120, ge=20)
    error_threshold: int = Field(default=5, ge=1)
    step_timeout_seconds: float = Field(default=30.0, gt=0)


class ReviewFinding(BaseModel):
    area: str  # "market_conditions", "agent_health", "portfolio_risk", ...
    status: HealthStatus
    summary: str
    data: dict[str, float | str] = Field(default_factory=dict)


class ReviewReport(BaseModel):
    review: str  # "tactical" or "strategic"
    workflow_id: str
    started_at: datetime
    finished_at: datetime | None = None
    status: HealthStatus = HealthStatus.HEALTHY
    findings: list[ReviewFinding] = Field(default_factory=list)
    # Agents this review disabled in SystemState (error_threshold reached).
    agents_disabled: list[str] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
