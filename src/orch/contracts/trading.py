"""Orders, plans and trading states shared by the trading cycle and the `orch hft` process.

The trading cycle composes `StrategyPlan`s (step 4), the risk step approves or scales them
(step 5), and the execute step sends them to `orch hft`, whose tier-2 handlers act on them.
"""

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class TradingState(StrEnum):
    """The pre-trade risk gate's states (NautilusTrader's naming)."""

    ACTIVE = "active"
    REDUCING = "reducing"  # only orders that shrink a position
    HALTED = "halted"  # everything denied except cancels


class StrategyKind(StrEnum):
    TREND = "trend"
    MEAN_REVERSION = "mean_reversion"
    BREAKOUT = "breakout"
    GENERIC = "generic"


class StrategyPlan(BaseModel):
    """One symbol's instruction from the trading cycle to the execution process."""

    model_config = ConfigDict(extra="forbid")

    plan_id: str = Field(min_length=1)
    symbol: str = Field(min_length=1)
    strategy: StrategyKind
    side: Side
    quantity: float = Field(gt=0)
    # Limit for entry; None means the tier-2 handler chooses its entry from live ticks.
    entry_price: float | None = Field(default=None, gt=0)
    stop_loss: float = Field(gt=0)
    take_profit: float = Field(gt=0)
    valid_until: datetime
    reason: str = ""
