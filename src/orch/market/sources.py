"""The registry of market data sources, automatic fallback, and the worker's configured market.

- `open_source(name, settings, resources)` opens one of `AVAILABLE_SOURCES`: `simulated`
  (SimulatedMarket), `csv` (CsvMarketData over `settings.csv_folder`) and `alpaca` (AlpacaMarketData,
  keys from ALPACA_API_KEY / ALPACA_SECRET_KEY in the worker's environment, never from an input).
- `FallbackMarket(primary, fallbacks, staleness)` answers from the primary, and from the next source
  in order when the primary fails or its newest bar is stale; every fallback taken is recorded
  (`events`, and the resource pool's statistics).
- `ConfiguredMarket` is the worker's market: the data sources in force (SystemState's, read by the
  function the worker hands it, so this layer never talks to Temporal), looked up at activity time
  (at most every `data_sources_refresh_seconds`), so `orch integrate-real-data` changes what every
  worker reads without a restart.

Reading bars blocks (files, HTTP): call `history` from a thread (`asyncio.to_thread`), as the trading
cycle's activities do. From a thread, a configured market looks SystemState up and Alpaca calls wait
for their rate limit on the worker's loop; called on the loop itself, it uses what it last knew.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from orch.contracts.data import AVAILABLE_SOURCES, FallbackEvent
from orch.contracts.system import DataSources
from orch.market.bar_checks import bar_seconds, staleness
from orch.market.base import MarketDataError, MarketDataSource, PriceHistory, UnknownSymbolError

if TYPE_CHECKING:
    from orch.config import Settings
    from orch.resources import ResourcePool

__all__ = [
    "AVAILABLE_SOURCES",
    "ConfiguredMarket",
    "FallbackMarket",
    "SourceConfigurationError",
    "UnknownSourceError",
    "open_source",
    "stale_reason",
]

log = logging.getLogger(__name__)

ALPACA_KEY_VARIABLES = ("ALPACA_API_KEY", "ALPACA_SECRET_KEY")
_TIMEFRAME_INTERVAL = {"1D": timedelta(days=1), "1Min": timedelta(minutes=1)}
EVENTS_KEPT = 200
STATE_QUERY_TIMEOUT_SECONDS = 5.0


class UnknownSourceError(ValueError):
    """A source name with no adapter: no retry can fix it."""


class SourceConfigurationError(MarketDataError):
    """A source that cannot open on this worker (no folder, no keys): a person must fix it."""


# ---- The registry --------------------------------------------------------------------------------


def open_source(name: str, settings: Settings, resources: ResourcePool | None = None) -> MarketDataSource:
    """A new adapter for source `name` as this worker is configured."""
    if name == "simulated":
        from orch.market.simulated import SimulatedMarket

        return SimulatedMarket(seed=settings.market_seed, timeframe=settings.data_timeframe)
    if name == "csv":
        if settings.csv_folder is None:
            raise SourceConfigurationError(
                "the csv source needs a folder of OHLCV files: set ORCH_CSV_FOLDER on the workers"
            )
        from orch.market.csv import CsvMarketData

        return CsvMarketData(settings.csv_folder)
    if name == "alpaca":
        missing = [v for v in ALPACA_KEY_VARIABLES if not os.environ.get(v)]
        if missing:
            raise SourceConfigurationError(
                f"the alpaca source needs {' and '.join(missing)} in the workers' environment"
            )
        from orch.market.alpaca import AlpacaMarketData

        return AlpacaMarketData(
            symbols=settings.alpaca_symbols,
            timeframe=settings.data_timeframe,
            url_override=settings.alpaca_data_url,
            timeout_seconds=settings.alpaca_timeout_seconds,
            resources=resources,
        )
    raise UnknownSourceError(
        f"no adapter for data source {name!r}; available sources: {', '.join(AVAILABLE_SOURCES)}"
    )


def bar_interval(source: MarketDataSource) -> timedelta | None:
    """The source's bar length when it declares a timeframe (simulated, alpaca); None: judge from bars."""
    return _TIMEFRAME_INTERVAL.get(getattr(source, "timeframe", None) or "")


