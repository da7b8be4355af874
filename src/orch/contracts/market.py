"""Market data shared by the market sources, the agents and the workflows."""

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Regime(StrEnum):
    TRENDING = "trending"
    RANGING = "ranging"
    VOLATILE = "volatile"


class MarketClosure(StrEnum):
    """Why an exchange is closed at a moment (orch.market.calendars decides; reports say it)."""

    WEEKEND = "weekend"
    HOLIDAY = "holiday"
    BEFORE_OPEN = "before_open"  # a session day, before its open
    AFTER_CLOSE = "after_close"  # a session day, after its regular close
    EARLY_CLOSE = "early_close"  # a session day that closed early (13:00 New York), after its close

    def describe(self) -> str:
        return _CLOSURE_WORDS[self]


_CLOSURE_WORDS = {
    MarketClosure.WEEKEND: "weekend",
    MarketClosure.HOLIDAY: "holiday",
    MarketClosure.BEFORE_OPEN: "before the open",
    MarketClosure.AFTER_CLOSE: "after the close",
    MarketClosure.EARLY_CLOSE: "after an early close",
}


class MarketStatus(BaseModel):
    """Whether a symbol trades at a moment and, if not, why (`orch.market.calendars.market_status`)."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    closure: MarketClosure | None = None  # None: open
    holiday: str | None = None  # the holiday's name, when the calendar names it

    @property
    def open(self) -> bool:
        return self.closure is None

    def __str__(self) -> str:
        """For example "SPY (holiday: Christmas)" or "SPY (before the open)"; the symbol alone when open."""
        if self.closure is None:
            return self.symbol
        why = self.closure.describe()
        return f"{self.symbol} ({why}: {self.holiday})" if self.holiday else f"{self.symbol} ({why})"


class Bar(BaseModel):
    """One OHLCV bar. Timestamps are timezone-aware UTC, the bar's open time."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    timestamp: datetime
    open: float = Field(gt=0)
    high: float = Field(gt=0)
    low: float = Field(gt=0)
    close: float = Field(gt=0)
    volume: float = Field(ge=0)
