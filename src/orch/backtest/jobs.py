"""The work a backtest process does: load the bars by reference, run, measure, answer small.

These functions run inside a child process (`orch.backtest.process`), never in the worker's own
event loop; they take and return contract models, which pickle.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from orch.backtest.data import as_datetime, load_histories
from orch.backtest.engine import BacktestRun, run_backtest
from orch.backtest.metrics import equity_curve, performance
from orch.backtest.optimise import candidate_params, optimise_split
from orch.contracts.validation import (
    BacktestRequest,
    BacktestResult,
    OptimiseSplitRequest,
    ParamTrial,
    SplitResult,
    Window,
)

OnBar = Callable[[int], None]
TOP_TRIALS_KEPT = 5


def backtest(request: BacktestRequest, on_bar: OnBar) -> BacktestResult:
    started = time.perf_counter()
    histories = load_histories(request.data)
    run = run_backtest(
        histories,
        request.window.start,
        request.window.end,
        request.strategy,
        request.params,
        request.rules,
        on_bar,
    )
    metrics = performance(run, histories)
    sharpe = f"{metrics.sharpe:.2f}" if metrics.sharpe is not None else "n/a"
    return BacktestResult(
        summary=(
            f"{request.strategy}: return {metrics.total_return:+.1%} "
            f"(buy-and-hold {metrics.buy_and_hold.total_return:+.1%}), Sharpe {sharpe}, "
            f"max drawdown {metrics.max_drawdown:.1%}, {metrics.trades} trades over {metrics.bars} bars"
        ),
        strategy=request.strategy,
        params=run.params,
        window=request.window,
        first_bar=_first(run),
        last_bar=_last(run),
        metrics=metrics,
        curve=equity_curve(run, histories, request.max_curve_points),
        elapsed_seconds=round(time.perf_counter() - started, 3),
    )


def optimise(request: OptimiseSplitRequest, on_bar: OnBar) -> SplitResult:
    histories = load_histories(request.data)
    combos = candidate_params(request.strategy, request.max_param_combinations, request.seed)
    outcome = optimise_split(histories, request.split, request.strategy, request.rules, combos, on_bar)
    oos, default = outcome.out_of_sample, outcome.default_out_of_sample
    return SplitResult(
        summary=(
            f"{request.strategy} split {request.split.index}: best of {len(combos)} in sample "
            f"(Sharpe {_fmt(outcome.in_sample.sharpe)}) scores {_fmt(oos.sharpe)} out of sample "
            f"(defaults {_fmt(default.sharpe)})"
        ),
        strategy=request.strategy,
        split=request.split,
        best_params=outcome.best_params,
        in_sample=outcome.in_sample,
        out_of_sample=oos,
        default_out_of_sample=default,
        combinations_tried=len(combos),
        top_trials=[ParamTrial(params=p, in_sample=m) for p, m in outcome.trials[:TOP_TRIALS_KEPT]],
        fit_bars_seen=_seen(outcome.fit_run),
        test_bars_seen=_seen(outcome.test_run),
    )


def _fmt(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "n/a"


def _first(run: BacktestRun) -> datetime | None:
    return as_datetime(run.timestamps[0]) if len(run.timestamps) else None


def _last(run: BacktestRun) -> datetime | None:
    return as_datetime(run.timestamps[-1]) if len(run.timestamps) else None


def _seen(run: BacktestRun) -> Window:
    first, last = _first(run), _last(run)
    assert first is not None and last is not None
    return Window(start=first, end=last, bars=len(run.timestamps))
