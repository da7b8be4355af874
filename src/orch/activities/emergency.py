"""The emergency stop's and the resume's actions on real things: `orch hft`, the trading engines, the
schedules and SystemState.

Every action is idempotent (a retried activity must not stop or resume twice) and reports what it
did, so the incident in SystemState lists exactly what happened.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime

from temporalio import activity
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from orch.activities.hft import HftLink
from orch.activities.steps import step_activity
from orch.clients.system_state import SystemStateClient
from orch.config import Settings
from orch.contracts.discovery import paused_by_a_restart
from orch.contracts.emergency import (
    PAUSE_NOTE_PREFIX,
    ActiveEmergency,
    EmergencyResolved,
    EnginesSignalled,
    HftKilled,
    HftResumed,
    HftSettled,
    IncidentRecorded,
    KillHftRequest,
    PauseSchedulesRequest,
    RecordIncidentRequest,
    ResumeSchedulesRequest,
    SchedulesChanged,
    SettleHftRequest,
    SignalEnginesRequest,
    pause_note,
    paused_by,
)
from orch.contracts.engine import EngineStatus
from orch.contracts.errors import ErrorType
from orch.contracts.levels import RestingOrders
from orch.contracts.names import TRADING_ENGINE
from orch.contracts.system import EmergencyLevel, ResumeRequest, SystemStateSnapshot
from orch.contracts.trading import LevelSettlement, OrderStatus, TradingState
from orch.hft.client import HftApiError, HftClientError

RUNNING_ENGINES_QUERY = f"WorkflowType = '{TRADING_ENGINE}' AND ExecutionStatus = 'Running'"


async def running_engine_statuses(
    client: Client, passed_over: tuple[type[BaseException], ...] = (RPCError,)
) -> AsyncIterator[tuple[str, EngineStatus]]:
    """Each running TradingEngine's id and `status`; one whose query raises `passed_over` is skipped."""
    async for engine in client.list_workflows(RUNNING_ENGINES_QUERY):
        try:
            status = await client.get_workflow_handle(engine.id).query("status", result_type=EngineStatus)
        except passed_over:
            continue
        yield engine.id, status


SETTLE_POLL_SECONDS = 0.05
# The most recent orders read back from the journal to count what the stop cancelled.
JOURNAL_ORDERS_READ = 10_000  # the control API's maximum


