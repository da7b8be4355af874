"""`TradingEngine` and `TradingCycle`: their inputs, the engine's whole state, and what the nine steps pass.

The engine keeps everything it knows in one `EngineState`, which is also what it hands to
continue-as-new, so a new run starts exactly where the last one stopped. Inputs that users type
(`TradingEngineInput`, `EngineConfigChange`) forbid unknown fields, so a typo is refused; what steps
produce accepts unknown fields, so a history written by a newer worker still replays.

The step models reuse the agents' summaries from `contracts.cycle`; they stay small (a few symbols'
summaries, never bars), because each is stored in the cycle's history.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from orch.contracts.commands import StepOutcome, StepReport
from orch.contracts.cycle import (
    AgentErrorLog,
    CircuitBreaker,
    ComposedPlan,
    CompositionResult,
    CycleOutcome,
    CycleReport,
    CycleStep,
    ExecutionLedger,
    ExecutionSummary,
    HealthAssessment,
    HealthThresholds,
    LearningSettings,
    LearningState,
    LearningUpdate,
    MarketSnapshot,
    PatternAnalysis,
    PortfolioRiskLimits,
    RegimeThresholds,
    RiskAssessment,
    ScheduleDecision,
    SchedulerSettings,
    SchedulerState,
    StrategyWeights,
    TradeOutcome,
    TradingBlock,
    UniverseFilter,
    WeightsSource,
)
from orch.contracts.discovery import Candidate
from orch.contracts.emergency import EmergencyStopSignal
from orch.contracts.levels import EmergencyLevel, TradingMode
from orch.contracts.trading import Account, Position, StrategyPlan, TradingState

ACCOUNT_PATTERN = r"^[A-Za-z0-9_.-]{1,20}$"  # the same rule as `orch hft`'s account


def engine_workflow_id(account: str) -> str:
    """The fixed id of an account's engine: one engine per account, found without a search."""
    return f"trading-engine-{account}"


def cycle_workflow_id(engine_id: str, cycle_number: int) -> str:
    return f"{engine_id}-cycle-{cycle_number}"


class _Settings(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")


class _Summary(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)


# ---- Tuning: per-step policies and execution ---------------------------------------------------------


class StepPolicy(_Settings):
    """One step's timeout and retry policy."""

    timeout_seconds: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=20)
    initial_retry_seconds: float = Field(default=1.0, gt=0)
    max_retry_seconds: float = Field(default=10.0, gt=0)


class CyclePolicies(_Settings):
    """Each of the nine steps' own timeout and retries; defaults suit a 60 s cycle."""

    initialize: StepPolicy = Field(default_factory=lambda: StepPolicy(timeout_seconds=30))
    sense_market: StepPolicy = Field(default_factory=lambda: StepPolicy(timeout_seconds=120))
    # Patterns only improve a cycle: one retry, then the cycle goes on without them.
    analyse_patterns: StepPolicy = Field(
        default_factory=lambda: StepPolicy(timeout_seconds=120, max_attempts=2)
    )
    compose_strategy: StepPolicy = Field(
        default_factory=lambda: StepPolicy(timeout_seconds=10, max_attempts=2)
    )
    evaluate_risks: StepPolicy = Field(default_factory=lambda: StepPolicy(timeout_seconds=60))
    # Sending plans is idempotent (orch hft keys them by plan id), so retrying cannot double an order.
    execute: StepPolicy = Field(default_factory=lambda: StepPolicy(timeout_seconds=60))
    monitor_health: StepPolicy = Field(default_factory=lambda: StepPolicy(timeout_seconds=30, max_attempts=2))
    learn_and_adapt: StepPolicy = Field(
        default_factory=lambda: StepPolicy(timeout_seconds=30, max_attempts=2)
    )
    log_and_report: StepPolicy = Field(default_factory=lambda: StepPolicy(timeout_seconds=30))
    # Every regular step heartbeats; a dead worker is noticed after this long.
    heartbeat_timeout_seconds: float = Field(default=10.0, gt=0)

    def of(self, step: CycleStep) -> StepPolicy:
        return getattr(self, step.value)


