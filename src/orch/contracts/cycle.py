"""What the trading cycle's nine steps pass to each other, and the engine's state pieces the agents read.

Everything here crosses Temporal's pydantic data converter and is stored in workflow histories, so the
models hold summaries (a few floats and short lists per symbol), never arrays or raw bars. A step that
needs bars again re-reads them from the market source with the snapshot's `as_of` as the end, which
gives the same bars every time.

Models that users set (`set_config`) forbid unknown fields so a typo is refused, not ignored; models
that steps produce accept unknown fields, so a history written by a newer worker still replays.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator, model_validator

from orch.contracts.commands import CommandStatus, StepReport
from orch.contracts.levels import EmergencyLevel
from orch.contracts.market import MarketStatus, Regime
from orch.contracts.trading import Side, StrategyKind, StrategyPlan


class _Summary(BaseModel):
    # NaN and infinity serialise to null and then fail to load: refuse them where they are made.
    model_config = ConfigDict(allow_inf_nan=False)


class _Settings(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")


# ---- The nine steps --------------------------------------------------------------------------------


class CycleStep(StrEnum):
    INITIALIZE = "initialize"
    SENSE_MARKET = "sense_market"
    ANALYSE_PATTERNS = "analyse_patterns"
    COMPOSE_STRATEGY = "compose_strategy"
    EVALUATE_RISKS = "evaluate_risks"
    EXECUTE = "execute"
    MONITOR_HEALTH = "monitor_health"
    LEARN_AND_ADAPT = "learn_and_adapt"
    LOG_AND_REPORT = "log_and_report"

    @property
    def critical(self) -> bool:
        """A failure of a critical step means no execution this cycle; the others only degrade it."""
        # Reporting comes after execution: losing the report must not count the trades as failed.
        return self not in (
            CycleStep.ANALYSE_PATTERNS,
            CycleStep.MONITOR_HEALTH,
            CycleStep.LEARN_AND_ADAPT,
            CycleStep.LOG_AND_REPORT,
        )


class CycleOutcome(StrEnum):
    COMPLETED = "completed"
    DEGRADED = "degraded"  # a non-critical step failed; the cycle still executed
    FAILED = "failed"  # a critical step failed; nothing was executed


# ---- Step 2: sense the market ----------------------------------------------------------------------


class DataIssueKind(StrEnum):
    GAP = "gap"
    NON_MONOTONIC_TIMESTAMPS = "non_monotonic_timestamps"
    NON_POSITIVE_PRICE = "non_positive_price"
    STALE = "stale"
    INSUFFICIENT_HISTORY = "insufficient_history"


class DataIssue(_Summary):
    kind: DataIssueKind
    message: str
    count: int = Field(default=1, ge=1)
    # A blocking issue makes the symbol's indicators meaningless: no conditions, no plan for it.
    blocking: bool


class DataQuality(_Summary):
    symbol: str
    bars: int = Field(ge=0)
    issues: list[DataIssue] = Field(default_factory=list)

    @property
    def usable(self) -> bool:
        return not any(issue.blocking for issue in self.issues)

    @property
    def kinds(self) -> set[DataIssueKind]:
        return {issue.kind for issue in self.issues}


class OrderBookSummary(_Summary):
    """Resting size on each side near the touch; enough to measure imbalance, small enough to store."""

    bid_size: float = Field(ge=0)
    ask_size: float = Field(ge=0)
    best_bid: float | None = Field(default=None, gt=0)
    best_ask: float | None = Field(default=None, gt=0)


class AnomalyKind(StrEnum):
    RETURN = "return"
    VOLUME = "volume"


class Anomaly(_Summary):
    kind: AnomalyKind
    robust_zscore: float
    message: str


class RegimeThresholds(_Settings):
    """Where the regime classifier draws its lines; step 8 refines them from outcomes."""

    # Kaufman efficiency ratio (|net move| / path length) at or above which a market trends.
    trend_efficiency: float = Field(default=0.3, gt=0, lt=1)
    # Recent volatility over long-run volatility at or above which a market is volatile.
    volatility_ratio: float = Field(default=1.5, gt=1)


class ImbalanceSource(StrEnum):
    ORDER_BOOK = "order_book"
    VOLUME = "volume"  # close location within each bar, weighted by volume (Chaikin money flow)


class MarketConditions(_Summary):
    symbol: str
    as_of: datetime  # the last bar's timestamp
    last_price: float = Field(gt=0)
    regime: Regime
    efficiency_ratio: float = Field(ge=0, le=1)
    # Signed fractional move over the regime window: the trend's direction and size.
    trend: float
    volatility: float = Field(ge=0)  # standard deviation of log returns per bar, recent window
    volatility_ratio: float = Field(ge=0)
    atr: float = Field(ge=0)
    # From -1 (all supply) to +1 (all demand).
    imbalance: float = Field(ge=-1, le=1)
    imbalance_source: ImbalanceSource
    # The last bar's volume over the window's median volume.
    volume_ratio: float = Field(ge=0)
    anomalies: list[Anomaly] = Field(default_factory=list)


class MarketSnapshot(_Summary):
    """Step 2's output: per symbol, how good the data is and, where usable, the conditions."""

    as_of: datetime
    source: str
    lookback_bars: int = Field(ge=1)
    thresholds: RegimeThresholds
    data_quality: list[DataQuality] = Field(default_factory=list)
    conditions: list[MarketConditions] = Field(default_factory=list)

    def for_symbol(self, symbol: str) -> MarketConditions | None:
        return next((c for c in self.conditions if c.symbol == symbol), None)


