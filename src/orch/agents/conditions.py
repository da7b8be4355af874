"""Market conditions (step 2): can each symbol's data be trusted, and what kind of market is it?

From a symbol's bars (and its order book when the source has one) this agent decides:

- data quality: explicit flags for gaps, non-monotonic timestamps, non-positive prices, stale data and
  too short a history; the blocking ones keep the symbol out of the rest of the cycle;
- the regime: volatile when recent volatility is well above its long-run level, else trending when the
  price moved efficiently (Kaufman's efficiency ratio), else ranging; the two thresholds are learned;
- supply and demand imbalance: from the order book when given, else from where each bar closed within
  its range, weighted by volume (Chaikin money flow);
- anomalies: the last return or volume far from the window's median, in robust (median/MAD) z-scores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import numpy as np

from orch.agents.discovery import indicators
from orch.contracts.cycle import (
    Anomaly,
    AnomalyKind,
    DataIssue,
    DataIssueKind,
    DataQuality,
    ImbalanceSource,
    MarketConditions,
    MarketSnapshot,
    OrderBookSummary,
    RegimeThresholds,
)
from orch.contracts.market import Regime
from orch.market.bar_checks import bar_seconds, staleness
from orch.market.base import PriceHistory, is_crypto
from orch.market.calendars import current_sessions

REGIME_WINDOW = 20  # bars behind the efficiency ratio and the trend
# Volatile spells are short (days, not months): a short window sees them before they are over.
VOLATILITY_WINDOW = 10
LONG_WINDOW = 120  # bars behind the long-run volatility and the anomaly baselines
ATR_WINDOW = 14
ATR_HISTORY_BARS = 6 * ATR_WINDOW
MIN_BARS = REGIME_WINDOW + 2
ANOMALY_ZSCORE = 4.0
ZSCORE_CAP = 99.0
# A step between bars this many times the usual interval means bars are missing.
GAP_FACTOR = 1.5
_DAY_SECONDS = 86_400


def validate_history(
    history: PriceHistory,
    now: datetime,
    *,
    bar_interval: timedelta | None = None,
    stale_after: timedelta | None = None,
    peer_latest: datetime | None = None,
    min_bars: int = MIN_BARS,
) -> DataQuality:
    """Flag what is wrong with `history` as of `now`.

    `bar_interval` defaults to the median step between bars. Equities follow their calendar: a weekend
    or a night between bars is no gap; missing trading days, or bars missing within a day, are.

    Data is stale when its last bar ended longer ago than `stale_after` (default: three bars, plus a
    weekend for equities), or when it lags `peer_latest`, the newest bar of the same asset class from
    the same source, by more than three bars: that catches one equity's feed stalling mid-session.
    """
    issues: list[DataIssue] = []
    n = len(history)
    if n < min_bars:
        issues.append(
            DataIssue(
                kind=DataIssueKind.INSUFFICIENT_HISTORY,
                message=f"{n} bars, need at least {min_bars}",
                blocking=True,
            )
        )

    prices = np.stack([history.open, history.high, history.low, history.close]) if n else np.empty((4, 0))
    bad_bars = ~np.all(np.isfinite(prices) & (prices > 0), axis=0)
    if bad_bars.any():
        first = int(np.argmax(bad_bars))
        issues.append(
            DataIssue(
                kind=DataIssueKind.NON_POSITIVE_PRICE,
                message=f"{int(bad_bars.sum())} bars with a non-positive or missing price, first at "
                f"{_iso(history.timestamps[first])}",
                count=int(bad_bars.sum()),
                blocking=True,
            )
        )

    steps = np.diff(history.timestamps).astype("timedelta64[s]").astype(np.int64)
    backwards = steps <= 0
    if backwards.any():
        first = int(np.argmax(backwards)) + 1
        issues.append(
            DataIssue(
                kind=DataIssueKind.NON_MONOTONIC_TIMESTAMPS,
                message=f"{int(backwards.sum())} timestamps not after the one before, first at "
                f"{_iso(history.timestamps[first])}",
                count=int(backwards.sum()),
                blocking=True,
            )
        )

    interval = bar_seconds(steps, bar_interval)
    crypto = is_crypto(history.symbol)
    if interval is not None:
        gaps = _gaps(history.timestamps, steps, interval, crypto)
        if gaps.any():
            largest = int(steps[gaps].max())
            issues.append(
                DataIssue(
                    kind=DataIssueKind.GAP,
                    message=f"{int(gaps.sum())} gaps between bars, the largest {timedelta(seconds=largest)} "
                    f"where bars come every {timedelta(seconds=interval)}",
                    count=int(gaps.sum()),
                    # Indicators tolerate a missing bar; only a trader who needs every bar would block.
                    blocking=False,
                )
            )

    if n and interval is not None:
        stale = staleness(history, now, timedelta(seconds=interval), stale_after, peer_latest)
        if stale:
            issues.append(DataIssue(kind=DataIssueKind.STALE, message=stale, blocking=True))
    return DataQuality(symbol=history.symbol, bars=n, issues=issues)


def _gaps(timestamps: np.ndarray, steps: np.ndarray, interval: float, crypto: bool) -> np.ndarray:
    """Which steps between bars skip bars the market should have had."""
    if crypto:
        return steps > GAP_FACTOR * interval
    days = timestamps.astype("datetime64[D]")
    # A whole session with no bar between two bars (weekends and holidays have none).
    newest = float(timestamps[-1].astype("datetime64[s]").astype(np.int64))
    skipped_day = current_sessions(newest).sessions_between(days[:-1], days[1:]) > 0
    if interval >= 0.8 * _DAY_SECONDS:
        return skipped_day
    same_day = days[1:] == days[:-1]
    return np.where(same_day, steps > GAP_FACTOR * interval, skipped_day)


def classify_regime(efficiency_ratio: float, volatility_ratio: float, thresholds: RegimeThresholds) -> Regime:
    # Volatility first: a market moving fast in one direction with exploding volatility is better
    # traded as volatile (breakouts, uncertainty checks) than as a calm trend.
    if volatility_ratio >= thresholds.volatility_ratio:
        return Regime.VOLATILE
    if efficiency_ratio >= thresholds.trend_efficiency:
        return Regime.TRENDING
    return Regime.RANGING


def efficiency_ratio(close: np.ndarray, window: int) -> float:
    """Kaufman's efficiency ratio: |net move| over the path travelled, 0 (noise) .. 1 (straight line)."""
    segment = close[-window - 1 :]
    path = float(np.abs(np.diff(segment)).sum())
    return 0.0 if path == 0 else min(abs(float(segment[-1] - segment[0])) / path, 1.0)