class ExecutionSettings(_Settings):
    """How step 6 reaches `orch hft` and how long it watches the plans it sent."""

    # None: ORCH_HFT_* settings of the worker (ORCH_HFT_HOST / ORCH_HFT_PORT), as `orch hft` reads them.
    hft_url: str | None = None
    hft_port: int | None = Field(default=None, ge=1, le=65535)
    request_timeout_seconds: float = Field(default=5.0, gt=0)
    # After sending, wait up to this long for entry orders and fills to come back into the report.
    settle_seconds: float = Field(default=5.0, ge=0)
    # False: entries are market orders timed by orch hft's tier-2 handler from live ticks (the plan's
    # price stays the reference for slippage); True: the plan's price is sent as a limit.
    limit_entries: bool = False


# ---- The engine's configuration ----------------------------------------------------------------------


class _EngineOptions(_Settings):
    """What an engine is told, at start and through `set_config`."""

    risk_limits: PortfolioRiskLimits = Field(default_factory=PortfolioRiskLimits)
    # The operator's weights: while set, every cycle composes with exactly these (learning goes on
    # learning from outcomes in SystemState, shown beside them); None: the weights learned so far.
    strategy_weights: StrategyWeights | None = None
    learning: LearningSettings = Field(default_factory=LearningSettings)
    health: HealthThresholds = Field(default_factory=HealthThresholds)
    policies: CyclePolicies = Field(default_factory=CyclePolicies)
    execution: ExecutionSettings = Field(default_factory=ExecutionSettings)
    # The tradable universe; None: the symbols `orch hft` has market data for (ORCH_HFT_SYMBOLS).
    symbols: list[str] | None = Field(default=None, min_length=1)
    lookback_bars: int = Field(default=300, ge=30, le=5000)
    top_n: int = Field(default=10, ge=1, le=200)
    # History stays small: a new run starts after this many cycles (or sooner, when Temporal suggests).
    max_cycles_per_run: int = Field(default=100, ge=1, le=10_000)
    # An agent failing this many cycles in a row is disabled (its step skipped) until re-enabled.
    error_threshold: int = Field(default=5, ge=1)
    # While stopped by an emergency, after `resume`: how often to look whether SystemState cleared it.
    emergency_poll_seconds: float = Field(default=5.0, gt=0)
    # The dead man's switch: the engine heartbeats `orch hft` this often, between cycles too.
    hft_heartbeat_seconds: float = Field(default=10.0, gt=0)
    # The first cycle after a start waits up to this long for orch hft to answer and be reconciled
    # (`orch up` starts both at once), instead of counting its absence as a fault.
    hft_ready_timeout_seconds: float = Field(default=20.0, ge=0)
    # Health figures (fees, profit, errors) are judged over about this long, across cycles.
    health_window_seconds: float = Field(default=900.0, gt=0)
    # Plans whose outcome is still open after this long are dropped from learning.
    pending_plan_max_age_seconds: float = Field(default=86_400.0, gt=0)

    @model_validator(mode="after")
    def _execute_outlasts_settling(self) -> _EngineOptions:
        if self.policies.execute.timeout_seconds <= self.execution.settle_seconds:
            raise ValueError(
                f"policies.execute.timeout_seconds ({self.policies.execute.timeout_seconds:g}) must exceed "
                f"execution.settle_seconds ({self.execution.settle_seconds:g})"
            )
        if self.policies.initialize.timeout_seconds <= self.hft_ready_timeout_seconds:
            raise ValueError(
                f"policies.initialize.timeout_seconds ({self.policies.initialize.timeout_seconds:g}) must "
                f"exceed hft_ready_timeout_seconds ({self.hft_ready_timeout_seconds:g})"
            )
        return self


class EngineConfig(_EngineOptions):
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)


def scheduler_settings(
    base: float, minimum: float | None = None, maximum: float | None = None, min_change: float = 0.05
) -> SchedulerSettings:
    """Interval bounds default to a sixth and ten times the base (10 s and 600 s around 60 s)."""
    return SchedulerSettings(
        base_interval_seconds=base,
        min_interval_seconds=base / 6 if minimum is None else minimum,
        max_interval_seconds=base * 10 if maximum is None else maximum,
        min_change=min_change,
    )


