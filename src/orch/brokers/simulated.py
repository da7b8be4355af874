"""The simulated venue: latency, partial fills, slippage and fees, with its state in SQLite.

It stands for the exchange, so it must outlive the trading process: every state change commits to
its own database file (separate from the process's journal) before the call returns. After a
SIGKILL of the trading process, a new `SimulatedBroker` on the same file is the same venue with the
same orders, fills and positions, and orders still open keep filling against the last quotes it saw.

Orders accepted by `submit_now` and cancelled by `cancel_now` (the hot path) are written in one
transaction per batch of ticks
(`flush`), and before anything can be read or filled. A SIGKILL can therefore lose the venue's last
batch of accepted orders, exactly as if they had been lost on the wire: nothing was filled or
reported for them, the process's journal still holds them as PENDING_SUBMIT, and reconciliation
finds them missing and closes them (a lost cancel leaves the order open, as a lost cancel request
would, and reconciliation sees it open). Fills commit one transaction each, so none is ever lost.

Matching is lazy: orders fill when someone asks the venue (fills, orders, positions), once their
latency has elapsed, against the latest quote, at most `max_fill_fraction` of what remains per pass.

Day orders expire at the session's close, as at a real venue: `day_order_expiry(symbol, accepted_at)`
(orch hft passes the NYSE's, from `orch.market.calendars`) says when, None for good-till-cancelled
(crypto). Expiry is lazy too, and comes first: an order asked about after its close is expired, never
filled at a quote seen after the close.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from orch.brokers.base import (
    QUANTITY_EPSILON,
    Broker,
    OrderRejected,
    make_client_order_id,
    position_after_fill,
    replace_order,
)
from orch.brokers.order_rows import order_from_row, select_orders
from orch.contracts.levels import TradingMode
from orch.contracts.trading import Account, Fill, Order, OrderStatus, OrderType, Position, Side

_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    client_order_id TEXT PRIMARY KEY, broker_order_id TEXT NOT NULL, symbol TEXT NOT NULL,
    side TEXT NOT NULL, quantity REAL NOT NULL, order_type TEXT NOT NULL, limit_price REAL,
    status TEXT NOT NULL, filled_quantity REAL NOT NULL DEFAULT 0, average_fill_price REAL,
    accepted_at REAL NOT NULL, updated_at REAL NOT NULL, source TEXT, plan_id TEXT, reduce_only INTEGER
);
CREATE TABLE IF NOT EXISTS fills (
    sequence INTEGER PRIMARY KEY AUTOINCREMENT, fill_id TEXT UNIQUE NOT NULL,
    client_order_id TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL, quantity REAL NOT NULL,
    price REAL NOT NULL, fee REAL NOT NULL, cumulative_quantity REAL NOT NULL, at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS positions (
    symbol TEXT PRIMARY KEY, quantity REAL NOT NULL, average_price REAL NOT NULL, realized_pnl REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS quotes (
    symbol TEXT PRIMARY KEY, bid REAL NOT NULL, ask REAL NOT NULL, at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS venue (key TEXT PRIMARY KEY, value REAL NOT NULL);
"""


@dataclass(frozen=True)
class SimulatedVenueConfig:
    latency_seconds: float = 0.001
    # Per matching pass; below 1.0 large orders fill in several parts.
    max_fill_fraction: float = 1.0
    # Remainders at or below this fill whole, so partial fills always terminate.
    min_partial_quantity: float = 1.0
    slippage_bps: float = 1.0
    fee_bps: float = 0.5
    starting_cash: float = 1_000_000.0


