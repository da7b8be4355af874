"""Steps 3 and 5 of a validation: compare the backtests, then rank the strategies with reasons.

A recommendation never rests on in-sample figures alone. With optimisation, strategies are ranked
by their mean out-of-sample Sharpe over the walk-forward splits, and the tuned parameters are
recommended only when they beat the defaults out of sample; without it, by the Sharpe of the
defaults over the whole period, where nothing was fitted.
"""

from __future__ import annotations

import math

from orch.contracts.validation import (
    BacktestResult,
    OptimisationResult,
    PerformanceAnalysis,
    Recommendation,
    StrategyAnalysis,
)

# Fewer closed trades than this and the win rate says little; the analysis says so.
FEW_TRADES = 5


def _key(value: float | None) -> float:
    return value if value is not None else -math.inf


def _fmt(value: float | None, pattern: str = "{:.2f}") -> str:
    return pattern.format(value) if value is not None else "n/a"


def analyse(backtests: list[BacktestResult]) -> PerformanceAnalysis:
    ordered = sorted(backtests, key=lambda b: (_key(b.metrics.sharpe), b.metrics.total_return), reverse=True)
    rows = []
    for position, result in enumerate(ordered, start=1):
        m = result.metrics
        notes = [
            f"return {m.total_return:+.1%} against buy-and-hold {m.buy_and_hold.total_return:+.1%} "
            f"({m.excess_return:+.1%})",
            f"max drawdown {m.max_drawdown:.1%} against {m.buy_and_hold.max_drawdown:.1%} for buy-and-hold",
        ]
        if m.trades < FEW_TRADES:
            notes.append(f"only {m.trades} closed trades: the win rate rests on little evidence")
        if m.orders_rejected:
            notes.append(f"{m.orders_rejected} orders rejected for want of cash (gaps at the open)")
        rows.append(
            StrategyAnalysis(
                strategy=result.strategy,
                params=result.params,
                metrics=m,
                beats_buy_and_hold=m.excess_return > 0,
                rank_by_sharpe=position,
                notes=notes,
            )
        )
    summary = "; ".join(
        f"{r.strategy}: Sharpe {_fmt(r.metrics.sharpe)}, return {r.metrics.total_return:+.1%} "
        f"(buy-and-hold {r.metrics.buy_and_hold.total_return:+.1%})"
        for r in rows
    )
    return PerformanceAnalysis(summary=summary, strategies=rows, best=rows[0].strategy)


def recommend(analysis: PerformanceAnalysis, optimisation: list[OptimisationResult]) -> list[Recommendation]:
    tuned = {o.strategy: o for o in optimisation if o.splits}
    drafts = []
    for row in analysis.strategies:
        m = row.metrics
        reasons = [
            f"whole period with defaults: return {m.total_return:+.1%} (buy-and-hold "
            f"{m.buy_and_hold.total_return:+.1%}), Sharpe {_fmt(m.sharpe)}, "
            f"max drawdown {m.max_drawdown:.1%}, {m.trades} trades, "
            f"win rate {_fmt(m.win_rate, '{:.0%}')}, exposure {m.exposure:.0%}"
        ]
        walk = tuned.get(row.strategy)
        if walk is None:
            score = m.sharpe
            basis = "Sharpe over the whole period with the default parameters (nothing fitted)"
            params = dict(row.params)
            use_tuned = False
        else:
            splits = len(walk.splits)
            tuned_oos, default_oos = walk.mean_out_of_sample_sharpe, walk.mean_default_out_of_sample_sharpe
            wins = sum(
                1 for s in walk.splits if _key(s.out_of_sample.sharpe) > _key(s.default_out_of_sample.sharpe)
            )
            use_tuned = _key(tuned_oos) > _key(default_oos)
            score = tuned_oos if use_tuned else default_oos
            basis = f"mean out-of-sample Sharpe over {splits} walk-forward split(s)"
            params = dict(walk.splits[-1].best_params) if use_tuned else dict(row.params)
            reasons.append(
                f"walk-forward: tuned parameters score {_fmt(tuned_oos)} out of sample "
                f"(in sample {_fmt(walk.mean_in_sample_sharpe)}), defaults {_fmt(default_oos)}; "
                f"tuned beat defaults in {wins} of {splits} split(s)"
            )
            reasons.append(
                "recommending the parameters fitted on the latest window"
                if use_tuned
                else "keeping the defaults: tuning did not pay out of sample"
            )
        drafts.append((row, score, basis, params, use_tuned, reasons))
    drafts.sort(key=lambda d: (_key(d[1]), d[0].metrics.total_return), reverse=True)
    recommendations = []
    for position, (row, score, basis, params, use_tuned, reasons) in enumerate(drafts, start=1):
        lead = f"ranked {position} of {len(drafts)} by {basis}: {_fmt(score)}"
        if not row.beats_buy_and_hold:
            reasons.append("did not beat buy-and-hold of the same universe over the period")
        recommendations.append(
            Recommendation(
                rank=position,
                strategy=row.strategy,
                score=score,
                basis=basis,
                params=params,
                tuned=use_tuned,
                reasons=[lead, *reasons],
            )
        )
    return recommendations