# ---- The engine's state ------------------------------------------------------------------------------


class EngineRunState(StrEnum):
    RUNNING = "running"  # a cycle is running
    WAITING = "waiting"  # between cycles
    PAUSED = "paused"
    EMERGENCY_STOPPED = "emergency_stopped"
    STOPPING = "stopping"  # finishing the current cycle, then ending
    STOPPED = "stopped"


class EngineState(_Summary):
    """Everything the engine knows; the one value continue-as-new carries."""

    account: str
    config: EngineConfig
    next_cycle_number: int = Field(default=1, ge=0)
    cycles_total: int = 0
    cycles_successful: int = 0
    cycles_degraded: int = 0
    cycles_failed: int = 0
    total_duration_seconds: float = 0.0
    last_duration_seconds: float | None = None
    last_report: CycleReport | None = None
    recent_outcomes: list[CycleOutcome] = Field(default_factory=list)
    paused: bool = False
    stopping: bool = False
    emergency: EmergencyStopSignal | None = None
    resume_requested: bool = False
    emergency_stops_started: int = 0
    scheduler: SchedulerState
    health: HealthAssessment | None = None
    learning: LearningState | None = None
    # The operator's weights (`set_config`) that a cycle started after the change must also record in
    # SystemState as learning's starting point; cleared only by a cycle that was given them.
    weights_override: StrategyWeights | None = None
    # Why the last cycle sent no plans (None: it could send).
    trading_blocked: TradingBlock | None = None
    ledger: ExecutionLedger = Field(default_factory=ExecutionLedger)
    agent_errors: AgentErrorLog = Field(default_factory=AgentErrorLog)
    last_pnl_fraction: float = 0.0
    runs: int = Field(default=1, ge=1)  # how many runs (continue-as-new) this engine has had
    config_changes: int = 0

    @property
    def success_rate(self) -> float:
        done = self.cycles_successful + self.cycles_degraded
        return done / self.cycles_total if self.cycles_total else 1.0


class TradingEngineInput(_EngineOptions):
    """`temporal workflow start --type TradingEngine --input '{"cycle_interval_seconds": 60}'`."""

    account: str = Field(default="paper-1", pattern=ACCOUNT_PATTERN)
    cycle_interval_seconds: float = Field(default=60.0, gt=0)
    min_interval_seconds: float | None = Field(default=None, gt=0)
    max_interval_seconds: float | None = Field(default=None, gt=0)
    # Cycle numbers go on from here, so `orch cycle report N` stays unambiguous across engine restarts.
    first_cycle_number: int = Field(default=1, ge=1)
    # Set only by continue-as-new: the state of the run before.
    resume_state: EngineState | None = None

    @model_validator(mode="after")
    def _interval_bounds(self) -> TradingEngineInput:
        self.scheduler_settings()  # raises on bounds that do not hold the base interval
        return self

    def scheduler_settings(self) -> SchedulerSettings:
        return scheduler_settings(
            self.cycle_interval_seconds, self.min_interval_seconds, self.max_interval_seconds
        )

    def engine_config(self) -> EngineConfig:
        options = {name: getattr(self, name) for name in _EngineOptions.model_fields}
        return EngineConfig(**options, scheduler=self.scheduler_settings())


class EngineConfigChange(BaseModel):
    """`set_config`'s input: only what is given changes.

    Fields are loosely typed on purpose: the update's validator checks the merged configuration and
    refuses with a message naming the field, instead of failing to decode the payload.
    """

    model_config = ConfigDict(extra="forbid")

    cycle_interval_seconds: float | None = None
    min_interval_seconds: float | None = None
    max_interval_seconds: float | None = None
    # Field by field: {"max_gross_exposure": 0.5} changes that limit only.
    risk_limits: dict[str, Any] | None = None
    # Kind by kind: {"trend": 2.0} changes that weight; the whole set is normalised, and these weights win
    # over learning until `{"strategy_weights": "learned"}` hands them back to learning. (Not null: the
    # data converter sends every field, so null must keep meaning "unchanged".)
    strategy_weights: dict[str, float] | Literal["learned"] | None = None
    max_cycles_per_run: int | None = None
    settle_seconds: float | None = None
    top_n: int | None = None
    symbols: list[str] | None = None
    # Agents disabled after repeated errors that an operator re-enables.
    enable_agents: list[str] = Field(default_factory=list)
    requested_by: str = "operator"