# ---- Step 3: patterns ------------------------------------------------------------------------------


class PatternKind(StrEnum):
    BREAKOUT = "breakout"
    MA_CROSSOVER = "ma_crossover"
    MEAN_REVERSION = "mean_reversion"


class Pattern(_Summary):
    kind: PatternKind
    direction: Side  # buy: the pattern points up
    # Size of the signal in its own natural unit (ATRs beyond the channel, z-score, MA gap in ATRs).
    strength: float = Field(ge=0)
    confirmed: bool
    # Why it was confirmed or not, against the market conditions.
    reasons: list[str] = Field(default_factory=list)


class Forecast(_Summary):
    """Cumulative log return over the horizon from an AR(1) model of per-bar returns."""

    horizon_bars: int = Field(ge=1)
    expected_return: float
    lower: float
    upper: float
    confidence: float = Field(gt=0, lt=1)
    phi: float  # the AR(1) coefficient: > 0 momentum, < 0 mean reversion
    drift: float  # long-run mean log return per bar


class ScenarioSummary(_Summary):
    """The distribution of horizon returns over bootstrapped paths of the symbol's own returns."""

    horizon_bars: int = Field(ge=1)
    paths: int = Field(ge=1)
    mean: float
    std: float = Field(ge=0)
    p05: float
    p50: float
    p95: float
    prob_up: float = Field(ge=0, le=1)


class PatternReport(_Summary):
    symbol: str
    as_of: datetime
    patterns: list[Pattern] = Field(default_factory=list)
    forecast: Forecast | None = None
    scenarios: ScenarioSummary | None = None

    @property
    def confirmed(self) -> list[Pattern]:
        return [p for p in self.patterns if p.confirmed]


class PatternAnalysis(_Summary):
    """Step 3's output."""

    as_of: datetime
    reports: list[PatternReport] = Field(default_factory=list)

    def for_symbol(self, symbol: str) -> PatternReport | None:
        return next((r for r in self.reports if r.symbol == symbol), None)


# ---- Step 4: strategy composition ------------------------------------------------------------------


_NORMALISED_TOLERANCE = 1e-12  # a sum this close to 1 is rounding, not unnormalised weights


