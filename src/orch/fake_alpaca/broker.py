"""The fake brokerage account: orders, fills, positions and cash, refusing what Alpaca refuses.

Orders fill on a schedule chosen by the current `FillPolicy` (all at once, after a delay, in pieces,
or only when a test says so); a limit order's piece fills only while the live price has crossed its
limit, and an equity order only while the NYSE is in session at the fake's time. Nothing runs in
the background here: `advance()` applies whatever has come due (fills, cancels landing, day orders
expiring at the close), and the owner calls it before every read and on every tick, so the state a
client sees is always current.

Alpaca's order rules (`orch.fake_alpaca.rules`) apply unless relaxed: sub-penny prices, wash trades,
crypto time in force and minimum notional, fractional equity orders, crypto fees taken from what
the trade credits, margin buying power. A cancel goes through `pending_cancel` for
`cancel_delay_seconds`, and the order can still fill in between, as at Alpaca.

Nothing here locks: the owner (`FakeAlpaca`) serialises access.
"""

from __future__ import annotations

import enum
import itertools
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from orch.fake_alpaca import rules
from orch.fake_alpaca.clock import MarketClock
from orch.fake_alpaca.errors import (
    CODE_FORBIDDEN,
    CODE_INTERNAL,
    CODE_NOT_FOUND,
    CODE_UNPROCESSABLE,
    AlpacaError,
    invalid,
)
from orch.fake_alpaca.prices import PriceBook, price_tick, round_price
from orch.fake_alpaca.rules import Rule
from orch.market.base import MarketDataError, is_crypto

if TYPE_CHECKING:
    from orch.fake_alpaca.core import FakeAlpacaConfig

# ---- Fill policy ---------------------------------------------------------------------------------

FILL_MODES = ("immediate", "delayed", "partial", "manual")


@dataclass(frozen=True)
class FillPolicy:
    """How orders accepted from now on fill. Orders keep the policy they were accepted under."""

    mode: str = "immediate"
    pieces: int = 1
    first_delay_seconds: float = 0.0
    interval_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in FILL_MODES:
            raise ValueError(f"fill mode must be one of {FILL_MODES}")
        if self.pieces < 1 or self.first_delay_seconds < 0 or self.interval_seconds < 0:
            raise ValueError("pieces must be >= 1 and delays >= 0")

    @classmethod
    def immediate(cls) -> FillPolicy:
        return cls("immediate")

    @classmethod
    def delayed(cls, seconds: float) -> FillPolicy:
        return cls("delayed", first_delay_seconds=seconds)

    @classmethod
    def partial(cls, pieces: int, interval_seconds: float, first_delay_seconds: float = 0.0) -> FillPolicy:
        """`pieces` fills, the first after `first_delay_seconds`, then one every `interval_seconds`."""
        return cls("partial", pieces, first_delay_seconds, interval_seconds)

    @classmethod
    def manual(cls) -> FillPolicy:
        """Orders stay open until `FakeAlpaca.fill_order` (or the admin API) fills them."""
        return cls("manual")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FillPolicy:
        mode = data.get("mode", "immediate")
        if mode == "delayed":
            return cls.delayed(float(data.get("delay_seconds", data.get("first_delay_seconds", 1.0))))
        if mode == "partial":
            return cls.partial(
                int(data.get("pieces", 2)),
                float(data.get("interval_seconds", 1.0)),
                float(data.get("first_delay_seconds", 0.0)),
            )
        return cls(mode)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "pieces": self.pieces,
            "first_delay_seconds": self.first_delay_seconds,
            "interval_seconds": self.interval_seconds,
        }

    def schedule(self, quantity: Decimal, now: float) -> list[tuple[float, Decimal]]:
        """(monotonic due time, quantity) of each fill; empty for manual fills."""
        if self.mode == "manual":
            return []
        if self.mode == "immediate":
            return [(now, quantity)]
        pieces = split_quantity(quantity, self.pieces)
        return [(now + self.first_delay_seconds + i * self.interval_seconds, q) for i, q in enumerate(pieces)]


def split_quantity(quantity: Decimal, pieces: int) -> list[Decimal]:
    """Whole shares stay whole (10 in 3 pieces: 4, 3, 3); fractional quantities split to 9 decimals."""
    if quantity == quantity.to_integral_value():
        whole = int(quantity)
        pieces = max(1, min(pieces, whole))
        base, extra = divmod(whole, pieces)
        return [Decimal(base + (1 if i < extra else 0)) for i in range(pieces)]
    piece = (quantity / pieces).quantize(Decimal("1e-9"), rounding=ROUND_DOWN)
    return [piece] * (pieces - 1) + [quantity - piece * (pieces - 1)]


