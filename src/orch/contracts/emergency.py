"""The emergency stop, the resume, the health check and the tier 3/4 reviews: their inputs and reports.

`EmergencyStopSignal` is also the payload of `TradingEngine`'s `emergency_stop` signal, so
`temporal workflow signal --name emergency_stop --input '{"reason": "..."}'` and the `EmergencyStop`
workflow speak the same language.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orch.contracts.commands import CommandOptions, CommandResult, StepOutcome

# One vocabulary for health everywhere: the trading cycle's step 7 and the health check agree on it.
# DEGRADED is a warning: worth a look, not a reason to stop (`orch health-check` exits 0 on it).
from orch.contracts.cycle import AgentErrorLog
from orch.contracts.cycle import HealthStatus as HealthStatus
from orch.contracts.levels import EmergencyLevel
from orch.contracts.names import (
    DISCOVERY_SCHEDULE_ID,
    STRATEGIC_REVIEW_SCHEDULE_ID,
    TACTICAL_REVIEW_SCHEDULE_ID,
)
from orch.contracts.system import EmergencyIncident

# The resume's refusal without `confirm`: the CLI says it before starting, the workflow if started anyway.
CONFIRM_NEEDED = "resuming trading needs an explicit confirmation: orch resume --confirm"
STOP_LEVELS = tuple(level for level in EmergencyLevel if level is not EmergencyLevel.NONE)

# What an emergency stop pauses and a resume unpauses (only where the stop's note is on the schedule).
EMERGENCY_PAUSED_SCHEDULES = (
    DISCOVERY_SCHEDULE_ID,
    TACTICAL_REVIEW_SCHEDULE_ID,
    STRATEGIC_REVIEW_SCHEDULE_ID,
)

# ---- Emergency stop ------------------------------------------------------------------------------


class EmergencyStopSignal(BaseModel):
    """What `TradingEngine` receives on its `emergency_stop` signal."""

    reason: str
    level: EmergencyLevel = EmergencyLevel.HALT
    requested_by: str = "operator"
    incident_id: str | None = None


def stop_level_error(value: object) -> str:
    return (
        f"unknown emergency level {value!r}; levels, mildest first: "
        f"{', '.join(lv.value for lv in STOP_LEVELS)} (to end an emergency, `orch resume --confirm`)"
    )


class EmergencyStopInput(BaseModel):
    """`temporal workflow start --type EmergencyStop --input '{"reason": "...", "level": "halt"}'`."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500)
    level: EmergencyLevel = EmergencyLevel.HALT
    requested_by: str = Field(default="operator", min_length=1, max_length=64)
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
        if level is EmergencyLevel.NONE:
            raise ValueError(stop_level_error(level.value))
        return level


class ActionStatus(StrEnum):
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


class EmergencyAction(BaseModel):
    """The outcome of one of the emergency stop's (or the resume's) actions."""

    name: str  # the step's name, e.g. "killing_hft"
    status: ActionStatus
    summary: str = ""

    def line(self) -> str:
        """One line for the incident record in SystemState."""
        return f"{self.name}: {self.status.value}" + (f": {self.summary}" if self.summary else "")


class RecordIncidentRequest(BaseModel):
    incident: EmergencyIncident
    # 1 when the stop starts, 2 with the actions filled: the update id dedupes a retried activity.
    revision: int = Field(ge=1)


class IncidentRecorded(StepOutcome):
    level_in_force: EmergencyLevel


class KillHftRequest(BaseModel):
    incident_id: str
    level: EmergencyLevel
    reason: str
    requested_by: str


class HftKilled(StepOutcome):
    state: str  # the TradingState orch hft reports after the kill
    emergency_level: EmergencyLevel
    entries_paused: bool
    orders_cancelled: list[str] = Field(default_factory=list)  # by orch hft's kill itself


class SettleHftRequest(BaseModel):
    incident_id: str
    level: EmergencyLevel
    since: datetime  # the stop's start: orders cancelled from then on count as cancelled by it


class HftSettled(StepOutcome):
    """The kill confirmed at the broker: what the stop cancelled and, at flatten, the positions closed."""

    state: str
    orders_cancelled: list[str] = Field(default_factory=list)
    positions_closed: list[str] = Field(default_factory=list)


class SignalEnginesRequest(BaseModel):
    signal: str  # "emergency_stop" or "resume"
    emergency: EmergencyStopSignal | None = None  # the payload of emergency_stop
    reason: str = ""  # what `resume` carries


class EnginesSignalled(StepOutcome):
    signalled: list[str] = Field(default_factory=list)


class PauseSchedulesRequest(BaseModel):
    incident_id: str
    reason: str
    schedule_ids: list[str]


class ResumeSchedulesRequest(BaseModel):
    incident_ids: list[str]
    requested_by: str
    schedule_ids: list[str]


class SchedulesChanged(StepOutcome):
    changed: list[str] = Field(default_factory=list)  # paused (or resumed) by this call
    untouched: dict[str, str] = Field(default_factory=dict)  # schedule id -> why it was left alone


class EmergencyStopResult(CommandResult):
    incident_id: str
    level: EmergencyLevel
    reason: str
    # The level SystemState holds after this stop (a milder stop never lowers a stricter one).
    level_in_force: EmergencyLevel | None = None
    hft_state: str | None = None  # None when orch hft could not confirm the kill
    actions: list[EmergencyAction] = Field(default_factory=list)
    engines_signalled: list[str] = Field(default_factory=list)
    schedules_paused: list[str] = Field(default_factory=list)
    orders_cancelled: list[str] = Field(default_factory=list)
    positions_closed: list[str] = Field(default_factory=list)


PAUSE_NOTE_PREFIX = "paused by emergency stop "


