"""`orch health-check` against a real stack: what a user reads in the table, and the exit code.

Healthy stack: exit 0 and every component in the table. orch hft down: exit 1, and it says so. No
worker on orch-discovery: unhealthy, naming the queue. No worker on orch-critical: the check cannot
run, and the CLI says exactly that.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orch.agents.health import evaluate_health
from orch.agents.scheduler import initial_state
from orch.config import Settings
from orch.contracts.cycle import (
    AdapterHealth,
    AgentErrorLog,
    AgentErrorRecord,
    HealthFigures,
    HealthThresholds,
)
from orch.contracts.emergency import HealthCheckInput, HealthCheckResult
from orch.contracts.engine import (
    EngineState,
    EngineStatus,
    ExecutionSettings,
    TradingEngineInput,
    engine_workflow_id,
)
from orch.contracts.names import COMMANDS_QUEUE, CRITICAL_QUEUE, HEALTH_CHECK, TRADING_ENGINE
from orch.contracts.system import DataSources, DataSourcesChange
from tests.conftest import Stack
from tests.emergency_support import running_hft, with_hft
from tests.helpers import eventually
from tests.test_hft_process import TOKEN, HftUnderTest


@pytest.fixture
async def hft(tmp_path: Path) -> AsyncIterator[HftUnderTest]:
    async with running_hft(tmp_path / "hft") as process:
        yield process


def rows(report: dict) -> dict[str, dict]:
    return {c["component"]: c for c in report["components"]}


async def test_a_healthy_stack_exits_0_with_every_component_in_the_table(
    bare_stack: Stack, settings: Settings, hft: HftUnderTest, orch
) -> None:
    bare_stack.settings = with_hft(settings, hft.url)
    await bare_stack.start()

    table = await orch("health-check")
    assert table.returncode == 0, table.stdout + table.stderr
    for name in ("temporal", "queue:orch", "queue:orch-critical", "queue:orch-discovery", "hft", "broker"):
        assert name in table.stdout
    assert "data:simulated" in table.stdout and "schedule:discovery-scan" in table.stdout
    assert "Health: healthy" in table.stdout

    answer = await orch("health-check", "--json")
    assert answer.returncode == 0, answer.stderr
    report = json.loads(answer.stdout)
    assert report["status"] == "healthy", [c for c in report["components"] if c["status"] != "healthy"]
    found = rows(report)
    assert (
        found["hft"]["metrics"]["ticks_per_second"] > 0 and "tick_to_order_p99_us" in found["hft"]["metrics"]
    )
    assert found["queue:orch-critical"]["metrics"]["workflow_pollers"] >= 1
    assert found["schedule:tactical-review"]["status"] == "healthy"
    assert found["emergency"]["detail"] == "none in force"
    assert report["emergency_level"] == "none" and report["disabled_agents"] == []
    assert "resource_pools" in report


async def test_hft_down_is_unhealthy_and_says_so(
    bare_stack: Stack, settings: Settings, tmp_path: Path, orch
) -> None:
    down = HftUnderTest(tmp_path)  # never started
    bare_stack.settings = with_hft(settings, down.url)
    await bare_stack.start()

    table = await orch("health-check")
    assert table.returncode == 1, table.stdout + table.stderr
    assert "orch hft" in table.stdout and "not answering" in table.stdout
    report = json.loads((await orch("health-check", "--json")).stdout)
    assert report["status"] == "unhealthy"
    assert rows(report)["hft"]["status"] == "unhealthy"
    assert rows(report)["broker"]["status"] == "unhealthy"
    # Everything else still reported: one component down does not hide the others.
    assert rows(report)["queue:orch-discovery"]["status"] == "healthy"


async def test_no_discovery_poller_is_unhealthy_and_names_the_queue(
    bare_stack: Stack, settings: Settings, hft: HftUnderTest, orch
) -> None:
    bare_stack.settings = with_hft(settings, hft.url)
    await bare_stack.start(queues=(COMMANDS_QUEUE, CRITICAL_QUEUE))

    table = await orch("health-check")
    assert table.returncode == 1, table.stdout + table.stderr
    assert "queue:orch-discovery" in table.stdout and "unhealthy" in table.stdout
    report = json.loads((await orch("health-check", "--json")).stdout)
    discovery = rows(report)["queue:orch-discovery"]
    assert discovery["status"] == "unhealthy"
    assert "no workflow or activity pollers on orch-discovery" in discovery["detail"]
    assert rows(report)["queue:orch"]["status"] == "healthy"


async def test_without_an_orch_critical_worker_the_cli_says_the_check_cannot_run(
    bare_stack: Stack, settings: Settings, orch
) -> None:
    await bare_stack.start(queues=(COMMANDS_QUEUE,))
    table = await orch("health-check")
    assert table.returncode == 1
    assert "no worker polls orch-critical" in table.stdout


async def test_the_temporal_cli_route_returns_the_same_report(
    bare_stack: Stack, settings: Settings, hft: HftUnderTest
) -> None:
    """`temporal workflow start --type HealthCheck --input '{}'`: the workflow answers with the report."""
    bare_stack.settings = with_hft(settings, hft.url)
    await bare_stack.start()
    result = await bare_stack.client.execute_workflow(
        HEALTH_CHECK,
        HealthCheckInput(),
        id="health-from-a-script",
        task_queue=CRITICAL_QUEUE,
        result_type=HealthCheckResult,
    )
    assert result.report is not None and result.report.status.value == "healthy"
    assert result.status.value == "completed" and len(result.steps) == 6


async def test_an_agent_disabled_by_a_trading_engine_is_reported(
    bare_stack: Stack, settings: Settings, hft: HftUnderTest, orch, monkeypatch
) -> None:
    """The engine keeps its cycle agents' error counts in its own state; the health check asks it."""
    bare_stack.settings = with_hft(settings, hft.url)
    await bare_stack.start()
    monkeypatch.setenv("ORCH_HFT_TOKEN", TOKEN)
    config = TradingEngineInput(
        account="t1", cycle_interval_seconds=3600, execution=ExecutionSettings(hft_url=hft.url)
    )
    broken = AgentErrorRecord(agent="patterns", consecutive_errors=5, total_errors=5, disabled=True)
    state = EngineState(
        account="t1",
        config=config.engine_config(),
        scheduler=initial_state(config.scheduler_settings()),
        paused=True,  # no cycle: only its state matters here
        agent_errors=AgentErrorLog(agents={"patterns": broken}),
    )
    engine = await bare_stack.client.start_workflow(
        TRADING_ENGINE,
        TradingEngineInput(account="t1", resume_state=state),
        id=engine_workflow_id("t1"),
        task_queue=COMMANDS_QUEUE,
    )
    checked = await orch("health-check", "--json")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    report = json.loads(checked.stdout)
    assert report["disabled_agents"] == ["patterns"]
    row = rows(report)["agent:patterns"]
    assert row["status"] == "unhealthy" and engine.id in row["detail"]
    # Paused by an operator: the one way trading may be off and the engine still healthy.
    paused = rows(report)[f"engine:{engine.id}"]
    assert paused["status"] == "healthy" and "paused by an operator" in paused["detail"], paused
    await engine.signal("stop")