# ---- Orders, fills, positions --------------------------------------------------------------------


class Status(enum.StrEnum):
    """An order's status, as Alpaca spells it."""

    NEW = "new"
    ACCEPTED = "accepted"  # an equity order waiting for the market to open
    PARTIALLY_FILLED = "partially_filled"
    PENDING_CANCEL = "pending_cancel"  # asked to cancel; may still fill until the cancel lands
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"  # a day order still open at the close


OPEN_STATUSES = frozenset({Status.NEW, Status.ACCEPTED, Status.PARTIALLY_FILLED, Status.PENDING_CANCEL})
ORDER_TYPES = ("market", "limit")
TIMES_IN_FORCE = ("day", "gtc", "opg", "cls", "ioc", "fok")
CRYPTO_TIMES_IN_FORCE = ("gtc", "ioc")
QUANTITY_STEP = Decimal("1e-9")  # Alpaca takes quantities and notionals to 9 decimals


def asset_id(symbol: str) -> str:
    """A stable id per asset, so clients can look positions up by id as with Alpaca."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "fake-alpaca:" + position_symbol(symbol)))


def position_symbol(symbol: str) -> str:
    return symbol.replace("/", "")


def fmt(value: Decimal | None) -> str | None:
    """Decimals as Alpaca writes them: plain notation, no trailing zeros."""
    if value is None:
        return None
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def timestamp(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def is_usd_quoted(symbol: str) -> bool:
    return symbol.partition("/")[2] == "USD"


@dataclass
class PendingFill:
    due: float  # time.monotonic()
    quantity: Decimal


@dataclass
class FakeOrder:
    id: str
    sequence: int  # breaks ties between orders created at the same (frozen) time
    client_order_id: str
    symbol: str
    side: str
    type: str
    time_in_force: str
    quantity: Decimal  # for a notional order, the quantity its notional bought at acceptance
    notional: Decimal | None
    limit_price: Decimal | None
    extended_hours: bool
    position_intent: str
    created_at: datetime
    maker: bool = False  # a limit order that rested on the book: crypto's maker fee
    status: Status = Status.NEW
    updated_at: datetime | None = None
    filled_at: datetime | None = None
    canceled_at: datetime | None = None
    expired_at: datetime | None = None
    expires_at: datetime | None = None  # a day order's close
    cancel_lands_at: float | None = None  # time.monotonic() when a requested cancel takes effect
    filled_quantity: Decimal = Decimal(0)
    filled_value: Decimal = Decimal(0)
    pending: list[PendingFill] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled_quantity

    @property
    def asset_class(self) -> str:
        return "crypto" if is_crypto(self.symbol) else "us_equity"

    @property
    def average_price(self) -> Decimal | None:
        if not self.filled_quantity:
            return None
        return (self.filled_value / self.filled_quantity).quantize(Decimal("0.000001")).normalize()

    @property
    def crossing_price(self) -> Decimal:
        """The worst price this order would trade at: a market order takes any."""
        if self.limit_price is not None:
            return self.limit_price
        return Decimal("Infinity") if self.side == "buy" else Decimal(0)

    def to_alpaca(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "client_order_id": self.client_order_id,
            "created_at": timestamp(self.created_at),
            "updated_at": timestamp(self.updated_at or self.created_at),
            "submitted_at": timestamp(self.created_at),
            "filled_at": timestamp(self.filled_at),
            "expired_at": timestamp(self.expired_at),
            "canceled_at": timestamp(self.canceled_at),
            "failed_at": None,
            "replaced_at": None,
            "replaced_by": None,
            "replaces": None,
            "asset_id": asset_id(self.symbol),
            "symbol": self.symbol,
            "asset_class": self.asset_class,
            "notional": fmt(self.notional),
            "qty": None if self.notional is not None else fmt(self.quantity),
            "filled_qty": fmt(self.filled_quantity),
            "filled_avg_price": fmt(self.average_price),
            "order_class": "simple",
            "order_type": self.type,
            "type": self.type,
            "side": self.side,
            "position_intent": self.position_intent,
            "time_in_force": self.time_in_force,
            "limit_price": fmt(self.limit_price),
            "stop_price": None,
            "status": str(self.status),
            "extended_hours": self.extended_hours,
            "legs": None,
            "trail_percent": None,
            "trail_price": None,
            "hwm": None,
        }


@dataclass(frozen=True)
class FakeFill:
    order_id: str
    client_order_id: str
    symbol: str
    side: str
    quantity: Decimal
    price: Decimal
    timestamp: datetime
    fee: Decimal = Decimal(0)  # crypto: in the asset bought, or in USD for a sale


@dataclass
class FakePosition:
    symbol: str  # as orders spell it (BTC/USD); the API shows position_symbol() (BTCUSD)
    quantity: Decimal  # signed: negative is short
    average_price: Decimal


# ---- The account ---------------------------------------------------------------------------------


def parse_decimal(value: Any, name: str) -> Decimal | None:
    """alpaca-py sends numbers as JSON numbers where the spec says strings: accept both."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise invalid(f"{name} must be a number")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise invalid(f"invalid {name}: {value!r}") from None
    if not number.is_finite():
        raise invalid(f"invalid {name}: {value!r}")
    return number


