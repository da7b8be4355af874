"""`ValidateAlgorithms`: backtest discovery strategies on real bars and recommend one, in five steps.

1 prepare validation data (source, symbols, the period's exact bars, walk-forward splits), 2 run
backtests (one activity per strategy on `orch-backtest`, all at once), 3 analyse performance
(against buy-and-hold), 4 optimise parameters (one activity per strategy and walk-forward split:
fit in sample, score out of sample; started as soon as step 2's first backtest ends, so the core
it frees takes a search while the others finish), 5 generate recommendations; with `apply`, the
winner becomes the active discovery strategy through a `RestartDiscoverySystem` child.

Bars never pass through this workflow: activities get a `DataReference` and load them. A cancel of
the workflow cancels every backtest in flight and waits until each has stopped its process
(`WAIT_CANCELLATION_COMPLETED`), so a cancelled validation leaves no CPU burning behind it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import Priority
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, is_cancelled_exception
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from orch.activities.backtest import BacktestActivities
    from orch.contracts.commands import RestartDiscoveryInput, RestartDiscoveryResult, StepOutcome
    from orch.contracts.errors import ErrorType
    from orch.contracts.names import (
        BACKTEST_QUEUE,
        COMMANDS_QUEUE,
        RESTART_DISCOVERY,
        VALIDATE_ALGORITHMS,
        TaskPriority,
    )
    from orch.contracts.validation import (
        BacktestRequest,
        BacktestResult,
        EquityCurve,
        OptimisationResult,
        OptimiseSplitRequest,
        PerformanceAnalysis,
        PortfolioRules,
        PrepareDataRequest,
        PreparedData,
        Recommendations,
        RecommendRequest,
        ValidateAlgorithmsInput,
        ValidateAlgorithmsResult,
        ValidationPeriod,
        parse_period,
    )
    from orch.workflows.command import CommandWorkflow
    from orch.workflows.steps import Step, StepError, describe_activity_failure

PREPARE = Step("preparing_validation_data", "Prepare validation data")
BACKTEST = Step("running_backtests", "Run backtests")
ANALYSE = Step("analysing_performance", "Analyse performance")
OPTIMISE = Step("optimising_parameters", "Optimise parameters")
RECOMMEND = Step("generating_recommendations", "Generate recommendations")

# Backtests are background work: anything more urgent on the same queue goes first.
BACKTEST_PRIORITY = Priority(priority_key=int(TaskPriority.LOW))


# Malformed input (a bad period, unknown fields) fails the workflow at once instead of retrying its task.
@workflow.defn(name=VALIDATE_ALGORITHMS, failure_exception_types=[ValidationError])
class ValidateAlgorithms(CommandWorkflow):
    command_type = "validate_algorithms"
    steps = (PREPARE, BACKTEST, ANALYSE, OPTIMISE, RECOMMEND)

    @workflow.init
    def __init__(self, request: ValidateAlgorithmsInput) -> None:
        self._begin(request.options)
        self._prepared: PreparedData | None = None
        self._backtests: list[BacktestResult] = []
        self._analysis: PerformanceAnalysis | None = None
        self._optimisation: list[OptimisationResult] = []
        self._recommendations: Recommendations | None = None
        self._applied = False
        self._apply_error: str | None = None
        self._restart_id: str | None = None
        self._previous: str | None = None
        self._active: str | None = None

    @workflow.run
    async def run(self, request: ValidateAlgorithmsInput) -> ValidateAlgorithmsResult:
        try:
            period = parse_period(request.validation_period)
        except ValueError as err:
            self._run.fail(str(err))
            raise ApplicationError(str(err), type=ErrorType.INVALID_INPUT, non_retryable=True) from err
        await self._refuse_unknown_strategies(request.strategies)
        fields = await self.execute(lambda: self._validate(request, period))
        prepared, recommended = self._prepared, self._recommendations
        return ValidateAlgorithmsResult(
            **fields,
            period=period,
            data=prepared.data if prepared else None,
            source_description=prepared.source_description if prepared else None,
            splits=prepared.splits if prepared else [],
            backtests=self._backtests,
            analysis=self._analysis,
            optimisation=self._optimisation,
            recommendations=recommended.recommendations if recommended else [],
            winner=recommended.winner if recommended else None,
            warnings=prepared.warnings if prepared else [],
            apply_requested=request.apply,
            applied=self._applied,
            apply_error=self._apply_error,
            restart_workflow_id=self._restart_id,
            previous_strategy=self._previous,
            active_strategy=self._active,
        )

    # ---- The five steps ----------------------------------------------------------------------------

    async def _validate(self, request: ValidateAlgorithmsInput, period: ValidationPeriod) -> None:
        prepared = self._prepared = await self.step_runner.run(
            PREPARE,
            BacktestActivities.prepare_validation_data,
            PrepareDataRequest(
                strategies=request.strategies,
                period=period,
                data_source=request.data_source,
                csv_folder=request.csv_folder,
                symbols=request.symbols,
                max_symbols=request.max_symbols,
                top_n=request.top_n,
                rebalance_every_bars=request.rebalance_every_bars,
                walk_forward_splits=request.walk_forward_splits if request.optimise else 0,
            ),
            result_type=PreparedData,
            detail=f"{period.value} from {request.data_source}",
        )
        rules = PortfolioRules(
            top_n=prepared.top_n,
            rebalance_every_bars=request.rebalance_every_bars,
            initial_cash=request.initial_cash,
            commission=request.commission,
        )
        backtest_calls = [
            (
                BacktestActivities.run_backtest,
                BacktestRequest(
                    strategy=strategy,
                    data=prepared.data,
                    window=prepared.data.window,
                    rules=rules,
                    max_curve_points=request.max_curve_points,
                ),
                f"Backtest {strategy} over {prepared.data.window.bars} bars",
            )
            for strategy in request.strategies
        ]
        search_calls = [
            (
                BacktestActivities.optimise_split,
                OptimiseSplitRequest(
                    strategy=strategy,
                    split=split,
                    data=prepared.data,
                    rules=rules,
                    max_param_combinations=request.max_param_combinations,
                    seed=request.seed,
                ),
                f"Optimise {strategy}, walk-forward split {split.index}",
            )
            for strategy in (request.strategies if request.optimise else [])
            for split in prepared.splits
        ]
        timeout = request.backtest_timeout_seconds
        backtesting = self._start_jobs(backtest_calls, timeout)
        searching: list[workflow.ActivityHandle[Any]] = []

        async def start_searches() -> None:
            # The searches need nothing from steps 2 and 3: they start as soon as the first backtest
            # ends, so the core it frees is not left idle while the others finish. Step 4 waits.
            await workflow.wait(backtesting, return_when=asyncio.FIRST_COMPLETED)
            searching.extend(self._start_jobs(search_calls, timeout))

        starter = asyncio.ensure_future(start_searches()) if search_calls else None
        try:
            backtests = await self._parallel_step(
                BACKTEST, backtesting, backtest_calls, detail=f"{len(request.strategies)} in parallel"
            )
            self._backtests = backtests
            # The curves stay out of the analysis step's input: it needs the figures only.
            flat = EquityCurve(timestamps=[], strategy=[], buy_and_hold=[])
            self._analysis = await self.step_runner.run(
                ANALYSE,
                BacktestActivities.analyse_performance,
                [b.model_copy(update={"curve": flat}) for b in backtests],
                result_type=PerformanceAnalysis,
            )
            if starter is not None:
                await starter
                splits = await self._parallel_step(
                    OPTIMISE,
                    searching,
                    search_calls,
                    detail=f"{len(prepared.splits)} splits x {len(request.strategies)} strategies",
                )
                self._optimisation = [
                    OptimisationResult(strategy=s, splits=[r for r in splits if r.strategy == s])
                    for s in request.strategies
                ]
            else:
                self.step_runner.skip(OPTIMISE, "optimisation off (the defaults are recommended)")
        except BaseException:
            # Cancelled, or a step failed: stop the searches too, and wait until they have stopped.
            if starter is not None:
                starter.cancel()
            for handle in searching:
                handle.cancel()
            await asyncio.gather(*([starter] if starter else []), *searching, return_exceptions=True)
            raise
        await self.step_runner.run_body(RECOMMEND, lambda _: self._recommend(request))

    async def _recommend(self, request: ValidateAlgorithmsInput) -> StepOutcome:
        assert self._analysis is not None
        recommended = self._recommendations = await workflow.execute_activity_method(
            BacktestActivities.generate_recommendations,
            RecommendRequest(analysis=self._analysis, optimisation=self._optimisation),
            summary="Rank the strategies",
            **self.activity_options(),
        )
        self._active = recommended.active_strategy
        if not request.apply:
            return StepOutcome(summary=recommended.summary)
        return StepOutcome(summary=f"{recommended.summary}; {await self._apply(recommended)}")

    async def _apply(self, recommended: Recommendations) -> str:
        """Make the winner the active discovery strategy; say clearly when that cannot happen."""
        winner = recommended.winner
        if winner is None:
            self._apply_error = f"not applied: {recommended.apply_blocked}"
            return self._apply_error
        if winner == recommended.active_strategy:
            self._applied = True
            return f"{winner} is already the active strategy"
        if recommended.apply_blocked:
            self._apply_error = f"not applied: {recommended.apply_blocked}"
            return self._apply_error
        self._restart_id = f"{workflow.info().workflow_id}-apply"
        self._run.touch(f"**Step 5/5: applying** {winner} through {RESTART_DISCOVERY} {self._restart_id}")
        try:
            restarted = await workflow.execute_child_workflow(
                RESTART_DISCOVERY,
                RestartDiscoveryInput(strategy=winner, options=self._run.options),
                id=self._restart_id,
                task_queue=COMMANDS_QUEUE,
                result_type=RestartDiscoveryResult,
                static_summary=f"Apply {winner}, the winner of {workflow.info().workflow_id}",
            )
        except ChildWorkflowError as err:
            # Refused (exclusive: another restart runs) or failed; the validation itself stands.
            cause = err.cause
            why = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
            self._apply_error = f"not applied: {RESTART_DISCOVERY} {self._restart_id}: {why}"
            return self._apply_error
        self._applied = True
        self._previous, self._active = restarted.previous_strategy, restarted.active_strategy
        return f"applied: {restarted.previous_strategy} -> {restarted.active_strategy} ({self._restart_id})"

    # ---- Steps made of several activities ------------------------------------------------------------

    def _start_jobs(
        self, calls: Sequence[tuple[Callable[..., Any], Any, str]], timeout_seconds: float
    ) -> list[workflow.ActivityHandle[Any]]:
        """Start one activity per call on `orch-backtest`; they run as slots free up.

        A cancel waits until each has stopped (the activity stops its process before it reports
        cancelled), so a cancelled validation leaves nothing running.
        """
        return [
            workflow.start_activity_method(
                activity,
                argument,
                task_queue=BACKTEST_QUEUE,
                **self.activity_options(timeout_seconds),
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                priority=BACKTEST_PRIORITY,
                summary=summary,
            )
            for activity, argument, summary in calls
        ]

    async def _parallel_step(
        self,
        step: Step,
        handles: list[workflow.ActivityHandle[Any]],
        calls: Sequence[tuple[Callable[..., Any], Any, str]],
        *,
        detail: str,
    ) -> list[Any]:
        """Wait for started activities as one step; the step fails if any does, naming each."""
        outcomes: list[Any] = []
        max_attempts = self.step_runner.policy.retry.maximum_attempts

        async def all_of_them(_: str) -> StepOutcome:
            outcomes.extend(await asyncio.gather(*handles, return_exceptions=True))
            failures = [
                (summary, o)
                for (_, _, summary), o in zip(calls, outcomes, strict=True)
                if isinstance(o, BaseException)
            ]
            for _, outcome in failures:
                if not isinstance(outcome, ActivityError) or is_cancelled_exception(outcome):
                    raise outcome  # cancellation, or a bug: not a step failure
            if failures:
                raise StepError(
                    "; ".join(
                        f"{summary}: {describe_activity_failure(o, max_attempts)[0]}"
                        for summary, o in failures
                    )
                )
            return StepOutcome(summary="; ".join(o.summary for o in outcomes))

        await self.step_runner.run_body(step, all_of_them, detail=detail)
        return outcomes
