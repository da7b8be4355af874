"""Market data from a folder of OHLCV files: one `<SYMBOL>.csv` or `<SYMBOL>.parquet` per symbol.

A file has one row per bar and the columns `timestamp` (or `date` / `datetime` / `time`), `open`,
`high`, `low`, `close` and `volume`, named in any case; other columns are ignored. Timestamps are
ISO 8601 dates or date-times; one without an offset is read as UTC. Rows may come oldest or newest
first. A file that breaks any of this is refused whole with `DataFileError`, naming the file, the
line (CSV) or row (Parquet) and what is wrong: a backtest on silently skipped rows would be wrong
without anyone knowing. So is a row whose open or close lies outside its own low-high range, and one
whose price jumps and is undone by the next row (`bar_checks`).

Files are parsed once and kept until they change on disk (size or modification time).
"""

from __future__ import annotations

import csv
import math
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from orch.market.bar_checks import JUMP_FACTOR, inconsistent_bars, unconfirmed_jumps
from orch.market.base import MarketDataError, MarketDataSource, PriceHistory, UnknownSymbolError

__all__ = ["SUFFIXES", "CsvMarketData", "DataFileError", "tail"]

SUFFIXES = (".csv", ".parquet")
TIMESTAMP_COLUMNS = ("timestamp", "date", "datetime", "time")
PRICE_COLUMNS = ("open", "high", "low", "close")


class DataFileError(MarketDataError):
    """A data file is malformed or the folder is unusable: no retry can fix it."""


def tail(history: PriceHistory, bars: int, end: datetime | None) -> PriceHistory:
    """The last `bars` bars of `history` stamped at or before `end` (all of them when `end` is None)."""
    stop = len(history)
    if end is not None:
        limit = np.datetime64(end.astimezone(UTC).replace(tzinfo=None), "s")
        stop = int(np.searchsorted(history.timestamps, limit, side="right"))
    start = max(0, stop - max(0, bars))
    return PriceHistory(
        symbol=history.symbol,
        timestamps=history.timestamps[start:stop],
        open=history.open[start:stop],
        high=history.high[start:stop],
        low=history.low[start:stop],
        close=history.close[start:stop],
        volume=history.volume[start:stop],
    )


class CsvMarketData(MarketDataSource):
    """Daily (or any timeframe) bars read from `folder`; the universe is the files found there."""

    name = "csv"

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).expanduser()
        self._cache: dict[Path, tuple[tuple[int, int], PriceHistory]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CsvMarketData({str(self.folder)!r})"

    def universe(self) -> list[str]:
        return sorted(self._files())

    def history(self, symbol: str, bars: int, end: datetime | None = None) -> PriceHistory:
        path = self._files().get(symbol)
        if path is None:
            raise UnknownSymbolError(
                f"no file for {symbol!r} in {self.folder} (looked for {symbol}.csv/.parquet)"
            )
        return tail(self._load(symbol, path), bars, end)

    # ---- Files ---------------------------------------------------------------------------------

    def _files(self) -> dict[str, Path]:
        if not self.folder.is_dir():
            raise DataFileError(f"csv source: {self.folder} is not a folder")
        found: dict[str, Path] = {}
        for path in sorted(self.folder.iterdir()):
            if path.suffix.lower() not in SUFFIXES or not path.is_file():
                continue
            if path.stem in found:
                raise DataFileError(
                    f"csv source: {found[path.stem].name} and {path.name} both hold {path.stem}; keep one"
                )
            found[path.stem] = path
        return found

    def _load(self, symbol: str, path: Path) -> PriceHistory:
        stat = path.stat()
        key = (stat.st_size, stat.st_mtime_ns)
        with self._lock:
            cached = self._cache.get(path)
            if cached is not None and cached[0] == key:
                return cached[1]
        reader = _read_parquet if path.suffix.lower() == ".parquet" else _read_csv
        history = _validated(symbol, path, reader(path))
        with self._lock:
            self._cache[path] = (key, history)
        return history


# ---- Parsing ----------------------------------------------------------------------------------

Rows = list[tuple[str, Any, Any, Any, Any, Any, Any]]  # (where, timestamp, open, high, low, close, volume)


def _columns(path: Path, names: list[str]) -> list[int]:
    """Positions of timestamp, open, high, low, close, volume among `names`, or a clear error."""
    lowered = [n.strip().lower() for n in names]
    positions = []
    timestamp = next((lowered.index(n) for n in TIMESTAMP_COLUMNS if n in lowered), None)
    missing = [] if timestamp is not None else ["timestamp (or date/datetime/time)"]
    positions.append(timestamp)
    for column in (*PRICE_COLUMNS, "volume"):
        if column in lowered:
            positions.append(lowered.index(column))
        else:
            missing.append(column)
    if missing:
        raise DataFileError(
            f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(names) or 'no header'}"
        )
    return positions  # type: ignore[return-value]