class StrategyWeights(RootModel[dict[StrategyKind, float]]):
    """How much the composer trusts each strategy kind; learned in step 8, always summing to 1.

    Serialised as a plain mapping, `{"trend": 0.4, "mean_reversion": 0.2, ...}`; any positive weights
    are accepted and normalised.
    """

    model_config = ConfigDict(allow_inf_nan=False)

    root: dict[StrategyKind, float] = Field(
        default_factory=lambda: {kind: 1.0 / len(StrategyKind) for kind in StrategyKind}
    )

    @field_validator("root")
    @classmethod
    def _complete_and_normalised(cls, weights: dict[StrategyKind, float]) -> dict[StrategyKind, float]:
        missing = set(StrategyKind) - set(weights)
        if missing:
            raise ValueError(f"weights missing for {sorted(k.value for k in missing)}")
        if any(w < 0 for w in weights.values()):
            raise ValueError("weights must not be negative")
        total = sum(weights.values())
        if total <= 0:
            raise ValueError("at least one weight must be positive")
        if abs(total - 1.0) <= _NORMALISED_TOLERANCE:
            # Already normalised: dividing again moves the last digit, so every hop through a history,
            # a query or continue-as-new would give slightly different weights (seen: engine vs SystemState).
            return {kind: weights[kind] for kind in StrategyKind}
        return {kind: weights[kind] / total for kind in StrategyKind}

    def of(self, kind: StrategyKind) -> float:
        return self.root[kind]


class PortfolioRiskLimits(_Settings):
    """The portfolio's limits, checked by the cycle (steps 4 and 5).

    Distinct from the execution process's pre-trade gate, which checks each order as it is sent.
    Fractions are of account equity.
    """

    # Loss between entry and stop loss that one plan may risk.
    risk_per_trade: float = Field(default=0.01, gt=0, le=0.1)
    stop_atr_multiple: float = Field(default=2.0, gt=0)
    max_position_fraction: float = Field(default=0.10, gt=0, le=1)
    max_gross_exposure: float = Field(default=1.0, gt=0, le=10)
    # Peak-to-now fall of equity at which new entries stop.
    max_drawdown: float = Field(default=0.20, gt=0, lt=1)
    var_confidence: float = Field(default=0.95, ge=0.5, lt=1)
    # One-bar historical value at risk of the whole portfolio.
    max_var_fraction: float = Field(default=0.03, gt=0, le=1)
    # Normalised entropy (0..1) of a symbol's recent returns above which its plans are scaled down.
    # Normal noise scores about 0.83, fat-tailed returns more; a steady one-way drift scores near 0.
    max_entropy: float = Field(default=0.88, gt=0, le=1)
    uncertainty_scale: float = Field(default=0.5, gt=0, le=1)
    min_notional: float = Field(default=10.0, ge=0)
    allow_short: bool = False
    max_plans_per_cycle: int = Field(default=10, ge=0)


class ComposedPlan(_Summary):
    """A plan and what it was composed from, kept so realised outcomes can be credited in step 8."""

    plan: StrategyPlan
    regime: Regime
    efficiency_ratio: float
    volatility_ratio: float
    # Money lost if the stop loss fills at its price.
    risk_amount: float = Field(ge=0)
    # The composer's weighted score for the chosen strategy kind.
    score: float


class RejectedCandidate(_Summary):
    symbol: str
    strategy: StrategyKind | None = None
    reasons: list[str]


class CompositionResult(_Summary):
    """Step 4's output."""

    plans: list[ComposedPlan] = Field(default_factory=list)
    rejected: list[RejectedCandidate] = Field(default_factory=list)


# ---- Step 5: risk ----------------------------------------------------------------------------------


class RiskVerdict(StrEnum):
    APPROVE = "approve"
    SCALE_DOWN = "scale_down"
    REJECT = "reject"


class PlanDecision(_Summary):
    plan: StrategyPlan  # as composed
    verdict: RiskVerdict
    # What may be executed: the plan itself, the plan with a smaller quantity, or nothing.
    approved: StrategyPlan | None
    reasons: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _approved_matches_verdict(self) -> PlanDecision:
        if (self.approved is None) != (self.verdict is RiskVerdict.REJECT):
            raise ValueError("a rejected plan has nothing approved; any other verdict has")
        return self


