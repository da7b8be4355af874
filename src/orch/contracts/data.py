"""Market data sources and the worker's shared resource pool: `IntegrateRealData`'s input, its steps'
requests and outcomes, its result, and the pool's statistics.

Nothing here carries a credential: Alpaca's keys stay in the workers' environment (ALPACA_API_KEY,
ALPACA_SECRET_KEY) and never enter a workflow input, a step outcome or a history.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from orch.contracts.commands import CommandOptions, CommandResult, StepOutcome
from orch.contracts.cycle import LearningState, RegimeThresholds
from orch.contracts.levels import TradingMode
from orch.contracts.system import DataSources

# The sources with an adapter (orch.market.sources opens them). A public contract: `orch
# integrate-real-data` and the workflow refuse any other name before anything changes.
AVAILABLE_SOURCES = ("simulated", "csv", "alpaca")


def source_problems(primary: str, fallbacks: list[str]) -> list[str]:
    """What is wrong with a primary source and its fallbacks, before anything is touched (empty: nothing).

    Pure, so the CLI and the workflow (deterministic code) apply the same rule.
    """
    names = [primary, *fallbacks]
    problems = []
    unknown = [n for n in names if n not in AVAILABLE_SOURCES]
    if unknown:
        problems.append(
            f"no adapter for data source(s) {', '.join(repr(n) for n in unknown)}; "
            f"available sources: {', '.join(AVAILABLE_SOURCES)}"
        )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        problems.append(f"a data source may appear once among primary and fallbacks: {', '.join(repeated)}")
    return problems


# ---- The resource pool -------------------------------------------------------------------------


class ApiStats(BaseModel):
    """One API's traffic through the pool since the worker started."""

    api: str
    requests: int = Field(default=0, ge=0)
    errors: int = Field(default=0, ge=0)
    error_rate: float = Field(default=0.0, ge=0, le=1)
    # Requests that had to wait for the rate limit before going out.
    throttled: int = Field(default=0, ge=0)
    # Requests refused because no capacity freed within the pool's longest wait.
    rate_limited: int = Field(default=0, ge=0)
    limit_per_window: float | None = None  # None: not rate limited
    window_seconds: float
    mean_latency_ms: float | None = None


class ResourcePoolStats(BaseModel):
    """What `ResourcePool.stats()` returns and `orch health-check` shows."""

    http_pool_size: int
    requests: int = Field(ge=0)
    errors: int = Field(ge=0)
    error_rate: float = Field(ge=0, le=1)
    cache_size: int = Field(ge=0)
    cache_max_entries: int = Field(ge=1)
    cache_ttl_seconds: float
    cache_hits: int = Field(ge=0)
    cache_misses: int = Field(ge=0)
    hit_rate: float = Field(ge=0, le=1)
    # Market data served by a fallback because the primary failed or was stale (FallbackMarket).
    data_fallbacks: int = Field(default=0, ge=0)
    apis: dict[str, ApiStats] = Field(default_factory=dict)


# ---- Fallbacks and probes ----------------------------------------------------------------------


class FallbackEvent(BaseModel):
    """One request that a fallback source answered because the one before it could not."""

    at: datetime
    symbol: str
    skipped: str  # the source that failed or was stale
    used: str | None  # the source that answered (None: none could)
    reason: str


class BarSample(BaseModel):
    symbol: str
    timestamp: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float


class SourceProbe(BaseModel):
    """Step 1's verdict on one source: reachable, authenticated, fast, fresh, and what it serves."""

    name: str
    role: str  # "primary" or "fallback"
    ok: bool
    # None where a source has no credentials (simulated, csv).
    authenticated: bool | None = None
    latency_ms: float | None = None
    symbols_served: int = 0
    symbols_probed: list[str] = Field(default_factory=list)
    newest_bar_at: datetime | None = None
    age_seconds: float | None = None
    fresh: bool | None = None
    sample: BarSample | None = None
    problems: list[str] = Field(default_factory=list)
    # False when every problem needs a person (credentials, configuration): retrying cannot help.
    retryable: bool = True

    def line(self) -> str:
        if self.ok:
            latency = f"{self.latency_ms:.0f} ms" if self.latency_ms is not None else "-"
            age = f", newest bar {self.age_seconds / 3600:.1f} h old" if self.age_seconds is not None else ""
            return f"{self.name} ({self.role}): ok, {self.symbols_served} symbols, {latency}{age}"
        return f"{self.name} ({self.role}): {'; '.join(self.problems)}"


class PreviousConfig(BaseModel):
    """The configuration in force before an integration: what a failure puts back."""

    data_sources: DataSources
    trading_mode: TradingMode
    learning: LearningState | None = None


# ---- IntegrateRealData ---------------------------------------------------------------------------


class IntegrateRealDataInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    primary_source: str = Field(default="alpaca", min_length=1)
    fallback_sources: list[str] = Field(default_factory=list)  # tried in this order
    # Step 5 enables paper trading; live trading needs both flags.
    live: bool = False
    confirm_live: bool = False
    # Symbols probed, calibrated on and put through the dry cycle (empty: chosen from the primary's
    # universe, `probe_symbols` of them, crypto included so freshness is judged on any day).
    symbols: list[str] = Field(default_factory=list)
    probe_symbols: int = Field(default=6, ge=1, le=100)
    # Bars of recent history that step 3 re-warms the agents on.
    warmup_bars: int = Field(default=250, ge=40, le=5000)
    # A source whose newest bar is older than this is stale (None: three bars, plus a weekend for
    # equities, as the market-conditions agent judges).
    max_data_age_seconds: float | None = Field(default=None, gt=0)
    options: CommandOptions = Field(default_factory=CommandOptions)

    @property
    def target_mode(self) -> TradingMode:
        return TradingMode.LIVE if self.live else TradingMode.PAPER

    @property
    def sources(self) -> DataSources:
        return DataSources(primary=self.primary_source, fallbacks=list(self.fallback_sources))


def integration_problems(request: IntegrateRealDataInput) -> list[str]:
    """Everything that makes an integration unacceptable before anything runs: the CLI and the
    workflow refuse the same requests with the same words."""
    problems = source_problems(request.primary_source, request.fallback_sources)
    if request.live and not request.confirm_live:
        problems.append(
            "live trading needs a second confirmation (--live --i-understand-live-trading; confirm_live)"
        )
    if request.confirm_live and not request.live:
        problems.append("confirm_live without live: paper trading is the default, live needs both")
    return problems


class ValidateConnectionsRequest(BaseModel):
    integration_id: str
    sources: DataSources
    symbols: list[str] = Field(default_factory=list)
    probe_symbols: int = Field(default=6, ge=1)
    max_data_age_seconds: float | None = None


class ConnectionsValidated(StepOutcome):
    probes: list[SourceProbe]
    symbols: list[str]  # what the later steps use
    previous: PreviousConfig


class SwitchSourcesRequest(BaseModel):
    integration_id: str
    sources: DataSources


class SourcesSwitched(StepOutcome):
    previous: DataSources
    current: DataSources


class UpdateAlgorithmsRequest(BaseModel):
    integration_id: str
    sources: DataSources
    previous_sources: DataSources
    symbols: list[str]
    warmup_bars: int = Field(ge=40)
    max_data_age_seconds: float | None = None


class SymbolStats(BaseModel):
    """What step 3 measured on one symbol's recent bars from the new source."""

    symbol: str
    served_by: str
    bars: int
    bar_interval_seconds: float | None
    volatility: float  # standard deviation of log returns per bar
    atr_fraction: float  # average true range over the last close
    efficiency_ratio: float
    volatility_ratio: float


class AlgorithmsUpdated(StepOutcome):
    thresholds_before: RegimeThresholds
    thresholds_after: RegimeThresholds
    # Share of bars in each regime on the reference (previous) source under the old thresholds, and on
    # the new source under the new thresholds: the mapping keeps the mix the agents were tuned for.
    reference: str
    reference_mix: dict[str, float] = Field(default_factory=dict)
    new_mix: dict[str, float] = Field(default_factory=dict)
    symbols: list[SymbolStats] = Field(default_factory=list)
    strategy: str
    strategy_lookback: int
    symbols_with_lookback: int
    learning_cycle_id: str
    written: LearningState  # what was recorded in SystemState (a restore checks nobody changed it since)


class DataFlowRequest(BaseModel):
    integration_id: str
    sources: DataSources
    symbols: list[str]
    lookback_bars: int = Field(default=150, ge=30)
    max_data_age_seconds: float | None = None


class DataFlowTested(StepOutcome):
    symbols: int
    usable: int
    data_issues: list[str] = Field(default_factory=list)
    regimes: dict[str, str] = Field(default_factory=dict)
    served_by: dict[str, str] = Field(default_factory=dict)
    patterns_confirmed: int = 0
    candidates: int = 0
    plans_composed: int = 0
    plans_approved: int = 0
    orders_placed: int = 0  # a dry cycle: always 0, and no execution process is contacted
    fallbacks: list[FallbackEvent] = Field(default_factory=list)


class EnableTradingRequest(BaseModel):
    integration_id: str
    mode: TradingMode
    confirm_live: bool = False


class TradingEnabled(StepOutcome):
    previous_mode: TradingMode
    mode: TradingMode
    # What orch hft's broker really does (None: not answering); cycles send plans only when it is `mode`.
    hft_trading_mode: TradingMode | None = None


class RestoreConfigRequest(BaseModel):
    integration_id: str
    previous: PreviousConfig
    restore_sources: bool
    restore_mode: bool
    # What step 3 wrote; put back only if SystemState still holds exactly it (a cycle may have learned since).
    written_learning: LearningState | None = None


class IntegrateRealDataResult(CommandResult):
    previous_sources: DataSources | None = None
    data_sources: DataSources | None = None
    previous_trading_mode: TradingMode | None = None
    trading_mode: TradingMode | None = None
    # What orch hft's broker trades when step 5 ended: cycles send plans only when it is `trading_mode`.
    hft_trading_mode: TradingMode | None = None
    trading_mode_note: str | None = None
    probes: list[SourceProbe] = Field(default_factory=list)
    thresholds: RegimeThresholds | None = None
    dry_cycle: DataFlowTested | None = None