def apply_config_change(
    config: EngineConfig, change: EngineConfigChange, weights: StrategyWeights | None = None
) -> tuple[EngineConfig, StrategyWeights | None]:
    """The configuration after `change`, and the new weights if any; ValueError naming what is wrong.

    `weights` are the ones in force (learned), which partial weights are merged into.
    """
    scheduler = config.scheduler
    try:
        if any(
            v is not None
            for v in (change.cycle_interval_seconds, change.min_interval_seconds, change.max_interval_seconds)
        ):
            new_base = change.cycle_interval_seconds
            base = scheduler.base_interval_seconds if new_base is None else new_base
            # A new base widens the bounds it falls outside of, unless bounds were given too.
            minimum, maximum = scheduler.min_interval_seconds, scheduler.max_interval_seconds
            if new_base is not None:
                minimum, maximum = min(minimum, new_base), max(maximum, new_base)
            scheduler = SchedulerSettings(
                base_interval_seconds=base,
                min_interval_seconds=minimum
                if change.min_interval_seconds is None
                else change.min_interval_seconds,
                max_interval_seconds=maximum
                if change.max_interval_seconds is None
                else change.max_interval_seconds,
                min_change=scheduler.min_change,
            )
        limits = config.risk_limits
        if change.risk_limits:
            limits = PortfolioRiskLimits(**(limits.model_dump() | change.risk_limits))
        new_weights = None
        weights_given = change.strategy_weights is not None
        if change.strategy_weights == {}:
            raise ValueError(
                'strategy_weights: give at least one kind\'s weight, or "learned" to return to the '
                "learned weights"
            )
        if isinstance(change.strategy_weights, dict):
            current = (weights or config.strategy_weights or StrategyWeights()).root
            merged: dict[str, float] = {kind.value: w for kind, w in current.items()}
            unknown = set(change.strategy_weights) - set(merged)
            if unknown:
                raise ValueError(
                    f"unknown strategy kind(s) {', '.join(sorted(unknown))}; known: {', '.join(merged)}"
                )
            merged |= change.strategy_weights
            new_weights = StrategyWeights.model_validate(merged)
        updates: dict[str, Any] = {"scheduler": scheduler, "risk_limits": limits}
        if weights_given:
            updates["strategy_weights"] = new_weights  # None ("learned"): learning's weights again
        if change.max_cycles_per_run is not None:
            updates["max_cycles_per_run"] = change.max_cycles_per_run
        if change.top_n is not None:
            updates["top_n"] = change.top_n
        if change.symbols is not None:
            updates["symbols"] = change.symbols
        execution = config.execution
        if change.settle_seconds is not None:
            execution = ExecutionSettings(
                **(execution.model_dump() | {"settle_seconds": change.settle_seconds})
            )
            updates["execution"] = execution
        # Validate the whole configuration, cross-field rules included.
        merged_config = EngineConfig.model_validate(
            config.model_dump() | {k: _dump(v) for k, v in updates.items()}
        )
    except ValidationError as err:
        raise ValueError(_validation_message(err)) from None
    return merged_config, new_weights


def _dump(value: Any) -> Any:
    return value.model_dump() if isinstance(value, BaseModel) else value


def _validation_message(err: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or e.get('title', 'value')}: {e['msg']}" for e in err.errors()
    )


class EngineStatus(_Summary):
    """The `status` query."""

    workflow_id: str
    account: str
    state: EngineRunState
    cycles_total: int
    cycles_successful: int
    cycles_degraded: int
    cycles_failed: int
    success_rate: float
    average_duration_seconds: float | None
    last_duration_seconds: float | None
    current_cycle: str | None
    next_cycle_number: int
    interval_seconds: float
    interval_adjustments: int
    next_cycle_at: datetime | None
    runs: int
    emergency: EmergencyStopSignal | None
    resume_requested: bool
    # The weights in force, and whose: the operator's (set_config) win over learning's until set to null.
    weights: StrategyWeights | None
    weights_source: WeightsSource = WeightsSource.LEARNED
    learned_weights: StrategyWeights | None = None
    pending_plans: int
    disabled_agents: list[str]
    breakers_tripped: list[str]
    # The open circuit breakers with their figures and what they ask of trading.
    breakers: list[CircuitBreaker] = Field(default_factory=list)
    # Why the last cycle sent no plans (None: it could).
    trading_blocked: TradingBlock | None = None
    last_report: CycleReport | None
    config: EngineConfig