class PortfolioRisk(_Summary):
    equity: float
    gross_exposure: float = Field(ge=0)  # sum of |position value| / equity
    net_exposure: float  # sum of signed position value / equity
    largest_position: float = Field(ge=0)  # largest |position value| / equity: concentration
    drawdown: float = Field(ge=0)
    var: float = Field(ge=0)  # one-bar historical value at risk, in money
    cvar: float = Field(ge=0)  # expected loss beyond the VaR, in money
    var_confidence: float
    # Shannon entropy of the portfolio's recent returns in sign-split bins, 0 (certain) .. 1 (uniform).
    entropy: float = Field(ge=0, le=1)
    observations: int = Field(ge=0)  # historical bars behind VaR and entropy


class RiskAssessment(_Summary):
    """Step 5's output: the portfolio before and after the approved plans, and a decision per plan."""

    before: PortfolioRisk
    after: PortfolioRisk
    decisions: list[PlanDecision] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    @property
    def approved_plans(self) -> list[StrategyPlan]:
        return [d.approved for d in self.decisions if d.approved is not None]


# ---- Step 6: execution, as the report sees it ------------------------------------------------------


class ExecutionSummary(_Summary):
    plans_sent: int = Field(default=0, ge=0)
    orders: int = Field(default=0, ge=0)
    fills: int = Field(default=0, ge=0)
    rejected_orders: int = Field(default=0, ge=0)
    latency_ms_p50: float | None = Field(default=None, ge=0)
    slippage_bps_mean: float | None = None
    fees: float = Field(default=0.0, ge=0)


# ---- The execution ledger: what execution leaves for the next cycle --------------------------------


class PendingPlan(_Summary):
    """A plan sent to `orch hft` whose outcome is not known yet, and the fills seen for it so far."""

    composed: ComposedPlan
    cycle_number: int
    sent_at: datetime
    entry_quantity: float = 0.0
    entry_value: float = 0.0
    exit_quantity: float = 0.0
    exit_value: float = 0.0
    fees: float = 0.0
    fills: int = 0
    first_fill_at: datetime | None = None

    @property
    def realised_pnl(self) -> float:
        """Profit of the closed part, after every fee paid so far."""
        plan = self.composed.plan
        closed = min(self.entry_quantity, self.exit_quantity)
        if closed <= 0:
            return -self.fees
        entry_price = self.entry_value / self.entry_quantity
        exit_price = self.exit_value / self.exit_quantity
        direction = 1.0 if plan.side is Side.BUY else -1.0
        return direction * (exit_price - entry_price) * closed - self.fees

    @property
    def plan_id(self) -> str:
        return self.composed.plan.plan_id


class HealthCounters(_Summary):
    """Running totals since `orch hft` started (fees: of the fills the cycles read, which it does not
    total); the health window is the difference between two readings."""

    orders_sent: float = 0.0
    denials: float = 0.0
    errors: float = 0.0  # denials meaning a request could not be processed at all
    pnl: float = 0.0
    fees: float = 0.0

    def minus(self, earlier: HealthCounters) -> HealthCounters:
        return HealthCounters(
            orders_sent=self.orders_sent - earlier.orders_sent,
            denials=self.denials - earlier.denials,
            errors=self.errors - earlier.errors,
            pnl=self.pnl - earlier.pnl,
            fees=self.fees - earlier.fees,
        )


class HealthReading(_Summary):
    at: datetime
    counters: HealthCounters


class HealthWindow(_Summary):
    """The health step's window: from `start` to the `latest` reading, spanning several cycles."""

    start: HealthReading
    latest: HealthReading

    @property
    def change(self) -> HealthCounters:
        return self.latest.counters.minus(self.start.counters)


class ExecutionLedger(_Summary):
    """The cycles' execution bookkeeping, handed from each cycle to the next through the engine (and
    continue-as-new): the plans whose outcome is open, where reading fills goes on, the health window
    and the highest equity seen."""

    pending_plans: list[PendingPlan] = Field(default_factory=list)
    # None: a new engine, whose first cycle skips the account's fill history.
    fill_cursor: int | None = None
    health_window: HealthWindow | None = None
    peak_equity: float | None = None


# ---- Step 7: health --------------------------------------------------------------------------------


