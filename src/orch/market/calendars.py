"""When an instrument trades: the one home for market hours.

Crypto trades around the clock. US equities trade in the NYSE's regular sessions (09:30-16:00 New
York, 13:00 on an early-close day; no pre-market or after-hours trading). The session list, holidays
and early closes included, comes from `exchange-calendars`, a well-kept library that publishes every
exchange's rules, rather than a hand-kept table that goes stale every December. It is used instead of
Alpaca's clock and calendar endpoints because every part of orch needs the answer, also offline, in
the simulated market and in backtests, and per tick without a network call; the fake Alpaca serves
its `/v2/clock` and `/v2/calendar` from these same sessions.

What lives here:

- `is_tradable(symbol, t)`: what the risk gate, tier 2, the trading cycle, the simulated market and
  data staleness ask. Crypto: always. Equities: inside a session. The weekend is one case of closed.
- `market_status(symbol, t)`: the same answer with why the market is closed (`MarketClosure`: the
  weekend, a named holiday, before the open, after the close, after an early close), for reports.
- `EquitySessions`: the exchange's sessions between two dates, for data checks (a daily series with
  a missing session is a gap) and for the rules above.

The rules above read one process-wide `EquitySessions` (`current_sessions`), built lazily on first use
and rebuilt further out whenever a moment comes within a year of its end, so a process that runs for
years never runs off its calendar (exchange-calendars' own default window ends a year after today).
"""

from __future__ import annotations

import bisect
import math
import threading
from datetime import UTC, date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

from orch.contracts.market import MarketClosure, MarketStatus

SATURDAY = 5
EQUITY_EXCHANGE = "XNYS"  # the NYSE: US equities' sessions, holidays and early closes
NEW_YORK = ZoneInfo("America/New_York")
# The process-wide window: from here (the simulated market starts in 2020; backtests read their own
# windows) to SESSION_YEARS_AHEAD years past the newest moment asked about, rebuilt a year before it ends.
FIRST_SESSION_YEAR = 2000
SESSION_YEARS_AHEAD = 2
REBUILD_SECONDS_BEFORE_END = 366 * 86_400


def is_crypto(symbol: str) -> bool:
    """Crypto pairs are quoted BASE/QUOTE ("BTC/USD"), as Alpaca does; no equity ticker has a slash."""
    base, slash, quote = symbol.partition("/")
    return bool(slash and base and quote)


def account_trading_day(epoch_seconds: float) -> date:
    """The trading day an account's P&L is counted in (the daily-loss breaker's day): the UTC date.

    One rule for every account: crypto trades around the clock, so its day needs a fixed cut, and
    the NYSE's regular session (13:30-21:00 UTC at the latest) never spans UTC midnight, so for an
    equity account the UTC date is also the session's date.
    """
    return datetime.fromtimestamp(epoch_seconds, UTC).date()


def is_tradable(symbol: str, epoch_seconds: float) -> bool:
    """Whether `symbol` trades at `epoch_seconds`: crypto always, equities inside an NYSE session.

    About a microsecond: the last answer is remembered with the span it holds for (a session, or the
    gap to the next one), so a tick inside that span costs two comparisons.
    """
    return is_crypto(symbol) or current_sessions(epoch_seconds).is_open(epoch_seconds)


def day_order_expiry(symbol: str, accepted_at: float) -> float | None:
    """When a day order accepted at `accepted_at` expires: the close of the session open then, or of
    the next one (Alpaca queues it); None for crypto, whose orders are good till cancelled."""
    if is_crypto(symbol):
        return None
    return current_sessions(accepted_at).next_close(accepted_at)


def freshness_moment(symbol: str, epoch_seconds: float) -> float:
    """The moment a bar's age is measured at: `epoch_seconds` while the symbol trades (crypto always),
    else the last session's close, so a bar from Friday's close is no older on Sunday or on a holiday
    than it was at the close, and is stale again by Monday afternoon."""
    if is_tradable(symbol, epoch_seconds):
        return epoch_seconds
    last_close = current_sessions(epoch_seconds).last_close(epoch_seconds)
    return epoch_seconds if last_close is None else last_close


def open_seconds_between(symbol: str, start: float, end: float) -> float:
    """How long `symbol`'s market was open from `start` to `end`: all of it for crypto, the session
    time inside it for equities (an intraday bar's age on the market's own clock)."""
    if end <= start:
        return 0.0
    if is_crypto(symbol):
        return end - start
    return current_sessions(end).open_seconds_between(start, end)


def market_status(symbol: str, epoch_seconds: float) -> MarketStatus:
    """`is_tradable` with the reason the market is closed."""
    if is_tradable(symbol, epoch_seconds):
        return MarketStatus(symbol=symbol)
    closure, holiday = current_sessions(epoch_seconds).closure(epoch_seconds)
    return MarketStatus(symbol=symbol, closure=closure, holiday=holiday)


