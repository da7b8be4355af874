"""`TradingEngine`: one long-running workflow per account that runs a `TradingCycle` child per interval.

Its whole state is one `EngineState`: counters, the adaptive scheduler, what the last cycle learned
and left open, the emergency flag. Continue-as-new hands that one value to the next run, so nothing is
lost when history is trimmed. The interval adapts after every cycle (market activity 0.5, performance
0.3, system load 0.2: `agents.scheduler`, applied in the cycle's report step).

Emergency stop, by signal: `emergency_stop` cancels the running cycle at once and, unless it came from
the `EmergencyStop` workflow (it carries an `incident_id`), starts that workflow on `orch-critical` at
CRITICAL priority, so signalling the engine alone stops trading everywhere. The engine then stays
stopped until it receives `resume` *and* SystemState's emergency level is back to none.

Between cycles, and whatever it does, the engine heartbeats `orch hft` (one long-running activity), so
the process's dead man's switch halts trading only when the orchestrator is really gone.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    CancelledError,
    ChildWorkflowError,
    WorkflowAlreadyStartedError,
)
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from orch.activities.cycle import CycleActivities
    from orch.contracts.cycle import (
        BlockReason,
        CycleOutcome,
        CycleReport,
        CycleStep,
        SchedulerState,
        StrategyWeights,
        TradingBlock,
        WeightsSource,
    )
    from orch.contracts.emergency import EmergencyStopSignal
    from orch.contracts.engine import (
        EngineConfig,
        EngineConfigChange,
        EngineRunState,
        EngineState,
        EngineStatus,
        HftTarget,
        KeepAliveRequest,
        TradingCycleInput,
        TradingCycleResult,
        TradingEngineInput,
        apply_config_change,
        cycle_workflow_id,
    )
    from orch.contracts.levels import EmergencyLevel
    from orch.contracts.names import COMMANDS_QUEUE, CRITICAL_QUEUE, EMERGENCY_STOP, TaskPriority
    from orch.workflows.trading_cycle import TradingCycle

RECENT_OUTCOMES = 20  # the performance signal looks at this many recent cycles
# How long one heartbeat activity runs before Temporal starts a fresh attempt (it never "finishes").
KEEPER_ATTEMPT = timedelta(hours=1)


@workflow.defn(name="TradingEngine", failure_exception_types=[ValidationError])
class TradingEngine:
    @workflow.init
    def __init__(self, request: TradingEngineInput) -> None:
        if request.resume_state is not None:
            self._state = request.resume_state.model_copy(update={"runs": request.resume_state.runs + 1})
        else:
            config = request.engine_config()
            self._state = EngineState(
                account=request.account,
                config=config,
                next_cycle_number=request.first_cycle_number,
                scheduler=SchedulerState(interval_seconds=config.scheduler.base_interval_seconds),
                weights_override=config.strategy_weights,
            )
        self._cycle: workflow.ChildWorkflowHandle[Any, Any] | None = None
        self._cycle_id: str | None = None
        self._cancelling_cycle = False
        self._cycles_this_run = 0
        self._next_cycle_at: Any = None
        self._config_changed = False
        self._ended = False
        # Emergency stops to start as child workflows (from the main loop: handlers stay synchronous).
        self._to_escalate: list[EmergencyStopSignal] = []

    @workflow.run
    async def run(self, request: TradingEngineInput) -> EngineStatus:
        state = self._state
        keeper = workflow.start_activity_method(
            CycleActivities.keep_hft_alive,
            KeepAliveRequest(
                hft=HftTarget(account=state.account, execution=state.config.execution),
                sender=workflow.info().workflow_id,
                every_seconds=state.config.hft_heartbeat_seconds,
            ),
            start_to_close_timeout=KEEPER_ATTEMPT,
            heartbeat_timeout=timedelta(seconds=max(3 * state.config.hft_heartbeat_seconds, 10)),
            # It must keep going: a failed attempt is retried for as long as the engine runs.
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=0),
            summary="Heartbeat orch hft (dead man's switch)",
        )
        try:
            await self._loop()
        finally:
            keeper.cancel()
        self._ended = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.set_current_details(f"**Stopped** after {state.cycles_total} cycles")
        return self.status()

    # ---- The loop ------------------------------------------------------------------------------------

    async def _loop(self) -> None:
        state = self._state
        while True:
            await self._escalate()
            if state.stopping:
                return
            # Checked in every state: an engine paused or stopped for days must not grow its history either.
            if self._cycles_this_run >= state.config.max_cycles_per_run or (
                workflow.info().is_continue_as_new_suggested()
            ):
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(TradingEngineInput(account=state.account, resume_state=state))
            if state.emergency is not None:
                await self._wait_for_resume()
                continue
            if state.paused:
                workflow.set_current_details("**Paused**: no cycles until `resume` (orch cycle resume)")
                await workflow.wait_condition(lambda: not state.paused or self._interrupted(paused_too=False))
                continue
            started = workflow.now()
            await self._run_cycle()
            await self._wait_for_next(started)

    def _interrupted(self, paused_too: bool = True) -> bool:
        state = self._state
        return (
            state.stopping
            or state.emergency is not None
            or bool(self._to_escalate)
            or (paused_too and state.paused)
        )

    async def _wait_for_next(self, started: Any) -> None:
        """Sleep until the next cycle is due; a shorter interval from `set_config` applies at once."""
        state = self._state
        while not self._interrupted():
            due = started + timedelta(seconds=state.scheduler.interval_seconds)
            remaining = due - workflow.now()
            if remaining <= timedelta(0):
                break
            self._next_cycle_at = due
            self._config_changed = False
            workflow.set_current_details(
                f"Waiting: cycle {state.next_cycle_number} at {due:%H:%M:%S} UTC "
                f"(interval {state.scheduler.interval_seconds:.0f} s); {self._counts()}"
            )
            try:
                await workflow.wait_condition(
                    lambda: self._interrupted() or self._config_changed, timeout=remaining
                )
            except TimeoutError:
                break
        self._next_cycle_at = None

    async def _run_cycle(self) -> None:
        state = self._state
        number = state.next_cycle_number
        state.next_cycle_number += 1
        self._cycles_this_run += 1
        cycle_id = cycle_workflow_id(workflow.info().workflow_id, number)
        request = TradingCycleInput(
            cycle_number=number,
            account=state.account,
            config=state.config,
            scheduler=state.scheduler,
            success_rate=self._recent_success_rate(),
            last_pnl_fraction=state.last_pnl_fraction,
            previous_health=state.health,
            ledger=state.ledger,
            agent_errors=state.agent_errors,
            weights_override=state.weights_override,
            entries_blocked=self._breakers_open(),
            first_cycle=state.cycles_total == 0,
        )
        started = workflow.now()
        result: TradingCycleResult | None = None
        why = ""
        self._cycle_id = cycle_id
        workflow.set_current_details(f"**Running cycle {number}** ({cycle_id}); {self._counts()}")
        try:
            self._cycle = await workflow.start_child_workflow(
                TradingCycle.run,
                request,
                id=cycle_id,
                task_queue=COMMANDS_QUEUE,
                # Cycles go ahead of management commands on a busy queue; the emergency stop goes first.
                priority=Priority(priority_key=int(TaskPriority.HIGH)),
                parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
                run_timeout=_cycle_deadline(state.config),
                static_summary=f"Trading cycle {number} of {state.account}",
            )
            result = await self._cycle
        except ChildWorkflowError as err:
            if self._cancelling_cycle and isinstance(err.cause, CancelledError):
                why = f"cycle {number} cancelled by the emergency stop"
            else:
                why = f"cycle {number} did not complete: {err.cause or err}"
        except (asyncio.CancelledError, CancelledError):
            if not self._cancelling_cycle:
                raise  # the engine itself is being cancelled
            why = f"cycle {number} cancelled by the emergency stop"
        except WorkflowAlreadyStartedError as err:  # someone started a cycle with this id by hand
            why = f"cycle {number} could not start: {err}"
        finally:
            self._cycle = None
            self._cycle_id = None
            self._cancelling_cycle = False
        self._record(number, result, started, why, request.weights_override)

    def _record(
        self,
        number: int,
        result: TradingCycleResult | None,
        started: Any,
        why: str,
        weights_sent: StrategyWeights | None,
    ) -> None:
        state = self._state
        duration = (workflow.now() - started).total_seconds()
        state.cycles_total += 1
        state.total_duration_seconds += duration
        state.last_duration_seconds = duration
        if result is None:
            report = CycleReport(
                cycle_number=number,
                outcome=CycleOutcome.FAILED,
                started_at=started,
                finished_at=workflow.now(),
                notes=[why],
            )
            state.trading_blocked = None
        else:
            report = result.report
            state.scheduler = result.scheduler or state.scheduler
            state.health = result.health or state.health
            state.learning = result.learning or state.learning
            state.ledger = result.ledger
            state.agent_errors = result.agent_errors
            state.last_pnl_fraction = result.pnl_fraction
            state.trading_blocked = result.blocked
            # Recorded in SystemState by that cycle, if it was given these weights: weights set while it
            # ran (it started without them) must still reach the next cycle.
            initialized = any(s.name == "initialize" and s.status.value == "completed" for s in report.steps)
            if initialized and weights_sent is not None and state.weights_override == weights_sent:
                state.weights_override = None
            if result.health is not None and result.health.recommended_level.at_least(EmergencyLevel.HALT):
                # A breaker asking for a halt (the broker is gone) stops trading everywhere, like an operator.
                tripped = ", ".join(b.value for b in result.health.tripped)
                self._declare(
                    EmergencyStopSignal(
                        reason=f"circuit breaker tripped in cycle {number}: {tripped}",
                        level=result.health.recommended_level,
                        requested_by=workflow.info().workflow_id,
                    )
                )
        if report.outcome is CycleOutcome.COMPLETED:
            state.cycles_successful += 1
        elif report.outcome is CycleOutcome.DEGRADED:
            state.cycles_degraded += 1
        else:
            state.cycles_failed += 1
        state.recent_outcomes = [*state.recent_outcomes, report.outcome][-RECENT_OUTCOMES:]
        state.last_report = report

    # ---- Emergencies ---------------------------------------------------------------------------------

    def _declare(self, signal: EmergencyStopSignal) -> None:
        """Stop trading: cancel the running cycle; escalate to `EmergencyStop` unless it sent this."""
        state = self._state
        current = state.emergency
        level = signal.level
        if current is not None and current.level.stricter_than(level):
            level = current.level
        incident = signal.incident_id or (current.incident_id if current is not None else None)
        state.emergency = signal.model_copy(update={"level": level, "incident_id": incident})
        state.resume_requested = False
        if self._cycle is not None and not self._cycle.done():
            self._cancelling_cycle = True
            self._cycle.cancel()
        if signal.incident_id is None:
            self._to_escalate.append(signal)

    async def _escalate(self) -> None:
        """Start one `EmergencyStop` per direct signal: it kills orch hft, pauses schedules, signals
        every engine and records the incident."""
        state = self._state
        engine_id = workflow.info().workflow_id
        while self._to_escalate:
            signal = self._to_escalate.pop(0)
            state.emergency_stops_started += 1
            # The id is the incident id, recorded in SystemState under it: unique even when an engine of the
            # same id is started afresh and counts from 1 again.
            child_id = (
                f"emergency-stop-{engine_id}-{state.emergency_stops_started}-{workflow.uuid4().hex[:6]}"
            )
            # Whatever the signal carried, the stop must pass EmergencyStop's input validation: a blank
            # reason or a long name must never be why trading goes on.
            reason = (
                signal.reason.strip()[:500] or f"emergency_stop signalled to {engine_id}, no reason given"
            )
            requested_by = f"{signal.requested_by.strip() or 'unknown'} via {engine_id}"[:64]
            try:
                await workflow.start_child_workflow(
                    EMERGENCY_STOP,
                    {"reason": reason, "level": signal.level.value, "requested_by": requested_by},
                    id=child_id,
                    task_queue=CRITICAL_QUEUE,
                    # It must finish even if this engine ends or continues as new meanwhile.
                    parent_close_policy=ParentClosePolicy.ABANDON,
                    priority=Priority(priority_key=int(TaskPriority.CRITICAL)),
                    static_summary=f"Emergency stop requested through {engine_id}: {signal.reason}",
                )
            except WorkflowAlreadyStartedError as err:
                workflow.logger.error("could not start %s: %s", child_id, err)
                continue
            if state.emergency is not None and state.emergency.incident_id is None:
                state.emergency = state.emergency.model_copy(update={"incident_id": child_id})

    async def _wait_for_resume(self) -> None:
        """Stay stopped until `resume` arrived and SystemState's emergency level is none."""
        state = self._state
        emergency = state.emergency
        assert emergency is not None
        workflow.set_current_details(
            f"**Emergency stop** ({emergency.level.value}): {emergency.reason}; requested by "
            f"{emergency.requested_by}. Waiting for `resume` and SystemState's level to return to none."
        )
        await workflow.wait_condition(
            lambda: state.resume_requested or state.stopping or bool(self._to_escalate)
        )
        if not state.resume_requested or state.stopping or self._to_escalate:
            return
        try:
            level = await workflow.execute_activity_method(
                CycleActivities.read_emergency_level,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(maximum_attempts=3),
                summary="Is SystemState's emergency level back to none?",
            )
        except ActivityError as err:
            workflow.logger.warning("could not read SystemState's emergency level: %s", err)
            level = None
        if level is EmergencyLevel.NONE and state.resume_requested and state.emergency is emergency:
            state.emergency = None
            state.resume_requested = False
            state.paused = False
            workflow.set_current_details("Resumed after the emergency stop")
            return
        workflow.set_current_details(
            f"**Emergency stop** ({emergency.level.value}): resume requested, but SystemState's level is "
            f"{level.value if level else 'unknown'}; looking again every "
            f"{state.config.emergency_poll_seconds:g} s"
        )
        try:
            await workflow.wait_condition(
                lambda: not state.resume_requested or state.stopping or bool(self._to_escalate),
                timeout=timedelta(seconds=state.config.emergency_poll_seconds),
            )
        except TimeoutError:
            pass

    # ---- Signals -------------------------------------------------------------------------------------
    # Signals: fire-and-forget commands anyone can send (`temporal workflow signal`, the UI, EmergencyStop),
    # which take effect between steps of the loop and need no answer.

    @workflow.signal
    def pause(self) -> None:
        """No new cycles until `resume`; a cycle already running finishes."""
        self._state.paused = True

    @workflow.signal
    def resume(self) -> None:
        """Lift a pause; after an emergency stop, also wait for SystemState's level to be none."""
        if self._state.emergency is not None:
            self._state.resume_requested = True
        else:
            self._state.paused = False

    @workflow.signal
    def stop(self) -> None:
        """Finish the current cycle, then end."""
        self._state.stopping = True

    @workflow.signal
    def emergency_stop(self, payload: Any = None) -> None:
        """Stop cycles at once and stop trading everywhere (see the module docstring).

        The payload is an `EmergencyStopSignal`; one that cannot be read still stops trading, at halt:
        an emergency signal is never dropped for its spelling.
        """
        try:
            signal = EmergencyStopSignal.model_validate(payload if payload is not None else {})
        except ValidationError as err:
            reason = f"emergency_stop signal with an unreadable payload: {err}"
            signal = EmergencyStopSignal(reason=reason[:500])
        self._declare(signal)

    # ---- Update --------------------------------------------------------------------------------------
    # An update, not a signal: the caller learns at once whether the change was accepted, and the
    # validator refuses bad values before they reach history.

    @workflow.update
    def set_config(self, change: EngineConfigChange) -> EngineConfig:
        state = self._state
        config, weights = apply_config_change(state.config, change, self._weights())
        if change.cycle_interval_seconds is not None:
            state.scheduler = SchedulerState(
                interval_seconds=config.scheduler.base_interval_seconds,
                adjustments=state.scheduler.adjustments,
            )
        else:
            bounded = min(
                max(state.scheduler.interval_seconds, config.scheduler.min_interval_seconds),
                config.scheduler.max_interval_seconds,
            )
            state.scheduler = state.scheduler.model_copy(update={"interval_seconds": bounded})
        # The operator's weights win over learning's from the next cycle on; that cycle also records them
        # in SystemState as learning's starting point. "learned" hands the weights back to learning.
        if change.strategy_weights is not None:
            state.weights_override = weights
        for agent in change.enable_agents:
            state.agent_errors.enable(agent)
        state.config = config
        state.config_changes += 1
        self._config_changed = True
        return config

    @set_config.validator
    def _validate_set_config(self, change: EngineConfigChange) -> None:
        apply_config_change(self._state.config, change, self._weights())
        unknown = set(change.enable_agents) - set(self._state.agent_errors.agents)
        if unknown:
            known = ", ".join(sorted(self._state.agent_errors.agents)) or "none has errors"
            raise ValueError(f"no error record for agent(s) {', '.join(sorted(unknown))}; known: {known}")

    # ---- Query ---------------------------------------------------------------------------------------
    # A query: reading the engine must never add to its history, and works while a cycle runs.

    @workflow.query
    def status(self) -> EngineStatus:
        state = self._state
        if self._ended:
            run_state = EngineRunState.STOPPED
        elif state.emergency is not None:
            run_state = EngineRunState.EMERGENCY_STOPPED
        elif state.stopping:
            run_state = EngineRunState.STOPPING if self._cycle_id is not None else EngineRunState.STOPPED
        elif self._cycle_id is not None:
            run_state = EngineRunState.RUNNING
        elif state.paused:
            run_state = EngineRunState.PAUSED
        else:
            run_state = EngineRunState.WAITING
        return EngineStatus(
            workflow_id=workflow.info().workflow_id,
            account=state.account,
            state=run_state,
            cycles_total=state.cycles_total,
            cycles_successful=state.cycles_successful,
            cycles_degraded=state.cycles_degraded,
            cycles_failed=state.cycles_failed,
            success_rate=state.success_rate,
            average_duration_seconds=(
                state.total_duration_seconds / state.cycles_total if state.cycles_total else None
            ),
            last_duration_seconds=state.last_duration_seconds,
            current_cycle=self._cycle_id,
            next_cycle_number=state.next_cycle_number,
            interval_seconds=state.scheduler.interval_seconds,
            interval_adjustments=state.scheduler.adjustments,
            next_cycle_at=self._next_cycle_at,
            runs=state.runs,
            emergency=state.emergency,
            resume_requested=state.resume_requested,
            weights=self._weights(),
            weights_source=WeightsSource.OPERATOR
            if state.config.strategy_weights is not None
            else WeightsSource.LEARNED,
            learned_weights=state.learning.weights if state.learning is not None else None,
            pending_plans=len(state.ledger.pending_plans),
            disabled_agents=sorted(name for name, r in state.agent_errors.agents.items() if r.disabled),
            breakers_tripped=[b.value for b in state.health.tripped] if state.health else [],
            breakers=[b for b in state.health.breakers if b.tripped] if state.health else [],
            trading_blocked=state.trading_blocked,
            last_report=state.last_report,
            config=state.config,
        )

    # ---- Internals -----------------------------------------------------------------------------------

    def _weights(self) -> StrategyWeights | None:
        """The weights in force: the operator's while set, else what learning found."""
        state = self._state
        if state.config.strategy_weights is not None:
            return state.config.strategy_weights
        return state.learning.weights if state.learning is not None else None

    def _recent_success_rate(self) -> float:
        recent = self._state.recent_outcomes
        if not recent:
            return 1.0
        return sum(1 for o in recent if o is not CycleOutcome.FAILED) / len(recent)

    def _breakers_open(self) -> TradingBlock | None:
        health = self._state.health
        if health is None or health.recommended_level is EmergencyLevel.NONE:
            return None
        tripped = ", ".join(b.value for b in health.tripped)
        return TradingBlock(
            reason=BlockReason.BREAKERS_OPEN,
            detail=f"circuit breakers open: {tripped} (asks for {health.recommended_level.value})",
        )

    def _counts(self) -> str:
        s = self._state
        return (
            f"{s.cycles_total} cycles: {s.cycles_successful} completed, {s.cycles_degraded} degraded, "
            f"{s.cycles_failed} failed"
        )


def _cycle_deadline(config: EngineConfig) -> timedelta:
    """Longest a cycle can take if every step uses every attempt: a bound against a stuck cycle."""
    policies = config.policies
    total = sum(
        (p.timeout_seconds + p.max_retry_seconds) * p.max_attempts
        for p in (policies.of(step) for step in CycleStep)
    )
    return timedelta(seconds=total + 60)
