"""The health check's probes: each looks at one kind of component and never raises for what it finds.

A component that is down is a finding (an UNHEALTHY row), not an activity failure: the report must
come back whole, with every other component, exactly when something is wrong.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from temporalio import activity
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, GetSystemInfoRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from orch.activities.discovery import POLLER_FRESHNESS
from orch.activities.emergency import running_engine_statuses
from orch.activities.hft import HftLink
from orch.activities.steps import step_activity
from orch.clients.system_state import SystemStateClient
from orch.config import Settings
from orch.contracts.cycle import BlockReason, CycleOutcome, HealthThresholds
from orch.contracts.emergency import ComponentChecks, ComponentHealth, HealthStatus, paused_by
from orch.contracts.engine import EngineRunState, EngineStatus, engine_workflow_id
from orch.contracts.names import (
    BACKTEST_QUEUE,
    COMMANDS_QUEUE,
    CRITICAL_QUEUE,
    DISCOVERY_QUEUE,
    DISCOVERY_SCHEDULE_ID,
    STRATEGIC_REVIEW_SCHEDULE_ID,
    SYSTEM_STATE_WORKFLOW_ID,
    TACTICAL_REVIEW_SCHEDULE_ID,
)
from orch.contracts.system import EmergencyLevel, SystemStateSnapshot
from orch.contracts.trading import TradingState
from orch.hft.client import HftClientError
from orch.hft.config import HftSettings
from orch.market.base import MarketDataSource, PriceHistory, is_crypto
from orch.market.calendars import freshness_moment

HEALTHY, DEGRADED, UNHEALTHY = HealthStatus.HEALTHY, HealthStatus.DEGRADED, HealthStatus.UNHEALTHY

# Which pollers each queue needs: (workflow pollers, activity pollers). Backtests are activities only.
QUEUE_NEEDS: dict[str, tuple[bool, bool]] = {
    COMMANDS_QUEUE: (True, True),
    CRITICAL_QUEUE: (True, True),
    DISCOVERY_QUEUE: (True, True),
    BACKTEST_QUEUE: (False, True),
}
# A missing schedule: discovery is the system's input, the reviews are oversight.
SCHEDULE_MISSING = {
    DISCOVERY_SCHEDULE_ID: UNHEALTHY,
    TACTICAL_REVIEW_SCHEDULE_ID: DEGRADED,
    STRATEGIC_REVIEW_SCHEDULE_ID: DEGRADED,
}
DATA_PROBE_TIMEOUT_SECONDS = 10.0


class HealthActivities:
    def __init__(
        self,
        client: Client,
        settings: Settings,
        market: MarketDataSource,
        hft: HftLink,
        # Issue 5's resource pool: a callable returning statistics per pool or API, shown in the report.
        resource_pools: Callable[[], dict[str, dict[str, float]]] | None = None,
        # Epoch seconds now, for the data probes' market hours (tests set a session or a holiday).
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._clock = clock or time.time
        self._client = client
        self._settings = settings
        self._market = market
        self._hft = hft
        self._resource_pools = resource_pools

    async def _system_state(self) -> SystemStateSnapshot | None:
        try:
            return await SystemStateClient(self._client).snapshot()
        except Exception:
            return None

    # ---- Temporal and its task queues ------------------------------------------------------------

    @activity.defn
    @step_activity
    async def check_temporal(self) -> ComponentChecks:
        started = time.perf_counter()
        try:
            info = await self._client.workflow_service.get_system_info(GetSystemInfoRequest())
            elapsed_ms = (time.perf_counter() - started) * 1000
            component = ComponentHealth(
                component="temporal",
                status=HEALTHY,
                detail=f"server {info.server_version or '?'} answered in {elapsed_ms:.1f} ms "
                f"(namespace {self._client.namespace})",
                metrics={"latency_ms": round(elapsed_ms, 3)},
            )
        except RPCError as err:
            component = ComponentHealth(component="temporal", status=UNHEALTHY, detail=f"no answer: {err}")
        state = await self._system_state()
        system = (
            ComponentHealth(
                component="system-state", status=HEALTHY, detail=f"{SYSTEM_STATE_WORKFLOW_ID} answers"
            )
            if state is not None
            else ComponentHealth(
                component="system-state",
                status=UNHEALTHY,
                detail=f"{SYSTEM_STATE_WORKFLOW_ID} does not answer its state query: start a commands worker",
            )
        )
        return ComponentChecks(summary=f"temporal {component.status.value}", components=[component, system])

    @activity.defn
    @step_activity
    async def check_task_queues(self, require_backtest_worker: bool | None) -> ComponentChecks:
        """Live pollers of each queue, workflow and activity side; a queue nobody polls never runs."""
        require_backtest = (
            self._settings.health_require_backtest_worker
            if require_backtest_worker is None
            else require_backtest_worker
        )
        components = []
        for queue, (needs_workflows, needs_activities) in QUEUE_NEEDS.items():
            workflows, backlog = await self._pollers(queue, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW)
            activities, activity_backlog = await self._pollers(queue, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)
            missing = [
                side
                for side, needed, pollers in (
                    ("workflow", needs_workflows, workflows),
                    ("activity", needs_activities, activities),
                )
                if needed and not pollers
            ]
            detail = f"{len(workflows)} workflow pollers, {len(activities)} activity pollers"
            if backlog or activity_backlog:
                detail += f"; backlog {backlog} workflow, {activity_backlog} activity tasks"
            if not missing:
                status = HEALTHY
            elif queue == BACKTEST_QUEUE and not require_backtest:
                status = DEGRADED
                detail = f"no {' or '.join(missing)} pollers on {queue}: no backtest worker runs (optional)"
            else:
                status = UNHEALTHY
                detail = f"no {' or '.join(missing)} pollers on {queue}: start `orch worker --queue {queue}`"
            components.append(
                ComponentHealth(
                    component=f"queue:{queue}",
                    status=status,
                    detail=detail,
                    metrics={
                        "workflow_pollers": len(workflows),
                        "activity_pollers": len(activities),
                        "workflow_backlog": backlog,
                        "activity_backlog": activity_backlog,
                    },
                )
            )
        bad = [c.component for c in components if c.status is UNHEALTHY]
        return ComponentChecks(
            summary=f"{len(components) - len(bad)}/{len(components)} queues polled"
            + (f"; unpolled: {', '.join(bad)}" if bad else ""),
            components=components,
        )

    async def _pollers(self, queue: str, kind: TaskQueueType.ValueType) -> tuple[list[str], int]:
        response = await self._client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=self._client.namespace,
                task_queue=TaskQueue(name=queue),
                task_queue_type=kind,
                report_stats=True,
            )
        )
        cutoff = datetime.now(UTC) - POLLER_FRESHNESS
        pollers = [
            p.identity for p in response.pollers if p.last_access_time.ToDatetime(tzinfo=UTC) >= cutoff
        ]
        backlog = response.stats.approximate_backlog_count if response.HasField("stats") else 0
        return pollers, int(backlog)

    # ---- orch hft and the broker -----------------------------------------------------------------

    @activity.defn
    @step_activity
    async def check_hft(self) -> ComponentChecks:
        """orch hft alive with its latency; the broker as orch hft sees it (reconciled, or not)."""
        started = time.perf_counter()
        try:
            status = await self._hft.client().status()
        except HftClientError as err:
            self._hft.forget(err)
            down = f"orch hft at {self._hft.url} is not answering: {err}"
            return ComponentChecks(
                summary="orch hft down",
                components=[
                    ComponentHealth(component="hft", status=UNHEALTHY, detail=down),
                    ComponentHealth(
                        component="broker", status=UNHEALTHY, detail="unknown: orch hft is not answering"
                    ),
                ],
            )
        answer_ms = (time.perf_counter() - started) * 1000
        trading = status.trading
        latency = status.latency
        metrics = {
            "control_api_ms": round(answer_ms, 3),
            "ticks_per_second": round(status.ticks_per_second, 1),
            "open_orders": len(status.open_orders),
            "positions": sum(1 for p in status.positions if p.quantity),
        }
        for name in ("p50_us", "p99_us", "p999_us"):
            value = getattr(latency, name)
            if value is not None:
                metrics[f"tick_to_order_{name}"] = round(value, 1)
        if status.last_heartbeat_age_seconds is not None:
            metrics["heartbeat_age_seconds"] = round(status.last_heartbeat_age_seconds, 3)
        p99 = f"{latency.p99_us:.0f} us" if latency.p99_us is not None else "no samples"
        detail = f"{trading.state.value}, tick-to-order p99 {p99}, {status.ticks_per_second:.0f} ticks/s"
        limit_ms = HealthThresholds().max_latency_ms_p99
        hft_status = HEALTHY
        # Any state but ACTIVE with entries allowed means no new positions: trading is off.
        trading_off = (
            trading.state is not TradingState.ACTIVE
            or trading.entries_paused
            or trading.emergency_level is not EmergencyLevel.NONE
        )
        if trading_off:
            state = await self._system_state()
            declared = state is not None and state.config.emergency_level is not EmergencyLevel.NONE
            # Halted by a declared emergency is the system doing its job; halted by itself is not.
            hft_status = DEGRADED if declared else UNHEALTHY
            detail += f"; {trading.emergency_level.value}: {trading.reason}"
            if not declared:
                detail += " (no emergency declared in SystemState: dead man's switch or a loss limit?)"
            if not trading.reconciled and trading.state is TradingState.REDUCING:
                detail += "; reconciling with its broker"
        elif latency.p99_us is not None and latency.p99_us / 1000 > limit_ms:
            hft_status = DEGRADED
            detail += f"; p99 above {limit_ms:g} ms"
        broker = ComponentHealth(
            component="broker",
            status=HEALTHY if trading.reconciled else UNHEALTHY,
            detail=f"{status.broker}: reconciled with orch hft's journal"
            if trading.reconciled
            else f"{status.broker}: not reconciled ({trading.reason}); orch hft cannot trust it yet",
        )
        components = [
            ComponentHealth(component="hft", status=hft_status, detail=detail, metrics=metrics),
            broker,
        ]
        risk = status.risk
        if risk.daily_loss_reached:
            components.append(
                ComponentHealth(
                    component="breaker:hft-daily-loss",
                    status=UNHEALTHY,
                    detail=f"open in orch hft: P&L today {risk.daily_pnl:,.2f} reached "
                    f"-{risk.max_daily_loss:,.2f}; orch hft halts itself until `orch hft resume` "
                    "(or `orch resume --confirm`)",
                    metrics={"daily_pnl": risk.daily_pnl, "max_daily_loss": risk.max_daily_loss},
                )
            )
        return ComponentChecks(
            summary=f"orch hft {trading.state.value}; broker {status.broker} "
            + ("reconciled" if trading.reconciled else "NOT reconciled"),
            components=components,
        )

    # ---- Market data -----------------------------------------------------------------------------

    @activity.defn
    @step_activity
    async def check_data_sources(self) -> ComponentChecks:
        """Freshness of each configured source: simulated is fresh by construction; others by their
        newest bar, read through this worker's market source."""
        state = await self._system_state()
        if state is None:
            return ComponentChecks(
                summary="data sources unknown",
                components=[
                    ComponentHealth(
                        component="data",
                        status=UNHEALTHY,
                        detail="SystemState does not answer: sources unknown",
                    )
                ],
            )
        sources = state.config.data_sources
        components = [
            await self._probe(name, primary=index == 0)
            for index, name in enumerate([sources.primary, *sources.fallbacks])
        ]
        return ComponentChecks(
            summary=", ".join(f"{c.component.removeprefix('data:')} {c.status.value}" for c in components),
            components=components,
        )

    async def _probe(self, name: str, *, primary: bool) -> ComponentHealth:
        component = f"data:{name}"
        role = "primary" if primary else "fallback"
        failing = UNHEALTHY if primary else DEGRADED
        if name == "simulated":
            return ComponentHealth(
                component=component, status=HEALTHY, detail=f"{role}: simulated, always fresh"
            )
        # The worker's configured market opens one adapter per source name; a pinned one serves itself.
        open_source = getattr(self._market, "source", None)
        try:
            if callable(open_source):
                source = await asyncio.to_thread(open_source, name)
            elif getattr(self._market, "name", None) == name:
                source = self._market
            else:
                return ComponentHealth(
                    component=component,
                    status=failing,
                    detail=f"{role}: this worker reads {getattr(self._market, 'name', '?')}, not {name}",
                )
            started = time.perf_counter()

            def newest() -> tuple[str, PriceHistory]:
                universe = source.universe()
                # Crypto trades around the clock, so its newest bar is a fair freshness probe on any day.
                symbol = next((s for s in universe if is_crypto(s)), universe[0])
                return symbol, source.history(symbol, 1)

            symbol, history = await asyncio.wait_for(asyncio.to_thread(newest), DATA_PROBE_TIMEOUT_SECONDS)
            elapsed_ms = (time.perf_counter() - started) * 1000
        except Exception as err:
            return ComponentHealth(component=component, status=failing, detail=f"{role}: no answer: {err}")
        if not len(history):
            return ComponentHealth(
                component=component, status=failing, detail=f"{role}: no bars for {symbol}"
            )
        newest = datetime.fromtimestamp(int(history.timestamps[-1].astype("datetime64[s]").astype(int)), UTC)
        now = self._clock()
        # A closed market's newest bar is as old as it was at the close (weekend, holiday, night).
        measured_at = freshness_moment(symbol, now)
        age = measured_at - newest.timestamp()
        limit = self._settings.health_max_data_age_seconds
        fresh = age <= limit
        closed = (
            ""
            if measured_at == now
            else f" at the last close {datetime.fromtimestamp(measured_at, UTC).isoformat()} (market closed)"
        )
        return ComponentHealth(
            component=component,
            status=HEALTHY if fresh else failing,
            detail=f"{role}: newest {symbol} bar {timedelta(seconds=int(age))} old{closed}"
            + ("" if fresh else f" (stale: limit {limit:g} s)"),
            metrics={"age_seconds": round(age, 1), "latency_ms": round(elapsed_ms, 1)},
        )

    # ---- Schedules -------------------------------------------------------------------------------

    @activity.defn
    @step_activity
    async def check_schedules(self) -> ComponentChecks:
        state = await self._system_state()
        active = (
            {i.incident_id for i in state.incidents if i.resolved_at is None} if state is not None else set()
        )
        components = []
        for schedule_id, missing_status in SCHEDULE_MISSING.items():
            component = f"schedule:{schedule_id}"
            try:
                description = await self._client.get_schedule_handle(schedule_id).describe()
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                components.append(
                    ComponentHealth(component=component, status=missing_status, detail="missing")
                )
                continue
            schedule_state = description.schedule.state
            note = schedule_state.note or ""
            if schedule_state.paused:
                owner = paused_by(note)
                detail = f"paused by emergency {owner}" if owner else f"paused ({note or 'no note'})"
                if owner and owner not in active:
                    detail += " which is resolved: run `orch resume --confirm` to finish the resume"
                components.append(ComponentHealth(component=component, status=DEGRADED, detail=detail))
                continue
            upcoming = description.info.next_action_times
            detail = "running" + (f", next at {upcoming[0]:%H:%M:%S} UTC" if upcoming else "")
            components.append(
                ComponentHealth(
                    component=component,
                    status=HEALTHY,
                    detail=detail,
                    metrics={"runs": description.info.num_actions},
                )
            )
        paused = [c.component for c in components if c.status is not HEALTHY]
        return ComponentChecks(
            summary=f"{len(components) - len(paused)}/{len(components)} schedules running",
            components=components,
        )

    async def _engines(self) -> list[tuple[str, EngineStatus]]:
        # An engine busy or replaying is passed over: the next check will see it.
        return [
            (engine_id, status)
            async for engine_id, status in running_engine_statuses(self._client, passed_over=(Exception,))
        ]

    async def _engine_rows(
        self, engines: list[tuple[str, EngineStatus]], emergency_declared: bool
    ) -> list[ComponentHealth]:
        """A row per running TradingEngine (is it sending plans, and if not why) and per open breaker.

        The rule: trading off for any reason but an operator's pause (or stop) is a warning or worse.
        """
        rows: list[ComponentHealth] = []
        for engine_id, status in engines:
            rows.append(_engine_row(engine_id, status, emergency_declared))
            rows += [
                ComponentHealth(
                    component=f"breaker:{breaker.name.value}",
                    status=UNHEALTHY,
                    detail=f"open in {engine_id}"
                    + (f" since {breaker.tripped_at:%H:%M:%S} UTC" if breaker.tripped_at else "")
                    + f": {breaker.message}; asks for {breaker.level.value}, so its cycles send no plans",
                    metrics={"value": breaker.value} if breaker.value is not None else {},
                )
                for breaker in status.breakers
            ]
        if not engines:
            rows.append(await self._no_engine_row())
        return rows

    async def _no_engine_row(self) -> ComponentHealth:
        """No engine runs: fine if an operator stopped it or none is meant to start; else trading is off."""
        account = HftSettings().account
        engine_id = engine_workflow_id(account)
        try:
            described = await self._client.get_workflow_handle(engine_id).describe()
            ended = described.status
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            ended = None
        if ended == WorkflowExecutionStatus.COMPLETED:
            return ComponentHealth(
                component="engines", status=HEALTHY, detail=f"{engine_id} stopped by `orch cycle stop`"
            )
        if ended is not None:
            return ComponentHealth(
                component="engines",
                status=UNHEALTHY,
                detail=f"{engine_id} ended {ended.name.lower()}: no cycles run; `orch cycle start` (or a "
                "worker restart with ORCH_TRADING_AUTOSTART) starts it again",
            )
        if self._settings.trading_autostart:
            return ComponentHealth(
                component="engines",
                status=DEGRADED,
                detail=f"no TradingEngine runs for {account} although ORCH_TRADING_AUTOSTART is on: start a "
                "worker on orch, or `orch cycle start`",
            )
        return ComponentHealth(
            component="engines",
            status=HEALTHY,
            detail="no TradingEngine runs (ORCH_TRADING_AUTOSTART is off; `orch cycle start` starts one)",
        )

    # ---- SystemState: emergency and agents -------------------------------------------------------

    @activity.defn
    @step_activity
    async def check_agents(self) -> ComponentChecks:
        """The emergency in force, and every agent's error counts (disabled agents are unhealthy)."""
        state = await self._system_state()
        pools = self._resource_pools() if self._resource_pools is not None else None
        if state is None:
            return ComponentChecks(summary="SystemState does not answer", resource_pools=pools)
        level = state.config.emergency_level
        open_incidents = [i for i in state.incidents if i.resolved_at is None]
        if level is EmergencyLevel.NONE:
            emergency = ComponentHealth(component="emergency", status=HEALTHY, detail="none in force")
        else:
            newest = open_incidents[-1] if open_incidents else None
            emergency = ComponentHealth(
                component="emergency",
                status=DEGRADED,
                detail=f"{level.value} in force"
                + (
                    f" since {newest.at:%Y-%m-%d %H:%M:%S} UTC ({newest.incident_id}: {newest.reason})"
                    if newest
                    else ""
                )
                + "; `orch resume --confirm` ends it",
            )
        components = [emergency]
        agents: dict[str, tuple[int, int, bool, str]] = {}
        for source, log in sorted(state.agent_errors.items()):
            for name, record in log.agents.items():
                consecutive, total, disabled, last = agents.get(name, (0, 0, False, ""))
                agents[name] = (
                    max(consecutive, record.consecutive_errors),
                    total + record.total_errors,
                    disabled or record.disabled,
                    f"{source}: {record.last_error}" if record.last_error else last,
                )
        for name, (consecutive, total, disabled, last) in sorted(agents.items()):
            if not total:
                continue
            components.append(
                ComponentHealth(
                    component=f"agent:{name}",
                    status=UNHEALTHY if disabled else DEGRADED if consecutive else HEALTHY,
                    detail=("DISABLED after repeated errors; " if disabled else "")
                    + f"{consecutive} consecutive, {total} total errors; last: {last}",
                    metrics={"consecutive_errors": consecutive, "total_errors": total},
                )
            )
        # Each trading engine keeps its cycle agents' counts in its own state: ask it which are disabled.
        running_engines = await self._engines()
        engine_disabled: dict[str, list[str]] = {}
        for engine_id, engine in running_engines:
            for name in engine.disabled_agents:
                engine_disabled.setdefault(name, []).append(engine_id)
        for name, engines in sorted(engine_disabled.items()):
            components.append(
                ComponentHealth(
                    component=f"agent:{name}",
                    status=UNHEALTHY,
                    detail=f"DISABLED by {', '.join(engines)} after repeated errors in its cycles "
                    "(set_config enable_agents re-enables it)",
                )
            )
        if len(components) == 1:
            components.append(ComponentHealth(component="agents", status=HEALTHY, detail="no agent errors"))
        components += await self._engine_rows(running_engines, level is not EmergencyLevel.NONE)
        disabled = sorted(set(state.disabled_agents()) | set(engine_disabled))
        return ComponentChecks(
            summary=f"emergency {level.value}; {len(disabled)} agents disabled; "
            f"{len(running_engines)} engines",
            components=components,
            emergency_level=level,
            disabled_agents=disabled,
            resource_pools=pools,
        )


