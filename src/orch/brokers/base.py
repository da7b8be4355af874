"""The one interface every broker implements, and the arithmetic they share.

Every order carries a `client_order_id` that we choose deterministically (account plus a journaled
sequence number, or a hash of a caller's idempotency key), and every broker treats a second
submission with the same id as a lookup of the first: a retry after a timeout or a crash can never
create a second order.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from types import NotImplementedType

from orch.contracts.instruments import InstrumentRules
from orch.contracts.levels import TradingMode
from orch.contracts.trading import Account, Fill, Order, Position, RequestBudgetUsage, Side

# Alpaca accepts up to 128 characters; staying well below keeps room for prefixes.
MAX_CLIENT_ORDER_ID = 48
QUANTITY_EPSILON = 1e-9


class BrokerError(RuntimeError):
    """The broker could not answer (down, timeout, unexpected reply). Retryable."""


class BrokerTimeout(BrokerError):
    pass


class CredentialsRefused(BrokerError):
    """The broker refused our keys: no request will pass until they change, so none is sent again."""


class OrderRejected(BrokerError):
    """The broker refused the order itself (not retryable: the same order will be refused again)."""


def make_client_order_id(
    account: str, sequence: int | None = None, idempotency_key: str | None = None
) -> str:
    """Our id for an order: the same inputs always give the same id."""
    if idempotency_key is not None:
        digest = hashlib.blake2b(idempotency_key.encode(), digest_size=10).hexdigest()
        return f"{account[:20]}-k{digest}"[:MAX_CLIENT_ORDER_ID]
    if sequence is None:
        raise ValueError("a client_order_id needs a sequence number or an idempotency key")
    return f"{account[:20]}-{sequence:010d}"[:MAX_CLIENT_ORDER_ID]


def replace_order(order: Order, **changes: object) -> Order:
    """A copy of `order` with `changes`, unvalidated: for the hot path, where every value is ours.

    pydantic's `model_copy` and `model_construct` cost several microseconds each; this is the same
    copy of the instance dictionary without their generality.
    """
    clone = Order.__new__(Order)
    values = order.__dict__.copy()
    values.update(changes)
    object.__setattr__(clone, "__dict__", values)
    object.__setattr__(clone, "__pydantic_fields_set__", order.__pydantic_fields_set__)
    object.__setattr__(clone, "__pydantic_extra__", None)
    object.__setattr__(clone, "__pydantic_private__", None)
    return clone


def signed(side: Side, quantity: float) -> float:
    return quantity if side is Side.BUY else -quantity


def position_after_fill(
    quantity: float, average_price: float, realized_pnl: float, side: Side, fill_quantity: float, price: float
) -> tuple[float, float, float]:
    """(quantity, average price, realized P&L) after one fill; a fill through zero opens the other side."""
    delta = signed(side, fill_quantity)
    new_quantity = quantity + delta
    if abs(new_quantity) < QUANTITY_EPSILON:
        new_quantity = 0.0
    if quantity == 0 or (quantity > 0) == (delta > 0):
        # Opening or adding: the average moves toward the fill price.
        total = abs(quantity) + abs(delta)
        return new_quantity, (abs(quantity) * average_price + abs(delta) * price) / total, realized_pnl
    closed = min(abs(delta), abs(quantity))
    direction = 1.0 if quantity > 0 else -1.0
    realized_pnl += closed * (price - average_price) * direction
    if new_quantity == 0:
        return 0.0, 0.0, realized_pnl
    if (new_quantity > 0) != (quantity > 0):
        return new_quantity, price, realized_pnl  # flipped: the remainder opened at the fill price
    return new_quantity, average_price, realized_pnl


class Broker(ABC):
    """A venue that takes our orders. All methods may raise `BrokerError`; none may hang forever."""

    name: str
    # What an order here really does: the cycle sends plans only when SystemState's mode is the same.
    trading_mode: TradingMode

    # In-process venues accept an order synchronously, so the hot path never waits on the event loop.
    def submit_now(self, order: Order) -> Order | None:
        """Accept `order` immediately if this broker can; None means: use `submit`."""
        return None

    def cancel_now(self, client_order_id: str) -> Order | NotImplementedType | None:
        """Cancel immediately if this broker can; NotImplemented means: use `cancel`."""
        return NotImplemented

    def flush(self) -> None:  # noqa: B027
        """Persist what `submit_now` accepted; called after each batch of ticks."""

    def update_quote(self, symbol: str, bid: float, ask: float, timestamp: float) -> None:  # noqa: B027
        """Market data the venue itself sees (only the simulated venue needs it)."""

    @abstractmethod
    async def submit(self, order: Order) -> Order:
        """Submit, idempotently on `order.client_order_id`; returns the broker's view of the order."""

    @abstractmethod
    async def cancel(self, client_order_id: str) -> Order | None:
        """Cancel one order; None if the broker does not know it."""

    @abstractmethod
    async def cancel_all(self) -> int:
        """Cancel every open order; returns how many were asked to cancel."""

    @abstractmethod
    async def get_order(self, client_order_id: str) -> Order | None: ...

    @abstractmethod
    async def open_orders(self) -> list[Order]: ...

    @abstractmethod
    async def fills_since(self, cursor: str | None) -> tuple[list[Fill], str | None]:
        """Fills after `cursor` (None: all the broker still knows) and the cursor to pass next time."""

    @abstractmethod
    async def positions(self) -> list[Position]: ...

    @abstractmethod
    async def close_position(self, symbol: str) -> Order | None: ...

    @abstractmethod
    async def close_all_positions(self) -> list[Order]: ...

    @abstractmethod
    async def account(self) -> Account: ...

    async def instrument_rules(self, symbols: list[str]) -> dict[str, InstrumentRules]:
        """The venue's published trading rules for `symbols` (increments, minimums, fractionable,
        order types, time in force, fees, calendar), by symbol.

        Symbols left out keep `orch.hft.instruments`' built-in table (the simulated venue's rules);
        this default publishes none. `Engine.load_instrument_rules` asks once at start-up, before
        any order. May raise `BrokerError`: a process must not trade on rules it only guessed.
        """
        return {}

    def admits(self, order: Order) -> bool:
        """Whether `order` may go to the venue now, asked before the router journals it.

        A venue with a request budget (`orch.brokers.budget`) refuses a tier-1 order (a requote,
        worth sending only now) when it has no room for it now; the router then drops it unwritten.
        An admitted order's request is taken here and spent by `submit`. In-process: always.
        """
        return True

    def request_budget(self) -> RequestBudgetUsage | None:
        """The budget of requests to this broker (`orch.brokers.budget`); None: in-process, unlimited."""
        return None

    def on_credentials_refused(self, callback: Callable[[str], None]) -> None:  # noqa: B027
        """Call `callback(reason)` once, when the broker first refuses our keys (`CredentialsRefused`)."""

    async def realized_pnl(self) -> float | None:
        """The account's realized P&L over its history, if this broker reports it (None: it does not)."""
        return None

    async def close(self) -> None:  # noqa: B027
        """Release connections and files."""
