"""The journal: every order, fill and position change, in SQLite (WAL), written before it is acknowledged.

An order is written as PENDING_SUBMIT before the broker sees it, so after a crash the restart knows
every order that may have reached the broker and looks each one up by its client_order_id instead
of sending it again. A fill, the order's new state and the position it changes commit in one
transaction. Fills are applied by their cumulative quantity per order, so a fill reported twice
(or reported again after a restart) is recognised and never counted twice.

Realized P&L is the account's history and lives here, not in memory: each fill row carries what it
realized, the positions table keeps each symbol's running total (closed positions included), and
`daily_realized` sums it per trading day (`account_trading_day`, the UTC date of the fill), all in
the fill's transaction. Reconciliation and restarts read it back; nothing ever resets it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from orch.brokers.base import QUANTITY_EPSILON, position_after_fill
from orch.brokers.order_rows import order_from_row, select_orders
from orch.contracts.trading import Fill, Order, OrderStatus, Side, StrategyPlan
from orch.market.calendars import account_trading_day

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    client_order_id TEXT PRIMARY KEY, sequence INTEGER, broker_order_id TEXT, symbol TEXT NOT NULL,
    side TEXT NOT NULL, quantity REAL NOT NULL, order_type TEXT NOT NULL, limit_price REAL,
    status TEXT NOT NULL, filled_quantity REAL NOT NULL DEFAULT 0, average_fill_price REAL,
    source TEXT NOT NULL, plan_id TEXT, reduce_only INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, reject_reason TEXT
);
CREATE INDEX IF NOT EXISTS orders_open ON orders(status);
CREATE TABLE IF NOT EXISTS fills (
    sequence INTEGER PRIMARY KEY AUTOINCREMENT, fill_id TEXT UNIQUE NOT NULL,
    client_order_id TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL, quantity REAL NOT NULL,
    price REAL NOT NULL, fee REAL NOT NULL, cumulative_quantity REAL NOT NULL, at REAL NOT NULL,
    realized_pnl REAL NOT NULL DEFAULT 0, trading_day TEXT, fee_quantity REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS daily_realized (trading_day TEXT PRIMARY KEY, realized_pnl REAL NOT NULL);
CREATE TABLE IF NOT EXISTS positions (
    symbol TEXT PRIMARY KEY, quantity REAL NOT NULL, average_price REAL NOT NULL,
    realized_pnl REAL NOT NULL, plan_id TEXT
);
CREATE TABLE IF NOT EXISTS plans (
    plan_id TEXT PRIMARY KEY, body TEXT NOT NULL, status TEXT NOT NULL, received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    sequence INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_OPEN = ("pending_submit", "accepted", "partially_filled")


# Every order read back goes through the one row mapping the simulated venue uses too.
_SELECT_ORDERS = select_orders()


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@dataclass(frozen=True)
class PositionRow:
    symbol: str
    quantity: float
    average_price: float
    realized_pnl: float
    plan_id: str | None


@dataclass(frozen=True)
class AppliedFill:
    fill: Fill  # as journaled: the new quantity only, with its journal sequence
    order: Order
    position: PositionRow
    realized_pnl: float  # what this fill realized (closing part of a position), fees excluded
    trading_day: date


class Journal:
    def __init__(
        self, path: str | Path = ":memory:", synchronous: str = "NORMAL", autocheckpoint: bool = True
    ) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: each statement outside an explicit BEGIN is its own durable transaction.
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        if not autocheckpoint:
            # The owner calls `checkpoint()` on a timer, so no order write pays for copying the WAL back.
            self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._db.executescript(_SCHEMA)
        self._add_realized_columns()
        self._add_fee_quantity_column()
        self._sequence = self._db.execute("SELECT COALESCE(MAX(sequence), 0) FROM orders").fetchone()[0]

    def _add_realized_columns(self) -> None:
        """A journal written before fills carried their realized P&L gets the columns (as 0)."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(fills)")}
        if "realized_pnl" in columns:
            return
        self._db.execute("ALTER TABLE fills ADD COLUMN realized_pnl REAL NOT NULL DEFAULT 0")
        self._db.execute("ALTER TABLE fills ADD COLUMN trading_day TEXT")
        log.warning(
            "journal predates per-fill realized P&L: earlier fills count 0 toward the daily loss;"
            " the positions' realized totals are kept"
        )

    def _add_fee_quantity_column(self) -> None:
        """A journal written before fills carried the quantity a venue kept as its fee gets the column.

        Earlier fills read 0 there: their positions were credited in full, as they were written.
        """
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(fills)")}
        if "fee_quantity" not in columns:
            self._db.execute("ALTER TABLE fills ADD COLUMN fee_quantity REAL NOT NULL DEFAULT 0")

    def close(self) -> None:
        self.checkpoint()
        self._db.close()

    def checkpoint(self) -> None:
        self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    # ---- Orders ----------------------------------------------------------------------------------

    def next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence

    def record_order(self, order: Order, sequence: int | None = None) -> bool:
        """Write a new order; False if its client_order_id is already journaled (a retry)."""
        created = order.created_at.timestamp()
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO orders VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                order.client_order_id,
                sequence,
                order.broker_order_id,
                order.symbol,
                order.side.value,
                order.quantity,
                order.order_type.value,
                order.limit_price,
                order.status.value,
                order.filled_quantity,
                order.average_fill_price,
                order.source,
                order.plan_id,
                int(order.reduce_only),
                created,
                created,
                order.reject_reason,
            ),
        )
        return cursor.rowcount == 1

    def update_order_status(
        self,
        client_order_id: str,
        status: OrderStatus,
        broker_order_id: str | None = None,
        reject_reason: str | None = None,
    ) -> None:
        """Change the status (fills change quantities, through `apply_fill` only)."""
        self._db.execute(
            "UPDATE orders SET status=?, broker_order_id=COALESCE(?, broker_order_id),"
            " reject_reason=COALESCE(?, reject_reason), updated_at=? WHERE client_order_id=?",
            (status.value, broker_order_id, reject_reason, time.time(), client_order_id),
        )

    _MARK_ACCEPTED = (
        "UPDATE orders SET broker_order_id=COALESCE(?, broker_order_id), updated_at=?,"
        " status=CASE WHEN status='pending_submit' THEN 'accepted' ELSE status END"
        " WHERE client_order_id=?"
    )

    def mark_accepted(self, client_order_id: str, broker_order_id: str | None) -> None:
        """The broker has the order; a fill or cancel journaled meanwhile keeps its later status."""
        self._db.execute(self._MARK_ACCEPTED, (broker_order_id, time.time(), client_order_id))

    def mark_accepted_many(self, accepted: list[tuple[str, str | None]]) -> None:
        now = time.time()
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany(self._MARK_ACCEPTED, [(bid, now, cid) for cid, bid in accepted])
        self._db.execute("COMMIT")

    def mark_cancelled_many(self, client_order_ids: list[str]) -> None:
        """The broker cancelled these; fills journaled meanwhile keep their quantities."""
        now = time.time()
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany(
            "UPDATE orders SET status='cancelled', updated_at=? WHERE client_order_id=?"
            " AND status IN ('pending_submit', 'accepted', 'partially_filled')",
            [(now, cid) for cid in client_order_ids],
        )
        self._db.execute("COMMIT")

    def mark_expired(self, client_order_id: str) -> bool:
        """The venue closed this day order at its session's close; fills journaled before keep their
        quantities. False if it was no longer open here. The status and its event commit together."""
        now = time.time()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            cursor = self._db.execute(
                "UPDATE orders SET status='expired', updated_at=? WHERE client_order_id=?"
                " AND status IN ('pending_submit', 'accepted', 'partially_filled')",
                (now, client_order_id),
            )
            if cursor.rowcount:
                self.record_event("order_expired", client_order_id=client_order_id)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return cursor.rowcount == 1

    def order(self, client_order_id: str) -> Order | None:
        row = self._db.execute(_SELECT_ORDERS + " WHERE client_order_id=?", (client_order_id,)).fetchone()
        return None if row is None else order_from_row(row)

    def orders(self, open_only: bool = False, limit: int = 1000) -> list[Order]:
        if open_only:
            rows = self._db.execute(
                _SELECT_ORDERS + " WHERE status IN (?,?,?) ORDER BY created_at", _OPEN
            ).fetchall()
        else:
            rows = self._db.execute(_SELECT_ORDERS + " ORDER BY rowid DESC LIMIT ?", (limit,)).fetchall()[
                ::-1
            ]
        return [order_from_row(row) for row in rows]

    def all_orders(self) -> list[Order]:
        return [order_from_row(row) for row in self._db.execute(_SELECT_ORDERS + " ORDER BY rowid")]

    # ---- Fills and positions ---------------------------------------------------------------------

    def apply_fill(self, fill: Fill) -> AppliedFill | None:
        """Journal what `fill` adds beyond what the journal already has for its order.

        None when it adds nothing (already known) or the order is unknown (adopt it first).
        """
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(_SELECT_ORDERS + " WHERE client_order_id=?", (fill.client_order_id,)).fetchone()
            if row is None:
                db.execute("ROLLBACK")
                return None
            order = order_from_row(row)
            known = order.filled_quantity
            cumulative = fill.cumulative_quantity
            if cumulative <= known + QUANTITY_EPSILON:
                db.execute("ROLLBACK")
                return None
            quantity = cumulative - known
            price = fill.price
            if known > 0 and abs(fill.quantity - cumulative) < QUANTITY_EPSILON:
                # A cumulative report (quantity and average so far): take out what we already have.
                price = (cumulative * fill.price - known * (order.average_fill_price or 0.0)) / quantity
            fee = fill.fee * min(quantity / fill.quantity, 1.0)
            # What the venue kept of the asset bought (Alpaca crypto): the position never holds it.
            fee_quantity = fill.fee_quantity * min(quantity / fill.quantity, 1.0)
            average = ((order.average_fill_price or 0.0) * known + price * quantity) / cumulative
            status = order.status
            if cumulative >= order.quantity - QUANTITY_EPSILON:
                status = OrderStatus.FILLED
            elif status in (OrderStatus.PENDING_SUBMIT, OrderStatus.ACCEPTED):
                status = OrderStatus.PARTIALLY_FILLED
            at = fill.timestamp.timestamp()
            current = db.execute(
                "SELECT quantity, average_price, realized_pnl, plan_id FROM positions WHERE symbol=?",
                (order.symbol,),
            ).fetchone() or (0.0, 0.0, 0.0, None)
            new_quantity, new_average, realized = position_after_fill(
                current[0], current[1], current[2], order.side, quantity - fee_quantity, price
            )
            realized_now = realized - current[2]
            day = account_trading_day(at)
            cursor = db.execute(
                "INSERT INTO fills(fill_id, client_order_id, symbol, side, quantity, price, fee,"
                " cumulative_quantity, at, realized_pnl, trading_day, fee_quantity)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    f"{order.client_order_id}#{cumulative:.9g}",
                    order.client_order_id,
                    order.symbol,
                    order.side.value,
                    quantity,
                    price,
                    fee,
                    cumulative,
                    at,
                    realized_now,
                    day.isoformat(),
                    fee_quantity,
                ),
            )
            sequence = cursor.lastrowid
            db.execute(
                "UPDATE orders SET status=?, filled_quantity=?, average_fill_price=?, updated_at=?"
                " WHERE client_order_id=?",
                (status.value, cumulative, average, time.time(), order.client_order_id),
            )
            plan_id = current[3] if current[0] != 0 else order.plan_id
            if new_quantity == 0:
                plan_id = None
            db.execute(
                "INSERT OR REPLACE INTO positions VALUES (?,?,?,?,?)",
                (order.symbol, new_quantity, new_average, realized, plan_id),
            )
            db.execute(
                "INSERT INTO daily_realized VALUES (?,?) ON CONFLICT(trading_day)"
                " DO UPDATE SET realized_pnl = realized_pnl + excluded.realized_pnl",
                (day.isoformat(), realized_now),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        journaled = Fill(
            fill_id=f"{order.client_order_id}#{cumulative:.9g}",
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            quantity=quantity,
            price=price,
            fee=fee,
            fee_quantity=fee_quantity,
            cumulative_quantity=cumulative,
            timestamp=fill.timestamp,
            sequence=sequence,
        )
        updated = order.model_copy(
            update={"filled_quantity": cumulative, "average_fill_price": average, "status": status}
        )
        return AppliedFill(
            journaled,
            updated,
            PositionRow(order.symbol, new_quantity, new_average, realized, plan_id),
            realized_now,
            day,
        )

    def fills_since(self, sequence: int = 0, limit: int = 1000) -> list[Fill]:
        rows = self._db.execute(
            "SELECT sequence, fill_id, client_order_id, symbol, side, quantity, price, fee, fee_quantity,"
            " cumulative_quantity, at FROM fills WHERE sequence > ? ORDER BY sequence LIMIT ?",
            (sequence, limit),
        ).fetchall()
        return [
            Fill(
                fill_id=fill_id,
                client_order_id=cid,
                symbol=symbol,
                side=Side(side),
                quantity=qty,
                price=price,
                fee=fee,
                fee_quantity=fee_quantity,
                cumulative_quantity=cumulative,
                timestamp=_utc(at),
                sequence=seq,
            )
            for (seq, fill_id, cid, symbol, side, qty, price, fee, fee_quantity, cumulative, at) in rows
        ]

    def positions(self, include_closed: bool = False) -> list[PositionRow]:
        """Open positions; with `include_closed`, also the flat symbols, whose realized P&L stays."""
        query = "SELECT * FROM positions" + ("" if include_closed else " WHERE quantity != 0")
        return [PositionRow(*row) for row in self._db.execute(query + " ORDER BY symbol")]

    def realized_pnl(self) -> float:
        """The account's realized P&L over its whole history (closed positions included)."""
        return self._db.execute("SELECT COALESCE(SUM(realized_pnl), 0) FROM positions").fetchone()[0]

    def realized_pnl_by_day(self) -> dict[date, float]:
        """Realized P&L per trading day, from the fills journaled on that day."""
        return {
            date.fromisoformat(day): pnl
            for day, pnl in self._db.execute("SELECT trading_day, realized_pnl FROM daily_realized")
        }

    def set_position(
        self, symbol: str, quantity: float, average_price: float, realized_pnl: float, plan_id: str | None
    ) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO positions VALUES (?,?,?,?,?)",
            (symbol, quantity, average_price, realized_pnl, plan_id),
        )

    # ---- Plans -----------------------------------------------------------------------------------

    def save_plan(self, plan: StrategyPlan, status: str) -> None:
        self._db.execute(
            "INSERT INTO plans VALUES (?,?,?,?) ON CONFLICT(plan_id) DO UPDATE SET body=excluded.body,"
            " status=excluded.status",
            (plan.plan_id, plan.model_dump_json(), status, time.time()),
        )

    def set_plan_status(self, plan_id: str, status: str) -> None:
        self._db.execute("UPDATE plans SET status=? WHERE plan_id=?", (status, plan_id))

    def plans(self) -> list[tuple[StrategyPlan, str]]:
        return [
            (StrategyPlan.model_validate_json(body), status)
            for body, status in self._db.execute("SELECT body, status FROM plans ORDER BY received_at")
        ]

    # ---- Events and metadata ---------------------------------------------------------------------

    def record_event(self, event: str, /, **detail: Any) -> None:
        self._db.execute(
            "INSERT INTO events(at, kind, detail) VALUES (?,?,?)",
            (time.time(), event, json.dumps(detail, default=str)),
        )

    def events(self, kind: str | None = None) -> list[tuple[float, str, dict[str, Any]]]:
        query = "SELECT at, kind, detail FROM events"
        rows = (
            self._db.execute(query + " WHERE kind=? ORDER BY sequence", (kind,))
            if kind
            else self._db.execute(query + " ORDER BY sequence")
        )
        return [(at, k, json.loads(detail)) for at, k, detail in rows]

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self._db.execute("DELETE FROM meta WHERE key=?", (key,))
        else:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (key, value))