def stale_reason(
    history: PriceHistory,
    now: datetime,
    *,
    stale_after: timedelta | None = None,
    interval: timedelta | None = None,
) -> str | None:
    """Why `history` is stale at `now`, or None: the market-conditions agent's rule (its last bar ended
    longer ago than `stale_after`, by default three bars plus a weekend for equities)."""
    if not len(history):
        return "no bars"
    steps = np.diff(history.timestamps).astype("timedelta64[s]").astype(np.int64)
    seconds = bar_seconds(steps, interval)
    return None if seconds is None else staleness(history, now, timedelta(seconds=seconds), stale_after)


# ---- Falling back --------------------------------------------------------------------------------


class FallbackMarket(MarketDataSource):
    """`primary`, then each of `fallbacks` in order, for every request the one before could not serve.

    A source "could not serve" when it raised `MarketDataError` (down, refused, no such symbol) or when
    its newest bar is stale at the request's end (`staleness`; None: the agents' calendar-aware rule).
    After a source fails (not merely stale), it is skipped for `retry_after` and then tried again, so a
    hung primary costs one timeout, not one per symbol. Every fallback taken is an event in `events`.
    """

    def __init__(
        self,
        primary: MarketDataSource,
        fallbacks: Sequence[MarketDataSource] = (),
        staleness: timedelta | None = None,
        *,
        retry_after: timedelta = timedelta(seconds=30),
        on_fallback: Callable[[FallbackEvent], None] | None = None,
    ) -> None:
        names = [primary.name, *(f.name for f in fallbacks)]
        if len(set(names)) != len(names):
            raise ValueError(f"a source may appear once: {', '.join(names)}")
        self.primary = primary
        self.fallbacks = list(fallbacks)
        self.staleness = staleness
        self.retry_after = retry_after
        self._on_fallback = on_fallback
        self._failed_at: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()
        self.events: deque[FallbackEvent] = deque(maxlen=EVENTS_KEPT)
        self.served_by: dict[str, str] = {}  # symbol -> the source that served it last

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.primary.name

    @property
    def sources(self) -> list[MarketDataSource]:
        return [self.primary, *self.fallbacks]

    def __repr__(self) -> str:
        chain = " -> ".join(s.name for s in self.sources)
        return f"FallbackMarket({chain})"

    def events_since(self, moment: datetime) -> list[FallbackEvent]:
        """The fallbacks taken at or after `moment` (one step's, say: the market outlives the step)."""
        return [event for event in list(self.events) if event.at >= moment]

    def universe(self) -> list[str]:
        """The primary's symbols; a fallback's when the primary cannot say."""
        problems = []
        for source in self.sources:
            try:
                return source.universe()
            except MarketDataError as err:
                problems.append(f"{source.name}: {err}")
        raise MarketDataError("no data source lists its symbols: " + "; ".join(problems))

    def history(self, symbol: str, bars: int, end: datetime | None = None) -> PriceHistory:
        now = end or datetime.now(UTC)
        reasons: list[tuple[str, str]] = []
        unknown_everywhere = True
        for source in self.sources:
            skipped = self._recently_failed(source.name)
            if skipped is not None:
                reasons.append((source.name, skipped))
                unknown_everywhere = False
                continue
            try:
                history = source.history(symbol, bars, end)
            except UnknownSymbolError as err:
                reasons.append((source.name, str(err)))
                continue
            except MarketDataError as err:
                self._mark_failed(source.name, str(err))
                reasons.append((source.name, str(err)))
                unknown_everywhere = False
                continue
            unknown_everywhere = False
            stale = stale_reason(history, now, stale_after=self.staleness, interval=bar_interval(source))
            if stale is not None:
                reasons.append((source.name, f"stale: {stale}"))
                continue
            self._forget_failure(source.name)
            self._record(symbol, reasons, used=source.name)
            self.served_by[symbol] = source.name
            return history
        self._record(symbol, reasons, used=None)
        summary = "; ".join(f"{name}: {reason}" for name, reason in reasons)
        if unknown_everywhere:
            raise UnknownSymbolError(f"no data source serves {symbol!r}: {summary}")
        raise MarketDataError(f"no data source could serve {symbol!r}: {summary}")

    # ---- Internals -------------------------------------------------------------------------------

    def _recently_failed(self, name: str) -> str | None:
        with self._lock:
            failed = self._failed_at.get(name)
        if failed is None or len(self.sources) == 1:
            return None
        at, reason = failed
        if time.monotonic() - at >= self.retry_after.total_seconds():
            return None
        return f"skipped: failed {time.monotonic() - at:.0f} s ago ({reason})"

    def _mark_failed(self, name: str, reason: str) -> None:
        with self._lock:
            self._failed_at[name] = (time.monotonic(), reason)

    def _forget_failure(self, name: str) -> None:
        with self._lock:
            self._failed_at.pop(name, None)

    def _record(self, symbol: str, reasons: list[tuple[str, str]], used: str | None) -> None:
        at = datetime.now(UTC)
        for skipped, reason in reasons:
            event = FallbackEvent(at=at, symbol=symbol, skipped=skipped, used=used, reason=reason[:300])
            self.events.append(event)
            if self._on_fallback is not None and used is not None:
                self._on_fallback(event)  # a fallback taken (when none could serve, the caller gets an error)
            # A source in its retry pause is skipped for every symbol: one warning when it failed is enough.
            level = logging.DEBUG if reason.startswith("skipped:") else logging.WARNING
            log.log(level, "market data for %s: %s skipped (%s); served by %s", symbol, skipped, reason, used)


