"""The bars a validation runs on: which source, which window, which walk-forward splits.

`prepare` turns a request into a `DataReference` (source, symbols, exact first and last bar of the
period, warm-up bars); `load_histories` turns that reference back into bars, wherever it runs
(a backtest process on any worker), so bars never travel through a workflow's history.

Periods are measured back from the newest bar of the source, not from today: the sample data ends
on 2013-03-01, and a csv folder ends wherever its files do.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np

from orch.agents.discovery import get_strategy
from orch.backtest.engine import window_histories
from orch.config import Settings
from orch.contracts.validation import (
    BACKTEST_SOURCES,
    DataReference,
    DataWarning,
    DataWarningKind,
    PrepareDataRequest,
    PreparedData,
    ValidationPeriod,
    WalkForwardSplit,
    Window,
)
from orch.market.bar_checks import JUMP_FACTOR, inconsistent_bars, missing_sessions, unconfirmed_jumps
from orch.market.base import MarketDataSource, PriceHistory
from orch.market.calendars import equity_sessions, is_crypto

__all__ = [
    "BacktestInputError",
    "as_datetime",
    "describe_source",
    "load_histories",
    "max_lookback",
    "open_source",
    "period_start",
    "prepare",
    "timeline",
    "walk_forward_splits",
]


# Fewer bars than this and a backtest's figures say nothing (the walk-forward's own minimum).
MIN_WINDOW_BARS = 10


class BacktestInputError(ValueError):
    """A request no retry can fix: unknown source or symbols, a period too short to split."""


def open_source(
    name: str, *, csv_folder: str | None = None, seed: int = 7, settings: Settings | None = None
) -> MarketDataSource:
    """The daily bars a backtest reads: the offline sample, or one of the system's own sources opened
    as the worker is configured (`settings`, else its environment: a job process), at the daily
    timeframe. Alpaca's keys always come from the environment."""
    if name == "sample":
        from orch.market.sample_data import SampleMarketData

        return SampleMarketData()
    if name not in BACKTEST_SOURCES:
        raise BacktestInputError(
            f"no backtest adapter for data source {name!r}; available: {', '.join(BACKTEST_SOURCES)}"
        )
    if name == "csv" and not csv_folder:
        raise BacktestInputError(
            "the csv source needs a folder: set ORCH_CSV_FOLDER on the workers or pass --csv-folder"
        )
    from orch.market.sources import SourceConfigurationError
    from orch.market.sources import open_source as open_system_source

    daily = (settings or Settings()).model_copy(
        update={
            "csv_folder": Path(csv_folder) if csv_folder else None,
            "market_seed": seed,
            "data_timeframe": "1D",
        }
    )
    try:
        return open_system_source(name, daily)
    except SourceConfigurationError as err:
        raise BacktestInputError(str(err)) from err


def describe_source(name: str, *, csv_folder: str | None, seed: int) -> str:
    if name == "sample":
        return "sample: real daily bars (Quandl WIKI via bokeh-sampledata, split- and dividend-adjusted)"
    if name == "csv":
        return f"csv: {Path(csv_folder or '').expanduser()}"
    if name == "alpaca":
        return "alpaca: daily bars from Alpaca's market-data API"
    return f"simulated: seeded daily bars (seed {seed})"


def period_start(newest: datetime, period: ValidationPeriod) -> datetime:
    """The moment `period` before `newest`; the period's bars are those after it."""
    if period is ValidationPeriod.DAYS_30:
        return newest - timedelta(days=30)
    months = {ValidationPeriod.MONTHS_6: 6, ValidationPeriod.YEAR_1: 12, ValidationPeriod.YEARS_5: 60}[period]
    index = newest.year * 12 + newest.month - 1 - months
    year, month = divmod(index, 12)
    day = min(newest.day, calendar.monthrange(year, month + 1)[1])
    return newest.replace(year=year, month=month + 1, day=day)


def max_lookback(strategy: str) -> int:
    """Bars the strategy may need with any parameters in its declared ranges (longest windows)."""
    chosen = get_strategy(strategy)
    highs = {name: spec.high for name, spec in chosen.params.items()}
    return max(chosen.lookback_for(None), chosen.lookback_for(highs))


def load_histories(ref: DataReference) -> dict[str, PriceHistory]:
    """Each symbol's bars of the window plus up to `warmup_bars` before it."""
    source = open_source(ref.source, csv_folder=ref.csv_folder, seed=7 if ref.seed is None else ref.seed)
    try:
        return _load(source, ref.symbols, ref.window.start, ref.window.end, ref.warmup_bars)
    finally:
        source.close()


