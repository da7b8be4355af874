"""The execution ledger's arithmetic (`orch.agents.execution`), without a server: fills to plans with
partial fills, plans fitted to orch hft's limits, what an execute step amounted to (latency, slippage,
orders), plans settled for learning, and the health window over orch hft's running totals.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orch.agents.execution import (
    GATE_MARGIN,
    MAX_EXIT_ATTEMPTS,
    Dispatch,
    advance_health_window,
    attribute_fills,
    counters_of,
    fit_to_gate,
    record_execution,
    record_health,
    refusals,
    settle_plans,
)
from orch.contracts.cycle import (
    ComposedPlan,
    ExecutionLedger,
    HealthCounters,
    HealthReading,
    HealthWindow,
    PendingPlan,
)
from orch.contracts.market import Regime
from orch.contracts.trading import Fill, PlanState, RiskLimits, Side, StrategyKind, StrategyPlan

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def order_id(key: str) -> str:
    """The tests' order ids are the idempotency keys themselves (orch hft hashes them per account)."""
    return f"id:{key}"


def composed(
    plan_id: str = "p1",
    side: Side = Side.BUY,
    quantity: float = 1.0,
    entry_price: float | None = 100.0,
    risk_amount: float = 50.0,
) -> ComposedPlan:
    below, above = (90.0, 120.0) if side is Side.BUY else (120.0, 90.0)
    return ComposedPlan(
        plan=StrategyPlan(
            plan_id=plan_id,
            symbol="BTC/USD",
            strategy=StrategyKind.TREND,
            side=side,
            quantity=quantity,
            entry_price=entry_price,
            stop_loss=below,
            take_profit=above,
            valid_until=T0 + timedelta(hours=1),
        ),
        regime=Regime.TRENDING,
        efficiency_ratio=0.6,
        volatility_ratio=1.1,
        risk_amount=risk_amount,
        score=0.8,
    )


def pending(plan_id: str = "p1", side: Side = Side.BUY, sent_at: datetime = T0) -> PendingPlan:
    return PendingPlan(composed=composed(plan_id, side), cycle_number=1, sent_at=sent_at)


def fill(key: str, quantity: float, price: float, seconds: float, fee: float = 0.0) -> Fill:
    return Fill(
        fill_id=f"f-{key}-{seconds}",
        client_order_id=order_id(key),
        symbol="BTC/USD",
        side=Side.BUY,
        quantity=quantity,
        price=price,
        fee=fee,
        cumulative_quantity=quantity,
        timestamp=T0 + timedelta(seconds=seconds),
    )


# ---- Fills to plans ----------------------------------------------------------------------------------


def test_partial_fills_add_up_on_each_leg_of_their_plan_and_the_rest_are_left_alone() -> None:
    plans = [pending("p1"), pending("p2", Side.SELL)]
    fills = [
        fill("p1:entry", 0.4, 100.0, 2.0, fee=0.04),
        fill("p1:entry", 0.6, 101.0, 1.5, fee=0.06),  # earlier than the first one listed
        fill("p1:exit:2", 1.0, 110.0, 60.0, fee=0.11),
        fill("p2:entry", 0.5, 99.0, 3.0),
        fill("someone-else:entry", 9.0, 1.0, 0.5),
    ]
    p1, p2 = attribute_fills(plans, fills, order_id)

    assert (p1.entry_quantity, p1.entry_value) == (pytest.approx(1.0), pytest.approx(100.6))
    assert (p1.exit_quantity, p1.exit_value) == (1.0, 110.0)
    assert p1.fills == 3 and p1.fees == pytest.approx(0.21)
    assert p1.first_fill_at == T0 + timedelta(seconds=1.5)
    # Bought 1 at 100.60 on average, sold at 110: 9.40 less 0.21 of fees.
    assert p1.realised_pnl == pytest.approx(9.19)
    # A short entered and not yet closed has paid its fees only.
    assert (p2.entry_quantity, p2.fills, p2.realised_pnl) == (0.5, 1, 0.0)
    # The ledger's plans are values: attributing returns copies.
    assert plans[0].fills == 0


def test_exits_are_attributed_up_to_the_last_attempt_orch_hft_keys() -> None:
    fills = [
        fill("p1:entry", 1.0, 100.0, 1.0),
        fill(f"p1:exit:{MAX_EXIT_ATTEMPTS}", 0.5, 105.0, 2.0),
        fill(f"p1:exit:{MAX_EXIT_ATTEMPTS + 1}", 0.5, 106.0, 3.0),
    ]
    [plan] = attribute_fills([pending()], fills, order_id)
    assert plan.exit_quantity == 0.5 and plan.fills == 2


def test_a_partly_closed_short_earns_on_the_closed_part() -> None:
    fills = [fill("p1:entry", 2.0, 100.0, 1.0), fill("p1:exit:1", 0.5, 90.0, 2.0, fee=0.5)]
    [plan] = attribute_fills([pending(side=Side.SELL)], fills, order_id)
    assert plan.realised_pnl == pytest.approx(10.0 * 0.5 - 0.5)


# ---- Fitting to orch hft's limits ---------------------------------------------------------------------


