"""Orders, plans and trading states shared by the trading cycle and the `orch hft` process.

The trading cycle composes `StrategyPlan`s (step 4), the risk step approves or scales them
(step 5), and the execute step sends them to `orch hft`, whose tier-2 handlers act on them.
"""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from orch.contracts.levels import EmergencyLevel, TradingMode, TradingState
from orch.contracts.market import MarketStatus


def _iso_8601(value: Any) -> Any:
    """A date-time in a body is ISO 8601 text; pydantic would also read "5" as a Unix timestamp."""
    if not isinstance(value, str):
        return value
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"expected an ISO 8601 date-time such as 2025-01-31T12:00:00Z, got {value[:40]!r}"
        ) from None


IsoDateTime = Annotated[datetime, BeforeValidator(_iso_8601)]


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


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
    valid_until: IsoDateTime
    reason: str = ""


# ---- Orders and fills ----------------------------------------------------------------------------


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"


class OrderStatus(StrEnum):
    # Written to the journal before the broker sees the order: a crash here leaves an order the
    # restart must look up by client_order_id, never submit a second time.
    PENDING_SUBMIT = "pending_submit"
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    # Asked to cancel: still open, and may still fill, until the venue says cancelled or filled.
    PENDING_CANCEL = "pending_cancel"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"  # a day order still open at its session's close: the venue closed it

    @property
    def terminal(self) -> bool:
        return self in (OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED)


class OrderIntent(BaseModel):
    """What a strategy (or the control API) wants to trade; it becomes an order only past the risk gate.

    A limit order needs its `limit_price`; a market order must not carry one (the gate would value
    the order at that price instead of the market's, and a tiny price would slip any notional limit).
    The published schema says the same, so what it calls valid the server accepts.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "if": {"properties": {"order_type": {"const": "limit"}}, "required": ["order_type"]},
            "then": {"properties": {"limit_price": {"type": "number"}}, "required": ["limit_price"]},
            "else": {"properties": {"limit_price": {"type": "null"}}},
        },
    )

    symbol: str = Field(min_length=1)
    side: Side
    quantity: float = Field(gt=0)
    order_type: OrderType = OrderType.MARKET
    limit_price: float | None = Field(default=None, gt=0)
    # Which component asked: "mm", "arb", "trend", "position_manager", "api", ... (for denials and P&L).
    source: str = Field(default="api", min_length=1, max_length=32)
    # The plan this order serves, if any; exits carry the plan of the position they close.
    plan_id: str | None = None
    # Set on exits: the gate still checks it, and in REDUCING only such shrinking orders pass.
    reduce_only: bool = False
    # A caller-chosen idempotency key: the same key always maps to the same client_order_id.
    idempotency_key: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _price_matches_type(self) -> "OrderIntent":
        if self.order_type is OrderType.LIMIT and self.limit_price is None:
            raise ValueError("a limit order needs a limit_price")
        if self.order_type is OrderType.MARKET and self.limit_price is not None:
            raise ValueError("a market order takes no limit_price (it trades at the market's price)")
        return self


class Order(BaseModel):
    """An order as the journal and the brokers know it. `client_order_id` is ours and deterministic."""

    client_order_id: str
    broker_order_id: str | None = None
    symbol: str
    side: Side
    quantity: float = Field(gt=0)
    order_type: OrderType = OrderType.MARKET
    limit_price: float | None = None
    status: OrderStatus = OrderStatus.PENDING_SUBMIT
    filled_quantity: float = 0.0
    average_fill_price: float | None = None
    source: str = "api"
    plan_id: str | None = None
    reduce_only: bool = False
    created_at: datetime
    updated_at: datetime | None = None
    reject_reason: str | None = None

    @property
    def remaining(self) -> float:
        return max(self.quantity - self.filled_quantity, 0.0)

    def opens_or_grows(self, held: float) -> bool:
        """Would its remaining quantity, filled, open a position, grow `held` (signed) or carry it past
        zero? Shrinking is the gate's rule: toward zero without crossing it. Reduce-only never grows."""
        if self.reduce_only:
            return False
        after = held + (self.remaining if self.side is Side.BUY else -self.remaining)
        shrinks = held != 0 and abs(after) < abs(held) and (after == 0 or (after > 0) == (held > 0))
        return not shrinks


class Fill(BaseModel):
    """One execution. `cumulative_quantity` lets a reader that missed fills catch up, counting none twice."""

    fill_id: str
    client_order_id: str
    symbol: str
    side: Side
    quantity: float = Field(gt=0)
    price: float = Field(gt=0)
    # In cash. A venue that takes its fee out of the asset bought (Alpaca crypto) reports it in
    # `fee_quantity` instead: the position grows by quantity - fee_quantity (InstrumentRules.fee).
    fee: float = 0.0
    fee_quantity: float = Field(default=0.0, ge=0)
    cumulative_quantity: float = Field(gt=0)
    timestamp: datetime
    # The journal's own sequence number: the cursor of `GET /fills?since=`.
    sequence: int | None = None


