"""The worker's shared resource pool, and the one home of alpaca-py's blocking calls.

One `ResourcePool` per worker process (built in `build_workers`, handed to the activity classes and
the market sources that need it) gives every activity the same:

- HTTP connection pool: one `httpx.AsyncClient` (`http_pool_size` connections), made on first use;
- per-API rate limits, in requests per window (`rate_limits`, per `window_seconds`, 60 by default),
  with aiolimiter. Its leaky bucket lets a burst of `max_rate` through at once, so a plain
  `AsyncLimiter(K, 60)` may pass nearly 2K requests in one minute. The bucket here holds a burst of a
  tenth of the limit and leaks the rest evenly, which keeps ANY window of `window_seconds` at K or
  fewer (proof in `bounded_limiter`);
- TTL cache (cachetools' `TTLCache`, bounded in entries): `cached()` loads each key once however many
  activities ask at the same time (the others wait for that load and count as hits);
- statistics: requests, errors, error rate, throttled requests and latency per API; cache size and
  hit rate; fallbacks taken by the market sources (`stats()`, a pydantic model).

`BlockingCalls` runs alpaca-py's blocking REST calls (market data and trading) off the event loop on a
small thread pool of their own (not asyncio's default pool, which a hung server would otherwise
exhaust for every `to_thread` in the process), each bounded by `asyncio.wait_for`, and, with a pool,
behind the API's rate limit and counted in its statistics. Sync callers (a `MarketDataSource` is
synchronous) get the same limits from any thread: their call is handed to the loop.

Everything here is safe from several threads: counters and the cache change under one lock, and the
limiters and single-flight loads live on the worker's event loop.
"""

from __future__ import annotations

import asyncio
import functools
import math
import threading
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from aiolimiter import AsyncLimiter
from cachetools import TTLCache

from orch.contracts.data import ApiStats, FallbackEvent, ResourcePoolStats

if TYPE_CHECKING:
    import httpx

    from orch.config import Settings

T = TypeVar("T")

# The share of an API's limit that may go out in one burst; the rest is spread evenly over the window.
BURST_FRACTION = 0.1


def bounded_limiter(limit: float, window_seconds: float) -> AsyncLimiter:
    """A leaky bucket that lets at most `limit` acquisitions through in ANY window of `window_seconds`.

    aiolimiter's plain `AsyncLimiter(K, W)` lets a burst of K through at once and then leaks K per W,
    so nearly 2K can pass in one window. This bucket holds a burst of `BURST_FRACTION` of the limit
    and leaks the rest evenly: with capacity C and leak rate r per second, n acquisitions at times
    t1..tn obey n <= C + r * (tn - t1) (each adds one to the level, which never exceeds C and drains
    r per second). Inside any half-open window of length W, tn - t1 < W, so n < C + r * W; choosing
    r = (K - C + 1) / W gives n < K + 1, that is at most K in any window.
    """
    burst = max(1, math.floor(limit * BURST_FRACTION))
    per_second = (limit - burst + 1) / window_seconds
    return AsyncLimiter(burst, burst / per_second)


def take_now(limiter: AsyncLimiter) -> bool:
    """Take one unit of `limiter` if it has capacity now, without waiting (usable from sync code)."""
    if not limiter.has_capacity():
        return False
    # With capacity, `acquire` completes without suspending: drive it to its end right here.
    step = limiter.acquire()
    try:
        step.send(None)
    except StopIteration:
        return True
    step.close()  # unreachable while has_capacity held: nothing ran in between
    return False


class CallTimeout(TimeoutError):
    """A blocking call took longer than its timeout (the thread may finish later; nobody waits)."""


class CallsClosed(RuntimeError):
    """The adapter that owns these calls was closed."""


class RateLimited(RuntimeError):
    """No capacity freed within the pool's longest wait: retry later."""


@dataclass
class _ApiCounters:
    requests: int = 0
    errors: int = 0
    throttled: int = 0
    rate_limited: int = 0
    latency_total: float = 0.0
    latency_count: int = 0