def test_plans_are_shrunk_a_little_inside_the_gates_limits_and_dropped_when_nothing_fits() -> None:
    limits = RiskLimits(max_order_notional=1_000, max_position_notional=2_000, max_position_quantity=1_000)
    inside = composed("inside", quantity=5.0, entry_price=100.0)  # 500 of notional
    too_big = composed("too-big", quantity=30.0, entry_price=100.0, risk_amount=60.0)
    unpriced = composed("unpriced", quantity=1e6, entry_price=None)  # orch hft prices it: nothing to fit
    nothing = composed("nothing", quantity=1.0, entry_price=1e12)
    fitted, lines = fit_to_gate([inside, too_big, unpriced, nothing], limits)

    assert [c.plan.plan_id for c in fitted] == ["inside", "too-big", "unpriced"]
    assert fitted[0] == inside and fitted[2] == unpriced
    # 0.98 of the order limit at 100: 9.8, and the money at risk shrinks with the size.
    assert fitted[1].plan.quantity == pytest.approx(GATE_MARGIN * 10) == 9.8
    assert fitted[1].risk_amount == pytest.approx(60.0 * 9.8 / 30)
    assert lines == ["BTC/USD 30 -> 9.8", "BTC/USD dropped (orch hft's limits leave nothing)"]


def test_the_position_quantity_limit_caps_a_cheap_instrument() -> None:
    limits = RiskLimits(max_order_notional=1e9, max_position_notional=1e9, max_position_quantity=10)
    [plan], [line] = fit_to_gate([composed(quantity=50.0, entry_price=1.0)], limits)
    assert plan.plan.quantity == 9.8 and line == "BTC/USD 50 -> 9.8"


# ---- What an execute step amounted to ----------------------------------------------------------------


def test_an_execute_step_counts_orders_fills_latency_and_slippage_of_its_own_plans() -> None:
    old = pending("old")  # from an earlier cycle: its fills count in the ledger, not in this step
    dispatch = Dispatch(
        cycle_number=2,
        sent_at=T0,
        round_trip_ms=3.5,
        plans=[composed("a"), composed("b", Side.SELL), composed("c"), composed("refused")],
        refused={"refused": "no market data for XYZ"},
        states={"a": PlanState.OPEN, "b": PlanState.OPEN, "c": PlanState.FAILED},
    )
    fills = [
        fill("a:entry", 0.5, 101.0, 0.2),  # 100 bps worse than the plan's 100
        fill("a:entry", 0.5, 100.0, 0.3),  # the entry averages 100.50: 50 bps
        fill("b:entry", 1.0, 99.0, 0.6, fee=0.1),  # a sell 1 below: 100 bps worse
        fill("old:exit:1", 1.0, 120.0, 0.1),
    ]
    ledger = ExecutionLedger(pending_plans=[old], fill_cursor=7, peak_equity=1e6)
    after, summary = record_execution(ledger, dispatch, fills, 11, order_id)

    assert [p.plan_id for p in after.pending_plans] == ["old", "a", "b", "c"]
    assert after.fill_cursor == 11 and after.peak_equity == 1e6
    assert all(p.cycle_number == 2 and p.sent_at == T0 for p in after.pending_plans[1:])
    assert after.pending_plans[0].exit_quantity == 1.0
    assert summary.plans_sent == 3
    assert summary.orders == 3  # a, b and c left waiting; c's entry failed there
    assert summary.rejected_orders == 2  # refused, and c's failed entry
    assert summary.fills == 3 and summary.fees == pytest.approx(0.1)
    assert summary.latency_ms_p50 == pytest.approx(400.0)  # first fills at 200 and 600 ms
    assert summary.slippage_bps_mean == pytest.approx((50.0 - (-100.0)) / 2)


def test_a_plan_orch_hft_left_waiting_or_let_expire_is_not_an_order() -> None:
    dispatch = Dispatch(
        cycle_number=1,
        sent_at=T0,
        round_trip_ms=1.0,
        plans=[composed("w"), composed("x"), composed("unknown")],
        states={"w": PlanState.WAITING, "x": PlanState.EXPIRED},
    )
    _, summary = record_execution(ExecutionLedger(fill_cursor=0), dispatch, [], 0, order_id)
    assert (summary.plans_sent, summary.orders, summary.rejected_orders, summary.fills) == (3, 0, 0, 0)
    assert summary.latency_ms_p50 is None and summary.slippage_bps_mean is None


def test_without_a_dispatch_the_fills_are_still_attributed_and_the_cursor_moves() -> None:
    ledger = ExecutionLedger(pending_plans=[pending()], fill_cursor=3)
    after, summary = record_execution(ledger, None, [fill("p1:entry", 1.0, 100.0, 1.0)], 4, order_id)
    assert after.fill_cursor == 4 and after.pending_plans[0].entry_quantity == 1.0
    assert summary.plans_sent == 0 and summary.fills == 0


def test_a_refusal_of_a_plan_orch_hft_already_holds_is_an_earlier_attempts_acceptance() -> None:
    rejected = {"sent-before": "plan sent-before is already open", "bad": "valid_until is in the past"}
    assert refusals(rejected, {"sent-before": PlanState.OPEN}) == {"bad": "valid_until is in the past"}


