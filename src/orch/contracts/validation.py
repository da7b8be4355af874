"""`ValidateAlgorithms`: its input, the backtest and optimisation messages, and its result.

Bars never travel in these messages: a `DataReference` names the source, the symbols and the
window, and each activity loads the bars itself, so a workflow history stays small whatever the
period (Temporal refuses payloads over 2 MB). Equity curves come back thinned to a few hundred
points, enough for a chart.

Ratios that are undefined (a Sharpe ratio of a flat equity curve, the win rate of no trades) are
None, not NaN: NaN does not survive a JSON round trip.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator

from orch.contracts.commands import CommandOptions, CommandResult, StepOutcome


class ValidationPeriod(StrEnum):
    """How far back from the newest bar of the source a validation looks."""

    DAYS_30 = "30D"
    MONTHS_6 = "6M"
    YEAR_1 = "1Y"
    YEARS_5 = "5Y"


VALIDATION_PERIODS = tuple(p.value for p in ValidationPeriod)
# The data sources a backtest can read. `sample` is the offline real daily bars (bokeh-sampledata).
BACKTEST_SOURCES = ("simulated", "sample", "csv", "alpaca")
# `data_source` value meaning "SystemState's primary data source".
ACTIVE_SOURCE = "active"


def parse_period(text: str) -> ValidationPeriod:
    """`6M` (any case, spaces ignored) as a period; ValueError naming the accepted forms otherwise."""
    normalised = str(text).strip().upper()
    try:
        return ValidationPeriod(normalised)
    except ValueError:
        raise ValueError(
            f"unknown validation period {text!r}; accepted: {', '.join(VALIDATION_PERIODS)}"
        ) from None


class Window(BaseModel):
    """A run of bars, first and last included."""

    start: datetime
    end: datetime
    bars: int = Field(ge=0)


class WalkForwardSplit(BaseModel):
    """Fit on `fit`, score on `test`: the test window always starts after the fit window ends."""

    index: int = Field(ge=1)
    fit: Window
    test: Window


class PortfolioRules(BaseModel):
    """How a discovery strategy becomes a portfolio: every `rebalance_every_bars` bars, hold its top
    `top_n` candidates in equal weight, keeping `cash_reserve` in cash so buys fill at the next open."""

    model_config = ConfigDict(extra="forbid")

    top_n: int = Field(default=2, ge=1, le=500)
    rebalance_every_bars: int = Field(default=5, ge=1, le=500)
    initial_cash: float = Field(default=100_000.0, gt=0)
    commission: float = Field(default=0.001, ge=0, le=0.1)  # a fraction of each trade's value
    cash_reserve: float = Field(default=0.02, ge=0, lt=1)


class ValidateAlgorithmsInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategies: list[str] = Field(min_length=1, max_length=20)
    # One of VALIDATION_PERIODS. Checked by the workflow (`parse_period`), not here, so that a bad
    # period fails the workflow with a non-retryable InvalidInput rather than a decoding error.
    validation_period: str
    # With True, the winner becomes the active discovery strategy (a RestartDiscoverySystem child).
    apply: bool = False
    # `active` (SystemState's primary data source), or one of BACKTEST_SOURCES.
    data_source: str = ACTIVE_SOURCE
    # The csv source's folder on the workers; None: their `ORCH_CSV_FOLDER` setting.
    csv_folder: str | None = None
    # A subset of the source's universe (None: all of it), and a cap on how many symbols.
    symbols: list[str] | None = None
    max_symbols: int = Field(default=20, ge=1, le=500)
    # None: half the universe (at least one).
    top_n: int | None = Field(default=None, ge=1, le=500)
    rebalance_every_bars: int = Field(default=5, ge=1, le=500)
    initial_cash: float = Field(default=100_000.0, gt=0)
    commission: float = Field(default=0.001, ge=0, le=0.1)
    optimise: bool = True
    walk_forward_splits: int = Field(default=3, ge=1, le=20)
    max_param_combinations: int = Field(default=20, ge=1, le=2000)
    seed: int = 0  # which parameter combinations are sampled from each strategy's grid
    backtest_timeout_seconds: float = Field(default=3600.0, gt=0)
    max_curve_points: int = Field(default=300, ge=10, le=5000)
    options: CommandOptions = Field(default_factory=CommandOptions)

    @field_validator("validation_period", mode="before")
    @classmethod
    def _period(cls, value: Any) -> str:
        return str(value).strip().upper()

    @field_validator("strategies")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if any(not s.strip() for s in value):
            raise ValueError("strategy names must be non-empty")
        if len(set(value)) != len(value):
            raise ValueError(f"a strategy may appear once: {', '.join(value)}")
        return value

    @field_validator("data_source")
    @classmethod
    def _source(cls, value: str) -> str:
        if value not in (ACTIVE_SOURCE, *BACKTEST_SOURCES):
            raise ValueError(
                f"unknown data source {value!r} for backtests; "
                f"accepted: {ACTIVE_SOURCE}, {', '.join(BACKTEST_SOURCES)}"
            )
        return value


# ---- Step 1: prepare validation data ---------------------------------------------------------------


class DataReference(BaseModel):
    """Where the bars are: every backtest activity loads them itself from this."""

    source: str
    csv_folder: str | None = None
    seed: int | None = None  # the simulated source's seed
    symbols: list[str]
    window: Window  # the validation period: its first and last bar
    warmup_bars: int = Field(ge=0)  # bars loaded before window.start for the strategies' lookback


class PrepareDataRequest(BaseModel):
    strategies: list[str]
    period: ValidationPeriod
    data_source: str = ACTIVE_SOURCE
    csv_folder: str | None = None
    symbols: list[str] | None = None
    max_symbols: int = 20
    top_n: int | None = None
    rebalance_every_bars: int = 5
    walk_forward_splits: int = 0  # 0: no optimisation planned


class PreparedData(StepOutcome):
    data: DataReference
    newest_bar: datetime
    source_description: str
    bars_per_symbol: dict[str, int]
    top_n: int
    splits: list[WalkForwardSplit] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


# ---- Step 2: backtests -------------------------------------------------------------------------------


class ReturnMetrics(BaseModel):
    """Figures of an equity curve. Returns are fractions (0.12 = 12 %); drawdown is positive."""

    total_return: float
    cagr: float | None
    sharpe: float | None  # annualised (252 bars a year), no risk-free rate
    sortino: float | None
    max_drawdown: float = Field(ge=0)
    volatility: float | None = None  # annualised


class PerformanceMetrics(ReturnMetrics):
    win_rate: float | None  # closed trades with a positive net result, over closed trades
    trades: int = Field(ge=0)  # closed trades (a position opened, then closed)
    exposure: float = Field(ge=0)  # mean share of equity held in positions
    final_value: float
    bars: int = Field(ge=0)
    orders_rejected: int = Field(default=0, ge=0)
    # Equal weights of the same universe, bought on the first bar and held.
    buy_and_hold: ReturnMetrics
    excess_return: float  # total_return - buy_and_hold.total_return


class EquityCurve(BaseModel):
    """Growth of 1 for the strategy and for buy-and-hold, thinned to a few hundred points."""

    timestamps: list[datetime]
    strategy: list[float]
    buy_and_hold: list[float]


class BacktestRequest(BaseModel):
    strategy: str
    params: dict[str, float] | None = None  # None: the strategy's defaults
    data: DataReference
    window: Window
    rules: PortfolioRules
    max_curve_points: int = 300


class BacktestProgress(BaseModel):
    """Heartbeat details of a backtest activity: how far it got, and the process doing it."""

    bars_done: int
    bars_total: int
    pid: int | None = None
    phase: str = ""


class BacktestResult(StepOutcome):
    strategy: str
    params: dict[str, float]
    window: Window
    first_bar: datetime | None
    last_bar: datetime | None
    metrics: PerformanceMetrics
    curve: EquityCurve
    elapsed_seconds: float


# ---- Step 3: analyse performance -------------------------------------------------------------------


class StrategyAnalysis(BaseModel):
    strategy: str
    params: dict[str, float]  # what the backtest ran with (the defaults)
    metrics: PerformanceMetrics
    beats_buy_and_hold: bool
    rank_by_sharpe: int = Field(ge=1)
    notes: list[str] = Field(default_factory=list)


class PerformanceAnalysis(StepOutcome):
    strategies: list[StrategyAnalysis]
    best: str


# ---- Step 4: optimise parameters -------------------------------------------------------------------


class OptimiseSplitRequest(BaseModel):
    strategy: str
    split: WalkForwardSplit
    data: DataReference
    rules: PortfolioRules
    max_param_combinations: int
    seed: int = 0


class ParamTrial(BaseModel):
    params: dict[str, float]
    in_sample: ReturnMetrics


class SplitResult(StepOutcome):
    strategy: str
    split: WalkForwardSplit
    best_params: dict[str, float]
    in_sample: ReturnMetrics  # the best combination on the fit window
    out_of_sample: ReturnMetrics  # the same combination on the test window
    default_out_of_sample: ReturnMetrics  # the defaults on the test window, for comparison
    combinations_tried: int
    top_trials: list[ParamTrial] = Field(default_factory=list)
    # The bars each backtest really saw, so a reader (and the tests) can check the windows held.
    fit_bars_seen: Window
    test_bars_seen: Window


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


class OptimisationResult(BaseModel):
    strategy: str
    splits: list[SplitResult]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def mean_in_sample_sharpe(self) -> float | None:
        return _mean([s.in_sample.sharpe for s in self.splits])

    @computed_field  # type: ignore[prop-decorator]
    @property
    def mean_out_of_sample_sharpe(self) -> float | None:
        return _mean([s.out_of_sample.sharpe for s in self.splits])

    @computed_field  # type: ignore[prop-decorator]
    @property
    def mean_default_out_of_sample_sharpe(self) -> float | None:
        return _mean([s.default_out_of_sample.sharpe for s in self.splits])

    @computed_field  # type: ignore[prop-decorator]
    @property
    def out_of_sample_return(self) -> float:
        """The tuned parameters' test windows chained one after another."""
        growth = 1.0
        for split in self.splits:
            growth *= 1.0 + split.out_of_sample.total_return
        return growth - 1.0


