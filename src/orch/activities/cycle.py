"""The trading cycle's nine steps as activities: thin wrappers around the agents, `orch hft` and SystemState.

Agents are plain Python and CPU-bound (numpy), so they run in a thread: the worker's event loop keeps
heartbeating and polling while a step computes. Bars are never passed between steps; a step that needs
them again reads them from the market source with the snapshot's `as_of` as the end, which gives the
same bars every time.

Failures are typed for the retry policy: `orch hft` answering 4xx (the request itself is wrong) and
`InvalidInput` are not retried; a process that does not answer, or a market source that fails, is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from orch.activities.hft import hft_address
from orch.activities.steps import step_activity
from orch.agents.composition import compose
from orch.agents.conditions import sense_market
from orch.agents.discovery import get_strategy, rank_all
from orch.agents.execution import (
    Dispatch,
    OrderIdOf,
    fit_to_gate,
    record_execution,
    record_health,
    refusals,
    settle_plans,
)
from orch.agents.health import evaluate_health
from orch.agents.learning import learn
from orch.agents.patterns import analyse_patterns
from orch.agents.reporting import build_cycle_report
from orch.agents.risk import evaluate_risk
from orch.agents.scheduler import load_signal, market_activity, next_interval, performance_signal
from orch.brokers.base import make_client_order_id
from orch.clients.cycle_reports import cycle_report_path
from orch.clients.system_state import SystemStateClient
from orch.config import Settings
from orch.contracts.agent_errors import AgentErrorTracker, count_step_errors
from orch.contracts.commands import CommandStatus
from orch.contracts.cycle import (
    AdapterHealth,
    ComposedPlan,
    ExecutionSummary,
    HealthFigures,
    LearningState,
    SchedulerSignals,
    UniverseFilter,
)
from orch.contracts.discovery import Candidate
from orch.contracts.engine import (
    Composed,
    ComposeRequest,
    CycleContext,
    Executed,
    ExecuteRequest,
    ExecutionSettings,
    HealthChecked,
    HealthRequest,
    HftTarget,
    InitializeRequest,
    KeepAliveRequest,
    Learned,
    LearnRequest,
    PatternsFound,
    PatternsRequest,
    Reported,
    ReportRequest,
    RiskEvaluated,
    RiskRequest,
    Sensed,
    SenseRequest,
)
from orch.contracts.errors import ErrorType
from orch.contracts.levels import EmergencyLevel, TradingMode
from orch.contracts.market import MarketStatus
from orch.contracts.system import LearningRecord, SystemStateSnapshot
from orch.contracts.trading import Account, Fill, PlanState, Position, StrategyPlan, TradingState
from orch.hft.client import HftApiError, HftClient, HftClientError, HftUnavailable
from orch.hft.config import HftSettings
from orch.market.base import MarketDataError, MarketDataSource, PriceHistory
from orch.market.calendars import is_tradable, market_status

log = logging.getLogger(__name__)

FILL_PAGE = 5_000
SETTLE_POLL_SECONDS = 0.2
# How often the first cycle asks whether orch hft is up yet.
HFT_READY_POLL_SECONDS = 0.25


class CycleActivities:
    def __init__(
        self,
        client: Client,
        settings: Settings,
        market: MarketDataSource,
        hft_settings: HftSettings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._settings = settings
        self._market = market
        # ORCH_HFT_* is read once, when first needed: the same variables `orch hft` reads.
        self._hft_settings = hft_settings
        # Market hours are judged on this clock (epoch seconds): the moment the plans go out.
        self._clock = clock
        # This worker's first cycle waits for orch hft to be ready, whichever engine runs it: after a restart
        # of the whole system the engine is not new, but orch hft may not be listening yet.
        self._waited_for_hft = False

    # ---- Reaching orch hft and SystemState -----------------------------------------------------------

    def hft_settings(self, account: str) -> HftSettings:
        if self._hft_settings is None:
            self._hft_settings = HftSettings()
        base = self._hft_settings
        return base if base.account == account else base.model_copy(update={"account": account})

    def hft_client(self, target: HftTarget) -> HftClient:
        """A client of `orch hft`: the worker's address and token (`hft_address`), unless the engine's
        execution settings name another URL or port."""
        url, token = hft_address(self._settings)
        execution = target.execution
        if execution.hft_url:
            url = execution.hft_url
        elif execution.hft_port:
            url = self.hft_settings(target.account).model_copy(update={"port": execution.hft_port}).base_url
        return HftClient(url, token=token, timeout_seconds=execution.request_timeout_seconds)

    async def _system_state(self) -> SystemStateSnapshot:
        return await SystemStateClient(self._client).snapshot()

    async def _histories(self, symbols: Sequence[str], bars: int, end: datetime) -> dict[str, PriceHistory]:
        """Bars of every symbol the source knows; a symbol it refuses is left out (the step says so)."""

        def load() -> dict[str, PriceHistory]:
            histories = {}
            for symbol in symbols:
                try:
                    histories[symbol] = self._market.history(symbol, bars, end)
                except MarketDataError as err:
                    log.warning("no bars for %s from %s: %s", symbol, self._market.name, err)
            return histories

        histories = await asyncio.to_thread(load)
        if symbols and not histories:
            raise MarketDataError(f"{self._market.name} served none of {', '.join(symbols)}")
        return histories

    # ---- Step 1: initialize --------------------------------------------------------------------------

    @activity.defn
    @step_activity
    async def initialize(self, request: InitializeRequest) -> CycleContext:
        """Load the configuration, reach the market source and orch hft, and pick the candidates."""
        notes: list[str] = []
        state = await self._system_state()
        learning = state.learning or LearningState()
        if request.weights_override is not None:
            learning = learning.model_copy(update={"weights": request.weights_override})
            record = LearningRecord(cycle_id=f"{request.cycle_id}-weights", state=learning)
            await SystemStateClient(self._client).record_learning(
                record, update_id=f"learn-{record.cycle_id}"
            )
            notes.append("strategy weights set by set_config, persisted in SystemState")

        hft = self.hft_settings(request.hft.account)
        positions: list[Position] = []
        pnl = 0.0
        hft_state: TradingState | None = None
        hft_reason = ""
        hft_mode: TradingMode | None = None
        hft_broker = ""
        # What orch hft trades, as it says itself; its settings as this worker reads them when it is down.
        hft_symbols = hft.symbols
        fill_cursor = request.fill_cursor
        async with self.hft_client(request.hft) as client:
            try:
                if request.first_cycle or not self._waited_for_hft:
                    self._waited_for_hft = True
                    notes += await _wait_until_ready(client, request.hft_ready_timeout_seconds)
                # The dead man's switch: a cycle is the orchestrator's proof of life.
                await client.heartbeat(sender=f"cycle-{request.cycle_number}")
                status = await client.status()
                positions = status.positions
                pnl = status.realized_pnl + status.unrealized_pnl
                hft_state, hft_reason = status.trading.state, status.trading.reason
                hft_mode, hft_broker = status.trading_mode, status.broker
                hft_symbols = status.symbols or hft_symbols
                if fill_cursor is None:
                    # A new engine learns from fills from now on: skip the account's history once.
                    fill_cursor, _ = await _read_fills(client, 0)
            except HftClientError as err:
                notes.append(f"orch hft unreachable ({err}): nothing can be executed this cycle")

        known = set(self._market.universe())
        wanted = request.symbols or hft_symbols
        not_traded = [s for s in wanted if s not in hft_symbols]
        if not_traded:
            notes.append(f"not traded by orch hft, left out: {', '.join(not_traded)}")
        not_served = [s for s in wanted if s in hft_symbols and s not in known]
        if not_served:
            notes.append(f"not served by {self._market.name}, left out: {', '.join(not_served)}")
        tradable = [s for s in wanted if s in hft_symbols and s in known]
        if not tradable:
            raise ApplicationError(
                f"none of the symbols ({', '.join(wanted)}) is both traded by orch hft "
                f"({', '.join(hft_symbols)}) and served by {self._market.name}",
                type=ErrorType.INVALID_INPUT,
                non_retryable=True,
            )
        equity = hft.sim_starting_cash + pnl
        gross = sum(abs(p.quantity) * (p.market_price or p.average_price) for p in positions)
        net = sum(p.quantity * (p.market_price or p.average_price) for p in positions)
        account = Account(cash=equity - net, equity=equity, buying_power=max(equity - gross, 0.0))

        candidates, universe = await self._candidates(state, tradable, request)
        summary = (
            f"{len(candidates)} candidates ({universe.source}"
            + (f"; closed: {', '.join(map(str, universe.closed))}" if universe.closed else "")
            + f"); orch hft {hft_state.value if hft_state else 'unreachable'}; "
            f"emergency level {state.config.emergency_level.value}"
        )
        return CycleContext(
            summary=summary,
            account=account,
            positions=positions,
            tradable=tradable,
            candidates=candidates,
            candidates_source=universe.source,
            universe=universe,
            learning=learning,
            emergency_level=state.config.emergency_level,
            hft_state=hft_state,
            hft_reason=hft_reason,
            trading_mode=state.config.trading_mode,
            hft_trading_mode=hft_mode,
            hft_broker=hft_broker,
            fill_cursor=fill_cursor or 0,
            notes=notes,
        )

    async def _candidates(
        self, state: SystemStateSnapshot, tradable: list[str], request: InitializeRequest
    ) -> tuple[list[Candidate], UniverseFilter]:
        """Discovery's ranking kept to what orch hft trades and is open now; else the tradable symbols,
        ranked here. Closed instruments are never candidates: orch hft's gate would refuse their entries."""
        now = self._clock()
        published = state.latest_candidates
        if published is not None:
            ranking = published.ranking or published.candidates
            candidates, universe = filter_universe(
                ranking, tradable, now, request.top_n, f"discovery scan {published.scan_workflow_id}"
            )
            if candidates:
                return candidates, universe
        strategy = state.config.active_strategy
        open_now = [s for s in tradable if is_tradable(s, now)]
        source = f"tradable universe ranked by {strategy} (no usable discovery scan)"
        if not open_now:
            return filter_universe([], tradable, now, request.top_n, source)
        bars = max(get_strategy(strategy).lookback, 60)
        histories = await self._histories(open_now, bars, request.as_of)
        ranking = await asyncio.to_thread(rank_all, strategy, histories, open_now)
        return filter_universe(ranking, tradable, now, request.top_n, source)

    # ---- Step 2: sense the market --------------------------------------------------------------------

    @activity.defn
    @step_activity
    async def sense_market(self, request: SenseRequest) -> Sensed:
        histories = await self._histories(request.symbols, request.lookback_bars, request.as_of)
        snapshot = await asyncio.to_thread(
            sense_market,
            histories,
            request.as_of,
            request.thresholds,
            source=self._market.name,
            lookback_bars=request.lookback_bars,
        )
        issues = sum(len(q.issues) for q in snapshot.data_quality)
        regimes = ", ".join(f"{c.symbol} {c.regime.value}" for c in snapshot.conditions[:6])
        summary = (
            f"{len(snapshot.conditions)}/{len(request.symbols)} symbols usable from {self._market.name}; "
            f"{issues} data issues; {regimes}"
        )
        return Sensed(summary=summary, snapshot=snapshot)

    # ---- Step 3: patterns ----------------------------------------------------------------------------

    @activity.defn
    @step_activity
    async def analyse_patterns(self, request: PatternsRequest) -> PatternsFound:
        snapshot = request.snapshot
        symbols = [c.symbol for c in snapshot.conditions]
        histories = await self._histories(symbols, snapshot.lookback_bars, snapshot.as_of)
        analysis = await asyncio.to_thread(analyse_patterns, histories, snapshot, request.seed)
        found = sum(len(r.patterns) for r in analysis.reports)
        confirmed = sum(len(r.confirmed) for r in analysis.reports)
        return PatternsFound(
            summary=f"{found} patterns, {confirmed} confirmed, over {len(analysis.reports)} symbols",
            analysis=analysis,
        )

    # ---- Step 4: compose (a local activity) ----------------------------------------------------------

    @activity.defn
    @step_activity
    async def compose_strategy(self, request: ComposeRequest) -> Composed:
        composition = compose(
            request.candidates,
            request.snapshot,
            request.patterns,
            request.account,
            request.positions,
            request.limits,
            request.weights,
            now=request.as_of,
            plan_id_prefix=request.plan_id_prefix,
        )
        plans = ", ".join(
            f"{c.plan.side.value} {c.plan.quantity:g} {c.plan.symbol} ({c.plan.strategy.value})"
            for c in composition.plans
        )
        return Composed(
            summary=f"{len(composition.plans)} plans ({plans or 'none'}), "
            f"{len(composition.rejected)} not planned",
            composition=composition,
        )

    # ---- Step 5: risk --------------------------------------------------------------------------------

    @activity.defn
    @step_activity
    async def evaluate_risks(self, request: RiskRequest) -> RiskEvaluated:
        symbols = sorted({p.symbol for p in request.plans} | {p.symbol for p in request.positions})
        known = set(self._market.universe())
        histories = await self._histories(
            [s for s in symbols if s in known], request.lookback_bars, request.as_of
        )
        assessment = await asyncio.to_thread(
            evaluate_risk,
            request.plans,
            request.account,
            request.positions,
            histories,
            request.limits,
            peak_equity=request.peak_equity,
        )
        verdicts: dict[str, int] = {}
        for decision in assessment.decisions:
            verdicts[decision.verdict.value] = verdicts.get(decision.verdict.value, 0) + 1
        described = ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())) or "no plans to judge"
        return RiskEvaluated(
            summary=f"{described}; VaR {assessment.after.var:,.0f}, "
            f"gross {assessment.after.gross_exposure:.0%}",
            assessment=assessment,
        )

    # ---- Step 6: execute -----------------------------------------------------------------------------

    @activity.defn
    @step_activity
    async def execute(self, request: ExecuteRequest) -> Executed:
        """Send the approved plans to orch hft, watch them enter, and attribute the fills that come back."""
        account = request.hft.account
        plans, scaled = fit_to_gate(request.plans, self.hft_settings(account).risk)
        dispatch: Dispatch | None = None
        async with self.hft_client(request.hft) as client:
            try:
                await _hft_call(client.heartbeat(sender=f"cycle-{request.cycle_number}"))
                if plans and request.blocked is None:
                    dispatch = await self._dispatch(client, plans, request)
                cursor, fills = await _read_fills(client, request.ledger.fill_cursor or 0)
            except HftUnavailable:
                if request.plans and request.blocked is None:
                    raise
                # Nothing to send: an unreachable process costs this cycle nothing but the window's fills.
                return Executed(
                    summary="nothing to send; orch hft unreachable, fills not read",
                    execution=ExecutionSummary(),
                    ledger=request.ledger,
                )
        ledger, execution = record_execution(request.ledger, dispatch, fills, cursor, _order_id_of(account))
        return Executed(
            summary=_execute_summary(request, dispatch, execution, scaled),
            execution=execution,
            accepted=[c.plan.plan_id for c in dispatch.accepted] if dispatch is not None else [],
            rejected=dict(dispatch.refused) if dispatch is not None else {},
            ledger=ledger,
            window_fills=len(fills),
            window_fees=sum(f.fee for f in fills),
        )

    async def _dispatch(
        self, client: HftClient, plans: list[ComposedPlan], request: ExecuteRequest
    ) -> Dispatch:
        """Send the plans and watch them until their entries settled or the settle time is up."""
        settings = request.hft.execution
        started = time.perf_counter()
        ack = await _hft_call(client.send_plans([_outgoing(c.plan, settings) for c in plans]))
        round_trip_ms = (time.perf_counter() - started) * 1e3
        sent_at = datetime.now(UTC)
        # Only a refusal needs the plans orch hft holds: an earlier attempt of this step may have sent it.
        held = {s.plan.plan_id: s.status for s in await _hft_call(client.plans())} if ack.rejected else {}
        refused = refusals(ack.rejected, held)
        dispatch = Dispatch(request.cycle_number, sent_at, round_trip_ms, plans, refused)
        accepted = [c.plan.plan_id for c in dispatch.accepted]
        return replace(dispatch, states=await self._settle(client, accepted, settings.settle_seconds))

    async def _settle(self, client: HftClient, plan_ids: list[str], seconds: float) -> dict[str, PlanState]:
        """Watch the plans until every entry settled or `seconds` passed; their last known states."""
        deadline = time.monotonic() + seconds
        wanted = set(plan_ids)
        while True:
            states = {
                s.plan.plan_id: s.status for s in await _hft_call(client.plans()) if s.plan.plan_id in wanted
            }
            activity.heartbeat(f"{sum(1 for s in states.values() if s.entry_settled)}/{len(wanted)} settled")
            if all(p in states and states[p].entry_settled for p in wanted) or time.monotonic() >= deadline:
                return states
            await asyncio.sleep(SETTLE_POLL_SECONDS)

    # ---- Step 7: health ------------------------------------------------------------------------------

    @activity.defn
    @step_activity
    async def monitor_health(self, request: HealthRequest) -> HealthChecked:
        async with self.hft_client(request.hft) as client:
            started = time.perf_counter()
            status = await _hft_call(client.status())
            status_ms = (time.perf_counter() - started) * 1e3
            metrics = await _hft_call(client.metrics())
        pnl = status.realized_pnl + status.unrealized_pnl
        equity = self.hft_settings(request.hft.account).sim_starting_cash + pnl
        ledger, window = record_health(
            request.ledger,
            metrics,
            at=request.as_of,
            pnl=pnl,
            new_fees=request.window_fees,
            equity=equity,
            window_seconds=request.window_seconds,
        )
        figures = HealthFigures(
            latency_ms_p50=metrics.get("tick_to_order_p50_us", 0.0) / 1e3,
            latency_ms_p99=metrics.get("tick_to_order_p99_us", 0.0) / 1e3,
            requests=int(window.orders_sent + window.denials),
            errors=int(window.errors),
            fees=window.fees,
            gross_pnl=window.pnl,
            equity=max(equity, 1e-9),
            broker=AdapterHealth(name=status.broker, reachable=True, latency_ms=status_ms),
            data_sources=[await self._probe_market()],
        )
        assessment = evaluate_health(figures, request.thresholds, request.as_of, request.previous)
        tripped = ", ".join(b.value for b in assessment.tripped)
        summary = f"{assessment.status.value}" + (
            f"; tripped: {tripped}" if tripped else "; no breaker tripped"
        )
        summary += (
            f"; p99 {figures.latency_ms_p99:.2f} ms, {figures.requests} requests, {figures.errors} errors"
        )
        return HealthChecked(
            summary=summary,
            assessment=assessment,
            ledger=ledger,
            equity=equity,
            pnl_fraction=(figures.gross_pnl - figures.fees) / figures.equity,
        )

    async def _probe_market(self) -> AdapterHealth:
        symbol = self._market.universe()[0]
        started = time.perf_counter()
        try:
            await asyncio.to_thread(self._market.history, symbol, 1)
        except Exception as err:
            return AdapterHealth(name=self._market.name, reachable=False, error=str(err)[:200])
        return AdapterHealth(
            name=self._market.name, reachable=True, latency_ms=(time.perf_counter() - started) * 1e3
        )

    # ---- Step 8: learn -------------------------------------------------------------------------------

    @activity.defn
    @step_activity
    async def learn_and_adapt(self, request: LearnRequest) -> Learned:
        """Credit closed plans with their realised P&L, update the weights, persist them in SystemState."""
        async with self.hft_client(request.hft) as client:
            states = {s.plan.plan_id: s.status for s in await _hft_call(client.plans())}
            cursor, fills = await _read_fills(client, request.ledger.fill_cursor or 0)
        ledger, settled = settle_plans(
            request.ledger,
            fills,
            cursor,
            _order_id_of(request.hft.account),
            states,
            request.as_of,
            request.max_age_seconds,
        )
        update = await asyncio.to_thread(learn, request.learning, settled.outcomes, request.settings)
        persisted = False
        if settled.outcomes:
            record = LearningRecord(cycle_id=request.cycle_id, state=update.state)
            # What SystemState holds is what the engine carries on: an earlier attempt's write wins.
            stored = await SystemStateClient(self._client).record_learning(
                record, update_id=f"learn-{request.cycle_id}"
            )
            update = update.model_copy(update={"state": stored})
            persisted = True
        summary = (
            f"{len(settled.outcomes)} outcomes learned from, {settled.still_open} plans still open, "
            f"{settled.never_entered} never entered"
            + ("; weights persisted in SystemState" if persisted else "")
        )
        return Learned(
            summary=summary,
            update=update,
            outcomes=settled.outcomes,
            ledger=ledger,
            persisted=persisted,
        )

    # ---- Step 9: report ------------------------------------------------------------------------------

    @activity.defn
    @step_activity
    async def log_and_report(self, request: ReportRequest) -> Reported:
        """Count agent errors, choose the next interval, write the report; returns what the engine keeps."""
        agent_errors = count_step_errors(
            request.agent_errors, request.steps, request.error_threshold, request.finished_at
        )
        inputs = request.scheduler
        signals = SchedulerSignals(
            market_activity=market_activity(request.snapshot) if request.snapshot is not None else 0.5,
            performance=performance_signal(inputs.success_rate, inputs.pnl_fraction),
            system_load=load_signal(inputs.utilisation),
        )
        decision = next_interval(inputs.settings, inputs.state, signals)
        path = cycle_report_path(self._settings.home, request.account, request.cycle_number)
        steps = [
            s.model_copy(
                update={
                    "status": CommandStatus.COMPLETED,
                    "attempts": activity.info().attempt,
                    "summary": f"report written to {path}",
                }
            )
            if s.name == "log_and_report"
            else s
            for s in request.steps
        ]
        report = build_cycle_report(
            request.cycle_number,
            steps,
            started_at=request.started_at,
            finished_at=request.finished_at,
            snapshot=request.snapshot,
            patterns=request.patterns,
            composition=request.composition,
            risk=request.risk,
            execution=request.execution,
            health=request.health,
            learning=request.learning,
            weights=request.weights,
            weights_source=request.weights_source,
            universe=request.universe,
            blocked=request.blocked,
            next_interval_seconds=decision.state.interval_seconds,
            notes=[*request.notes, decision.reason, *AgentErrorTracker(agent_errors).report()],
        )
        await asyncio.to_thread(_write_atomically, path, report.model_dump_json(indent=2))
        return Reported(
            summary=f"cycle {request.cycle_number} {report.outcome.value}; next in "
            f"{decision.state.interval_seconds:.0f} s; report {path}",
            report=report,
            decision=decision,
            agent_errors=agent_errors,
            path=str(path),
        )

    # ---- The engine's own activities -----------------------------------------------------------------

    @activity.defn
    async def read_emergency_level(self) -> EmergencyLevel:
        """SystemState's emergency level: the engine resumes only once it is back to none."""
        return (await self._system_state()).config.emergency_level

    @activity.defn
    async def keep_hft_alive(self, request: KeepAliveRequest) -> None:
        """Heartbeat orch hft until cancelled: its dead man's switch halts trading when the engine is gone.

        Runs for the engine's whole run, so the switch holds between cycles too; it reports to Temporal
        every beat, so a worker that dies stops both heartbeats.
        """
        while True:
            try:
                async with self.hft_client(request.hft) as client:
                    state = await client.heartbeat(sender=request.sender)
                activity.heartbeat(state.state.value)
            except HftClientError as err:
                activity.heartbeat(f"orch hft unreachable: {err}")
            await asyncio.sleep(request.every_seconds)


