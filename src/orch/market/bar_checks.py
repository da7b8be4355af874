"""Checks of daily OHLCV bars that no source should pass on silently: each answers which bars.

- `inconsistent_bars`: an open or close outside the bar's own [low, high]. No trade can print
  outside the day's range, so the row is wrong; a close ten times the high turned a 13.5 %
  buy-and-hold drawdown into 78.5 % before this was checked.
- `unconfirmed_jumps`: an open or close more than `JUMP_FACTOR` times (or less than a
  `JUMP_FACTOR`-th of) the same price on both the bar before and the bar after. A real move lasts
  (the bar after confirms it); a bar that jumps and is undone the next day is a bad print or a
  decimal slip (x10, x100). Factor 3 because on the sample's 12,000 real daily bars the largest
  one-bar move undone the next day is 9 %, the largest move of any kind is AAPL's 52 % fall of
  2000-09-29 (which stayed, so it is confirmed), while a slip is at least x10. The first and last
  bar have one neighbour only, so they cannot be judged.
- `missing_sessions`: the days between the first and last bar on which the market was open but
  the series has no bar: the NYSE's sessions (exchange-calendars, via `calendars`) for equities,
  every day for crypto.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np

from orch.market.base import PriceHistory
from orch.market.calendars import equity_sessions, is_crypto

__all__ = ["JUMP_FACTOR", "inconsistent_bars", "missing_sessions", "unconfirmed_jumps"]

JUMP_FACTOR = 3.0


def inconsistent_bars(history: PriceHistory) -> np.ndarray:
    """Indices of bars whose open or close lies outside their [low, high]."""
    low, high = history.low, history.high
    outside = (history.open < low) | (history.open > high) | (history.close < low) | (history.close > high)
    return np.flatnonzero(outside)


def unconfirmed_jumps(history: PriceHistory, factor: float = JUMP_FACTOR) -> np.ndarray:
    """Indices of bars whose open or close jumps by more than `factor` against both neighbours'."""
    flagged = np.zeros(len(history), dtype=bool)
    if len(history) < 3:
        return np.flatnonzero(flagged)
    for prices in (history.open, history.close):
        middle, before, after = prices[1:-1], prices[:-2], prices[2:]
        with np.errstate(divide="ignore", invalid="ignore"):
            up = (middle > factor * before) & (middle > factor * after)
            down = (middle * factor < before) & (middle * factor < after)
        flagged[1:-1] |= up | down
    return np.flatnonzero(flagged)


def bar_dates(history: PriceHistory) -> list[date]:
    return history.timestamps.astype("datetime64[D]").astype(date).tolist()


def missing_sessions(history: PriceHistory) -> list[date]:
    """The market's days between the first and last bar (both included) that have no bar."""
    if len(history) < 2:
        return []
    days = bar_dates(history)
    first, last = days[0], days[-1]
    if is_crypto(history.symbol):
        expected = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    else:
        expected = equity_sessions(first, last).between(first, last)
    present = set(days)
    return [day for day in expected if day not in present]
