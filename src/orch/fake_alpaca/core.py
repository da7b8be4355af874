"""`FakeAlpaca`: the whole state of a fake Alpaca server and the Python API tests and demos drive it with.

The HTTP handlers, the stream and the test thread all go through the methods here, which hold one
lock: state never changes under a reader's feet, whichever thread it reads from.
"""

from __future__ import annotations

import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from orch.fake_alpaca.broker import FakeBroker, FakeFill, FillPolicy, asset_id
from orch.fake_alpaca.clock import FakeClock, MarketClock
from orch.fake_alpaca.faults import Fault, FaultBook
from orch.fake_alpaca.prices import PriceBook
from orch.fake_alpaca.rate_limit import ALPACA_REQUESTS_PER_MINUTE, Allowance, RateLimit
from orch.fake_alpaca.rules import Rule
from orch.fake_alpaca.stream import BarBuilder, StreamHub, bar_message, quote_message, trade_message
from orch.market.base import MarketDataSource, is_crypto

# A crypto pair's order increments, as Alpaca's assets endpoint publishes them. BTC/USD's are those
# of Alpaca's crypto trading documentation; the others are the fake's choice in the same spirit
# (unconfirmed). Pairs not listed get the last entry's.
CRYPTO_INCREMENTS: dict[str, tuple[str, str, str]] = {
    # symbol: (min_order_size, min_trade_increment, price_increment)
    "BTC/USD": ("0.0001", "0.0001", "1"),
    "ETH/USD": ("0.001", "0.001", "0.1"),
    "SOL/USD": ("0.01", "0.01", "0.01"),
    "LTC/USD": ("0.01", "0.01", "0.01"),
    "*": ("0.000000001", "0.000000001", "0.000000001"),
}


@dataclass(frozen=True)
class FakeAlpacaConfig:
    key: str = "fake-key"
    secret: str = "fake-secret"
    seed: int = 7
    starting_cash: float = 100_000.0
    fill_policy: FillPolicy = field(default_factory=FillPolicy.immediate)
    # Alpaca's rules a test switches off, to isolate another (see orch.fake_alpaca.rules).
    relaxed_rules: frozenset[Rule] = frozenset()
    # The fake's time: None is the wall clock; a moment starts the clock there, ticking on from it
    # unless frozen. Equities trade in the NYSE's sessions at that time (Rule.MARKET_HOURS).
    clock_start: datetime | None = None
    clock_frozen: bool = False
    rate_limit_per_minute: int = ALPACA_REQUESTS_PER_MINUTE
    # Alpaca's tier-1 crypto fees (taker: market and marketable orders; maker: resting limits).
    crypto_taker_fee: Decimal = Decimal("0.0025")
    crypto_maker_fee: Decimal = Decimal("0.0015")
    crypto_min_notional: Decimal = Decimal(10)  # USD-quoted crypto buys
    non_fractionable_symbols: frozenset[str] = frozenset()
    # 1: a cash account (buying power = cash); 2: Reg T margin; 4: day-trading margin.
    margin_multiplier: int = 2
    # How long a cancel takes to land; the order is pending_cancel meanwhile and may still fill.
    cancel_delay_seconds: float = 0.1
    # Live prices move one step per tick; None: only when told (tick(), set_price()).
    tick_interval_seconds: float | None = 1.0
    ticks_per_bar: int = 60
    tick_volatility: float = 0.0005
    shorting_enabled: bool = True
    # The most bars one page of historical bars holds, whatever `limit` asks for (the spec allows
    # fewer); small pages let tests exercise paging without tens of thousands of bars.
    bars_page_size: int = 10_000
    # Keep every Alpaca API response served (for conformance checks in tests).
    record_responses: bool = False