class Position(BaseModel):
    """Signed quantity: positive long, negative short."""

    symbol: str
    quantity: float
    average_price: float = 0.0
    realized_pnl: float = 0.0
    unrealized_pnl: float = 0.0
    market_price: float | None = None
    # The plan whose entry opened the position, so the position manager knows its exit rules.
    plan_id: str | None = None


class Account(BaseModel):
    cash: float
    equity: float
    buying_power: float
    currency: str = "USD"


# ---- Risk ----------------------------------------------------------------------------------------


class RiskLimits(BaseModel):
    """The pre-trade risk gate's limits. Defaults suit a small paper account."""

    model_config = ConfigDict(extra="forbid")

    max_order_notional: float = Field(default=50_000.0, gt=0)
    max_position_quantity: float = Field(default=1_000.0, gt=0)  # per symbol, absolute
    max_position_notional: float = Field(default=100_000.0, gt=0)  # per symbol, absolute
    max_gross_exposure: float = Field(default=500_000.0, gt=0)  # sum of |position notional|
    max_orders_per_interval: int = Field(default=500, ge=1)
    throttle_interval_seconds: float = Field(default=1.0, gt=0)
    # Realized plus unrealized loss since the start of the UTC day; reaching it halts by itself.
    max_daily_loss: float = Field(default=10_000.0, gt=0)


class DenialReason(StrEnum):
    HALTED = "halted"
    REDUCING_WOULD_INCREASE = "reducing_would_increase"
    ENTRIES_PAUSED = "entries_paused"
    ORDER_NOTIONAL = "max_order_notional"
    POSITION_QUANTITY = "max_position_quantity"
    POSITION_NOTIONAL = "max_position_notional"
    GROSS_EXPOSURE = "max_gross_exposure"
    RATE_THROTTLE = "order_rate_throttle"
    DAILY_LOSS = "daily_loss_breaker"
    NO_PRICE = "no_price"
    INVALID = "invalid_order"  # unknown symbol, not a finite positive number, above the maximum size
    REDUCE_ONLY_WOULD_INCREASE = "reduce_only_would_increase"
    # The instrument's rules (orch.contracts.instruments), after the router rounded the order:
    INVALID_INCREMENT = "invalid_increment"  # quantity or limit price off its grid
    BELOW_MINIMUM = "below_minimum"  # quantity or notional below the instrument's minimum
    NOT_FRACTIONABLE = "not_fractionable"  # a fraction where whole units (or another order type) are needed
    ORDER_TYPE_NOT_ALLOWED = "order_type_not_allowed"
    # The instrument's market is closed now (orch.market.calendars.is_tradable); was weekend_equity.
    MARKET_CLOSED = "market_closed"
    # Would trade against the account's own open order on the other side (Alpaca: "wash trade").
    SELF_CROSS = "self_cross"
    # A sale beyond the position of an instrument that cannot be shorted (Alpaca crypto).
    NOT_SHORTABLE = "not_shortable"


class RiskDecision(BaseModel):
    approved: bool
    reason: DenialReason | None = None
    detail: str = ""


# ---- The execution process's status --------------------------------------------------------------


class KillRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # "none" is not a kill (POST /resume trades again); the schema says so too.
    level: EmergencyLevel = Field(json_schema_extra={"not": {"const": EmergencyLevel.NONE.value}})

    @field_validator("level")
    @classmethod
    def _not_none(cls, level: EmergencyLevel) -> EmergencyLevel:
        if level is EmergencyLevel.NONE:
            raise ValueError("level 'none' is not a kill; use POST /resume to trade again")
        return level

    reason: str = Field(min_length=1, max_length=500)
    requested_by: str = Field(default="api", max_length=64)


class TradingStateChange(BaseModel):
    """A requested change of the gate's state (resume asks for ACTIVE)."""

    model_config = ConfigDict(extra="forbid")

    state: TradingState
    reason: str = Field(min_length=1, max_length=500)
    requested_by: str = Field(default="api", max_length=64)


class TradingStatus(BaseModel):
    state: TradingState
    entries_paused: bool = False
    emergency_level: EmergencyLevel = EmergencyLevel.NONE
    reason: str = ""
    changed_at: datetime
    reconciled: bool = False

    def took_kill(self, level: EmergencyLevel) -> bool:
        """The gate holds the level (or a stricter one) in at least the state the level puts it in."""
        return (
            not level.stricter_than(self.emergency_level)
            and self.entries_paused
            and self.state.at_least(level.rules.gate_state)
        )


