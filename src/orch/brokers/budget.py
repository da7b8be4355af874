"""A broker's request budget: every call `orch hft` makes to a remote broker passes one limiter.

Alpaca allows 200 trading requests a minute per account and answers 429 beyond; `orch hft` keeps its
own budget below that (`ORCH_HFT_BROKER_REQUESTS_PER_MINUTE`, 190 by default) with aiolimiter's
leaky bucket, sized so that no window of 60 s holds more (`orch.resources.bounded_limiter`).

Who goes first when the budget is short, and why:

- `CRITICAL`: cancels, kills, closing positions and risk-reducing orders. They lower risk; waiting
  for a poll would keep risk on the book.
- `ORDER`: other orders, and the lookups an order needs. A trading intent that waits a few hundred
  milliseconds is still worth sending.
- `ROUTINE`: polling (fills, positions, open orders, the account). It is never more than
  `ROUTINE_SHARE` of the budget, however often it is configured to run (at
  `ORCH_HFT_ALPACA_POLL_SECONDS=0.1` it would want 600 a minute), so orders always find room.
- `DROPPABLE`: tier 1's quotes and arbitrage legs. A requote is worth something only now: it never
  waits (`try_take`); it goes only while nobody waits for the shared bucket (polling held back by
  its own cap does not) and `DROPPABLE_RESERVE` of the burst stays free for the cancels that
  follow a requote, and is dropped otherwise.

A 429 holds every request until the moment its `Retry-After` / `X-RateLimit-Reset` names
(`hold_until`): the venue's window is spent, so anything sent earlier would be refused too.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import itertools
import math
import time
from collections import deque

from aiolimiter import AsyncLimiter

from orch.contracts.trading import RequestBudgetUsage
from orch.resources import bounded_limiter, take_now

WINDOW_SECONDS = 60.0
ALPACA_DEFAULT_REQUESTS_PER_MINUTE = 190  # Alpaca refuses beyond 200: ten to spare for clock skew
# Polling may use at most this share of the budget: the rest stays for orders and cancels.
ROUTINE_SHARE = 0.5
# A requote leaves this share of the burst for the cancels of the quotes it replaces.
DROPPABLE_RESERVE = 0.25


class RequestPriority(enum.IntEnum):
    """Lower goes first."""

    CRITICAL = 0
    ORDER = 1
    ROUTINE = 2
    DROPPABLE = 3


class RequestBudget:
    """Requests per minute to one broker account (None: unlimited), served by priority."""

    def __init__(self, per_minute: float | None, window_seconds: float = WINDOW_SECONDS) -> None:
        if per_minute is not None and per_minute < 1:
            raise ValueError("a request budget must allow at least one request a minute")
        self.per_minute = per_minute
        self.window_seconds = window_seconds
        self._limiter: AsyncLimiter | None = None
        self._routine: AsyncLimiter | None = None
        if per_minute is not None:
            self._limiter = bounded_limiter(per_minute, window_seconds)
            self._routine = bounded_limiter(max(1.0, per_minute * ROUTINE_SHARE), window_seconds)
        self._sent: deque[float] = deque()  # monotonic times of the requests of the last window
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._wake: asyncio.Event | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._held_until = 0.0  # monotonic
        self.dropped = 0
        self.held_by_broker = 0

    # ---- Taking ----------------------------------------------------------------------------------

    async def take(self, priority: RequestPriority) -> None:
        """Wait for this request's turn: by priority, then first come first served."""
        if self._limiter is None:
            self._count()
            return
        if priority is RequestPriority.DROPPABLE:
            raise ValueError("droppable requests never wait: use try_take")
        if not self._waiting and self._grantable(priority):
            self._grant(priority)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._order), future))
        self._ensure_dispatcher()
        await future  # cancelled: the dispatcher skips it, nothing was taken

    def try_take(self, priority: RequestPriority = RequestPriority.DROPPABLE) -> bool:
        """Take a request now if this priority may have one now; never waits."""
        if self._limiter is None:
            self._count()
            return True
        waiting_ahead = any(
            waiting <= priority and self._waits_for_the_shared_bucket(RequestPriority(waiting))
            for waiting, _, future in self._waiting
            if not future.done()
        )
        if not waiting_ahead and self._grantable(priority):
            self._grant(priority)
            return True
        if priority is RequestPriority.DROPPABLE:
            self.dropped += 1
        return False

    def hold_until(self, epoch_seconds: float) -> None:
        """The broker refused for rate (429) until `epoch_seconds`: nobody sends before then."""
        until = time.monotonic() + max(0.0, epoch_seconds - time.time())
        if until > self._held_until:
            self._held_until = until
            self.held_by_broker += 1

    # ---- What `orch hft status` shows ---------------------------------------------------------------

    def used_in_window(self) -> int:
        self._forget_old(time.monotonic())
        return len(self._sent)

    def held_for_seconds(self) -> float:
        return max(0.0, self._held_until - time.monotonic())

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, future in self._waiting if not future.done())

    def usage(self) -> RequestBudgetUsage:
        return RequestBudgetUsage(
            limit_per_minute=self.per_minute,
            used_last_minute=self.used_in_window(),
            waiting=self.waiting,
            requotes_dropped=self.dropped,
            held_by_broker=self.held_by_broker,
            held_for_seconds=round(self.held_for_seconds(), 3),
        )

    # ---- Internals -------------------------------------------------------------------------------

    def _count(self) -> None:
        now = time.monotonic()
        self._sent.append(now)
        self._forget_old(now)

    def _forget_old(self, now: float) -> None:
        while self._sent and self._sent[0] <= now - self.window_seconds:
            self._sent.popleft()

    def _waits_for_the_shared_bucket(self, priority: RequestPriority) -> bool:
        """Whether a waiting request of `priority` waits for the bucket every priority shares.

        Polling that waits only for its own cap (`ROUTINE_SHARE`) takes nothing a requote would:
        counting it as ahead dropped every requote whenever polling wanted more than its share (at
        the default 1 s fill poll plus reconciliation, always: 330 dropped, 3 sent in a minute).
        """
        assert self._routine is not None
        return priority is not RequestPriority.ROUTINE or self._routine.has_capacity()

    def _grantable(self, priority: RequestPriority) -> bool:
        assert self._limiter is not None and self._routine is not None
        if time.monotonic() < self._held_until:
            return False
        if priority is RequestPriority.ROUTINE and not self._routine.has_capacity():
            return False
        reserve = math.floor(self._limiter.max_rate * DROPPABLE_RESERVE)
        return self._limiter.has_capacity(1 + (reserve if priority is RequestPriority.DROPPABLE else 0))

    def _grant(self, priority: RequestPriority) -> None:
        assert self._limiter is not None and self._routine is not None
        take_now(self._limiter)
        if priority is RequestPriority.ROUTINE:
            take_now(self._routine)
        self._count()

    def _ensure_dispatcher(self) -> None:
        if self._wake is None:
            self._wake = asyncio.Event()
        self._wake.set()  # a newcomer may outrank the one the dispatcher waits for
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())

    async def _dispatch(self) -> None:
        """Hand out requests to the waiting, best first, as the bucket frees capacity."""
        assert self._limiter is not None and self._wake is not None
        # About one request's worth of leak: how often to look again while the bucket is full.
        step = self._limiter.time_period / self._limiter.max_rate
        while self._waiting:
            priority, _, future = self._waiting[0]
            if future.done():  # cancelled while waiting
                heapq.heappop(self._waiting)
                continue
            if self._grantable(RequestPriority(priority)):
                heapq.heappop(self._waiting)
                self._grant(RequestPriority(priority))
                future.set_result(None)
                continue
            pause = max(step, self.held_for_seconds())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)
