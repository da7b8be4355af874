"""Alpaca through alpaca-py's `TradingClient` (paper by default; `url_override` for the fake server).

alpaca-py's REST calls are blocking and have no timeout. `orch.resources` bounds them, as it does the
market data's: each call runs on a small thread pool (`BlockingCalls`), bounded by `asyncio.wait_for`,
and the HTTP session itself gets a timeout (`bound_session`) so that a stuck thread ends too: the event
loop never blocks and no call hangs forever. Given a `ResourcePool`, calls also wait for the
`alpaca-trading` rate limit and are counted in its statistics. The keys are passed to
alpaca-py and never logged or put into an exception.

Fills: `fills_since` reports, for each recent order with a fill, one cumulative fill (quantity and
average price so far). The journal applies fills by cumulative quantity per order, so reporting
the same state again adds nothing and a missed partial fill is recovered from the next report.
It looks at the most recent `RECENT_ORDERS` orders each time (one REST call).

Instrument rules come from Alpaca's assets endpoint (`instrument_rules`, one `get_asset` a symbol):
crypto's published increments and minimums, fractionable, equities' sub-penny price bands, the time
in force each class takes (crypto gtc/ioc; a fractional equity order only market and day) and
Alpaca's crypto fee, which it takes out of what the trade credits. An order is sent with its rules'
default time in force. Alpaca reports no fee on an order, so a crypto fill's fee is worked out here
from the fee model and whether the order took liquidity on arrival (a market order, or a limit
buy at or above the ask / sell at or below the bid of the last quote `update_quote` saw): the
position then holds what Alpaca holds (0.1 BTC bought as taker: 0.09975).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, TypeVar

from orch.brokers.base import Broker, BrokerError, BrokerTimeout, CredentialsRefused, OrderRejected
from orch.brokers.budget import ALPACA_DEFAULT_REQUESTS_PER_MINUTE, RequestBudget, RequestPriority
from orch.contracts.instruments import (
    AssetClass,
    FeeAsset,
    FeeModel,
    InstrumentRules,
    Liquidity,
    TimeInForce,
    TradingCalendar,
)
from orch.contracts.levels import TradingMode
from orch.contracts.trading import (
    Account,
    Fill,
    Order,
    OrderStatus,
    OrderType,
    Position,
    RequestBudgetUsage,
    Side,
)
from orch.resources import BlockingCalls, CallsClosed, CallTimeout, RateLimited, ResourcePool, bound_session

log = logging.getLogger(__name__)

T = TypeVar("T")
RECENT_ORDERS = 500
# A 429 is waited out and the request sent again at most this often, then the caller hears of it.
RATE_LIMIT_ATTEMPTS = 3
# Tier 1's orders: worth sending only now, so they are dropped, never queued, when the budget is short.
DROPPABLE_SOURCES = frozenset({"mm", "arb"})
RATE_LIMITED_API = "alpaca-trading"  # its name in the resource pool's rate limits and statistics
_CRYPTO_QUOTES = ("USDT", "USDC", "USD", "BTC")

# Alpaca's crypto fees at its lowest volume tier, taken out of what the trade credits: a buy pays in
# the asset bought, a sale in dollars (Alpaca's crypto fee schedule: 0.15 % maker, 0.25 % taker).
ALPACA_CRYPTO_FEE = FeeModel(maker_bps=15, taker_bps=25, charged_in=FeeAsset.PROCEEDS)
# Alpaca refuses a USD-quoted crypto buy below this ("cost basis must be >= minimal amount of order").
ALPACA_CRYPTO_MIN_NOTIONAL = 10.0
# Alpaca publishes no increments for equities: fractional shares to 9 decimals, of which we keep 6
# (well above the journal's 1e-9 epsilon); prices in cents from $1, 1/100 cent below (sub-penny rule).
EQUITY_QUANTITY_INCREMENT = 1e-6
EQUITY_PRICE_INCREMENT = 0.01
EQUITY_SUB_DOLLAR_PRICE_INCREMENT = 0.0001
# No venue takes more in one order; larger is a typo.
MAX_ORDER_QUANTITY = 1e9

_STATUS = {
    "new": OrderStatus.ACCEPTED,
    "accepted": OrderStatus.ACCEPTED,
    "pending_new": OrderStatus.ACCEPTED,
    "accepted_for_bidding": OrderStatus.ACCEPTED,
    "pending_cancel": OrderStatus.PENDING_CANCEL,
    "pending_replace": OrderStatus.ACCEPTED,
    "held": OrderStatus.ACCEPTED,
    "calculated": OrderStatus.ACCEPTED,
    "partially_filled": OrderStatus.PARTIALLY_FILLED,
    "filled": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELLED,
    "expired": OrderStatus.EXPIRED,
    "done_for_day": OrderStatus.CANCELLED,
    "replaced": OrderStatus.CANCELLED,
    "stopped": OrderStatus.CANCELLED,
    "suspended": OrderStatus.CANCELLED,
    "rejected": OrderStatus.REJECTED,
}


def _value(enum_or_text: Any) -> str:
    return str(getattr(enum_or_text, "value", enum_or_text))


def _float(value: Any, default: float = 0.0) -> float:
    return default if value in (None, "") else float(value)


class BrokerRateLimited(BrokerError):
    """Alpaca still answered 429 after waiting out its reset `RATE_LIMIT_ATTEMPTS` times."""


def order_priority(order: Order) -> RequestPriority:
    """Where an order stands in the request budget (see `orch.brokers.budget`)."""
    if order.reduce_only:
        return RequestPriority.CRITICAL
    if order.source in DROPPABLE_SOURCES:
        return RequestPriority.DROPPABLE
    return RequestPriority.ORDER


def retry_at(error: Any) -> float:
    """The Unix time a 429 says to come back: `Retry-After` seconds, else `X-RateLimit-Reset`."""
    headers = getattr(getattr(error, "response", None), "headers", None) or {}
    now = time.time()
    try:
        if headers.get("Retry-After") is not None:
            return now + float(headers["Retry-After"])
        if headers.get("X-RateLimit-Reset") is not None:
            return float(headers["X-RateLimit-Reset"])
    except ValueError:
        pass
    return now + 1.0  # a 429 that says nothing: a second, about three requests' worth of budget


def crypto_symbol(symbol: str, asset_class: str) -> str:
    """Alpaca names crypto positions "BTCUSD"; orders and our symbols say "BTC/USD"."""
    if "/" in symbol or "crypto" not in asset_class:
        return symbol
    for quote in _CRYPTO_QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return f"{symbol[: -len(quote)]}/{quote}"
    return symbol


class AlpacaBroker(Broker):
    name = "alpaca"

    def __init__(
        self,
        api_key: str,
        secret_key: str,
        paper: bool = True,
        url_override: str | None = None,
        timeout_seconds: float = 5.0,
        max_threads: int = 4,
        resources: ResourcePool | None = None,
        budget: RequestBudget | None = None,
    ) -> None:
        from alpaca.trading.client import TradingClient

        self._client = TradingClient(api_key, secret_key, paper=paper, url_override=url_override)
        # alpaca-py retries a 429 three times, 3 s apart, in its own thread, blind to the reset the
        # answer names; 0 leaves exactly one retry layer, `_call`'s, which waits out the reset.
        # (TradingClient does not pass retry_attempts on, and RESTClient reads 0 there as "default".)
        self._client._retry = 0
        self.trading_mode = TradingMode.PAPER if paper else TradingMode.LIVE
        self.budget = budget or RequestBudget(ALPACA_DEFAULT_REQUESTS_PER_MINUTE)
        self.credentials_refused: str | None = None  # why, once Alpaca refused the keys
        self._on_credentials_refused: list[Callable[[str], None]] = []
        # Our id -> Alpaca's, from every answer: a cancel needs Alpaca's id, and a lookup costs a request.
        self._broker_ids: dict[str, str] = {}
        self._last_seen: dict[str, Order] = {}
        self._rules: dict[str, InstrumentRules] = {}  # as Alpaca's assets endpoint published them
        self._quotes: dict[str, tuple[float, float]] = {}  # symbol -> the last (bid, ask) seen
        # Whether each order took liquidity on arrival: Alpaca's crypto fee depends on it.
        self._liquidity: dict[str, Liquidity] = {}
        # Tier-1 orders whose request `admits` already took from the budget.
        self._admitted: set[str] = set()
        bound_session(self._client, timeout_seconds)
        self._timeout = timeout_seconds
        # A little beyond the session's own timeout, so the HTTP timeout normally fires first.
        self._calls = BlockingCalls(
            RATE_LIMITED_API,
            timeout_seconds=timeout_seconds + 1.0,
            resources=resources,
            max_threads=max_threads,
        )

    # ---- Calls off the event loop ----------------------------------------------------------------

    def on_credentials_refused(self, callback: Callable[[str], None]) -> None:
        """Alpaca refuses keys with 401 (and 403 on anything but an order: that is the order refused)."""
        self._on_credentials_refused.append(callback)

    def request_budget(self) -> RequestBudgetUsage:
        return self.budget.usage()

    def admits(self, order: Order) -> bool:
        """A tier-1 order goes only if the budget has room now (`RequestBudget.try_take`); its
        request is taken here, before the router journals it, and `submit` spends it."""
        if order_priority(order) is not RequestPriority.DROPPABLE:
            return True
        if not self.budget.try_take(RequestPriority.DROPPABLE):
            return False
        self._admitted.add(order.client_order_id)
        return True

    def update_quote(self, symbol: str, bid: float, ask: float, timestamp: float) -> None:
        self._quotes[symbol] = (bid, ask)

    async def _call(
        self,
        function: Callable[..., T],
        *args: Any,
        priority: RequestPriority,
        prepaid: bool = False,
        submitting: bool = False,
        **kwargs: Any,
    ) -> T:
        """One request through the budget. A 429 holds the budget until its reset, then goes again."""
        from alpaca.common.exceptions import APIError
        from requests import RequestException, Timeout

        if self.credentials_refused is not None:
            raise CredentialsRefused(self.credentials_refused)  # never sent again: the keys are wrong
        for attempt in range(1, RATE_LIMIT_ATTEMPTS + 1):
            if not (prepaid and attempt == 1):
                await self.budget.take(priority)
            try:
                return await self._calls.call(function, *args, **kwargs)
            except (CallTimeout, Timeout):
                raise BrokerTimeout(
                    f"alpaca {function.__name__} took longer than {self._timeout:g}s"
                ) from None
            except CallsClosed:
                raise BrokerError("alpaca broker is closed") from None
            except RateLimited as error:
                raise BrokerError(str(error)) from None
            except APIError as error:
                status = self._api_status(error)
                if status == HTTPStatus.TOO_MANY_REQUESTS:
                    self.budget.hold_until(retry_at(error))
                    log.warning(
                        "alpaca answered 429 to %s: holding requests until its reset", function.__name__
                    )
                    continue
                # A 403 on an order is Alpaca refusing that order (buying power, minimum notional).
                if status == HTTPStatus.UNAUTHORIZED or (status == HTTPStatus.FORBIDDEN and not submitting):
                    self._refuse_credentials(f"broker refused the credentials (HTTP {status})")
                raise
            except RequestException as error:
                raise BrokerError(f"alpaca {function.__name__}: {type(error).__name__}: {error}") from None
        raise BrokerRateLimited(f"alpaca {function.__name__}: still 429 after {RATE_LIMIT_ATTEMPTS} resets")

    @staticmethod
    def _api_status(error: Exception) -> int | None:
        try:
            return error.status_code  # type: ignore[attr-defined]
        except Exception:
            return None

    def _refuse_credentials(self, reason: str) -> None:
        first = self.credentials_refused is None
        self.credentials_refused = reason
        if first:
            log.error("alpaca: %s; no further request is sent", reason)
            for callback in self._on_credentials_refused:
                callback(reason)
        raise CredentialsRefused(reason)

    # ---- Conversions -----------------------------------------------------------------------------

    def _to_order(self, raw: Any) -> Order:
        order = self._convert(raw)
        self._broker_ids[order.client_order_id] = str(raw.id)
        if order.status.terminal:
            self._last_seen.pop(order.client_order_id, None)
        else:
            self._last_seen[order.client_order_id] = order
        return order

    @staticmethod
    def _convert(raw: Any) -> Order:
        status = _STATUS.get(_value(raw.status), OrderStatus.ACCEPTED)
        created = raw.created_at or raw.submitted_at or datetime.now(UTC)
        return Order(
            client_order_id=raw.client_order_id,
            broker_order_id=str(raw.id),
            symbol=raw.symbol,
            side=Side(_value(raw.side)),
            quantity=_float(raw.qty, _float(raw.filled_qty)),
            order_type=OrderType.LIMIT if _value(raw.order_type) == "limit" else OrderType.MARKET,
            limit_price=_float(raw.limit_price) or None,
            status=status,
            filled_quantity=_float(raw.filled_qty),
            average_fill_price=_float(raw.filled_avg_price) or None,
            source="alpaca",
            created_at=created,
            updated_at=raw.updated_at,
        )

    # ---- Instrument rules ------------------------------------------------------------------------

    async def instrument_rules(self, symbols: list[str]) -> dict[str, InstrumentRules]:
        """Each symbol's rules from Alpaca's assets endpoint (one request a symbol, remembered)."""
        from alpaca.common.exceptions import APIError

        for symbol in symbols:
            if symbol in self._rules:
                continue
            try:
                # Alpaca names crypto assets "BTCUSD" in paths; "BTC/USD" would be two path segments.
                asset = await self._call(
                    self._client.get_asset, symbol.replace("/", ""), priority=RequestPriority.ORDER
                )
            except APIError as error:
                raise BrokerError(f"alpaca asset {symbol}: {error}") from None
            self._rules[symbol] = rules_from_asset(symbol, asset)
        return {symbol: self._rules[symbol] for symbol in symbols}

    async def _rules_of(self, symbol: str) -> InstrumentRules:
        return (await self.instrument_rules([symbol]))[symbol]

    def _arrival_liquidity(self, order: Order) -> Liquidity:
        """Taker when the order can trade on arrival against the last quote; maker when it rests."""
        quote = self._quotes.get(order.symbol)
        if order.order_type is OrderType.MARKET or order.limit_price is None or quote is None:
            return Liquidity.TAKER  # unknown book: the dearer fee, so the position is never overstated
        bid, ask = quote
        marketable = order.limit_price >= ask if order.side is Side.BUY else order.limit_price <= bid
        return Liquidity.TAKER if marketable else Liquidity.MAKER

    # ---- Orders ----------------------------------------------------------------------------------

    async def submit(self, order: Order) -> Order:
        from alpaca.common.exceptions import APIError
        from alpaca.trading.enums import OrderSide
        from alpaca.trading.enums import TimeInForce as AlpacaTimeInForce
        from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest

        rules = await self._rules_of(order.symbol)
        common = {
            "symbol": order.symbol,
            "qty": order.quantity,
            "side": OrderSide.BUY if order.side is Side.BUY else OrderSide.SELL,
            "time_in_force": AlpacaTimeInForce(rules.default_time_in_force.value),
            "client_order_id": order.client_order_id,
        }
        request = (
            LimitOrderRequest(limit_price=order.limit_price, **common)
            if order.order_type is OrderType.LIMIT
            else MarketOrderRequest(**common)
        )
        priority = order_priority(order)
        admitted = order.client_order_id in self._admitted
        self._admitted.discard(order.client_order_id)
        # Journaled already, so it goes: a tier-1 order not admitted beforehand (a retry) waits its
        # turn like any order rather than being dropped after the journal wrote it.
        if priority is RequestPriority.DROPPABLE:
            priority = RequestPriority.ORDER
        self._liquidity.setdefault(order.client_order_id, self._arrival_liquidity(order))
        try:
            raw = await self._call(
                self._client.submit_order, request, priority=priority, prepaid=admitted, submitting=True
            )
        except APIError as error:
            status = self._api_status(error)
            existing = await self.get_order(order.client_order_id) if status == 422 else None
            if existing is not None:
                return existing  # a retry of an order Alpaca already has: the same order
            if status is not None and 400 <= status < 500 and status != 429:
                raise OrderRejected(f"alpaca refused {order.client_order_id}: {error}") from None
            raise BrokerError(f"alpaca submit {order.client_order_id}: {error}") from None
        return self._to_order(raw)

    async def get_order(
        self, client_order_id: str, priority: RequestPriority = RequestPriority.ORDER
    ) -> Order | None:
        from alpaca.common.exceptions import APIError

        try:
            raw = await self._call(self._client.get_order_by_client_id, client_order_id, priority=priority)
        except APIError as error:
            if self._api_status(error) == 404:
                return None
            raise BrokerError(f"alpaca get order {client_order_id}: {error}") from None
        return self._to_order(raw)

    async def cancel(self, client_order_id: str) -> Order | None:
        """Ask Alpaca to cancel: one request (two when Alpaca's id is not known yet).

        Alpaca answers 204 and the order goes through `pending_cancel`, where it can still fill; the
        answer is that order as PENDING_CANCEL, still open. Its end (cancelled, or filled) is what
        Alpaca says later: `get_order` and the fill sync see it.
        """
        from alpaca.common.exceptions import APIError

        broker_order_id = self._broker_ids.get(client_order_id)
        order = None
        if broker_order_id is None:
            order = await self.get_order(client_order_id, RequestPriority.CRITICAL)
            if order is None or order.status.terminal:
                return order
            broker_order_id = order.broker_order_id
        try:
            await self._call(
                self._client.cancel_order_by_id, broker_order_id, priority=RequestPriority.CRITICAL
            )
        except APIError as error:
            if self._api_status(error) in (HTTPStatus.NOT_FOUND, HTTPStatus.UNPROCESSABLE_ENTITY):
                # 422: no longer cancelable (filled or cancelled meanwhile): what is it now?
                return await self.get_order(client_order_id, RequestPriority.CRITICAL)
            raise BrokerError(f"alpaca cancel {client_order_id}: {error}") from None
        if order is None:
            order = self._last_seen.get(client_order_id)
        if order is None:
            return await self.get_order(client_order_id, RequestPriority.CRITICAL)
        return order.model_copy(update={"status": OrderStatus.PENDING_CANCEL})

    async def cancel_all(self) -> int:
        from alpaca.common.exceptions import APIError

        try:
            return len(await self._call(self._client.cancel_orders, priority=RequestPriority.CRITICAL))
        except APIError as error:
            raise BrokerError(f"alpaca cancel all: {error}") from None

    async def _orders(self, status: str) -> list[Any]:
        from alpaca.common.exceptions import APIError
        from alpaca.trading.enums import QueryOrderStatus
        from alpaca.trading.requests import GetOrdersRequest

        request = GetOrdersRequest(status=QueryOrderStatus(status), limit=RECENT_ORDERS)
        try:
            return list(await self._call(self._client.get_orders, request, priority=RequestPriority.ROUTINE))
        except APIError as error:
            raise BrokerError(f"alpaca list orders: {error}") from None

    async def open_orders(self) -> list[Order]:
        return [self._to_order(raw) for raw in await self._orders("open")]

    async def fills_since(self, cursor: str | None) -> tuple[list[Fill], str | None]:
        fills = []
        for raw in await self._orders("all"):
            self._broker_ids[raw.client_order_id] = str(raw.id)
            filled = _float(raw.filled_qty)
            price = _float(raw.filled_avg_price)
            if filled <= 0 or price <= 0:
                continue
            side = Side(_value(raw.side))
            fee, fee_quantity = self._fees(raw, side, filled, price)
            fills.append(
                Fill(
                    fill_id=f"{raw.client_order_id}#{filled:.9g}",
                    client_order_id=raw.client_order_id,
                    symbol=raw.symbol,
                    side=side,
                    quantity=filled,  # cumulative report: quantity == cumulative_quantity
                    price=price,
                    fee=fee,
                    fee_quantity=fee_quantity,
                    cumulative_quantity=filled,
                    timestamp=raw.filled_at or raw.updated_at or datetime.now(UTC),
                )
            )
        fills.sort(key=lambda fill: fill.timestamp)
        return fills, cursor

    def _fees(self, raw: Any, side: Side, quantity: float, price: float) -> tuple[float, float]:
        """(cash fee, fee quantity) Alpaca took on this cumulative fill; its order reports neither.

        An order this adapter did not send (sent before a restart) is judged by its type alone: a
        market order took liquidity, a limit order rested (the engine's own rule, `with_fee_quantity`).
        """
        rules = self._rules.get(raw.symbol)
        if rules is None:
            return 0.0, 0.0  # rules never loaded: the engine's fee model applies
        liquidity = self._liquidity.get(raw.client_order_id)
        if liquidity is None:
            liquidity = Liquidity.TAKER if _value(raw.order_type) == "market" else Liquidity.MAKER
        return (
            rules.fee.cash_fee(side, quantity, price, liquidity),
            rules.fee.fee_quantity(side, quantity, liquidity),
        )

    # ---- Positions and account -------------------------------------------------------------------

    async def positions(self) -> list[Position]:
        from alpaca.common.exceptions import APIError

        try:
            raws = await self._call(self._client.get_all_positions, priority=RequestPriority.ROUTINE)
        except APIError as error:
            raise BrokerError(f"alpaca positions: {error}") from None
        positions = []
        for raw in raws:
            quantity = _float(raw.qty)
            if _value(raw.side) == "short" and quantity > 0:
                quantity = -quantity
            positions.append(
                Position(
                    symbol=crypto_symbol(raw.symbol, _value(raw.asset_class)),
                    quantity=quantity,
                    average_price=_float(raw.avg_entry_price),
                    unrealized_pnl=_float(raw.unrealized_pl),
                    market_price=_float(raw.current_price) or None,
                )
            )
        return positions

    async def close_position(self, symbol: str) -> Order | None:
        from alpaca.common.exceptions import APIError

        try:
            raw = await self._call(
                self._client.close_position, symbol.replace("/", ""), priority=RequestPriority.CRITICAL
            )
        except APIError as error:
            if self._api_status(error) == 404:
                return None
            raise BrokerError(f"alpaca close {symbol}: {error}") from None
        return self._to_order(raw)

    async def close_all_positions(self) -> list[Order]:
        from alpaca.common.exceptions import APIError

        try:
            responses = await self._call(
                self._client.close_all_positions, True, priority=RequestPriority.CRITICAL
            )
        except APIError as error:
            raise BrokerError(f"alpaca close all: {error}") from None
        return [self._to_order(r.body) for r in responses if getattr(r, "body", None) is not None]

    async def account(self) -> Account:
        from alpaca.common.exceptions import APIError

        try:
            raw = await self._call(self._client.get_account, priority=RequestPriority.ROUTINE)
        except APIError as error:
            raise BrokerError(f"alpaca account: {error}") from None
        return Account(
            cash=_float(raw.cash),
            equity=_float(raw.equity),
            buying_power=_float(raw.buying_power),
            currency=raw.currency or "USD",
        )

    async def close(self) -> None:
        self._calls.close()


# ---- Alpaca's assets as instrument rules -----------------------------------------------------------


def rules_from_asset(symbol: str, asset: Any) -> InstrumentRules:
    """`InstrumentRules` from an Alpaca asset (alpaca-py's `Asset`).

    Crypto: the published `min_order_size`, `min_trade_increment` and `price_increment`, fractions
    in any order type, gtc or ioc, $10 minimum on USD-quoted buys, Alpaca's crypto fee, around the
    clock. Equities: whole or fractional shares by `fractionable` (fractions only in market day
    orders), the sub-penny price bands, day orders first, no fee, the NYSE's sessions.
    """
    if _value(asset.asset_class) == AssetClass.CRYPTO.value:
        increment = _float(asset.min_trade_increment) or _float(asset.min_order_size)
        return InstrumentRules(
            symbol=symbol,
            asset_class=AssetClass.CRYPTO,
            min_quantity=_float(asset.min_order_size) or increment,
            quantity_increment=increment,
            max_quantity=MAX_ORDER_QUANTITY,
            price_increment=_float(asset.price_increment) or EQUITY_PRICE_INCREMENT,
            min_notional=ALPACA_CRYPTO_MIN_NOTIONAL if symbol.endswith("/USD") else 0.0,
            min_notional_sides=frozenset({Side.BUY}),
            fractionable=True,
            shortable=False,
            time_in_force=(TimeInForce.GTC, TimeInForce.IOC),
            fee=ALPACA_CRYPTO_FEE,
            calendar=TradingCalendar.ALWAYS,
        )
    fractionable = bool(asset.fractionable)
    return InstrumentRules(
        symbol=symbol,
        asset_class=AssetClass.US_EQUITY,
        min_quantity=EQUITY_QUANTITY_INCREMENT if fractionable else 1.0,
        quantity_increment=EQUITY_QUANTITY_INCREMENT if fractionable else 1.0,
        max_quantity=MAX_ORDER_QUANTITY,
        price_increment=_float(asset.price_increment) or EQUITY_PRICE_INCREMENT,
        sub_dollar_price_increment=EQUITY_SUB_DOLLAR_PRICE_INCREMENT,
        fractionable=fractionable,
        fractional_order_types=frozenset({OrderType.MARKET}),
        shortable=bool(asset.shortable),
        # Fractional orders must be day orders, so day comes first.
        time_in_force=(
            TimeInForce.DAY,
            TimeInForce.GTC,
            TimeInForce.IOC,
            TimeInForce.FOK,
            TimeInForce.OPG,
            TimeInForce.CLS,
        ),
        calendar=TradingCalendar.XNYS,
    )