class AdapterHealth(_Summary):
    name: str
    reachable: bool
    latency_ms: float | None = Field(default=None, ge=0)
    error: str | None = None


class HealthFigures(_Summary):
    """What step 7 measures: the execution process's figures over the last window and its adapters."""

    latency_ms_p50: float = Field(ge=0)
    latency_ms_p99: float = Field(ge=0)
    requests: int = Field(ge=0)
    errors: int = Field(ge=0)
    fees: float = Field(ge=0)
    gross_pnl: float  # before fees
    equity: float = Field(gt=0)
    broker: AdapterHealth
    data_sources: list[AdapterHealth] = Field(default_factory=list)


class HealthThresholds(_Settings):
    max_latency_ms_p99: float = Field(default=250.0, gt=0)
    max_error_rate: float = Field(default=0.05, gt=0, le=1)
    # Below this many requests an error rate says little: one error in two calls is not 50%.
    min_requests_for_error_rate: int = Field(default=20, ge=1)
    # Share of a gross profit that fees may eat.
    max_fee_share: float = Field(default=0.5, gt=0)
    # Net loss over the window, as a fraction of equity.
    max_loss_fraction: float = Field(default=0.02, gt=0, le=1)
    # A tripped breaker stays open at least this long, so a flapping figure cannot flap trading.
    breaker_cooldown_seconds: float = Field(default=300.0, ge=0)


class BreakerName(StrEnum):
    LATENCY = "latency"
    ERROR_RATE = "error_rate"
    FEES = "fees"
    PROFITABILITY = "profitability"
    BROKER = "broker"
    MARKET_DATA = "market_data"


class CircuitBreaker(_Summary):
    name: BreakerName
    tripped: bool
    value: float | None = None
    threshold: float | None = None
    message: str
    # What tripping this breaker asks of trading.
    level: EmergencyLevel
    tripped_at: datetime | None = None


