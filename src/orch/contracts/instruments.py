"""An instrument's trading rules: what a quantity and a price must look like before any venue sees them.

One home for them, so the risk gate and the control API refuse the same things with the same words.
Today `orch hft` has a built-in table (`orch.hft.instruments`); issue 9 loads the rules from the
broker (Alpaca's assets publish `min_order_size`, `min_trade_increment`, `price_increment`).
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# Increments are whole multiples within this many increments (floats add small errors: 0.1 + 0.2).
_ON_GRID_TOLERANCE = 1e-6


def on_increment(value: float, increment: float) -> bool:
    steps = value / increment
    return abs(steps - round(steps)) <= _ON_GRID_TOLERANCE * max(1.0, abs(steps) * 1e-3)


class InstrumentRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    symbol: str
    min_quantity: float = Field(gt=0)
    quantity_increment: float = Field(gt=0)
    # No venue takes more in one order; larger is a typo (1e308 shares), refused before any limit.
    max_quantity: float = Field(gt=0)
    # The price grid; below `sub_dollar_below` prices use `sub_dollar_price_increment` (US equities'
    # sub-penny rule: cents from $1 up, 1/100 cent below).
    price_increment: float = Field(gt=0)
    sub_dollar_price_increment: float | None = Field(default=None, gt=0)

    def price_increment_at(self, price: float) -> float:
        if self.sub_dollar_price_increment is not None and price < 1.0:
            return self.sub_dollar_price_increment
        return self.price_increment

    def quantity_problem(self, quantity: float) -> str | None:
        """Why `quantity` cannot be ordered, or None."""
        if not math.isfinite(quantity) or quantity <= 0:
            return f"quantity must be a finite number above 0, got {quantity:g}"
        if quantity < self.min_quantity:
            return f"quantity {quantity:g} is below {self.symbol}'s minimum {self.min_quantity:g}"
        if quantity > self.max_quantity:
            return f"quantity {quantity:g} is above {self.symbol}'s maximum {self.max_quantity:g}"
        if not on_increment(quantity, self.quantity_increment):
            increment = self.quantity_increment
            return f"quantity {quantity:g} is not a multiple of {self.symbol}'s increment {increment:g}"
        return None

    def price_problem(self, price: float) -> str | None:
        """Why `price` cannot be a limit price, or None."""
        if not math.isfinite(price) or price <= 0:
            return f"price must be a finite number above 0, got {price:g}"
        increment = self.price_increment_at(price)
        if not on_increment(price, increment):
            return f"price {price:g} is not a multiple of {self.symbol}'s price increment {increment:g}"
        return None

    def json_schema(self) -> dict[str, Any]:
        """The same rules as JSON Schema keywords for an order's `quantity` and `limit_price`."""
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

    def round_quantity(self, quantity: float) -> float:
        """Down to the increment (an order never grows by rounding); 0 when below the minimum."""
        rounded = (
            math.floor(quantity / self.quantity_increment + _ON_GRID_TOLERANCE) * self.quantity_increment
        )
        rounded = round(rounded, 12)
        return rounded if rounded >= self.min_quantity else 0.0

    def round_price(self, price: float, down: bool) -> float:
        """To the grid: down for a buy's limit, up for a sell's, so rounding never pays more."""
        increment = self.price_increment_at(price)
        steps = price / increment
        steps = math.floor(steps + _ON_GRID_TOLERANCE) if down else math.ceil(steps - _ON_GRID_TOLERANCE)
        return round(steps * increment, 10)
