"""The execution ledger's arithmetic: plans fitted to `orch hft`'s limits, fills attributed to the plans
they belong to, what a cycle's execution amounted to (orders, fills, latency, slippage), which plans
closed with an outcome to learn from, and the health window over `orch hft`'s running totals.

Pure: the execute, health and learning activities call `orch hft`, hand what it said to a function here,
and return the ledger it gives back.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from orch.agents.composition import round_down_quantity
from orch.contracts.cycle import (
    ComposedPlan,
    ExecutionLedger,
    ExecutionSummary,
    HealthCounters,
    HealthReading,
    HealthWindow,
    PendingPlan,
    TradeOutcome,
)
from orch.contracts.trading import Fill, PlanState, RiskLimits, Side

# Plans are shrunk to this share of orch hft's limits, so price moves before the entry stay inside them.
GATE_MARGIN = 0.98
# orch hft's position manager retries a denied exit with a new key each time; attempts beyond this many
# are not attributed to the plan (its outcome is then counted without them).
MAX_EXIT_ATTEMPTS = 20
# Denials that mean a request could not be processed at all (the gate's limits working are not errors).
ERROR_DENIALS = ("invalid_order", "no_price")

# An order's idempotency key to the client order id `orch hft` gives it (the broker's rule, for this account).
OrderIdOf = Callable[[str], str]


class Leg(StrEnum):
    ENTRY = "entry"
    EXIT = "exit"


def order_keys(plan_id: str) -> dict[str, Leg]:
    """The idempotency keys orch hft's tier 2 and position manager give a plan's entry and exits."""
    keys = {f"{plan_id}:entry": Leg.ENTRY}
    keys |= {f"{plan_id}:exit:{attempt}": Leg.EXIT for attempt in range(1, MAX_EXIT_ATTEMPTS + 1)}
    return keys


# ---- Sending -----------------------------------------------------------------------------------------


def fit_to_gate(plans: Sequence[ComposedPlan], limits: RiskLimits) -> tuple[list[ComposedPlan], list[str]]:
    """Plans shrunk to fit orch hft's per-order and per-position limits, and a line per plan shrunk.

    The cycle sizes from the account; the process's pre-trade gate would deny an entry above its own
    limits (as ORCH_HFT_RISK__* tell this worker), leaving the plan to fail there. Shrinking it here,
    a little inside the limits, sends what can actually trade.
    """
    fitted, lines = [], []
    for composed in plans:
        plan = composed.plan
        price = plan.entry_price
        if not price:
            fitted.append(composed)
            continue
        cap = GATE_MARGIN * min(
            min(limits.max_order_notional, limits.max_position_notional) / price, limits.max_position_quantity
        )
        if plan.quantity <= cap:
            fitted.append(composed)
            continue
        quantity = round_down_quantity(cap)
        if quantity <= 0:
            lines.append(f"{plan.symbol} dropped (orch hft's limits leave nothing)")
            continue
        scale = quantity / plan.quantity
        fitted.append(
            composed.model_copy(
                update={
                    "plan": plan.model_copy(update={"quantity": quantity}),
                    "risk_amount": composed.risk_amount * scale,
                }
            )
        )
        lines.append(f"{plan.symbol} {plan.quantity:g} -> {quantity:g}")
    return fitted, lines


def refusals(rejected: Mapping[str, str], held: Mapping[str, PlanState]) -> dict[str, str]:
    """orch hft's refusals of plans it does not hold: one it holds was accepted by an earlier attempt of
    the step (a retry sends the same plan ids), whatever it answers the second time."""
    return {plan_id: reason for plan_id, reason in rejected.items() if plan_id not in held}


@dataclass(frozen=True)
class Dispatch:
    """What one execute step sent to orch hft and what became of it while the step watched."""

    cycle_number: int
    sent_at: datetime
    round_trip_ms: float  # of the control API call that sent them
    plans: Sequence[ComposedPlan]
    refused: Mapping[str, str] = field(default_factory=dict)  # plan id: orch hft's reason
    states: Mapping[str, PlanState] = field(default_factory=dict)  # the accepted plans' last known states

    @property
    def accepted(self) -> list[ComposedPlan]:
        return [c for c in self.plans if c.plan.plan_id not in self.refused]


# ---- Fills -------------------------------------------------------------------------------------------


def attribute_fills(
    plans: Sequence[PendingPlan], fills: Sequence[Fill], order_id_of: OrderIdOf
) -> list[PendingPlan]:
    """Copies of `plans` with each fill of their entry and exit orders added to its plan."""
    updated = [plan.model_copy(deep=True) for plan in plans]
    owners = {
        order_id_of(key): (plan, leg) for plan in updated for key, leg in order_keys(plan.plan_id).items()
    }
    for fill in fills:
        owner = owners.get(fill.client_order_id)
        if owner is None:
            continue
        plan, leg = owner
        if leg is Leg.ENTRY:
            plan.entry_quantity += fill.quantity
            plan.entry_value += fill.quantity * fill.price
        else:
            plan.exit_quantity += fill.quantity
            plan.exit_value += fill.quantity * fill.price
        plan.fees += fill.fee
        plan.fills += 1
        if plan.first_fill_at is None or fill.timestamp < plan.first_fill_at:
            plan.first_fill_at = fill.timestamp
    return updated


def entry_slippage_bps(plan: PendingPlan) -> float | None:
    """How much worse than the plan's price the entry filled, in basis points (negative: better)."""
    reference = plan.composed.plan.entry_price
    if plan.entry_quantity <= 0 or not reference:
        return None
    price = plan.entry_value / plan.entry_quantity
    direction = 1.0 if plan.composed.plan.side is Side.BUY else -1.0
    return direction * (price - reference) / reference * 1e4