# ---- TradingCycle: input and result --------------------------------------------------------------


class TradingCycleInput(_Summary):
    """`temporal workflow start --type TradingCycle --input '{"cycle_number": 1}'` runs one cycle alone."""

    cycle_number: int = Field(default=1, ge=0)
    account: str = Field(default="paper-1", pattern=ACCOUNT_PATTERN)
    config: EngineConfig = Field(default_factory=EngineConfig)
    scheduler: SchedulerState | None = None
    success_rate: float = Field(default=1.0, ge=0, le=1)
    last_pnl_fraction: float = 0.0
    previous_health: HealthAssessment | None = None
    ledger: ExecutionLedger = Field(default_factory=ExecutionLedger)
    agent_errors: AgentErrorLog = Field(default_factory=AgentErrorLog)
    weights_override: StrategyWeights | None = None
    # Why the engine wants no new entries this cycle (an open circuit breaker), if it does.
    entries_blocked: TradingBlock | None = None
    # The engine's first cycle: step 1 waits for orch hft to be ready (up to hft_ready_timeout_seconds).
    first_cycle: bool = False


class TradingCycleResult(_Summary):
    report: CycleReport
    report_path: str | None = None
    scheduler: SchedulerState | None = None
    health: HealthAssessment | None = None
    learning: LearningState | None = None
    ledger: ExecutionLedger = Field(default_factory=ExecutionLedger)
    agent_errors: AgentErrorLog = Field(default_factory=AgentErrorLog)
    equity: float | None = None
    pnl_fraction: float = 0.0
    duration_seconds: float = 0.0
    blocked: TradingBlock | None = None


# ---- The nine steps' requests and outcomes -------------------------------------------------------


class HftTarget(_Summary):
    """Which `orch hft` a step talks to: the account's token file and its control API."""

    account: str
    execution: ExecutionSettings = Field(default_factory=ExecutionSettings)


class InitializeRequest(_Summary):
    cycle_id: str
    cycle_number: int
    hft: HftTarget
    as_of: datetime
    symbols: list[str] | None = None
    top_n: int = 10
    lookback_bars: int = 300
    weights_override: StrategyWeights | None = None
    fill_cursor: int | None = None
    # The engine's first cycle waits up to this long for orch hft to answer and be reconciled (as does
    # each worker's first cycle) before going on without it.
    first_cycle: bool = False
    hft_ready_timeout_seconds: float = Field(default=0.0, ge=0)


class CycleContext(StepOutcome):
    """Step 1: what the rest of the cycle starts from."""

    account: Account
    positions: list[Position] = Field(default_factory=list)
    tradable: list[str]
    candidates: list[Candidate] = Field(default_factory=list)
    candidates_source: str = ""
    universe: UniverseFilter | None = None
    learning: LearningState = Field(default_factory=LearningState)
    emergency_level: EmergencyLevel = EmergencyLevel.NONE
    hft_state: TradingState | None = None
    hft_reason: str = ""
    # SystemState's trading mode, and what orch hft's broker really does (None: unreachable).
    trading_mode: TradingMode = TradingMode.SIMULATED
    hft_trading_mode: TradingMode | None = None
    hft_broker: str = ""
    fill_cursor: int = 0
    notes: list[str] = Field(default_factory=list)


class SenseRequest(_Summary):
    as_of: datetime
    symbols: list[str]
    lookback_bars: int
    thresholds: RegimeThresholds


class Sensed(StepOutcome):
    snapshot: MarketSnapshot


class PatternsRequest(_Summary):
    snapshot: MarketSnapshot
    seed: int = 0


class PatternsFound(StepOutcome):
    analysis: PatternAnalysis


