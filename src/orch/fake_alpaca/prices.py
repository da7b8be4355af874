"""Prices for the fake Alpaca server: historical bars from market-data sources, and a live price per symbol.

History comes from two `MarketDataSource`s (daily and minute bars; by default the seeded simulated
market), aggregated to the timeframe a request asks for. The live price of a symbol starts at its
latest minute close and then moves by a seeded random walk, one step per tick, or jumps when a test
sets it. Orders fill at the live price, and the stream publishes it.

Nothing here locks: the owner (`FakeAlpaca`) serialises access.
"""

from __future__ import annotations

import re
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np

from orch.market.base import MarketDataError, MarketDataSource, PriceHistory, UnknownSymbolError

# ---- Timeframes ----------------------------------------------------------------------------------

_TIMEFRAME = re.compile(r"^(\d+)(Min|T|Hour|H|Day|D|Week|W|Month|M)$")
_UNIT_ALIASES = {"T": "Min", "H": "Hour", "D": "Day", "W": "Week", "M": "Month"}
# The amounts Alpaca accepts per unit (market-data spec, `timeframe` parameter).
_ALLOWED_AMOUNTS = {
    "Min": range(1, 60),
    "Hour": range(1, 24),
    "Day": (1,),
    "Week": (1,),
    "Month": (1, 2, 3, 4, 6, 12),
}
# A request for minute bars over years would ask the source for millions of bars; real Alpaca
# pages through them, the fake simply serves the most recent ones.
MAX_SOURCE_BARS = 200_000


