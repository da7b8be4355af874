"""Steps 3 and 5 of a validation: compare the backtests, then rank the strategies with reasons.

A recommendation never rests on in-sample figures alone. With optimisation, each walk-forward split
fits a parameter set on its fit window and scores it, and the defaults, on its test window. The
recommended set is the one whose out-of-sample score is best among those that beat the defaults on
the same window; when none does, the defaults, scored by their mean over the test windows. Strategies
are ranked by the recommended set's score; without optimisation, by the Sharpe of the defaults over
the whole period, where nothing was fitted. A strategy that made no trades is never recommended.
"""

from __future__ import annotations

import math

from orch.contracts.validation import (
    BacktestResult,
    OptimisationResult,
    PerformanceAnalysis,
    Recommendation,
    SplitResult,
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


def _beats(split: SplitResult) -> bool:
    """The split's fitted parameters did better than the defaults on the same test window."""
    tuned, default = split.out_of_sample, split.default_out_of_sample
    return (_key(tuned.sharpe), tuned.total_return) > (_key(default.sharpe), default.total_return)


def best_tuned_split(walk: OptimisationResult, defaults: dict[str, float]) -> SplitResult | None:
    """The split whose fitted parameters score best out of sample among those that beat the defaults
    on their own test window; None when no tuned set beats them (the defaults are recommended)."""
    better = [s for s in walk.splits if s.best_params != defaults and _beats(s)]
    if not better:
        return None
    return max(
        better, key=lambda s: (_key(s.out_of_sample.sharpe), s.out_of_sample.total_return, s.split.index)
    )


def recommend(analysis: PerformanceAnalysis, optimisation: list[OptimisationResult]) -> list[Recommendation]:
    """Rank the strategies; a strategy that made no trades is ranked last and never recommended."""
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
        chosen, default_score = None, None
        if walk is None:
            score = m.sharpe
            basis = "Sharpe over the whole period with the default parameters (nothing fitted)"
            params = dict(row.params)
        else:
            splits = len(walk.splits)
            chosen = best_tuned_split(walk, dict(row.params))
            per_split = ", ".join(
                f"split {one.split.index} {_fmt(one.out_of_sample.sharpe)} "
                f"vs {_fmt(one.default_out_of_sample.sharpe)}"
                for one in walk.splits
            )
            reasons.append(
                f"walk-forward, out-of-sample Sharpe of the fitted parameters vs the defaults: {per_split}"
            )
            if chosen is None:
                score = default_score = walk.mean_default_out_of_sample_sharpe
                basis = f"mean out-of-sample Sharpe of the defaults over {splits} walk-forward test window(s)"
                params = dict(row.params)
                reasons.append("keeping the defaults: no tuned parameter set beat them out of sample")
            else:
                score, default_score = chosen.out_of_sample.sharpe, chosen.default_out_of_sample.sharpe
                basis = f"out-of-sample Sharpe on walk-forward split {chosen.split.index}'s test window"
                params = dict(chosen.best_params)
                reasons.append(
                    f"recommending the parameters fitted in split {chosen.split.index}: the best out of "
                    f"sample ({_fmt(score)} against the defaults' {_fmt(default_score)} on the same window; "
                    f"in sample {_fmt(chosen.in_sample.sharpe)})"
                )
        recommendable = m.trades > 0
        drafts.append((row, score, basis, params, chosen, default_score, recommendable, reasons))
    drafts.sort(key=lambda d: (d[6], _key(d[1]), d[0].metrics.total_return), reverse=True)
    recommendations = []
    for position, (row, score, basis, params, chosen, default_score, recommendable, reasons) in enumerate(
        drafts, start=1
    ):
        lead = f"ranked {position} of {len(drafts)} by {basis}: {_fmt(score)}"
        if not recommendable:
            reasons.append(
                "never recommended: it made no trades over the period, so its figures judge nothing "
                "(is there volume in the data?)"
            )
        if not row.beats_buy_and_hold:
            reasons.append("did not beat buy-and-hold of the same universe over the period")
        recommendations.append(
            Recommendation(
                rank=position,
                strategy=row.strategy,
                score=score,
                basis=basis,
                params=params,
                tuned=chosen is not None,
                default_score=default_score,
                split=chosen.split.index if chosen else None,
                recommendable=recommendable,
                reasons=[lead, *reasons],
            )
        )
    return recommendations


def winner(recommendations: list[Recommendation]) -> Recommendation | None:
    """The first recommendable strategy, if any."""
    return next((r for r in recommendations if r.recommendable), None)