def _read_csv(path: Path) -> Rows:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise DataFileError(f"{path}: empty file (expected a header row)") from None
        except (csv.Error, UnicodeDecodeError) as err:
            raise DataFileError(f"{path}: not a readable CSV file ({err})") from None
        positions = _columns(path, header)
        rows: Rows = []
        try:
            for row in reader:
                if not row or all(not cell.strip() for cell in row):
                    continue
                where = f"line {reader.line_num}"
                if len(row) < len(header):
                    raise DataFileError(f"{path}: {where}: {len(row)} fields, the header has {len(header)}")
                rows.append((where, *(row[p].strip() for p in positions)))
        except (csv.Error, UnicodeDecodeError) as err:
            raise DataFileError(f"{path}: line {reader.line_num}: {err}") from None
    return rows


def _read_parquet(path: Path) -> Rows:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        raise DataFileError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from None
    try:
        table = pq.read_table(path)
    except Exception as err:
        raise DataFileError(f"{path}: not a readable Parquet file ({err})") from None
    names = table.column_names
    positions = _columns(path, names)
    columns = [table.column(p).to_pylist() for p in positions]
    rows: Rows = [(f"row {i + 1}", *values) for i, values in enumerate(zip(*columns, strict=True))]
    return rows


def _timestamp(value: Any) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif hasattr(value, "isoformat") and not isinstance(value, str):  # a date
        moment = datetime.fromisoformat(value.isoformat())
    else:
        moment = datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(tzinfo=None)


def _number(value: Any) -> float:
    if value is None or isinstance(value, bool):
        raise ValueError("empty")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("not finite")
    return number


def _validated(symbol: str, path: Path, rows: Rows) -> PriceHistory:
    if not rows:
        raise DataFileError(f"{path}: no bars (only a header)")
    stamps, values, wheres = [], [], []
    for where, stamp, *ohlcv in rows:
        try:
            stamps.append(_timestamp(stamp))
        except (TypeError, ValueError):
            raise DataFileError(
                f"{path}: {where}: timestamp {stamp!r} is not an ISO 8601 date or time"
            ) from None
        bar = []
        for name, value in zip((*PRICE_COLUMNS, "volume"), ohlcv, strict=True):
            try:
                bar.append(_number(value))
            except (TypeError, ValueError):
                raise DataFileError(f"{path}: {where}: {name} {value!r} is not a number") from None
        o, h, lo, c, v = bar
        if min(o, h, lo, c) <= 0:
            raise DataFileError(
                f"{path}: {where}: prices must be positive (open {o}, high {h}, low {lo}, close {c})"
            )
        if h < lo:
            raise DataFileError(f"{path}: {where}: high {h} is below low {lo}")
        if v < 0:
            raise DataFileError(f"{path}: {where}: volume {v} is negative")
        wheres.append(where)
        values.append(bar)
    timestamps = np.array(stamps, dtype="datetime64[s]")
    order = np.argsort(timestamps, kind="stable")
    timestamps = timestamps[order]
    duplicate = np.flatnonzero(timestamps[1:] == timestamps[:-1])
    if duplicate.size:
        first, second = order[duplicate[0]], order[duplicate[0] + 1]
        raise DataFileError(
            f"{path}: {wheres[second]}: timestamp {timestamps[duplicate[0]]} "
            f"already appears at {wheres[first]}"
        )
    table = np.array(values, dtype=float)[order]
    history = PriceHistory(symbol, timestamps, *(table[:, i].copy() for i in range(5)))
    _refuse_bad_prices(path, history, [wheres[i] for i in order])
    return history


def _refuse_bad_prices(path: Path, history: PriceHistory, wheres: list[str]) -> None:
    """A price no trade could have printed, or a jump the next bar undoes, is a wrong row: refused
    (see `bar_checks` for the rules and their thresholds)."""
    for i in inconsistent_bars(history)[:1]:
        raise DataFileError(
            f"{path}: {wheres[i]}: open {history.open[i]:g} or close {history.close[i]:g} is outside "
            f"the bar's range (low {history.low[i]:g}, high {history.high[i]:g})"
        )
    for i in unconfirmed_jumps(history)[:1]:
        raise DataFileError(
            f"{path}: {wheres[i]}: open {history.open[i]:g} / close {history.close[i]:g} jumps more than "
            f"{JUMP_FACTOR:g}x against both neighbouring bars ({wheres[i - 1]}: {history.open[i - 1]:g} / "
            f"{history.close[i - 1]:g}, {wheres[i + 1]}: {history.open[i + 1]:g} / "
            f"{history.close[i + 1]:g}), which do not confirm it: a bad print or a decimal slip"
        )