def parse_bool(value: Any, name: str) -> bool:
    """Query booleans arrive as true/false from most clients and True/False from alpaca-py."""
    if isinstance(value, bool):
        return value
    if value is None or value == "":
        return False
    text = str(value).lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise invalid(f"invalid {name}: {value!r}")


class FakeBroker:
    def __init__(
        self, prices: PriceBook, config: FakeAlpacaConfig, market: MarketClock, account_id: str
    ) -> None:
        self._prices = prices
        self._config = config
        self.market = market
        self.relaxed: frozenset[Rule] = config.relaxed_rules
        self.account_id = account_id
        self.account_created_at = market.now()
        self.fill_policy = FillPolicy.immediate()
        self._sequence = itertools.count()
        self.reset(Decimal(str(config.starting_cash)))

    def reset(self, starting_cash: Decimal) -> None:
        self.starting_cash = starting_cash
        self.cash = starting_cash
        self.orders: dict[str, FakeOrder] = {}
        self.by_client_id: dict[str, FakeOrder] = {}
        self.positions: dict[str, FakePosition] = {}  # keyed by position_symbol()
        self.fills: list[FakeFill] = []

    def enforces(self, rule: Rule) -> bool:
        return rule not in self.relaxed

    # -- orders --

    def submit(self, payload: dict[str, Any]) -> FakeOrder:
        symbol = payload.get("symbol")
        if not isinstance(symbol, str) or not symbol:
            raise invalid("symbol is required")
        side = payload.get("side")
        if side not in ("buy", "sell"):
            raise invalid(f"invalid side: {side!r}")
        order_type = payload.get("type") or payload.get("order_type")
        if order_type not in ORDER_TYPES:
            raise invalid(f"order type {order_type!r} is not supported (the fake serves market and limit)")
        if payload.get("order_class") not in (None, "", "simple"):
            raise invalid(f"order class {payload['order_class']!r} is not supported (the fake serves simple)")
        time_in_force = payload.get("time_in_force")
        if time_in_force not in TIMES_IN_FORCE:
            raise invalid(f"invalid time_in_force: {time_in_force!r}")
        quantity = parse_decimal(payload.get("qty"), "qty")
        notional = parse_decimal(payload.get("notional"), "notional")
        if (quantity is None) == (notional is None):
            raise invalid("exactly one of qty or notional is required")
        if (quantity is not None and quantity <= 0) or (notional is not None and notional <= 0):
            raise invalid("qty and notional must be > 0")
        if notional is not None and order_type != "market":
            raise invalid("notional orders must be market orders")
        limit_price = parse_decimal(payload.get("limit_price"), "limit_price")
        if order_type == "limit" and (limit_price is None or limit_price <= 0):
            raise invalid("limit orders require a positive limit_price")
        if order_type == "market" and limit_price is not None:
            raise invalid("market orders take no limit_price")
        client_order_id = payload.get("client_order_id") or str(uuid.uuid4())
        if not isinstance(client_order_id, str) or len(client_order_id) > 128:
            raise invalid("client_order_id must be a string of at most 128 characters")
        if client_order_id in self.by_client_id:
            raise invalid("client_order_id must be unique")
        if not self._prices.knows(symbol):
            raise invalid(f'asset "{symbol}" not found')
        crypto = is_crypto(symbol)
        if crypto and time_in_force not in CRYPTO_TIMES_IN_FORCE and self.enforces(Rule.CRYPTO_TIME_IN_FORCE):
            raise rules.crypto_time_in_force()
        price = self._price(symbol)
        if notional is not None:
            quantity = (notional / price).quantize(QUANTITY_STEP, rounding=ROUND_DOWN)
        assert quantity is not None
        if not crypto:
            self._check_equity_order(symbol, side, order_type, time_in_force, quantity, notional, limit_price)
        elif side == "buy" and is_usd_quoted(symbol) and self.enforces(Rule.CRYPTO_MIN_NOTIONAL):
            cost = notional or quantity * (limit_price or price)
            if cost < self._config.crypto_min_notional:
                raise rules.crypto_min_notional(self._config.crypto_min_notional)
        if self.enforces(Rule.WASH_TRADE) and self._would_wash(symbol, side, limit_price):
            raise rules.wash_trade()
        self._check_funds(symbol, side, quantity, limit_price or price)

        now = self.market.now()
        held = self.positions.get(position_symbol(symbol))
        held_quantity = held.quantity if held else Decimal(0)
        intent = ("buy" if side == "buy" else "sell") + (
            "_to_close" if _reduces(side, held_quantity) else "_to_open"
        )
        order = FakeOrder(
            id=str(uuid.uuid4()),
            sequence=next(self._sequence),
            client_order_id=client_order_id,
            symbol=symbol,
            side=side,
            type=order_type,
            time_in_force=time_in_force,
            quantity=quantity,
            notional=notional,
            limit_price=limit_price,
            extended_hours=parse_bool(payload.get("extended_hours"), "extended_hours"),
            position_intent=intent,
            created_at=now,
        )
        if not crypto:
            if not self.market.is_open(now):
                order.status = Status.ACCEPTED  # Alpaca queues equity orders until the market opens
            if time_in_force in ("day", "opg", "cls"):
                order.expires_at = self.market.next_close(now)
        order.maker = order_type == "limit" and not self._marketable(order)
        self.orders[order.id] = order
        self.by_client_id[client_order_id] = order

        if time_in_force in ("ioc", "fok"):
            # Infinite liquidity: all of it fills now if it can fill at all, else it is canceled.
            if self._can_fill(order):
                self._fill(order, order.quantity, self._price(symbol), now)
            else:
                self._cancel_now(order, now)
        else:
            order.pending = [
                PendingFill(due, q) for due, q in self.fill_policy.schedule(quantity, time.monotonic())
            ]
            self.advance()
        return order

    def _check_equity_order(
        self,
        symbol: str,
        side: str,
        order_type: str,
        time_in_force: str,
        quantity: Decimal,
        notional: Decimal | None,
        limit_price: Decimal | None,
    ) -> None:
        fractional = notional is not None or quantity != quantity.to_integral_value()
        if fractional and self.enforces(Rule.FRACTIONAL):
            if symbol in self._config.non_fractionable_symbols:
                raise rules.not_fractionable(symbol)
            if order_type != "market":
                raise rules.fractional_not_market()
            if time_in_force != "day":
                raise rules.fractional_not_day()
            held = self.positions.get(position_symbol(symbol))
            long_available = self._available(held) if held and held.quantity > 0 else Decimal(0)
            if side == "sell" and quantity > long_available:
                raise rules.fractional_short()
        sub_penny = limit_price is not None and limit_price != limit_price.quantize(price_tick(limit_price))
        if sub_penny and self.enforces(Rule.SUB_PENNY):
            raise rules.sub_penny(fmt(limit_price) or "")

    def _would_wash(self, symbol: str, side: str, limit_price: Decimal | None) -> bool:
        """Whether the order would trade against the account's own open order on the other side."""
        if limit_price is not None:
            mine = limit_price
        else:
            mine = Decimal("Infinity") if side == "buy" else Decimal(0)
        for other in self.orders.values():
            if not other.is_open or other.symbol != symbol or other.side == side:
                continue
            buy, sell = (mine, other.crossing_price) if side == "buy" else (other.crossing_price, mine)
            if buy >= sell:
                return True
        return False

    def get(self, order_id: str) -> FakeOrder:
        order = self.orders.get(order_id)
        if order is None:
            raise AlpacaError(404, CODE_NOT_FOUND, "order not found")
        return order

    def get_by_client_id(self, client_order_id: str) -> FakeOrder:
        order = self.by_client_id.get(client_order_id)
        if order is None:
            raise AlpacaError(404, CODE_NOT_FOUND, "order not found")
        return order

    def list_orders(
        self,
        status: str = "open",
        limit: int | None = 50,
        after: datetime | None = None,
        until: datetime | None = None,
        direction: str = "desc",
        symbols: set[str] | None = None,
        side: str | None = None,
    ) -> list[FakeOrder]:
        if status not in ("open", "closed", "all"):
            raise invalid(f"invalid status: {status!r}")
        if direction not in ("asc", "desc"):
            raise invalid(f"invalid direction: {direction!r}")
        chosen = [
            o
            for o in self.orders.values()
            if (status == "all" or (status == "open") == o.is_open)
            and (after is None or o.created_at > after)
            and (until is None or o.created_at < until)
            and (not symbols or o.symbol in symbols)
            and (side is None or o.side == side)
        ]
        chosen.sort(key=lambda o: (o.created_at, o.sequence), reverse=direction == "desc")
        return chosen if limit is None else chosen[:limit]

    def cancel(self, order_id: str) -> FakeOrder:
        order = self.get(order_id)
        if not order.is_open:
            raise AlpacaError(422, CODE_UNPROCESSABLE, f'order is already in "{order.status}" state')
        self._request_cancel(order)
        return order

    def cancel_all(self) -> list[FakeOrder]:
        cancelled = [o for o in self.orders.values() if o.is_open]
        for order in cancelled:
            self._request_cancel(order)
        return cancelled

    def _request_cancel(self, order: FakeOrder) -> None:
        """The cancel lands `cancel_delay_seconds` later; until then the order is pending_cancel, fillable."""
        if order.status == Status.PENDING_CANCEL:
            return  # already on its way
        delay = self._config.cancel_delay_seconds
        if delay <= 0:
            self._cancel_now(order, self.market.now())
            return
        order.status = Status.PENDING_CANCEL
        order.cancel_lands_at = time.monotonic() + delay
        order.updated_at = self.market.now()

    def fill_now(
        self, order_id: str, quantity: Decimal | None = None, price: Decimal | None = None
    ) -> FakeOrder:
        """Fill (part of) an open order at once, whatever the policy and the price: for tests and demos."""
        order = self.get(order_id)
        if not order.is_open:
            raise AlpacaError(422, CODE_UNPROCESSABLE, f'order is already in "{order.status}" state')
        quantity = order.remaining if quantity is None else min(quantity, order.remaining)
        if quantity <= 0:
            raise invalid("fill quantity must be > 0")
        self._fill(order, quantity, price or self._price(order.symbol), self.market.now())
        return order

    def advance(self) -> list[FakeFill]:
        """Apply what has come due: fills that can fill at the current price, cancels, day orders' expiry."""
        now = time.monotonic()
        moment = self.market.now()
        fills_before = len(self.fills)
        market_open = self.market.is_open(moment)
        for order in list(self.orders.values()):
            if order.status == Status.ACCEPTED and market_open:
                order.status = Status.NEW  # the market opened: the queued order goes live
            if not order.is_open:
                continue
            # A fill due before a requested cancel lands still happens: the race Alpaca has too.
            fills_until = now if order.cancel_lands_at is None else min(now, order.cancel_lands_at)
            if order.pending and order.pending[0].due <= fills_until and self._can_fill(order):
                while order.pending and order.pending[0].due <= fills_until and order.is_open:
                    piece = order.pending.pop(0)
                    quantity = min(piece.quantity, order.remaining)
                    if quantity > 0:
                        self._fill(order, quantity, self._price(order.symbol), moment)
            if not order.is_open:
                continue
            if order.cancel_lands_at is not None and now >= order.cancel_lands_at:
                self._cancel_now(order, moment)
            elif order.expires_at is not None and moment >= order.expires_at:
                self._expire(order)
        return self.fills[fills_before:]

    def _marketable(self, order: FakeOrder) -> bool:
        """Whether the order takes liquidity on arrival (crypto's taker fee): a market order, or a
        limit buy at or above the ask, a sell at or below the bid. One between rests: maker."""
        if order.limit_price is None:
            return True
        bid, ask = self._prices.quote(order.symbol)
        return order.limit_price >= ask if order.side == "buy" else order.limit_price <= bid

    def _crossed(self, order: FakeOrder) -> bool:
        if order.type == "market":
            return True
        assert order.limit_price is not None
        price = self._price(order.symbol)
        return price <= order.limit_price if order.side == "buy" else price >= order.limit_price

    def _can_fill(self, order: FakeOrder) -> bool:
        if order.asset_class == "us_equity" and not self.market.is_open():
            return False
        return self._crossed(order)

    def _fill(self, order: FakeOrder, quantity: Decimal, price: Decimal, moment: datetime) -> None:
        order.filled_quantity += quantity
        order.filled_value += quantity * price
        order.updated_at = moment
        if order.remaining <= 0:
            order.status = Status.FILLED
            order.filled_at = moment
            order.pending = []
            order.cancel_lands_at = None
        elif order.status != Status.PENDING_CANCEL:
            order.status = Status.PARTIALLY_FILLED
        fee = self._settle(order, quantity, price)
        self.fills.append(
            FakeFill(order.id, order.client_order_id, order.symbol, order.side, quantity, price, moment, fee)
        )

    def _settle(self, order: FakeOrder, quantity: Decimal, price: Decimal) -> Decimal:
        """Move cash and the position for one fill; return the crypto fee it cost."""
        rate = Decimal(0)
        if order.asset_class == "crypto" and self.enforces(Rule.CRYPTO_FEE):
            rate = self._config.crypto_maker_fee if order.maker else self._config.crypto_taker_fee
        if order.side == "buy":
            # Alpaca takes the fee out of what the trade credits: here, the asset bought.
            fee = (quantity * rate).quantize(QUANTITY_STEP)
            self.cash -= quantity * price
            self._apply_to_position(order.symbol, quantity - fee, price)
        else:
            fee = quantity * price * rate  # here, the dollars the sale credits
            self.cash += quantity * price - fee
            self._apply_to_position(order.symbol, -quantity, price)
        return fee

    def _cancel_now(self, order: FakeOrder, moment: datetime) -> None:
        order.status = Status.CANCELED
        order.canceled_at = moment
        order.updated_at = moment
        order.pending = []
        order.cancel_lands_at = None

    def _expire(self, order: FakeOrder) -> None:
        assert order.expires_at is not None
        order.status = Status.EXPIRED
        order.expired_at = order.updated_at = order.expires_at
        order.pending = []

    # -- positions --

    def _apply_to_position(self, symbol: str, delta: Decimal, price: Decimal) -> None:
        key = position_symbol(symbol)
        held = self.positions.get(key)
        if held is None:
            self.positions[key] = FakePosition(symbol, delta, price)
            return
        new_quantity = held.quantity + delta
        if new_quantity == 0:
            del self.positions[key]
        elif held.quantity == 0 or (held.quantity > 0) == (delta > 0):
            held.average_price = (abs(held.quantity) * held.average_price + abs(delta) * price) / abs(
                new_quantity
            )
            held.quantity = new_quantity
        elif (new_quantity > 0) != (held.quantity > 0):
            held.quantity, held.average_price = new_quantity, price  # flipped through zero
        else:
            held.quantity = new_quantity

    def position(self, symbol_or_asset_id: str) -> FakePosition:
        key = position_symbol(symbol_or_asset_id)
        held = self.positions.get(key) or next(
            (p for p in self.positions.values() if asset_id(p.symbol) == symbol_or_asset_id), None
        )
        if held is None:
            raise AlpacaError(404, CODE_NOT_FOUND, "position does not exist")
        return held

    def close_position(
        self, symbol_or_asset_id: str, quantity: Decimal | None = None, percentage: Decimal | None = None
    ) -> FakeOrder:
        held = self.position(symbol_or_asset_id)
        if quantity is not None and percentage is not None:
            raise invalid("only one of qty or percentage may be given")
        size = abs(held.quantity)
        if percentage is not None:
            if not 0 < percentage <= 100:
                raise invalid("percentage must be in (0, 100]")
            size = (size * percentage / 100).quantize(QUANTITY_STEP, rounding=ROUND_DOWN)
        elif quantity is not None:
            if not 0 < quantity <= size:
                raise insufficient_quantity(quantity, size)
            size = quantity
        side = "sell" if held.quantity > 0 else "buy"
        time_in_force = "gtc" if is_crypto(held.symbol) else "day"
        return self.submit(
            {
                "symbol": held.symbol,
                "qty": str(size),
                "side": side,
                "type": "market",
                "time_in_force": time_in_force,
            }
        )

    def close_all(self, cancel_orders: bool) -> list[tuple[FakePosition, FakeOrder]]:
        if cancel_orders:
            # Alpaca cancels before it liquidates, so the closing orders meet no order of ours.
            moment = self.market.now()
            for order in [o for o in self.orders.values() if o.is_open]:
                self._cancel_now(order, moment)
        closed = []
        for held in list(self.positions.values()):
            closed.append(
                (
                    FakePosition(held.symbol, held.quantity, held.average_price),
                    self.close_position(held.symbol),
                )
            )
        return closed

    def position_to_alpaca(self, held: FakePosition) -> dict[str, Any]:
        current = self._price(held.symbol)
        previous = self._prices.previous_close(held.symbol)
        quantity = held.quantity
        cost_basis = abs(quantity) * held.average_price
        market_value = quantity * current
        unrealized = (current - held.average_price) * quantity
        intraday = (current - previous) * quantity
        crypto = is_crypto(held.symbol)
        return {
            "asset_id": asset_id(held.symbol),
            "symbol": position_symbol(held.symbol),
            "exchange": "CRYPTO" if crypto else "NASDAQ",
            "asset_class": "crypto" if crypto else "us_equity",
            "asset_marginable": not crypto,
            "avg_entry_price": fmt(round_price(held.average_price)),
            "qty": fmt(quantity),
            "qty_available": fmt(self._available(held)),
            "side": "long" if quantity > 0 else "short",
            "market_value": fmt(round_price(abs(market_value)) * (1 if market_value >= 0 else -1)),
            "cost_basis": fmt(cost_basis.quantize(Decimal("0.01"))),
            "unrealized_pl": fmt(unrealized.quantize(Decimal("0.01"))),
            "unrealized_plpc": fmt(_ratio(unrealized, cost_basis)),
            "unrealized_intraday_pl": fmt(intraday.quantize(Decimal("0.01"))),
            "unrealized_intraday_plpc": fmt(_ratio(intraday, abs(quantity) * previous)),
            "current_price": fmt(current),
            "lastday_price": fmt(previous),
            "change_today": fmt(_ratio(current - previous, previous)),
        }

    def _available(self, held: FakePosition) -> Decimal:
        closing_side = "sell" if held.quantity > 0 else "buy"
        reserved = sum(
            (o.remaining for o in self.orders.values() if o.is_open and o.side == closing_side
             and position_symbol(o.symbol) == position_symbol(held.symbol)),
            Decimal(0),
        )  # fmt: skip
        return max(abs(held.quantity) - reserved, Decimal(0))

    # -- account --

    def _reserved_for_buys(self, crypto: bool) -> Decimal:
        """What open buys hold back: Alpaca reduces buying power by each open buy's value."""
        total = Decimal(0)
        for order in self.orders.values():
            if order.is_open and order.side == "buy" and (order.asset_class == "crypto") == crypto:
                total += order.remaining * (order.limit_price or self._price(order.symbol))
        return total

    def _market_values(self) -> tuple[Decimal, Decimal, Decimal]:
        """(signed value of every position, value of crypto positions, gross value of equity positions)."""
        total = crypto = equity_exposure = Decimal(0)
        for held in self.positions.values():
            value = held.quantity * self._price(held.symbol)
            total += value
            if is_crypto(held.symbol):
                crypto += value
            else:
                equity_exposure += abs(value)
        return total, crypto, equity_exposure

    def buying_power(self, multiplier: int | None = None) -> Decimal:
        """Equity buying power: on a margin account, `multiplier` times the equity that can carry margin.

        With multiplier m, each dollar of equity positions needs 1/m of equity behind it, so
        buying power = m * (equity - crypto) - equity positions; crypto (never marginable) buys only
        with cash. m = 1 is a cash account (buying power = cash), 2 Reg T margin, 4 day trading.
        """
        m = multiplier or self._config.margin_multiplier
        positions_value, crypto_value, equity_exposure = self._market_values()
        equity = self.cash + positions_value
        power = m * (equity - crypto_value) - equity_exposure
        power -= self._reserved_for_buys(crypto=False) + m * self._reserved_for_buys(crypto=True)
        return max(power, Decimal(0))

    def non_marginable_buying_power(self) -> Decimal:
        """What crypto (never marginable) can buy: cash, less what open buys hold back."""
        reserved = self._reserved_for_buys(crypto=False) + self._reserved_for_buys(crypto=True)
        return max(self.cash - reserved, Decimal(0))

    def _check_funds(self, symbol: str, side: str, quantity: Decimal, price: Decimal) -> None:
        if side == "buy":
            cost = quantity * price
            if is_crypto(symbol):
                available = self.non_marginable_buying_power()
                if cost > available:
                    # The fake's rendering of Alpaca's crypto refusal (recalled, not confirmed).
                    raise AlpacaError(
                        403,
                        CODE_FORBIDDEN,
                        f"insufficient balance for USD (requested: {fmt(cost.quantize(Decimal('0.01')))}, "
                        f"available: {fmt(available.quantize(Decimal('0.01')))})",
                    )
            elif cost > self.buying_power():
                raise AlpacaError(403, CODE_FORBIDDEN, "insufficient buying power")
            return
        held = self.positions.get(position_symbol(symbol))
        available = self._available(held) if held and held.quantity > 0 else Decimal(0)
        if quantity > available and (is_crypto(symbol) or not self._config.shorting_enabled):
            raise insufficient_quantity(quantity, available)

    def account_to_alpaca(self) -> dict[str, Any]:
        long_value = short_value = Decimal(0)
        for held in self.positions.values():
            value = held.quantity * self._price(held.symbol)
            if value >= 0:
                long_value += value
            else:
                short_value += value
        equity = self.cash + long_value + short_value
        multiplier = self._config.margin_multiplier

        def dollars(value: Decimal) -> str | None:
            return fmt(value.quantize(Decimal("0.01")))

        buying_power = self.buying_power()
        money = {
            "cash": self.cash,
            "equity": equity,
            "portfolio_value": equity,
            "last_equity": self.starting_cash,
            "long_market_value": long_value,
            "short_market_value": short_value,
            "position_market_value": long_value - short_value,
            "buying_power": buying_power,
            "regt_buying_power": self.buying_power(min(multiplier, 2)),
            "daytrading_buying_power": buying_power if multiplier == 4 else Decimal(0),
            "effective_buying_power": buying_power,
            "non_marginable_buying_power": self.non_marginable_buying_power(),
            "options_buying_power": self.non_marginable_buying_power(),
        }
        return {
            "id": self.account_id,
            "account_number": "PA" + self.account_id.replace("-", "")[:10].upper(),
            "status": "ACTIVE",
            "crypto_status": "ACTIVE",
            "currency": "USD",
            **{name: dollars(value) for name, value in money.items()},
            "accrued_fees": "0",
            "pending_transfer_in": "0",
            "pending_transfer_out": "0",
            "pending_reg_taf_fees": "0",
            "intraday_adjustments": "0",
            "initial_margin": "0",
            "maintenance_margin": "0",
            "last_maintenance_margin": "0",
            "sma": "0",
            "multiplier": str(multiplier),
            "daytrade_count": 0,
            "balance_asof": self.account_created_at.date().isoformat(),
            "created_at": timestamp(self.account_created_at),
            "pattern_day_trader": False,
            "trading_blocked": False,
            "transfers_blocked": False,
            "account_blocked": False,
            "trade_suspended_by_user": False,
            "shorting_enabled": self._config.shorting_enabled,
            "options_approved_level": 0,
            "options_trading_level": 0,
        }

    def _price(self, symbol: str) -> Decimal:
        try:
            return self._prices.price(symbol)
        except MarketDataError as error:
            raise AlpacaError(500, CODE_INTERNAL, f"no price for {symbol}: {error}") from error


def insufficient_quantity(requested: Decimal, available: Decimal) -> AlpacaError:
    return AlpacaError(
        403,
        CODE_FORBIDDEN,
        f"insufficient qty available for order (requested: {fmt(requested)}, available: {fmt(available)})",
    )


def _reduces(side: str, held_quantity: Decimal) -> bool:
    return (side == "buy" and held_quantity < 0) or (side == "sell" and held_quantity > 0)


def _ratio(numerator: Decimal, denominator: Decimal) -> Decimal:
    if not denominator:
        return Decimal(0)
    return (numerator / denominator).quantize(Decimal("0.0000001"))
