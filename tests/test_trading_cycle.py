"""`TradingCycle` on a real Temporal server with a real `orch hft` subprocess: the nine steps, orders that
reach the process and come back as fills, degradation, critical failures, and risk rejections.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from temporalio.client import Client

from orch.activities.cycle import filter_universe
from orch.clients.cycle_reports import cycle_report_path
from orch.contracts.commands import CommandStatus
from orch.contracts.cycle import CycleOutcome, CycleStep, PortfolioRiskLimits, RiskVerdict
from orch.contracts.discovery import Candidate
from orch.contracts.engine import TradingCycleInput, TradingCycleResult
from orch.contracts.levels import TradingMode
from orch.contracts.names import COMMANDS_QUEUE, SYSTEM_STATE_WORKFLOW_ID, TRADING_CYCLE
from orch.contracts.system import EmergencyIncident, EmergencyLevel, TradingModeChange
from orch.contracts.trading import RiskLimits
from tests.conftest import Stack
from tests.cycle_support import (
    ACCOUNT,
    cycle_config,
    hft_get,
    hft_process,
    start_cycle_stack,
    start_hft,
)
from tests.helpers import eventually, progress_of, system_state
from tests.test_hft_process import HftUnderTest, hft

__all__ = ["hft", "hft_process"]  # fixtures used by name


async def run_cycle(client: Client, number: int = 1, **config: object) -> tuple[TradingCycleResult, str]:
    workflow_id = f"cycle-test-{uuid.uuid4().hex[:8]}"
    result = await client.execute_workflow(
        TRADING_CYCLE,
        TradingCycleInput(cycle_number=number, account=ACCOUNT, config=cycle_config(**config)),
        id=workflow_id,
        task_queue=COMMANDS_QUEUE,
        result_type=TradingCycleResult,
    )
    return result, workflow_id


def steps_of(result: TradingCycleResult) -> dict[str, CommandStatus]:
    return {s.name: s.status for s in result.report.steps}


async def plans_in_hft(process: HftUnderTest, prefix: str) -> list[dict]:
    return [p for p in await hft_get(process, "/plans") if p["plan"]["plan_id"].startswith(prefix)]


async def test_a_cycle_runs_all_nine_steps_and_its_orders_come_back_as_fills(
    bare_stack: Stack, hft_process: HftUnderTest
) -> None:
    await start_cycle_stack(bare_stack, hft_process)
    result, workflow_id = await run_cycle(bare_stack.client)
    report = result.report

    assert report.outcome is CycleOutcome.COMPLETED, report.steps
    assert steps_of(result) == {step.value: CommandStatus.COMPLETED for step in CycleStep}
    progress = await progress_of(bare_stack.client.get_workflow_handle(workflow_id))
    assert progress.status is CommandStatus.COMPLETED and progress.progress == 1.0
    assert progress.details.steps_completed == [step.value for step in CycleStep]

    # The trending market gives every crypto pair a buy; risk approved them; orch hft traded them.
    assert report.symbols_sensed == 4 and report.plans
    assert all(line.verdict in (RiskVerdict.APPROVE, RiskVerdict.SCALE_DOWN) for line in report.plans)
    execution = report.execution
    assert execution is not None
    assert execution.plans_sent == len(report.plans)
    assert execution.orders >= 1 and execution.fills >= 1, execution
    assert execution.latency_ms_p50 is not None and execution.slippage_bps_mean is not None
    sent = {line.plan_id for line in report.plans}
    in_hft = await plans_in_hft(hft_process, f"{ACCOUNT}-c1-")
    assert {p["plan"]["plan_id"] for p in in_hft} == sent
    orders = await hft_get(hft_process, "/orders", open="false", limit=1000)
    assert {o["plan_id"] for o in orders if o["status"] == "filled"} & sent
    # Entries went as market orders at the approved size: the plan's price is only the reference.
    for plan in in_hft:
        assert plan["plan"]["entry_price"] is None

    # Sized from a 1,000,000 account, each plan was shrunk to fit orch hft's per-order limit before it went.
    execute = next(s for s in report.steps if s.name == CycleStep.EXECUTE.value)
    assert "scaled to orch hft's limits" in execute.summary
    limit = RiskLimits().max_order_notional  # what this worker's ORCH_HFT_RISK__* say (the defaults)
    for pending in result.ledger.pending_plans:
        assert pending.composed.plan.quantity * (pending.composed.plan.entry_price or 0) <= limit
    # What the engine carries to the next cycle: the plans whose outcome is still open, the fill cursor.
    assert {p.plan_id for p in result.ledger.pending_plans} <= sent and result.ledger.fill_cursor
    assert result.health is not None and result.scheduler is not None
    # The report is durable twice: in the workflow's history (its result) and as a file.
    path = cycle_report_path(bare_stack.settings.home, ACCOUNT, 1)
    assert result.report_path == str(path)
    assert type(report).model_validate_json(path.read_text()) == report


async def test_a_failing_pattern_step_degrades_the_cycle_which_still_executes(
    bare_stack: Stack, hft_process: HftUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("pattern detector out of order")

    monkeypatch.setattr("orch.activities.cycle.analyse_patterns", broken)
    await start_cycle_stack(bare_stack, hft_process)
    result, _ = await run_cycle(bare_stack.client, error_threshold=1)

    assert result.report.outcome is CycleOutcome.DEGRADED
    failed = next(s for s in result.report.steps if s.name == CycleStep.ANALYSE_PATTERNS.value)
    assert failed.status is CommandStatus.FAILED and failed.attempts == 2
    assert "pattern detector out of order" in (failed.error or "")
    assert steps_of(result)[CycleStep.EXECUTE.value] is CommandStatus.COMPLETED
    assert result.report.execution is not None and result.report.execution.plans_sent >= 1
    assert await plans_in_hft(hft_process, f"{ACCOUNT}-c1-")
    # The failure is counted against the agent; at the threshold (1 here) the agent is disabled, and the
    # next cycle skips its step instead of failing it again.
    record = result.agent_errors.agents["analyse_patterns"]
    assert record.consecutive_errors == 1 and record.disabled
    second = await bare_stack.client.execute_workflow(
        TRADING_CYCLE,
        TradingCycleInput(
            cycle_number=2,
            account=ACCOUNT,
            config=cycle_config(error_threshold=1),
            agent_errors=result.agent_errors,
        ),
        id=f"cycle-test-{uuid.uuid4().hex[:8]}",
        task_queue=COMMANDS_QUEUE,
        result_type=TradingCycleResult,
    )
    skipped = next(s for s in second.report.steps if s.name == CycleStep.ANALYSE_PATTERNS.value)
    assert skipped.status is CommandStatus.CANCELLED and "disabled" in skipped.summary
    assert second.report.outcome is CycleOutcome.COMPLETED
    assert any("DISABLED" in note for note in second.report.notes)


async def test_a_failing_composition_step_is_recorded_and_nothing_is_executed(
    bare_stack: Stack, hft_process: HftUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Step 4 runs as a local activity: its failure is a failed step of the cycle, not a failed workflow."""

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("composer out of order")

    monkeypatch.setattr("orch.activities.cycle.compose", broken)
    await start_cycle_stack(bare_stack, hft_process)
    result, _ = await run_cycle(bare_stack.client)

    assert result.report.outcome is CycleOutcome.FAILED
    steps = {s.name: s for s in result.report.steps}
    failed = steps[CycleStep.COMPOSE_STRATEGY.value]
    assert failed.status is CommandStatus.FAILED and "composer out of order" in (failed.error or "")
    assert steps[CycleStep.EXECUTE.value].status is CommandStatus.CANCELLED
    assert steps[CycleStep.LOG_AND_REPORT.value].status is CommandStatus.COMPLETED
    assert await plans_in_hft(hft_process, ACCOUNT) == []


