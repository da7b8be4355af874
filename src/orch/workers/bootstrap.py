"""Make sure the long-lived pieces exist: the `SystemState` entity, the `discovery-scan` schedule and
the `tactical-review` and `strategic-review` schedules.

Every worker runs this at start-up; it is idempotent, so any number of replicas may race on it.
"""

from __future__ import annotations

import logging
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
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from orch.agents.discovery import known_strategies
from orch.clients.cycle_reports import next_cycle_number
from orch.clients.system_state import SystemStateClient
from orch.config import Settings
from orch.contracts.discovery import DiscoveryScanInput
from orch.contracts.emergency import ReviewInput, pause_note
from orch.contracts.engine import TradingEngineInput, engine_workflow_id
from orch.contracts.names import (
    COMMANDS_QUEUE,
    DISCOVERY_QUEUE,
    DISCOVERY_SCAN,
    DISCOVERY_SCHEDULE_ID,
    STRATEGIC_REVIEW,
    STRATEGIC_REVIEW_SCHEDULE_ID,
    SYSTEM_STATE,
    SYSTEM_STATE_WORKFLOW_ID,
    TACTICAL_REVIEW,
    TACTICAL_REVIEW_SCHEDULE_ID,
    TRADING_ENGINE,
)
from orch.contracts.system import EmergencyLevel, SystemConfig, SystemStateSnapshot

log = logging.getLogger("orch.bootstrap")


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
    await client.start_workflow(
        SYSTEM_STATE,
        initial,
        id=SYSTEM_STATE_WORKFLOW_ID,
        task_queue=COMMANDS_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary="The system's live configuration; its history is the audit trail",
    )
    system_state = SystemStateClient(client)
    await system_state.register_strategies(known_strategies())
    return await system_state.snapshot()


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


async def ensure_review_schedules(client: Client, settings: Settings, snapshot: SystemStateSnapshot) -> None:
    """Create the `tactical-review` and `strategic-review` schedules; an existing one gets the interval
    and input of today's settings, keeping its paused state and note (an emergency's pause holds)."""
    review = ReviewInput(symbols=settings.review_symbols, error_threshold=settings.agent_error_threshold)
    open_incidents = [i for i in snapshot.incidents if i.resolved_at is None]
    for schedule_id, workflow_type, every in (
        (TACTICAL_REVIEW_SCHEDULE_ID, TACTICAL_REVIEW, settings.tactical_review_interval_seconds),
        (STRATEGIC_REVIEW_SCHEDULE_ID, STRATEGIC_REVIEW, settings.strategic_review_interval_seconds),
    ):
        # Created during an emergency: paused under its note, so the resume unpauses it with the rest.
        state = (
            ScheduleState(
                paused=True, note=pause_note(open_incidents[-1].incident_id, open_incidents[-1].reason)
            )
            if open_incidents and snapshot.config.emergency_level is not EmergencyLevel.NONE
            else ScheduleState(note="created by orch")
        )
        schedule = Schedule(
            action=ScheduleActionStartWorkflow(
                workflow_type,
                review,
                id=schedule_id,  # the schedule appends the start time
                task_queue=COMMANDS_QUEUE,
                # A review older than a few intervals is no longer news.
                execution_timeout=timedelta(seconds=max(3 * every, 60)),
            ),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=every))]),
            # A review still running when the next is due is skipped: reviews are snapshots.
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            state=state,
        )
        try:
            await client.create_schedule(schedule_id, schedule)
        except ScheduleAlreadyRunningError:

            def keep_state(current: ScheduleUpdateInput, fresh: Schedule = schedule) -> ScheduleUpdate:
                fresh.state = current.description.schedule.state
                return ScheduleUpdate(schedule=fresh)

            try:
                await client.get_schedule_handle(schedule_id).update(keep_state)
            except RPCError as err:
                # Another replica updated it between our read and our write: its settings are as good.
                log.info("schedule %s not updated (%s); another worker did", schedule_id, err)


async def ensure_trading_engine(client: Client, settings: Settings) -> str | None:
    """Start the account's `TradingEngine` (`trading-engine-<account>`) unless it is running; returns its id.

    An engine that ended on purpose (`orch cycle stop` completes it) stays stopped: only a failed,
    terminated or timed-out one is started again here. `orch cycle start` starts a stopped one.
    """
    if not settings.trading_autostart:
        return None
    from orch.hft.config import HftSettings

    account = HftSettings().account  # the account of the `orch hft` this machine runs
    engine_id = engine_workflow_id(account)
    request = TradingEngineInput(
        account=account,
        cycle_interval_seconds=settings.cycle_interval_seconds,
        error_threshold=settings.agent_error_threshold,
        first_cycle_number=next_cycle_number(settings.home, account),
    )
    try:
        await client.start_workflow(
            TRADING_ENGINE,
            request,
            id=engine_id,
            task_queue=COMMANDS_QUEUE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            static_summary=f"The trading engine of {account}: one TradingCycle per interval",
        )
    except WorkflowAlreadyStartedError:
        return None  # stopped on purpose
    return engine_id


async def bootstrap(client: Client, settings: Settings) -> SystemStateSnapshot:
    snapshot = await ensure_system_state(client, settings)
    await ensure_discovery_schedule(client, settings, snapshot.config.active_strategy)
    await ensure_review_schedules(client, settings, snapshot)
    await ensure_trading_engine(client, settings)
    return snapshot