def _engine_row(engine_id: str, status: EngineStatus, emergency_declared: bool) -> ComponentHealth:
    """Is this engine sending plans? If not, why, and is that an operator's decision?"""
    component = f"engine:{engine_id}"
    report = status.last_report
    last = (
        f"last cycle {report.cycle_number} {report.outcome.value}" if report is not None else "no cycle yet"
    )
    if status.state is EngineRunState.EMERGENCY_STOPPED:
        emergency = status.emergency
        reason = f" ({emergency.level.value}: {emergency.reason})" if emergency is not None else ""
        return ComponentHealth(
            component=component,
            status=DEGRADED,
            detail=f"emergency-stopped{reason}: no cycles until `orch resume --confirm`",
        )
    if status.state is EngineRunState.PAUSED:
        # The one way trading may be off and healthy: an operator asked for it.
        return ComponentHealth(
            component=component, status=HEALTHY, detail=f"paused by an operator (`orch cycle resume`); {last}"
        )
    blocked = status.trading_blocked
    if blocked is not None:
        # A declared emergency is the system doing its job; anything else stopped trading by itself.
        by_operator = blocked.reason is BlockReason.EMERGENCY or (
            blocked.reason is BlockReason.HFT_NOT_ACTIVE and emergency_declared
        )
        return ComponentHealth(
            component=component,
            status=DEGRADED if by_operator else UNHEALTHY,
            detail=f"not sending plans ({blocked.reason.value}): {blocked.detail}; {last}",
        )
    if report is not None and report.outcome is CycleOutcome.FAILED:
        failed = [f"{s.name}: {s.error}" for s in report.steps if s.error] or report.notes[:1]
        return ComponentHealth(
            component=component,
            status=UNHEALTHY,
            detail=f"not sending plans: {last} ({'; '.join(failed)[:300]})",
        )
    sent = report.execution.plans_sent if report is not None and report.execution is not None else 0
    return ComponentHealth(
        component=component,
        status=DEGRADED if report is not None and report.outcome is CycleOutcome.DEGRADED else HEALTHY,
        detail=f"{status.state.value}; {last}, {sent} plans sent",
        metrics={"cycles_total": status.cycles_total, "success_rate": round(status.success_rate, 3)},
    )
