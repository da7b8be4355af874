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
- `staleness`: why a series' newest bar is too old to trade on (the market-conditions agent's rule,
  and the fallback chain's, which must agree on it).
- `missing_sessions`: the days between the first and last bar on which the market was open but
  the series has no bar: the NYSE's sessions (exchange-calendars, via `calendars`) for equities,
  every day for crypto.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np

from orch.market.base import PriceHistory
from orch.market.calendars import equity_sessions, freshness_moment, is_crypto, open_seconds_between

__all__ = [
    "JUMP_FACTOR",
    "bar_seconds",
    "inconsistent_bars",
    "missing_sessions",
    "staleness",
    "unconfirmed_jumps",
]

JUMP_FACTOR = 3.0
STALE_AFTER_BARS = 3.0
# An equity's age is counted only to the last session close while its market is closed
# (`freshness_moment`); daily bars keep this allowance, as a Friday's bar is 2.6 days old at
# Monday's open and 3.6 after a Monday holiday, where three bars would call it stale.
EQUITY_CLOSURE = timedelta(hours=72)


def bar_seconds(steps: np.ndarray, declared: timedelta | None) -> float | None:
    """The bar length: the declared one, else the median forward step between bars (seconds)."""
    if declared is not None:
        return declared.total_seconds()
    forward = steps[steps > 0]
    return float(np.median(forward)) if len(forward) else None


def staleness(
    history: PriceHistory,
    now: datetime,
    interval: timedelta,
    stale_after: timedelta | None = None,
    peer_latest: datetime | None = None,
) -> str | None:
    """Why the data is stale at `now`, or None: its last bar ended longer ago than `stale_after` (by
    default three bars, plus a weekend for daily equities), or it lags `peer_latest` by three bars."""
    crypto = is_crypto(history.symbol)
    last = datetime.fromtimestamp(int(history.timestamps.max().astype("datetime64[s]").astype(np.int64)), UTC)
    daily_equity = not crypto and interval >= timedelta(days=1)
    limit = stale_after or STALE_AFTER_BARS * interval + (EQUITY_CLOSURE if daily_equity else timedelta(0))
    measured_at = datetime.fromtimestamp(freshness_moment(history.symbol, now.timestamp()), UTC)
    ended = last + interval
    if daily_equity or crypto:
        age = measured_at - ended
        closed = "" if measured_at == now else f", counted to the last close {measured_at.isoformat()}"
    else:  # intraday equities: only session time ages a bar (09:31 Monday: Friday's last bar is 1 min old)
        age = timedelta(seconds=open_seconds_between(history.symbol, ended.timestamp(), now.timestamp()))
        closed = " in session time"
    if age > limit:
        return f"last bar at {last.isoformat()} ended {age} ago{closed} (limit {limit})"
    if peer_latest is not None and peer_latest - last > STALE_AFTER_BARS * interval:
        return f"last bar at {last.isoformat()} lags the newest of its peers ({peer_latest.isoformat()})"
    return None


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
