"""Discovery: what a scan is asked for and the ranked candidates it publishes."""

from datetime import datetime

from pydantic import BaseModel, Field

from orch.contracts.commands import StepOutcome


class Candidate(BaseModel):
    symbol: str
    score: float
    rank: int = Field(ge=1)
    # The signal components behind the score, so a reader can see why a symbol ranks where it does.
    factors: dict[str, float] = Field(default_factory=dict)
    last_price: float = Field(gt=0)


class DiscoveryScanInput(BaseModel):
    strategy: str = Field(min_length=1)
    top_n: int = Field(default=10, ge=1, le=500)
    # Who asked for the scan (the schedule, or a RestartDiscoverySystem run), for the audit trail.
    requested_by: str = "schedule"
    # Scheduled scans publish to SystemState; a restart's validation scan does not, so nothing from an
    # unvalidated strategy reaches the trading cycle.
    publish: bool = True
    heartbeat_timeout_seconds: float = Field(default=10.0, gt=0)
    timeout_seconds: float = Field(default=300.0, gt=0)


class CandidateSet(BaseModel):
    """The output of one scan: what the trading cycle reads as its universe of candidates."""

    scan_workflow_id: str
    strategy: str
    as_of: datetime
    universe_size: int = Field(ge=0)
    candidates: list[Candidate]
    # Every symbol the scan could score, best first (the candidates are its first top_n; the rest carry
    # no factors, to stay small). The trading cycle keeps from it what orch hft trades and is open.
    ranking: list[Candidate] = Field(default_factory=list)


# ---- RestartDiscoverySystem's step requests and outcomes ---------------------------------------


class StopDiscoveryRequest(BaseModel):
    restart_id: str  # the RestartDiscoverySystem workflow id: names the pause note and the new scan
    force_stop: bool = False
    drain_timeout_seconds: float = Field(default=60.0, gt=0)


class DiscoveryStopped(StepOutcome):
    schedule_was_paused: bool
    drained: list[str] = Field(default_factory=list)
    cancelled: list[str] = Field(default_factory=list)


class QueueCleared(StepOutcome):
    removed: list[str] = Field(default_factory=list)


class RestartDiscoveryRequest(BaseModel):
    restart_id: str
    strategy: str
    top_n: int = Field(default=10, ge=1)
    heartbeat_timeout_seconds: float = Field(default=10.0, gt=0)


class DiscoveryRestarted(StepOutcome):
    scan_workflow_id: str


class ValidateDiscoveryRequest(BaseModel):
    scan_workflow_id: str
    strategy: str
    timeout_seconds: float = Field(gt=0)


class DiscoveryValidated(StepOutcome):
    candidates: CandidateSet


class UpdateConfigurationRequest(BaseModel):
    restart_id: str
    candidates: CandidateSet


class ConfigurationUpdated(StepOutcome):
    previous_strategy: str


class RestoreDiscoveryRequest(BaseModel):
    restart_id: str


# ---- The discovery schedule's pause note (one protocol for whoever pauses and resumes it) -----------

RESTART_PAUSE_NOTE_PREFIX = "paused by RestartDiscoverySystem "


def restart_pause_note(restart_id: str) -> str:
    """The note on the discovery-scan schedule while a RestartDiscoverySystem holds it paused: the
    restart resumes only a schedule carrying its own note, and an emergency stop takes over one
    carrying any restart's note."""
    return f"{RESTART_PAUSE_NOTE_PREFIX}{restart_id}"


def paused_by_a_restart(note: str) -> bool:
    return note.startswith(RESTART_PAUSE_NOTE_PREFIX)