class ResourcePool:
    def __init__(
        self,
        *,
        http_pool_size: int = 20,
        http_timeout_seconds: float = 10.0,
        rate_limits: Mapping[str, float] | None = None,
        window_seconds: float = 60.0,
        max_wait_seconds: float = 120.0,
        cache_ttl_seconds: float = 30.0,
        cache_max_entries: int = 1024,
    ) -> None:
        if http_pool_size < 1 or cache_max_entries < 1:
            raise ValueError("the HTTP pool and the cache need room for at least one")
        if window_seconds <= 0 or max_wait_seconds <= 0 or cache_ttl_seconds <= 0:
            raise ValueError("windows, waits and TTLs must be positive")
        bad = {api: limit for api, limit in (rate_limits or {}).items() if limit < 1}
        if bad:
            raise ValueError(f"rate limits must allow at least one request per window: {bad}")
        self.http_pool_size = http_pool_size
        self.http_timeout_seconds = http_timeout_seconds
        self.rate_limits = dict(rate_limits or {})
        self.window_seconds = window_seconds
        self.max_wait_seconds = max_wait_seconds
        self.cache_ttl_seconds = cache_ttl_seconds
        self._lock = threading.Lock()
        self._cache: TTLCache[Hashable, Any] = TTLCache(
            maxsize=cache_max_entries, ttl=cache_ttl_seconds, timer=time.monotonic
        )
        self._hits = 0
        self._misses = 0
        self._fallbacks = 0
        self._counters: dict[str, _ApiCounters] = {api: _ApiCounters() for api in self.rate_limits}
        self._limiters: dict[str, AsyncLimiter] = {}
        self._loading: dict[Hashable, asyncio.Task[Any]] = {}
        self._http: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.bind_loop()

    @classmethod
    def from_settings(cls, settings: Settings) -> ResourcePool:
        return cls(
            http_pool_size=settings.http_pool_size,
            http_timeout_seconds=settings.http_timeout_seconds,
            rate_limits=settings.rate_limits,
            window_seconds=settings.rate_limit_window_seconds,
            max_wait_seconds=settings.rate_limit_max_wait_seconds,
            cache_ttl_seconds=settings.cache_ttl_seconds,
            cache_max_entries=settings.cache_max_entries,
        )

    def __repr__(self) -> str:
        return (
            f"ResourcePool(http_pool_size={self.http_pool_size}, rate_limits={self.rate_limits}, "
            f"window_seconds={self.window_seconds:g}, cache_ttl_seconds={self.cache_ttl_seconds:g})"
        )

    # ---- The event loop the limiters and loads live on ---------------------------------------------

    def bind_loop(self) -> asyncio.AbstractEventLoop | None:
        """Remember the running loop (the worker's); sync callers in other threads hand work to it."""
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            pass
        return self._loop

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    def on_loop_thread(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def loop_usable_from_here(self) -> bool:
        """True in a thread other than the loop's while the loop runs: hand work over and wait."""
        loop = self._loop
        return loop is not None and loop.is_running() and not loop.is_closed() and not self.on_loop_thread()

    # ---- HTTP -------------------------------------------------------------------------------------

    @property
    def http(self) -> httpx.AsyncClient:
        """The worker's one HTTP connection pool (made on first use)."""
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(
                limits=httpx.Limits(
                    max_connections=self.http_pool_size, max_keepalive_connections=self.http_pool_size
                ),
                timeout=self.http_timeout_seconds,
            )
        return self._http

    async def request(self, api: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One HTTP request through the pool, under `api`'s rate limit and counted in its statistics.

        A transport failure, a 429 or a 5xx counts as an error of the API; the response (or the
        exception) goes back to the caller as is.
        """
        await self.acquire(api)
        started = time.perf_counter()
        try:
            response = await self.http.request(method, url, **kwargs)
        except BaseException:
            self.record(api, ok=False, seconds=time.perf_counter() - started)
            raise
        ok = response.status_code < 500 and response.status_code != 429
        self.record(api, ok=ok, seconds=time.perf_counter() - started)
        return response

    # ---- Rate limits ------------------------------------------------------------------------------

    def _limiter_for(self, api: str) -> AsyncLimiter | None:
        """The leaky bucket of `api` (`bounded_limiter`), or None when it has no limit."""
        limit = self.rate_limits.get(api)
        if limit is None:
            return None
        limiter = self._limiters.get(api)
        if limiter is None:
            limiter = self._limiters[api] = bounded_limiter(limit, self.window_seconds)
        return limiter

    async def acquire(self, api: str) -> None:
        """Wait for capacity under `api`'s limit (at most `max_wait_seconds`, then `RateLimited`)."""
        if self._loop is None:
            self.bind_loop()
        limiter = self._limiter_for(api)
        if limiter is None:
            return
        if not limiter.has_capacity():
            with self._lock:
                self._api(api).throttled += 1
        try:
            await asyncio.wait_for(limiter.acquire(), self.max_wait_seconds)
        except TimeoutError:
            with self._lock:
                self._api(api).rate_limited += 1
            raise RateLimited(
                f"{api}: rate limit of {self.rate_limits[api]:g} per {self.window_seconds:g} s still reached "
                f"after {self.max_wait_seconds:g} s"
            ) from None

    def try_acquire(self, api: str) -> bool:
        """Take capacity now if there is some, without waiting (for blocking code on the loop thread,
        which must not wait on the loop it blocks)."""
        limiter = self._limiter_for(api)
        if limiter is None:
            return True
        if take_now(limiter):
            return True
        with self._lock:
            self._api(api).rate_limited += 1
        return False

    # ---- Statistics -------------------------------------------------------------------------------

    def _api(self, api: str) -> _ApiCounters:
        counters = self._counters.get(api)
        if counters is None:
            counters = self._counters[api] = _ApiCounters()
        return counters

    def record(self, api: str, *, ok: bool, seconds: float | None = None) -> None:
        with self._lock:
            counters = self._api(api)
            counters.requests += 1
            counters.errors += 0 if ok else 1
            if seconds is not None:
                counters.latency_total += seconds
                counters.latency_count += 1

    def note_fallback(self, event: FallbackEvent) -> None:
        with self._lock:
            self._fallbacks += 1

    def stats(self) -> ResourcePoolStats:
        with self._lock:
            apis = {
                api: ApiStats(
                    api=api,
                    requests=c.requests,
                    errors=c.errors,
                    error_rate=c.errors / c.requests if c.requests else 0.0,
                    throttled=c.throttled,
                    rate_limited=c.rate_limited,
                    limit_per_window=self.rate_limits.get(api),
                    window_seconds=self.window_seconds,
                    mean_latency_ms=c.latency_total / c.latency_count * 1000 if c.latency_count else None,
                )
                for api, c in sorted(self._counters.items())
            }
            self._cache.expire()
            requests = sum(a.requests for a in apis.values())
            errors = sum(a.errors for a in apis.values())
            lookups = self._hits + self._misses
            return ResourcePoolStats(
                http_pool_size=self.http_pool_size,
                requests=requests,
                errors=errors,
                error_rate=errors / requests if requests else 0.0,
                cache_size=len(self._cache),
                cache_max_entries=int(self._cache.maxsize),
                cache_ttl_seconds=self.cache_ttl_seconds,
                cache_hits=self._hits,
                cache_misses=self._misses,
                hit_rate=self._hits / lookups if lookups else 0.0,
                data_fallbacks=self._fallbacks,
                apis=apis,
            )

    def health_figures(self) -> dict[str, dict[str, float]]:
        """The statistics as `HealthReport.resource_pools` holds them: one row for the pool, one per API."""
        stats = self.stats()
        figures: dict[str, dict[str, float]] = {
            "pool": {
                "requests": stats.requests,
                "errors": stats.errors,
                "error_rate": round(stats.error_rate, 4),
                "cache_size": stats.cache_size,
                "cache_max_entries": stats.cache_max_entries,
                "hit_rate": round(stats.hit_rate, 4),
                "data_fallbacks": stats.data_fallbacks,
                "http_pool_size": stats.http_pool_size,
            }
        }
        for api, row in stats.apis.items():
            line: dict[str, float] = {
                "requests": row.requests,
                "errors": row.errors,
                "error_rate": round(row.error_rate, 4),
                "throttled": row.throttled,
                "rate_limited": row.rate_limited,
            }
            if row.limit_per_window is not None:
                line["limit_per_window"] = row.limit_per_window
            if row.mean_latency_ms is not None:
                line["mean_latency_ms"] = round(row.mean_latency_ms, 2)
            figures[f"api:{api}"] = line
        return figures

    # ---- The TTL cache ----------------------------------------------------------------------------

    def _lookup(self, key: Hashable) -> tuple[bool, Any]:
        with self._lock:
            try:
                value = self._cache[key]
            except KeyError:
                return False, None
            self._hits += 1
            return True, value

    def _store(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._cache[key] = value

    async def cached(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        """The cached value of `key`, loading it once however many callers ask at the same time.

        Callers that wait for another's load count as hits: they cost the API nothing. A failed load
        is not cached; everyone waiting on it gets its error.
        """
        found, value = self._lookup(key)
        if found:
            return value
        loading = self._loading.get(key)
        if loading is not None:
            with self._lock:
                self._hits += 1
            return await asyncio.shield(loading)
        with self._lock:
            self._misses += 1

        async def load_and_store() -> T:
            result = await load()
            self._store(key, result)
            return result

        task = self._loading[key] = asyncio.ensure_future(load_and_store())

        def loaded(done: asyncio.Task[T]) -> None:
            self._loading.pop(key, None)
            if not done.cancelled():
                done.exception()  # retrieved: the waiters got it, or nobody is left to

        # The load goes on for the others even if this caller is cancelled, and cleans up after itself.
        task.add_done_callback(loaded)
        return await asyncio.shield(task)

    def cached_sync(self, key: Hashable, load: Callable[[], T]) -> T:
        """`cached` for synchronous code in any thread (no single flight across threads)."""
        found, value = self._lookup(key)
        if found:
            return value
        with self._lock:
            self._misses += 1
        value = load()
        self._store(key, value)
        return value

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    # ---- Closing ----------------------------------------------------------------------------------

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None


class BlockingCalls:
    """alpaca-py's blocking calls for one API: off the loop, each bounded by `timeout_seconds`, and with
    a pool, held to the API's rate limit and counted in its statistics.

    `call` is for async code. `call_sync` is for synchronous code: in a thread other than the worker's
    loop it hands the call to the loop (same limits, same timeout); on the loop thread it cannot wait
    for capacity without freezing the loop, so it takes capacity if there is some and otherwise raises
    `RateLimited`; with no loop at all (a script, a test) it runs under the timeout alone.
    """

    def __init__(
        self,
        api: str,
        *,
        timeout_seconds: float,
        resources: ResourcePool | None = None,
        max_threads: int = 4,
    ) -> None:
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        self.api = api
        self.timeout_seconds = timeout_seconds
        self.resources = resources
        self._executor = ThreadPoolExecutor(max_threads, thread_name_prefix=api)

    def close(self) -> None:
        """Stop the threads (waiting for none: a hung call ends by its own socket timeout)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _record(self, ok: bool, started: float) -> None:
        if self.resources is not None:
            self.resources.record(self.api, ok=ok, seconds=time.perf_counter() - started)

    async def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self.resources is not None:
            await self.resources.acquire(self.api)
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor, functools.partial(function, *args, **kwargs))
        except RuntimeError:
            raise CallsClosed(f"{self.api} is closed") from None
        started = time.perf_counter()
        try:
            result = await asyncio.wait_for(future, self.timeout_seconds)
        except TimeoutError:
            self._record(False, started)
            raise CallTimeout(f"{self.api} did not answer within {self.timeout_seconds:g}s") from None
        except BaseException:
            self._record(False, started)
            raise
        self._record(True, started)
        return result

    def call_sync(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        pool = self.resources
        if pool is not None and pool.loop_usable_from_here():
            assert pool.loop is not None
            handed = asyncio.run_coroutine_threadsafe(self.call(function, *args, **kwargs), pool.loop)
            # The call's own timeout bounds it; this bound only covers a loop that stops meanwhile.
            try:
                return handed.result(timeout=pool.max_wait_seconds + self.timeout_seconds + 5)
            except FutureTimeout:
                handed.cancel()
                raise CallTimeout(f"{self.api} did not answer within {self.timeout_seconds:g}s") from None
        if pool is not None and pool.on_loop_thread() and not pool.try_acquire(self.api):
            raise RateLimited(
                f"{self.api}: rate limit of {pool.rate_limits[self.api]:g} per {pool.window_seconds:g} s "
                "reached (a blocking call on the event loop cannot wait for it)"
            )
        try:
            future = self._executor.submit(function, *args, **kwargs)
        except RuntimeError:
            raise CallsClosed(f"{self.api} is closed") from None
        started = time.perf_counter()
        try:
            result = future.result(timeout=self.timeout_seconds)
        except FutureTimeout:
            future.cancel()
            self._record(False, started)
            raise CallTimeout(f"{self.api} did not answer within {self.timeout_seconds:g}s") from None
        except BaseException:
            self._record(False, started)
            raise
        self._record(True, started)
        return result


def bound_session(client: Any, timeout_seconds: float) -> None:
    """Give an alpaca-py client's `requests` session a connect and read timeout (it has none): a socket
    that stops answering fails, and the thread waiting on it ends."""
    session = client._session
    session.request = functools.partial(session.request, timeout=timeout_seconds)