async def test_open_circuit_breakers_and_an_engine_not_sending_plans_are_unhealthy_rows(
    bare_stack: Stack, settings: Settings, hft: HftUnderTest, orch, monkeypatch
) -> None:
    """Before: the cycles said "unhealthy; tripped: fees, profitability" and sent nothing, while every row
    of the health check was healthy."""
    bare_stack.settings = with_hft(settings, hft.url)
    await bare_stack.start()
    monkeypatch.setenv("ORCH_HFT_TOKEN", TOKEN)
    config = TradingEngineInput(
        account="t1",
        cycle_interval_seconds=3600,
        execution=ExecutionSettings(hft_url=hft.url, settle_seconds=1),
        hft_ready_timeout_seconds=2,
    )
    # The health agent's own verdict on a window whose fees ate the profit and then some: the breakers
    # stay open for their cooldown (300 s), so the engine's next cycle must send nothing.
    figures = HealthFigures(
        latency_ms_p50=0.1,
        latency_ms_p99=0.2,
        requests=100,
        errors=0,
        fees=30_000,
        gross_pnl=100,
        equity=1_000_000,
        broker=AdapterHealth(name="simulated", reachable=True),
        data_sources=[AdapterHealth(name="simulated", reachable=True)],
    )
    tripped = evaluate_health(figures, HealthThresholds(), datetime.now(UTC))
    assert {b.value for b in tripped.tripped} == {"fees", "profitability"}
    state = EngineState(
        account="t1",
        config=config.engine_config(),
        scheduler=initial_state(config.scheduler_settings()),
        health=tripped,
    )
    engine = await bare_stack.client.start_workflow(
        TRADING_ENGINE,
        TradingEngineInput(account="t1", resume_state=state),
        id=engine_workflow_id("t1"),
        task_queue=COMMANDS_QUEUE,
    )

    async def cycle_done() -> EngineStatus | None:
        status = await engine.query("status", result_type=EngineStatus)
        return status if status.cycles_total >= 1 else None

    status = await eventually(cycle_done, timeout=60)
    assert status.trading_blocked is not None, status.last_report

    checked = await orch("health-check", "--json")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    report = json.loads(checked.stdout)
    found = rows(report)
    engine_row = found[f"engine:{engine.id}"]
    assert engine_row["status"] == "unhealthy", engine_row
    assert "not sending plans (breakers_open)" in engine_row["detail"]
    assert "fees, profitability" in engine_row["detail"]
    for name in ("fees", "profitability"):
        # The figure now, and that its cooldown holds it open: the cycle re-measured a fresh window.
        row = found[f"breaker:{name}"]
        assert row["status"] == "unhealthy" and engine.id in row["detail"], row
        assert "held open until" in row["detail"] and "so its cycles send no plans" in row["detail"], row
    table = await orch("health-check")
    assert "breaker:fees" in table.stdout and "not sending plans" in table.stdout
    await engine.signal("stop")


