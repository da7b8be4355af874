"""Reconciliation: make the journal agree with the broker, adopting the broker's truth.

Run on start (before trading is allowed past REDUCING) and periodically. Each pass returns the
differences it found and fixed; the process stays REDUCING until a pass finds none.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from orch.brokers.base import QUANTITY_EPSILON
from orch.contracts.trading import OrderStatus

if TYPE_CHECKING:
    from orch.hft.engine import Engine

log = logging.getLogger(__name__)

POSITION_SNAPSHOT_ATTEMPTS = 5


REALIZED_PNL_TOLERANCE = 0.01  # currency units: float sums over many fills differ in the last digits


def check_realized_pnl(engine: Engine, ours: float, theirs: float) -> None:
    """A visible warning (log and journal event) when the broker's realized P&L is not ours.

    Not adopted: the journal's fills are the history. It can differ after a position was adopted
    from the broker, and a human should look. Warned once per new figure, not on every pass.
    """
    gap = theirs - ours
    mismatch = None if abs(gap) <= REALIZED_PNL_TOLERANCE else round(gap, 2)
    if mismatch is not None and mismatch != engine.realized_pnl_mismatch:
        engine.journal.record_event("realized_pnl_mismatch", journal=ours, broker=theirs)
        log.warning("reconciliation: realized P&L journal %.2f, broker %.2f", ours, theirs)
    engine.realized_pnl_mismatch = mismatch


async def reconcile(engine: Engine, adopt_positions: bool = True, on_start: bool = True) -> list[str]:
    """One pass. With `adopt_positions` false, position differences are reported but not adopted
    (a running process may see a fill at the broker before its fill sync does).

    On start, fills found at the broker were missed while down: a difference. While running
    (`on_start` false) they are fills in flight that the fill sync had not polled yet: not one.
    """
    broker, journal = engine.broker, engine.journal
    timeout = engine.settings.broker_timeout_seconds
    differences: list[str] = []

    def differ(kind: str, text: str, **detail: object) -> None:
        differences.append(text)
        journal.record_event("reconcile_difference", kind=kind, text=text, **detail)
        log.warning("reconciliation: %s", text)

    engine.router.flush()

    # ---- Orders written before a crash: did the broker get them? ---------------------------------
    for order in journal.orders(open_only=True):
        if order.status is not OrderStatus.PENDING_SUBMIT:
            continue
        at_broker = await asyncio.wait_for(broker.get_order(order.client_order_id), timeout)
        if at_broker is None:
            journal.update_order_status(
                order.client_order_id, OrderStatus.REJECTED, reject_reason="never reached the broker"
            )
            differ("order_never_sent", f"order {order.client_order_id} never reached the broker: closed")
        else:
            journal.mark_accepted(order.client_order_id, at_broker.broker_order_id)
            if at_broker.status is not OrderStatus.ACCEPTED:
                differ(
                    "order_adopted",
                    f"order {order.client_order_id} is {at_broker.status.value} at the broker",
                )

    # ---- Fills missed while down -----------------------------------------------------------------
    applied = await engine.sync_fills()
    if applied and on_start:
        differ(
            "fills_missed", f"{applied} fill(s) at the broker were missing from the journal", count=applied
        )

    # ---- Open orders: the broker's list against the journal's ------------------------------------
    broker_open = {o.client_order_id: o for o in await asyncio.wait_for(broker.open_orders(), timeout)}
    for client_order_id, order in broker_open.items():
        if journal.order(client_order_id) is None:
            await engine.adopt_order(client_order_id)
            differ(
                "unknown_open_order", f"open order {client_order_id} ({order.symbol}) adopted from the broker"
            )
    for order in journal.orders(open_only=True):
        if order.client_order_id in broker_open or order.client_order_id in engine.router.cancelling:
            continue  # open at both, or our own cancel is on its way back
        at_broker = await asyncio.wait_for(broker.get_order(order.client_order_id), timeout)
        status = OrderStatus.CANCELLED if at_broker is None else at_broker.status
        if status is OrderStatus.EXPIRED:
            # A day order the venue closed at the session's close: expected, not a difference.
            if at_broker is not None and at_broker.filled_quantity > order.filled_quantity + QUANTITY_EPSILON:
                await engine.sync_fills()
            journal.mark_expired(order.client_order_id)
            continue
        if status.terminal and status is not order.status:
            if at_broker is not None and at_broker.filled_quantity > order.filled_quantity + QUANTITY_EPSILON:
                await engine.sync_fills()
            engine.router.flush()  # cancels acknowledged while we looked are written now
            caught_up = journal.order(order.client_order_id)
            if not on_start and caught_up is not None and caught_up.status is status:
                continue  # filled or cancelled while we looked: in flight, not a difference
            journal.update_order_status(order.client_order_id, status)
            differ(
                "order_status",
                f"order {order.client_order_id} is {status.value} at the broker,"
                f" journal had {order.status.value}",
            )

    # ---- Positions ----------------------------------------------------------------------------
    # The venue keeps filling while we look: compare only a snapshot the journal has caught up
    # with exactly (no fill applied between the snapshot and the catch-up), or not at all.
    broker_realized: float | None = None
    for _ in range(POSITION_SNAPSHOT_ATTEMPTS):
        applied_before = engine.fills_applied
        theirs = {p.symbol: p for p in await asyncio.wait_for(broker.positions(), timeout)}
        broker_realized = await asyncio.wait_for(broker.realized_pnl(), timeout)
        await engine.sync_fills()
        if engine.fills_applied == applied_before:
            break
    else:
        log.info("reconciliation: positions kept moving; compared on the next pass")
        theirs = None
    if theirs is not None:
        ours = {row.symbol: row for row in journal.positions(include_closed=True)}
        for symbol in sorted(set(ours) | set(theirs)):
            mine = ours[symbol].quantity if symbol in ours else 0.0
            broker_quantity = theirs[symbol].quantity if symbol in theirs else 0.0
            if abs(mine - broker_quantity) <= QUANTITY_EPSILON:
                continue
            text = f"position {symbol}: journal {mine:g}, broker {broker_quantity:g}"
            if adopt_positions:
                # The broker's quantity and average price; the realized history stays ours.
                broker_position = theirs.get(symbol)
                journal.set_position(
                    symbol,
                    broker_quantity,
                    broker_position.average_price if broker_position else 0.0,
                    ours[symbol].realized_pnl if symbol in ours else 0.0,
                    ours[symbol].plan_id if symbol in ours and broker_quantity else None,
                )
                text += ": adopted the broker's"
            differ("position", text, symbol=symbol, journal=mine, broker=broker_quantity)
        if broker_realized is not None:
            check_realized_pnl(engine, journal.realized_pnl(), broker_realized)

    engine.load_portfolio()
    return differences