# ---- Helpers -------------------------------------------------------------------------------------------


def filter_universe(
    ranking: Sequence[Candidate], tradable: Sequence[str], now: float, top_n: int, source: str
) -> tuple[list[Candidate], UniverseFilter]:
    """The ranked symbols that orch hft trades and that are open at `now` (epoch seconds), best first and
    re-ranked from 1, and what was left out and why.

    Open means `is_tradable`, the rule orch hft's gate and tier 2 apply before an entry, so no plan is sent
    that the process would hold and let expire. Tradable symbols discovery did not rank are not added here:
    the caller ranks the tradable universe itself when nothing is left.
    """
    allowed = set(tradable)
    kept: list[Candidate] = []
    closed: list[MarketStatus] = []
    not_tradable: list[str] = []
    for candidate in ranking:
        if candidate.symbol not in allowed:
            not_tradable.append(candidate.symbol)
        elif not is_tradable(candidate.symbol, now):
            closed.append(market_status(candidate.symbol, now))
        elif len(kept) < top_n:
            kept.append(candidate.model_copy(update={"rank": len(kept) + 1}))
    # A tradable symbol absent from the ranking may still be closed: say so, it explains an empty cycle.
    ranked = {c.symbol for c in ranking}
    closed += [market_status(s, now) for s in tradable if s not in ranked and not is_tradable(s, now)]
    universe = UniverseFilter(
        source=source,
        tradable=list(tradable),
        kept=[c.symbol for c in kept],
        closed=closed,
        not_tradable=len(not_tradable),
        not_tradable_top=not_tradable[:5],
    )
    return kept, universe


