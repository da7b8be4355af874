"""When an instrument trades: the one home for market hours.

Crypto trades around the clock. US equities trade in the NYSE's sessions; the session list
(holidays and early closes included) comes from `exchange-calendars`, a well-kept library that
publishes every exchange's rules, rather than a hand-kept table that goes stale every December.

Two rules live here:

- `is_tradable(symbol, t)`: what the risk gate, tier 2 and the trading cycle ask before an entry.
  Today it is the weekend rule (Saturday and Sunday UTC: crypto only), the gate's rule since the
  start; the full session rule (`EquitySessions.is_open`) replaces it when the gate learns market
  hours, and then both callers change together because they share this function.
- `EquitySessions`: the exchange's trading days, for data checks (a daily series with a missing
  session is a gap) and for the session rule itself.
"""

from __future__ import annotations

import bisect
from datetime import UTC, date, datetime
from functools import lru_cache

SATURDAY = 5
EQUITY_EXCHANGE = "XNYS"  # the NYSE: US equities' sessions, holidays and early closes


def is_crypto(symbol: str) -> bool:
    """Crypto pairs are quoted BASE/QUOTE ("BTC/USD"), as Alpaca does; no equity ticker has a slash."""
    base, slash, quote = symbol.partition("/")
    return bool(slash and base and quote)


def is_weekend(epoch_seconds: float) -> bool:
    return datetime.fromtimestamp(epoch_seconds, UTC).weekday() >= SATURDAY


def account_trading_day(epoch_seconds: float) -> date:
    """The trading day an account's P&L is counted in (the daily-loss breaker's day): the UTC date.

    One rule for every account: crypto trades around the clock, so its day needs a fixed cut, and
    the NYSE's regular session (13:30-21:00 UTC at the latest) never spans UTC midnight, so for an
    equity account the UTC date is also the session's date.
    """
    return datetime.fromtimestamp(epoch_seconds, UTC).date()


def is_tradable(symbol: str, epoch_seconds: float) -> bool:
    """Whether an entry in `symbol` may be sent at `epoch_seconds` (the gate's rule)."""
    return is_crypto(symbol) or not is_weekend(epoch_seconds)


class EquitySessions:
    """The exchange's sessions between two dates, as UTC epoch seconds, for fast lookups."""

    def __init__(self, start: date, end: date, exchange: str = EQUITY_EXCHANGE) -> None:
        # Imported here: the library loads pandas (about 0.5 s), which only data checks and the
        # session rule need, never a CLI command that only starts a workflow.
        import exchange_calendars

        calendar = exchange_calendars.get_calendar(exchange, start=start.isoformat(), end=end.isoformat())
        schedule = calendar.schedule
        self.exchange = exchange
        self.days: list[date] = [timestamp.date() for timestamp in schedule.index]
        self._opens = [timestamp.timestamp() for timestamp in schedule["open"]]
        self._closes = [timestamp.timestamp() for timestamp in schedule["close"]]

    def is_session(self, day: date) -> bool:
        index = bisect.bisect_left(self.days, day)
        return index < len(self.days) and self.days[index] == day

    def between(self, first: date, last: date) -> list[date]:
        """The sessions from `first` to `last`, both included."""
        return self.days[bisect.bisect_left(self.days, first) : bisect.bisect_right(self.days, last)]

    def is_open(self, epoch_seconds: float) -> bool:
        index = bisect.bisect_right(self._opens, epoch_seconds) - 1
        return index >= 0 and epoch_seconds < self._closes[index]

    def open_close(self, day: date) -> tuple[float, float]:
        """The open and close of the session on `day` (early closes included), as epoch seconds."""
        index = bisect.bisect_left(self.days, day)
        if index == len(self.days) or self.days[index] != day:
            raise KeyError(f"{day} is not a session of {self.exchange}")
        return self._opens[index], self._closes[index]

    def next_open(self, epoch_seconds: float) -> float | None:
        """The first open strictly after `epoch_seconds`; None past the calendar's last session."""
        index = bisect.bisect_right(self._opens, epoch_seconds)
        return self._opens[index] if index < len(self._opens) else None

    def next_close(self, epoch_seconds: float) -> float | None:
        """The first close strictly after `epoch_seconds` (today's while a session is open)."""
        index = bisect.bisect_right(self._closes, epoch_seconds)
        return self._closes[index] if index < len(self._closes) else None


@lru_cache(maxsize=8)
def equity_sessions(start: date, end: date) -> EquitySessions:
    """One calendar per window and process: building one takes about 50 ms."""
    return EquitySessions(start, end)
