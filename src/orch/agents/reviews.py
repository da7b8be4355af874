"""The tactical (tier 3) and strategic (tier 4) reviews' judgements, as plain Python.

Each turns what an agent or the execution process reports into one `ReviewFinding`: a status, a line a
person reads, figures, and notes. Portfolio optimisation here is inverse-volatility weighting of what
is held: the simplest allocation that needs no return forecast, and a fair yardstick for concentration.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from orch.agents.discovery import indicators
from orch.contracts.cycle import LearningState, MarketSnapshot, PortfolioRisk
from orch.contracts.emergency import HealthStatus, ReviewFinding
from orch.contracts.trading import PlanStatus, RiskUsage, StrategyKind
from orch.market.base import PriceHistory

# Share of a limit at which a review starts to warn.
WARN_AT = 0.8
# A strategy needs this many closed trades before its mean R-multiple says anything.
MIN_TRADES_TO_JUDGE = 5
# Drift of a position's weight from its inverse-volatility target worth rebalancing.
REBALANCE_TOLERANCE = 0.10


def summarise_conditions(snapshot: MarketSnapshot) -> ReviewFinding:
    """Regimes, anomalies and data quality across the symbols sensed."""
    regimes = Counter(c.regime.value for c in snapshot.conditions)
    unusable = [q.symbol for q in snapshot.data_quality if not q.usable]
    anomalies = [f"{c.symbol}: {a.message}" for c in snapshot.conditions for a in c.anomalies]
    sensed = len(snapshot.data_quality)
    if sensed and len(unusable) == sensed:
        status = HealthStatus.UNHEALTHY
    elif unusable:
        status = HealthStatus.DEGRADED
    else:
        status = HealthStatus.HEALTHY
    mix = ", ".join(f"{count} {regime}" for regime, count in regimes.most_common()) or "no usable symbols"
    summary = f"{sensed} symbols from {snapshot.source}: {mix}; {len(anomalies)} anomalies"
    if unusable:
        summary += f"; unusable data: {', '.join(unusable)}"
    figures = {f"regime_{regime}": float(count) for regime, count in regimes.items()}
    figures.update(symbols=float(sensed), unusable=float(len(unusable)), anomalies=float(len(anomalies)))
    return ReviewFinding(
        area="market_conditions",
        agent="conditions",
        status=status,
        summary=summary,
        figures=figures,
        notes=anomalies[:20],
    )


def assess_portfolio(risk: PortfolioRisk, usage: RiskUsage) -> ReviewFinding:
    """The portfolio against the execution gate's budget: exposure, daily loss, VaR and concentration.

    `risk` is measured with the gate's gross-exposure budget as its base, so its fractions read as
    shares of what the gate allows.
    """
    exposure = usage.gross_exposure / usage.max_gross_exposure if usage.max_gross_exposure else 0.0
    loss = max(-usage.daily_pnl, 0.0) / usage.max_daily_loss if usage.max_daily_loss else 0.0
    worst_share = max(exposure, loss)
    if worst_share >= 1.0:
        status = HealthStatus.UNHEALTHY
    elif worst_share >= WARN_AT:
        status = HealthStatus.DEGRADED
    else:
        status = HealthStatus.HEALTHY
    notes = []
    if exposure >= WARN_AT:
        notes.append(f"gross exposure at {exposure:.0%} of the gate's budget")
    if loss >= WARN_AT:
        notes.append(f"daily loss at {loss:.0%} of the limit (the gate halts at 100%)")
    summary = (
        f"exposure {exposure:.0%} of budget, daily P&L {usage.daily_pnl:+,.2f}, "
        f"VaR({risk.var_confidence:.0%}) {risk.var:,.2f}, largest position {risk.largest_position:.0%}, "
        f"entropy {risk.entropy:.2f}"
    )
    return ReviewFinding(
        area="portfolio_risk",
        agent="risk",
        status=status,
        summary=summary,
        figures={
            "exposure_share": round(exposure, 4),
            "daily_loss_share": round(loss, 4),
            "var": round(risk.var, 2),
            "cvar": round(risk.cvar, 2),
            "largest_position": round(risk.largest_position, 4),
            "entropy": round(risk.entropy, 4),
            "observations": float(risk.observations),
        },
        notes=notes,
    )


def inverse_volatility_weights(histories: Mapping[str, PriceHistory], window: int = 20) -> dict[str, float]:
    """Target weights proportional to 1 / recent volatility of returns, summing to 1."""
    inverse = {}
    for symbol, history in histories.items():
        returns = indicators.simple_returns(history.close)[1:][-window:]
        volatility = float(np.std(returns)) if len(returns) >= 2 else 0.0
        if volatility > 0 and np.isfinite(volatility):
            inverse[symbol] = 1.0 / volatility
    total = sum(inverse.values())
    return {s: v / total for s, v in inverse.items()} if total else {}


def optimise_portfolio(values: Mapping[str, float], histories: Mapping[str, PriceHistory]) -> ReviewFinding:
    """Compare what is held (signed money per symbol) with inverse-volatility targets of the same gross."""
    held = {s: v for s, v in values.items() if v}
    if not held:
        return ReviewFinding(
            area="portfolio_optimisation",
            agent="optimisation",
            status=HealthStatus.HEALTHY,
            summary="no positions held: nothing to rebalance",
        )
    gross = sum(abs(v) for v in held.values())
    targets = inverse_volatility_weights({s: histories[s] for s in held if s in histories})
    notes, drift = [], 0.0
    for symbol, value in sorted(held.items(), key=lambda kv: -abs(kv[1])):
        weight = abs(value) / gross
        if symbol not in targets:
            notes.append(f"{symbol}: {weight:.0%} of gross, no volatility history to size it against")
            continue
        gap = weight - targets[symbol]
        drift += abs(gap)
        if abs(gap) >= REBALANCE_TOLERANCE:
            verb = "trim" if gap > 0 else "add to"
            notes.append(
                f"{verb} {symbol}: {weight:.0%} of gross vs {targets[symbol]:.0%} inverse-volatility target"
            )
    status = (
        HealthStatus.DEGRADED if any(n.startswith(("trim", "add")) for n in notes) else HealthStatus.HEALTHY
    )
    return ReviewFinding(
        area="portfolio_optimisation",
        agent="optimisation",
        status=status,
        summary=f"{len(held)} positions, gross {gross:,.2f}; "
        f"drift from inverse-volatility targets {drift / 2:.0%}",
        figures={"positions": float(len(held)), "gross": round(gross, 2), "drift": round(drift / 2, 4)},
        notes=notes,
    )


def review_strategies(learning: LearningState | None, plans: Sequence[PlanStatus]) -> ReviewFinding:
    """Each strategy kind's realised R, learned weight and plans in flight; losers are flagged."""
    learning = learning or LearningState()
    by_kind: dict[StrategyKind, Counter[str]] = {kind: Counter() for kind in StrategyKind}
    for plan in plans:
        by_kind[plan.plan.strategy][plan.status] += 1
    notes, figures, losers = [], {}, []
    for kind in StrategyKind:
        record = learning.records.get(kind)
        trades = record.trades if record else 0
        mean_r = record.total_r / trades if record and trades else 0.0
        weight = learning.weights.of(kind)
        figures[f"{kind.value}_weight"] = round(weight, 4)
        figures[f"{kind.value}_trades"] = float(trades)
        figures[f"{kind.value}_mean_r"] = round(mean_r, 4)
        counts = ", ".join(f"{n} {status}" for status, n in sorted(by_kind[kind].items())) or "no plans"
        notes.append(f"{kind.value}: weight {weight:.2f}, {trades} trades, mean R {mean_r:+.2f}; {counts}")
        if trades >= MIN_TRADES_TO_JUDGE and mean_r < 0:
            losers.append(kind.value)
    status = HealthStatus.DEGRADED if losers else HealthStatus.HEALTHY
    summary = f"{learning.updates} learning updates, {len(plans)} plans known to orch hft"
    summary += f"; losing on average: {', '.join(losers)}" if losers else "; no strategy losing on average"
    return ReviewFinding(
        area="strategy_performance",
        agent="performance",
        status=status,
        summary=summary,
        figures=figures,
        notes=notes,
    )