class ComposeRequest(_Summary):
    candidates: list[Candidate]
    snapshot: MarketSnapshot
    patterns: PatternAnalysis | None = None
    account: Account
    positions: list[Position] = Field(default_factory=list)
    limits: PortfolioRiskLimits
    weights: StrategyWeights
    as_of: datetime
    plan_id_prefix: str


class Composed(StepOutcome):
    composition: CompositionResult


class RiskRequest(_Summary):
    plans: list[StrategyPlan]
    account: Account
    positions: list[Position] = Field(default_factory=list)
    as_of: datetime
    lookback_bars: int
    limits: PortfolioRiskLimits
    peak_equity: float | None = None


class RiskEvaluated(StepOutcome):
    assessment: RiskAssessment


class ExecuteRequest(_Summary):
    cycle_number: int
    hft: HftTarget
    # Composed plans carrying the quantity risk approved.
    plans: list[ComposedPlan] = Field(default_factory=list)
    blocked: TradingBlock | None = None  # why nothing may be sent this cycle
    ledger: ExecutionLedger = Field(default_factory=ExecutionLedger)


class Executed(StepOutcome):
    execution: ExecutionSummary
    accepted: list[str] = Field(default_factory=list)
    rejected: dict[str, str] = Field(default_factory=dict)
    ledger: ExecutionLedger = Field(default_factory=ExecutionLedger)
    # Every fill of the account since the cursor (not only ours): the health step's window.
    window_fills: int = 0
    window_fees: float = 0.0


class HealthRequest(_Summary):
    hft: HftTarget
    as_of: datetime
    thresholds: HealthThresholds
    previous: HealthAssessment | None = None
    ledger: ExecutionLedger = Field(default_factory=ExecutionLedger)
    # The fees of the fills the execute step read: orch hft reports no fee total.
    window_fees: float = 0.0
    window_seconds: float = Field(default=900.0, gt=0)


class HealthChecked(StepOutcome):
    assessment: HealthAssessment
    ledger: ExecutionLedger
    equity: float
    pnl_fraction: float = 0.0


class LearnRequest(_Summary):
    cycle_id: str
    hft: HftTarget
    as_of: datetime
    learning: LearningState
    settings: LearningSettings
    ledger: ExecutionLedger = Field(default_factory=ExecutionLedger)
    max_age_seconds: float = 86_400.0


class Learned(StepOutcome):
    update: LearningUpdate
    outcomes: list[TradeOutcome] = Field(default_factory=list)
    ledger: ExecutionLedger = Field(default_factory=ExecutionLedger)
    persisted: bool = False


class SchedulerInput(_Summary):
    settings: SchedulerSettings
    state: SchedulerState
    success_rate: float = Field(default=1.0, ge=0, le=1)
    pnl_fraction: float = 0.0
    # The share of the interval this cycle took: the system-load signal.
    utilisation: float = Field(default=0.0, ge=0)


class ReportRequest(_Summary):
    cycle_number: int
    cycle_id: str
    account: str
    steps: list[StepReport]
    started_at: datetime
    finished_at: datetime
    snapshot: MarketSnapshot | None = None
    patterns: PatternAnalysis | None = None
    composition: CompositionResult | None = None
    risk: RiskAssessment | None = None
    execution: ExecutionSummary | None = None
    health: HealthAssessment | None = None
    learning: LearningState | None = None
    # The weights the composer used and whose they were.
    weights: StrategyWeights | None = None
    weights_source: WeightsSource | None = None
    universe: UniverseFilter | None = None
    blocked: TradingBlock | None = None
    notes: list[str] = Field(default_factory=list)
    scheduler: SchedulerInput
    agent_errors: AgentErrorLog = Field(default_factory=AgentErrorLog)
    # Consecutive failures after which an agent is disabled (its step skipped until re-enabled).
    error_threshold: int = Field(default=5, ge=1)


class Reported(StepOutcome):
    report: CycleReport
    decision: ScheduleDecision
    agent_errors: AgentErrorLog
    path: str | None = None


class KeepAliveRequest(_Summary):
    hft: HftTarget
    sender: str
    every_seconds: float = Field(gt=0)
