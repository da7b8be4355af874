"""`orch health-check` against a real stack: what a user reads in the table, and the exit code.

Healthy stack: exit 0 and every component in the table. orch hft down: exit 1, and it says so. No
worker on orch-discovery: unhealthy, naming the queue. No worker on orch-critical: the check cannot
run, and the CLI says exactly that.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orch.config import Settings
from orch.contracts.emergency import HealthCheckInput, HealthCheckResult
from orch.contracts.names import COMMANDS_QUEUE, CRITICAL_QUEUE, HEALTH_CHECK
from tests.conftest import Stack
from tests.emergency_support import running_hft, with_hft
from tests.test_hft_process import HftUnderTest


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
