"""Make sure the long-lived pieces exist: the `SystemState` entity and the `discovery-scan` schedule.

Every worker runs this at start-up; it is idempotent, so any number of replicas may race on it.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.common import WorkflowIDConflictPolicy

from orch.agents.discovery import known_strategies
from orch.config import Settings
from orch.contracts.discovery import DiscoveryScanInput
from orch.contracts.names import (
    COMMANDS_QUEUE,
    DISCOVERY_QUEUE,
    DISCOVERY_SCAN,
    DISCOVERY_SCHEDULE_ID,
    SYSTEM_STATE,
    SYSTEM_STATE_WORKFLOW_ID,
)
from orch.contracts.system import SystemConfig, SystemStateSnapshot


async def ensure_system_state(client: Client, settings: Settings) -> SystemStateSnapshot:
    """Start SystemState if it is not running, and register the strategies this worker knows."""
    initial = SystemStateSnapshot(
        config=SystemConfig(
            active_strategy=settings.discovery_strategy,
            max_concurrent_workflows=settings.max_concurrent_workflows,
        ),
        known_strategies=known_strategies(),
        reap_interval_seconds=settings.command_reap_interval_seconds,
    )
    handle = await client.start_workflow(
        SYSTEM_STATE,
        initial,
        id=SYSTEM_STATE_WORKFLOW_ID,
        task_queue=COMMANDS_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary="The system's live configuration; its history is the audit trail",
    )
    await handle.execute_update("register_strategies", known_strategies())
    return await handle.query("state", result_type=SystemStateSnapshot)


async def ensure_discovery_schedule(client: Client, settings: Settings, strategy: str) -> None:
    """Create the `discovery-scan` schedule with the active strategy, unless it exists."""
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            DISCOVERY_SCAN,
            DiscoveryScanInput(strategy=strategy, top_n=settings.discovery_top_n),
            id=DISCOVERY_SCHEDULE_ID,  # the schedule appends the start time
            task_queue=DISCOVERY_QUEUE,
        ),
        spec=ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.discovery_interval_seconds))]
        ),
        # A scan still running when the next is due is skipped, not queued: scans are snapshots.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(note="created by orch"),
    )
    try:
        await client.create_schedule(DISCOVERY_SCHEDULE_ID, schedule)
    except ScheduleAlreadyRunningError:
        pass


async def bootstrap(client: Client, settings: Settings) -> SystemStateSnapshot:
    snapshot = await ensure_system_state(client, settings)
    await ensure_discovery_schedule(client, settings, snapshot.config.active_strategy)
    return snapshot
