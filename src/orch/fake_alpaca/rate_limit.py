"""Alpaca's trading rate limit: so many requests a minute per account, reported in every answer.

Alpaca counts requests per account in one-minute windows and reports the window in three headers
on every trading response: `X-RateLimit-Limit` (requests a minute), `X-RateLimit-Remaining` (left in
this window) and `X-RateLimit-Reset` (the Unix second the window ends and the count starts again);
beyond the limit it answers 429 until then. A fixed window is what Alpaca describes (the reset is
"the next rate reset time (time window end)"), so this is a counter per window rather than
aiolimiter's leaky bucket, which waits for capacity instead of refusing and exposes no count.

Windows run on real time, whatever the fake's clock says: a test that freezes the fake on a
Monday morning still gets its quota back a minute later.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

WINDOW_SECONDS = 60.0
ALPACA_REQUESTS_PER_MINUTE = 200


@dataclass(frozen=True)
class Allowance:
    allowed: bool
    limit: int
    remaining: int
    reset_epoch: int

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"x-ratelimit-limit", str(self.limit).encode()),
            (b"x-ratelimit-remaining", str(self.remaining).encode()),
            (b"x-ratelimit-reset", str(self.reset_epoch).encode()),
        ]


@dataclass
class _Window:
    ends: float
    used: int = 0


@dataclass
class RequestLog:
    """When each of an account's trading requests arrived (allowed or not): what a test measures."""

    times: list[float] = field(default_factory=list)

    def busiest_window(self, seconds: float = WINDOW_SECONDS) -> int:
        """The most requests in any `seconds`, wherever the window starts: Alpaca's budget is per
        minute, so a client within it never has more in any minute, aligned or not."""
        busiest = 0
        for index, started in enumerate(self.times):
            busiest = max(busiest, bisect.bisect_left(self.times, started + seconds, lo=index) - index)
        return busiest

    def summary(self) -> dict[str, float | int | None]:
        return {
            "total": len(self.times),
            "busiest_minute": self.busiest_window(),
            "first_at": self.times[0] if self.times else None,
            "last_at": self.times[-1] if self.times else None,
        }


class RateLimit:
    """Requests a minute per account; a window starts with an account's first request after the last."""

    def __init__(self, per_minute: int = ALPACA_REQUESTS_PER_MINUTE, now: Callable[[], float] = time.time):
        if per_minute < 1:
            raise ValueError("the rate limit must allow at least one request a minute")
        self.per_minute = per_minute
        self._now = now
        self._windows: dict[str, _Window] = {}
        self._logs: dict[str, RequestLog] = {}
        self._lock = threading.Lock()

    def take(self, account: str, enforce: bool = True) -> Allowance:
        """Count one request of `account`; not allowed once the window's quota is spent (when enforced)."""
        now = self._now()
        with self._lock:
            self._logs.setdefault(account, RequestLog()).times.append(now)
            window = self._windows.get(account)
            if window is None or now >= window.ends:
                window = self._windows[account] = _Window(ends=now + WINDOW_SECONDS)
            allowed = window.used < self.per_minute or not enforce
            if allowed:
                window.used += 1
            return Allowance(
                allowed=allowed,
                limit=self.per_minute,
                remaining=max(self.per_minute - window.used, 0),
                reset_epoch=math.ceil(window.ends),
            )

    def requests(self) -> dict[str, dict[str, float | int | None]]:
        """Per account: requests so far, the most in any minute, the first's and last's Unix time."""
        with self._lock:
            return {account: log.summary() for account, log in self._logs.items()}

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()
            self._logs.clear()