class EmergencyActivities:
    def __init__(self, client: Client, settings: Settings, hft: HftLink) -> None:
        self._client = client
        self._settings = settings
        self._hft = hft

    # ---- SystemState -----------------------------------------------------------------------------

    async def _system_state(self) -> SystemStateSnapshot:
        return await SystemStateClient(self._client).snapshot()

    @activity.defn
    @step_activity
    async def record_incident(self, request: RecordIncidentRequest) -> IncidentRecorded:
        """`declare_emergency`; the same incident id replaces the earlier record (revision 2 adds actions)."""
        incident = request.incident
        try:
            level = await SystemStateClient(self._client).declare_emergency(
                incident, update_id=f"declare-{incident.incident_id}-r{request.revision}"
            )
        except WorkflowUpdateFailedError as err:
            raise ApplicationError(
                f"SystemState refused the incident: {err.cause}",
                type=ErrorType.INVALID_INPUT,
                non_retryable=True,
            ) from err
        what = "recorded" if request.revision == 1 else f"recorded with {len(incident.actions)} actions"
        return IncidentRecorded(
            summary=f"incident {incident.incident_id} {what}; level in force: {level.value}",
            level_in_force=level,
        )

    # ---- orch hft --------------------------------------------------------------------------------

    @activity.defn
    @step_activity
    async def kill_hft(self, request: KillHftRequest) -> HftKilled:
        """POST /kill at the level: orch hft moves its gate to the level's state and cancels, itself,
        the open orders the level forbids (flatten: then closes every position and halts)."""
        reason = f"{request.reason} (incident {request.incident_id})"[:500]
        answer = await self._call(
            lambda hft: hft.kill(request.level, reason, requested_by=request.requested_by[:64])
        )
        if not answer.took_kill(request.level):
            raise ApplicationError(
                f"orch hft answered {answer.state.value} at level {answer.emergency_level.value} "
                f"after a {request.level.value} kill",
                type=ErrorType.KILL_NOT_CONFIRMED,
            )
        paused = ", entries paused" if answer.entries_paused else ""
        return HftKilled(
            summary=f"orch hft {answer.state.value} at {answer.emergency_level.value}{paused}; "
            f"it cancelled {len(answer.cancelled)} open orders",
            state=answer.state.value,
            emergency_level=answer.emergency_level,
            entries_paused=answer.entries_paused,
            orders_cancelled=answer.cancelled,
        )

    @activity.defn
    @step_activity
    async def settle_hft(self, request: SettleHftRequest) -> HftSettled:
        """Confirm the kill took effect at the broker: poll orch hft until the level's conditions hold
        (`LevelSettlement`: no open order the level forbids; at halt and flatten HALTED; at flatten
        flat). orch hft does the cancelling and closing; this only watches, and fails naming what is
        left when it does not settle in time."""
        level = request.level
        deadline = time.monotonic() + self._settings.emergency_confirm_seconds
        while True:
            status = await self._call(lambda hft: hft.status())
            settlement = LevelSettlement.of(level, status.trading.state, status.open_orders, status.positions)
            state = settlement.state
            if level.rules.flattens and state is TradingState.HALTED and settlement.positions:
                raise ApplicationError(
                    f"orch hft halted but is NOT flat: {_describe_positions(settlement.positions)} "
                    f"({status.trading.reason})",
                    type=ErrorType.NOT_SETTLED,
                    non_retryable=True,
                )
            if settlement.done:
                cancelled, closed = await self._journal_since(request.since)
                return HftSettled(
                    summary=_settled_summary(level, state, cancelled, closed),
                    state=state.value,
                    orders_cancelled=cancelled,
                    positions_closed=closed,
                )
            if time.monotonic() >= deadline:
                left = ", ".join(settlement.orders[:10])
                raise ApplicationError(
                    f"after {self._settings.emergency_confirm_seconds:g} s orch hft is {state.value} with "
                    f"{len(settlement.orders)} open orders the level forbids ({left or '-'}) and "
                    f"{_describe_positions(settlement.positions) or 'no positions to close'}",
                    type=ErrorType.NOT_SETTLED,
                    non_retryable=True,
                )
            activity.heartbeat(
                f"{state.value}: {len(settlement.orders)} orders to cancel, "
                f"{len(settlement.positions)} positions to close"
            )
            await asyncio.sleep(SETTLE_POLL_SECONDS)

    @activity.defn
    @step_activity
    async def resume_hft(self, reason: str, requested_by: str) -> HftResumed:
        status = await self._call(lambda hft: hft.resume(reason[:500], requested_by=requested_by[:64]))
        if status.state is not TradingState.ACTIVE:
            raise ApplicationError(
                f"orch hft is {status.state.value} after resume ({status.reason})",
                type=ErrorType.RESUME_NOT_CONFIRMED,
            )
        return HftResumed(summary=f"orch hft {status.state.value}", state=status.state.value)

    async def _journal_since(self, since: datetime) -> tuple[list[str], list[str]]:
        """What the journal shows since the stop began: the orders cancelled, and the symbols closed by
        flatten's own orders (orch hft acts before we can look, so its journal is the witness)."""
        orders = await self._call(lambda hft: hft.orders(open_only=False, limit=JOURNAL_ORDERS_READ))
        cancelled = sorted(
            o.client_order_id
            for o in orders
            if o.status is OrderStatus.CANCELLED and (o.updated_at or o.created_at) >= since
        )
        closed = sorted(
            {
                o.symbol
                for o in orders
                if o.source == "flatten" and o.created_at >= since and o.filled_quantity
            }
        )
        return cancelled, closed

    async def _call(self, action):
        """One control-API call; an unreachable process is retryable, a 4xx answer (but 409) is not."""
        try:
            return await action(self._hft.client())
        except HftApiError as err:
            self._hft.forget(err)
            retryable = err.status >= 500 or err.status in (401, 409, 429)
            raise ApplicationError(
                f"orch hft at {self._hft.url} answered {err}",
                type=ErrorType.HFT_API_ERROR,
                non_retryable=not retryable,
            ) from err
        except HftClientError as err:
            raise ApplicationError(str(err), type=ErrorType.HFT_UNAVAILABLE) from err

    # ---- The trading engines ---------------------------------------------------------------------

    @activity.defn
    @step_activity
    async def signal_engines(self, request: SignalEnginesRequest) -> EnginesSignalled:
        """Signal every running TradingEngine; a signal is idempotent for an engine, so retries resend all."""
        ids = [e.id async for e in self._client.list_workflows(RUNNING_ENGINES_QUERY)]
        signalled, failed = [], {}
        for workflow_id in ids:
            handle = self._client.get_workflow_handle(workflow_id)
            try:
                if request.emergency is not None:
                    await handle.signal(request.signal, request.emergency)
                else:
                    await handle.signal(request.signal)
                signalled.append(workflow_id)
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND:
                    continue  # it ended between the list and the signal: nothing left to stop
                failed[workflow_id] = str(err)
        if failed:
            raise ApplicationError(
                f"could not signal {request.signal} to {', '.join(f'{k} ({v})' for k, v in failed.items())}",
                type=ErrorType.SIGNAL_FAILED,
            )
        names = ", ".join(signalled) if signalled else "no TradingEngine running"
        return EnginesSignalled(summary=f"{request.signal} sent to {names}", signalled=signalled)

    # ---- Schedules -------------------------------------------------------------------------------

    @activity.defn
    @step_activity
    async def pause_schedules(self, request: PauseSchedulesRequest) -> SchedulesChanged:
        """Pause each schedule with the incident's note; one paused by someone else is left alone."""
        note = pause_note(request.incident_id, request.reason)
        changed, untouched = [], {}
        for schedule_id in request.schedule_ids:
            handle = self._client.get_schedule_handle(schedule_id)
            try:
                state = (await handle.describe()).schedule.state
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                untouched[schedule_id] = "does not exist"
                continue
            current = state.note or ""
            if state.paused and paused_by(current) == request.incident_id:
                changed.append(schedule_id)  # this stop's earlier attempt paused it
            # A schedule paused by a command in flight (RestartDiscoverySystem) is taken over by the
            # emergency: the command then leaves it paused and only the resume unpauses it.
            elif state.paused and not paused_by_a_restart(current):
                untouched[schedule_id] = f"already paused ({current or 'no note'})"
            else:
                await handle.pause(note=note)
                changed.append(schedule_id)
        summary = f"paused {', '.join(changed) or 'nothing'}" + "".join(
            f"; {k}: {v}" for k, v in untouched.items()
        )
        return SchedulesChanged(summary=summary, changed=changed, untouched=untouched)

    @activity.defn
    @step_activity
    async def resume_schedules(self, request: ResumeSchedulesRequest) -> SchedulesChanged:
        """Unpause only schedules paused by an emergency no longer in force (or being resolved now)."""
        snapshot = await self._system_state()
        active = {i.incident_id for i in snapshot.incidents if i.resolved_at is None}
        ending = set(request.incident_ids)
        changed, untouched = [], {}
        for schedule_id in request.schedule_ids:
            handle = self._client.get_schedule_handle(schedule_id)
            try:
                state = (await handle.describe()).schedule.state
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                untouched[schedule_id] = "does not exist"
                continue
            owner = paused_by(state.note or "") if state.paused else None
            if owner is None:
                untouched[schedule_id] = "paused by someone else" if state.paused else "not paused"
            elif owner in active and owner not in ending:
                untouched[schedule_id] = f"paused by emergency {owner}, still in force"
            else:
                await handle.unpause(note=f"resumed after emergency stop {owner} by {request.requested_by}")
                changed.append(schedule_id)
        summary = f"resumed {', '.join(changed) or 'nothing'}" + "".join(
            f"; {k}: {v}" for k, v in untouched.items()
        )
        return SchedulesChanged(summary=summary, changed=changed, untouched=untouched)

    # ---- Resume ----------------------------------------------------------------------------------

    @activity.defn
    @step_activity
    async def check_emergency(self, schedule_ids: list[str]) -> ActiveEmergency:
        """What a resume has to undo; refuses when there is nothing (no emergency, nothing left halted)."""
        snapshot = await self._system_state()
        level = snapshot.config.emergency_level
        open_ids = [i.incident_id for i in snapshot.incidents if i.resolved_at is None]
        if level is not EmergencyLevel.NONE:
            return ActiveEmergency(
                summary=f"emergency {level.value} in force ({', '.join(open_ids)})",
                level=level,
                incident_ids=open_ids,
            )
        # An earlier resume that stopped half-way left hft halted or schedules paused: finish it.
        leftovers = []
        for schedule_id in schedule_ids:
            try:
                state = (await self._client.get_schedule_handle(schedule_id).describe()).schedule.state
            except RPCError:
                continue
            if state.paused and (state.note or "").startswith(PAUSE_NOTE_PREFIX):
                leftovers.append(f"schedule {schedule_id} still paused")
        try:
            hft = await self._hft.client().state()
            if hft.emergency_level is not EmergencyLevel.NONE:
                leftovers.append(f"orch hft still at {hft.emergency_level.value}")
        except HftClientError:
            pass
        # An engine that ended meanwhile, or does not answer, is passed over: the engines step will say so.
        async for engine_id, status in running_engine_statuses(self._client):
            if status.emergency is not None:
                leftovers.append(f"engine {engine_id} still emergency-stopped")
        if not leftovers:
            raise ApplicationError(
                "no emergency stop is in force; nothing to resume",
                type=ErrorType.NOTHING_TO_RESUME,
                non_retryable=True,
            )
        return ActiveEmergency(
            summary=f"no emergency in force, finishing an earlier resume: {'; '.join(leftovers)}",
            level=EmergencyLevel.NONE,
            incident_ids=[],
        )

    @activity.defn
    @step_activity
    async def resolve_emergency(self, request: ResumeRequest, resume_id: str) -> EmergencyResolved:
        try:
            resolved = await SystemStateClient(self._client).resolve_emergency(
                request, update_id=f"resolve-{resume_id}"
            )
        except WorkflowUpdateFailedError as err:
            raise ApplicationError(
                f"SystemState refused the resume: {err.cause}",
                type=ErrorType.COMMAND_REJECTED,
                non_retryable=True,
            ) from err
        return EmergencyResolved(summary=f"resolved {', '.join(resolved) or 'nothing'}", resolved=resolved)


def _describe_positions(positions: dict[str, float]) -> str:
    return ", ".join(f"{symbol} {quantity:g}" for symbol, quantity in positions.items())


def _settled_summary(
    level: EmergencyLevel, state: TradingState, cancelled: list[str], closed: list[str]
) -> str:
    text = f"orch hft {state.value}; {len(cancelled)} open orders cancelled"
    if level.rules.flattens:
        text += f"; {len(closed)} positions closed ({', '.join(closed) or 'none held'})"
    elif level.rules.cancels is RestingOrders.OPENING:
        text = f"orch hft {state.value}; {len(cancelled)} orders that would open or grow a position cancelled"
    return text