def volatility_ratio(close: np.ndarray, window: int, long_window: int) -> tuple[float, float]:
    """(recent volatility of log returns per bar, recent over long-run volatility).

    The long run is as much of `long_window` as the history holds; the ratio is 1 when it is flat.
    """
    long_window = min(long_window, len(close) - 1)
    # Only the last value of each is wanted: hand over just the bars it needs.
    recent = float(indicators.realized_volatility(close[-window - 1 :], window)[-1])
    long_run = float(indicators.realized_volatility(close[-long_window - 1 :], long_window)[-1])
    return recent, (recent / long_run if long_run > 0 else 1.0)


def imbalance(history: PriceHistory, window: int, order_book: OrderBookSummary | None = None) -> float:
    """Demand minus supply over their sum, -1 .. +1."""
    if order_book is not None:
        total = order_book.bid_size + order_book.ask_size
        return 0.0 if total == 0 else (order_book.bid_size - order_book.ask_size) / total
    high, low, close = history.high[-window:], history.low[-window:], history.close[-window:]
    volume = np.nan_to_num(history.volume[-window:], nan=0.0).clip(min=0)
    bar_range = high - low
    # Where the close sits in the bar: +1 at the high (buyers won the bar), -1 at the low.
    location = np.divide(
        (close - low) - (high - close), bar_range, out=np.zeros_like(close), where=bar_range > 0
    )
    total = float(volume.sum())
    return 0.0 if total == 0 else float(np.clip((location * volume).sum() / total, -1.0, 1.0))


def robust_zscore(value: float, baseline: np.ndarray) -> float:
    """How many robust standard deviations (1.4826 x MAD) `value` lies from the median of `baseline`.

    Capped at ±`ZSCORE_CAP`: against a baseline with no spread at all, any difference is "off the scale".
    """
    baseline = baseline[np.isfinite(baseline)]
    if len(baseline) == 0:
        return 0.0
    median = float(np.median(baseline))
    # Over half the baseline identical (a quiet market) gives no MAD: fall back to the ordinary deviation.
    scale = 1.4826 * float(np.median(np.abs(baseline - median))) or float(np.std(baseline))
    if scale == 0:
        return 0.0 if value == median else math.copysign(ZSCORE_CAP, value - median)
    return float(np.clip((value - median) / scale, -ZSCORE_CAP, ZSCORE_CAP))