# ---- Step 5: recommendations -------------------------------------------------------------------------


class RecommendRequest(BaseModel):
    analysis: PerformanceAnalysis
    optimisation: list[OptimisationResult] = Field(default_factory=list)


class Recommendation(BaseModel):
    rank: int = Field(ge=1)
    strategy: str
    score: float | None
    basis: str  # what the score is, e.g. "mean out-of-sample Sharpe over 3 walk-forward splits"
    params: dict[str, float]
    tuned: bool  # params are the walk-forward's (True) or the strategy's defaults (False)
    reasons: list[str]


class Recommendations(StepOutcome):
    recommendations: list[Recommendation]
    winner: str
    active_strategy: str
    # Why applying the winner cannot start now (a restart running, no free command slot), if so.
    apply_blocked: str | None = None


class ValidateAlgorithmsResult(CommandResult):
    period: ValidationPeriod | None = None
    data: DataReference | None = None
    source_description: str | None = None
    splits: list[WalkForwardSplit] = Field(default_factory=list)
    backtests: list[BacktestResult] = Field(default_factory=list)
    analysis: PerformanceAnalysis | None = None
    optimisation: list[OptimisationResult] = Field(default_factory=list)
    recommendations: list[Recommendation] = Field(default_factory=list)
    winner: str | None = None
    apply_requested: bool = False
    applied: bool = False
    apply_error: str | None = None
    restart_workflow_id: str | None = None
    previous_strategy: str | None = None
    active_strategy: str | None = None
