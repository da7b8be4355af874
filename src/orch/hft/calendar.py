"""The weekend rule: on Saturday and Sunday (UTC) only crypto symbols trade.

The risk gate enforces it for every order; tier 2 asks it before proposing an entry, so a weekend
does not fill the denial counters with plans it knew it could not enter.
"""

from __future__ import annotations

from datetime import UTC, datetime

from orch.market.base import is_crypto

__all__ = ["is_crypto", "is_tradable", "is_weekend"]

SATURDAY = 5


def is_weekend(epoch_seconds: float) -> bool:
    return datetime.fromtimestamp(epoch_seconds, UTC).weekday() >= SATURDAY


def is_tradable(symbol: str, epoch_seconds: float) -> bool:
    return is_crypto(symbol) or not is_weekend(epoch_seconds)
