"""Market data from Alpaca through alpaca-py: daily or minute bars of stocks and crypto pairs.

Keys come from ALPACA_API_KEY and ALPACA_SECRET_KEY (or the constructor); they are handed to
alpaca-py and never stored on this object, logged, put in a repr or in an error message.
`url_override` points alpaca-py elsewhere, such as the fake Alpaca server (`orch.fake_alpaca`).

Timeouts and limits: alpaca-py's REST calls block and have no timeout (a `requests` session without
one). `orch.resources` bounds every call here, as it does the broker's: the HTTP session gets a
connect and read timeout (`bound_session`), and the call itself runs on a small thread pool
(`BlockingCalls`) where the caller waits at most `timeout_seconds` for the whole of it (pages,
alpaca-py's own retries of 429 and 504 and all), because a read timeout bounds each read, not the call.
Given the worker's `ResourcePool`, every call also waits for the `alpaca-data` rate limit and is
counted in the pool's statistics.

Every failure becomes a `MarketDataError` (`UnknownSymbolError` when Alpaca has no bars at all for
the symbol); the caller never sees alpaca-py's or requests' exceptions.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from orch.contracts.market import Bar
from orch.market.base import (
    CredentialsRefused,
    MarketDataError,
    MarketDataSource,
    PriceHistory,
    UnknownSymbolError,
    is_crypto,
)
from orch.resources import BlockingCalls, CallsClosed, CallTimeout, RateLimited, ResourcePool, bound_session

T = TypeVar("T")

API_KEY_VARIABLE = "ALPACA_API_KEY"
RATE_LIMITED_API = "alpaca-data"  # its name in the resource pool's rate limits and statistics
SECRET_KEY_VARIABLE = "ALPACA_SECRET_KEY"
TIMEFRAMES = ("1D", "1Min")
_PERIOD = {"1D": timedelta(days=1), "1Min": timedelta(minutes=1)}
_EQUITY_SESSION_MINUTES = 390
_NEW_YORK = ZoneInfo("America/New_York")
_SESSION_CLOSE = time(16, 0)
# How far back to ask so that the last N bars are inside the window despite weekends and holidays
# (and, for minute bars, nights); asking too far back costs nothing, since the newest come first.
_LOOKBACK_SLACK = 1.5
_LOOKBACK_EXTRA_DAYS = {"1D": 10, "1Min": 4}


def default_universe() -> list[str]:
    """The simulated market's symbols: real tickers, so a configuration carries over unchanged."""
    from orch.market.simulated import SimulatedMarket

    return SimulatedMarket().universe()


