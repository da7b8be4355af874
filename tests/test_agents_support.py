"""Synthetic bars with known shapes for the agents' tests (no tests here).

Each series is built from chosen log returns, so a test knows what the agents should find in it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from orch.market.base import PriceHistory

START = datetime(2025, 3, 3, tzinfo=UTC)
STEP = timedelta(minutes=1)


def history_from_returns(
    symbol: str,
    log_returns: np.ndarray,
    *,
    start_price: float = 100.0,
    volume: np.ndarray | None = None,
    start: datetime = START,
    step: timedelta = STEP,
    wick: float = 0.001,
) -> PriceHistory:
    """Bars whose closes follow `log_returns`; each bar opens at the previous close, wicks `wick` beyond."""
    close = start_price * np.exp(np.concatenate([[0.0], np.cumsum(log_returns)]))
    n = len(close)
    open_ = np.concatenate([close[:1], close[:-1]])
    seconds = int(start.timestamp()) + np.arange(n) * int(step.total_seconds())
    return PriceHistory(
        symbol=symbol,
        timestamps=seconds.astype("datetime64[s]"),
        open=open_,
        high=np.maximum(open_, close) * (1 + wick),
        low=np.minimum(open_, close) * (1 - wick),
        close=close,
        volume=np.full(n, 1_000.0) if volume is None else np.asarray(volume, dtype=float),
    )


def uptrend(symbol: str = "UP", bars: int = 200, drift: float = 0.003, noise: float = 0.004, seed: int = 1):
    rng = np.random.default_rng(seed)
    return history_from_returns(symbol, drift + noise * rng.standard_normal(bars - 1))


def random_walk(symbol: str = "RW", bars: int = 200, noise: float = 0.01, seed: int = 2) -> PriceHistory:
    rng = np.random.default_rng(seed)
    return history_from_returns(symbol, noise * rng.standard_normal(bars - 1))


def range_bound(symbol: str = "RANGE", bars: int = 200, noise: float = 0.004, seed: int = 3) -> PriceHistory:
    """A price pulled back to 100 every bar (a strongly mean-reverting AR(1) in log price)."""
    rng = np.random.default_rng(seed)
    log_price = np.zeros(bars)
    for i in range(1, bars):
        log_price[i] = 0.6 * log_price[i - 1] + noise * rng.standard_normal()
    return history_from_returns(symbol, np.diff(log_price))


def now_after(history: PriceHistory) -> datetime:
    """The moment just after the last bar closed: the data is fresh."""
    last = datetime.fromtimestamp(int(history.timestamps[-1].astype(np.int64)), UTC)
    return last + STEP


def with_last_bar(history: PriceHistory, close_factor: float, volume_factor: float = 1.0) -> PriceHistory:
    """The same bars, but the last one closes `close_factor` times the previous close on more volume."""
    close = history.close.copy()
    close[-1] = close[-2] * close_factor
    open_ = history.open.copy()
    high = history.high.copy()
    low = history.low.copy()
    high[-1] = max(open_[-1], close[-1]) * 1.001
    low[-1] = min(open_[-1], close[-1]) * 0.999
    volume = history.volume.copy()
    volume[-1] *= volume_factor
    return PriceHistory(history.symbol, history.timestamps, open_, high, low, close, volume)