async def test_each_data_source_is_probed_and_a_fallback_that_cannot_open_is_a_warning(
    bare_stack: Stack, settings: Settings, hft: HftUnderTest, orch
) -> None:
    bare_stack.settings = with_hft(settings, hft.url)
    await bare_stack.start()
    change = DataSourcesChange(
        sources=DataSources(primary="simulated", fallbacks=["csv"]), requested_by="test"
    )
    await bare_stack.system_state().execute_update("set_data_sources", change)

    checked = await orch("health-check", "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    report = json.loads(checked.stdout)
    assert report["status"] == "degraded"
    assert rows(report)["data:simulated"]["status"] == "healthy"
    csv = rows(report)["data:csv"]
    assert csv["status"] == "degraded" and "fallback" in csv["detail"] and "ORCH_CSV_FOLDER" in csv["detail"]


class _Unreadable(dict):
    def items(self):
        raise RuntimeError("schedule store unreadable")


async def test_a_probe_that_cannot_run_is_an_unhealthy_row_and_the_rest_of_the_report_stands(
    bare_stack: Stack, settings: Settings, hft: HftUnderTest, orch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("orch.activities.health.SCHEDULE_MISSING", _Unreadable())
    bare_stack.settings = with_hft(settings, hft.url)
    await bare_stack.start()

    checked = await orch("health-check", "--json")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    report = json.loads(checked.stdout)
    assert report["status"] == "unhealthy" and report["workflow_id"]
    schedules = rows(report)["schedules"]
    assert schedules["status"] == "unhealthy"
    assert "could not be checked: " in schedules["detail"]
    assert "schedule store unreadable" in schedules["detail"]
    # Every other probe answered as usual.
    assert rows(report)["hft"]["status"] == "healthy" and rows(report)["queue:orch"]["status"] == "healthy"