def test_an_entry_has_settled_once_it_filled_or_never_will() -> None:
    settled = {state for state in PlanState if state.entry_settled}
    assert settled == {
        PlanState.OPEN,
        PlanState.EXITING,
        PlanState.CLOSED,
        PlanState.FAILED,
        PlanState.EXPIRED,
    }


# ---- Settling plans for learning -----------------------------------------------------------------------


def test_closed_plans_become_outcomes_done_ones_are_dropped_and_the_rest_stay_pending() -> None:
    now = T0 + timedelta(seconds=60)
    plans = [
        pending("closed"),
        pending("closed-no-exit-fill"),  # orch hft says closed, but no exit fill was read yet
        pending("open"),
        pending("expired"),
        pending("failed"),
        pending("forgotten"),  # orch hft no longer knows it
        pending("stale", sent_at=now - timedelta(seconds=101)),
    ]
    states = {
        "closed": PlanState.CLOSED,
        "closed-no-exit-fill": PlanState.CLOSED,
        "open": PlanState.OPEN,
        "expired": PlanState.EXPIRED,
        "failed": PlanState.FAILED,
        "stale": PlanState.OPEN,
    }
    fills = [
        fill("closed:entry", 1.0, 100.0, 1.0, fee=0.1),
        fill("closed:exit:1", 1.0, 104.0, 30.0, fee=0.1),
    ]
    ledger = ExecutionLedger(pending_plans=plans, fill_cursor=5, peak_equity=2.0)
    after, settled = settle_plans(ledger, fills, 9, order_id, states, now, max_age_seconds=100)

    [outcome] = settled.outcomes
    assert outcome.plan_id == "closed" and outcome.pnl == pytest.approx(3.8)
    assert outcome.r_multiple == pytest.approx(3.8 / 50.0) and outcome.regime is Regime.TRENDING
    assert [p.plan_id for p in after.pending_plans] == ["closed-no-exit-fill", "open"]
    assert (settled.still_open, settled.never_entered) == (2, 4)
    assert after.fill_cursor == 9 and after.peak_equity == 2.0


# ---- The health window --------------------------------------------------------------------------------


def reading(seconds: float, orders: float = 0.0, denials: float = 0.0, fees: float = 0.0) -> HealthReading:
    counters = HealthCounters(orders_sent=orders, denials=denials, fees=fees)
    return HealthReading(at=T0 + timedelta(seconds=seconds), counters=counters)


def test_the_health_window_spans_cycles_moves_up_once_too_long_and_restarts_with_orch_hft() -> None:
    first = advance_health_window(None, reading(0, orders=10), 900)
    assert first.start == first.latest == reading(0, orders=10)  # the first look starts a window
    second = advance_health_window(first, reading(600, orders=14), 900)
    assert second.start == first.start and second.change.orders_sent == 4
    # Past 900 s the start moves up to the previous look: between one and two cycles longer than 900 s.
    third = advance_health_window(second, reading(1200, orders=20), 900)
    assert third.start == reading(600, orders=14) and third.change.orders_sent == 6
    # orch hft restarted: its totals went back, and a fresh window starts.
    restarted = advance_health_window(third, reading(1300, orders=2, denials=0), 900)
    assert restarted.start == restarted.latest and restarted.change == HealthCounters()
    denials_back = advance_health_window(
        HealthWindow(start=reading(0, denials=5), latest=reading(60, denials=5)), reading(120, denials=4), 900
    )
    assert denials_back.start == reading(120, denials=4)


def test_counters_read_orch_hfts_metrics_and_count_only_broken_requests_as_errors() -> None:
    metrics = {
        "orders_sent_total": 40.0,
        "denials_total{reason=max_order_notional}": 3.0,
        "denials_total{reason=invalid_order}": 2.0,
        "denials_total{reason=no_price}": 1.0,
        "tick_to_order_p99_us": 450.0,
    }
    counters = counters_of(metrics, pnl=-12.5, fees=1.25)
    assert counters == HealthCounters(orders_sent=40, denials=6, errors=3, pnl=-12.5, fees=1.25)


def test_a_health_look_adds_the_fees_read_since_the_last_and_raises_the_peak_equity() -> None:
    ledger = ExecutionLedger(fill_cursor=3)
    look, _ = record_health(
        ledger, {"orders_sent_total": 5.0}, at=T0, pnl=10.0, new_fees=0.5, equity=1_010.0, window_seconds=900
    )
    again, change = record_health(
        look,
        {"orders_sent_total": 9.0},
        at=T0 + timedelta(seconds=60),
        pnl=-30.0,
        new_fees=0.25,
        equity=970.0,
        window_seconds=900,
    )
    assert look.peak_equity == 1_010.0 and again.peak_equity == 1_010.0  # a loss never lowers the peak
    assert again.fill_cursor == 3
    window = again.health_window
    assert window is not None and window.latest.counters.fees == 0.75
    assert change == window.change == HealthCounters(orders_sent=4.0, pnl=-40.0, fees=0.25)
