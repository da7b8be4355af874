"""The fake's time and the US equity market's sessions at that time.

`FakeClock` is the time the fake Alpaca lives in: the wall clock by default, or a moment a test
chose (frozen, or ticking on from there), so a test can run a weekday session, a holiday or a
weekend on any day. `MarketClock` answers, at that time, what Alpaca's `/v2/clock` and
`/v2/calendar` answer, from the NYSE's sessions in `orch.market.calendars` (holidays and early
closes included).

Scheduled fills, cancel delays and the rate limit keep to real (monotonic) time: they measure how
long something takes, not what day it is.
"""

from __future__ import annotations

import bisect
import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from orch.market.calendars import EquitySessions, equity_sessions

NEW_YORK = ZoneInfo("America/New_York")
# Alpaca's /v2/calendar serves these years when a request names no window.
CALENDAR_FIRST_DAY, CALENDAR_LAST_DAY = date(1970, 1, 1), date(2029, 12, 31)
# Pre-market and after-hours, as /v2/calendar spells them (HHMM, New York).
EXTENDED_SESSION_OPEN, EXTENDED_SESSION_CLOSE = "0400", "2000"


class FakeClock:
    """The fake's now: the wall clock, or a chosen moment that stays put or ticks on."""

    def __init__(self, start: datetime | None = None, ticking: bool = True) -> None:
        self._lock = threading.Lock()
        self.set(start, ticking)

    def set(self, at: datetime | None, ticking: bool = True) -> None:
        """From now on the time is `at` (None: the wall clock), frozen there unless `ticking`."""
        if at is not None and at.tzinfo is None:
            raise ValueError("the fake's time needs a time zone")
        with self._lock:
            self._frozen_at = None if at is None or ticking else at.astimezone(UTC)
            self._offset = timedelta(0) if at is None else at.astimezone(UTC) - datetime.now(UTC)

    def now(self) -> datetime:
        with self._lock:
            return self._now()

    def _now(self) -> datetime:
        return self._frozen_at or datetime.now(UTC) + self._offset

    def describe(self) -> dict[str, Any]:
        # One acquisition for all three: the lock is not re-entrant, so calling `now()` while
        # holding it deadlocked the admin API's state answer (and every later request).
        with self._lock:
            now, ticking = self._now(), self._frozen_at is None
            wall_clock = ticking and not self._offset
        return {"now": now.isoformat(), "ticking": ticking, "wall_clock": wall_clock}


def _sessions_around(moment: datetime) -> EquitySessions:
    """Sessions from a year before to a year after `moment`: enough for any next open or close."""
    return equity_sessions(date(moment.year - 1, 1, 1), date(moment.year + 1, 12, 31))


def _new_york(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, NEW_YORK)


class MarketClock:
    """US equity market hours at the fake's time; `always_open` when the market-hours rule is relaxed."""

    def __init__(self, clock: FakeClock, always_open: bool = False) -> None:
        self.clock = clock
        self.always_open = always_open

    def now(self) -> datetime:
        return self.clock.now()

    def is_open(self, at: datetime | None = None) -> bool:
        moment = at or self.now()
        return self.always_open or _sessions_around(moment).is_open(moment.timestamp())

    def next_close(self, after: datetime) -> datetime | None:
        """When a day order placed at `after` expires: the close of the session open then, or of the next."""
        if self.always_open:
            return None
        close = _sessions_around(after).next_close(after.timestamp())
        return None if close is None else datetime.fromtimestamp(close, UTC)

    def alpaca_clock(self) -> dict[str, Any]:
        """`GET /v2/clock`: times in New York, as Alpaca writes them."""
        now = self.now()
        sessions = _sessions_around(now)
        is_open = self.is_open(now)
        next_open = sessions.next_open(now.timestamp())
        next_close = sessions.next_close(now.timestamp())
        assert next_open is not None and next_close is not None  # the window runs a year past now
        return {
            "timestamp": now.astimezone(NEW_YORK).isoformat(),
            "is_open": is_open,
            "next_open": _new_york(next_open).isoformat(),
            "next_close": _new_york(next_close).isoformat(),
        }

    def alpaca_calendar(self, first: date | None, last: date | None) -> list[dict[str, str]]:
        """`GET /v2/calendar`: one entry per session from `first` to `last` (Alpaca's years by default)."""
        first, last = first or CALENDAR_FIRST_DAY, last or CALENDAR_LAST_DAY
        if first > last:
            return []
        # Settlement is T+1, the next session: the window runs on past `last` to hold it.
        sessions = equity_sessions(first, last + timedelta(days=10))
        first_index = bisect.bisect_left(sessions.days, first)
        calendar = []
        for offset, day in enumerate(sessions.between(first, last)):
            opens, closes = sessions.open_close(day)
            calendar.append(
                {
                    "date": day.isoformat(),
                    "open": _new_york(opens).strftime("%H:%M"),
                    "close": _new_york(closes).strftime("%H:%M"),
                    "session_open": EXTENDED_SESSION_OPEN,
                    "session_close": EXTENDED_SESSION_CLOSE,
                    "settlement_date": sessions.days[first_index + offset + 1].isoformat(),
                }
            )
        return calendar