class HealthStatus(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"  # something is off but no breaker tripped (say, a fallback data source down)
    UNHEALTHY = "unhealthy"  # a breaker tripped


class HealthAssessment(_Summary):
    as_of: datetime
    status: HealthStatus
    breakers: list[CircuitBreaker]
    # The strictest level asked for by a tripped breaker (none if nothing tripped).
    recommended_level: EmergencyLevel = EmergencyLevel.NONE
    notes: list[str] = Field(default_factory=list)

    @property
    def tripped(self) -> list[BreakerName]:
        return [b.name for b in self.breakers if b.tripped]


class AgentErrorRecord(_Summary):
    agent: str
    consecutive_errors: int = Field(default=0, ge=0)
    total_errors: int = Field(default=0, ge=0)
    disabled: bool = False
    last_error: str | None = None
    disabled_at: datetime | None = None


class AgentErrorLog(_Summary):
    """Per agent error counts, carried in the engine's state across cycles and continue-as-new."""

    error_threshold: int = Field(default=5, ge=1)
    agents: dict[str, AgentErrorRecord] = Field(default_factory=dict)

    def enable(self, agent: str) -> bool:
        """An operator's decision: the agent runs again, its consecutive count starting from zero.

        Returns whether it was disabled. Pure, so workflows (the engine, SystemState) apply it too.
        """
        record = self.agents.get(agent)
        if record is None:
            return False
        self.agents[agent] = record.model_copy(
            update={"disabled": False, "disabled_at": None, "consecutive_errors": 0}
        )
        return record.disabled


# ---- Step 8: learning ------------------------------------------------------------------------------


class TradeOutcome(_Summary):
    """A closed (or marked) plan's result, with the conditions it was composed under."""

    plan_id: str
    symbol: str
    strategy: StrategyKind
    pnl: float  # after fees
    risk_amount: float = Field(gt=0)
    regime: Regime | None = None
    efficiency_ratio: float | None = None
    volatility_ratio: float | None = None

    @property
    def r_multiple(self) -> float:
        """Profit in units of the money risked: +2 is twice the risk won, -1 a full stop-out."""
        return self.pnl / self.risk_amount

    @classmethod
    def of(cls, composed: ComposedPlan, pnl: float) -> TradeOutcome:
        return cls(
            plan_id=composed.plan.plan_id,
            symbol=composed.plan.symbol,
            strategy=composed.plan.strategy,
            pnl=pnl,
            risk_amount=max(composed.risk_amount, 1e-9),
            regime=composed.regime,
            efficiency_ratio=composed.efficiency_ratio,
            volatility_ratio=composed.volatility_ratio,
        )


class LearningSettings(_Settings):
    # Hedge's step: how far one unit of reward moves a log weight.
    learning_rate: float = Field(default=0.3, gt=0, le=5)
    # No strategy's weight falls below this, so a bad spell never starves it of the trades that
    # would show it recovered. Must leave room for the others: floor * number of kinds < 1.
    weight_floor: float = Field(default=0.05, ge=0, lt=1 / len(StrategyKind))
    # R-multiples beyond this are clipped, so one lucky trade cannot swing the weights.
    reward_clip: float = Field(default=3.0, gt=0)
    # How far one cycle's outcomes may move a regime threshold: a relative step per unit of mean
    # clipped R-multiple (0.02: a cycle of full stop-outs moves a threshold by 2%).
    threshold_step: float = Field(default=0.02, ge=0, le=1)
    trend_efficiency_bounds: tuple[float, float] = (0.15, 0.6)
    volatility_ratio_bounds: tuple[float, float] = (1.2, 3.0)


class StrategyRecord(_Summary):
    trades: int = Field(default=0, ge=0)
    total_r: float = 0.0


class LearningState(_Summary):
    """What step 8 learns and persists in `SystemState`."""

    weights: StrategyWeights = Field(default_factory=StrategyWeights)
    thresholds: RegimeThresholds = Field(default_factory=RegimeThresholds)
    updates: int = Field(default=0, ge=0)
    records: dict[StrategyKind, StrategyRecord] = Field(default_factory=dict)


class LearningUpdate(_Summary):
    state: LearningState
    # The clipped mean R-multiple each strategy earned this update (absent: no outcomes).
    rewards: dict[StrategyKind, float] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


# ---- The engine's adaptive scheduler ---------------------------------------------------------------


class SchedulerSettings(_Settings):
    base_interval_seconds: float = Field(default=60.0, gt=0)
    min_interval_seconds: float = Field(default=10.0, gt=0)
    max_interval_seconds: float = Field(default=600.0, gt=0)
    # Changes smaller than this fraction of the current interval are ignored, so it does not jitter.
    min_change: float = Field(default=0.05, ge=0, lt=1)

    @model_validator(mode="after")
    def _bounds_hold_base(self) -> SchedulerSettings:
        if not self.min_interval_seconds <= self.base_interval_seconds <= self.max_interval_seconds:
            raise ValueError("need min_interval_seconds <= base_interval_seconds <= max_interval_seconds")
        return self


class SchedulerSignals(_Summary):
    """Each in 0..1, where 0.5 is normal and leaves the interval at its base."""

    market_activity: float = Field(default=0.5, ge=0, le=1)  # 1: very active market
    performance: float = Field(default=0.5, ge=0, le=1)  # 1: cycles succeed and make money
    system_load: float = Field(default=0.5, ge=0, le=1)  # 1: workers saturated


class SchedulerState(_Summary):
    interval_seconds: float = Field(gt=0)
    adjustments: int = Field(default=0, ge=0)
    last_signals: SchedulerSignals | None = None


class ScheduleDecision(_Summary):
    state: SchedulerState
    target_seconds: float
    adjusted: bool
    reason: str


# ---- What the cycle may trade, and why it sends nothing --------------------------------------------


class WeightsSource(StrEnum):
    """Where the weights the composer used came from."""

    LEARNED = "learned"  # step 8's weights in SystemState
    OPERATOR = "operator"  # set with `set_config`: they win over learning until set back to "learned"


class UniverseFilter(_Summary):
    """How step 1 turned discovery's ranking into this cycle's candidates.

    Discovery ranks the market's whole universe; the cycle keeps what `orch hft` trades and what is open
    at the cycle's moment (`orch.market.calendars.is_tradable`, the gate's own rule).
    """

    source: str  # "discovery scan <id>" or "tradable universe ranked by <strategy>"
    tradable: list[str] = Field(default_factory=list)  # what orch hft trades
    kept: list[str] = Field(default_factory=list)  # the candidates, best first
    # Tradable but closed at the cycle's moment, with why (shown as "SPY (holiday: Christmas)").
    closed: list[MarketStatus] = Field(default_factory=list)
    # Ranked by discovery but not traded by orch hft: how many, and the best few by name.
    not_tradable: int = Field(default=0, ge=0)
    not_tradable_top: list[str] = Field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"candidates from {self.source}: {', '.join(self.kept) or 'none'}"]
        if self.closed:
            out.append(f"closed: {', '.join(map(str, self.closed))}")
        if self.not_tradable:
            out.append(
                f"not tradable by orch hft: {self.not_tradable} ranked symbols "
                f"(best: {', '.join(self.not_tradable_top)})"
            )
        return out


