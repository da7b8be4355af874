"""Quote and trade ticks: the simulated two-venue generator and the Alpaca stream source.

The simulated venues keep market hours, as real ones do: crypto pairs tick around the clock,
equities only inside an NYSE session (`orch.market.calendars.is_tradable` at the source's clock),
so nothing quotes SPY on a Saturday or on Christmas.

A `Tick` is a slotted object rather than a pydantic model because hundreds of thousands of them
pass through the hot path every second; it never leaves the process.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from orch.market.calendars import is_tradable

log = logging.getLogger(__name__)

QUOTE = 0
TRADE = 1


@dataclass(slots=True)
class Tick:
    kind: int  # QUOTE or TRADE
    venue: int  # 0 is the venue our broker trades on; 1 is the other venue (arbitrage)
    symbol: str
    bid: float
    ask: float
    price: float  # the trade's price, or the quote's mid
    size: float
    timestamp: float  # venue time, epoch seconds
    received_ns: int = 0  # perf_counter_ns at intake: where tick-to-order latency starts


TickSink = Callable[[Tick], None]

# While every symbol's market is closed, look again this often (a session opens on a whole minute).
CLOSED_POLL_SECONDS = 0.1

_DEFAULT_PRICES = {"AAPL": 190.0, "MSFT": 410.0, "SPY": 520.0, "BTC/USD": 65_000.0, "ETH/USD": 3_400.0}


def _start_price(symbol: str, seed: int, now: float) -> float:
    """Seed prices from the simulated market's last close at `now`, so ticks and bars tell one story."""
    try:
        from orch.market.simulated import SimulatedMarket

        history = SimulatedMarket(seed=seed).history(symbol, 1, datetime.fromtimestamp(now, UTC))
        if len(history):
            return float(history.close[-1])
    except Exception:  # the simulated market may not know the symbol
        pass
    if symbol in _DEFAULT_PRICES:
        return _DEFAULT_PRICES[symbol]
    return 50.0 + (sum(map(ord, symbol)) % 400)


# ---- The simulated venues ------------------------------------------------------------------------


