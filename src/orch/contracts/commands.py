"""Command workflows: their inputs, the `progress` query's shape, and their results.

`Progress` is a public contract (DESIGN.md): `temporal workflow query --name progress` returns
exactly this JSON, the same as the original orchestration agent's progress updates.
"""

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class CommandStatus(StrEnum):
    QUEUED = "queued"  # waiting for a command slot (max_concurrent_workflows)
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (CommandStatus.COMPLETED, CommandStatus.FAILED, CommandStatus.CANCELLED)


class ProgressDetails(BaseModel):
    steps_completed: list[str] = Field(default_factory=list)
    steps_failed: list[str] = Field(default_factory=list)
    error_messages: list[str] = Field(default_factory=list)


class Progress(BaseModel):
    workflow_id: str
    command_type: str
    progress: float = Field(ge=0.0, le=1.0)
    current_step: str | None
    status: CommandStatus
    timestamp: datetime
    details: ProgressDetails = Field(default_factory=ProgressDetails)


class CommandOptions(BaseModel):
    """Tuning every command accepts; defaults suit production, tests shrink them to seconds."""

    model_config = ConfigDict(extra="forbid")

    max_retries: int = Field(default=3, ge=0, le=20)
    initial_retry_interval_seconds: float = Field(default=1.0, gt=0)
    max_retry_interval_seconds: float = Field(default=30.0, gt=0)
    step_timeout_seconds: float = Field(default=120.0, gt=0)
    # Long steps heartbeat; a dead worker is noticed after this long and the step is retried elsewhere.
    heartbeat_timeout_seconds: float = Field(default=10.0, gt=0)
    workflow_timeout_seconds: float = Field(default=900.0, gt=0)


class StepReport(BaseModel):
    name: str
    status: CommandStatus
    attempts: int = Field(default=0, ge=0)
    summary: str = ""
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class StepOutcome(BaseModel):
    """What every step activity returns: a human summary and the attempt that succeeded."""

    summary: str
    attempt: int = Field(default=1, ge=1)


class CommandResult(BaseModel):
    workflow_id: str
    command_type: str
    status: CommandStatus
    steps: list[StepReport]
    error: str | None = None
    # What the command did that undoing a failure required (for example the schedule restored).
    compensation: list[str] = Field(default_factory=list)


# ---- RestartDiscoverySystem ----------------------------------------------------------------------


class RestartDiscoveryInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategy: str = Field(min_length=1)
    # Cancel scans in flight instead of waiting for them to drain.
    force_stop: bool = False
    drain_timeout_seconds: float = Field(default=60.0, gt=0)
    # How long step 4 waits for the first scan under the new strategy.
    validation_timeout_seconds: float = Field(default=120.0, gt=0)
    options: CommandOptions = Field(default_factory=CommandOptions)


class RestartDiscoveryResult(CommandResult):
    previous_strategy: str | None = None
    active_strategy: str | None = None
    validation_scan_id: str | None = None
    candidates_found: int = 0
