"""Discovery: what a scan is asked for and the ranked candidates it publishes."""

from datetime import datetime

from pydantic import BaseModel, Field


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


class CandidateSet(BaseModel):
    """The output of one scan: what the trading cycle reads as its universe of candidates."""

    scan_workflow_id: str
    strategy: str
    as_of: datetime
    universe_size: int = Field(ge=0)
    candidates: list[Candidate]
