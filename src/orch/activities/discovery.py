"""The discovery system's operations: scans, and the schedule and workflows that run them.

Restarting discovery acts on real things: the `discovery-scan` Temporal Schedule and the
`DiscoveryScan` workflows it starts. Every operation here is idempotent, because an activity may
run again after a worker dies half-way through it.
"""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta

from temporalio import activity
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import (
    Client,
    ScheduleActionStartWorkflow,
    ScheduleUpdate,
    ScheduleUpdateInput,
    WorkflowExecutionStatus,
    WorkflowFailureError,
)
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from orch.activities.steps import heartbeat_until_done, step_activity
from orch.agents.discovery import UnknownStrategyError, get_strategy, known_strategies, rank
from orch.clients.system_state import SystemStateClient
from orch.config import Settings
from orch.contracts.commands import StepOutcome
from orch.contracts.discovery import (
    CandidateSet,
    ConfigurationUpdated,
    DiscoveryRestarted,
    DiscoveryScanInput,
    DiscoveryStopped,
    DiscoveryValidated,
    QueueCleared,
    RestartDiscoveryRequest,
    RestoreDiscoveryRequest,
    StopDiscoveryRequest,
    UpdateConfigurationRequest,
    ValidateDiscoveryRequest,
    restart_pause_note,
)
from orch.contracts.errors import ErrorType
from orch.contracts.names import DISCOVERY_QUEUE, DISCOVERY_SCAN, DISCOVERY_SCHEDULE_ID
from orch.contracts.system import SetStrategyRequest
from orch.market.base import MarketDataSource

RUNNING_SCANS_QUERY = f"WorkflowType = '{DISCOVERY_SCAN}' AND ExecutionStatus = 'Running'"
# A worker that polled within this window counts as present.
POLLER_FRESHNESS = timedelta(minutes=2)


def restart_scan_id(restart_id: str) -> str:
    """The validation scan of one restart has a fixed id, so a retried step cannot start a second."""
    return f"discovery-scan-restart-{restart_id}"


