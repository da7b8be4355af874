"""Backtests of a discovery strategy on backtrader.

A discovery strategy ranks a universe; as a portfolio it means: every `rebalance_every_bars`
bars, rank the symbols that have a bar today with `rank()` (the same function the discovery scans
run), hold the top `top_n` in equal weight and sell the rest. Orders go in at the bar's close and
fill at the next bar's open (backtrader's default), sells before buys so their cash pays for the
buys; a `cash_reserve` absorbs overnight gaps.

backtrader sees only the bars of the window being tested. The strategy's lookback is served from
the full histories (which start `warmup` bars earlier), so every bar of the window can trade and
every analyzer, ours or backtrader's, measures exactly the window.

`run_backtest` calls `on_bar(bars_done)` once per bar: the caller reports progress, checks for a
cancel (raise `BacktestCancelled` to stop at once) or paces the run there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import backtrader as bt
import numpy as np

from orch.agents.discovery import get_strategy, rank
from orch.contracts.validation import PortfolioRules
from orch.market.base import PriceHistory

__all__ = [
    "ArrayFeed",
    "BacktestCancelled",
    "BacktestRun",
    "DiscoveryRebalance",
    "build_cerebro",
    "run_backtest",
    "window_histories",
]

OnBar = Callable[[int], None]


class BacktestCancelled(Exception):
    """Raised from `on_bar` to stop a backtest; carries how many bars were done."""

    def __init__(self, bars_done: int) -> None:
        super().__init__(f"cancelled after {bars_done} bars")
        self.bars_done = bars_done

    def __reduce__(self) -> tuple[type, tuple[int]]:
        return type(self), (self.bars_done,)


class ArrayFeed(bt.feed.DataBase):
    """A backtrader data feed over one `PriceHistory` (numpy columns, no pandas)."""

    params = (("history", None), ("timeframe", bt.TimeFrame.Days), ("compression", 1))

    def start(self) -> None:
        super().start()
        history: PriceHistory = self.p.history
        self._columns = (
            _nums(history),
            history.open.tolist(),
            history.high.tolist(),
            history.low.tolist(),
            history.close.tolist(),
            history.volume.tolist(),
        )
        self._next_index = 0

    def _load(self) -> bool:
        i = self._next_index
        stamps, opens, highs, lows, closes, volumes = self._columns
        if i >= len(stamps):
            return False
        lines = self.lines
        lines.datetime[0] = stamps[i]
        lines.open[0], lines.high[0], lines.low[0] = opens[i], highs[i], lows[i]
        lines.close[0], lines.volume[0], lines.openinterest[0] = closes[i], volumes[i], 0.0
        self._next_index = i + 1
        return True


class DiscoveryRebalance(bt.Strategy):
    """Hold a discovery strategy's top candidates, re-ranked every `rebalance_every` bars.

    Feeds are named by symbol; `histories` hold each symbol's bars from `warmup[symbol]` bars
    before its feed's first bar, so the ranking sees the strategy's full lookback from bar one.
    """

    params = (
        ("discovery", None),  # the strategy's name (`strategy` is taken by Cerebro.addstrategy)
        ("strategy_params", None),
        ("top_n", 2),
        ("rebalance_every", 5),
        ("cash_reserve", 0.02),
        ("histories", None),
        ("warmup", None),
        ("on_bar", None),
    )

    def __init__(self) -> None:
        self.stamps: list[float] = []
        self.values: list[float] = []
        self.invested: list[float] = []
        self.trade_pnls: list[float] = []
        self.orders_rejected = 0
        self._bars = 0

    def prenext(self) -> None:
        # Feeds that start later than others must not delay trading the ones that have started.
        self.next()

    def next(self) -> None:
        self._bars += 1
        if self.p.on_bar is not None:
            self.p.on_bar(self._bars)
        now = max(d.datetime[0] for d in self.datas if len(d))
        value = self.broker.getvalue()
        self.stamps.append(now)
        self.values.append(value)
        self.invested.append((value - self.broker.getcash()) / value if value > 0 else 0.0)
        if (self._bars - 1) % self.p.rebalance_every == 0:
            self._rebalance(now)

    def _rebalance(self, now: float) -> None:
        trading = [d for d in self.datas if len(d) and d.datetime[0] == now]
        histories = {}
        for data in trading:
            full: PriceHistory = self.p.histories[data._name]
            upto = self.p.warmup[data._name] + len(data)
            histories[data._name] = _head(full, upto)
        chosen = {c.symbol for c in rank(self.p.discovery, histories, self.p.top_n, self.p.strategy_params)}
        weight = (1.0 - self.p.cash_reserve) / self.p.top_n
        total = self.broker.getvalue()
        targets = [(d, weight if d._name in chosen else 0.0) for d in trading]
        # Sells first: their cash pays for the buys when both fill at the next open.
        for data, target in targets:
            if self.broker.getvalue([data]) > target * total:
                self.order_target_percent(data=data, target=target)
        for data, target in targets:
            if target and self.broker.getvalue([data]) < target * total:
                self.order_target_percent(data=data, target=target)

    def notify_order(self, order: bt.Order) -> None:
        if order.status in (order.Margin, order.Rejected):
            self.orders_rejected += 1

    def notify_trade(self, trade: bt.Trade) -> None:
        if trade.isclosed:
            self.trade_pnls.append(trade.pnlcomm)


def _head(history: PriceHistory, stop: int) -> PriceHistory:
    return PriceHistory(
        history.symbol,
        history.timestamps[:stop],
        history.open[:stop],
        history.high[:stop],
        history.low[:stop],
        history.close[:stop],
        history.volume[:stop],
    )


def window_histories(
    histories: Mapping[str, PriceHistory], start: datetime, end: datetime
) -> tuple[dict[str, PriceHistory], dict[str, int]]:
    """Each symbol's bars inside [start, end] (symbols with none are left out), and how many of
    its bars come before `start` (its warm-up)."""
    first, last = np.datetime64(_naive(start), "s"), np.datetime64(_naive(end), "s")
    inside, warmup = {}, {}
    for symbol, history in histories.items():
        lo = int(np.searchsorted(history.timestamps, first, side="left"))
        hi = int(np.searchsorted(history.timestamps, last, side="right"))
        if hi > lo:
            inside[symbol] = PriceHistory(
                symbol,
                history.timestamps[lo:hi],
                history.open[lo:hi],
                history.high[lo:hi],
                history.low[lo:hi],
                history.close[lo:hi],
                history.volume[lo:hi],
            )
            warmup[symbol] = lo
    return inside, warmup


def _naive(moment: datetime) -> datetime:
    """UTC without a zone, as `PriceHistory` timestamps are."""
    return moment if moment.tzinfo is None else moment.astimezone(UTC).replace(tzinfo=None)


def _nums(history: PriceHistory) -> list[float]:
    """backtrader's float date numbers of the bars' timestamps."""
    return [bt.date2num(t) for t in history.timestamps.astype("datetime64[us]").astype(datetime)]


def build_cerebro(
    histories: Mapping[str, PriceHistory],
    start: datetime,
    end: datetime,
    strategy: str,
    params: Mapping[str, float] | None,
    rules: PortfolioRules,
    on_bar: OnBar | None = None,
) -> bt.Cerebro:
    """A Cerebro with one feed per symbol over [start, end] and `DiscoveryRebalance` added.

    Public so that a plain backtrader run (the tests', the benchmark's) is built the same way and
    can add backtrader's own analyzers.
    """
    inside, warmup = window_histories(histories, start, end)
    if not inside:
        raise ValueError(f"no bars between {start:%Y-%m-%d} and {end:%Y-%m-%d}")
    resolved = get_strategy(strategy).resolve(params)
    cerebro = bt.Cerebro(stdstats=False, maxcpus=1)
    for symbol in sorted(inside):
        cerebro.adddata(ArrayFeed(history=inside[symbol]), name=symbol)
    cerebro.broker.setcash(rules.initial_cash)
    cerebro.broker.setcommission(commission=rules.commission)
    # Orders are checked for cash when they fill (after the sells before them), not when placed.
    cerebro.broker.set_checksubmit(False)
    cerebro.addstrategy(
        DiscoveryRebalance,
        discovery=strategy,
        strategy_params=resolved,
        top_n=rules.top_n,
        rebalance_every=rules.rebalance_every_bars,
        cash_reserve=rules.cash_reserve,
        histories=dict(histories),
        warmup=warmup,
        on_bar=on_bar,
    )
    return cerebro


@dataclass
class BacktestRun:
    """What a backtest leaves: the equity curve bar by bar, and the closed trades' results."""

    strategy: str
    params: dict[str, float]
    initial_cash: float
    timestamps: np.ndarray  # datetime64[s], one per bar
    values: np.ndarray  # broker value at each bar's close
    invested: np.ndarray  # share of the value held in positions
    trade_pnls: list[float] = field(default_factory=list)  # net of commission
    orders_rejected: int = 0


def run_backtest(
    histories: Mapping[str, PriceHistory],
    start: datetime,
    end: datetime,
    strategy: str,
    params: Mapping[str, float] | None,
    rules: PortfolioRules,
    on_bar: OnBar | None = None,
) -> BacktestRun:
    cerebro = build_cerebro(histories, start, end, strategy, params, rules, on_bar)
    [result] = cerebro.run()
    # Back from backtrader's float dates to the bars' own timestamps (no rounding involved).
    inside, _ = window_histories(histories, start, end)
    stamp_of = {
        num: stamp for h in inside.values() for num, stamp in zip(_nums(h), h.timestamps, strict=True)
    }
    stamps = np.array([stamp_of[num] for num in result.stamps], dtype="datetime64[s]")
    return BacktestRun(
        strategy=strategy,
        params=dict(result.p.strategy_params),
        initial_cash=rules.initial_cash,
        timestamps=stamps,
        values=np.array(result.values, dtype=float),
        invested=np.array(result.invested, dtype=float),
        trade_pnls=list(result.trade_pnls),
        orders_rejected=result.orders_rejected,
    )
