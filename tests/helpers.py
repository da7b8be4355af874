"""Small waits and readers the Temporal tests share."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio.client import Client, ScheduleActionStartWorkflow, WorkflowHandle

from orch.contracts.commands import CommandOptions, Progress
from orch.contracts.discovery import DiscoveryScanInput
from orch.contracts.names import DISCOVERY_SCHEDULE_ID, SYSTEM_STATE_WORKFLOW_ID
from orch.contracts.system import SystemStateSnapshot
from orch.converter import DATA_CONVERTER

T = TypeVar("T")

# Retries and timeouts shrunk so failure paths finish in seconds.
FAST = CommandOptions(
    max_retries=3,
    initial_retry_interval_seconds=0.2,
    max_retry_interval_seconds=1.0,
    step_timeout_seconds=30,
    heartbeat_timeout_seconds=2,
    workflow_timeout_seconds=120,
)


async def eventually(check: Callable[[], Awaitable[T]], timeout: float = 30, every: float = 0.05) -> T:
    """Poll `check` until it returns a truthy value (which is returned) or raise on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await check()
            if last:
                return last
        except Exception as err:
            last = err
        await asyncio.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s; last: {last!r}")


async def progress_of(handle: WorkflowHandle[Any, Any]) -> Progress:
    return await handle.query("progress", result_type=Progress)


async def system_state(client: Client) -> SystemStateSnapshot:
    return await client.get_workflow_handle(SYSTEM_STATE_WORKFLOW_ID).query(
        "state", result_type=SystemStateSnapshot
    )


async def schedule_view(client: Client) -> tuple[bool, str, str]:
    """(paused, note, strategy) of the discovery-scan schedule."""
    description = await client.get_schedule_handle(DISCOVERY_SCHEDULE_ID).describe()
    action = description.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    [scan_input] = await DATA_CONVERTER.decode(action.args, [DiscoveryScanInput])
    state = description.schedule.state
    return state.paused, state.note or "", scan_input.strategy


async def workflow_ids(client: Client, query: str) -> list[str]:
    return [execution.id async for execution in client.list_workflows(query)]