# ---- Caching remote sources ----------------------------------------------------------------------

# Sources whose bars cost a request to a rate-limited API: the pool's TTL cache keeps their answers.
CACHED_SOURCES = frozenset({"alpaca"})


class CachedSource(MarketDataSource):
    """A remote source behind the worker's TTL cache: the steps of one trading cycle read the same bars
    (same symbols, same `end`) several times, and only the first read reaches the API.

    Only requests with an explicit `end` are cached: "the latest bars" changes with every bar.
    """

    def __init__(self, source: MarketDataSource, resources: ResourcePool) -> None:
        self.inner = source
        self._resources = resources
        self.timeframe = getattr(source, "timeframe", None)

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.inner.name

    def __repr__(self) -> str:
        return f"CachedSource({self.inner!r})"

    def universe(self) -> list[str]:
        return self.inner.universe()

    def history(self, symbol: str, bars: int, end: datetime | None = None) -> PriceHistory:
        if end is None:
            return self.inner.history(symbol, bars, end)
        key = ("history", self.inner.name, self.timeframe, symbol, bars, end.astimezone(UTC).isoformat())
        return self._resources.cached_sync(key, lambda: self.inner.history(symbol, bars, end))

    def close(self) -> None:
        self.inner.close()


class UnavailableSource(MarketDataSource):
    """A configured source this worker cannot open (no keys, no folder, no adapter): every read fails
    with why, so a `FallbackMarket` falls back past it, recording it, instead of the worker quietly
    reading something else than the configuration says."""

    def __init__(self, name: str, reason: str) -> None:
        self._name, self.reason = name, reason

    @property
    def name(self) -> str:  # type: ignore[override]
        return self._name

    def universe(self) -> list[str]:
        raise SourceConfigurationError(self.reason)

    def history(self, symbol: str, bars: int, end: datetime | None = None) -> PriceHistory:
        raise SourceConfigurationError(self.reason)


# ---- The worker's market -------------------------------------------------------------------------