def record_execution(
    ledger: ExecutionLedger,
    dispatch: Dispatch | None,
    fills: Sequence[Fill],
    fill_cursor: int,
    order_id_of: OrderIdOf,
) -> tuple[ExecutionLedger, ExecutionSummary]:
    """The ledger with the accepted plans pending and the fills read attributed, and what this step's
    plans amounted to (`dispatch` None: nothing was sent)."""
    new = [
        PendingPlan(composed=c, cycle_number=dispatch.cycle_number, sent_at=dispatch.sent_at)
        for c in (dispatch.accepted if dispatch is not None else [])
    ]
    pending = attribute_fills([*ledger.pending_plans, *new], fills, order_id_of)
    ledger = ledger.model_copy(update={"pending_plans": pending, "fill_cursor": fill_cursor})
    if dispatch is None:
        return ledger, ExecutionSummary()
    accepted = {p.plan_id for p in new}
    mine = [p for p in pending if p.plan_id in accepted]
    latencies = [
        (p.first_fill_at - p.sent_at).total_seconds() * 1e3 for p in mine if p.first_fill_at is not None
    ]
    slippages = [s for p in mine if (s := entry_slippage_bps(p)) is not None]
    states = [dispatch.states.get(plan_id, PlanState.WAITING) for plan_id in accepted]
    summary = ExecutionSummary(
        plans_sent=len(accepted),
        orders=sum(1 for s in states if s not in (PlanState.WAITING, PlanState.EXPIRED)),
        fills=sum(p.fills for p in mine),
        rejected_orders=len(dispatch.refused) + sum(1 for s in states if s is PlanState.FAILED),
        latency_ms_p50=statistics.median(latencies) if latencies else None,
        slippage_bps_mean=statistics.fmean(slippages) if slippages else None,
        fees=sum(p.fees for p in mine),
    )
    return ledger, summary


# ---- Outcomes to learn from --------------------------------------------------------------------------


