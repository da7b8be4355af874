"""Strategy composition (step 4): which strategy, which side and how much, for each discovery candidate.

Each strategy kind reads a signal (a side and a strength, 0..1) from the candidate's market conditions
(step 2) and patterns (step 3, optional: without them only the trend strategy has a signal):

- trend: the direction of the move over the regime window, as strong as its efficiency ratio, stronger
  with a confirmed crossover (which is confirmed only when it agrees with the move);
- breakout and mean reversion: only from a confirmed pattern of that kind;
- generic: the direction of the short-horizon forecast and of the bootstrapped scenarios, as strong as
  they are sure of it.

Each signal gets a fit and a score:

    fit   = suitability(kind, regime) x strength
    score = weight(kind) x 4 x fit          (the factor 4 makes uniform weights neutral)

Only kinds whose fit reaches `MIN_FIT` are eligible, and the eligible kind with the best score wins.
The learned weights choose between strategies but never decide alone whether to trade, so a strategy
whose weight sank to the learning floor still trades when it alone has a good signal, and can earn its
weight back.

Sizing risks `risk_per_trade` of equity between entry and a stop `stop_atr_multiple` ATRs away, capped
by the per-symbol position limit (less what is already held) and by the buying power left after this
cycle's earlier plans; the take profit sits a strategy-specific multiple of that risk beyond entry.
Every plan is validated before it leaves; candidates that yield no valid plan come back with reasons.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from orch.contracts.cycle import (
    ComposedPlan,
    CompositionResult,
    MarketConditions,
    MarketSnapshot,
    PatternAnalysis,
    PatternKind,
    PatternReport,
    PortfolioRiskLimits,
    RejectedCandidate,
    StrategyWeights,
)
from orch.contracts.discovery import Candidate
from orch.contracts.market import Regime
from orch.contracts.trading import Account, Position, Side, StrategyKind, StrategyPlan

# How well each strategy kind suits each regime (1: made for it).
SUITABILITY: dict[StrategyKind, dict[Regime, float]] = {
    StrategyKind.TREND: {Regime.TRENDING: 1.0, Regime.RANGING: 0.2, Regime.VOLATILE: 0.5},
    StrategyKind.MEAN_REVERSION: {Regime.TRENDING: 0.2, Regime.RANGING: 1.0, Regime.VOLATILE: 0.3},
    StrategyKind.BREAKOUT: {Regime.TRENDING: 0.7, Regime.RANGING: 0.3, Regime.VOLATILE: 1.0},
    StrategyKind.GENERIC: {Regime.TRENDING: 0.4, Regime.RANGING: 0.4, Regime.VOLATILE: 0.2},
}
# Take profit as a multiple of the risk (entry to stop): trends and breakouts can run, reversions stop
# at the mean.
REWARD_TO_RISK: dict[StrategyKind, float] = {
    StrategyKind.TREND: 3.0,
    StrategyKind.BREAKOUT: 2.5,
    StrategyKind.MEAN_REVERSION: 1.5,
    StrategyKind.GENERIC: 2.0,
}
MIN_FIT = 0.2
# Shares and coins trade in fractions down to this many decimals; sizes are rounded down to them.
QUANTITY_DECIMALS = 6
# Relative slack on limit checks, so a size computed exactly at a limit is not refused for rounding.
_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Signal:
    kind: StrategyKind
    side: Side
    strength: float  # 0..1
    reason: str


@dataclass(frozen=True)
class Choice:
    signal: Signal
    fit: float  # how well the signal suits the regime, 0..1
    score: float  # the fit weighted by what was learned


def strategy_signals(conditions: MarketConditions, report: PatternReport | None) -> list[Signal]:
    """Every strategy kind that has something to say about this symbol, with its side and strength."""
    signals = []
    confirmed = report.confirmed if report else []

    if conditions.trend != 0:
        side = Side.BUY if conditions.trend > 0 else Side.SELL
        strength = conditions.efficiency_ratio
        reason = f"{conditions.trend:+.1%} move with efficiency {conditions.efficiency_ratio:.2f}"
        if any(p.kind is PatternKind.MA_CROSSOVER for p in confirmed):
            strength = min(1.0, strength + 0.25)
            reason += ", confirmed by a crossover"
        signals.append(Signal(StrategyKind.TREND, side, strength, reason))

    for pattern in confirmed:
        if pattern.kind is PatternKind.BREAKOUT:
            strength = min(1.0, 0.5 + pattern.strength / 4.0)
            reason = f"confirmed breakout, {pattern.strength:.1f} ATR beyond the channel"
            signals.append(Signal(StrategyKind.BREAKOUT, pattern.direction, strength, reason))
        elif pattern.kind is PatternKind.MEAN_REVERSION:
            strength = min(1.0, pattern.strength / 4.0)
            reason = f"confirmed mean-reversion set-up at {pattern.strength:.1f} sd"
            signals.append(Signal(StrategyKind.MEAN_REVERSION, pattern.direction, strength, reason))

    generic = _generic_signal(report)
    if generic is not None:
        signals.append(generic)
    return signals


def _generic_signal(report: PatternReport | None) -> Signal | None:
    if report is None or (report.forecast is None and report.scenarios is None):
        return None
    votes: list[float] = []  # signed conviction, -1 .. 1
    if report.forecast is not None:
        f = report.forecast
        half_width = (f.upper - f.lower) / 2.0
        votes.append(0.0 if half_width <= 0 else max(-1.0, min(1.0, f.expected_return / half_width)))
    if report.scenarios is not None:
        votes.append(2.0 * report.scenarios.prob_up - 1.0)
    conviction = sum(votes) / len(votes)
    if conviction == 0:
        return None
    side = Side.BUY if conviction > 0 else Side.SELL
    reason = f"forecast and scenarios lean {'up' if conviction > 0 else 'down'} ({conviction:+.2f})"
    return Signal(StrategyKind.GENERIC, side, abs(conviction), reason)


def choose_strategy(
    conditions: MarketConditions, report: PatternReport | None, weights: StrategyWeights
) -> tuple[Choice | None, list[Choice]]:
    """The best-scoring eligible strategy (None if no fit reaches `MIN_FIT`) and every choice, best first."""
    choices = []
    for signal in strategy_signals(conditions, report):
        fit = SUITABILITY[signal.kind][conditions.regime] * signal.strength
        choices.append(Choice(signal, fit, weights.of(signal.kind) * len(StrategyKind) * fit))
    # Ties go to the order of StrategyKind, so the choice never depends on dict or list order.
    choices.sort(key=lambda c: (-c.score, list(StrategyKind).index(c.signal.kind)))
    best = next((c for c in choices if c.fit >= MIN_FIT), None)
    return best, choices


def plan_id_for(prefix: str, symbol: str, kind: StrategyKind) -> str:
    """Deterministic, so a retried step sends the same ids and the execution process can deduplicate."""
    return f"{prefix}-{re.sub(r'[^A-Za-z0-9._-]', '-', symbol)}-{kind.value}"


def validate_plan(
    plan: StrategyPlan,
    account: Account,
    limits: PortfolioRiskLimits,
    held_value: float = 0.0,
    buying_power_left: float | None = None,
) -> list[str]:
    """Everything wrong with `plan` (empty when it is valid). `held_value`: signed value already held."""
    problems = []
    entry = plan.entry_price
    if entry is None:
        return ["no entry price to check the stop and target against"]
    if plan.side is Side.BUY and not plan.stop_loss < entry < plan.take_profit:
        problems.append(
            f"a buy needs stop < entry < target: {plan.stop_loss:.4g} / {entry:.4g} / {plan.take_profit:.4g}"
        )
    if plan.side is Side.SELL and not plan.take_profit < entry < plan.stop_loss:
        problems.append(
            f"a sell needs target < entry < stop: {plan.take_profit:.4g} / {entry:.4g} / {plan.stop_loss:.4g}"
        )
    if not plan.quantity > 0:
        problems.append("quantity must be positive")
    notional = plan.quantity * entry
    if plan.side is Side.SELL and not limits.allow_short and held_value < notional * (1 - _TOLERANCE):
        problems.append("would sell short, and short selling is disabled")
    if notional < limits.min_notional:
        problems.append(f"notional {notional:,.2f} below the minimum {limits.min_notional:,.2f}")
    max_position = limits.max_position_fraction * account.equity
    after = abs(held_value + (notional if plan.side is Side.BUY else -notional))
    if after > max_position * (1 + _TOLERANCE):
        problems.append(
            f"position would be {after:,.2f}, above the limit {max_position:,.2f} "
            f"({limits.max_position_fraction:.0%} of equity)"
        )
    available = account.buying_power if buying_power_left is None else buying_power_left
    if notional > available * (1 + _TOLERANCE):
        problems.append(f"notional {notional:,.2f} above the buying power left {available:,.2f}")
    return problems


def compose(
    candidates: Sequence[Candidate],
    snapshot: MarketSnapshot,
    patterns: PatternAnalysis | None,
    account: Account,
    positions: Sequence[Position],
    limits: PortfolioRiskLimits,
    weights: StrategyWeights,
    *,
    now: datetime,
    plan_id_prefix: str,
    valid_for: timedelta = timedelta(minutes=5),
) -> CompositionResult:
    """Step 4: a validated plan per candidate that has one, in rank order, and the rest with reasons."""
    held = held_values(positions, snapshot)
    plans: list[ComposedPlan] = []
    rejected: list[RejectedCandidate] = []
    buying_power_left = account.buying_power

    for candidate in sorted(candidates, key=lambda c: c.rank):
        symbol = candidate.symbol
        conditions = snapshot.for_symbol(symbol)
        if conditions is None:
            rejected.append(RejectedCandidate(symbol=symbol, reasons=_no_conditions(snapshot, symbol)))
            continue
        if len(plans) >= limits.max_plans_per_cycle:
            reason = f"the cycle's limit of {limits.max_plans_per_cycle} plans is reached"
            rejected.append(RejectedCandidate(symbol=symbol, reasons=[reason]))
            continue
        report = patterns.for_symbol(symbol) if patterns is not None else None
        best, choices = choose_strategy(conditions, report, weights)
        if best is None:
            fits = ", ".join(f"{c.signal.kind.value} {c.fit:.2f}" for c in choices) or "no signal at all"
            reason = f"no strategy fits a {conditions.regime.value} market to {MIN_FIT} ({fits})"
            rejected.append(RejectedCandidate(symbol=symbol, reasons=[reason]))
            continue

        draft = _size(best, conditions, account, held.get(symbol, 0.0), limits, buying_power_left)
        if isinstance(draft, list):
            rejected.append(RejectedCandidate(symbol=symbol, strategy=best.signal.kind, reasons=draft))
            continue
        quantity, stop, target, risk_amount = draft
        plan = StrategyPlan(
            plan_id=plan_id_for(plan_id_prefix, symbol, best.signal.kind),
            symbol=symbol,
            strategy=best.signal.kind,
            side=best.signal.side,
            quantity=quantity,
            entry_price=conditions.last_price,
            stop_loss=stop,
            take_profit=target,
            valid_until=now + valid_for,
            reason=f"{best.signal.kind.value} in a {conditions.regime.value} market: {best.signal.reason} "
            f"(score {best.score:.2f})",
        )
        problems = validate_plan(plan, account, limits, held.get(symbol, 0.0), buying_power_left)
        if problems:
            rejected.append(RejectedCandidate(symbol=symbol, strategy=plan.strategy, reasons=problems))
            continue
        plans.append(
            ComposedPlan(
                plan=plan,
                regime=conditions.regime,
                efficiency_ratio=conditions.efficiency_ratio,
                volatility_ratio=conditions.volatility_ratio,
                risk_amount=risk_amount,
                score=best.score,
            )
        )
        buying_power_left -= quantity * conditions.last_price
    return CompositionResult(plans=plans, rejected=rejected)


def round_down_quantity(quantity: float) -> float:
    """Down, never up: rounding up could break the limit the size was computed to respect."""
    scale = 10**QUANTITY_DECIMALS
    return math.floor(quantity * scale) / scale


def held_values(positions: Sequence[Position], snapshot: MarketSnapshot | None = None) -> dict[str, float]:
    """Signed market value of each position, at its mark, else the snapshot's price, else its cost."""
    values: dict[str, float] = {}
    for position in positions:
        conditions = snapshot.for_symbol(position.symbol) if snapshot is not None else None
        price = position.market_price or (conditions.last_price if conditions else position.average_price)
        values[position.symbol] = values.get(position.symbol, 0.0) + position.quantity * price
    return values