def _load(
    source: MarketDataSource, symbols: list[str], start: datetime, end: datetime, warmup: int
) -> dict[str, PriceHistory]:
    # Calendar days bound the bars of any daily source (crypto trades every day).
    bars = (end - start).days + 2 + warmup
    first, last = _stamp(start), _stamp(end)
    loaded = {}
    for symbol in symbols:
        # Sources stamp a bar with its open and serve it once it has ended (simulated, Alpaca): ask
        # for what has ended a day after `end`, then keep the bars stamped up to `end`.
        history = source.history(symbol, bars + 1, end + timedelta(days=1))
        begin = max(0, int(np.searchsorted(history.timestamps, first, side="left")) - warmup)
        stop = int(np.searchsorted(history.timestamps, last, side="right"))
        loaded[symbol] = PriceHistory(
            symbol,
            history.timestamps[begin:stop],
            history.open[begin:stop],
            history.high[begin:stop],
            history.low[begin:stop],
            history.close[begin:stop],
            history.volume[begin:stop],
        )
    return loaded


def timeline(histories: dict[str, PriceHistory], start: datetime, end: datetime) -> np.ndarray:
    """Every distinct bar timestamp in [start, end] across the symbols (backtrader's clock)."""
    first, last = _stamp(start), _stamp(end)
    stamps = [h.timestamps[(h.timestamps >= first) & (h.timestamps <= last)] for h in histories.values()]
    return np.unique(np.concatenate(stamps)) if stamps else np.array([], dtype="datetime64[s]")


def walk_forward_splits(
    stamps: np.ndarray, splits: int, min_bars: int
) -> tuple[list[WalkForwardSplit], list[str]]:
    """Cut the period into `splits + 1` equal runs of bars; split i fits on run i - 1 and tests on
    run i, so every test window follows its fit window and no two test windows overlap.

    Fewer splits when the runs would be shorter than `min_bars` (said in the notes); none possible
    is a `BacktestInputError`.
    """
    notes = []
    wanted = splits
    while splits >= 1 and len(stamps) // (splits + 1) < min_bars:
        splits -= 1
    if splits < 1:
        raise BacktestInputError(
            f"the period has {len(stamps)} bars: too few for even one walk-forward split (fit and test "
            f"windows of at least {min_bars} bars each); use a longer period or turn optimisation off"
        )
    if splits != wanted:
        notes.append(
            f"{splits} walk-forward split(s) instead of {wanted}: {len(stamps)} bars do not give "
            f"{wanted + 1} windows of at least {min_bars} bars"
        )
    size = len(stamps) // (splits + 1)
    bounds = [(i * size, (i + 1) * size - 1) for i in range(splits + 1)]
    bounds[-1] = (bounds[-1][0], len(stamps) - 1)  # the last run takes the remainder

    def window(lo: int, hi: int) -> Window:
        return Window(start=as_datetime(stamps[lo]), end=as_datetime(stamps[hi]), bars=hi - lo + 1)

    return [
        WalkForwardSplit(index=i, fit=window(*bounds[i - 1]), test=window(*bounds[i]))
        for i in range(1, splits + 1)
    ], notes


def prepare(
    request: PrepareDataRequest,
    *,
    source_name: str,
    csv_folder: str | None,
    seed: int,
    settings: Settings | None = None,
) -> PreparedData:
    """Resolve the source, symbols, exact window, warm-up and walk-forward splits of a validation."""
    source = open_source(source_name, csv_folder=csv_folder, seed=seed, settings=settings)
    try:
        return _prepare(source, request, source_name=source_name, csv_folder=csv_folder, seed=seed)
    finally:
        source.close()