async def _wait_until_ready(client: HftClient, timeout_seconds: float) -> list[str]:
    """Wait up to `timeout_seconds` for orch hft to answer and be reconciled with its broker; notes on what
    happened. `orch up` starts the workers and orch hft together, so the first cycle may run before it
    listens: that is a start-up, not a fault. It gives up quietly at the bound: the cycle goes on and says so.
    """
    if timeout_seconds <= 0:
        return []
    started = time.monotonic()
    last = "no answer yet"
    while True:
        try:
            status = await client.status()
            if status.trading.reconciled:
                waited = time.monotonic() - started
                return (
                    [f"waited {waited:.1f} s for orch hft to be ready"]
                    if waited >= HFT_READY_POLL_SECONDS
                    else []
                )
            last = f"answering but not reconciled: {status.trading.reason}"
        except HftClientError as err:
            last = str(err)
        if time.monotonic() - started >= timeout_seconds:
            return [f"orch hft not ready after {timeout_seconds:g} s ({last}); going on without waiting more"]
        activity.heartbeat(f"waiting for orch hft: {last}")
        await asyncio.sleep(HFT_READY_POLL_SECONDS)


async def _hft_call(awaitable):  # type: ignore[no-untyped-def]
    """Await a control-API call, turning a 4xx into a non-retryable failure."""
    try:
        return await awaitable
    except HftApiError as err:
        if 400 <= err.status < 500:
            raise ApplicationError(
                f"orch hft refused the request: {err}",
                type=ErrorType.HFT_REQUEST_REJECTED,
                non_retryable=True,
            ) from err
        raise