def anomalies(
    history: PriceHistory, log_returns: np.ndarray, threshold: float = ANOMALY_ZSCORE
) -> list[Anomaly]:
    found = []
    if len(log_returns) > 2:
        z = robust_zscore(float(log_returns[-1]), log_returns[-LONG_WINDOW - 1 : -1])
        if abs(z) >= threshold:
            found.append(
                Anomaly(
                    kind=AnomalyKind.RETURN,
                    robust_zscore=z,
                    message=f"{history.symbol}: last return {log_returns[-1]:+.2%} is {z:+.1f} robust sd "
                    "from normal",
                )
            )
    volume = np.log1p(np.nan_to_num(history.volume, nan=0.0).clip(min=0))
    if len(volume) > 2:
        z = robust_zscore(float(volume[-1]), volume[-LONG_WINDOW - 1 : -1])
        if abs(z) >= threshold:
            found.append(
                Anomaly(
                    kind=AnomalyKind.VOLUME,
                    robust_zscore=z,
                    message=f"{history.symbol}: last volume {history.volume[-1]:,.0f} is {z:+.1f} robust sd "
                    "(log scale) from normal",
                )
            )
    return found


def assess_conditions(
    history: PriceHistory,
    thresholds: RegimeThresholds,
    order_book: OrderBookSummary | None = None,
) -> MarketConditions:
    """The conditions of one symbol whose data passed `validate_history`."""
    close = history.close
    log_returns = indicators.log_returns(close)[1:]
    recent_volatility, vol_ratio = volatility_ratio(close, VOLATILITY_WINDOW, LONG_WINDOW)
    er = efficiency_ratio(close, REGIME_WINDOW)
    start = close[-REGIME_WINDOW - 1]
    volume = np.nan_to_num(history.volume, nan=0.0)
    usual_volume = float(np.median(volume[-REGIME_WINDOW - 1 : -1]))
    return MarketConditions(
        symbol=history.symbol,
        as_of=_as_datetime(history.timestamps[-1]),
        last_price=float(close[-1]),
        regime=classify_regime(er, vol_ratio, thresholds),
        efficiency_ratio=er,
        trend=float(close[-1] / start - 1.0),
        volatility=recent_volatility,
        volatility_ratio=vol_ratio,
        atr=_atr(history),
        imbalance=imbalance(history, REGIME_WINDOW, order_book),
        imbalance_source=ImbalanceSource.ORDER_BOOK if order_book is not None else ImbalanceSource.VOLUME,
        volume_ratio=float(volume[-1] / usual_volume) if usual_volume > 0 else 1.0,
        anomalies=anomalies(history, log_returns),
    )


def sense_market(
    histories: Mapping[str, PriceHistory],
    now: datetime,
    thresholds: RegimeThresholds,
    *,
    source: str,
    lookback_bars: int,
    order_books: Mapping[str, OrderBookSummary] | None = None,
    bar_interval: timedelta | None = None,
    stale_after: timedelta | None = None,
) -> MarketSnapshot:
    """Step 2: validate every symbol's bars and assess the conditions of those that can be trusted."""
    order_books = order_books or {}
    # Equities share a session and crypto trades around the clock: each is its own peer group.
    newest: dict[bool, datetime] = {}
    for symbol, history in histories.items():
        if len(history):
            last, crypto = _as_datetime(history.timestamps.max()), is_crypto(symbol)
            newest[crypto] = max(newest.get(crypto, last), last)
    qualities, conditions = [], []
    for symbol in sorted(histories):
        history = histories[symbol]
        quality = validate_history(
            history,
            now,
            bar_interval=bar_interval,
            stale_after=stale_after,
            peer_latest=newest.get(is_crypto(symbol)),
        )
        qualities.append(quality)
        if quality.usable:
            conditions.append(assess_conditions(history, thresholds, order_books.get(symbol)))
    return MarketSnapshot(
        as_of=now,
        source=source,
        lookback_bars=lookback_bars,
        thresholds=thresholds,
        data_quality=qualities,
        conditions=conditions,
    )


def _atr(history: PriceHistory) -> float:
    # Wilder's average forgets the past within a few periods; its loop need not walk the whole history.
    high, low, close = (column[-ATR_HISTORY_BARS:] for column in (history.high, history.low, history.close))
    return float(indicators.atr(high, low, close, ATR_WINDOW)[-1])


def _as_datetime(timestamp: np.datetime64) -> datetime:
    seconds = int(timestamp.astype("datetime64[s]").astype(np.int64))
    return datetime.fromtimestamp(seconds, UTC)


def _iso(timestamp: np.datetime64) -> str:
    return _as_datetime(timestamp).isoformat()
