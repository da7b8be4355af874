"""Performance figures from an equity curve and its closed trades, and buy-and-hold of the universe.

Conventions, chosen to agree with backtrader's own analyzers on the same run:

- returns are bar to bar, the first against the starting cash (backtrader's `TimeReturn`);
- Sharpe is mean over population standard deviation of those returns, times sqrt(252), with no
  risk-free rate (`SharpeRatio(timeframe=Days, annualize=True, riskfreerate=0)`);
- maximum drawdown is the largest fall from a running peak of the bar values, as a fraction
  (`DrawDown`'s `max.drawdown` / 100);
- a trade is a position opened and closed again; win rate counts those with a positive result net
  of commission (`TradeAnalyzer`'s `won.total / total.closed`);
- Sortino uses the downside deviation (root mean square of the negative returns); CAGR uses the
  calendar time from the first bar to the last; exposure is the mean share of the value held in
  positions at each bar's close.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC

import numpy as np

from orch.backtest.engine import BacktestRun
from orch.contracts.validation import EquityCurve, PerformanceMetrics, ReturnMetrics
from orch.market.base import PriceHistory

BARS_PER_YEAR = 252
_DAYS_PER_YEAR = 365.25


def return_metrics(timestamps: np.ndarray, values: np.ndarray, initial: float) -> ReturnMetrics:
    """Figures of an equity curve `values` (one per bar) that started at `initial`."""
    if len(values) == 0:
        return ReturnMetrics(total_return=0.0, cagr=None, sharpe=None, sortino=None, max_drawdown=0.0)
    series = np.concatenate([[initial], values])
    returns = series[1:] / series[:-1] - 1.0
    total = float(values[-1] / initial - 1.0)
    days = (timestamps[-1] - timestamps[0]) / np.timedelta64(1, "D") if len(timestamps) > 1 else 0.0
    cagr = (1.0 + total) ** (_DAYS_PER_YEAR / days) - 1.0 if days > 0 and total > -1.0 else None
    mean, deviation = float(returns.mean()), float(returns.std())
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
    root = math.sqrt(BARS_PER_YEAR)
    peaks = np.maximum.accumulate(values)
    return ReturnMetrics(
        total_return=total,
        cagr=_finite(cagr),
        sharpe=_finite(mean / deviation * root) if deviation > 0 else None,
        sortino=_finite(mean / downside * root) if downside > 0 else None,
        max_drawdown=float(np.max(1.0 - values / peaks)),
        volatility=deviation * root if len(returns) > 1 else None,
    )


def buy_and_hold(histories: Mapping[str, PriceHistory], timestamps: np.ndarray) -> np.ndarray:
    """Growth of 1 from equal weights in every symbol of `histories`, each bought at the close of its
    first bar in `timestamps` and held to the end (its last close carried over bars where it has none).

    Every symbol counts: the strategies trade the same universe. A symbol is cash (growth 1) until its
    first bar, which is the window's first bar unless calendars differ (an equity's Monday after a
    crypto pair's Sunday); a symbol with no bar in the window is a caller's error, not a silent gap.
    """
    if len(timestamps) == 0:
        return np.array([], dtype=float)
    legs = []
    for symbol, history in histories.items():
        bought = int(np.searchsorted(history.timestamps, timestamps[0], side="left"))
        if bought >= len(history) or history.timestamps[bought] > timestamps[-1]:
            raise ValueError(f"buy-and-hold: {symbol} has no bar in the window")
        at = np.searchsorted(history.timestamps, timestamps, side="right") - 1
        held = at >= bought
        legs.append(np.where(held, history.close[np.maximum(at, bought)] / history.close[bought], 1.0))
    return np.mean(legs, axis=0)


def performance(run: BacktestRun, histories: Mapping[str, PriceHistory]) -> PerformanceMetrics:
    """Every figure of a backtest, next to buy-and-hold of the same universe over the same bars."""
    base = return_metrics(run.timestamps, run.values, run.initial_cash)
    benchmark = return_metrics(run.timestamps, buy_and_hold(histories, run.timestamps), 1.0)
    closed = len(run.trade_pnls)
    return PerformanceMetrics(
        **base.model_dump(),
        win_rate=sum(1 for pnl in run.trade_pnls if pnl > 0) / closed if closed else None,
        trades=closed,
        exposure=float(run.invested.mean()) if len(run.invested) else 0.0,
        final_value=float(run.values[-1]) if len(run.values) else run.initial_cash,
        bars=len(run.values),
        orders_rejected=run.orders_rejected,
        buy_and_hold=benchmark,
        excess_return=base.total_return - benchmark.total_return,
    )


def equity_curve(run: BacktestRun, histories: Mapping[str, PriceHistory], max_points: int) -> EquityCurve:
    """Strategy and buy-and-hold as growth of 1, thinned to at most `max_points` (first and last kept)."""
    count = len(run.values)
    if count == 0:
        return EquityCurve(timestamps=[], strategy=[], buy_and_hold=[])
    keep = np.unique(np.linspace(0, count - 1, min(count, max_points)).round().astype(int))
    growth = run.values / run.initial_cash
    benchmark = buy_and_hold(histories, run.timestamps)
    return EquityCurve(
        timestamps=[t.item().replace(tzinfo=UTC) for t in run.timestamps[keep].astype("datetime64[us]")],
        strategy=[round(float(v), 6) for v in growth[keep]],
        buy_and_hold=[round(float(v), 6) for v in benchmark[keep]],
    )


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
