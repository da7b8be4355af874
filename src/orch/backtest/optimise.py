"""Walk-forward parameter search: fit on one window, score on the next, never on the same bars.

Each strategy declares its tunable parameters and their grids (`ParamSpec`). Full grids are huge
(hybrid_v1's has billions of points), so the search samples `max_combinations` of them, always
starting with the defaults, reproducibly from a seed. The same sample is searched in every split,
so splits differ only in their data.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from orch.agents.discovery import get_strategy
from orch.backtest.engine import BacktestRun, run_backtest
from orch.backtest.metrics import return_metrics
from orch.contracts.validation import PortfolioRules, ReturnMetrics, WalkForwardSplit
from orch.market.base import PriceHistory

__all__ = ["SplitOutcome", "candidate_params", "optimise_split", "score"]

# Tries before giving up on finding another unseen combination in a small grid.
_SAMPLING_TRIES = 50


def candidate_params(strategy: str, max_combinations: int, seed: int = 0) -> list[dict[str, float]]:
    """Up to `max_combinations` distinct parameter sets of `strategy`, its defaults first."""
    chosen = get_strategy(strategy)
    defaults = chosen.defaults()
    names = list(chosen.params)
    grids = [chosen.params[name].grid() for name in names]
    size = math.prod(len(g) for g in grids)
    if size <= max_combinations:
        combos = [dict(zip(names, values, strict=True)) for values in itertools.product(*grids)]
        combos.sort(key=lambda c: c != defaults)  # defaults first, the rest in grid order
        return combos
    rng = random.Random(f"{strategy}:{seed}")
    seen = {tuple(defaults[n] for n in names)}
    combos = [defaults]
    tries = 0
    while len(combos) < max_combinations and tries < _SAMPLING_TRIES * max_combinations:
        tries += 1
        values = tuple(rng.choice(grid) for grid in grids)
        if values not in seen:
            seen.add(values)
            combos.append(dict(zip(names, values, strict=True)))
    return combos


def score(metrics: ReturnMetrics) -> tuple[float, float]:
    """What the search maximises: Sharpe (undefined counts as worst), then total return."""
    return (metrics.sharpe if metrics.sharpe is not None else -math.inf, metrics.total_return)


@dataclass
class SplitOutcome:
    best_params: dict[str, float]
    in_sample: ReturnMetrics
    out_of_sample: ReturnMetrics
    default_out_of_sample: ReturnMetrics
    trials: list[tuple[dict[str, float], ReturnMetrics]]  # every combination on the fit window, best first
    fit_run: BacktestRun  # the best combination's fit run
    test_run: BacktestRun


def optimise_split(
    histories: Mapping[str, PriceHistory],
    split: WalkForwardSplit,
    strategy: str,
    rules: PortfolioRules,
    combinations: list[dict[str, float]],
    on_bar: Callable[[int], None] | None = None,
) -> SplitOutcome:
    """Backtest every combination on the split's fit window, then the best and the defaults on its
    test window. `on_bar` gets the bars done across all of those runs."""
    done = 0

    def run(params: Mapping[str, float], start: datetime, end: datetime) -> BacktestRun:
        nonlocal done
        offset = done

        def counted(bars: int) -> None:
            if on_bar is not None:
                on_bar(offset + bars)

        result = run_backtest(histories, start, end, strategy, params, rules, counted)
        done = offset + len(result.values)
        return result

    fits = []
    for params in combinations:
        fitted = run(params, split.fit.start, split.fit.end)
        fits.append((params, fitted, return_metrics(fitted.timestamps, fitted.values, fitted.initial_cash)))
    fits.sort(key=lambda f: score(f[2]), reverse=True)
    best_params, best_fit, best_metrics = fits[0]
    tested = run(best_params, split.test.start, split.test.end)
    defaults = get_strategy(strategy).defaults()
    default_test = tested if best_params == defaults else run(defaults, split.test.start, split.test.end)
    return SplitOutcome(
        best_params=dict(best_params),
        in_sample=best_metrics,
        out_of_sample=return_metrics(tested.timestamps, tested.values, tested.initial_cash),
        default_out_of_sample=return_metrics(
            default_test.timestamps, default_test.values, default_test.initial_cash
        ),
        trials=[(p, m) for p, _, m in fits],
        fit_run=best_fit,
        test_run=tested,
    )
