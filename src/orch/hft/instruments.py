"""The instruments this process trades and their rules: the broker's, else the built-in table.

Only symbols in `ORCH_HFT_SYMBOLS` are known; anything else is refused before the gate values it.
A broker that publishes rules (`Broker.instrument_rules`, Alpaca's assets endpoint) replaces the
built-in rules of the symbols it answers for (`Instruments.load`); the built-in table is the
simulated venue's. The increments sit well above the journal's and the venue's `QUANTITY_EPSILON`
(1e-9), so a quantity that passes here is never rounded to nothing in one place and kept in another
(an order for 1e-12 used to fill at the venue and be journaled as 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orch.brokers.simulated import SimulatedVenueConfig
from orch.contracts.instruments import (
    AssetClass,
    FeeAsset,
    FeeModel,
    InstrumentRules,
    RuleBreach,
    TimeInForce,
    TradingCalendar,
)
from orch.contracts.trading import DenialReason, OrderType, Side
from orch.market.calendars import is_crypto

# ---- The built-in table (the simulated venue) -------------------------------------------------------

# Fractional shares to six decimals; US equities' sub-penny rule for prices.
EQUITY_QUANTITY_INCREMENT = 1e-6
# Crypto to one satoshi (1e-8 BTC); USD-quoted pairs priced in cents.
CRYPTO_QUANTITY_INCREMENT = 1e-8
MAX_ORDER_QUANTITY = 1e9
# The simulated venue charges its fee in cash on both sides, at its configured rate.
SIMULATED_VENUE_FEE = FeeModel(
    maker_bps=SimulatedVenueConfig.fee_bps, taker_bps=SimulatedVenueConfig.fee_bps, charged_in=FeeAsset.CASH
)


def builtin_rules(symbol: str) -> InstrumentRules:
    if is_crypto(symbol):
        return InstrumentRules(
            symbol=symbol,
            asset_class=AssetClass.CRYPTO,
            min_quantity=CRYPTO_QUANTITY_INCREMENT,
            quantity_increment=CRYPTO_QUANTITY_INCREMENT,
            max_quantity=MAX_ORDER_QUANTITY,
            price_increment=0.01,
            time_in_force=(TimeInForce.GTC, TimeInForce.IOC),
            fee=SIMULATED_VENUE_FEE,
            calendar=TradingCalendar.ALWAYS,
        )
    return InstrumentRules(
        symbol=symbol,
        asset_class=AssetClass.US_EQUITY,
        min_quantity=EQUITY_QUANTITY_INCREMENT,
        quantity_increment=EQUITY_QUANTITY_INCREMENT,
        max_quantity=MAX_ORDER_QUANTITY,
        price_increment=0.01,
        sub_dollar_price_increment=0.0001,
        time_in_force=(TimeInForce.DAY,),
        fee=SIMULATED_VENUE_FEE,
        calendar=TradingCalendar.XNYS,
    )


# ---- The process's instruments ------------------------------------------------------------------------


class Instruments:
    def __init__(self, symbols: list[str], published: Mapping[str, InstrumentRules] | None = None) -> None:
        self._rules = {symbol: builtin_rules(symbol) for symbol in symbols}
        if published:
            self.load(published)

    def load(self, published: Mapping[str, InstrumentRules]) -> list[str]:
        """Take the broker's rules for the symbols this process trades; returns the symbols replaced.

        Rules for other symbols are ignored: the process trades `ORCH_HFT_SYMBOLS` only.
        """
        replaced = [symbol for symbol in published if symbol in self._rules]
        for symbol in replaced:
            self._rules[symbol] = published[symbol]
        return replaced

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
        """Why this order cannot exist whatever the limits say (unknown symbol, off the grid), or None."""
        rules = self._rules.get(symbol)
        if rules is None:
            return self.unknown(symbol).detail
        problem = rules.quantity_problem(quantity)
        if problem is None and limit_price is not None:
            problem = rules.price_problem(limit_price)
        return problem

    def unknown(self, symbol: str) -> RuleBreach:
        trades = ", ".join(self._rules)
        detail = f"unknown symbol {clip(symbol)}: this process trades {trades}"
        return RuleBreach(DenialReason.INVALID, detail)

    def rounded(
        self, symbol: str, side: Side, quantity: float, order_type: OrderType, limit_price: float | None
    ) -> tuple[float, float | None]:
        """The order on its instrument's grid: quantity down, a buy's limit down, a sell's up."""
        rules = self._rules.get(symbol)
        if rules is None:
            return quantity, limit_price
        quantity = rules.round_quantity(quantity, order_type)
        if limit_price is not None:
            limit_price = rules.round_price(limit_price, down=side is Side.BUY)
        return quantity, limit_price


def clip(text: str, limit: int = 40) -> str:
    """Caller-supplied text as echoed in an answer: quoted, and never more than `limit` characters."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"
