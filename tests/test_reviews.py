"""Tiers 3 and 4 on a real server: the `tactical-review` and `strategic-review` schedules, what each
review finds, and an agent that keeps failing being disabled, skipped and reported by the health check.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client, ScheduleActionStartWorkflow

from orch.config import Settings
from orch.contracts.emergency import ReviewReport, pause_note, paused_by
from orch.contracts.names import (
    COMMANDS_QUEUE,
    STRATEGIC_REVIEW,
    STRATEGIC_REVIEW_SCHEDULE_ID,
    TACTICAL_REVIEW,
    TACTICAL_REVIEW_SCHEDULE_ID,
)
from orch.market.base import PriceHistory
from orch.market.simulated import SimulatedMarket
from orch.workers.bootstrap import ensure_review_schedules
from tests.conftest import Stack
from tests.emergency_support import QUIET, running_hft, with_hft
from tests.helpers import eventually, system_state
from tests.test_hft_process import HftUnderTest


@pytest.fixture
async def hft(tmp_path: Path) -> AsyncIterator[HftUnderTest]:
    async with running_hft(tmp_path / "hft") as process:
        yield process


@pytest.fixture
async def quiet_hft(tmp_path: Path) -> AsyncIterator[HftUnderTest]:
    async with running_hft(tmp_path / "quiet-hft", **QUIET) as process:
        yield process


class CorruptFeed(SimulatedMarket):
    """A source whose bars come back misaligned (closes short of timestamps): the conditions agent
    raises on them every time, as an agent with a bug would."""

    def history(self, symbol: str, bars: int, end: datetime | None = None) -> PriceHistory:
        good = super().history(symbol, bars, end)
        return PriceHistory(
            symbol=symbol,
            timestamps=good.timestamps,
            open=good.open,
            high=good.high,
            low=good.low,
            close=good.close[:-5],
            volume=good.volume,
        )


async def run_review(client: Client, schedule_id: str, workflow_type: str) -> ReviewReport:
    """Trigger the schedule once and wait for the review it starts (by run: ids repeat within a second)."""
    query = f"WorkflowType = '{workflow_type}'"

    async def runs() -> set[tuple[str, str]]:
        return {(e.id, e.run_id) async for e in client.list_workflows(query)}

    before = await runs()
    await client.get_schedule_handle(schedule_id).trigger()

    async def started() -> list[tuple[str, str]]:
        return sorted((await runs()) - before)

    [(review_id, run_id)] = await eventually(started, timeout=30)
    return await client.get_workflow_handle(review_id, run_id=run_id, result_type=ReviewReport).result()


async def test_review_schedules_run_every_interval_and_report_each_area(
    bare_stack: Stack, settings: Settings, hft: HftUnderTest
) -> None:
    bare_stack.settings = with_hft(
        settings, hft.url, tactical_review_interval_seconds=45.0, strategic_review_interval_seconds=400.0
    )
    await bare_stack.start()
    client = bare_stack.client
    for schedule_id, workflow_type, every in (
        (TACTICAL_REVIEW_SCHEDULE_ID, TACTICAL_REVIEW, 45),
        (STRATEGIC_REVIEW_SCHEDULE_ID, STRATEGIC_REVIEW, 400),
    ):
        schedule = (await client.get_schedule_handle(schedule_id).describe()).schedule
        assert [i.every for i in schedule.spec.intervals] == [timedelta(seconds=every)]
        assert isinstance(schedule.action, ScheduleActionStartWorkflow)
        assert schedule.action.workflow == workflow_type and not schedule.state.paused

    tactical = await run_review(client, TACTICAL_REVIEW_SCHEDULE_ID, TACTICAL_REVIEW)
    findings = {f.area: f for f in tactical.findings}
    assert set(findings) == {"market_conditions", "portfolio_risk", "agent_health"}
    assert findings["market_conditions"].agent == "conditions"
    assert findings["market_conditions"].figures["symbols"] == settings.review_symbols
    assert "symbols from simulated" in findings["market_conditions"].summary
    assert "exposure_share" in findings["portfolio_risk"].figures
    assert findings["agent_health"].summary.startswith("2 agents answered, 0 failed")
    assert tactical.errors == [] and tactical.finished_at is not None

    strategic = await run_review(client, STRATEGIC_REVIEW_SCHEDULE_ID, STRATEGIC_REVIEW)
    findings = {f.area: f for f in strategic.findings}
    assert set(findings) == {
        "portfolio_optimisation",
        "strategy_performance",
        "system_health",
        "agent_health",
    }
    assert findings["system_health"].status.value == "healthy", findings["system_health"].notes
    assert "trend_weight" in findings["strategy_performance"].figures
    assert strategic.errors == []


async def test_an_agent_that_keeps_failing_is_disabled_skipped_and_reported(
    bare_stack: Stack, settings: Settings, quiet_hft: HftUnderTest, orch
) -> None:
    bare_stack.settings = with_hft(settings, quiet_hft.url, agent_error_threshold=2)
    await bare_stack.start(market=CorruptFeed(seed=7))
    client = bare_stack.client

    first = await run_review(client, TACTICAL_REVIEW_SCHEDULE_ID, TACTICAL_REVIEW)
    conditions = next(f for f in first.findings if f.area == "market_conditions")
    assert (
        conditions.status.value == "unhealthy" and "agent conditions failed: ValueError" in conditions.summary
    )
    assert first.agents_disabled == []
    log = (await system_state(client)).agent_errors["tactical-review"]
    assert log.agents["conditions"].consecutive_errors == 1 and not log.agents["conditions"].disabled
    # The other agent is not blamed for it.
    assert log.agents.get("risk") is None or log.agents["risk"].total_errors == 0

    second = await run_review(client, TACTICAL_REVIEW_SCHEDULE_ID, TACTICAL_REVIEW)
    assert second.agents_disabled == ["conditions"]
    state = await system_state(client)
    assert state.disabled_agents() == ["conditions"]
    assert any(c.field == "agent:conditions" and c.new == "disabled" for c in state.recent_changes)

    third = await run_review(client, TACTICAL_REVIEW_SCHEDULE_ID, TACTICAL_REVIEW)
    assert third.skipped_agents == ["conditions"]
    skipped = next(f for f in third.findings if f.area == "market_conditions")
    assert skipped.summary.startswith("skipped: agent conditions is disabled")
    assert (await system_state(client)).agent_errors["tactical-review"].agents["conditions"].total_errors == 2

    checked = await orch("health-check", "--json")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    report = json.loads(checked.stdout)
    assert report["disabled_agents"] == ["conditions"]
    row = next(c for c in report["components"] if c["component"] == "agent:conditions")
    assert row["status"] == "unhealthy" and "DISABLED" in row["detail"]

    # An operator re-enables it: an unknown name is refused first, changing nothing.
    listed = await orch("agents", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {"source": "tactical-review", "agent": "conditions", "disabled": True}.items() <= next(
        r for r in json.loads(listed.stdout) if r["agent"] == "conditions"
    ).items()
    refused = await orch("agents", "enable", "conditions", "no-such-agent")
    assert refused.returncode == 2 and "not disabled anywhere: no-such-agent" in refused.stderr
    assert (await system_state(client)).disabled_agents() == ["conditions"]
    enabled = await orch("agents", "enable", "conditions", "--requested-by", "alice", "--json")
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
    assert json.loads(enabled.stdout) == {
        "enabled_in_system_state": ["conditions"],
        "enabled_in_engine": [],
        "still_disabled": [],
    }
    state = await system_state(client)
    assert state.disabled_agents() == []
    assert any(
        c.field == "agent:conditions" and c.new == "enabled" and c.by == "alice" for c in state.recent_changes
    )
    # The next review runs the agent again (and, the feed still corrupt, counts from zero).
    fourth = await run_review(client, TACTICAL_REVIEW_SCHEDULE_ID, TACTICAL_REVIEW)
    assert fourth.skipped_agents == []
    record = (await system_state(client)).agent_errors["tactical-review"].agents["conditions"]
    assert record.consecutive_errors == 1 and not record.disabled


async def test_a_restarted_worker_applies_new_intervals_and_keeps_an_emergency_pause(
    bare_stack: Stack, settings: Settings
) -> None:
    await bare_stack.start(queues=(COMMANDS_QUEUE,))
    client = bare_stack.client
    handle = client.get_schedule_handle(TACTICAL_REVIEW_SCHEDULE_ID)
    await handle.pause(note=pause_note("emergency-stop-x", "drill"))

    snapshot = await system_state(client)
    await ensure_review_schedules(
        client, settings.model_copy(update={"tactical_review_interval_seconds": 12}), snapshot
    )
    schedule = (await handle.describe()).schedule
    assert [i.every for i in schedule.spec.intervals] == [timedelta(seconds=12)]
    assert schedule.state.paused and paused_by(schedule.state.note or "") == "emergency-stop-x"
