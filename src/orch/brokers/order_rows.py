"""An `Order` as a SQLite row, one mapping for every store that keeps orders (orch hft's journal, the
simulated venue): each names its own columns in `ORDER_FIELDS`' order in its SELECT, and reads the
row back with `order_from_row`, so a field added to `Order` is mapped once."""

from __future__ import annotations

from datetime import UTC, datetime

from orch.contracts.trading import Order, OrderStatus, OrderType, Side

# The Order fields a row carries, in this order; timestamps are UTC epoch seconds.
ORDER_FIELDS = (
    "client_order_id",
    "broker_order_id",
    "symbol",
    "side",
    "quantity",
    "order_type",
    "limit_price",
    "status",
    "filled_quantity",
    "average_fill_price",
    "source",
    "plan_id",
    "reduce_only",
    "created_at",
    "updated_at",
    "reject_reason",
)


def select_orders(columns: dict[str, str] | None = None) -> str:
    """`SELECT <ORDER_FIELDS> FROM orders`, a store's own column name (or SQL expression) where it differs."""
    names = columns or {}
    return "SELECT " + ", ".join(names.get(field, field) for field in ORDER_FIELDS) + " FROM orders"


def order_from_row(row: tuple) -> Order:
    values = dict(zip(ORDER_FIELDS, row, strict=True))
    return Order(
        client_order_id=values["client_order_id"],
        broker_order_id=values["broker_order_id"],
        symbol=values["symbol"],
        side=Side(values["side"]),
        quantity=values["quantity"],
        order_type=OrderType(values["order_type"]),
        limit_price=values["limit_price"],
        status=OrderStatus(values["status"]),
        filled_quantity=values["filled_quantity"],
        average_fill_price=values["average_fill_price"],
        source=values["source"] or "api",
        plan_id=values["plan_id"],
        reduce_only=bool(values["reduce_only"]),
        created_at=datetime.fromtimestamp(values["created_at"], UTC),
        updated_at=None
        if values["updated_at"] is None
        else datetime.fromtimestamp(values["updated_at"], UTC),
        reject_reason=values["reject_reason"],
    )