class ConfiguredMarket(MarketDataSource):
    """The sources SystemState says are in force, as one `FallbackMarket`; one adapter per source name,
    opened on first use and kept (their caches and connections survive a switch back and forth)."""

    def __init__(
        self,
        read_sources: Callable[[], Awaitable[DataSources]] | None,
        settings: Settings,
        resources: ResourcePool,
    ) -> None:
        # None: no configuration to follow (tests of one worker's adapters); the default sources stay.
        self._read_sources = read_sources
        self._settings = settings
        self._resources = resources
        self._opened: dict[str, MarketDataSource] = {}
        self._open_lock = threading.Lock()
        self._sources = DataSources()  # the default until SystemState is first read: simulated
        self._market = self.market_for(self._sources)
        self._checked_at = float("-inf")
        self._refreshing: asyncio.Task[FallbackMarket] | None = None
        self.events: deque[FallbackEvent] = deque(maxlen=EVENTS_KEPT)

    @property
    def name(self) -> str:  # type: ignore[override]
        return self._market.name

    @property
    def sources(self) -> DataSources:
        return self._sources

    def __repr__(self) -> str:
        return f"ConfiguredMarket({self._market!r})"

    # ---- Which sources ---------------------------------------------------------------------------

    def source(self, name: str) -> MarketDataSource:
        """This worker's adapter for `name` (opened once)."""
        with self._open_lock:
            opened = self._opened.get(name)
            if opened is None:
                opened = open_source(name, self._settings, self._resources)
                if name in CACHED_SOURCES:
                    opened = CachedSource(opened, self._resources)
                self._opened[name] = opened
            return opened

    def _source_or_unavailable(self, name: str) -> MarketDataSource:
        try:
            return self.source(name)
        except (MarketDataError, UnknownSourceError) as err:
            log.error("data source %s cannot open on this worker: %s", name, err)
            return UnavailableSource(name, f"{name} cannot open on this worker: {err}")

    def market_for(
        self, sources: DataSources, *, record: bool = True, stale_after_seconds: float | None = None
    ) -> FallbackMarket:
        """A `FallbackMarket` over `sources` with this worker's adapters and staleness rule (or the one
        a command asked for: `orch integrate-real-data --max-data-age`)."""
        staleness = (
            stale_after_seconds if stale_after_seconds is not None else self._settings.data_staleness_seconds
        )
        return FallbackMarket(
            self._source_or_unavailable(sources.primary),
            [self._source_or_unavailable(name) for name in sources.fallbacks],
            timedelta(seconds=staleness) if staleness is not None else None,
            retry_after=timedelta(seconds=self._settings.data_source_retry_seconds),
            on_fallback=self._note_fallback if record else None,
        )

    def _note_fallback(self, event: FallbackEvent) -> None:
        self.events.append(event)
        self._resources.note_fallback(event)

    async def refresh(self, *, force: bool = False) -> FallbackMarket:
        """The market of the sources in force now (SystemState), looked up again once the last lookup
        is older than `data_sources_refresh_seconds`. If SystemState does not answer, the last known."""
        self._resources.bind_loop()
        if not force and self._fresh():
            return self._market
        # Looked up (or tried) now: a SystemState that does not answer is asked again next interval,
        # not on every read.
        self._checked_at = time.monotonic()
        if self._read_sources is None:
            return self._market
        try:
            wanted = await asyncio.wait_for(self._read_sources(), STATE_QUERY_TIMEOUT_SECONDS)
        except Exception as err:
            log.warning("data sources not refreshed (SystemState did not answer: %s); keeping %s", err, self)
            return self._market
        if wanted != self._sources:
            market = self.market_for(wanted)
            log.info("data sources now %s (were %s)", market, self._market)
            self._sources, self._market = wanted, market
        return self._market

    def _fresh(self) -> bool:
        return time.monotonic() - self._checked_at < self._settings.data_sources_refresh_seconds

    def current(self) -> FallbackMarket:
        """The market in force, looked up now when called from a thread (the loop does the lookup);
        on the loop thread itself, the last one known, with a lookup scheduled for the next call."""
        loop = self._resources.loop
        if self._fresh() or loop is None or not loop.is_running():
            return self._market
        if self._resources.loop_usable_from_here():
            try:
                return asyncio.run_coroutine_threadsafe(self.refresh(), loop).result(
                    STATE_QUERY_TIMEOUT_SECONDS + 1
                )
            except (FutureTimeout, RuntimeError):
                return self._market
        if self._resources.on_loop_thread() and (self._refreshing is None or self._refreshing.done()):
            self._refreshing = loop.create_task(self.refresh())
        return self._market

    # ---- MarketDataSource ------------------------------------------------------------------------

    def universe(self) -> list[str]:
        return self.current().universe()

    def history(self, symbol: str, bars: int, end: datetime | None = None) -> PriceHistory:
        return self.current().history(symbol, bars, end)
