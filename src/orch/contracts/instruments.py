"""An instrument's trading rules: what an order must look like before any venue sees it.

One home for them, so the order router rounds, the risk gate denies and the control API refuses the
same things with the same words. Where a venue publishes its rules (Alpaca's assets endpoint:
`min_order_size`, `min_trade_increment`, `price_increment`, `fractionable`, the asset class), its
broker adapter builds `InstrumentRules` from them (`Broker.instrument_rules`); the simulated venue's
rules are `orch.hft.instruments`' built-in table.

Rounding happens before the gate (`round_price`, `round_quantity`); what still breaks a rule after
rounding is a denial with its `DenialReason` (`RuleBreach`).
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from orch.contracts.trading import DenialReason, OrderType, Side

# ---- Vocabulary ------------------------------------------------------------------------------------

# Increments are whole multiples within this many increments (floats add small errors: 0.1 + 0.2).
_ON_GRID_TOLERANCE = 1e-6
# A sale of exactly what is held passes whatever float sums left in the last digits.
_SHORT_TOLERANCE = 1e-9


class AssetClass(StrEnum):
    US_EQUITY = "us_equity"  # Alpaca's names
    CRYPTO = "crypto"


class TimeInForce(StrEnum):
    DAY = "day"
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"
    OPG = "opg"
    CLS = "cls"


class TradingCalendar(StrEnum):
    """When the instrument trades; `orch.market.calendars.is_tradable` answers for a moment."""

    ALWAYS = "24/7"  # crypto
    XNYS = "XNYS"  # the NYSE's sessions: US equities


class FeeAsset(StrEnum):
    """What the venue takes its fee out of."""

    CASH = "cash"  # the quote currency, on both sides (the simulated venue, equities' commissions)
    # The asset the trade credits: a buy's fee in the asset bought, a sale's in the cash it brings
    # (Alpaca crypto: a 0.1 BTC buy at 0.25 % leaves 0.09975 BTC).
    PROCEEDS = "proceeds"


class Liquidity(StrEnum):
    MAKER = "maker"  # a limit order that rested on the book before it filled
    TAKER = "taker"


class FeeModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    maker_bps: float = Field(default=0.0, ge=0)
    taker_bps: float = Field(default=0.0, ge=0)
    charged_in: FeeAsset = FeeAsset.CASH

    def rate(self, liquidity: Liquidity) -> float:
        return (self.maker_bps if liquidity is Liquidity.MAKER else self.taker_bps) / 10_000

    def fee_quantity(self, side: Side, quantity: float, liquidity: Liquidity) -> float:
        """The part of a fill's quantity the venue keeps: what the position is NOT credited.

        Only a buy whose fee comes out of the asset bought has one; every other fee is cash.
        """
        if side is Side.BUY and self.charged_in is FeeAsset.PROCEEDS:
            return quantity * self.rate(liquidity)
        return 0.0

    def cash_fee(self, side: Side, quantity: float, price: float, liquidity: Liquidity) -> float:
        if side is Side.BUY and self.charged_in is FeeAsset.PROCEEDS:
            return 0.0
        return quantity * price * self.rate(liquidity)


NO_FEES = FeeModel()


class RuleBreach(NamedTuple):
    """Why an order breaks its instrument's rules: the gate's typed reason and a sentence."""

    reason: DenialReason
    detail: str


# ---- The rules -------------------------------------------------------------------------------------


class InstrumentRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    symbol: str
    asset_class: AssetClass = AssetClass.US_EQUITY
    min_quantity: float = Field(gt=0)
    quantity_increment: float = Field(gt=0)
    # No venue takes more in one order; larger is a typo (1e308 shares), refused before any limit.
    max_quantity: float = Field(gt=0)
    # The price grid; below `sub_dollar_below` prices use `sub_dollar_price_increment` (US equities'
    # sub-penny rule: cents from $1 up, 1/100 cent below).
    price_increment: float = Field(gt=0)
    sub_dollar_price_increment: float | None = Field(default=None, gt=0)
    # quantity x price at least this, on these sides (Alpaca: $10 on USD-quoted crypto buys, so the
    # last few dollars of a position can still be sold; 0: no minimum).
    min_notional: float = Field(default=0.0, ge=0)
    min_notional_sides: frozenset[Side] = frozenset(Side)
    # False: whole units only. True: fractions, but only in `fractional_order_types` (Alpaca
    # equities: market orders; crypto: any).
    fractionable: bool = True
    fractional_order_types: frozenset[OrderType] = frozenset(OrderType)
    order_types: frozenset[OrderType] = frozenset(OrderType)
    # False: no sale beyond what is held (Alpaca crypto: "insufficient balance").
    shortable: bool = True
    # The first is what the router sends; the broker adapter maps it onto the venue's.
    time_in_force: tuple[TimeInForce, ...] = (TimeInForce.DAY,)
    fee: FeeModel = NO_FEES
    calendar: TradingCalendar = TradingCalendar.XNYS

    @property
    def default_time_in_force(self) -> TimeInForce:
        return self.time_in_force[0]

    def price_increment_at(self, price: float) -> float:
        if self.sub_dollar_price_increment is not None and price < 1.0:
            return self.sub_dollar_price_increment
        return self.price_increment

    # ---- Rounding (before the gate) ----------------------------------------------------------------

    def quantity_step(self, order_type: OrderType | None = None) -> float:
        """The increment an order's quantity moves in: whole units where fractions are not taken."""
        whole_only = order_type is not None and order_type not in self.fractional_order_types
        if not self.fractionable or whole_only:
            return max(self.quantity_increment, 1.0)
        return self.quantity_increment

    def round_quantity(self, quantity: float, order_type: OrderType | None = None) -> float:
        """Down to the increment (an order never grows by rounding); below the minimum stays below it."""
        step = self.quantity_step(order_type)
        return round(math.floor(quantity / step + _ON_GRID_TOLERANCE) * step, 12)

    def round_price(self, price: float, down: bool) -> float:
        """To the grid: down for a buy's limit, up for a sell's, so rounding never pays more."""
        increment = self.price_increment_at(price)
        steps = price / increment
        steps = math.floor(steps + _ON_GRID_TOLERANCE) if down else math.ceil(steps - _ON_GRID_TOLERANCE)
        return round(steps * increment, 10)

    # ---- Breaches (what the gate denies after rounding) ----------------------------------------------

    def short_breach(self, side: Side, quantity: float, held_after_open_sells: float) -> RuleBreach | None:
        """A sale beyond what is held (less what open sales may take) on an instrument never shorted."""
        if self.shortable or side is not Side.SELL or quantity <= held_after_open_sells + _SHORT_TOLERANCE:
            return None
        return RuleBreach(
            DenialReason.NOT_SHORTABLE,
            f"{self.symbol} cannot be sold short: selling {quantity:g} with "
            f"{max(held_after_open_sells, 0.0):g} held and not already on sale",
        )

    def quantity_problem(self, quantity: float) -> str | None:
        """Why `quantity` cannot be ordered whatever the order type, or None."""
        breach = self.quantity_breach(quantity)
        return None if breach is None else breach.detail

    def quantity_breach(self, quantity: float) -> RuleBreach | None:
        if not math.isfinite(quantity) or quantity < 0:
            detail = f"quantity must be a finite number above 0, got {quantity:g}"
            return RuleBreach(DenialReason.INVALID, detail)
        if quantity < self.min_quantity:
            return RuleBreach(
                DenialReason.BELOW_MINIMUM,
                f"quantity {quantity:g} is below {self.symbol}'s minimum {self.min_quantity:g}",
            )
        if quantity > self.max_quantity:
            return RuleBreach(
                DenialReason.INVALID,
                f"quantity {quantity:g} is above {self.symbol}'s maximum {self.max_quantity:g}",
            )
        if not on_increment(quantity, self.quantity_increment):
            return RuleBreach(
                DenialReason.INVALID_INCREMENT,
                f"quantity {quantity:g} is not a multiple of {self.symbol}'s increment "
                f"{self.quantity_increment:g}",
            )
        return None

    def price_problem(self, price: float) -> str | None:
        """Why `price` cannot be a limit price, or None."""
        breach = self.price_breach(price)
        return None if breach is None else breach.detail

    def price_breach(self, price: float) -> RuleBreach | None:
        if not math.isfinite(price) or price <= 0:
            return RuleBreach(DenialReason.INVALID, f"price must be a finite number above 0, got {price:g}")
        increment = self.price_increment_at(price)
        if not on_increment(price, increment):
            return RuleBreach(
                DenialReason.INVALID_INCREMENT,
                f"price {price:g} is not a multiple of {self.symbol}'s price increment {increment:g}",
            )
        return None

    def order_breach(
        self,
        side: Side,
        quantity: float,
        order_type: OrderType,
        limit_price: float | None,
        value_price: float,
    ) -> RuleBreach | None:
        """Every rule an order must meet, valued at `value_price` (its limit, or the market's)."""
        breach = self.quantity_breach(quantity)
        if breach is None and limit_price is not None:
            breach = self.price_breach(limit_price)
        if breach is not None:
            return breach
        if order_type not in self.order_types:
            return RuleBreach(
                DenialReason.ORDER_TYPE_NOT_ALLOWED, f"{self.symbol} takes no {order_type.value} orders"
            )
        if not on_increment(quantity, 1.0):
            if not self.fractionable:
                return RuleBreach(
                    DenialReason.NOT_FRACTIONABLE,
                    f"{self.symbol} is not fractionable: quantity {quantity:g} must be whole",
                )
            if order_type not in self.fractional_order_types:
                allowed = ", ".join(sorted(kind.value for kind in self.fractional_order_types))
                return RuleBreach(
                    DenialReason.NOT_FRACTIONABLE,
                    f"a fractional {self.symbol} quantity ({quantity:g}) goes only in {allowed} orders, "
                    f"not {order_type.value}",
                )
        notional = quantity * value_price
        if side in self.min_notional_sides and notional < self.min_notional:
            return RuleBreach(
                DenialReason.BELOW_MINIMUM,
                f"order notional {notional:,.2f} is below {self.symbol}'s minimum {self.min_notional:,.2f}",
            )
        return None

    def json_schema(self) -> dict[str, Any]:
        """The grid rules as JSON Schema keywords for an order's `quantity` and `limit_price`."""
        price: dict[str, Any] = {"exclusiveMinimum": 0, "multipleOf": self.price_increment}
        if self.sub_dollar_price_increment is not None:
            price = {
                "anyOf": [
                    {"minimum": 1, "multipleOf": self.price_increment},
                    {
                        "exclusiveMinimum": 0,
                        "exclusiveMaximum": 1,
                        "multipleOf": self.sub_dollar_price_increment,
                    },
                ]
            }
        return {
            "quantity": {
                "minimum": self.min_quantity,
                "maximum": self.max_quantity,
                "multipleOf": self.quantity_increment,
            },
            "limit_price": {"anyOf": [{"type": "null"}, {"type": "number", **price}]},
        }


def on_increment(value: float, increment: float) -> bool:
    steps = value / increment
    # Division errs by about 1e-16 of `steps`; the tolerance grows with it, never to a whole step.
    return abs(steps - round(steps)) <= _ON_GRID_TOLERANCE * max(1.0, abs(steps) * 1e-6)
