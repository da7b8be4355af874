"""Portfolio risk (step 5): may these plans be executed, at full size, smaller, or not at all?

This is the cycle's view of the whole portfolio, not the execution process's pre-trade gate (which checks
each order as it goes out). From the account, its positions, the composed plans and the symbols' recent
bars, it measures exposure, concentration, drawdown from the equity peak, one-bar historical value at
risk and CVaR of the portfolio, and the Shannon entropy of recent returns as a measure of uncertainty.

Plans are judged in order, each against the portfolio as it would be with the plans approved before it.
A plan is scaled down to fit the money it may risk, the per-symbol position limit, the gross exposure
limit and the VaR limit, and halved (by default) when its symbol's returns are too uncertain; it is
rejected when drawdown stops new entries, when nothing of it fits, or when too little is left to be worth
an order. Every decision states its reasons; a rejection is an outcome, never an exception.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from orch.agents.composition import round_down_quantity
from orch.agents.discovery import indicators
from orch.contracts.cycle import PlanDecision, PortfolioRisk, PortfolioRiskLimits, RiskAssessment, RiskVerdict
from orch.contracts.trading import Account, Position, Side, StrategyPlan
from orch.market.base import PriceHistory

ENTROPY_BINS = 10  # even, so zero is a bin edge and the sign of a return always decides its bin
# Bins span this many robust standard deviations either side of zero; beyond, returns go to the end bins.
ENTROPY_SPAN_SDS = 3.0
# Fewer aligned bars than this and VaR and entropy say too little to be trusted.
MIN_OBSERVATIONS = 20
RISK_BARS = 250
_FULL = 1.0 - 1e-9


def historical_var(pnl: np.ndarray, confidence: float) -> tuple[float, float]:
    """(VaR, CVaR) of a sample of profits and losses, both as positive losses (0 when the tail is a gain)."""
    if len(pnl) == 0:
        return 0.0, 0.0
    cutoff = float(np.quantile(pnl, 1.0 - confidence))
    tail = pnl[pnl <= cutoff]
    return max(-cutoff, 0.0), max(-float(tail.mean()), 0.0)


def returns_entropy(returns: np.ndarray, bins: int = ENTROPY_BINS) -> float:
    """Shannon entropy of `returns` in sign-split bins, normalised to 0 (one bin) .. 1 (all bins equal).

    Bins are symmetric about zero and scaled by the returns' robust spread, so returns that keep one
    sign well clear of their noise all fall in one end bin (entropy 0), while noise around zero spreads
    over them all (about 0.83 for normal noise, more for fat tails).
    """
    returns = returns[np.isfinite(returns)]
    if len(returns) == 0:
        return 0.0
    median = float(np.median(returns))
    spread = 1.4826 * float(np.median(np.abs(returns - median))) or float(np.std(returns))
    if spread == 0:
        return 0.0  # every return the same: no uncertainty at all
    half_width = ENTROPY_SPAN_SDS * spread
    clipped = np.clip(returns, -half_width, half_width)
    counts, _ = np.histogram(clipped, bins=bins, range=(-half_width, half_width))
    p = counts[counts > 0] / len(returns)
    return min(float((p * np.log2(1.0 / p)).sum()) / math.log2(bins), 1.0)


def return_matrix(
    histories: Mapping[str, PriceHistory], symbols: Sequence[str], bars: int = RISK_BARS
) -> np.ndarray:
    """Simple returns of `symbols` (columns) over the bars they share (rows), oldest first.

    Bars are matched by timestamp, so symbols on different calendars line up on their common bars.
    """
    if not symbols:
        return np.empty((0, 0))
    common = None
    for symbol in symbols:
        stamps = histories[symbol].timestamps[-bars - 1 :]
        common = stamps if common is None else np.intersect1d(common, stamps)
    columns = []
    for symbol in symbols:
        history = histories[symbol]
        keep = np.isin(history.timestamps, common)
        close = history.close[keep]
        columns.append(indicators.simple_returns(close)[1:])
    return np.column_stack(columns) if columns and len(columns[0]) else np.empty((0, len(symbols)))


def portfolio_risk(
    values: Mapping[str, float],
    equity: float,
    histories: Mapping[str, PriceHistory],
    limits: PortfolioRiskLimits,
    drawdown: float,
) -> PortfolioRisk:
    """Exposure, concentration, VaR, CVaR and entropy of holding `values` (signed money per symbol)."""
    held = {s: v for s, v in values.items() if v != 0}
    gross = sum(abs(v) for v in held.values())
    pnl = _pnl(held, histories)
    var, cvar = historical_var(pnl, limits.var_confidence)
    base = equity if equity > 0 else 1.0
    return PortfolioRisk(
        equity=equity,
        gross_exposure=gross / base,
        net_exposure=sum(held.values()) / base,
        largest_position=max((abs(v) for v in held.values()), default=0.0) / base,
        drawdown=drawdown,
        var=var,
        cvar=cvar,
        var_confidence=limits.var_confidence,
        entropy=returns_entropy(pnl / base) if len(pnl) else 0.0,
        observations=len(pnl),
    )


def evaluate_risk(
    plans: Sequence[StrategyPlan],
    account: Account,
    positions: Sequence[Position],
    histories: Mapping[str, PriceHistory],
    limits: PortfolioRiskLimits,
    *,
    peak_equity: float | None = None,
) -> RiskAssessment:
    """Step 5: a decision per plan, and the portfolio's risk before and after the approved ones.

    `histories` should hold every held and planned symbol: a plan without bars is rejected, a position
    without them counts in exposure but not in VaR (with a note). `peak_equity` is the account's
    high-water mark (the engine keeps it), from which drawdown is measured.
    """
    equity = account.equity
    peak = max(peak_equity or equity, equity)
    drawdown = 0.0 if peak <= 0 else max(1.0 - equity / peak, 0.0)
    values = _position_values(positions, histories)
    before = portfolio_risk(values, equity, histories, limits, drawdown)
    notes = [
        f"no bars for held {symbol}: left out of VaR and entropy"
        for symbol in sorted(set(values) - set(_measurable(values, histories)))
    ]
    if before.var > limits.max_var_fraction * equity:
        notes.append(
            f"the portfolio's VaR {before.var:,.2f} already exceeds the limit "
            f"{limits.max_var_fraction * equity:,.2f}"
        )

    decisions = []
    for plan in plans:
        decision = _decide(plan, account, values, histories, limits, drawdown)
        decisions.append(decision)
        if decision.approved is not None:
            approved = decision.approved
            signed = approved.quantity * _entry(approved, histories)
            values[plan.symbol] = values.get(plan.symbol, 0.0) + (
                signed if plan.side is Side.BUY else -signed
            )
    after = portfolio_risk(values, equity, histories, limits, drawdown)
    return RiskAssessment(before=before, after=after, decisions=decisions, notes=notes)


def _decide(
    plan: StrategyPlan,
    account: Account,
    values: Mapping[str, float],
    histories: Mapping[str, PriceHistory],
    limits: PortfolioRiskLimits,
    drawdown: float,
) -> PlanDecision:
    def reject(*reasons: str) -> PlanDecision:
        return PlanDecision(plan=plan, verdict=RiskVerdict.REJECT, approved=None, reasons=list(reasons))

    equity = account.equity
    if drawdown >= limits.max_drawdown:
        return reject(
            f"drawdown {drawdown:.1%} at or beyond the {limits.max_drawdown:.0%} limit: no new entries"
        )
    if equity <= 0:
        return reject(f"equity {equity:,.2f}: nothing to risk")
    if plan.symbol not in histories or len(histories[plan.symbol]) < MIN_OBSERVATIONS + 1:
        return reject(f"too little return history for {plan.symbol} to judge its risk")

    entry = _entry(plan, histories)
    notional = plan.quantity * entry
    direction = 1.0 if plan.side is Side.BUY else -1.0
    reasons: list[str] = []
    scale = 1.0

    def cap(fraction: float, reason: str) -> None:
        nonlocal scale
        if fraction < scale * _FULL:
            scale = max(fraction, 0.0)
            reasons.append(reason)

    at_risk = plan.quantity * abs(entry - plan.stop_loss)
    budget = limits.risk_per_trade * equity
    if at_risk > 0:
        cap(budget / at_risk, f"risks {at_risk:,.2f} to its stop, above the per-trade budget {budget:,.2f}")

    held = values.get(plan.symbol, 0.0)
    max_position = limits.max_position_fraction * equity
    # A plan against the position first unwinds it, so it has the position's size as extra room.
    room = max_position - abs(held) if held * direction >= 0 else max_position + abs(held)
    cap(
        room / notional,
        f"{plan.symbol} would exceed {limits.max_position_fraction:.0%} of equity "
        f"({abs(held) + notional:,.2f} against {limits.max_position_fraction * equity:,.2f})",
    )

    gross = sum(abs(v) for v in values.values())
    gross_room = limits.max_gross_exposure * equity - gross
    cap(
        gross_room / notional,
        f"gross exposure would reach {(gross + notional) / equity:.0%} of equity, "
        f"above {limits.max_gross_exposure:.0%}",
    )

    entropy = returns_entropy(_returns(histories[plan.symbol]))
    if entropy > limits.max_entropy:
        cap(
            scale * limits.uncertainty_scale,
            f"{plan.symbol}'s recent returns are too uncertain "
            f"(entropy {entropy:.3f} > {limits.max_entropy:.3f})",
        )

    var_limit = limits.max_var_fraction * equity
    var_scale = _largest_scale_within_var(
        plan.symbol, direction * notional, values, histories, limits.var_confidence, var_limit, scale
    )
    if var_scale is None:
        return reject(*reasons, f"the portfolio's VaR is already beyond {var_limit:,.2f} without this plan")
    cap(var_scale, f"portfolio VaR would exceed {limits.max_var_fraction:.1%} of equity ({var_limit:,.2f})")

    quantity = round_down_quantity(plan.quantity * scale) if scale < _FULL else plan.quantity
    if quantity <= 0 or quantity * entry < limits.min_notional:
        return reject(
            *reasons,
            f"what is left ({quantity * entry:,.2f}) is below the minimum {limits.min_notional:,.2f}",
        )
    if scale >= _FULL:
        return PlanDecision(
            plan=plan, verdict=RiskVerdict.APPROVE, approved=plan, reasons=["within every limit"]
        )
    approved = plan.model_copy(update={"quantity": quantity})
    reasons.append(f"scaled to {scale:.0%}: {plan.quantity:g} -> {quantity:g}")
    return PlanDecision(plan=plan, verdict=RiskVerdict.SCALE_DOWN, approved=approved, reasons=reasons)


def _largest_scale_within_var(
    symbol: str,
    signed_notional: float,
    values: Mapping[str, float],
    histories: Mapping[str, PriceHistory],
    confidence: float,
    var_limit: float,
    upper: float,
) -> float | None:
    """The largest fraction of the plan, up to `upper`, that keeps the portfolio's VaR within `var_limit`.

    None when the portfolio is beyond the limit without the plan.
    """
    symbols = _measurable({*values, symbol}, histories)
    matrix = return_matrix(histories, symbols)
    held = np.array([values.get(s, 0.0) for s in symbols])
    plan = np.array([signed_notional if s == symbol else 0.0 for s in symbols])

    def var_at(fraction: float) -> float:
        return historical_var(matrix @ (held + fraction * plan), confidence)[0]

    if var_at(upper) <= var_limit:
        return upper
    if var_at(0.0) > var_limit:
        return None
    # VaR grows with the plan's size once it dominates; bisect to well below a quantity step.
    low, high = 0.0, upper
    for _ in range(30):
        middle = (low + high) / 2.0
        low, high = (middle, high) if var_at(middle) <= var_limit else (low, middle)
    return low


def _pnl(values: Mapping[str, float], histories: Mapping[str, PriceHistory]) -> np.ndarray:
    """The portfolio's profit or loss over each shared historical bar, had it held `values` throughout."""
    symbols = _measurable(values, histories)
    matrix = return_matrix(histories, symbols)
    if matrix.size == 0:
        return np.empty(0)
    return matrix @ np.array([values[s] for s in symbols])


def _measurable(symbols: Iterable[str], histories: Mapping[str, PriceHistory]) -> list[str]:
    """The symbols with returns to measure, sorted so the matrix columns never depend on set order."""
    return sorted(s for s in set(symbols) if s in histories and len(histories[s]) > 1)


def _position_values(
    positions: Sequence[Position], histories: Mapping[str, PriceHistory]
) -> dict[str, float]:
    values: dict[str, float] = {}
    for position in positions:
        history = histories.get(position.symbol)
        last = float(history.close[-1]) if history is not None and len(history) else None
        price = position.market_price or last or position.average_price
        values[position.symbol] = values.get(position.symbol, 0.0) + position.quantity * price
    return values


def _entry(plan: StrategyPlan, histories: Mapping[str, PriceHistory]) -> float:
    # A plan without a limit enters at the market: judge it at the last close.
    return plan.entry_price or float(histories[plan.symbol].close[-1])


def _returns(history: PriceHistory) -> np.ndarray:
    return indicators.simple_returns(history.close[-RISK_BARS - 1 :])[1:]
