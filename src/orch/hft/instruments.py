"""The instruments this process trades and their rules: the built-in table for the simulated venue.

Only symbols in `ORCH_HFT_SYMBOLS` are known; anything else is refused before the gate values it.
The increments sit well above the journal's and the venue's `QUANTITY_EPSILON` (1e-9), so a
quantity that passes here is never rounded to nothing in one place and kept in another (an order
for 1e-12 used to fill at the venue and be journaled as 0).
"""

from __future__ import annotations

from typing import Any

from orch.contracts.instruments import InstrumentRules
from orch.market.calendars import is_crypto

# Fractional shares to six decimals; US equities' sub-penny rule for prices.
EQUITY_QUANTITY_INCREMENT = 1e-6
# Crypto to one satoshi (1e-8 BTC); USD-quoted pairs priced in cents.
CRYPTO_QUANTITY_INCREMENT = 1e-8
MAX_ORDER_QUANTITY = 1e9


def builtin_rules(symbol: str) -> InstrumentRules:
    if is_crypto(symbol):
        return InstrumentRules(
            symbol=symbol,
            min_quantity=CRYPTO_QUANTITY_INCREMENT,
            quantity_increment=CRYPTO_QUANTITY_INCREMENT,
            max_quantity=MAX_ORDER_QUANTITY,
            price_increment=0.01,
        )
    return InstrumentRules(
        symbol=symbol,
        min_quantity=EQUITY_QUANTITY_INCREMENT,
        quantity_increment=EQUITY_QUANTITY_INCREMENT,
        max_quantity=MAX_ORDER_QUANTITY,
        price_increment=0.01,
        sub_dollar_price_increment=0.0001,
    )


class Instruments:
    def __init__(self, symbols: list[str]) -> None:
        self._rules = {symbol: builtin_rules(symbol) for symbol in symbols}

    def get(self, symbol: str) -> InstrumentRules | None:
        return self._rules.get(symbol)

    def __contains__(self, symbol: str) -> bool:
        return symbol in self._rules

    def order_schema(self) -> dict[str, Any]:
        """JSON Schema keywords an order intent must also meet: a known symbol, on its rules."""
        return {
            "properties": {"symbol": {"enum": list(self._rules)}},
            "allOf": [
                {
                    "if": {"properties": {"symbol": {"const": symbol}}, "required": ["symbol"]},
                    "then": {"properties": rules.json_schema()},
                }
                for symbol, rules in self._rules.items()
            ],
        }

    def problem(self, symbol: str, quantity: float, limit_price: float | None) -> str | None:
        """Why this order cannot exist whatever the limits say, or None."""
        rules = self._rules.get(symbol)
        if rules is None:
            return f"unknown symbol {clip(symbol)}: this process trades {', '.join(self._rules)}"
        problem = rules.quantity_problem(quantity)
        if problem is None and limit_price is not None:
            problem = rules.price_problem(limit_price)
        return problem


def clip(text: str, limit: int = 40) -> str:
    """Caller-supplied text as echoed in an answer: quoted, and never more than `limit` characters."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"
