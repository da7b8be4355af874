"""Real daily bars, offline: AAPL, GOOG, IBM and MSFT from the `bokeh-sampledata` package.

Quandl WIKI prices, declared public domain, 2000-03-01 (GOOG from its 2004-08-19 listing) to
2013-03-01; nothing is downloaded at run time. The package's open, high, low, close and volume are
unadjusted, so a 2:1 split would look like a 50 % crash to a backtest; this source serves them
split- and dividend-adjusted instead, scaling each day's prices by the source's
`adj_close / close` (and volume by its inverse), which is how adjusted OHLC bars are made.

The source's name is `sample`: select it with `orch validate-algorithms --source sample`, or make
it the system's primary data source. `export_csv` writes the same bars as a folder that
`CsvMarketData` reads.
"""

from __future__ import annotations

import csv
from datetime import datetime
from functools import cache
from pathlib import Path

import numpy as np

from orch.market.base import MarketDataSource, PriceHistory, UnknownSymbolError
from orch.market.csv import tail

__all__ = ["SAMPLE_SYMBOLS", "SampleMarketData", "export_csv", "sample_history"]

SAMPLE_SYMBOLS = ("AAPL", "GOOG", "IBM", "MSFT")  # FB (2012-13 only) is left out: too short to test on


@cache
def sample_history(symbol: str) -> PriceHistory:
    """Every adjusted daily bar of `symbol`, oldest first, stamped 00:00 UTC of its date."""
    if symbol not in SAMPLE_SYMBOLS:
        raise UnknownSymbolError(f"the sample data has no {symbol!r}; it has {', '.join(SAMPLE_SYMBOLS)}")
    from bokeh_sampledata import stocks  # parses the package's 12,000 rows on first import

    raw = getattr(stocks, symbol)
    close = np.array(raw["close"], dtype=float)
    factor = np.array(raw["adj_close"], dtype=float) / close
    history = PriceHistory(
        symbol=symbol,
        timestamps=np.array(raw["date"], dtype="datetime64[D]").astype("datetime64[s]"),
        open=np.array(raw["open"], dtype=float) * factor,
        high=np.array(raw["high"], dtype=float) * factor,
        low=np.array(raw["low"], dtype=float) * factor,
        close=close * factor,
        volume=np.array(raw["volume"], dtype=float) / factor,
    )
    # Every caller shares these cached arrays (and `tail` hands out views of them): read-only, so a
    # caller that edits its copy in place fails at once instead of corrupting every later reader.
    columns = (history.timestamps, history.open, history.high, history.low, history.close, history.volume)
    for column in columns:
        column.setflags(write=False)
    return history


class SampleMarketData(MarketDataSource):
    """The bokeh-sampledata daily bars behind the `MarketDataSource` interface."""

    name = "sample"

    def __init__(self, symbols: tuple[str, ...] = SAMPLE_SYMBOLS) -> None:
        unknown = sorted(set(symbols) - set(SAMPLE_SYMBOLS))
        if unknown:
            raise UnknownSymbolError(
                f"the sample data has no {', '.join(unknown)}; it has {', '.join(SAMPLE_SYMBOLS)}"
            )
        self._symbols = tuple(symbols)

    def __repr__(self) -> str:
        return f"SampleMarketData({self._symbols!r})"

    def universe(self) -> list[str]:
        return list(self._symbols)

    def history(self, symbol: str, bars: int, end: datetime | None = None) -> PriceHistory:
        if symbol not in self._symbols:
            raise UnknownSymbolError(f"{symbol!r} is not in this sample source ({', '.join(self._symbols)})")
        return tail(sample_history(symbol), bars, end)


def export_csv(folder: str | Path, symbols: tuple[str, ...] = SAMPLE_SYMBOLS) -> list[Path]:
    """Write each symbol's adjusted bars to `<folder>/<SYMBOL>.csv`; returns the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for symbol in symbols:
        history = sample_history(symbol)
        path = folder / f"{symbol}.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["date", "open", "high", "low", "close", "volume"])
            for i, stamp in enumerate(history.timestamps.astype("datetime64[D]")):
                writer.writerow(
                    [
                        str(stamp),
                        *(
                            repr(float(c[i]))
                            for c in (history.open, history.high, history.low, history.close)
                        ),
                        repr(float(history.volume[i])),
                    ]
                )
        written.append(path)
    return written