class SimulatedTickSource:
    """Seeded random-walk quotes and trades on two venues; venue 1 is dislocated from venue 0.

    Only symbols whose market is open at `clock()` tick; the open set is looked up once per batch
    and kept until the next whole minute (sessions open and close on whole minutes), so the
    calendar costs nothing per tick. The same seed and the same clock give the same ticks.
    """

    name = "simulated"

    def __init__(
        self,
        symbols: list[str],
        seed: int = 7,
        rate: float = 5_000.0,
        dislocation_bps: float = 4.0,
        spread_bps: float = 2.0,
        volatility_bps: float = 0.5,  # per tick
        trade_fraction: float = 0.2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.symbols = list(symbols)
        self.rate = rate
        self._rng = np.random.default_rng(seed)
        self._log_mid = np.log([_start_price(s, seed, clock()) for s in self.symbols])
        self._dislocation = dislocation_bps / 10_000
        self._half_spread = spread_bps / 20_000
        self._volatility = volatility_bps / 10_000
        self._trade_fraction = trade_fraction
        self._clock = clock
        self.emitted = 0
        # The indices of the symbols open now, and the epoch second until which that holds.
        self._open: tuple[np.ndarray, float] = (np.arange(0), -math.inf)

    def open_symbols(self, now: float) -> np.ndarray:
        """Indices into `symbols` of those whose market is open at `now`."""
        indices, until = self._open
        if now < until and now >= until - 60:
            return indices
        indices = np.array([i for i, s in enumerate(self.symbols) if is_tradable(s, now)], dtype=np.int64)
        self._open = (indices, now - now % 60 + 60)
        return indices

    def generate(self, count: int) -> list[Tick]:
        """Up to `count` ticks of the symbols open now (none while every market is closed)."""
        now = self._clock()
        open_indices = self.open_symbols(now)
        if not len(open_indices):
            return []
        rng = self._rng
        symbol_index = open_indices[rng.integers(0, len(open_indices), count)]
        venue = (rng.random(count) < 0.5).astype(np.int64)
        kind = (rng.random(count) < self._trade_fraction).astype(np.int64)
        log_mid = np.empty(count)
        for i in open_indices.tolist():
            mask = symbol_index == i
            steps = rng.normal(0.0, self._volatility, int(mask.sum()))
            path = self._log_mid[i] + np.cumsum(steps)
            log_mid[mask] = path
            if len(path):
                self._log_mid[i] = path[-1]
        log_mid += venue * rng.normal(0.0, self._dislocation, count)
        mid = np.exp(log_mid)
        bid = mid * (1 - self._half_spread)
        ask = mid * (1 + self._half_spread)
        trade_price = np.where(rng.random(count) < 0.5, bid, ask)
        price = np.where(kind == TRADE, trade_price, mid)
        size = np.ceil(rng.exponential(50.0, count))
        symbols = self.symbols
        self.emitted += count
        return [
            Tick(k, v, symbols[s], b, a, p, z, now)
            for k, v, s, b, a, p, z in zip(
                kind.tolist(),
                venue.tolist(),
                symbol_index.tolist(),
                bid.tolist(),
                ask.tolist(),
                price.tolist(),
                size.tolist(),
                strict=True,
            )
        ]

    async def run(
        self,
        sink: TickSink,
        stop: asyncio.Event,
        on_batch: Callable[[], None] | None = None,
        slice_seconds: float = 0.001,
    ) -> None:
        """Emit ticks at `rate`, yielding to the event loop every slice so the control API stays quick."""
        started = time.perf_counter()
        sent = 0
        # Generated in small batches and handed over in slices of at most `slice_seconds` of work,
        # so the control API (a kill) never waits long behind the ticks.
        max_batch = max(1, math.ceil(self.rate * slice_seconds))
        perf = time.perf_counter
        backlog: list[Tick] = []
        while not stop.is_set():
            if not backlog:
                due = int((perf() - started) * self.rate) - sent
                if due <= 0:
                    await asyncio.sleep(slice_seconds)
                    continue
                backlog = self.generate(min(due, max_batch))
                if not backlog:  # every market closed: those ticks are not owed later
                    sent += due
                    await asyncio.sleep(CLOSED_POLL_SECONDS)
                    continue
            slice_end = perf() + slice_seconds
            handed = 0
            for tick in backlog:
                tick.received_ns = time.perf_counter_ns()
                sink(tick)
                handed += 1
                if perf() > slice_end:
                    break
            sent += handed
            backlog = backlog[handed:]
            if on_batch is not None:
                on_batch()
            await asyncio.sleep(0)


# ---- Alpaca's streams ----------------------------------------------------------------------------


class AlpacaTickSource:
    """Quotes and trades from Alpaca's market-data websockets through alpaca-py (one venue: 0)."""

    name = "alpaca"

    def __init__(
        self,
        symbols: list[str],
        api_key: str,
        secret_key: str,
        stream_url: str | None = None,
        crypto_stream_url: str | None = None,
    ) -> None:
        from alpaca.data.live import CryptoDataStream, StockDataStream

        self.symbols = list(symbols)
        crypto = [s for s in self.symbols if "/" in s]
        stocks = [s for s in self.symbols if "/" not in s]
        self._streams = []
        self._sink: TickSink | None = None
        if stocks:
            stream = StockDataStream(api_key, secret_key, raw_data=True, url_override=stream_url)
            stream.subscribe_quotes(self._on_quote, *stocks)
            stream.subscribe_trades(self._on_trade, *stocks)
            self._streams.append(stream)
        if crypto:
            stream = CryptoDataStream(
                api_key, secret_key, raw_data=True, url_override=crypto_stream_url or stream_url
            )
            stream.subscribe_quotes(self._on_quote, *crypto)
            stream.subscribe_trades(self._on_trade, *crypto)
            self._streams.append(stream)

    @staticmethod
    def _epoch(raw: object) -> float:
        seconds = getattr(raw, "seconds", None)
        if seconds is not None:  # msgpack Timestamp
            return seconds + raw.nanoseconds / 1e9  # type: ignore[attr-defined]
        return time.time()

    async def _on_quote(self, raw: dict) -> None:
        bid, ask = float(raw.get("bp", 0.0)), float(raw.get("ap", 0.0))
        if self._sink is None or bid <= 0 or ask <= 0:
            return
        tick = Tick(
            QUOTE, 0, raw["S"], bid, ask, (bid + ask) / 2, float(raw.get("bs", 0)), self._epoch(raw.get("t"))
        )
        tick.received_ns = time.perf_counter_ns()
        self._sink(tick)

    async def _on_trade(self, raw: dict) -> None:
        price = float(raw.get("p", 0.0))
        if self._sink is None or price <= 0:
            return
        tick = Tick(
            TRADE, 0, raw["S"], price, price, price, float(raw.get("s", 0)), self._epoch(raw.get("t"))
        )
        tick.received_ns = time.perf_counter_ns()
        self._sink(tick)

    async def run(
        self, sink: TickSink, stop: asyncio.Event, on_batch: Callable[[], None] | None = None
    ) -> None:
        self._sink = sink
        # alpaca-py's run() owns its own event loop; _run_forever() is the coroutine it runs, which
        # lets the streams share this process's loop.
        tasks = [asyncio.create_task(stream._run_forever()) for stream in self._streams]
        try:
            await stop.wait()
        finally:
            for stream in self._streams:
                try:
                    await stream.stop_ws()
                except Exception:
                    log.debug("alpaca stream stop failed", exc_info=True)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
