"""`TradingCycle`: one pass of the nine steps, each an activity with its own timeout and retry policy.

1 initialize, 2 sense the market, 3 analyse patterns, 4 compose strategy, 5 evaluate risks, 6 execute
through `orch hft`, 7 monitor health, 8 learn and adapt, 9 log and report.

A failing non-critical step (3 patterns, 7 health, 8 learning) degrades the cycle: it is recorded and
the cycle goes on. A failing critical step (1, 2, 4, 5) means nothing is executed this cycle; steps that
need its output are skipped (recorded as `cancelled`, "skipped: ..."), the independent ones still run,
and the report is written either way. A risk rejection is a verdict in the report, not a failure.

Local activities: step 4 (compose) and step 9 (report). Compose is pure computation over summaries the
workflow already holds (no bars, no I/O, milliseconds); the report step summarises what the workflow
holds, picks the next interval and overwrites one small file (idempotent). Running them inside the
workflow task saves a server round trip and their inputs (the report's is the largest payload of the
cycle) never enter history; a retry there is harmless. Every other step reads bars from a market
source that may be slow or rate-limited, or talks to `orch hft` or SystemState: those are regular
activities, so a slow source or a dead worker is handled by Temporal's timeouts and retries on any
worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import ValidationError
from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from orch.activities.cycle import CycleActivities

    # The outcome rule (critical steps) has one home; it is pure and imports contracts only.
    from orch.agents.health import count_step_errors
    from orch.agents.reporting import cycle_outcome
    from orch.contracts.commands import CommandOptions, CommandStatus, StepOutcome
    from orch.contracts.cycle import (
        BlockReason,
        CompositionResult,
        CycleOutcome,
        CycleReport,
        CycleStep,
        ExecutionSummary,
        HealthAssessment,
        LearningState,
        MarketSnapshot,
        PatternAnalysis,
        RiskAssessment,
        SchedulerState,
        TradingBlock,
        WeightsSource,
    )
    from orch.contracts.engine import (
        Composed,
        ComposeRequest,
        CycleContext,
        Executed,
        ExecuteRequest,
        HealthChecked,
        HealthRequest,
        HftTarget,
        InitializeRequest,
        Learned,
        LearnRequest,
        PatternsFound,
        PatternsRequest,
        Reported,
        ReportRequest,
        RiskEvaluated,
        RiskRequest,
        SchedulerInput,
        Sensed,
        SenseRequest,
        TradingCycleInput,
        TradingCycleResult,
    )
    from orch.contracts.levels import EmergencyLevel
    from orch.contracts.trading import TradingState
    from orch.workflows.command import CommandWorkflow
    from orch.workflows.steps import Step, StepFailed, StepPolicy, backoff_retry

OutcomeT = TypeVar("OutcomeT", bound=StepOutcome)

TITLES = {
    CycleStep.INITIALIZE: "Initialize: configuration, market source, broker",
    CycleStep.SENSE_MARKET: "Sense the market",
    CycleStep.ANALYSE_PATTERNS: "Analyse and detect patterns",
    CycleStep.COMPOSE_STRATEGY: "Compose strategy",
    CycleStep.EVALUATE_RISKS: "Evaluate risks",
    CycleStep.EXECUTE: "Execute through orch hft",
    CycleStep.MONITOR_HEALTH: "Monitor system health",
    CycleStep.LEARN_AND_ADAPT: "Learn and adapt",
    CycleStep.LOG_AND_REPORT: "Log, report and reset",
}
STEP = {step: Step(step.value, TITLES[step]) for step in CycleStep}


@workflow.defn(name="TradingCycle", failure_exception_types=[ValidationError])
class TradingCycle(CommandWorkflow):
    command_type = "trading_cycle"
    steps = tuple(STEP.values())
    # The engine starts a cycle every interval however many management commands are queued: waiting
    # for a command slot would starve trading behind a busy operator.
    uses_command_slot = False

    @workflow.init
    def __init__(self, request: TradingCycleInput) -> None:
        policies = request.config.policies
        self._begin(
            CommandOptions(heartbeat_timeout_seconds=policies.heartbeat_timeout_seconds),
            details_prefix=f"Cycle {request.cycle_number}, ",
        )
        self._request = request
        self._disabled = {name for name, record in request.agent_errors.agents.items() if record.disabled}

    @workflow.run
    async def run(self, request: TradingCycleInput) -> TradingCycleResult:
        run = self._run
        run.status = CommandStatus.RUNNING
        run.touch(f"Cycle {request.cycle_number} of {request.account}: starting")
        try:
            return await self._cycle(request)
        except (asyncio.CancelledError, CancelledError, ActivityError) as err:
            # The engine cancels a cycle on an emergency stop: whatever runs is abandoned at once.
            if is_cancelled_exception(err):
                run.status = CommandStatus.CANCELLED
                run.error_messages.append("cancelled")
                run.touch("**Cancelled** (emergency stop)")
            raise

    async def _cycle(self, request: TradingCycleInput) -> TradingCycleResult:
        config = request.config
        started = workflow.now()
        info = workflow.info()
        cycle_id = info.workflow_id
        hft = HftTarget(account=request.account, execution=config.execution)
        notes: list[str] = []

        snapshot: MarketSnapshot | None = None
        patterns: PatternAnalysis | None = None
        composition: CompositionResult | None = None
        risk: RiskAssessment | None = None
        execution: ExecutionSummary | None = None
        health: HealthAssessment | None = None
        learning: LearningState | None = None
        pending = list(request.pending_plans)
        cursor = request.fill_cursor
        counters = dict(request.hft_counters)
        window_fees = 0.0
        equity: float | None = None
        pnl_fraction = request.last_pnl_fraction
        blocked: TradingBlock | None = None
        # The operator's weights win over learning's while they are set (set_config).
        pinned = config.strategy_weights
        weights_source = WeightsSource.OPERATOR if pinned is not None else WeightsSource.LEARNED

        context = await self._step(
            CycleStep.INITIALIZE,
            CycleActivities.initialize,
            InitializeRequest(
                cycle_id=cycle_id,
                cycle_number=request.cycle_number,
                hft=hft,
                as_of=started,
                symbols=config.symbols,
                top_n=config.top_n,
                lookback_bars=config.lookback_bars,
                weights_override=request.weights_override,
                fill_cursor=request.fill_cursor,
                first_cycle=request.first_cycle,
                hft_ready_timeout_seconds=config.hft_ready_timeout_seconds,
            ),
            CycleContext,
        )
        if context is not None:
            notes += context.notes
            cursor = context.fill_cursor
            symbols = sorted({c.symbol for c in context.candidates} | {p.symbol for p in context.positions})
            sensed = await self._step(
                CycleStep.SENSE_MARKET,
                CycleActivities.sense_market,
                SenseRequest(
                    as_of=started,
                    symbols=symbols,
                    lookback_bars=config.lookback_bars,
                    thresholds=context.learning.thresholds,
                ),
                Sensed,
                detail=f"{len(symbols)} symbols",
            )
            snapshot = sensed.snapshot if sensed is not None else None
        if context is not None and snapshot is not None:
            found = await self._step(
                CycleStep.ANALYSE_PATTERNS,
                CycleActivities.analyse_patterns,
                PatternsRequest(snapshot=snapshot, seed=request.cycle_number),
                PatternsFound,
            )
            patterns = found.analysis if found is not None else None
            composed = await self._step(
                CycleStep.COMPOSE_STRATEGY,
                CycleActivities.compose_strategy,
                ComposeRequest(
                    candidates=context.candidates,
                    snapshot=snapshot,
                    patterns=patterns,
                    account=context.account,
                    positions=context.positions,
                    limits=config.risk_limits,
                    weights=pinned if pinned is not None else context.learning.weights,
                    as_of=started,
                    # Unique per run, the same on every retry: orch hft deduplicates plans by id.
                    plan_id_prefix=f"{request.account}-c{request.cycle_number}-{info.run_id[:6]}",
                ),
                Composed,
                local=True,
            )
            composition = composed.composition if composed is not None else None
        if context is not None and composition is not None:
            evaluated = await self._step(
                CycleStep.EVALUATE_RISKS,
                CycleActivities.evaluate_risks,
                RiskRequest(
                    plans=[c.plan for c in composition.plans],
                    account=context.account,
                    positions=context.positions,
                    as_of=started,
                    lookback_bars=config.lookback_bars,
                    limits=config.risk_limits,
                    peak_equity=request.peak_equity,
                ),
                RiskEvaluated,
            )
            risk = evaluated.assessment if evaluated is not None else None

        if context is not None and composition is not None and risk is not None:
            approved = {d.plan.plan_id: d.approved for d in risk.decisions if d.approved is not None}
            plans = [
                c.model_copy(update={"plan": approved[c.plan.plan_id]})
                for c in composition.plans
                if c.plan.plan_id in approved
            ]
            blocked = self._entries_blocked(context, request)
            executed = await self._step(
                CycleStep.EXECUTE,
                CycleActivities.execute,
                ExecuteRequest(
                    cycle_number=request.cycle_number,
                    hft=hft,
                    plans=plans,
                    blocked=blocked,
                    pending=pending,
                    fill_cursor=cursor or 0,
                ),
                Executed,
                detail=f"{len(plans)} approved plans" if blocked is None else "entries blocked",
            )
            if executed is not None:
                execution = executed.execution
                pending, cursor, window_fees = executed.pending, executed.fill_cursor, executed.window_fees
            if blocked is not None:
                notes.append(f"no entries this cycle: {blocked.detail}")
        else:
            failures = [r.name for r in self._run.reports.values() if r.status is CommandStatus.FAILED]
            failed = failures[0] if failures else "a critical step"
            for step in CycleStep:
                if step.critical and self._run.reports[step.value].status is CommandStatus.QUEUED:
                    self._skip(step, f"{failed} failed, nothing is executed this cycle")
            if self._run.reports[CycleStep.ANALYSE_PATTERNS.value].status is CommandStatus.QUEUED:
                self._skip(CycleStep.ANALYSE_PATTERNS, f"{failed} failed")

        checked = await self._step(
            CycleStep.MONITOR_HEALTH,
            CycleActivities.monitor_health,
            HealthRequest(
                hft=hft,
                as_of=workflow.now(),
                thresholds=config.health,
                previous=request.previous_health,
                counters=counters,
                window_fees=window_fees,
                window_seconds=config.health_window_seconds,
            ),
            HealthChecked,
        )
        if checked is not None:
            health, counters = checked.assessment, checked.counters
            equity, pnl_fraction = checked.equity, checked.pnl_fraction
            if health.tripped:
                notes.append(
                    f"circuit breakers tripped: {', '.join(b.value for b in health.tripped)} "
                    f"(asks for {health.recommended_level.value})"
                )

        if context is None:
            # Without the learned state loaded, learning would overwrite SystemState with defaults.
            self._skip(CycleStep.LEARN_AND_ADAPT, "initialize failed, no learning state loaded")
        else:
            learned = await self._step(
                CycleStep.LEARN_AND_ADAPT,
                CycleActivities.learn_and_adapt,
                LearnRequest(
                    cycle_id=cycle_id,
                    hft=hft,
                    as_of=workflow.now(),
                    learning=context.learning,
                    settings=config.learning,
                    pending=pending,
                    fill_cursor=cursor or 0,
                    max_age_seconds=config.pending_plan_max_age_seconds,
                ),
                Learned,
            )
            learning = learned.update.state if learned is not None else context.learning
            if learned is not None:
                pending, cursor = learned.pending, learned.fill_cursor
                notes += learned.update.notes

        composed_with = (
            pinned if pinned is not None else context.learning.weights if context is not None else None
        )
        base_interval = config.scheduler.base_interval_seconds
        scheduler = request.scheduler or SchedulerState(interval_seconds=base_interval)
        finished = workflow.now()
        duration = (finished - started).total_seconds()
        reported = await self._step(
            CycleStep.LOG_AND_REPORT,
            CycleActivities.log_and_report,
            ReportRequest(
                cycle_number=request.cycle_number,
                cycle_id=cycle_id,
                account=request.account,
                steps=list(self._run.reports.values()),
                started_at=started,
                finished_at=finished,
                snapshot=snapshot,
                patterns=patterns,
                composition=composition,
                risk=risk,
                execution=execution,
                health=health,
                learning=learning,
                weights=composed_with,
                weights_source=weights_source if composed_with is not None else None,
                universe=context.universe if context is not None else None,
                blocked=blocked,
                notes=notes,
                scheduler=SchedulerInput(
                    settings=config.scheduler,
                    state=scheduler,
                    success_rate=request.success_rate,
                    pnl_fraction=pnl_fraction,
                    utilisation=duration / scheduler.interval_seconds,
                ),
                agent_errors=request.agent_errors,
                error_threshold=config.error_threshold,
            ),
            Reported,
            local=True,
        )
        if reported is not None:
            report, report_path = reported.report, reported.path
            scheduler, agent_errors = reported.decision.state, reported.agent_errors
        else:
            # The report could not be written; the result (in history) still carries what happened.
            steps = list(self._run.reports.values())
            report = CycleReport(
                cycle_number=request.cycle_number,
                outcome=cycle_outcome(steps),
                started_at=started,
                finished_at=workflow.now(),
                steps=steps,
                execution=execution,
                health_status=health.status if health is not None else None,
                breakers_tripped=health.tripped if health is not None else [],
                trading_blocked=blocked,
                universe=context.universe if context is not None else None,
                weights=composed_with,
                weights_source=weights_source if composed_with is not None else None,
                learned_weights=learning.weights
                if learning is not None and weights_source is WeightsSource.OPERATOR
                else None,
                notes=notes[:20],
            )
            # Counted here as the report step would have (its own failure included).
            report_path = None
            agent_errors = count_step_errors(
                request.agent_errors, steps, config.error_threshold, workflow.now()
            )

        self._finish(report)
        return TradingCycleResult(
            report=report,
            report_path=report_path,
            scheduler=scheduler,
            health=health,
            learning=learning,
            pending_plans=pending,
            fill_cursor=cursor,
            hft_counters=counters,
            agent_errors=agent_errors,
            equity=equity,
            pnl_fraction=pnl_fraction,
            duration_seconds=(workflow.now() - started).total_seconds(),
            blocked=blocked,
        )

    # ---- Steps -----------------------------------------------------------------------------------------

    def _entries_blocked(self, context: CycleContext, request: TradingCycleInput) -> TradingBlock | None:
        """Why no new entries may be sent this cycle, or None."""
        if context.emergency_level is not EmergencyLevel.NONE:
            return TradingBlock(
                reason=BlockReason.EMERGENCY,
                detail=f"emergency level {context.emergency_level.value} in SystemState "
                "(orch resume --confirm)",
            )
        if context.hft_state is not None and context.hft_state is not TradingState.ACTIVE:
            return TradingBlock(
                reason=BlockReason.HFT_NOT_ACTIVE,
                detail=f"orch hft is {context.hft_state.value}: {context.hft_reason}",
            )
        # Never let a plan meant for one kind of money reach another: the operator changes SystemState's
        # mode (orch integrate-real-data) and orch hft's broker (its own flags) separately.
        if context.hft_trading_mode is not None and context.hft_trading_mode is not context.trading_mode:
            return TradingBlock(
                reason=BlockReason.MODE_MISMATCH,
                detail=f"SystemState's trading mode is {context.trading_mode.value} but orch hft trades "
                f"{context.hft_trading_mode.value} ({context.hft_broker} broker); run orch hft on the "
                "matching broker, or set the mode with orch integrate-real-data",
            )
        return request.entries_blocked

    async def _step(
        self,
        step: CycleStep,
        activity: Callable[..., Any],
        arg: Any,
        result_type: type[OutcomeT],
        *,
        local: bool = False,
        detail: str = "",
    ) -> OutcomeT | None:
        """Run one step under its own policy; None when it failed (recorded) or was skipped."""
        if step.value in self._disabled and not step.critical:
            self._skip(step, f"agent {step.value} is disabled after repeated errors (set_config)")
            return None
        try:
            # No cycle step is `required`: the cycle's outcome is decided at the end, from every step.
            return await self.step_runner.run(
                STEP[step],
                activity,
                arg,
                result_type=result_type,
                policy=self._policy(step),
                local=local,
                required=False,
                detail=detail,
                consequence="nothing is executed this cycle"
                if step.critical
                else "the cycle goes on, degraded",
            )
        except StepFailed:
            return None

    def _policy(self, step: CycleStep) -> StepPolicy:
        policy = self._request.config.policies.of(step)
        return StepPolicy(
            timeout=timedelta(seconds=policy.timeout_seconds),
            retry=backoff_retry(policy.initial_retry_seconds, policy.max_retry_seconds, policy.max_attempts),
            heartbeat=timedelta(seconds=self._run.options.heartbeat_timeout_seconds),
        )

    def _skip(self, step: CycleStep, why: str) -> None:
        self.step_runner.skip(STEP[step], why)

    def _finish(self, report: CycleReport) -> None:
        run = self._run
        run.current_step = None
        failed = [r.name for r in run.reports.values() if r.status is CommandStatus.FAILED]
        if report.outcome is CycleOutcome.FAILED:
            run.status = CommandStatus.FAILED
            run.touch(f"**Cycle {report.cycle_number} failed** ({', '.join(failed)}): nothing executed")
            return
        run.status = CommandStatus.COMPLETED
        executed = report.execution or ExecutionSummary()
        line = f"{executed.plans_sent} plans sent, {executed.orders} entered, {executed.fills} fills"
        if report.outcome is CycleOutcome.DEGRADED:
            run.touch(f"**Cycle {report.cycle_number} degraded** ({', '.join(failed)} failed); {line}")
        else:
            run.touch(f"**Cycle {report.cycle_number} completed**; {line}")
