"""Vectorised technical indicators as plain numpy functions, shared by every agent.

Conventions, the same for every function here:

- Time runs along the last axis, so each function takes one series, shape (bars,), or a panel of
  symbols, shape (symbols, bars), and returns float64 of the same shape (except where it says).
- An output needs a warm-up; positions before it are NaN, never zero or a partial value.
- NaN in the input: a windowed indicator (rolling mean, momentum, Bollinger...) is NaN wherever
  its window holds a NaN, and recovers once the NaN has left the window. A recursive one
  (`ema`, `wilder_average` and so `rsi` and `atr`) remembers every past value, so a NaN makes
  that output and every later one NaN.
- A window longer than the series gives all NaN rather than an error.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "atr",
    "bollinger_bands",
    "bollinger_width",
    "cross_sectional_zscore",
    "ema",
    "log_returns",
    "momentum",
    "realized_volatility",
    "rolling_mean",
    "rolling_std",
    "rolling_zscore",
    "rsi",
    "simple_returns",
    "true_range",
    "wilder_average",
]


def simple_returns(close: np.ndarray) -> np.ndarray:
    """close[t] / close[t-1] - 1; NaN at t = 0."""
    close = _as_float(close)
    return _shift_in(close[..., 1:] / close[..., :-1] - 1.0, 1)


def log_returns(close: np.ndarray) -> np.ndarray:
    """log(close[t] / close[t-1]); NaN at t = 0."""
    close = _as_float(close)
    return _shift_in(np.log(close[..., 1:] / close[..., :-1]), 1)


def momentum(close: np.ndarray, window: int) -> np.ndarray:
    """Rate of change over `window` bars: close[t] / close[t-window] - 1; NaN for t < window."""
    _check_window(window)
    close = _as_float(close)
    if window >= close.shape[-1]:
        return np.full_like(close, np.nan)
    return _shift_in(close[..., window:] / close[..., :-window] - 1.0, window)


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the `window` values ending at t; NaN for t < window - 1."""
    return _rolling(values, window, lambda w: w.mean(axis=-1))


def rolling_std(values: np.ndarray, window: int, ddof: int = 0) -> np.ndarray:
    """Standard deviation of the `window` values ending at t (population by default)."""
    return _rolling(values, window, lambda w: w.std(axis=-1, ddof=ddof))


def rolling_zscore(values: np.ndarray, window: int) -> np.ndarray:
    """How unusual values[t] is against the `window` values before it (t itself excluded, so a
    surge does not dampen its own score): (x[t] - mean) / std. NaN for t < window, and where
    the window has no spread."""
    _check_window(window)
    values = _as_float(values)
    if window >= values.shape[-1]:
        return np.full_like(values, np.nan)
    previous = values[..., :-1]
    mean = rolling_mean(previous, window)[..., window - 1 :]
    std = rolling_std(previous, window)[..., window - 1 :]
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = (values[..., window:] - mean) / std
    scores[~(std > 0)] = np.nan
    return _shift_in(scores, window)