def _prepare(
    source: MarketDataSource,
    request: PrepareDataRequest,
    *,
    source_name: str,
    csv_folder: str | None,
    seed: int,
) -> PreparedData:
    universe = source.universe()
    warnings: list[DataWarning] = []
    if request.symbols:
        unknown = sorted(set(request.symbols) - set(universe))
        if unknown:
            raise BacktestInputError(
                f"{source_name} has no {', '.join(unknown)}; it has {', '.join(universe[:30])}"
                + (" ..." if len(universe) > 30 else "")
            )
        symbols = list(request.symbols)
    else:
        symbols = list(universe)
    if len(symbols) > request.max_symbols:
        warnings.append(
            DataWarning(
                kind=DataWarningKind.SYMBOLS_CAPPED,
                message=f"the first {request.max_symbols} of {len(symbols)} symbols (max_symbols)",
            )
        )
        symbols = symbols[: request.max_symbols]
    if not symbols:
        raise BacktestInputError(f"{source_name} has no symbols")
    newest_by_symbol = {}
    for symbol in symbols:
        last = source.history(symbol, 1)
        if len(last):
            newest_by_symbol[symbol] = last.timestamps[-1]
    if not newest_by_symbol:
        raise BacktestInputError(f"{source_name} has no bars for {', '.join(symbols)}")
    newest = as_datetime(max(newest_by_symbol.values()))
    after = period_start(newest, request.period)
    warmup = max(max_lookback(s) for s in request.strategies)
    histories = _load(source, list(newest_by_symbol), after, newest, warmup)
    for history in histories.values():
        _refuse_bad_prices(source_name, history)
    stamps = timeline(histories, after + timedelta(seconds=1), newest)
    if len(stamps) == 0:
        raise BacktestInputError(
            f"{source_name} has no bars in the {request.period.value} before {newest:%Y-%m-%d}"
        )
    kept, first, last, coverage = _universe(histories, stamps, warmup, source_name)
    warnings += coverage
    stamps = timeline({s: histories[s] for s in kept}, first, last)
    if len(stamps) < MIN_WINDOW_BARS:
        raise BacktestInputError(
            f"{source_name}: only {len(stamps)} bars from {first:%Y-%m-%d} to {last:%Y-%m-%d} once the "
            f"strategies' warm-up ({warmup} bars before the first bar traded) is taken; a backtest needs "
            f"at least {MIN_WINDOW_BARS}: use a longer history or a shorter period"
        )
    inside, _ = window_histories(
        {s: histories[s] for s in kept}, as_datetime(stamps[0]), as_datetime(stamps[-1])
    )
    per_symbol = {s: len(inside[s]) for s in kept}
    for symbol in kept:
        warnings += _quality_warnings(inside[symbol])
    top_n = request.top_n or max(1, len(kept) // 2)
    if top_n > len(kept):
        raise BacktestInputError(
            f"top_n {top_n} exceeds the {len(kept)} symbols that cover the period ({', '.join(kept)})"
        )
    splits: list[WalkForwardSplit] = []
    if request.walk_forward_splits:
        splits, split_notes = walk_forward_splits(
            stamps, request.walk_forward_splits, max(10, 2 * request.rebalance_every_bars)
        )
        warnings += [DataWarning(kind=DataWarningKind.FEWER_SPLITS, message=n) for n in split_notes]
    first, last = as_datetime(stamps[0]), as_datetime(stamps[-1])
    reference = DataReference(
        source=source_name,
        csv_folder=csv_folder if source_name == "csv" else None,
        seed=seed if source_name == "simulated" else None,
        symbols=kept,
        window=Window(start=first, end=last, bars=len(stamps)),
        warmup_bars=warmup,
    )
    # Every symbol kept has `warmup` bars before the first bar (`_universe` makes sure of it).
    summary = (
        f"{source_name}: {len(kept)} symbols, {len(stamps)} bars {first:%Y-%m-%d}..{last:%Y-%m-%d} "
        f"({request.period.value} back from the newest bar), warm-up {warmup} bars before it, "
        f"top {top_n} held"
        + (f", {len(splits)} walk-forward splits" if splits else "")
        + (f"; {len(warnings)} data warning(s)" if warnings else "")
    )
    return PreparedData(
        summary=summary,
        data=reference,
        newest_bar=newest,
        source_description=describe_source(source_name, csv_folder=csv_folder, seed=seed),
        bars_per_symbol=per_symbol,
        top_n=top_n,
        splits=splits,
        warnings=warnings,
    )


def _refuse_bad_prices(source_name: str, history: PriceHistory) -> None:
    """Bars no trade could have printed turn every figure wrong: refused, naming symbol and date (a csv
    file's are refused on reading already, naming its line)."""
    days = history.timestamps.astype("datetime64[D]")
    for i in inconsistent_bars(history)[:1]:
        raise BacktestInputError(
            f"{source_name}: {history.symbol} {days[i]}: open {history.open[i]:g} or close "
            f"{history.close[i]:g} is outside the bar's range "
            f"(low {history.low[i]:g}, high {history.high[i]:g})"
        )
    for i in unconfirmed_jumps(history)[:1]:
        raise BacktestInputError(
            f"{source_name}: {history.symbol} {days[i]}: close {history.close[i]:g} (open "
            f"{history.open[i]:g}) jumps more than {JUMP_FACTOR:g}x against both {days[i - 1]} "
            f"({history.close[i - 1]:g}) and {days[i + 1]} ({history.close[i + 1]:g}), which do not "
            "confirm it: a bad print or a decimal slip"
        )


def _universe(
    histories: dict[str, PriceHistory], stamps: np.ndarray, warmup: int, source_name: str
) -> tuple[list[str], datetime, datetime, list[DataWarning]]:
    """The symbols that cover the whole window, with the strategies' warm-up before it, and the window.

    Strategies and buy-and-hold must see the same universe over the same bars: a symbol that starts
    late would be traded by the strategies once it appears but left out of buy-and-hold (bought on
    the first bar), one that ends early would be held flat to the end, and one without the warm-up
    would never be ranked. So each such symbol is left out, with a warning saying why. When no
    symbol has its warm-up before the period, the window starts at the first bar where one has.
    """
    warnings: list[DataWarning] = []

    def leave_out(symbol: str, why: str) -> None:
        warnings.append(
            DataWarning(kind=DataWarningKind.LEFT_OUT, symbol=symbol, message=f"{symbol} left out: {why}")
        )

    period_first = stamps[0]
    ready: dict[str, np.datetime64] = {}  # each symbol's first bar with `warmup` bars before it
    for symbol, history in histories.items():
        inside = (history.timestamps >= period_first) & (history.timestamps <= stamps[-1])
        if not inside.any():
            leave_out(symbol, "no bars in the period")
        elif len(history) <= warmup:
            leave_out(
                symbol,
                f"only {len(history)} bars; the strategies need {warmup} bars of history before the first "
                "bar they trade",
            )
        else:
            ready[symbol] = history.timestamps[warmup]
    if not ready:
        raise BacktestInputError(
            f"{source_name}: no symbol has more than {warmup} bars, the strategies' warm-up before the "
            f"first bar they trade: {'; '.join(w.message for w in warnings)}"
        )
    first = max(period_first, min(ready.values()))
    if first > period_first:
        skipped = int(((stamps >= period_first) & (stamps < first)).sum())
        warnings.append(
            DataWarning(
                kind=DataWarningKind.WINDOW_STARTS_LATE,
                message=f"the window starts {_day(first)}, not {_day(period_first)}: no symbol has "
                f"{warmup} bars of warm-up before the period, so its first {skipped} bars serve as warm-up",
            )
        )
    for symbol in [s for s, moment in ready.items() if moment > first]:
        history = histories[symbol]
        before = int((history.timestamps < first).sum())
        leave_out(
            symbol,
            f"starts too late ({_day(history.timestamps[0])}): {before} bars before the window's first "
            f"bar {_day(first)}, the strategies need {warmup}",
        )
        del ready[symbol]
    last = max(histories[s].timestamps[-1] for s in ready)
    for symbol in list(ready):
        history = histories[symbol]
        expected = _last_market_day(symbol, _day(last))
        if _day(history.timestamps[-1]) < expected:
            leave_out(
                symbol,
                f"ends early: its last bar is {_day(history.timestamps[-1])}, "
                f"the window's last is {expected}",
            )
            del ready[symbol]
    kept = [s for s in histories if s in ready]
    return kept, as_datetime(first), as_datetime(last), warnings


def _quality_warnings(history: PriceHistory) -> list[DataWarning]:
    """Gaps against the market's calendar and bars without volume, in the window's bars of a symbol."""
    warnings = []
    symbol = history.symbol
    missing = missing_sessions(history)
    if missing:
        shown = ", ".join(d.isoformat() for d in missing[:5]) + (" ..." if len(missing) > 5 else "")
        calendar_name = "every day (crypto)" if is_crypto(symbol) else "the NYSE's sessions"
        warnings.append(
            DataWarning(
                kind=DataWarningKind.GAP,
                symbol=symbol,
                message=f"{symbol}: {len(missing)} day(s) of {calendar_name} without a bar ({shown}): "
                "the strategies cannot trade it on those days and buy-and-hold carries its last close",
            )
        )
    silent = np.flatnonzero(history.volume == 0)
    if silent.size:
        warnings.append(
            DataWarning(
                kind=DataWarningKind.ZERO_VOLUME,
                symbol=symbol,
                message=f"{symbol}: volume 0 on {silent.size} of {len(history)} bars (first "
                f"{_day(history.timestamps[silent[0]])}): no trade happened at those prices, and "
                "strategies that weigh volume cannot rank it there",
            )
        )
    return warnings


def _last_market_day(symbol: str, day: date) -> date:
    """The last day on or before `day` on which `symbol`'s market was open."""
    if is_crypto(symbol):
        return day
    sessions = equity_sessions(day - timedelta(days=14), day).between(day - timedelta(days=14), day)
    return sessions[-1] if sessions else day


def _day(stamp: np.datetime64) -> date:
    return stamp.astype("datetime64[D]").astype(date)


def _stamp(moment: datetime) -> np.datetime64:
    naive = moment if moment.tzinfo is None else moment.astimezone(UTC).replace(tzinfo=None)
    return np.datetime64(naive, "s")


def as_datetime(stamp: np.datetime64) -> datetime:
    """A bar's numpy timestamp as an aware UTC datetime (what the contracts carry)."""
    return stamp.astype("datetime64[us]").item().replace(tzinfo=UTC)