class EquitySessions:
    """The exchange's sessions between two dates, as UTC epoch seconds, for fast lookups."""

    def __init__(self, start: date, end: date, exchange: str = EQUITY_EXCHANGE) -> None:
        # Imported here: the library loads pandas (about 0.5 s), which only data checks and the
        # session rule need, never a CLI command that only starts a workflow.
        import exchange_calendars

        calendar = exchange_calendars.get_calendar(exchange, start=start.isoformat(), end=end.isoformat())
        schedule = calendar.schedule
        self.exchange = exchange
        self.start, self.end = start, end
        self.days: list[date] = [timestamp.date() for timestamp in schedule.index]
        self._opens = [timestamp.timestamp() for timestamp in schedule["open"]]
        self._closes = [timestamp.timestamp() for timestamp in schedule["close"]]
        # The first moment after this window: past the last session's close, nothing is known.
        self.start_epoch = datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp()
        self.end_epoch = datetime(end.year, end.month, end.day, tzinfo=UTC).timestamp() + 86_400
        self.early_closes = frozenset(
            timestamp.date() for timestamp in calendar.early_closes if start <= timestamp.date() <= end
        )
        # Named holidays (New Year's Day, Christmas…); one-off closures (a national day of mourning)
        # have no name in the library and read as "holiday".
        names = calendar.regular_holidays.holidays(start.isoformat(), end.isoformat(), return_name=True)
        self.holidays: dict[date, str] = {timestamp.date(): str(name) for timestamp, name in names.items()}
        self._day_array: np.ndarray | None = None  # the sessions as datetime64 days, when first asked
        # The last answer of is_open and the span [from, until) it holds for.
        self._memo: tuple[float, float, bool] = (0.0, 0.0, False)

    def sessions_between(self, after: np.ndarray, before: np.ndarray) -> np.ndarray:
        """How many sessions fall strictly between each pair of days (datetime64[D] arrays)."""
        days = self._day_array
        if days is None:
            days = self._day_array = np.array(self.days, dtype="datetime64[D]")
        return np.searchsorted(days, before, "left") - np.searchsorted(days, after, "right")

    def covers(self, epoch_seconds: float) -> bool:
        """Whether `epoch_seconds` is inside the window with at least a year of sessions after it."""
        return self.start_epoch <= epoch_seconds < self.end_epoch - REBUILD_SECONDS_BEFORE_END

    def is_session(self, day: date) -> bool:
        index = bisect.bisect_left(self.days, day)
        return index < len(self.days) and self.days[index] == day

    def between(self, first: date, last: date) -> list[date]:
        """The sessions from `first` to `last`, both included."""
        return self.days[bisect.bisect_left(self.days, first) : bisect.bisect_right(self.days, last)]

    def is_open(self, epoch_seconds: float) -> bool:
        since, until, is_open = self._memo
        if since <= epoch_seconds < until:
            return is_open
        index = bisect.bisect_right(self._opens, epoch_seconds) - 1
        if index >= 0 and epoch_seconds < self._closes[index]:
            self._memo = (self._opens[index], self._closes[index], True)
            return True
        since = self._closes[index] if index >= 0 else -math.inf
        until = self._opens[index + 1] if index + 1 < len(self._opens) else since
        self._memo = (since, until, False)  # one tuple: a thread never sees half an update
        return False

    def open_seconds_between(self, start: float, end: float) -> float:
        """Session time from `start` to `end` (about a microsecond per session in between)."""
        total = 0.0
        index = max(0, bisect.bisect_right(self._closes, start))
        while index < len(self._opens) and self._opens[index] < end:
            total += max(0.0, min(end, self._closes[index]) - max(start, self._opens[index]))
            index += 1
        return total

    def closure(self, epoch_seconds: float) -> tuple[MarketClosure | None, str | None]:
        """Why the market is closed at `epoch_seconds` (None when open), and the holiday's name.

        Judged on the New York date: Monday 00:30 UTC is still Sunday evening there, the weekend.
        """
        if self.is_open(epoch_seconds):
            return None, None
        day = datetime.fromtimestamp(epoch_seconds, NEW_YORK).date()
        if self.is_session(day):
            opens, _ = self.open_close(day)
            if epoch_seconds < opens:
                return MarketClosure.BEFORE_OPEN, None
            if day in self.early_closes:
                return MarketClosure.EARLY_CLOSE, None
            return MarketClosure.AFTER_CLOSE, None
        if day.weekday() >= SATURDAY:
            return MarketClosure.WEEKEND, None
        return MarketClosure.HOLIDAY, self.holidays.get(day)

    def open_close(self, day: date) -> tuple[float, float]:
        """The open and close of the session on `day` (early closes included), as epoch seconds."""
        index = bisect.bisect_left(self.days, day)
        if index == len(self.days) or self.days[index] != day:
            raise KeyError(f"{day} is not a session of {self.exchange}")
        return self._opens[index], self._closes[index]

    def last_close(self, epoch_seconds: float) -> float | None:
        """The last close at or before `epoch_seconds`; None before the calendar's first session."""
        index = bisect.bisect_right(self._closes, epoch_seconds) - 1
        return self._closes[index] if index >= 0 else None

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


_current: EquitySessions | None = None
_current_lock = threading.Lock()


def current_sessions(epoch_seconds: float) -> EquitySessions:
    """The process-wide NYSE sessions, covering `epoch_seconds` and at least a year after it.

    Built on first use (about 0.2 s: pandas and ten-odd years of sessions) and rebuilt, only ever
    wider, when a moment comes within a year of the window's end or falls before its start.
    """
    sessions = _current
    if sessions is not None and sessions.covers(epoch_seconds):
        return sessions
    return _widen(epoch_seconds)


def _widen(epoch_seconds: float) -> EquitySessions:
    global _current
    with _current_lock:
        sessions = _current
        if sessions is not None and sessions.covers(epoch_seconds):
            return sessions  # another thread widened it while this one waited
        year = datetime.fromtimestamp(epoch_seconds, UTC).year
        first = min(FIRST_SESSION_YEAR, year, sessions.start.year if sessions else FIRST_SESSION_YEAR)
        last = max(year + SESSION_YEARS_AHEAD, sessions.end.year if sessions else 0)
        _current = EquitySessions(date(first, 1, 1), date(last, 12, 31))
        return _current