def cross_sectional_zscore(values: np.ndarray, axis: int = 0, clip: float | None = 3.0) -> np.ndarray:
    """Standardise across symbols (axis 0 by default): (x - mean) / std over the finite entries.

    NaN entries stay NaN and do not count. With fewer than two finite entries, or no spread, every
    finite entry scores 0: nothing tells them apart. `clip` bounds outliers (None: no bound).
    """
    values = _as_float(values)
    finite = np.isfinite(values)
    count = finite.sum(axis=axis, keepdims=True)
    zeroed = np.where(finite, values, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = zeroed.sum(axis=axis, keepdims=True) / count
        deviation = np.where(finite, values - mean, 0.0)
        std = np.sqrt((deviation**2).sum(axis=axis, keepdims=True) / count)
        scores = deviation / std
    scores = np.where((count >= 2) & (std > 0), scores, 0.0)
    if clip is not None:
        scores = np.clip(scores, -clip, clip)
    return np.where(finite, scores, np.nan)


def ema(values: np.ndarray, span: int) -> np.ndarray:
    """Exponential moving average, alpha = 2 / (span + 1), seeded with the mean of the first
    `span` values (TA-Lib's convention); first value at t = span - 1."""
    _check_window(span)
    return _recursive_average(_as_float(values), span, 2.0 / (span + 1.0))


def wilder_average(values: np.ndarray, period: int) -> np.ndarray:
    """Wilder's smoothing (alpha = 1 / period), seeded with the mean of the first `period`
    values; first value at t = period - 1."""
    _check_window(period)
    return _recursive_average(_as_float(values), period, 1.0 / period)


def rsi(close: np.ndarray, period: int = 14) -> np.ndarray:
    """Wilder's Relative Strength Index, 0..100; first value at t = period.

    The average gain and loss start as plain means of the first `period` changes, then follow
    Wilder's smoothing, so the value depends on the whole history (it settles after about
    4 * period bars). A series that never moves scores 50.
    """
    _check_window(period)
    change = np.diff(_as_float(close), axis=-1)
    gain = wilder_average(np.maximum(change, 0.0), period)
    loss = wilder_average(np.maximum(-change, 0.0), period)
    total = gain + loss
    with np.errstate(divide="ignore", invalid="ignore"):
        strength = np.where(total > 0, 100.0 * gain / total, 50.0)
    return _shift_in(np.where(np.isnan(total), np.nan, strength), 1)


def bollinger_bands(
    close: np.ndarray, window: int = 20, num_std: float = 2.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(middle, upper, lower): the rolling mean plus and minus `num_std` population deviations."""
    middle = rolling_mean(close, window)
    spread = num_std * rolling_std(close, window)
    return middle, middle + spread, middle - spread


def bollinger_width(close: np.ndarray, window: int = 20, num_std: float = 2.0) -> np.ndarray:
    """(upper - lower) / middle: band width relative to price, so symbols compare. Low = squeeze."""
    middle, upper, lower = bollinger_bands(close, window, num_std)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (upper - lower) / middle


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """max(high - low, |high - previous close|, |low - previous close|); high - low at t = 0."""
    high, low, close = _as_float(high), _as_float(low), _as_float(close)
    previous = _shift_in(close[..., :-1], 1)
    ranges = np.stack([high - low, np.abs(high - previous), np.abs(low - previous)])
    return np.where(np.isnan(previous), high - low, np.max(ranges, axis=0))


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> np.ndarray:
    """Average True Range: Wilder's average of `true_range`; first value at t = period - 1."""
    return wilder_average(true_range(high, low, close), period)


def realized_volatility(close: np.ndarray, window: int) -> np.ndarray:
    """Standard deviation of the last `window` log returns, per bar (not annualised); first value
    at t = window."""
    return rolling_std(log_returns(close), window)


# ---- Helpers -------------------------------------------------------------------------------------


def _as_float(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def _check_window(window: int) -> None:
    if int(window) != window or window < 1:
        raise ValueError(f"a window must be a positive whole number, not {window!r}")


def _shift_in(values: np.ndarray, count: int) -> np.ndarray:
    """Prepend `count` NaNs along the time axis (the warm-up of an output `count` bars shorter)."""
    padding = np.full((*values.shape[:-1], count), np.nan)
    return np.concatenate([padding, values], axis=-1)


def _rolling(values: np.ndarray, window: int, reduce) -> np.ndarray:
    _check_window(window)
    values = _as_float(values)
    if window > values.shape[-1]:
        return np.full_like(values, np.nan)
    return _shift_in(reduce(sliding_window_view(values, window, axis=-1)), window - 1)


def _recursive_average(values: np.ndarray, period: int, alpha: float) -> np.ndarray:
    """average[period - 1] = mean(values[:period]), then average[t] = average[t-1] + alpha * (x[t] -
    average[t-1])."""
    averaged = np.full_like(values, np.nan)
    bars = values.shape[-1]
    if period > bars:
        return averaged
    # A loop over time, vectorised across symbols: the recursion has no closed form that stays
    # numerically sound for long series.
    current = values[..., :period].mean(axis=-1)
    averaged[..., period - 1] = current
    for t in range(period, bars):
        current = current + alpha * (values[..., t] - current)
        averaged[..., t] = current
    return averaged
