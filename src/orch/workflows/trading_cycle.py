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
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import ValidationError
from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from orch.activities.cycle import CycleActivities

    # The outcome and error-count rules are pure, in contracts: the workflow decides as the report does.
    from orch.contracts.agent_errors import count_step_errors
    from orch.contracts.commands import CommandOptions, CommandStatus, StepOutcome
    from orch.contracts.cycle import (
        AgentErrorLog,
        BlockReason,
        CompositionResult,
        CycleOutcome,
        CycleReport,
        CycleStep,
        ExecutionLedger,
        ExecutionSummary,
        HealthAssessment,
        LearningState,
        MarketSnapshot,
        PatternAnalysis,
        RiskAssessment,
        SchedulerState,
        StrategyWeights,
        TradingBlock,
        WeightsSource,
        cycle_outcome,
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


@dataclass
class _Found:
    """What one cycle has found so far: each phase fills in its part; the report and the result read it.

    `ledger` is the execution bookkeeping as of the last step that returned it; a step that failed
    leaves it as it was.
    """

    ledger: ExecutionLedger
    pnl_fraction: float
    notes: list[str] = field(default_factory=list)
    context: CycleContext | None = None
    snapshot: MarketSnapshot | None = None
    patterns: PatternAnalysis | None = None
    composition: CompositionResult | None = None
    risk: RiskAssessment | None = None
    blocked: TradingBlock | None = None  # why no entries were sent (None: they could be)
    execution: ExecutionSummary | None = None
    window_fees: float = 0.0  # of the fills the execute step read, for the health window
    health: HealthAssessment | None = None
    equity: float | None = None
    learning: LearningState | None = None


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
        self._hft = HftTarget(account=request.account, execution=request.config.execution)
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
        started = workflow.now()
        found = _Found(ledger=request.ledger, pnl_fraction=request.last_pnl_fraction)
        await self._prepare(found, started)
        if found.context is not None and found.composition is not None and found.risk is not None:
            await self._execute(found, found.context, found.composition, found.risk)
        else:
            self._skip_what_a_failed_critical_step_feeds()
        await self._monitor_health(found)
        await self._learn(found)
        report, report_path, scheduler, agent_errors = await self._report(found, started)
        self._finish(report)
        return TradingCycleResult(
            report=report,
            report_path=report_path,
            scheduler=scheduler,
            health=found.health,
            learning=found.learning,
            ledger=found.ledger,
            agent_errors=agent_errors,
            equity=found.equity,
            pnl_fraction=found.pnl_fraction,
            duration_seconds=(workflow.now() - started).total_seconds(),
            blocked=found.blocked,
        )

    # ---- Phases --------------------------------------------------------------------------------------

    async def _prepare(self, found: _Found, started: datetime) -> None:
        """Steps 1 to 5: from the configuration and the market to plans judged by risk."""
        request, config = self._request, self._request.config
        context = await self._step(
            CycleStep.INITIALIZE,
            CycleActivities.initialize,
            InitializeRequest(
                cycle_id=workflow.info().workflow_id,
                cycle_number=request.cycle_number,
                hft=self._hft,
                as_of=started,
                symbols=config.symbols,
                top_n=config.top_n,
                lookback_bars=config.lookback_bars,
                weights_override=request.weights_override,
                fill_cursor=found.ledger.fill_cursor,
                first_cycle=request.first_cycle,
                hft_ready_timeout_seconds=config.hft_ready_timeout_seconds,
            ),
            CycleContext,
        )
        if context is None:
            return
        found.context = context
        found.notes += context.notes
        found.ledger = found.ledger.model_copy(update={"fill_cursor": context.fill_cursor})
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
        if sensed is None:
            return
        found.snapshot = sensed.snapshot
        patterns = await self._step(
            CycleStep.ANALYSE_PATTERNS,
            CycleActivities.analyse_patterns,
            PatternsRequest(snapshot=sensed.snapshot, seed=request.cycle_number),
            PatternsFound,
        )
        found.patterns = patterns.analysis if patterns is not None else None
        composed = await self._step(
            CycleStep.COMPOSE_STRATEGY,
            CycleActivities.compose_strategy,
            ComposeRequest(
                candidates=context.candidates,
                snapshot=sensed.snapshot,
                patterns=found.patterns,
                account=context.account,
                positions=context.positions,
                limits=config.risk_limits,
                weights=self._composing_weights(context),
                as_of=started,
                # Unique per run, the same on every retry: orch hft deduplicates plans by id.
                plan_id_prefix=f"{request.account}-c{request.cycle_number}-{workflow.info().run_id[:6]}",
            ),
            Composed,
            local=True,
        )
        if composed is None:
            return
        found.composition = composed.composition
        evaluated = await self._step(
            CycleStep.EVALUATE_RISKS,
            CycleActivities.evaluate_risks,
            RiskRequest(
                plans=[c.plan for c in composed.composition.plans],
                account=context.account,
                positions=context.positions,
                as_of=started,
                lookback_bars=config.lookback_bars,
                limits=config.risk_limits,
                peak_equity=found.ledger.peak_equity,
            ),
            RiskEvaluated,
        )
        found.risk = evaluated.assessment if evaluated is not None else None

    async def _execute(
        self, found: _Found, context: CycleContext, composition: CompositionResult, risk: RiskAssessment
    ) -> None:
        """Step 6: the approved plans, at the size risk approved, to orch hft unless entries are blocked."""
        approved = {d.plan.plan_id: d.approved for d in risk.decisions if d.approved is not None}
        plans = [
            c.model_copy(update={"plan": approved[c.plan.plan_id]})
            for c in composition.plans
            if c.plan.plan_id in approved
        ]
        found.blocked = blocked = self._entries_blocked(context)
        executed = await self._step(
            CycleStep.EXECUTE,
            CycleActivities.execute,
            ExecuteRequest(
                cycle_number=self._request.cycle_number,
                hft=self._hft,
                plans=plans,
                blocked=blocked,
                ledger=found.ledger,
            ),
            Executed,
            detail=f"{len(plans)} approved plans" if blocked is None else "entries blocked",
        )
        if executed is not None:
            found.execution, found.ledger, found.window_fees = (
                executed.execution,
                executed.ledger,
                executed.window_fees,
            )
        if blocked is not None:
            found.notes.append(f"no entries this cycle: {blocked.detail}")

    def _skip_what_a_failed_critical_step_feeds(self) -> None:
        failures = [r.name for r in self._run.reports.values() if r.status is CommandStatus.FAILED]
        failed = failures[0] if failures else "a critical step"
        for step in CycleStep:
            if step.critical and self._run.reports[step.value].status is CommandStatus.QUEUED:
                self._skip(step, f"{failed} failed, nothing is executed this cycle")
        if self._run.reports[CycleStep.ANALYSE_PATTERNS.value].status is CommandStatus.QUEUED:
            self._skip(CycleStep.ANALYSE_PATTERNS, f"{failed} failed")

    async def _monitor_health(self, found: _Found) -> None:
        """Step 7."""
        config = self._request.config
        checked = await self._step(
            CycleStep.MONITOR_HEALTH,
            CycleActivities.monitor_health,
            HealthRequest(
                hft=self._hft,
                as_of=workflow.now(),
                thresholds=config.health,
                previous=self._request.previous_health,
                ledger=found.ledger,
                window_fees=found.window_fees,
                window_seconds=config.health_window_seconds,
            ),
            HealthChecked,
        )
        if checked is None:
            return
        found.health, found.ledger = checked.assessment, checked.ledger
        found.equity, found.pnl_fraction = checked.equity, checked.pnl_fraction
        if checked.assessment.tripped:
            found.notes.append(
                f"circuit breakers tripped: {', '.join(b.value for b in checked.assessment.tripped)} "
                f"(asks for {checked.assessment.recommended_level.value})"
            )

    async def _learn(self, found: _Found) -> None:
        """Step 8."""
        if found.context is None:
            # Without the learned state loaded, learning would overwrite SystemState with defaults.
            self._skip(CycleStep.LEARN_AND_ADAPT, "initialize failed, no learning state loaded")
            return
        learned = await self._step(
            CycleStep.LEARN_AND_ADAPT,
            CycleActivities.learn_and_adapt,
            LearnRequest(
                cycle_id=workflow.info().workflow_id,
                hft=self._hft,
                as_of=workflow.now(),
                learning=found.context.learning,
                settings=self._request.config.learning,
                ledger=found.ledger,
                max_age_seconds=self._request.config.pending_plan_max_age_seconds,
            ),
            Learned,
        )
        found.learning = learned.update.state if learned is not None else found.context.learning
        if learned is not None:
            found.ledger = learned.ledger
            found.notes += learned.update.notes

    async def _report(
        self, found: _Found, started: datetime
    ) -> tuple[CycleReport, str | None, SchedulerState, AgentErrorLog]:
        """Step 9; when it fails, the report the workflow can still make (it is in the result, in history)."""
        request, config = self._request, self._request.config
        weights = self._composing_weights(found.context) if found.context is not None else None
        weights_source = self._weights_source if weights is not None else None
        universe = found.context.universe if found.context is not None else None
        scheduler = request.scheduler or SchedulerState(
            interval_seconds=config.scheduler.base_interval_seconds
        )
        finished = workflow.now()
        reported = await self._step(
            CycleStep.LOG_AND_REPORT,
            CycleActivities.log_and_report,
            ReportRequest(
                cycle_number=request.cycle_number,
                cycle_id=workflow.info().workflow_id,
                account=request.account,
                steps=list(self._run.reports.values()),
                started_at=started,
                finished_at=finished,
                snapshot=found.snapshot,
                patterns=found.patterns,
                composition=found.composition,
                risk=found.risk,
                execution=found.execution,
                health=found.health,
                learning=found.learning,
                weights=weights,
                weights_source=weights_source,
                universe=universe,
                blocked=found.blocked,
                notes=found.notes,
                scheduler=SchedulerInput(
                    settings=config.scheduler,
                    state=scheduler,
                    success_rate=request.success_rate,
                    pnl_fraction=found.pnl_fraction,
                    utilisation=(finished - started).total_seconds() / scheduler.interval_seconds,
                ),
                agent_errors=request.agent_errors,
                error_threshold=config.error_threshold,
            ),
            Reported,
            local=True,
        )
        if reported is not None:
            return reported.report, reported.path, reported.decision.state, reported.agent_errors
        steps = list(self._run.reports.values())
        report = CycleReport(
            cycle_number=request.cycle_number,
            outcome=cycle_outcome(steps),
            started_at=started,
            finished_at=workflow.now(),
            steps=steps,
            execution=found.execution,
            health_status=found.health.status if found.health is not None else None,
            breakers_tripped=found.health.tripped if found.health is not None else [],
            trading_blocked=found.blocked,
            universe=universe,
            weights=weights,
            weights_source=weights_source,
            learned_weights=found.learning.weights
            if found.learning is not None and weights_source is WeightsSource.OPERATOR
            else None,
            notes=found.notes[:20],
        )
        # Counted here as the report step would have (its own failure included).
        agent_errors = count_step_errors(request.agent_errors, steps, config.error_threshold, workflow.now())
        return report, None, scheduler, agent_errors

    # ---- Steps -----------------------------------------------------------------------------------------

    @property
    def _weights_source(self) -> WeightsSource:
        return (
            WeightsSource.OPERATOR
            if self._request.config.strategy_weights is not None
            else WeightsSource.LEARNED
        )

    def _composing_weights(self, context: CycleContext) -> StrategyWeights:
        """The operator's weights win over learning's while they are set (set_config)."""
        pinned = self._request.config.strategy_weights
        return pinned if pinned is not None else context.learning.weights

    def _entries_blocked(self, context: CycleContext) -> TradingBlock | None:
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
        return self._request.entries_blocked

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
