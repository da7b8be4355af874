"""The rules by which Alpaca refuses requests, each one enforced by default and each one relaxable.

A test relaxes a rule only to isolate another (`FakeAlpacaConfig(relaxed_rules=...)`, the command
line's `--relax RULE`, or `POST /_fake/admin/rules`); code that only works with a rule relaxed would
be refused by Alpaca.

Refusals carry Alpaca's status, code and message. Where a text below was seen in a real Alpaca
response (quoted in public bug reports), it says so; the others are the fake's best rendering and
say that too.
"""

from __future__ import annotations

import enum
from decimal import Decimal

from orch.fake_alpaca.errors import (
    CODE_FORBIDDEN,
    CODE_RATE_LIMITED,
    CODE_UNPROCESSABLE,
    AlpacaError,
)


class Rule(enum.StrEnum):
    SUB_PENNY = "sub_penny"  # equity limit prices: 2 decimals from $1, 4 below
    WASH_TRADE = "wash_trade"  # no order that would cross the account's own opposite order
    RATE_LIMIT = "rate_limit"  # 200 trading requests a minute per account
    MARKET_HOURS = "market_hours"  # equities fill only in NYSE sessions; day orders expire at the close
    CRYPTO_TIME_IN_FORCE = "crypto_time_in_force"  # crypto takes gtc and ioc only
    CRYPTO_MIN_NOTIONAL = "crypto_min_notional"  # USD-quoted crypto buys of at least $10
    CRYPTO_FEE = "crypto_fee"  # the fee comes out of what the trade credits
    FRACTIONAL = "fractional"  # fractional equity quantities: market day orders on fractionable assets


def parse_rules(names: object) -> frozenset[Rule]:
    """Rules from their names (a list of strings); ValueError names the unknown one."""
    if not isinstance(names, list | tuple | set | frozenset):
        raise ValueError("rules must be a list of names")
    try:
        return frozenset(Rule(name) for name in names)
    except ValueError:
        known = ", ".join(rule.value for rule in Rule)
        raise ValueError(f"unknown rule in {sorted(map(str, names))}: the rules are {known}") from None


# ---- Refusals, as Alpaca words them ---------------------------------------------------------------


def sub_penny(limit_price: str) -> AlpacaError:
    # Text seen from Alpaca (alpaca-trade-api-csharp#497); the code is the fake's assumption.
    return AlpacaError(
        422,
        CODE_UNPROCESSABLE,
        f"invalid limit_price {limit_price}. sub-penny increment does not fulfill minimum pricing criteria",
    )


def wash_trade() -> AlpacaError:
    # Status, code and text seen from Alpaca (alpaca-java#145).
    return AlpacaError(422, CODE_UNPROCESSABLE, "potential wash trade detected. use complex orders")


def rate_limited() -> AlpacaError:
    # Text seen from Alpaca (alpaca-trade-api-csharp#416); the code is the fake's assumption.
    return AlpacaError(429, CODE_RATE_LIMITED, "rate limit exceeded")


def crypto_time_in_force() -> AlpacaError:
    # Status, code and text seen from Alpaca (alpaca-py#681, apca#27).
    return AlpacaError(422, CODE_UNPROCESSABLE, "invalid crypto time_in_force")


def crypto_min_notional(minimum: Decimal) -> AlpacaError:
    # Status, code and text seen from Alpaca's paper API (ccxt#30101, a live probe).
    return AlpacaError(
        403, CODE_FORBIDDEN, f"cost basis must be >= minimal amount of order {minimum.normalize():f}"
    )


def not_fractionable(symbol: str) -> AlpacaError:
    # The fake's rendering: no public record of Alpaca's exact text.
    return AlpacaError(422, CODE_UNPROCESSABLE, f"asset {symbol} is not fractionable")


def fractional_not_market() -> AlpacaError:
    # The fake's rendering: no public record of Alpaca's exact text.
    return AlpacaError(422, CODE_UNPROCESSABLE, "fractional orders must be market orders")


def fractional_not_day() -> AlpacaError:
    # Paraphrased in alpaca-java#140 ("all fractional orders must be DAY orders"); exact text unconfirmed.
    return AlpacaError(422, CODE_UNPROCESSABLE, "fractional orders must be DAY orders")


def fractional_short() -> AlpacaError:
    # Text seen from Alpaca (alpaca-trade-api-python#405); the status and code are the fake's assumption.
    return AlpacaError(403, CODE_FORBIDDEN, "fractional orders are not allowed to short")