class LevelSettlement(BaseModel):
    """What an emergency level still waits for in `orch hft` after its kill: the open orders it
    forbids (cancels the broker has not confirmed yet) and, at flatten, the positions not yet closed."""

    level: EmergencyLevel
    state: TradingState
    orders: list[str] = Field(default_factory=list)
    positions: dict[str, float] = Field(default_factory=dict)

    @classmethod
    def of(
        cls, level: EmergencyLevel, state: TradingState, orders: list[Order], positions: list[Position]
    ) -> "LevelSettlement":
        held = {p.symbol: p.quantity for p in positions if p.quantity}
        return cls(
            level=level,
            state=state,
            orders=[o.client_order_id for o in level.forbidden_orders(orders, held)],
            positions=held if level.rules.flattens else {},
        )

    @property
    def done(self) -> bool:
        return not self.orders and not self.positions and self.state.at_least(self.level.rules.settled_state)


class KillAnswer(TradingStatus):
    """`POST /kill`'s answer: the gate after the kill, the open orders the kill cancelled (a remote
    broker confirms later), and what the level still waits for."""

    cancelled: list[str] = Field(default_factory=list)
    settlement: LevelSettlement


class LatencyFigures(BaseModel):
    """Microseconds from tick intake to the order handed to the broker, over a recent window."""

    samples: int = 0
    p50_us: float | None = None
    p99_us: float | None = None
    p999_us: float | None = None
    max_us: float | None = None


def daily_loss_reached(daily_pnl: float, max_daily_loss: float) -> bool:
    """The daily-loss breaker's rule: orch hft's gate trips on it, the health check reports it."""
    return daily_pnl <= -max_daily_loss


class RiskUsage(BaseModel):
    gross_exposure: float = 0.0
    max_gross_exposure: float = 0.0
    daily_pnl: float = 0.0
    max_daily_loss: float = 0.0
    orders_in_interval: int = 0
    max_orders_per_interval: int = 0
    denials: dict[str, int] = Field(default_factory=dict)

    @property
    def daily_loss_reached(self) -> bool:
        # 0 is "not reported" here (an old orch hft's status); the gate's own limit is always above 0.
        return self.max_daily_loss > 0 and daily_loss_reached(self.daily_pnl, self.max_daily_loss)


class RequestBudgetUsage(BaseModel):
    """The broker's request budget (`orch.brokers.budget`): what the last minute used of it."""

    limit_per_minute: float | None  # None: unlimited (an in-process broker)
    used_last_minute: int = 0
    waiting: int = 0  # requests queued for their turn now
    requotes_dropped: int = 0  # since start: tier-1 quotes not sent because the budget was short
    held_by_broker: int = 0  # since start: the broker's 429s, each holding every request until its reset
    held_for_seconds: float = 0.0  # how long the current hold still lasts


class HftStatus(BaseModel):
    """What `GET /status` answers and `orch hft status` shows."""

    account: str
    pid: int
    started_at: datetime
    trading: TradingStatus
    positions: list[Position]
    open_orders: list[Order]
    realized_pnl: float
    unrealized_pnl: float
    risk: RiskUsage
    latency: LatencyFigures
    ticks_processed: int
    ticks_per_second: float
    last_heartbeat_age_seconds: float | None
    active_plans: int
    broker: str
    # simulated, paper or live: what an order sent to this process really does.
    trading_mode: TradingMode
    market: str
    # What this process trades (ORCH_HFT_SYMBOLS): the trading cycle plans only these.
    symbols: list[str] = Field(default_factory=list)
    request_budget: RequestBudgetUsage | None = None
    # The process's clock now, and where it started when ORCH_HFT_CLOCK_START set it (tests, replays).
    clock: datetime | None = None
    clock_start: datetime | None = None
    # Each symbol's market now: open, or closed and why ("SPY (holiday: Christmas)").
    markets: list[MarketStatus] = Field(default_factory=list)


class PlanBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plans: list[StrategyPlan] = Field(min_length=1, max_length=1000)


class PlanAck(BaseModel):
    accepted: list[str]
    rejected: dict[str, str] = Field(default_factory=dict)


class Heartbeat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sender: str = Field(default="orchestrator", min_length=1, max_length=64)
    sent_at: IsoDateTime | None = None


class OrderAck(BaseModel):
    """The answer to an order intent: the order, or the gate's denial."""

    accepted: bool
    order: Order | None = None
    decision: RiskDecision


class FillPage(BaseModel):
    fills: list[Fill]
    next_cursor: int


class ResumeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500)
    requested_by: str = Field(default="api", max_length=64)


class PlanState(StrEnum):
    """Where a plan stands in `orch hft`: waiting -> entering -> open -> exiting -> closed, or expired (never
    entered before `valid_until`) or failed (its entry ended unfilled)."""

    WAITING = "waiting"
    ENTERING = "entering"
    OPEN = "open"
    EXITING = "exiting"
    CLOSED = "closed"
    EXPIRED = "expired"
    FAILED = "failed"

    @property
    def entry_settled(self) -> bool:
        """Nothing more happens to the entry: it filled, or never will."""
        return self not in (PlanState.WAITING, PlanState.ENTERING)


class PlanStatus(BaseModel):
    plan: StrategyPlan
    status: PlanState
    exit_reason: str | None = None