@dataclass(frozen=True)
class Timeframe:
    amount: int
    unit: str  # Min, Hour, Day, Week, Month

    @classmethod
    def parse(cls, text: str) -> Timeframe:
        match = _TIMEFRAME.match(text or "")
        if not match:
            raise ValueError(f"invalid timeframe: {text!r}")
        amount, unit = int(match.group(1)), _UNIT_ALIASES.get(match.group(2), match.group(2))
        if amount not in _ALLOWED_AMOUNTS[unit]:
            raise ValueError(f"invalid timeframe: {text!r}")
        return cls(amount, unit)

    @property
    def intraday(self) -> bool:
        return self.unit in ("Min", "Hour")

    @property
    def approximate_period(self) -> timedelta:
        """Used only to size source requests; months and weeks are over-estimated on purpose."""
        days = {"Day": 1, "Week": 7, "Month": 31}
        if self.unit == "Min":
            return timedelta(minutes=self.amount)
        if self.unit == "Hour":
            return timedelta(hours=self.amount)
        return timedelta(days=days[self.unit] * self.amount)

    def bucket(self, timestamp: datetime) -> datetime:
        """The open time of the bar of this timeframe that contains `timestamp`."""
        if self.unit == "Min":
            minutes = int(timestamp.timestamp() // 60)
            return datetime.fromtimestamp((minutes - minutes % self.amount) * 60, UTC)
        if self.unit == "Hour":
            hours = int(timestamp.timestamp() // 3600)
            return datetime.fromtimestamp((hours - hours % self.amount) * 3600, UTC)
        day = timestamp.replace(hour=0, minute=0, second=0, microsecond=0)
        if self.unit == "Day":
            return day
        if self.unit == "Week":
            return day - timedelta(days=day.weekday())
        month_index = (day.year * 12 + day.month - 1) // self.amount * self.amount
        return day.replace(year=month_index // 12, month=month_index % 12 + 1, day=1)


# ---- Bars ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BarRow:
    timestamp: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    trade_count: int
    vwap: float


def _rows_from_source(
    source: MarketDataSource, period: timedelta, symbol: str, start: datetime, end: datetime
) -> list[BarRow]:
    count = int(min((end - start) / period + 2, MAX_SOURCE_BARS))
    return [row for row in _rows(source.history(symbol, max(count, 1), end)) if start <= row.timestamp <= end]


def _rows(history: PriceHistory) -> list[BarRow]:
    rows = []
    for i in range(len(history)):
        timestamp = history.timestamps[i].astype("datetime64[us]").item().replace(tzinfo=UTC)
        o, h, low, c = (
            float(column[i]) for column in (history.open, history.high, history.low, history.close)
        )
        volume = float(history.volume[i])
        typical = (o + h + low + c) / 4  # the fake's VWAP: sources carry no trades to weigh
        rows.append(BarRow(timestamp, o, h, low, c, volume, max(1, int(volume // 100)), typical))
    return rows


def aggregate(rows: list[BarRow], timeframe: Timeframe) -> list[BarRow]:
    """Roll source bars (oldest first) up into `timeframe` bars."""
    out: list[BarRow] = []
    group: list[BarRow] = []
    current: datetime | None = None
    for row in rows:
        bucket = timeframe.bucket(row.timestamp)
        if current is not None and bucket != current:
            out.append(_merge(current, group))
            group = []
        current = bucket
        group.append(row)
    if group and current is not None:
        out.append(_merge(current, group))
    return out


def _merge(timestamp: datetime, rows: list[BarRow]) -> BarRow:
    if len(rows) == 1 and rows[0].timestamp == timestamp:
        return rows[0]
    volume = sum(r.volume for r in rows)
    vwap = sum(r.vwap * r.volume for r in rows) / volume if volume else rows[-1].close
    return BarRow(
        timestamp=timestamp,
        open=rows[0].open,
        high=max(r.high for r in rows),
        low=min(r.low for r in rows),
        close=rows[-1].close,
        volume=volume,
        trade_count=sum(r.trade_count for r in rows),
        vwap=vwap,
    )


# ---- Live prices ---------------------------------------------------------------------------------


def price_tick(price: Decimal) -> Decimal:
    """The minimum price increment: a cent, or a hundredth of a cent below one dollar."""
    return Decimal("0.01") if price >= 1 else Decimal("0.0001")


def round_price(price: float | Decimal) -> Decimal:
    value = Decimal(str(price))
    return value.quantize(price_tick(value))


@dataclass
class LiveTick:
    """One step of one symbol's live price: what the stream publishes as a trade and a quote."""

    symbol: str
    timestamp: datetime
    price: Decimal
    size: int
    trade_id: int
    bid: Decimal
    ask: Decimal


class PriceBook:
    """Historical bars and live prices for every symbol the sources know (plus any a test priced)."""

    def __init__(
        self,
        daily: MarketDataSource,
        minute: MarketDataSource,
        seed: int,
        tick_volatility: float = 0.0005,
    ) -> None:
        self._daily = daily
        self._minute = minute
        self._seed = seed
        self._tick_volatility = tick_volatility
        self._universe = frozenset(daily.universe()) | frozenset(minute.universe())
        self._history_cache: OrderedDict[tuple, list[BarRow]] = OrderedDict()
        self.reset()

    def reset(self) -> None:
        self._live: dict[str, Decimal] = {}
        self._previous_close: dict[str, Decimal] = {}
        self._priced_only: set[str] = set()  # symbols a test priced that no source knows
        self._walks: dict[str, np.random.Generator] = {}
        self._trade_id = 0

    # -- what exists --

    def universe(self) -> list[str]:
        return sorted(self._universe | self._priced_only)

    def knows(self, symbol: str) -> bool:
        return symbol in self._universe or symbol in self._priced_only

    # -- history --

    def bars(self, symbol: str, timeframe: Timeframe, start: datetime, end: datetime) -> list[BarRow]:
        """Bars of `symbol` with open times in [start, end], oldest first; [] for a symbol nobody knows."""
        key = (symbol, timeframe, start, end)
        if key in self._history_cache:
            self._history_cache.move_to_end(key)
            return self._history_cache[key]
        source, period = (
            (self._minute, timedelta(minutes=1)) if timeframe.intraday else (self._daily, timedelta(days=1))
        )
        try:
            rows = _rows_from_source(source, period, symbol, start, end)
        except UnknownSymbolError:
            rows = []
        if timeframe not in (Timeframe(1, "Min"), Timeframe(1, "Day")):
            rows = aggregate(rows, timeframe)
        self._history_cache[key] = rows
        if len(self._history_cache) > 64:
            self._history_cache.popitem(last=False)
        return rows

    def latest_minute_bar(self, symbol: str, now: datetime) -> BarRow | None:
        try:
            rows = _rows(self._minute.history(symbol, 1, now))
        except UnknownSymbolError:
            return None
        return rows[-1] if rows else None

    # -- live --

    def price(self, symbol: str) -> Decimal:
        """The live price; raises UnknownSymbolError for a symbol no source knows and no test priced."""
        if symbol not in self._live:
            if symbol not in self._universe:
                raise UnknownSymbolError(symbol)
            self._live[symbol] = self._initial_price(symbol)
            self._previous_close[symbol] = self._live[symbol]
        return self._live[symbol]

    def previous_close(self, symbol: str) -> Decimal:
        self.price(symbol)
        return self._previous_close[symbol]

    def set_price(self, symbol: str, price: float | Decimal) -> Decimal:
        if price <= 0:
            raise ValueError("a price must be positive")
        if symbol not in self._universe:
            self._priced_only.add(symbol)
        value = round_price(price)
        self._previous_close.setdefault(symbol, value)
        self._live[symbol] = value
        return value

    def live_symbols(self) -> list[str]:
        return sorted(self._live)

    def step(self, symbol: str, now: datetime) -> LiveTick:
        """Move `symbol` one random-walk step and describe the trade that moved it."""
        walk = self._walks.get(symbol)
        if walk is None:
            # One generator per symbol: a symbol's path does not depend on which others are ticking.
            walk = self._walks[symbol] = np.random.default_rng([self._seed, zlib.crc32(symbol.encode())])
        current = float(self.price(symbol))
        moved = round_price(
            max(current * float(np.exp(self._tick_volatility * walk.standard_normal())), 0.0001)
        )
        self._live[symbol] = moved
        return self.quote_tick(symbol, now, size=int(walk.integers(1, 500)))

    def quote(self, symbol: str) -> tuple[Decimal, Decimal]:
        """The current (bid, ask) around the live price: one cent, or 2 bps, each side."""
        price = self.price(symbol)
        tick = price_tick(price)
        half_spread = max((price * Decimal("0.0002")).quantize(tick), tick)
        return price - half_spread, price + half_spread

    def quote_tick(self, symbol: str, now: datetime, size: int = 100) -> LiveTick:
        """The current price as a trade plus the quote around it."""
        bid, ask = self.quote(symbol)
        self._trade_id += 1
        return LiveTick(symbol, now, self.price(symbol), size, self._trade_id, bid, ask)

    def _initial_price(self, symbol: str) -> Decimal:
        for source in (self._minute, self._daily):
            try:
                history = source.history(symbol, 1)
            except UnknownSymbolError:
                continue
            if len(history):
                return round_price(float(history.close[-1]))
        raise MarketDataError(f"no price history for {symbol}")