class AlpacaMarketData(MarketDataSource):
    """Bars of `symbols` at one timeframe ("1D" or "1Min") from Alpaca's market-data API."""

    name = "alpaca"

    def __init__(
        self,
        symbols: Sequence[str] | None = None,
        timeframe: str = "1D",
        *,
        url_override: str | None = None,
        feed: str = "iex",
        timeout_seconds: float = 10.0,
        max_threads: int = 4,
        api_key: str | None = None,
        secret_key: str | None = None,
        resources: ResourcePool | None = None,
    ) -> None:
        if timeframe not in TIMEFRAMES:
            raise ValueError(f"timeframe must be one of {', '.join(TIMEFRAMES)}, not {timeframe!r}")
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        api_key = api_key or os.environ.get(API_KEY_VARIABLE)
        secret_key = secret_key or os.environ.get(SECRET_KEY_VARIABLE)
        if not api_key or not secret_key:
            raise MarketDataError(f"Alpaca market data needs {API_KEY_VARIABLE} and {SECRET_KEY_VARIABLE}")

        from alpaca.data.enums import DataFeed
        from alpaca.data.historical import CryptoHistoricalDataClient, StockHistoricalDataClient

        self.timeframe = timeframe
        self.url = url_override
        self.feed = DataFeed(feed)
        self.timeout_seconds = timeout_seconds
        self._symbols = list(symbols) if symbols is not None else default_universe()
        self._stocks = StockHistoricalDataClient(api_key, secret_key, url_override=url_override)
        self._crypto = CryptoHistoricalDataClient(api_key, secret_key, url_override=url_override)
        for client in (self._stocks, self._crypto):
            bound_session(client, timeout_seconds)
        self._calls = BlockingCalls(
            RATE_LIMITED_API, timeout_seconds=timeout_seconds, resources=resources, max_threads=max_threads
        )

    def __repr__(self) -> str:
        return (
            f"AlpacaMarketData(timeframe={self.timeframe!r}, feed={self.feed.value!r}, url={self.url!r}, "
            f"symbols={len(self._symbols)})"
        )

    def close(self) -> None:
        """Stop the worker threads (waiting for none: a hung call ends by its own socket timeout)."""
        self._calls.close()

    def universe(self) -> list[str]:
        return list(self._symbols)

    def history(self, symbol: str, bars: int, end: datetime | None = None) -> PriceHistory:
        """The last `bars` bars that ended at or before `end` (default now); fewer if Alpaca has fewer."""
        if bars < 1:
            raise ValueError(f"bars must be at least 1, not {bars}")
        end = _as_utc(end or datetime.now(UTC))
        # Alpaca filters on open times, so the newest bar may still be running: ask for one more.
        raw = self._call(self._fetch, symbol, end - self._lookback(bars), end, bars + 1)
        if not raw:
            raise UnknownSymbolError(f"alpaca has no {self.timeframe} bars for {symbol!r}")
        ended = [row for row in raw if self._end_of_bar(symbol, _as_utc(row.timestamp)) <= end]
        try:
            parsed = [
                Bar(
                    symbol=symbol,
                    timestamp=_as_utc(row.timestamp),
                    open=row.open,
                    high=row.high,
                    low=row.low,
                    close=row.close,
                    volume=row.volume,
                )
                for row in reversed(ended[:bars])  # asked newest first, so the limit keeps the latest
            ]
        except ValueError as error:
            raise MarketDataError(f"alpaca sent an invalid bar for {symbol!r}: {error}") from None
        return PriceHistory.from_bars(symbol, parsed)

    # ---- Internals -------------------------------------------------------------------------------

    def _end_of_bar(self, symbol: str, opened: datetime) -> datetime:
        if self.timeframe == "1D" and not is_crypto(symbol):
            # A daily equity bar is done at the close. Its trading date is the UTC date of its open
            # time, whether stamped at midnight New York (Alpaca) or midnight UTC (the simulation).
            return datetime.combine(opened.date(), _SESSION_CLOSE, _NEW_YORK)
        return opened + _PERIOD[self.timeframe]

    def _lookback(self, bars: int) -> timedelta:
        if self.timeframe == "1D":
            days = bars * _LOOKBACK_SLACK
        else:
            days = bars / _EQUITY_SESSION_MINUTES * _LOOKBACK_SLACK
        return timedelta(days=math.ceil(days) + _LOOKBACK_EXTRA_DAYS[self.timeframe])

    def _fetch(self, symbol: str, start: datetime, end: datetime, limit: int) -> list[Any]:
        from alpaca.common.enums import Sort
        from alpaca.data.requests import CryptoBarsRequest, StockBarsRequest
        from alpaca.data.timeframe import TimeFrame

        timeframe = TimeFrame.Day if self.timeframe == "1D" else TimeFrame.Minute
        common = {
            "symbol_or_symbols": symbol,
            "timeframe": timeframe,
            "start": start,
            "end": end,
            "limit": limit,
            "sort": Sort.DESC,
        }
        if is_crypto(symbol):
            barset = self._crypto.get_crypto_bars(CryptoBarsRequest(**common))
        else:
            barset = self._stocks.get_stock_bars(StockBarsRequest(**common, feed=self.feed))
        return list(barset.data.get(symbol, []))

    def _call(self, function: Callable[..., T], *args: Any) -> T:
        from alpaca.common.exceptions import APIError
        from requests import RequestException, Timeout

        try:
            return self._calls.call_sync(function, *args)
        except CallsClosed:
            raise MarketDataError("alpaca market data is closed") from None
        except (CallTimeout, Timeout):
            # One message for a hung server, whichever timer fires first: ours, or the session's read timeout.
            raise MarketDataError(f"alpaca did not answer within {self.timeout_seconds:g}s") from None
        except RateLimited as error:
            raise MarketDataError(str(error)) from None
        except APIError as error:
            refused = getattr(error, "status_code", None) in (401, 403)
            raise (CredentialsRefused if refused else MarketDataError)(_describe_api_error(error)) from None
        except RequestException as error:
            raise MarketDataError(f"alpaca unreachable: {type(error).__name__}: {error}") from None
        except Exception as error:  # alpaca-py could not read the answer
            raise MarketDataError(f"alpaca answered unexpectedly: {type(error).__name__}: {error}") from None


def _describe_api_error(error: Any) -> str:
    status = getattr(error, "status_code", None)
    if status in (401, 403):
        return f"alpaca refused the credentials (HTTP {status})"
    try:
        message = error.message
    except Exception:
        message = str(error)[:200]
    return f"alpaca error (HTTP {status}): {message}"


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
