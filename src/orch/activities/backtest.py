"""ValidateAlgorithms' activities: prepare the data, backtest, optimise, analyse, recommend.

`run_backtest` and `optimise_split` run on the `orch-backtest` task queue, whose worker takes as
many at once as the machine has cores (`backtest_concurrency`). Each runs its CPU work in a process
of its own (`orch.backtest.process`: why a process, and why one per job, is said there) while this
coroutine heartbeats the bars done; a cancel from the workflow arrives with the next heartbeat,
stops the process within a bar, and the activity ends cancelled. Bars never come through here:
the process loads them from the `DataReference`.

The prepare, analyse and recommend activities are light and run on the commands queue.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from orch.activities.steps import InvalidInput, step_activity
from orch.agents.discovery import UnknownStrategyError
from orch.backtest import analysis
from orch.backtest.data import BacktestInputError, prepare
from orch.backtest.process import JobFailed, run_job
from orch.clients.system_state import SystemStateClient
from orch.config import Settings
from orch.contracts.errors import ErrorType
from orch.contracts.names import RESTART_DISCOVERY
from orch.contracts.system import SystemStateSnapshot
from orch.contracts.validation import (
    ACTIVE_SOURCE,
    BACKTEST_SOURCES,
    BacktestProgress,
    BacktestRequest,
    BacktestResult,
    OptimiseSplitRequest,
    PerformanceAnalysis,
    PrepareDataRequest,
    PreparedData,
    Recommendations,
    RecommendRequest,
    SplitResult,
)
from orch.market.csv import DataFileError
from orch.market.sources import ALPACA_KEY_VARIABLES


def job_environment(settings: Settings) -> dict[str, str]:
    """The part of this worker's configuration a job process reads from its environment to open the
    alpaca source: the keys (from the worker's environment, never a request) and where Alpaca is."""
    environment = {name: os.environ[name] for name in ALPACA_KEY_VARIABLES if name in os.environ}
    if settings.alpaca_data_url:
        environment["ORCH_ALPACA_DATA_URL"] = settings.alpaca_data_url
    if settings.alpaca_symbols is not None:
        environment["ORCH_ALPACA_SYMBOLS"] = json.dumps(settings.alpaca_symbols)
    environment["ORCH_ALPACA_TIMEOUT_SECONDS"] = str(settings.alpaca_timeout_seconds)
    return environment


class BacktestActivities:
    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._settings = settings

    async def _system_state(self) -> SystemStateSnapshot:
        return await SystemStateClient(self._client).snapshot()

    # ---- Step 1 --------------------------------------------------------------------------------

    @activity.defn
    @step_activity
    async def prepare_validation_data(self, request: PrepareDataRequest) -> PreparedData:
        """Resolve the source (`active`: SystemState's primary), symbols, window and splits."""
        source = request.data_source
        if source == ACTIVE_SOURCE:
            source = (await self._system_state()).config.data_sources.primary
            if source not in BACKTEST_SOURCES:  # a source added to the system before its backtest adapter
                raise InvalidInput(
                    f"the active data source {source!r} has no backtest adapter; choose one with "
                    f"--source ({', '.join(BACKTEST_SOURCES)})"
                )
        folder = request.csv_folder or (str(self._settings.csv_folder) if self._settings.csv_folder else None)
        try:
            # Off the event loop: a csv folder or the simulated market may take a moment to read.
            return await asyncio.to_thread(
                prepare,
                request,
                source_name=source,
                csv_folder=folder,
                seed=self._settings.market_seed,
                settings=self._settings,
            )
        except (BacktestInputError, DataFileError) as err:
            raise InvalidInput(str(err)) from err
        except UnknownStrategyError as err:
            raise ApplicationError(str(err), type=ErrorType.UNKNOWN_STRATEGY, non_retryable=True) from err

    # ---- Steps 2 and 4: CPU work in processes, on orch-backtest --------------------------------

    @activity.defn
    @step_activity
    async def run_backtest(self, request: BacktestRequest) -> BacktestResult:
        """Backtest one strategy over the window; heartbeats carry the bars done."""
        return await self._run("backtest", request, request.window.bars, f"backtest {request.strategy}")

    @activity.defn
    @step_activity
    async def optimise_split(self, request: OptimiseSplitRequest) -> SplitResult:
        """Search the parameter sample on the split's fit window, then score on its test window."""
        from orch.backtest.optimise import candidate_params

        combos = len(candidate_params(request.strategy, request.max_param_combinations, request.seed))
        # Every combination on the fit window, then the best and the defaults on the test window.
        total = combos * request.split.fit.bars + 2 * request.split.test.bars
        phase = f"optimise {request.strategy} split {request.split.index}"
        return await self._run("optimise", request, total, phase)

    async def _run(self, job: str, request: object, total: int, phase: str) -> Any:
        settings = self._settings

        def heartbeat(done: int, pid: int | None) -> None:
            activity.heartbeat(BacktestProgress(bars_done=done, bars_total=total, pid=pid, phase=phase))

        try:
            return await run_job(
                job,
                request,
                on_progress=heartbeat,
                poll_seconds=settings.backtest_progress_seconds,
                cancel_grace_seconds=settings.backtest_cancel_grace_seconds,
                bar_delay_seconds=settings.backtest_bar_delay_seconds,
                environment=job_environment(settings),
            )
        except JobFailed as err:
            raise ApplicationError(str(err), type=err.error_type, non_retryable=err.non_retryable) from None

    # ---- Steps 3 and 5 ---------------------------------------------------------------------------

    @activity.defn
    @step_activity
    async def analyse_performance(self, backtests: list[BacktestResult]) -> PerformanceAnalysis:
        return analysis.analyse(backtests)

    @activity.defn
    @step_activity
    async def generate_recommendations(self, request: RecommendRequest) -> Recommendations:
        """Rank the strategies; say whether applying the winner could start now, and why not."""
        ranked = analysis.recommend(request.analysis, request.optimisation)
        winner = analysis.winner(ranked)
        state = await self._system_state()
        active = state.config.active_strategy
        blocked = None
        holders = [*state.running_commands, *state.waiting_commands]
        restart = next((c for c in holders if c.command_type == RESTART_DISCOVERY), None)
        if winner is None:
            blocked = "no strategy is recommendable: none made a trade over the period"
        elif restart is not None:
            blocked = (
                f"{RESTART_DISCOVERY} {restart.workflow_id} is already running; "
                f"watch it with: orch watch {restart.workflow_id}"
            )
        elif len(state.running_commands) >= state.config.max_concurrent_workflows:
            # This validation holds a slot itself: a restart would wait for it, and it for the restart.
            blocked = (
                f"no free command slot for {RESTART_DISCOVERY} "
                f"(max_concurrent_workflows={state.config.max_concurrent_workflows}, all in use)"
            )
        if winner is None:
            summary = "no strategy recommended: none made a trade over the period"
        else:
            params = ", ".join(f"{k}={v:g}" for k, v in winner.params.items()) or "defaults"
            score = "n/a" if winner.score is None else f"{winner.score:.2f}"
            summary = f"winner {winner.strategy} ({winner.basis}: {score}); params {params}"
        return Recommendations(
            summary=summary,
            recommendations=ranked,
            winner=winner.strategy if winner else None,
            active_strategy=active,
            apply_blocked=blocked,
        )