class DiscoveryActivities:
    def __init__(self, client: Client, settings: Settings, market: MarketDataSource) -> None:
        self._client = client
        self._settings = settings
        self._market = market

    # ---- Validation --------------------------------------------------------------------------

    @activity.defn
    async def validate_strategy(self, strategy: str) -> list[str]:
        """Refuse an unknown strategy before anything is touched; returns the known strategies."""
        known = known_strategies()
        if strategy not in known:
            raise ApplicationError(
                f"unknown discovery strategy {strategy!r}; known strategies: {', '.join(known)}",
                type=ErrorType.UNKNOWN_STRATEGY,
                non_retryable=True,
            )
        return known

    # ---- The scan ------------------------------------------------------------------------------

    @activity.defn
    async def rank_universe(self, request: DiscoveryScanInput) -> CandidateSet:
        """Rank the market's universe with `request.strategy`; heartbeats once per symbol."""
        try:
            lookback = get_strategy(request.strategy).lookback
        except UnknownStrategyError as err:
            raise ApplicationError(str(err), type=ErrorType.UNKNOWN_STRATEGY, non_retryable=True) from err
        bars = max(lookback, self._settings.discovery_history_bars)
        end = datetime.now(UTC)
        universe = self._market.universe()
        histories = {}
        for done, symbol in enumerate(universe, start=1):
            histories[symbol] = self._market.history(symbol, bars, end)
            activity.heartbeat(f"loaded {done}/{len(universe)} symbols")
            # Yields even unpaced, so heartbeats and other activities are not starved.
            await asyncio.sleep(self._settings.discovery_scan_pacing_seconds)
        ranking = rank(request.strategy, histories, max(len(universe), 1))
        candidates = ranking[: request.top_n]
        return CandidateSet(
            scan_workflow_id=activity.info().workflow_id,
            strategy=request.strategy,
            as_of=end,
            universe_size=len(universe),
            candidates=candidates,
            ranking=[*candidates, *(c.model_copy(update={"factors": {}}) for c in ranking[request.top_n :])],
        )

    @activity.defn
    async def publish_candidates(self, candidates: CandidateSet) -> bool:
        """Hand a scan's candidates to SystemState; False when the strategy is no longer active."""
        published = await SystemStateClient(self._client).publish_candidates(
            candidates, update_id=f"publish-{candidates.scan_workflow_id}"
        )
        if not published:
            activity.logger.info("scan not published: %s is no longer active", candidates.strategy)
        return published

    # ---- RestartDiscoverySystem's steps --------------------------------------------------------

    @activity.defn
    @step_activity
    async def stop_discovery_workers(self, request: StopDiscoveryRequest) -> DiscoveryStopped:
        """Pause the schedule, then drain (or cancel, with force_stop) the scans in flight."""
        # Heartbeats cover the whole step: listing scans on a busy server can outlast the timeout.
        return await heartbeat_until_done(self._stop_discovery(request), detail="stopping discovery")

    async def _stop_discovery(self, request: StopDiscoveryRequest) -> DiscoveryStopped:
        schedule = self._client.get_schedule_handle(DISCOVERY_SCHEDULE_ID)
        state = (await schedule.describe()).schedule.state
        # Paused with our own note means a retry of this step: the first attempt paused it.
        was_paused = state.paused and state.note != restart_pause_note(request.restart_id)
        if not state.paused:
            await schedule.pause(note=restart_pause_note(request.restart_id))
        in_flight = [s for s in await self._running_scans(request.restart_id) if s[1]]
        ids = [workflow_id for workflow_id, _ in in_flight]
        if request.force_stop:
            for workflow_id in ids:
                await self._client.get_workflow_handle(workflow_id).cancel()
        try:
            await asyncio.wait_for(self._wait_closed(ids), timeout=request.drain_timeout_seconds)
        except TimeoutError:
            hint = "" if request.force_stop else "; use --force-stop to cancel them"
            raise ApplicationError(
                f"{len(ids)} scans did not stop within {request.drain_timeout_seconds:g} s{hint}",
                type=ErrorType.DRAIN_TIMEOUT,
                non_retryable=True,
            ) from None
        verb = "cancelled" if request.force_stop else "drained"
        return DiscoveryStopped(
            summary=f"schedule {DISCOVERY_SCHEDULE_ID} paused; {len(ids)} scans in flight {verb}",
            schedule_was_paused=was_paused,
            drained=[] if request.force_stop else ids,
            cancelled=ids if request.force_stop else [],
        )

    @activity.defn
    @step_activity
    async def clear_job_queue(self, restart_id: str) -> QueueCleared:
        """Remove scans that were started but never picked up by a worker: they would run the old
        strategy. Terminated, not cancelled: cancelling needs a worker, and they did nothing yet."""
        queued = [workflow_id for workflow_id, picked in await self._running_scans(restart_id) if not picked]
        for workflow_id in queued:
            await self._client.get_workflow_handle(workflow_id).terminate(
                reason=f"job queue cleared by RestartDiscoverySystem {restart_id}"
            )
        return QueueCleared(summary=f"{len(queued)} queued scans removed", removed=queued)

    @activity.defn
    @step_activity
    async def restart_discovery_service(self, request: RestartDiscoveryRequest) -> DiscoveryRestarted:
        """Point the (still paused) schedule at the new strategy and start one scan with it."""
        scan_input = DiscoveryScanInput(
            strategy=request.strategy,
            top_n=request.top_n,
            requested_by=request.restart_id,
            publish=False,
            heartbeat_timeout_seconds=request.heartbeat_timeout_seconds,
        )
        await self._point_schedule_at(request.strategy)
        scan_id = restart_scan_id(request.restart_id)
        try:
            await self._client.start_workflow(
                DISCOVERY_SCAN,
                scan_input,
                id=scan_id,
                task_queue=DISCOVERY_QUEUE,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                static_summary=f"Validation scan with {request.strategy} for {request.restart_id}",
            )
        except WorkflowAlreadyStartedError:
            pass  # this step ran before (a retry after a crash): the scan exists, do not start another
        return DiscoveryRestarted(
            summary=f"schedule points at {request.strategy}; validation scan {scan_id} started",
            scan_workflow_id=scan_id,
        )

    @activity.defn
    @step_activity
    async def validate_discovery(self, request: ValidateDiscoveryRequest) -> DiscoveryValidated:
        """A discovery worker is polling, the new scan succeeded, and its output is sane."""
        pollers = await self._live_pollers(DISCOVERY_QUEUE)
        if not pollers:
            raise ApplicationError(
                f"no worker is polling task queue {DISCOVERY_QUEUE}", type=ErrorType.NO_WORKERS
            )
        handle = self._client.get_workflow_handle(request.scan_workflow_id, result_type=CandidateSet)
        try:
            candidates: CandidateSet = await heartbeat_until_done(
                asyncio.wait_for(handle.result(), timeout=request.timeout_seconds),
                detail=f"waiting for scan {request.scan_workflow_id}",
            )
        except TimeoutError:
            raise ApplicationError(
                f"scan {request.scan_workflow_id} did not finish within {request.timeout_seconds:g} s",
                type=ErrorType.SCAN_TIMEOUT,
            ) from None
        except WorkflowFailureError as err:
            raise ApplicationError(
                f"scan {request.scan_workflow_id} failed: {_root_message(err)}",
                type=ErrorType.SCAN_FAILED,
                non_retryable=True,
            ) from err
        problems = _sanity_problems(candidates, request.strategy, set(self._market.universe()))
        if problems:
            raise ApplicationError(
                f"scan {request.scan_workflow_id} output rejected: {'; '.join(problems)}",
                type=ErrorType.INVALID_SCAN_OUTPUT,
                non_retryable=True,
            )
        top = ", ".join(c.symbol for c in candidates.candidates[:3])
        return DiscoveryValidated(
            summary=f"{len(candidates.candidates)} candidates from {request.strategy} (top: {top}); "
            f"{len(pollers)} discovery pollers",
            candidates=candidates,
        )

    @activity.defn
    @step_activity
    async def update_configuration(self, request: UpdateConfigurationRequest) -> ConfigurationUpdated:
        """Record the new active strategy and its validated candidates, then resume the schedule."""
        system_state = SystemStateClient(self._client)
        strategy = request.candidates.strategy
        # Update ids make a retry after a crash a no-op instead of a second change.
        previous = await system_state.activate_strategy(
            SetStrategyRequest(strategy=strategy, requested_by=request.restart_id),
            update_id=f"{request.restart_id}-activate",
        )
        await system_state.publish_candidates(request.candidates, update_id=f"{request.restart_id}-publish")
        resumed = await self._resume_if_we_paused(request.restart_id, f"resumed with {strategy}")
        return ConfigurationUpdated(
            summary=f"active strategy {previous} -> {strategy}"
            + ("; schedule resumed" if resumed else "; schedule left paused as it was"),
            previous_strategy=previous,
        )

    @activity.defn
    @step_activity
    async def restore_discovery(self, request: RestoreDiscoveryRequest) -> StepOutcome:
        """Compensation after a failed restart: the schedule runs the strategy SystemState says is
        active, as it did before, and the validation scan is stopped."""
        snapshot = await SystemStateClient(self._client).snapshot()
        active = snapshot.config.active_strategy
        await self._point_schedule_at(active)
        scan = self._client.get_workflow_handle(restart_scan_id(request.restart_id))
        try:
            if (await scan.describe()).status == WorkflowExecutionStatus.RUNNING:
                await scan.terminate(reason=f"RestartDiscoverySystem {request.restart_id} failed")
        except Exception:
            pass
        resumed = await self._resume_if_we_paused(request.restart_id, "restored after a failure")
        return StepOutcome(summary=f"schedule restored to {active}" + (" and resumed" if resumed else ""))

    # ---- Helpers -----------------------------------------------------------------------------

    async def _resume_if_we_paused(self, restart_id: str, why: str) -> bool:
        """Unpause the schedule only if this restart paused it: one paused by an operator stays paused."""
        schedule = self._client.get_schedule_handle(DISCOVERY_SCHEDULE_ID)
        state = (await schedule.describe()).schedule.state
        if not (state.paused and state.note == restart_pause_note(restart_id)):
            return False
        await schedule.unpause(note=f"{why} by RestartDiscoverySystem {restart_id}")
        return True

    async def _running_scans(self, restart_id: str) -> list[tuple[str, bool]]:
        """Running scans other than this restart's own, each with whether a worker has picked it up."""
        own = restart_scan_id(restart_id)
        scans = []
        async for execution in self._client.list_workflows(RUNNING_SCANS_QUERY):
            if execution.id == own:
                continue
            description = await self._client.get_workflow_handle(execution.id).describe()
            # Started and first task scheduled is 2 events; anything more means a worker took it.
            picked_up = (description.history_length or 0) > 2
            scans.append((execution.id, picked_up))
        return scans

    async def _wait_closed(self, workflow_ids: list[str]) -> None:
        for workflow_id in workflow_ids:
            handle = self._client.get_workflow_handle(workflow_id)
            while (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                await asyncio.sleep(0.2)

    async def _point_schedule_at(self, strategy: str) -> None:
        converter = self._client.data_converter

        async def point(update_input: ScheduleUpdateInput) -> ScheduleUpdate:
            schedule = update_input.description.schedule
            action = schedule.action
            assert isinstance(action, ScheduleActionStartWorkflow)
            [current] = await converter.decode(action.args, [DiscoveryScanInput])
            action.args = [current.model_copy(update={"strategy": strategy})]
            return ScheduleUpdate(schedule=schedule)

        await self._client.get_schedule_handle(DISCOVERY_SCHEDULE_ID).update(point)

    async def _live_pollers(self, task_queue: str) -> list[str]:
        response = await self._client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=self._client.namespace,
                task_queue=TaskQueue(name=task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
        cutoff = datetime.now(UTC) - POLLER_FRESHNESS
        return [p.identity for p in response.pollers if p.last_access_time.ToDatetime(tzinfo=UTC) >= cutoff]


def _sanity_problems(candidates: CandidateSet, strategy: str, universe: set[str]) -> list[str]:
    problems = []
    if candidates.strategy != strategy:
        problems.append(f"produced by {candidates.strategy!r}, expected {strategy!r}")
    if not candidates.candidates:
        problems.append("no candidates")
    if [c.rank for c in candidates.candidates] != list(range(1, len(candidates.candidates) + 1)):
        problems.append("ranks are not 1..n")
    if any(not math.isfinite(c.score) for c in candidates.candidates):
        problems.append("non-finite scores")
    strangers = sorted({c.symbol for c in candidates.candidates} - universe)
    if strangers:
        problems.append(f"symbols outside the universe: {', '.join(strangers)}")
    return problems


def _root_message(err: BaseException) -> str:
    while err.__cause__ is not None:
        err = err.__cause__
    return getattr(err, "message", None) or str(err)