@dataclass
class Refusals:
    """Every trading or data request the fake refused (any 4xx or 5xx), by status and Alpaca's code.

    A refused request is how a client learns it broke one of Alpaca's rules; a test of a client
    that should break none asserts there were none, and prints these when there were.
    """

    by_reason: dict[tuple[int, int | None, str], dict[str, Any]] = field(default_factory=dict)

    def add(self, method: str, path: str, status: int, code: int | None, message: str) -> None:
        seen = self.by_reason.setdefault(
            (status, code, message), {"status": status, "code": code, "message": message, "count": 0}
        )
        seen["count"] += 1
        seen["last_request"] = f"{method} {path}"

    def to_dict(self) -> dict[str, Any]:
        reasons = sorted(self.by_reason.values(), key=lambda seen: (-seen["count"], seen["status"]))
        return {"total": sum(seen["count"] for seen in reasons), "reasons": [dict(r) for r in reasons]}


@dataclass(frozen=True)
class ServedResponse:
    method: str
    path: str
    query: str
    status: int
    content_type: str
    body: bytes


def default_sources(seed: int) -> tuple[MarketDataSource, MarketDataSource]:
    """Daily and minute bars from the project's seeded simulated market."""
    from orch.market.simulated import SimulatedMarket

    return SimulatedMarket(seed=seed, timeframe="1D"), SimulatedMarket(seed=seed, timeframe="1Min")