async def test_a_failing_risk_step_means_nothing_is_executed(
    bare_stack: Stack, hft_process: HftUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("risk model diverged")

    monkeypatch.setattr("orch.activities.cycle.evaluate_risk", broken)
    await start_cycle_stack(bare_stack, hft_process)
    result, workflow_id = await run_cycle(bare_stack.client, error_threshold=1)

    assert result.report.outcome is CycleOutcome.FAILED
    steps = {s.name: s for s in result.report.steps}
    assert steps[CycleStep.EVALUATE_RISKS.value].status is CommandStatus.FAILED
    assert steps[CycleStep.EXECUTE.value].status is CommandStatus.CANCELLED
    assert steps[CycleStep.EXECUTE.value].summary.startswith("skipped: evaluate_risks failed")
    # Health, learning and the report do not depend on the plans: they still ran.
    for step in (CycleStep.MONITOR_HEALTH, CycleStep.LEARN_AND_ADAPT, CycleStep.LOG_AND_REPORT):
        assert steps[step.value].status is CommandStatus.COMPLETED
    assert await plans_in_hft(hft_process, ACCOUNT) == []
    # Counted against the risk agent, which is never disabled: no cycle may execute without it.
    record = result.agent_errors.agents["evaluate_risks"]
    assert record.consecutive_errors == 1 and not record.disabled
    progress = await progress_of(bare_stack.client.get_workflow_handle(workflow_id))
    assert progress.status is CommandStatus.FAILED
    assert any("risk model diverged" in m for m in progress.details.error_messages)


async def test_a_risk_rejection_is_an_outcome_not_a_failure(
    bare_stack: Stack, hft_process: HftUnderTest
) -> None:
    await start_cycle_stack(bare_stack, hft_process)
    # No room in gross exposure: every plan is rejected with its reasons.
    result, _ = await run_cycle(bare_stack.client, risk_limits=PortfolioRiskLimits(max_gross_exposure=1e-6))

    assert result.report.outcome is CycleOutcome.COMPLETED
    assert result.report.plans and all(line.verdict is RiskVerdict.REJECT for line in result.report.plans)
    assert all(any("gross exposure" in r for r in line.reasons) for line in result.report.plans)
    assert steps_of(result)[CycleStep.EXECUTE.value] is CommandStatus.COMPLETED
    assert result.report.execution is not None and result.report.execution.plans_sent == 0
    assert await plans_in_hft(hft_process, ACCOUNT) == []


async def test_no_entries_while_systemstate_records_an_emergency(
    bare_stack: Stack, hft_process: HftUnderTest
) -> None:
    await start_cycle_stack(bare_stack, hft_process)
    incident = EmergencyIncident(
        incident_id="drill-1",
        level=EmergencyLevel.PAUSE_ENTRIES,
        reason="fire drill",
        requested_by="test",
        at=datetime.now(UTC),
    )
    await bare_stack.client.get_workflow_handle(SYSTEM_STATE_WORKFLOW_ID).execute_update(
        "declare_emergency", incident
    )
    result, _ = await run_cycle(bare_stack.client)

    execute = next(s for s in result.report.steps if s.name == CycleStep.EXECUTE.value)
    assert execute.status is CommandStatus.COMPLETED
    assert "nothing sent: emergency level pause_entries" in execute.summary
    assert result.report.plans  # still composed and judged: the report shows what would have traded
    assert await plans_in_hft(hft_process, ACCOUNT) == []


async def test_no_plans_reach_orch_hft_while_its_broker_does_not_match_the_trading_mode(
    bare_stack: Stack, hft_process: HftUnderTest
) -> None:
    await start_cycle_stack(bare_stack, hft_process)
    # SystemState says paper (as after `orch integrate-real-data`); this orch hft runs the simulated broker.
    await bare_stack.client.get_workflow_handle(SYSTEM_STATE_WORKFLOW_ID).execute_update(
        "set_trading_mode", TradingModeChange(mode=TradingMode.PAPER, requested_by="test")
    )
    result, _ = await run_cycle(bare_stack.client)

    execute = next(s for s in result.report.steps if s.name == CycleStep.EXECUTE.value)
    assert execute.status is CommandStatus.COMPLETED
    assert "SystemState's trading mode is paper but orch hft trades simulated" in execute.summary
    assert result.report.plans  # composed and judged all the same
    assert await plans_in_hft(hft_process, ACCOUNT) == []


async def test_a_report_that_cannot_be_written_is_still_counted_and_the_cycle_degrades(
    bare_stack: Stack, hft_process: HftUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr("orch.activities.cycle._write_atomically", disk_full)
    await start_cycle_stack(bare_stack, hft_process)
    result, _ = await run_cycle(bare_stack.client)

    assert result.report.outcome is CycleOutcome.DEGRADED and result.report_path is None
    assert steps_of(result)[CycleStep.LOG_AND_REPORT.value] is CommandStatus.FAILED
    assert steps_of(result)[CycleStep.EXECUTE.value] is CommandStatus.COMPLETED
    # The workflow counted the steps as the report step would have, its own failure included.
    record = result.agent_errors.agents["log_and_report"]
    assert record.consecutive_errors == 1 and "No space left on device" in (record.last_error or "")


# ---- One universe: what orch hft trades and what is open now ----------------------------------------

SATURDAY = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
MONDAY = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)  # 10:00 in New York: in the session
CHRISTMAS = datetime(2026, 12, 25, 15, 0, tzinfo=UTC)  # a Friday: the weekend rule let equities through


def _ranked(*symbols: str) -> list[Candidate]:
    return [
        Candidate(symbol=s, score=10.0 - i, rank=i, last_price=100.0) for i, s in enumerate(symbols, start=1)
    ]


@pytest.mark.parametrize(
    ("moment", "spy_closed"),
    [
        # Monday 7 December 2026 (New York winter time: the NYSE trades 14:30-21:00 UTC).
        (datetime(2026, 12, 7, 14, 29, tzinfo=UTC), "SPY (before the open)"),  # a minute before the open
        (datetime(2026, 12, 7, 14, 30, tzinfo=UTC), None),  # at the open
        (datetime(2026, 12, 7, 20, 59, tzinfo=UTC), None),  # the last minute
        (datetime(2026, 12, 7, 21, 0, tzinfo=UTC), "SPY (after the close)"),  # at the close
        # Christmas Eve closes at 13:00 New York; Christmas is a Friday holiday.
        (datetime(2026, 12, 24, 17, 59, tzinfo=UTC), None),
        (datetime(2026, 12, 24, 18, 0, tzinfo=UTC), "SPY (after an early close)"),
        (datetime(2026, 12, 25, 15, 0, tzinfo=UTC), "SPY (holiday: Christmas)"),
        (datetime(2026, 12, 5, 15, 0, tzinfo=UTC), "SPY (weekend)"),  # Saturday midday
        (datetime(2026, 12, 7, 0, 0, tzinfo=UTC), "SPY (weekend)"),  # Monday 00:00 UTC: Sunday in New York
    ],
)
def test_the_universe_keeps_what_orch_hft_trades_and_is_open_on_both_sides_of_each_session_limit(
    moment: datetime, spy_closed: str | None
) -> None:
    ranking = _ranked("XOM", "SPY", "IBM", "BTC/USD", "ETH/USD")
    kept, universe = filter_universe(ranking, ["SPY", "BTC/USD", "ETH/USD"], moment.timestamp(), 10, "scan s")

    expected = ["BTC/USD", "ETH/USD"] if spy_closed else ["SPY", "BTC/USD", "ETH/USD"]
    assert [c.symbol for c in kept] == expected and universe.kept == expected
    assert [c.rank for c in kept] == list(range(1, len(expected) + 1))  # re-ranked from 1
    assert list(map(str, universe.closed)) == ([spy_closed] if spy_closed else [])
    assert universe.not_tradable == 2 and universe.not_tradable_top == ["XOM", "IBM"]
    lines = universe.lines()
    assert "not tradable by orch hft: 2 ranked symbols (best: XOM, IBM)" in lines
    assert (f"closed: {spy_closed}" in lines) if spy_closed else not any("closed:" in line for line in lines)


def test_the_universe_keeps_at_most_top_n_and_names_a_closed_symbol_discovery_did_not_rank() -> None:
    kept, universe = filter_universe(
        _ranked("BTC/USD", "ETH/USD", "SOL/USD"),
        ["BTC/USD", "ETH/USD", "SOL/USD", "AAPL"],
        SATURDAY.timestamp(),
        2,
        "s",
    )
    assert [c.symbol for c in kept] == ["BTC/USD", "ETH/USD"]
    assert list(map(str, universe.closed)) == ["AAPL (weekend)"] and universe.not_tradable == 0


@pytest.mark.parametrize(
    ("moment", "spy_closed"),
    [(SATURDAY, "SPY (weekend)"), (CHRISTMAS, "SPY (holiday: Christmas)"), (MONDAY, None)],
)
async def test_a_cycle_plans_only_what_orch_hft_trades_and_is_open_and_says_what_it_left_out(
    bare_stack: Stack, hft: Callable[..., HftUnderTest], moment: datetime, spy_closed: str | None
) -> None:
    process = await start_hft(hft, ORCH_HFT_SYMBOLS='["SPY", "BTC/USD", "ETH/USD"]')
    # legacy_v0 (volume and momentum) scores the trending market; hybrid_v1's RSI filter leaves out trends
    # this steady.
    bare_stack.settings.discovery_strategy = "legacy_v0"
    await start_cycle_stack(bare_stack, process, market_clock=moment.timestamp)
    # A real discovery scan ranks the market's whole universe (60 symbols) and publishes its ranking.
    await bare_stack.client.get_schedule_handle("discovery-scan").trigger()
    published = await eventually(lambda: _latest_candidates(bare_stack.client), timeout=60)
    assert published.universe_size == 60 and len(published.ranking) > len(published.candidates)

    result, _ = await run_cycle(bare_stack.client, symbols=None)  # the universe is what orch hft trades
    report = result.report
    universe = report.universe
    assert universe is not None, report.notes
    assert universe.source == f"discovery scan {published.scan_workflow_id}", universe
    assert universe.tradable == ["SPY", "BTC/USD", "ETH/USD"]
    assert universe.not_tradable == len(published.ranking) - 3
    planned = {line.symbol for line in report.plans}
    if spy_closed is None:
        assert universe.closed == [] and "SPY" in universe.kept
        assert "SPY" in planned, report.rejected_candidates
        sent = {p["plan"]["symbol"] for p in await plans_in_hft(process, f"{ACCOUNT}-c1-")}
        assert "SPY" in sent
    else:
        assert list(map(str, universe.closed)) == [spy_closed], universe
        assert universe.kept == ["BTC/USD", "ETH/USD"]
        assert planned and "SPY" not in planned, report.plans
        assert all(p["plan"]["symbol"] != "SPY" for p in await plans_in_hft(process, ACCOUNT))
        initialize = next(s for s in report.steps if s.name == CycleStep.INITIALIZE.value)
        assert f"closed: {spy_closed}" in initialize.summary
    assert planned <= {"SPY", "BTC/USD", "ETH/USD"}


async def _latest_candidates(client: Client):  # type: ignore[no-untyped-def]
    return (await system_state(client)).latest_candidates