# The venue's table calls the order's creation `accepted_at` and keeps no reject reason.
_SELECT_ORDERS = select_orders({"created_at": "accepted_at", "reject_reason": "NULL"})


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class SimulatedBroker(Broker):
    name = "simulated"
    trading_mode = TradingMode.SIMULATED

    def __init__(
        self,
        path: str = ":memory:",
        config: SimulatedVenueConfig | None = None,
        clock: Callable[[], float] = time.time,
        synchronous: str = "NORMAL",
        day_order_expiry: Callable[[str, float], float | None] | None = None,
    ) -> None:
        self.config = config or SimulatedVenueConfig()
        self._clock = clock
        self._day_order_expiry = day_order_expiry
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL survives the death of any process; FULL is for surviving power loss too.
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.executescript(_SCHEMA)
        self._db.execute(
            "INSERT OR IGNORE INTO venue(key, value) VALUES ('cash', ?)", (self.config.starting_cash,)
        )
        self._quotes: dict[str, tuple[float, float, float]] = {
            symbol: (bid, ask, at) for symbol, bid, ask, at in self._db.execute("SELECT * FROM quotes")
        }
        self._dirty_quotes: set[str] = set()
        self._unflushed: list[tuple] = []
        self._unflushed_cancels: list[tuple[float, str]] = []
        self._open: dict[str, Order] = {
            order.client_order_id: order
            for order in (
                order_from_row(row)
                for row in self._db.execute(
                    _SELECT_ORDERS + " WHERE status IN ('accepted', 'partially_filled')"
                )
            )
        }
        self._accepted_at: dict[str, float] = {
            cid: at
            for cid, at in self._db.execute(
                "SELECT client_order_id, accepted_at FROM orders"
                " WHERE status IN ('accepted', 'partially_filled')"
            )
        }
        # When each open day order expires; the earliest, so a pass with nothing due costs one comparison.
        self._expires_at: dict[str, float] = {}
        self._next_expiry = math.inf
        for client_order_id, accepted_at in self._accepted_at.items():
            self._schedule_expiry(client_order_id, self._open[client_order_id].symbol, accepted_at)
        self._known_ids: set[str] = {cid for (cid,) in self._db.execute("SELECT client_order_id FROM orders")}
        self._next_broker_id = 1 + (self._db.execute("SELECT COUNT(*) FROM orders").fetchone()[0])
        self._close_sequence = 0

    # ---- Market data the venue sees -------------------------------------------------------------

    def update_quote(self, symbol: str, bid: float, ask: float, timestamp: float) -> None:
        self._quotes[symbol] = (bid, ask, timestamp)
        self._dirty_quotes.add(symbol)

    def last_price(self, symbol: str) -> float | None:
        quote = self._quotes.get(symbol)
        return None if quote is None else (quote[0] + quote[1]) / 2

    # ---- Orders ----------------------------------------------------------------------------------

    def submit_now(self, order: Order) -> Order:
        if order.client_order_id in self._known_ids:
            # The same client_order_id is the same order: a retry, not a new one.
            return self._open.get(order.client_order_id) or self._lookup(order.client_order_id)  # type: ignore[return-value]
        if order.order_type is OrderType.LIMIT and order.limit_price is None:
            raise OrderRejected("a limit order needs a limit price")
        now = self._clock()
        broker_order_id = f"sim-{self._next_broker_id}"
        self._next_broker_id += 1
        accepted = replace_order(order, broker_order_id=broker_order_id, status=OrderStatus.ACCEPTED)
        self._unflushed.append(
            (
                order.client_order_id,
                broker_order_id,
                order.symbol,
                order.side.value,
                order.quantity,
                order.order_type.value,
                order.limit_price,
                OrderStatus.ACCEPTED.value,
                now,
                now,
                order.source,
                order.plan_id,
                int(order.reduce_only),
            )
        )
        self._open[order.client_order_id] = accepted
        self._known_ids.add(order.client_order_id)
        self._accepted_at[order.client_order_id] = now
        self._schedule_expiry(order.client_order_id, order.symbol, now)
        return accepted

    def _schedule_expiry(self, client_order_id: str, symbol: str, accepted_at: float) -> None:
        expires_at = None if self._day_order_expiry is None else self._day_order_expiry(symbol, accepted_at)
        if expires_at is not None:
            self._expires_at[client_order_id] = expires_at
            self._next_expiry = min(self._next_expiry, expires_at)

    def _expire_day_orders(self, now: float) -> None:
        """Close the day orders whose session has closed (status expired); their fills stay."""
        if now < self._next_expiry:
            return
        due = [cid for cid, expires_at in self._expires_at.items() if expires_at <= now]
        for client_order_id in due:
            del self._expires_at[client_order_id]
            self._open.pop(client_order_id, None)
            self._accepted_at.pop(client_order_id, None)
        self._db.executemany(
            "UPDATE orders SET status='expired', updated_at=? WHERE client_order_id=?"
            " AND status IN ('accepted', 'partially_filled')",
            [(now, cid) for cid in due],
        )
        self._next_expiry = min(self._expires_at.values(), default=math.inf)

    async def submit(self, order: Order) -> Order:
        accepted = self.submit_now(order)
        self.flush()
        return accepted

    def flush(self) -> None:
        if not self._unflushed and not self._unflushed_cancels:
            return
        rows, self._unflushed = self._unflushed, []
        cancels, self._unflushed_cancels = self._unflushed_cancels, []
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany("INSERT OR IGNORE INTO orders VALUES (?,?,?,?,?,?,?,?,0,NULL,?,?,?,?,?)", rows)
        self._db.executemany(
            "UPDATE orders SET status='cancelled', updated_at=? WHERE client_order_id=?"
            " AND status IN ('accepted', 'partially_filled')",
            cancels,
        )
        self._db.execute("COMMIT")

    def cancel_now(self, client_order_id: str) -> Order | None:
        order = self._open.pop(client_order_id, None)
        if order is None:
            return self._lookup(client_order_id)
        self._accepted_at.pop(client_order_id, None)
        self._expires_at.pop(client_order_id, None)
        self._unflushed_cancels.append((self._clock(), client_order_id))
        return replace_order(order, status=OrderStatus.CANCELLED)

    async def cancel(self, client_order_id: str) -> Order | None:
        cancelled = self.cancel_now(client_order_id)
        self.flush()
        return cancelled

    async def cancel_all(self) -> int:
        ids = list(self._open)
        for client_order_id in ids:
            await self.cancel(client_order_id)
        return len(ids)

    async def get_order(self, client_order_id: str) -> Order | None:
        self.match()
        return self._open.get(client_order_id) or self._lookup(client_order_id)

    async def open_orders(self) -> list[Order]:
        self.match()
        return list(self._open.values())

    def all_orders(self) -> list[Order]:
        """Every order the venue ever accepted (for reconciliation checks and tests)."""
        self.flush()
        return [order_from_row(row) for row in self._db.execute(_SELECT_ORDERS + " ORDER BY rowid")]

    def _lookup(self, client_order_id: str) -> Order | None:
        self.flush()
        row = self._db.execute(_SELECT_ORDERS + " WHERE client_order_id=?", (client_order_id,)).fetchone()
        return None if row is None else order_from_row(row)

    # ---- Matching --------------------------------------------------------------------------------

    def match(self) -> int:
        """Fill what is due; returns the number of fills. Each fill commits atomically."""
        self.flush()
        now = self._clock()
        self._expire_day_orders(now)
        fills = 0
        for client_order_id in list(self._open):
            if now - self._accepted_at[client_order_id] < self.config.latency_seconds:
                continue
            order = self._open[client_order_id]
            quote = self._quotes.get(order.symbol)
            if quote is None:
                continue
            price = self._execution_price(order, quote[0], quote[1])
            if price is None:
                continue
            remaining = order.remaining
            quantity = remaining * self.config.max_fill_fraction
            if remaining <= self.config.min_partial_quantity or remaining - quantity < QUANTITY_EPSILON:
                quantity = remaining
            self._fill(order, quantity, price, now)
            fills += 1
        if self._dirty_quotes:
            self._db.executemany(
                "INSERT OR REPLACE INTO quotes VALUES (?,?,?,?)",
                [(s, *self._quotes[s]) for s in self._dirty_quotes],
            )
            self._dirty_quotes.clear()
        return fills

    def _execution_price(self, order: Order, bid: float, ask: float) -> float | None:
        slip = self.config.slippage_bps / 10_000
        if order.order_type is OrderType.MARKET:
            return ask * (1 + slip) if order.side is Side.BUY else bid * (1 - slip)
        limit = order.limit_price or 0.0
        if order.side is Side.BUY:
            return min(limit, ask) if ask <= limit else None
        return max(limit, bid) if bid >= limit else None

    def _fill(self, order: Order, quantity: float, price: float, now: float) -> None:
        filled = order.filled_quantity + quantity
        average = ((order.average_fill_price or 0.0) * order.filled_quantity + price * quantity) / filled
        done = order.quantity - filled < QUANTITY_EPSILON
        status = OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED
        fee = abs(quantity * price) * self.config.fee_bps / 10_000
        row = self._db.execute(
            "SELECT quantity, average_price, realized_pnl FROM positions WHERE symbol=?", (order.symbol,)
        ).fetchone()
        position = position_after_fill(*(row or (0.0, 0.0, 0.0)), order.side, quantity, price)
        cash_delta = -quantity * price if order.side is Side.BUY else quantity * price
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute(
                "INSERT INTO fills(fill_id, client_order_id, symbol, side, quantity, price, fee,"
                " cumulative_quantity, at) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    f"{order.client_order_id}#{filled:.9g}",
                    order.client_order_id,
                    order.symbol,
                    order.side.value,
                    quantity,
                    price,
                    fee,
                    filled,
                    now,
                ),
            )
            self._db.execute(
                "UPDATE orders SET status=?, filled_quantity=?, average_fill_price=?, updated_at=?"
                " WHERE client_order_id=?",
                (status.value, filled, average, now, order.client_order_id),
            )
            self._db.execute("INSERT OR REPLACE INTO positions VALUES (?,?,?,?)", (order.symbol, *position))
            self._db.execute("UPDATE venue SET value = value + ? WHERE key='cash'", (cash_delta - fee,))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        if done:
            del self._open[order.client_order_id]
            self._expires_at.pop(order.client_order_id, None)
            del self._accepted_at[order.client_order_id]
        else:
            self._open[order.client_order_id] = order.model_copy(
                update={
                    "filled_quantity": filled,
                    "average_fill_price": average,
                    "status": status,
                    "updated_at": _utc(now),
                }
            )

    # ---- Fills, positions, account ---------------------------------------------------------------

    async def fills_since(self, cursor: str | None) -> tuple[list[Fill], str | None]:
        self.match()
        after = int(cursor) if cursor else 0
        query = "SELECT * FROM fills WHERE sequence > ? ORDER BY sequence"
        rows = self._db.execute(query, (after,)).fetchall()
        fills = [
            Fill(
                fill_id=fill_id,
                client_order_id=cid,
                symbol=symbol,
                side=Side(side),
                quantity=qty,
                price=price,
                fee=fee,
                cumulative_quantity=cumulative,
                timestamp=_utc(at),
            )
            for (_, fill_id, cid, symbol, side, qty, price, fee, cumulative, at) in rows
        ]
        return fills, str(rows[-1][0]) if rows else cursor

    async def positions(self) -> list[Position]:
        self.match()
        result = []
        for symbol, quantity, average, realized in self._db.execute(
            "SELECT * FROM positions WHERE quantity != 0 ORDER BY symbol"
        ):
            price = self.last_price(symbol)
            unrealized = 0.0 if price is None else (price - average) * quantity
            result.append(
                Position(
                    symbol=symbol,
                    quantity=quantity,
                    average_price=average,
                    realized_pnl=realized,
                    unrealized_pnl=unrealized,
                    market_price=price,
                )
            )
        return result

    async def close_position(self, symbol: str) -> Order | None:
        for position in await self.positions():
            if position.symbol == symbol:
                self._close_sequence += 1
                order = Order(
                    client_order_id=make_client_order_id(
                        "venue-close", idempotency_key=f"{symbol}:{self._clock()}:{self._close_sequence}"
                    ),
                    symbol=symbol,
                    side=Side.SELL if position.quantity > 0 else Side.BUY,
                    quantity=abs(position.quantity),
                    source="close",
                    reduce_only=True,
                    created_at=_utc(self._clock()),
                )
                return self.submit_now(order)
        return None

    async def close_all_positions(self) -> list[Order]:
        await self.cancel_all()
        orders = [await self.close_position(p.symbol) for p in await self.positions()]
        return [o for o in orders if o is not None]

    async def realized_pnl(self) -> float | None:
        self.match()
        return self._db.execute("SELECT COALESCE(SUM(realized_pnl), 0) FROM positions").fetchone()[0]

    async def account(self) -> Account:
        self.match()
        cash = self._db.execute("SELECT value FROM venue WHERE key='cash'").fetchone()[0]
        equity = cash + sum((p.market_price or p.average_price) * p.quantity for p in await self.positions())
        return Account(cash=cash, equity=equity, buying_power=max(cash, 0.0))

    async def close(self) -> None:
        self.flush()
        self._db.close()