def _size(
    choice: Choice,
    conditions: MarketConditions,
    account: Account,
    held_value: float,
    limits: PortfolioRiskLimits,
    buying_power_left: float,
) -> tuple[float, float, float, float] | list[str]:
    """(quantity, stop, target, money at risk), or the reasons no sensible size exists."""
    side, entry = choice.signal.side, conditions.last_price
    if side is Side.SELL and not limits.allow_short and held_value <= 0:
        return ["signal is to sell short, and short selling is disabled"]
    if held_value != 0 and (held_value > 0) != (side is Side.BUY):
        return [f"holds {held_value:+,.2f} the other way; exits belong to the position manager"]
    if account.equity <= 0:
        return [f"account equity {account.equity:,.2f}: nothing to risk"]
    stop_distance = limits.stop_atr_multiple * conditions.atr
    if stop_distance <= 0:
        return ["ATR is zero: no room for a stop loss"]

    direction = 1.0 if side is Side.BUY else -1.0
    stop = entry - direction * stop_distance
    target = entry + direction * REWARD_TO_RISK[choice.signal.kind] * stop_distance
    if stop <= 0 or target <= 0:
        return [
            f"stop {stop:.4g} or target {target:.4g} would be at or below zero ({conditions.atr:.4g} ATR)"
        ]

    by_risk = limits.risk_per_trade * account.equity / stop_distance
    room = limits.max_position_fraction * account.equity - abs(held_value)
    by_position = max(room, 0.0) / entry
    # A short sale ties up buying power as margin just as a purchase spends it.
    by_buying_power = max(buying_power_left, 0.0) / entry
    caps = {"risk per trade": by_risk, "position limit": by_position, "buying power": by_buying_power}
    binding = min(caps, key=caps.__getitem__)
    quantity = round_down_quantity(caps[binding])
    if quantity <= 0 or quantity * entry < limits.min_notional:
        return [
            f"{binding} leaves {quantity * entry:,.2f} to trade, below the minimum {limits.min_notional:,.2f}"
        ]
    return quantity, stop, target, quantity * stop_distance


def _no_conditions(snapshot: MarketSnapshot, symbol: str) -> list[str]:
    quality = next((q for q in snapshot.data_quality if q.symbol == symbol), None)
    if quality is None:
        return ["no market data for the symbol in this cycle's snapshot"]
    return [f"data unusable: {issue.message}" for issue in quality.issues if issue.blocking] or [
        "no market conditions for the symbol"
    ]
