"""System health (step 7, and the tactical and strategic reviews): is it safe to keep trading?

`evaluate_health` reads the execution process's latency and error figures, its fees and profit over the
last window, and whether the broker and the market-data sources answer; each threshold crossed trips a
named circuit breaker that asks for an emergency level (pause entries, reduce only, halt). A tripped
breaker stays open for a cooldown even if its figure recovers at once, so trading cannot flap.

Agents' error counts (disabled after `error_threshold` in a row) are `orch.contracts.agent_errors`: the
cycle workflow applies that rule too.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from orch.contracts.cycle import (
    BreakerName,
    CircuitBreaker,
    HealthAssessment,
    HealthFigures,
    HealthStatus,
    HealthThresholds,
)
from orch.contracts.system import EmergencyLevel

# What each breaker asks of trading when it trips. Slow or failing execution and fees that eat the
# profit stop new positions; losing money also trims the positions held; without a broker nothing is safe.
BREAKER_LEVELS: dict[BreakerName, EmergencyLevel] = {
    BreakerName.LATENCY: EmergencyLevel.PAUSE_ENTRIES,
    BreakerName.ERROR_RATE: EmergencyLevel.PAUSE_ENTRIES,
    BreakerName.FEES: EmergencyLevel.PAUSE_ENTRIES,
    BreakerName.PROFITABILITY: EmergencyLevel.REDUCE_ONLY,
    BreakerName.BROKER: EmergencyLevel.HALT,
    BreakerName.MARKET_DATA: EmergencyLevel.PAUSE_ENTRIES,
}


def strictest(levels: list[EmergencyLevel]) -> EmergencyLevel:
    return EmergencyLevel.strictest(levels)


def evaluate_health(
    figures: HealthFigures,
    thresholds: HealthThresholds,
    now: datetime,
    previous: HealthAssessment | None = None,
) -> HealthAssessment:
    """Every breaker's state after this window's figures; `previous` carries the cooldowns of open ones."""
    readings = [
        _latency(figures, thresholds),
        _error_rate(figures, thresholds),
        _fees(figures, thresholds),
        _profitability(figures, thresholds),
        _broker(figures),
        _market_data(figures),
    ]
    earlier = {b.name: b for b in previous.breakers} if previous else {}
    cooldown = timedelta(seconds=thresholds.breaker_cooldown_seconds)
    breakers = [_with_cooldown(reading, earlier.get(reading.name), now, cooldown) for reading in readings]

    notes = [
        f"data source {s.name} unreachable: {s.error or 'no answer'}"
        for s in figures.data_sources
        if not s.reachable
    ]
    tripped = [b for b in breakers if b.tripped]
    if tripped:
        status = HealthStatus.UNHEALTHY
    elif notes:
        status = HealthStatus.DEGRADED
    else:
        status = HealthStatus.HEALTHY
    return HealthAssessment(
        as_of=now,
        status=status,
        breakers=breakers,
        recommended_level=strictest([b.level for b in tripped]),
        notes=notes,
    )


def _breaker(
    name: BreakerName,
    tripped: bool,
    message: str,
    value: float | None = None,
    threshold: float | None = None,
) -> CircuitBreaker:
    return CircuitBreaker(
        name=name,
        tripped=tripped,
        value=value,
        threshold=threshold,
        message=message,
        level=BREAKER_LEVELS[name],
    )


def _latency(figures: HealthFigures, thresholds: HealthThresholds) -> CircuitBreaker:
    p99, limit = figures.latency_ms_p99, thresholds.max_latency_ms_p99
    tripped = p99 > limit
    message = f"p99 latency {p99:.1f} ms {'above' if tripped else 'within'} {limit:.1f} ms"
    return _breaker(BreakerName.LATENCY, tripped, message, p99, limit)


def _error_rate(figures: HealthFigures, thresholds: HealthThresholds) -> CircuitBreaker:
    limit = thresholds.max_error_rate
    if figures.requests < thresholds.min_requests_for_error_rate:
        message = f"{figures.errors} errors in {figures.requests} requests: too few requests to judge"
        return _breaker(BreakerName.ERROR_RATE, False, message, None, limit)
    rate = figures.errors / figures.requests
    tripped = rate > limit
    message = (
        f"error rate {rate:.1%} {'above' if tripped else 'within'} {limit:.1%} ({figures.requests} requests)"
    )
    return _breaker(BreakerName.ERROR_RATE, tripped, message, rate, limit)


def _fees(figures: HealthFigures, thresholds: HealthThresholds) -> CircuitBreaker:
    limit = thresholds.max_fee_share
    if figures.gross_pnl <= 0:
        # Fees on a losing window are the profitability breaker's business; a share of a loss means nothing.
        return _breaker(BreakerName.FEES, False, "no gross profit to compare fees with", None, limit)
    share = figures.fees / figures.gross_pnl
    tripped = share > limit
    message = f"fees take {share:.0%} of gross profit ({'above' if tripped else 'within'} {limit:.0%})"
    return _breaker(BreakerName.FEES, tripped, message, share, limit)


def _profitability(figures: HealthFigures, thresholds: HealthThresholds) -> CircuitBreaker:
    net_fraction = (figures.gross_pnl - figures.fees) / figures.equity
    limit = -thresholds.max_loss_fraction
    tripped = net_fraction < limit
    message = f"net P&L {net_fraction:+.2%} of equity ({'below' if tripped else 'within'} {limit:+.2%})"
    return _breaker(BreakerName.PROFITABILITY, tripped, message, net_fraction, limit)


def _broker(figures: HealthFigures) -> CircuitBreaker:
    broker = figures.broker
    if broker.reachable:
        return _breaker(BreakerName.BROKER, False, f"broker {broker.name} reachable", broker.latency_ms)
    return _breaker(
        BreakerName.BROKER, True, f"broker {broker.name} unreachable: {broker.error or 'no answer'}"
    )


def _market_data(figures: HealthFigures) -> CircuitBreaker:
    sources = figures.data_sources
    reachable = [s.name for s in sources if s.reachable]
    if reachable or not sources:
        message = f"market data from {', '.join(reachable)}" if reachable else "no data sources reported"
        return _breaker(BreakerName.MARKET_DATA, False, message, float(len(reachable)))
    names = ", ".join(s.name for s in sources)
    return _breaker(BreakerName.MARKET_DATA, True, f"no market data source answers ({names})", 0.0, 1.0)


def _with_cooldown(
    reading: CircuitBreaker, earlier: CircuitBreaker | None, now: datetime, cooldown: timedelta
) -> CircuitBreaker:
    was_open = earlier is not None and earlier.tripped and earlier.tripped_at is not None
    if reading.tripped:
        # Keep the first trip time while it stays open, so the cooldown runs from when trouble began.
        since = earlier.tripped_at if was_open else now
        return reading.model_copy(update={"tripped_at": since})
    if was_open and now < earlier.tripped_at + cooldown:
        held = f"{reading.message}; held open until {(earlier.tripped_at + cooldown).isoformat()} (cooldown)"
        return reading.model_copy(update={"tripped": True, "tripped_at": earlier.tripped_at, "message": held})
    return reading