def pause_note(incident_id: str, reason: str) -> str:
    """The note on a schedule the emergency paused; resume unpauses only schedules carrying it."""
    return f"{PAUSE_NOTE_PREFIX}{incident_id}: {reason}"[:300]


def paused_by(note: str) -> str | None:
    """The incident id in a schedule note written by `pause_note`, else None."""
    if not note.startswith(PAUSE_NOTE_PREFIX):
        return None
    return note[len(PAUSE_NOTE_PREFIX) :].split(":", 1)[0]


# ---- Resume --------------------------------------------------------------------------------------


class ResumeTradingInput(BaseModel):
    """`orch resume --confirm`; `temporal workflow start --type ResumeTrading --input '{"confirm": true}'`."""

    model_config = ConfigDict(extra="forbid")

    confirm: bool = False
    reason: str = Field(default="resumed by operator", min_length=1, max_length=500)
    requested_by: str = Field(default="operator", min_length=1, max_length=64)
    options: CommandOptions = Field(default_factory=CommandOptions)


class ActiveEmergency(StepOutcome):
    level: EmergencyLevel
    incident_ids: list[str]


class HftResumed(StepOutcome):
    state: str


class EmergencyResolved(StepOutcome):
    resolved: list[str] = Field(default_factory=list)


class ResumeTradingResult(CommandResult):
    resolved_incidents: list[str] = Field(default_factory=list)
    previous_level: EmergencyLevel | None = None
    hft_state: str | None = None
    schedules_resumed: list[str] = Field(default_factory=list)
    engines_signalled: list[str] = Field(default_factory=list)


# ---- Health check --------------------------------------------------------------------------------


def worst(statuses: list[HealthStatus]) -> HealthStatus:
    order = list(HealthStatus)
    return max(statuses, key=order.index, default=HealthStatus.HEALTHY)


class ComponentHealth(BaseModel):
    component: (
        str  # "temporal", "queue:orch-discovery", "hft", "broker", "data:simulated", "agent:conditions"
    )
    status: HealthStatus
    detail: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)


class HealthCheckInput(BaseModel):
    """`temporal workflow start --type HealthCheck --task-queue orch-critical --input '{}'`."""

    model_config = ConfigDict(extra="forbid")

    # Missing orch-backtest pollers: unhealthy when true, a warning when false, the worker's setting if None.
    require_backtest_worker: bool | None = None
    options: CommandOptions = Field(default_factory=lambda: CommandOptions(max_retries=1))


class ComponentChecks(StepOutcome):
    components: list[ComponentHealth] = Field(default_factory=list)
    emergency_level: EmergencyLevel | None = None
    disabled_agents: list[str] = Field(default_factory=list)
    resource_pools: dict[str, dict[str, float]] | None = None


class HealthReport(BaseModel):
    checked_at: datetime
    status: HealthStatus
    components: list[ComponentHealth] = Field(default_factory=list)
    emergency_level: EmergencyLevel = EmergencyLevel.NONE
    # Agents disabled after error_threshold consecutive errors, by name.
    disabled_agents: list[str] = Field(default_factory=list)
    # Issue 5's shared resource pool: statistics per pool or API (requests, error_rate, cache_size,
    # hit_rate), filled by the worker that ran the check; None while no pool reports.
    resource_pools: dict[str, dict[str, float]] | None = None

    @property
    def unhealthy(self) -> list[ComponentHealth]:
        return [c for c in self.components if c.status is HealthStatus.UNHEALTHY]


class HealthCheckResult(CommandResult):
    report: HealthReport | None = None


# ---- Reviews (tiers 3 and 4) ---------------------------------------------------------------------


class ReviewInput(BaseModel):
    """What the `tactical-review` and `strategic-review` schedules start their workflows with."""

    model_config = ConfigDict(extra="forbid")

    symbols: int = Field(default=5, ge=1, le=200)  # how many symbols of the universe to look at
    error_threshold: int = Field(default=5, ge=1)
    step_timeout_seconds: float = Field(default=30.0, gt=0)
    # Each activity heartbeats: a worker that dies mid-review is noticed after this long, not the timeout.
    heartbeat_timeout_seconds: float = Field(default=10.0, gt=0)


class ReviewContext(BaseModel):
    """What a review reads first: the agents already disabled and the emergency in force."""

    disabled_agents: list[str] = Field(default_factory=list)
    emergency_level: EmergencyLevel = EmergencyLevel.NONE


class ReviewFinding(BaseModel):
    area: str  # "market_conditions", "agent_health", "portfolio_risk", ...
    agent: str | None = None  # the agent that produced it (counted by the error tracker)
    status: HealthStatus
    summary: str
    figures: dict[str, float] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


class AgentOutcomes(BaseModel):
    """This review's agent calls: who answered, who raised (and why)."""

    review: str  # "tactical" or "strategic": each keeps its own counts in SystemState
    review_id: str  # the review workflow id, so a retried record is a no-op
    succeeded: list[str] = Field(default_factory=list)
    failed: dict[str, str] = Field(default_factory=dict)
    error_threshold: int = Field(default=5, ge=1)


class AgentHealth(BaseModel):
    log: AgentErrorLog
    newly_disabled: list[str] = Field(default_factory=list)
    report: list[str] = Field(default_factory=list)


class ReviewReport(BaseModel):
    review: str  # "tactical" or "strategic"
    workflow_id: str
    started_at: datetime
    finished_at: datetime | None = None
    status: HealthStatus = HealthStatus.HEALTHY
    findings: list[ReviewFinding] = Field(default_factory=list)
    # Agents skipped because an earlier review disabled them, and those this review disabled.
    skipped_agents: list[str] = Field(default_factory=list)
    agents_disabled: list[str] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
