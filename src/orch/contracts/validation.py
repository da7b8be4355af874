"""`ValidateAlgorithms`: its input, the backtest and optimisation messages, and its result.

Bars never travel in these messages: a `DataReference` names the source, the symbols and the
window, and each activity loads the bars itself, so a workflow history stays small whatever the
period (Temporal refuses payloads over 2 MB). Equity curves come back thinned to a few hundred
points, enough for a chart.

Ratios that are undefined (a Sharpe ratio of a flat equity curve, the win rate of no trades) are
None, not NaN: NaN does not survive a JSON round trip.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from pathlib import PurePosixPath
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
# A ticker ("AAPL", "BRK.B") or a crypto pair ("BTC/USD"): what every source names a symbol.
SYMBOL_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,19}(/[A-Za-z0-9._-]{1,10})?"
MAX_FOLDER_LENGTH = 4096  # PATH_MAX on Linux


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

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        for position, symbol in enumerate(value, start=1):
            if not re.fullmatch(SYMBOL_PATTERN, symbol):
                raise ValueError(
                    f"symbol {position} {symbol!r} is not a symbol: a ticker of letters, digits, '.', "
                    "'_' or '-' (AAPL, BRK.B), or a pair such as BTC/USD"
                )
        repeated = sorted({s for s in value if value.count(s) > 1})
        if repeated:
            raise ValueError(f"a symbol may appear once: {', '.join(repeated)} repeated")
        if not value:
            raise ValueError("symbols is empty: leave it out to use the source's universe")
        return value

    @field_validator("csv_folder")
    @classmethod
    def _folder(cls, value: str | None) -> str | None:
        # The folder is opened on the workers, whose working folder the caller cannot know: only an
        # absolute path means the same folder to both, and '..' could climb anywhere from it.
        if value is None:
            return None
        if not value or len(value) > MAX_FOLDER_LENGTH or "\x00" in value:
            raise ValueError(f"csv folder {value[:80]!r} is not a usable path")
        path = PurePosixPath(value)
        if not path.is_absolute() or ".." in path.parts:
            raise ValueError(
                f"csv folder {value!r} must be an absolute path without '..', as the workers see it "
                "(for example /data/bars)"
            )
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


class DataWarningKind(StrEnum):
    LEFT_OUT = "left_out"  # a symbol not in the universe: too short, starts late, ends early, no bars
    WINDOW_STARTS_LATE = "window_starts_late"  # the period's first bars went to the warm-up
    GAP = "gap"  # sessions of the exchange's calendar without a bar
    ZERO_VOLUME = "zero_volume"
    SYMBOLS_CAPPED = "symbols_capped"  # more symbols than max_symbols
    FEWER_SPLITS = "fewer_splits"  # the period too short for the walk-forward splits asked for


class DataWarning(BaseModel):
    """Something about the bars a reader of the results must know; shown by the CLI, in the JSON
    result and in the report's metrics.json."""

    kind: DataWarningKind
    symbol: str | None = None
    message: str


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
    warnings: list[DataWarning] = Field(default_factory=list)


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
    score: float | None  # the recommended parameters' score: what the strategies are ranked by
    basis: str  # what the score is, e.g. "out-of-sample Sharpe on walk-forward split 2's test window"
    params: dict[str, float]
    tuned: bool  # params are the walk-forward's (True) or the strategy's defaults (False)
    # The defaults' out-of-sample score on the same test window(s) as `score` (None: no walk-forward).
    default_score: float | None = None
    # The walk-forward split whose fitted parameters are recommended (None: the defaults).
    split: int | None = None
    # False when the strategy must not be chosen whatever its score (it made no trades).
    recommendable: bool = True
    reasons: list[str]


class Recommendations(StepOutcome):
    recommendations: list[Recommendation]
    winner: str | None  # None: no strategy is recommendable
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
    # What a reader must know about the bars (left-out symbols, gaps, zero volume...).
    warnings: list[DataWarning] = Field(default_factory=list)
    apply_requested: bool = False
    applied: bool = False
    apply_error: str | None = None
    restart_workflow_id: str | None = None
    previous_strategy: str | None = None
    active_strategy: str | None = None
