"""The adaptive scheduler (the original execution engine's): how long to wait before the next cycle.

Three signals, each in 0..1 with 0.5 as normal, become interval multipliers between 0.5 and 2: an
active market and good recent performance shorten the interval, a loaded system lengthens it. The
multipliers are blended with weights 0.5 (market), 0.3 (performance) and 0.2 (system load), applied to
the base interval and bounded by the configured minimum and maximum. A change smaller than `min_change`
of the current interval is ignored, so the interval does not jitter; every change made is counted.

`next_interval` is a pure function of (settings, state, signals), safe to call from anywhere; the
helpers below turn a market snapshot, recent cycle results and cycle timings into the three signals.
"""

from __future__ import annotations

from orch.contracts.cycle import (
    MarketSnapshot,
    ScheduleDecision,
    SchedulerSettings,
    SchedulerSignals,
    SchedulerState,
)

MARKET_WEIGHT = 0.5
PERFORMANCE_WEIGHT = 0.3
LOAD_WEIGHT = 0.2


def initial_state(settings: SchedulerSettings) -> SchedulerState:
    return SchedulerState(interval_seconds=settings.base_interval_seconds)


def next_interval(
    settings: SchedulerSettings, state: SchedulerState, signals: SchedulerSignals
) -> ScheduleDecision:
    """The interval to wait before the next cycle, and the state that remembers it."""
    market = _shortening(signals.market_activity)
    performance = _shortening(signals.performance)
    load = 1.0 / _shortening(signals.system_load)
    multiplier = MARKET_WEIGHT * market + PERFORMANCE_WEIGHT * performance + LOAD_WEIGHT * load
    target = min(
        settings.max_interval_seconds,
        max(settings.min_interval_seconds, settings.base_interval_seconds * multiplier),
    )
    factors = f"market x{market:.2f}, performance x{performance:.2f}, load x{load:.2f}"
    current = state.interval_seconds
    # An interval outside new bounds (set_config narrowed them) must move, however small the change.
    out_of_bounds = not settings.min_interval_seconds <= current <= settings.max_interval_seconds
    if abs(target - current) < settings.min_change * current and not out_of_bounds:
        kept = state.model_copy(update={"last_signals": signals})
        reason = f"kept {current:.1f}s (target {target:.1f}s within {settings.min_change:.0%}; {factors})"
        return ScheduleDecision(state=kept, target_seconds=target, adjusted=False, reason=reason)
    adjusted = SchedulerState(
        interval_seconds=target, adjustments=state.adjustments + 1, last_signals=signals
    )
    reason = f"{current:.1f}s -> {target:.1f}s ({factors})"
    return ScheduleDecision(state=adjusted, target_seconds=target, adjusted=True, reason=reason)


def _shortening(signal: float) -> float:
    """0 -> 2x the interval, 0.5 -> unchanged, 1 -> half."""
    return 2.0 ** (1.0 - 2.0 * signal)


def market_activity(snapshot: MarketSnapshot) -> float:
    """How active the market is, 0..1, from volatility and volume against their norms, and anomalies.

    A symbol trading at its usual volatility and volume scores 0.5; twice either scores 1.
    """
    if not snapshot.conditions:
        return 0.5
    scores = []
    for c in snapshot.conditions:
        score = (min(c.volatility_ratio / 2.0, 1.0) + min(c.volume_ratio / 2.0, 1.0)) / 2.0
        if c.anomalies:
            score = min(score + 0.25, 1.0)
        scores.append(score)
    return sum(scores) / len(scores)


def performance_signal(success_rate: float, pnl_fraction: float, pnl_scale: float = 0.01) -> float:
    """Recent performance, 0..1: the cycles' success rate times how the P&L (fraction of equity) went.

    Every cycle succeeding with flat P&L scores 0.5; making `pnl_scale` of equity scores 1; failing
    cycles pull it down, so the engine backs off while something is wrong.
    """
    pnl_score = min(max(0.5 + pnl_fraction / (2.0 * pnl_scale), 0.0), 1.0)
    return min(max(success_rate, 0.0), 1.0) * pnl_score


def load_signal(utilisation: float, normal_utilisation: float = 0.25) -> float:
    """System load, 0..1, from the share of the interval the last cycle took (or worker slot usage).

    At `normal_utilisation` it scores 0.5; at twice that or more, 1 (saturated).
    """
    return min(max(0.5 * utilisation / normal_utilisation, 0.0), 1.0)