@dataclass(frozen=True)
class Settlement:
    outcomes: list[TradeOutcome]
    still_open: int
    never_entered: int


def settle_plans(
    ledger: ExecutionLedger,
    fills: Sequence[Fill],
    fill_cursor: int,
    order_id_of: OrderIdOf,
    states: Mapping[str, PlanState],
    as_of: datetime,
    max_age_seconds: float,
) -> tuple[ExecutionLedger, Settlement]:
    """The ledger with the fills read attributed and the plans that are done taken out, and the
    outcomes of those that closed.

    A plan orch hft no longer knows, that expired or failed, or that is older than `max_age_seconds`,
    is dropped: never entered (or forgotten), there is nothing to learn from it.
    """
    too_old = as_of - timedelta(seconds=max_age_seconds)
    outcomes: list[TradeOutcome] = []
    keep: list[PendingPlan] = []
    for plan in attribute_fills(ledger.pending_plans, fills, order_id_of):
        state = states.get(plan.plan_id)
        if state == PlanState.CLOSED and plan.exit_quantity > 0:
            outcomes.append(TradeOutcome.of(plan.composed, plan.realised_pnl))
        elif state in (PlanState.EXPIRED, PlanState.FAILED, None) or plan.sent_at < too_old:
            continue
        else:
            keep.append(plan)
    dropped = len(ledger.pending_plans) - len(outcomes) - len(keep)
    ledger = ledger.model_copy(update={"pending_plans": keep, "fill_cursor": fill_cursor})
    return ledger, Settlement(outcomes=outcomes, still_open=len(keep), never_entered=dropped)


# ---- The health window -------------------------------------------------------------------------------


def counters_of(metrics: Mapping[str, float], pnl: float, fees: float) -> HealthCounters:
    """orch hft's metrics as running totals (denials are counted per reason: `denials_total{...}`)."""
    denials = {name: value for name, value in metrics.items() if name.startswith("denials_total")}
    return HealthCounters(
        orders_sent=metrics.get("orders_sent_total", 0.0),
        denials=sum(denials.values()),
        errors=sum(v for name, v in denials.items() if any(e in name for e in ERROR_DENIALS)),
        pnl=pnl,
        fees=fees,
    )


def advance_health_window(
    window: HealthWindow | None, reading: HealthReading, window_seconds: float
) -> HealthWindow:
    """The window ending at `reading`.

    It spans several cycles, so one cycle's noise (a fill's fee against a few cents of profit) does not
    trip a breaker. It starts afresh at the first look, or when orch hft restarted (its totals went
    back); once longer than `window_seconds` its start moves up to the previous reading, so it stays
    between one and two cycles longer than that.
    """
    if window is None:
        return HealthWindow(start=reading, latest=reading)
    now, before = reading.counters, window.latest.counters
    if now.orders_sent < before.orders_sent or now.denials < before.denials:
        return HealthWindow(start=reading, latest=reading)
    start = window.start
    if (reading.at - start.at).total_seconds() > window_seconds:
        start = window.latest
    return HealthWindow(start=start, latest=reading)


def record_health(
    ledger: ExecutionLedger,
    metrics: Mapping[str, float],
    *,
    at: datetime,
    pnl: float,
    new_fees: float,
    equity: float,
    window_seconds: float,
) -> tuple[ExecutionLedger, HealthCounters]:
    """The ledger after a look at orch hft (its health window advanced, its peak equity raised), and
    the change over the window.

    `new_fees` are the fees of the fills read since the last look: orch hft reports no fee total.
    """
    before = ledger.health_window
    fees = (before.latest.counters.fees if before is not None else 0.0) + new_fees
    reading = HealthReading(at=at, counters=counters_of(metrics, pnl, fees))
    window = advance_health_window(before, reading, window_seconds)
    peak = max(ledger.peak_equity or equity, equity)
    return ledger.model_copy(update={"health_window": window, "peak_equity": peak}), window.change
