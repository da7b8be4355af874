"""The process's in-memory view of positions, open orders and marks: what the risk gate reads.

The journal is the durable copy; this is rebuilt from it on start and updated right after each
journal write, so the gate never reads the disk on the hot path.

Realized P&L is history, never reset: the account's total is the sum over every symbol (flat ones
included) and the day's is kept per trading day, both loaded from the journal. Reloading (after a
reconciliation or a restart) therefore gives the same figures; only a new day starts from zero.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from orch.brokers.base import position_after_fill
from orch.contracts.trading import Order, Position, Side
from orch.market.calendars import account_trading_day

SECONDS_PER_DAY = 86_400


# ---- The account's own book -----------------------------------------------------------------------


class OwnPrices:
    """The prices of one symbol's open orders on one side, best first in O(log n).

    A heap of prices (negated for bids) with a count per price; a price whose count fell to zero is
    dropped when it reaches the top. An open market order stands at the most aggressive price
    (a buy at +inf, a sell at 0): it would take any of the account's orders on the other side.
    """

    __slots__ = ("_counts", "_heap", "_sign")

    def __init__(self, side: Side) -> None:
        self._sign = -1.0 if side is Side.BUY else 1.0
        self._heap: list[float] = []
        self._counts: Counter[float] = Counter()

    def add(self, price: float) -> None:
        counts = self._counts
        counts[price] += 1
        if counts[price] == 1:
            heapq.heappush(self._heap, self._sign * price)
            if len(self._heap) > 2 * len(counts) + 16:  # stale prices buried under a live best
                self._heap = [self._sign * live for live in counts]
                heapq.heapify(self._heap)

    def remove(self, price: float) -> None:
        counts = self._counts
        left = counts[price] - 1
        if left > 0:
            counts[price] = left
        else:
            del counts[price]

    def best(self) -> float | None:
        heap, counts, sign = self._heap, self._counts, self._sign
        while heap:
            price = sign * heap[0]
            if price in counts:
                return price
            heapq.heappop(heap)
        return None


@dataclass(slots=True)
class PositionState:
    quantity: float = 0.0
    average_price: float = 0.0
    realized_pnl: float = 0.0
    plan_id: str | None = None


class Portfolio:
    def __init__(self, wall_clock: Callable[[], float] = time.time) -> None:
        self.positions: dict[str, PositionState] = {}
        self.open_orders: dict[str, Order] = {}
        # Remaining quantity of open orders per symbol and side: what the position could become.
        self.pending_buy: dict[str, float] = {}
        self.pending_sell: dict[str, float] = {}
        self.marks: dict[str, float] = {}
        # Open orders' prices per symbol and side: the self-cross check reads the best of each.
        self.own_bids: dict[str, OwnPrices] = {}
        self.own_asks: dict[str, OwnPrices] = {}
        self.realized_by_day: dict[date, float] = {}
        self._wall_clock = wall_clock
        self._day_number = -1
        self._day = date.min

    def today(self) -> date:
        """The account's trading day now; the date is worked out once per day, not per order."""
        now = self._wall_clock()
        day_number = int(now // SECONDS_PER_DAY)
        if day_number != self._day_number:
            self._day_number, self._day = day_number, account_trading_day(now)
        return self._day

    # ---- Reads (hot path) ------------------------------------------------------------------------

    def quantity(self, symbol: str) -> float:
        state = self.positions.get(symbol)
        return 0.0 if state is None else state.quantity

    def worst_case(self, symbol: str, side: Side) -> float:
        """The position if every open order on `side` filled and none on the other side did."""
        if side is Side.BUY:
            return self.quantity(symbol) + self.pending_buy.get(symbol, 0.0)
        return self.quantity(symbol) - self.pending_sell.get(symbol, 0.0)

    def own_order_crossed(self, symbol: str, side: Side, limit_price: float | None) -> float | None:
        """The price of the account's own open order on the other side that this order would trade
        against (a market order against any), or None."""
        book = (self.own_asks if side is Side.BUY else self.own_bids).get(symbol)
        best = None if book is None else book.best()
        return best if best is not None and crosses(side, limit_price, best) else None

    def gross_exposure(self) -> float:
        marks = self.marks
        return sum(
            abs(state.quantity) * marks.get(symbol, state.average_price)
            for symbol, state in self.positions.items()
            if state.quantity
        )

    def realized_pnl(self) -> float:
        return sum(state.realized_pnl for state in self.positions.values())

    def unrealized_pnl(self) -> float:
        return sum(
            (self.marks.get(symbol, state.average_price) - state.average_price) * state.quantity
            for symbol, state in self.positions.items()
            if state.quantity
        )

    def realized_today(self) -> float:
        return self.realized_by_day.get(self.today(), 0.0)

    def daily_pnl(self) -> float:
        """Today's realized P&L plus the open positions' unrealized: what the daily-loss breaker reads."""
        return self.realized_today() + self.unrealized_pnl()

    def snapshot(self) -> list[Position]:
        return [
            Position(
                symbol=symbol,
                quantity=state.quantity,
                average_price=state.average_price,
                realized_pnl=state.realized_pnl,
                unrealized_pnl=(self.marks.get(symbol, state.average_price) - state.average_price)
                * state.quantity,
                market_price=self.marks.get(symbol),
                plan_id=state.plan_id,
            )
            for symbol, state in sorted(self.positions.items())
            if state.quantity
        ]

    # ---- Updates (after the journal has the change) ----------------------------------------------

    def set_position(
        self, symbol: str, quantity: float, average_price: float, realized_pnl: float, plan_id: str | None
    ) -> None:
        self.positions[symbol] = PositionState(quantity, average_price, realized_pnl, plan_id)

    def apply_fill(
        self,
        symbol: str,
        side: Side,
        quantity: float,
        price: float,
        plan_id: str | None,
        trading_day: date | None = None,
    ) -> None:
        """One journaled fill; its realized P&L counts toward `trading_day` (default: today)."""
        state = self.positions.setdefault(symbol, PositionState())
        was_flat = state.quantity == 0
        realized_before = state.realized_pnl
        state.quantity, state.average_price, state.realized_pnl = position_after_fill(
            state.quantity, state.average_price, state.realized_pnl, side, quantity, price
        )
        if state.realized_pnl != realized_before:
            day = trading_day or self.today()
            self.realized_by_day[day] = (
                self.realized_by_day.get(day, 0.0) + state.realized_pnl - realized_before
            )
        if was_flat and plan_id is not None:
            state.plan_id = plan_id
        if state.quantity == 0:
            state.plan_id = None

    def clear_orders(self) -> None:
        self.open_orders.clear()
        self.pending_buy.clear()
        self.pending_sell.clear()
        self.own_bids.clear()
        self.own_asks.clear()

    def track_order(self, order: Order) -> None:
        """Record the order's latest state; open orders count toward the projected position."""
        previous = self.open_orders.pop(order.client_order_id, None)
        if previous is not None:
            book = self.pending_buy if previous.side is Side.BUY else self.pending_sell
            book[previous.symbol] = max(book.get(previous.symbol, 0.0) - previous.remaining, 0.0)
            self._own_book(previous).remove(standing_price(previous))
        if not order.status.terminal:
            self.open_orders[order.client_order_id] = order
            book = self.pending_buy if order.side is Side.BUY else self.pending_sell
            book[order.symbol] = book.get(order.symbol, 0.0) + order.remaining
            self._own_book(order).add(standing_price(order))

    def _own_book(self, order: Order) -> OwnPrices:
        books = self.own_bids if order.side is Side.BUY else self.own_asks
        book = books.get(order.symbol)
        if book is None:
            book = books[order.symbol] = OwnPrices(order.side)
        return book


def crosses(side: Side, limit_price: float | None, other_side_price: float) -> bool:
    """Whether an order on `side` at `limit_price` (None: market) trades at `other_side_price`."""
    if limit_price is None:
        return True
    return limit_price >= other_side_price if side is Side.BUY else limit_price <= other_side_price


def standing_price(order: Order) -> float:
    if order.limit_price is not None:
        return order.limit_price
    return math.inf if order.side is Side.BUY else 0.0