class FakeAlpaca:
    def __init__(
        self,
        config: FakeAlpacaConfig | None = None,
        daily_source: MarketDataSource | None = None,
        minute_source: MarketDataSource | None = None,
    ) -> None:
        self.config = config or FakeAlpacaConfig()
        if daily_source is None or minute_source is None:
            default_daily, default_minute = default_sources(self.config.seed)
            daily_source, minute_source = daily_source or default_daily, minute_source or default_minute
        self._lock = threading.RLock()
        self.prices = PriceBook(daily_source, minute_source, self.config.seed, self.config.tick_volatility)
        self.clock = FakeClock(self.config.clock_start, ticking=not self.config.clock_frozen)
        self.market = MarketClock(self.clock, always_open=Rule.MARKET_HOURS in self.config.relaxed_rules)
        self.rate_limit = RateLimit(self.config.rate_limit_per_minute)
        self.broker = FakeBroker(
            self.prices,
            self.config,
            self.market,
            account_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"fake-alpaca-account:{self.config.seed}")),
        )
        self.broker.fill_policy = self.config.fill_policy
        self.faults = FaultBook()
        self.hub = StreamHub()
        self._bars = BarBuilder()
        self._ticks = 0
        self._served: deque[ServedResponse] = deque(maxlen=10_000)
        self._refusals = Refusals()
        self.closing = False  # set on shutdown: hung requests give up

    # ---- Serialised access (handlers use these too) -------------------------------------------

    def locked(self) -> threading.RLock:
        """The state lock, for handlers that do several things at once. Re-entrant."""
        return self._lock

    def advance(self) -> list[FakeFill]:
        with self._lock:
            return self.broker.advance()

    # ---- Time, the market's hours and the rules -----------------------------------------------

    def now(self) -> datetime:
        return self.clock.now()

    def market_is_open(self) -> bool:
        return self.market.is_open()

    def set_clock(self, at: datetime | None, ticking: bool = True) -> None:
        """Move the fake's time to `at` (None: the wall clock), frozen there unless `ticking`.

        Queued equity orders may fill now, and day orders past their close expire.
        """
        with self._lock:
            self.clock.set(at, ticking)
            self.broker.advance()

    def clock_state(self) -> dict[str, Any]:
        """What `/v2/clock` answers, plus how the fake's time runs."""
        with self._lock:
            return {**self.market.alpaca_clock(), **self.clock.describe()}

    def relaxed_rules(self) -> frozenset[Rule]:
        return self.broker.relaxed

    def relax_rules(self, relaxed: frozenset[Rule]) -> None:
        """Enforce every rule but these (see `orch.fake_alpaca.rules`)."""
        with self._lock:
            self.broker.relaxed = relaxed
            self.market.always_open = Rule.MARKET_HOURS in relaxed
            self.broker.advance()

    def take_request(self, account: str) -> Allowance:
        """Count one trading request against `account`'s rate limit (refused when over, if enforced)."""
        return self.rate_limit.take(account, enforce=Rule.RATE_LIMIT not in self.broker.relaxed)

    # ---- Prices and ticks ----------------------------------------------------------------------

    def price(self, symbol: str) -> Decimal:
        with self._lock:
            return self.prices.price(symbol)

    def set_price(self, symbol: str, price: float | Decimal) -> Decimal:
        """Move a symbol's live price (any symbol: an unknown one becomes tradable). Orders may fill."""
        with self._lock:
            value = self.prices.set_price(symbol, price)
            tick = self.prices.quote_tick(symbol, datetime.now(UTC))
            self._bars.add(tick)
            self.broker.advance()
        self.hub.publish([trade_message(tick), quote_message(tick)])
        return value

    def tick(self, count: int = 1) -> None:
        """Move every live or subscribed symbol one random-walk step per count; publish to the stream."""
        for _ in range(count):
            with self._lock:
                now = datetime.now(UTC)
                symbols = set(self.prices.live_symbols()) | self.hub.subscribed_symbols(self.prices.universe)
                messages = []
                for symbol in sorted(s for s in symbols if self.prices.knows(s)):
                    tick = self.prices.step(symbol, now)
                    self._bars.add(tick)
                    messages += [trade_message(tick), quote_message(tick)]
                self._ticks += 1
                if self._ticks % self.config.ticks_per_bar == 0:
                    messages += [bar_message(symbol, bar) for symbol, bar in self._bars.flush()]
                self.broker.advance()
            self.hub.publish(messages)

    def stream_subscriptions_changed(self) -> None:
        """New subscribers see a price at once, not one tick later."""
        with self._lock:
            now = datetime.now(UTC)
            wanted = self.hub.subscribed_symbols(self.prices.universe)
            ticks = [self.prices.quote_tick(s, now) for s in sorted(wanted) if self.prices.knows(s)]
        self.hub.publish([m for tick in ticks for m in (trade_message(tick), quote_message(tick))])

    # ---- Orders and positions (for assertions; clients use the HTTP API) ----------------------

    @property
    def fill_policy(self) -> FillPolicy:
        return self.broker.fill_policy

    def set_fill_policy(self, policy: FillPolicy) -> None:
        """How orders accepted from now on fill; orders already open keep their schedule."""
        with self._lock:
            self.broker.fill_policy = policy

    def fill_order(
        self, order_id: str, qty: float | None = None, price: float | None = None
    ) -> dict[str, Any]:
        with self._lock:
            order = self.broker.fill_now(
                order_id,
                None if qty is None else Decimal(str(qty)),
                None if price is None else Decimal(str(price)),
            )
            return order.to_alpaca()

    def orders(self, status: str = "all") -> list[dict[str, Any]]:
        """Orders as the API shows them, oldest first."""
        with self._lock:
            self.broker.advance()
            return [o.to_alpaca() for o in self.broker.list_orders(status, limit=None, direction="asc")]

    def order(self, order_id: str) -> dict[str, Any]:
        with self._lock:
            self.broker.advance()
            return self.broker.get(order_id).to_alpaca()

    def positions(self) -> list[dict[str, Any]]:
        with self._lock:
            self.broker.advance()
            return [self.broker.position_to_alpaca(p) for p in self.broker.positions.values()]

    def account(self) -> dict[str, Any]:
        with self._lock:
            self.broker.advance()
            return self.broker.account_to_alpaca()

    def fills(self) -> list[FakeFill]:
        with self._lock:
            self.broker.advance()
            return list(self.broker.fills)

    def asset(self, symbol: str) -> dict[str, Any]:
        crypto = is_crypto(symbol)
        asset: dict[str, Any] = {
            "id": asset_id(symbol),
            "class": "crypto" if crypto else "us_equity",
            "exchange": "CRYPTO" if crypto else "NASDAQ",
            "symbol": symbol,
            "name": f"{symbol} (simulated)",
            "status": "active",
            "tradable": True,
            "marginable": not crypto,
            "shortable": not crypto and self.config.shorting_enabled,
            "easy_to_borrow": not crypto,
            "fractionable": crypto or symbol not in self.config.non_fractionable_symbols,
            "attributes": [],
        }
        if crypto:  # Alpaca publishes order increments for crypto only
            increments = CRYPTO_INCREMENTS.get(symbol, CRYPTO_INCREMENTS["*"])
            asset["min_order_size"], asset["min_trade_increment"], asset["price_increment"] = increments
        return asset

    def assets(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self.asset(symbol) for symbol in self.prices.universe()]

    # ---- Faults --------------------------------------------------------------------------------

    def inject_fault(
        self,
        api: str = "all",
        kind: str = "error",
        status: int = 503,
        seconds: float | None = None,
        count: int | None = None,
    ) -> list[Fault]:
        """Make `api` ("trading", "data", "stream" or "all") hang, fail, lag, drop or go mute.

        See `orch.fake_alpaca.faults` for the kinds. Lasts until `clear_faults`, or `count` requests.
        """
        with self._lock:
            injected = self.faults.inject(api, kind, status, seconds, count)
        if any(f.api == "stream" and f.kind == "disconnect" for f in injected):
            self.hub.disconnect_all()
        return injected

    def clear_faults(self, api: str | None = None) -> None:
        with self._lock:
            self.faults.clear(api)

    def take_fault(self, api: str) -> Fault | None:
        with self._lock:
            return self.faults.take(api)

    def stream_refuses_connection(self) -> bool:
        with self._lock:
            fault = self.faults.active("stream")
            return fault is not None and fault.kind == "disconnect" and self.faults.take("stream") is not None

    def stream_muted(self) -> bool:
        with self._lock:
            fault = self.faults.active("stream")
            return fault is not None and fault.kind == "mute"

    # ---- Whole-state operations ----------------------------------------------------------------

    def reset(self, starting_cash: float | None = None) -> None:
        """A fresh account, the seeded prices, no faults; the config's fill policy, clock and rules."""
        with self._lock:
            cash = self.config.starting_cash if starting_cash is None else starting_cash
            self.broker.reset(Decimal(str(cash)))
            self.broker.fill_policy = self.config.fill_policy
            self.prices.reset()
            self.faults.clear()
            self.rate_limit.reset()
            self._refusals = Refusals()
            self.clock.set(self.config.clock_start, ticking=not self.config.clock_frozen)
            self.relax_rules(self.config.relaxed_rules)
            self._bars = BarBuilder()
            self._ticks = 0
            self._served.clear()

    def snapshot(self) -> dict[str, Any]:
        """Everything at once, as `GET /_fake/admin/state` shows it."""
        with self._lock:
            self.broker.advance()
            return {
                "account": self.broker.account_to_alpaca(),
                "orders": [
                    o.to_alpaca() for o in self.broker.list_orders("all", limit=None, direction="asc")
                ],
                "positions": [self.broker.position_to_alpaca(p) for p in self.broker.positions.values()],
                "fills": [
                    {
                        "order_id": f.order_id,
                        "client_order_id": f.client_order_id,
                        "symbol": f.symbol,
                        "side": f.side,
                        "qty": str(f.quantity),
                        "price": str(f.price),
                        "timestamp": f.timestamp.isoformat(),
                        "fee": str(f.fee),
                    }
                    for f in self.broker.fills
                ],
                "prices": {s: str(self.prices.price(s)) for s in self.prices.live_symbols()},
                "fill_policy": self.broker.fill_policy.to_dict(),
                "market_open": self.market_is_open(),
                "clock": self.clock.describe(),
                "relaxed_rules": sorted(self.broker.relaxed),
                "faults": self.faults.to_list(),
                "stream_clients": len(self.hub.clients()),
            }

    def record_refusal(self, method: str, path: str, status: int, code: int | None, message: str) -> None:
        with self._lock:
            self._refusals.add(method, path, status, code, message)

    def refusals(self) -> dict[str, Any]:
        """What `GET /_fake/admin/refusals` answers: the total and each reason with its count."""
        with self._lock:
            return self._refusals.to_dict()

    def requests(self) -> dict[str, Any]:
        """What `GET /_fake/admin/requests` answers: each key's trading requests and busiest minute."""
        return {"limit_per_minute": self.rate_limit.per_minute, "accounts": self.rate_limit.requests()}

    def record(self, response: ServedResponse) -> None:
        if self.config.record_responses:
            with self._lock:
                self._served.append(response)

    def served_responses(self) -> list[ServedResponse]:
        with self._lock:
            return list(self._served)
