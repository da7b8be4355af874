"""A worker killed mid-step costs seconds, not the step's whole timeout.

Every command step heartbeats while it runs, so when its worker dies Temporal notices after the
command's heartbeat timeout and retries the step on another worker; before, a step without heartbeats
(clearing the job queue, restarting the service, updating the configuration) waited out its whole
start-to-close timeout (120 s by default) with the discovery-scan schedule paused all along.

The worker runs as a real `orch worker` process and is killed with SIGKILL in the middle of
`clearing_job_queue`: the step is kept busy by scans that were started but never picked up (no worker
polls `orch-discovery` yet), which it terminates one by one. What proves the recovery is the history:
the step's first attempt timed out on its HEARTBEAT timeout, a few seconds, not on start-to-close.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from datetime import timedelta
from typing import Any

from temporalio.api.enums.v1 import EventType, PendingActivityState, TimeoutType
from temporalio.client import Client, WorkflowHandle

from orch.config import Settings
from orch.contracts.commands import RestartDiscoveryInput, RestartDiscoveryResult
from orch.contracts.discovery import DiscoveryScanInput
from orch.contracts.names import (
    COMMANDS_QUEUE,
    CRITICAL_QUEUE,
    DISCOVERY_QUEUE,
    DISCOVERY_SCAN,
    RESTART_DISCOVERY,
)
from tests.conftest import orch_env
from tests.helpers import FAST, eventually, progress_of, schedule_view, system_state

# Enough never-picked-up scans that terminating them keeps the step busy for a few seconds.
QUEUED_SCANS = 200
HEARTBEAT_TIMEOUT_SECONDS = 2.0
# Far above the heartbeat timeout: a step that only times out on start-to-close is plain in history.
STEP_TIMEOUT_SECONDS = 60.0
SCANS_QUERY = f"WorkflowType = '{DISCOVERY_SCAN}' AND WorkflowId STARTS_WITH 'queued-scan-'"


def orch_worker(settings: Settings, *queues: str) -> subprocess.Popen:
    queue_args = [arg for queue in queues for arg in ("--queue", queue)]
    return subprocess.Popen(
        [sys.executable, "-m", "orch.cli.main", "worker", *queue_args],
        env=orch_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(process: subprocess.Popen) -> None:
    process.kill()
    process.wait()


async def clear_step_events(handle: WorkflowHandle) -> tuple[Any, Any]:
    """The clearing step's scheduled event and the started event of its attempt that finished.

    A retried attempt leaves no event of its own: the started event of the one that finished carries
    its attempt number and the previous attempt's failure.
    """
    scheduled = started = None
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            if attributes.activity_type.name == "clear_job_queue":
                scheduled, scheduled_id = attributes, event.event_id
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED and scheduled is not None:
            attributes = event.activity_task_started_event_attributes
            if attributes.scheduled_event_id == scheduled_id:
                started = attributes
    return scheduled, started


async def count(client: Client, query: str) -> int:
    return (await client.count_workflows(query)).count


async def test_a_worker_killed_mid_step_is_replaced_within_the_heartbeat_timeout(
    settings: Settings, client: Client
) -> None:
    commands_worker = orch_worker(settings, COMMANDS_QUEUE, CRITICAL_QUEUE)
    workers = [commands_worker]
    try:
        await eventually(lambda: system_state(client), timeout=60)
        for index in range(QUEUED_SCANS):
            await client.start_workflow(
                DISCOVERY_SCAN,
                DiscoveryScanInput(strategy="hybrid_v1", requested_by="test"),
                id=f"queued-scan-{index}",
                task_queue=DISCOVERY_QUEUE,
            )
        await eventually(
            lambda: _at_least(client, f"{SCANS_QUERY} AND ExecutionStatus = 'Running'", QUEUED_SCANS),
            timeout=30,
        )
        options = FAST.model_copy(
            update={
                "heartbeat_timeout_seconds": HEARTBEAT_TIMEOUT_SECONDS,
                "step_timeout_seconds": STEP_TIMEOUT_SECONDS,
            }
        )
        handle = await client.start_workflow(
            RESTART_DISCOVERY,
            RestartDiscoveryInput(strategy="legacy_v0", options=options),
            id=f"restart-{uuid.uuid4().hex[:8]}",
            task_queue=COMMANDS_QUEUE,
            result_type=RestartDiscoveryResult,
        )

        async def clearing_under_way() -> bool:
            # Mid-step: the server sees the step's first attempt started and not finished, and it has
            # already terminated some of the queued scans.
            pending = (await handle.describe()).raw_description.pending_activities
            running = any(
                a.activity_type.name == "clear_job_queue"
                and a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                and a.attempt == 1
                for a in pending
            )
            return running and await count(client, f"{SCANS_QUERY} AND ExecutionStatus = 'Terminated'") > 0

        await eventually(clearing_under_way, timeout=60, every=0.02)
        commands_worker.send_signal(signal.SIGKILL)
        commands_worker.wait()
        workers.append(orch_worker(settings, COMMANDS_QUEUE, CRITICAL_QUEUE))

        async def cleared() -> bool:
            return "clearing_job_queue" in (await progress_of(handle)).details.steps_completed

        # Bounded above the step's start-to-close timeout, so the old behaviour fails on the assertion
        # below (which timeout ended the first attempt), which says what went wrong.
        await eventually(cleared, timeout=STEP_TIMEOUT_SECONDS + 30)
        scheduled, started = await clear_step_events(handle)
        assert started.attempt == 2, f"the step was not killed mid-way: attempt {started.attempt} finished it"
        timeout_type = started.last_failure.timeout_failure_info.timeout_type
        assert timeout_type == TimeoutType.TIMEOUT_TYPE_HEARTBEAT, (
            f"the killed worker's step waited out its {TimeoutType.Name(timeout_type)} timeout "
            f"({STEP_TIMEOUT_SECONDS:g} s), not the {HEARTBEAT_TIMEOUT_SECONDS:g} s heartbeat timeout"
        )
        assert scheduled.heartbeat_timeout.ToTimedelta() == timedelta(seconds=HEARTBEAT_TIMEOUT_SECONDS)
        assert scheduled.start_to_close_timeout.ToTimedelta() == timedelta(seconds=STEP_TIMEOUT_SECONDS)

        # Only now a worker polls orch-discovery: every queued scan was removed before it could run.
        workers.append(orch_worker(settings, DISCOVERY_QUEUE))
        result = await handle.result()
        state = await system_state(client)
    finally:
        for worker in workers:
            stop(worker)

    assert result.status == "completed", result
    clear = next(step for step in result.steps if step.name == "clearing_job_queue")
    assert clear.attempts == 2 and clear.summary.endswith("queued scans removed"), clear
    assert await count(client, f"{SCANS_QUERY} AND ExecutionStatus = 'Running'") == 0
    assert state.config.active_strategy == "legacy_v0"
    assert (await schedule_view(client))[0::2] == (False, "legacy_v0")


async def _at_least(client: Client, query: str, expected: int) -> bool:
    return await count(client, query) >= expected