class BlockReason(StrEnum):
    """Why a cycle sent no plans (the health check decides from this, never from the text)."""

    EMERGENCY = "emergency"  # SystemState's emergency level is not none: an operator's decision
    HFT_NOT_ACTIVE = "hft_not_active"  # orch hft is REDUCING or HALTED
    MODE_MISMATCH = "mode_mismatch"  # SystemState's trading mode is not what orch hft's broker trades
    BREAKERS_OPEN = "breakers_open"  # the cycle's own circuit breakers


class TradingBlock(_Summary):
    reason: BlockReason
    detail: str


# ---- Step 9: the cycle report ----------------------------------------------------------------------


class PlanLine(_Summary):
    plan_id: str
    symbol: str
    strategy: StrategyKind
    side: Side
    quantity: float
    approved_quantity: float
    verdict: RiskVerdict | None  # None: risk was not evaluated
    reasons: list[str] = Field(default_factory=list)


class CycleReport(_Summary):
    """What `orch cycle report N` shows, and what the engine's `status` query returns as the last report."""

    cycle_number: int = Field(ge=0)
    outcome: CycleOutcome
    started_at: datetime | None = None
    finished_at: datetime | None = None
    steps: list[StepReport] = Field(default_factory=list)
    symbols_sensed: int = Field(default=0, ge=0)
    regimes: dict[Regime, int] = Field(default_factory=dict)
    data_issues: list[str] = Field(default_factory=list)
    anomalies: list[str] = Field(default_factory=list)
    patterns_found: int = Field(default=0, ge=0)
    patterns_confirmed: int = Field(default=0, ge=0)
    plans: list[PlanLine] = Field(default_factory=list)
    rejected_candidates: list[RejectedCandidate] = Field(default_factory=list)
    risk: PortfolioRisk | None = None
    execution: ExecutionSummary | None = None
    health_status: HealthStatus | None = None
    breakers_tripped: list[BreakerName] = Field(default_factory=list)
    # Why nothing was sent this cycle (None: plans could go).
    trading_blocked: TradingBlock | None = None
    universe: UniverseFilter | None = None
    # The weights the composer used, where they came from, and (when the operator's won) what learning has.
    weights: StrategyWeights | None = None
    weights_source: WeightsSource | None = None
    learned_weights: StrategyWeights | None = None
    next_interval_seconds: float | None = None
    notes: list[str] = Field(default_factory=list)


# ---- A cycle's outcome from its steps (the workflow and the report decide it the same way) ----------


def cycle_outcome(steps: Sequence[StepReport]) -> CycleOutcome:
    failed = [s for s in steps if s.status is CommandStatus.FAILED]
    if any(_critical(s.name) for s in failed):
        return CycleOutcome.FAILED
    return CycleOutcome.DEGRADED if failed else CycleOutcome.COMPLETED


def _critical(step_name: str) -> bool:
    # A step this module does not know is counted as critical: better to over-report a failure.
    try:
        return CycleStep(step_name).critical
    except ValueError:
        return True