async def _read_fills(client: HftClient, cursor: int) -> tuple[int, list[Fill]]:
    """Every fill after `cursor`, and the cursor after the last one."""
    fills: list[Fill] = []
    while True:
        page = await _hft_call(client.fills(since=cursor, limit=FILL_PAGE))
        fills.extend(page.fills)
        if len(page.fills) < FILL_PAGE or page.next_cursor == cursor:
            return page.next_cursor, fills
        cursor = page.next_cursor
        with contextlib.suppress(RuntimeError):  # outside an activity (the benchmark's loop)
            activity.heartbeat(f"read fills up to {cursor}")


def _execute_summary(
    request: ExecuteRequest, dispatch: Dispatch | None, execution: ExecutionSummary, scaled: list[str]
) -> str:
    if request.blocked is not None:
        return f"nothing sent: {request.blocked.detail}"
    if not request.plans:
        return "no approved plans to send"
    return (
        f"{execution.plans_sent} plans accepted by orch hft, "
        f"{len(dispatch.refused) if dispatch is not None else 0} rejected; "
        f"{execution.orders} entered, {execution.fills} fills"
        + (f"; control API {dispatch.round_trip_ms:.1f} ms" if dispatch is not None else "")
        + (f"; scaled to orch hft's limits: {'; '.join(scaled)}" if scaled else "")
    )


def _order_id_of(account: str) -> OrderIdOf:
    """orch hft's client order id of an idempotency key: how it ids the orders it places for a plan."""
    return lambda key: make_client_order_id(account, idempotency_key=key)


def _outgoing(plan: StrategyPlan, execution: ExecutionSettings) -> StrategyPlan:
    return plan if execution.limit_entries else plan.model_copy(update={"entry_price": None})


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as out:
        out.write(text)
    os.replace(out.name, path)


def cycle_activities(activities: CycleActivities) -> list[Callable[..., object]]:
    """Every activity the trading engine and cycle run, for the commands queue's worker."""
    return [
        activities.initialize,
        activities.sense_market,
        activities.analyse_patterns,
        activities.compose_strategy,
        activities.evaluate_risks,
        activities.execute,
        activities.monitor_health,
        activities.learn_and_adapt,
        activities.log_and_report,
        activities.read_emergency_level,
        activities.keep_hft_alive,
    ]
