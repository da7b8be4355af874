"""The one interface every market data source implements: simulated, csv/parquet files, Alpaca.

Agents take `PriceHistory` (numpy columns) rather than lists of `Bar` because every indicator is
vectorised; `Bar` is the boundary type for validation, storage and the wire.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from orch.contracts.market import Bar
from orch.market.calendars import is_crypto

__all__ = [
    "CredentialsRefused",
    "MarketDataError",
    "MarketDataSource",
    "PriceHistory",
    "UnknownSymbolError",
    "is_crypto",
]


class MarketDataError(RuntimeError):
    """A source could not answer (down, unauthorised, no such symbol). Retryable unless a subclass says."""


class UnknownSymbolError(MarketDataError):
    pass


class CredentialsRefused(MarketDataError):
    """The source refused the keys it was given: no retry can help until an operator changes them."""


@dataclass(frozen=True)
class PriceHistory:
    """Bars of one symbol, oldest first, as aligned numpy columns."""

    symbol: str
    timestamps: np.ndarray  # datetime64[s], UTC
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.close)

    @classmethod
    def from_bars(cls, symbol: str, bars: list[Bar]) -> PriceHistory:
        return cls(
            symbol=symbol,
            timestamps=np.array([b.timestamp.replace(tzinfo=None) for b in bars], dtype="datetime64[s]"),
            open=np.array([b.open for b in bars], dtype=float),
            high=np.array([b.high for b in bars], dtype=float),
            low=np.array([b.low for b in bars], dtype=float),
            close=np.array([b.close for b in bars], dtype=float),
            volume=np.array([b.volume for b in bars], dtype=float),
        )


class MarketDataSource(ABC):
    """A named source of bars for a universe of symbols."""

    name: str

    @abstractmethod
    def universe(self) -> list[str]:
        """The symbols this source can serve."""

    @abstractmethod
    def history(self, symbol: str, bars: int, end: datetime | None = None) -> PriceHistory:
        """The last `bars` bars of `symbol` ending at or before `end` (default: now)."""

    def close(self) -> None:  # noqa: B027 - most sources hold nothing open: nothing to release
        """Release what the source holds open (Alpaca's call threads); most hold nothing."""
