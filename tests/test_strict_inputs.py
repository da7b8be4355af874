"""Workflow inputs and update arguments are parsed strictly, however they are sent.

Sent as the `temporal` CLI sends them (a plain JSON payload from a client with temporalio's default
converter), a string where a bool or a number belongs, or `0`/`1` for a bool, must fail the workflow
at once with the non-retryable `InvalidInput` naming the field (not retry its task forever, and above
all not read `"yes"` as `true`), and must change nothing: the emergency stays in force, the schedules
stay paused, SystemState keeps its configuration, orch hft stays halted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from orch.config import Settings
from orch.contracts.emergency import EmergencyStopInput, EmergencyStopResult
from orch.contracts.names import (
    COMMANDS_QUEUE,
    CRITICAL_QUEUE,
    EMERGENCY_STOP,
    RESTART_DISCOVERY,
    RESUME_TRADING,
    SYSTEM_STATE_WORKFLOW_ID,
)
from orch.contracts.system import EmergencyLevel, SystemStateSnapshot, TradingMode
from orch.contracts.trading import TradingState
from tests.conftest import Stack
from tests.emergency_support import QUIET, client_of, running_hft, with_hft
from tests.helpers import FAST, schedule_view, system_state
from tests.test_emergency_stop import schedules
from tests.test_hft_process import HftUnderTest


@pytest.fixture
async def quiet_hft(tmp_path: Path) -> AsyncIterator[HftUnderTest]:
    async with running_hft(tmp_path / "hft", **QUIET) as process:
        yield process


def assert_invalid_input(error: BaseException, *mentions: str) -> None:
    """The failure a user reads: InvalidInput, final, naming the field and the value sent."""
    cause = error.cause if isinstance(error, WorkflowFailureError | WorkflowUpdateFailedError) else error
    assert isinstance(cause, ApplicationError), repr(cause)
    assert cause.type == "InvalidInput" and cause.non_retryable, (cause.type, cause.non_retryable)
    for mention in mentions:
        assert mention in cause.message, cause.message


async def start_raw(
    raw: Client, workflow: str, payload: dict[str, Any], workflow_id: str, queue: str
) -> None:
    """Start `workflow` with `payload` as JSON and expect it to fail at once with InvalidInput."""
    handle = await raw.start_workflow(workflow, payload, id=workflow_id, task_queue=queue)
    with pytest.raises(WorkflowFailureError) as failure:
        # A payload that fails the workflow task instead would retry it forever: bound the wait.
        await asyncio.wait_for(handle.result(), timeout=30)
    return failure.value


def what_a_user_checks(state: SystemStateSnapshot) -> dict[str, Any]:
    return {
        "level": state.config.emergency_level,
        "open incidents": [i.incident_id for i in state.incidents if i.resolved_at is None],
        "active strategy": state.config.active_strategy,
        "trading mode": state.config.trading_mode,
        "max concurrent": state.config.max_concurrent_workflows,
    }


async def test_strings_and_numbers_for_bools_fail_at_once_and_change_nothing(
    bare_stack: Stack, settings: Settings, quiet_hft: HftUnderTest
) -> None:
    bare_stack.settings = with_hft(settings, quiet_hft.url)
    await bare_stack.start()
    client = bare_stack.client
    hft_client = client_of(quiet_hft)
    stopped = await client.execute_workflow(
        EMERGENCY_STOP,
        EmergencyStopInput(reason="drill", level=EmergencyLevel.HALT, options=FAST),
        id="strict-stop",
        task_queue=CRITICAL_QUEUE,
        result_type=EmergencyStopResult,
    )
    assert stopped.level_in_force is EmergencyLevel.HALT
    before = what_a_user_checks(await system_state(client))
    assert before["level"] is EmergencyLevel.HALT and before["open incidents"] == ["strict-stop"]
    schedules_before = await schedules(client)
    assert all(paused for paused, _ in schedules_before.values())
    discovery_before = await schedule_view(client)

    # A client with temporalio's default converter sends plain JSON, as `temporal workflow start` does.
    raw = await Client.connect(settings.temporal_address, namespace=settings.namespace)

    failure = await start_raw(raw, RESUME_TRADING, {"confirm": "yes"}, "resume-yes", CRITICAL_QUEUE)
    assert_invalid_input(failure, "confirm", "'yes'")
    failure = await start_raw(raw, RESUME_TRADING, {"confirm": 1}, "resume-one", CRITICAL_QUEUE)
    assert_invalid_input(failure, "confirm")
    failure = await start_raw(
        raw,
        RESUME_TRADING,
        {"confirm": True, "options": {"max_retries": "3"}},
        "resume-string-retries",
        CRITICAL_QUEUE,
    )
    assert_invalid_input(failure, "options.max_retries", "'3'")
    failure = await start_raw(
        raw,
        RESTART_DISCOVERY,
        {"strategy": "legacy_v0", "drain_timeout_seconds": "0.001"},
        "restart-string-number",
        COMMANDS_QUEUE,
    )
    assert_invalid_input(failure, "drain_timeout_seconds", "'0.001'")
    failure = await start_raw(
        raw,
        RESTART_DISCOVERY,
        {"strategy": "legacy_v0", "force_stop": 0},
        "restart-zero",
        COMMANDS_QUEUE,
    )
    assert_invalid_input(failure, "force_stop")
    failure = await start_raw(
        raw,
        EMERGENCY_STOP,
        {"reason": "x", "level": "flatten", "options": {"step_timeout_seconds": "5"}},
        "stop-string-number",
        CRITICAL_QUEUE,
    )
    assert_invalid_input(failure, "options.step_timeout_seconds")

    # Updates on SystemState are refused before they reach its history.
    system = raw.get_workflow_handle(SYSTEM_STATE_WORKFLOW_ID)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await system.execute_update(
            "set_trading_mode", {"mode": "paper", "requested_by": "t", "confirm_live": "yes"}
        )
    assert_invalid_input(refused.value, "confirm_live", "'yes'")
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await system.execute_update("set_max_concurrent_workflows", "7")
    assert_invalid_input(refused.value, "'7'")
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await system.execute_update(
            "resolve_emergency", {"requested_by": "t", "confirm": "true", "reason": "sneaky"}
        )
    assert_invalid_input(refused.value, "confirm")

    # Nothing changed, at each source.
    assert what_a_user_checks(await system_state(client)) == before
    assert await schedules(client) == schedules_before
    assert await schedule_view(client) == discovery_before
    assert (await hft_client.state()).state is TradingState.HALTED
    assert (await system_state(client)).config.trading_mode is TradingMode.SIMULATED
