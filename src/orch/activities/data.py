"""`IntegrateRealData`'s steps, and the worker's resource-pool statistics, as activities.

Every step acts on real things: the sources themselves (probed with requests that need the keys and
return bars), the `SystemState` entity (data sources, learning, trading mode; each change an update
with an id, so a retried step changes nothing twice), and the agents (calibration and a dry cycle).
Alpaca's keys are read from the worker's environment by the adapters here and never leave them: no
input, outcome or error message of these activities carries one.

Reading bars blocks, so it runs in threads (`asyncio.to_thread`): there the worker's configured
market waits for Alpaca's rate limit on the loop, which keeps heartbeating.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from temporalio import activity
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from orch.activities.hft import HftLink
from orch.activities.steps import step_activity
from orch.agents.calibration import calibrate_thresholds
from orch.agents.composition import compose
from orch.agents.conditions import (
    LONG_WINDOW,
    MIN_BARS,
    REGIME_WINDOW,
    VOLATILITY_WINDOW,
    efficiency_ratio,
    sense_market,
    volatility_ratio,
)
from orch.agents.discovery import get_strategy, indicators, rank_all
from orch.agents.patterns import analyse_patterns
from orch.agents.risk import evaluate_risk
from orch.clients.system_state import SystemStateClient
from orch.config import Settings
from orch.contracts.commands import StepOutcome
from orch.contracts.cycle import LearningState, PortfolioRiskLimits
from orch.contracts.data import (
    AlgorithmsUpdated,
    BarSample,
    ConnectionsValidated,
    DataFlowRequest,
    DataFlowTested,
    EnableTradingRequest,
    PreviousConfig,
    ResourcePoolStats,
    RestoreConfigRequest,
    SourceProbe,
    SourcesSwitched,
    SwitchSourcesRequest,
    SymbolStats,
    TradingEnabled,
    UpdateAlgorithmsRequest,
    ValidateConnectionsRequest,
)
from orch.contracts.discovery import Candidate
from orch.contracts.errors import ErrorType
from orch.contracts.levels import TradingMode
from orch.contracts.system import (
    DataSources,
    DataSourcesChange,
    LearningRecord,
    SystemStateSnapshot,
    TradingModeChange,
)
from orch.contracts.trading import Account
from orch.hft.client import HftClientError
from orch.market.alpaca import API_KEY_VARIABLE, SECRET_KEY_VARIABLE
from orch.market.base import CredentialsRefused, MarketDataError, MarketDataSource, PriceHistory, is_crypto
from orch.market.calendars import freshness_moment
from orch.market.sources import (
    ConfiguredMarket,
    SourceConfigurationError,
    UnknownSourceError,
    bar_interval,
    stale_reason,
)
from orch.resources import ResourcePool

PROBE_BARS = 30
ALPACA_DATA_URL = "https://data.alpaca.markets"
# The dry cycle's account: what the plans are sized against. Nothing is sent anywhere.
DRY_RUN_EQUITY = 100_000.0


def describe(sources: DataSources) -> str:
    return " -> ".join([sources.primary, *sources.fallbacks])


def _moment(timestamp: np.datetime64) -> datetime:
    return datetime.fromtimestamp(int(timestamp.astype("datetime64[s]").astype(np.int64)), UTC)


def _load(market: MarketDataSource, symbols: Sequence[str], bars: int, end: datetime) -> dict[str, Any]:
    """Each symbol's bars, or the reason it has none (a str)."""
    loaded: dict[str, Any] = {}
    for symbol in symbols:
        try:
            loaded[symbol] = market.history(symbol, bars, end)
        except MarketDataError as err:
            loaded[symbol] = str(err)
    return loaded


def pick_symbols(universe: Sequence[str], count: int) -> list[str]:
    """The first `count` symbols, with one crypto pair among them when there is one: crypto trades
    every day, so freshness can be judged at a weekend too."""
    crypto = [s for s in universe if is_crypto(s)]
    others = [s for s in universe if not is_crypto(s)]
    if not crypto or (count == 1 and others):
        return list(universe[:count])
    return [*others[: count - 1], crypto[0]][:count]


class DataActivities:
    def __init__(
        self,
        client: Client,
        settings: Settings,
        resources: ResourcePool,
        markets: ConfiguredMarket,
        hft: HftLink,
    ) -> None:
        self._client = client
        self._settings = settings
        self._resources = resources
        self._markets = markets
        self._hft = hft

    def _system_state(self) -> SystemStateClient:
        return SystemStateClient(self._client)

    async def _state(self) -> SystemStateSnapshot:
        return await self._system_state().snapshot()

    # ---- The pool's statistics ---------------------------------------------------------------------

    @activity.defn
    async def resource_pool_stats(self) -> ResourcePoolStats:
        """This worker process's pool: requests, errors, rate limiting, cache and fallbacks."""
        return self._resources.stats()

    # ---- Step 1: validate data connections ---------------------------------------------------------

    @activity.defn
    @step_activity
    async def validate_connections(self, request: ValidateConnectionsRequest) -> ConnectionsValidated:
        """Probe each named source: credentials, latency, freshness of the newest bar, a sample."""
        return await self._validate(request)

    async def _validate(self, request: ValidateConnectionsRequest) -> ConnectionsValidated:
        state = await self._state()
        previous = PreviousConfig(
            data_sources=state.config.data_sources,
            trading_mode=state.config.trading_mode,
            learning=state.learning,
        )
        names = [request.sources.primary, *request.sources.fallbacks]
        symbols: list[str] = list(request.symbols)
        probes = []
        for index, name in enumerate(names):
            probe, chosen = await self._probe(
                name, "primary" if index == 0 else "fallback", symbols, request.probe_symbols, request
            )
            if index == 0:
                symbols = chosen
            probes.append(probe)
        failing = [p for p in probes if not p.ok]
        if failing:
            raise ApplicationError(
                "data sources not ready: " + " | ".join(p.line() for p in failing),
                [p.model_dump(mode="json") for p in probes],
                type=ErrorType.DATA_SOURCE_REJECTED
                if not any(p.retryable for p in failing)
                else ErrorType.DATA_SOURCE_UNAVAILABLE,
                non_retryable=not any(p.retryable for p in failing),
            )
        return ConnectionsValidated(
            summary="; ".join(p.line() for p in probes),
            probes=probes,
            symbols=symbols,
            previous=previous,
        )

    async def _probe(
        self, name: str, role: str, symbols: list[str], count: int, request: ValidateConnectionsRequest
    ) -> tuple[SourceProbe, list[str]]:
        """One source's probe, and the symbols it was probed on (the primary's become everyone's)."""
        probe = SourceProbe(name=name, role=role, ok=False)
        try:
            source = self._markets.source(name)
        except (SourceConfigurationError, UnknownSourceError) as err:
            probe.problems.append(str(err))
            probe.retryable = False
            return probe, symbols
        try:
            universe = await asyncio.to_thread(source.universe)
        except MarketDataError as err:
            probe.problems.append(f"cannot list its symbols: {err}")
            probe.retryable = not isinstance(err, SourceConfigurationError)
            return probe, symbols
        probe.symbols_served = len(universe)
        served = set(universe)
        if role == "primary":
            unknown = [s for s in symbols if s not in served]
            if unknown:
                probe.problems.append(f"does not serve {', '.join(unknown)}")
                probe.retryable = False
                return probe, symbols
            symbols = symbols or pick_symbols(universe, count)
            probed = symbols
        else:
            # The primary's symbols; its own when the primary could not name any.
            probed = [s for s in symbols if s in served] if symbols else pick_symbols(universe, count)
            if not probed:
                probe.problems.append(f"serves none of {', '.join(symbols)}: it could never stand in")
                probe.retryable = False
                return probe, symbols
        probe.symbols_probed = probed
        if not probed:
            probe.problems.append("serves no symbols")
            probe.retryable = False
            return probe, symbols

        latencies = []
        if name == "alpaca":
            authenticated, latency, problem = await self._alpaca_credentials(probed[0])
            probe.authenticated = authenticated
            if latency is not None:
                latencies.append(latency)
            if problem:
                probe.problems.append(problem)
                probe.retryable = authenticated is not False
                return probe, symbols

        now = datetime.now(UTC)
        histories: dict[str, PriceHistory] = {}
        for symbol in probed:
            activity.heartbeat(f"probing {name}: {symbol}")
            started = time.perf_counter()
            try:
                histories[symbol] = await asyncio.to_thread(source.history, symbol, PROBE_BARS)
            except MarketDataError as err:
                probe.problems.append(f"{symbol}: {err}")
                if isinstance(err, CredentialsRefused):
                    probe.authenticated, probe.retryable = False, False
                continue
            latencies.append((time.perf_counter() - started) * 1000)
        if latencies:
            probe.latency_ms = round(statistics.median(latencies), 2)
        filled = {s: h for s, h in histories.items() if len(h)}
        if not filled:
            probe.problems.append(f"no bars for {', '.join(probed)}")
            return probe, symbols
        newest_symbol = max(filled, key=lambda s: filled[s].timestamps[-1])
        newest = filled[newest_symbol]
        probe.newest_bar_at = _moment(newest.timestamps[-1])
        # A closed market's newest bar is as old as it was at the last close (weekend, holiday, night).
        measured_at = freshness_moment(newest_symbol, now.timestamp())
        probe.age_seconds = round(measured_at - probe.newest_bar_at.timestamp(), 1)
        max_age = request.max_data_age_seconds
        stale = stale_reason(
            newest,
            now,
            stale_after=None if max_age is None else timedelta(seconds=max_age),
            interval=bar_interval(source),
        )
        probe.fresh = stale is None
        if stale is not None:
            probe.problems.append(f"stale: {stale}")
        first = filled.get(probed[0]) or newest
        probe.sample = BarSample(
            symbol=first.symbol,
            timestamp=_moment(first.timestamps[-1]),
            open=float(first.open[-1]),
            high=float(first.high[-1]),
            low=float(first.low[-1]),
            close=float(first.close[-1]),
            volume=float(first.volume[-1]),
        )
        if probe.authenticated is None and name == "alpaca":
            probe.authenticated = True
        probe.ok = not probe.problems
        return probe, symbols

    async def _alpaca_credentials(self, symbol: str) -> tuple[bool | None, float | None, str | None]:
        """Ask Alpaca's market-data API for `symbol`'s latest bar with the worker's keys, through the
        pool's HTTP client: (authenticated, latency ms, problem)."""
        base = (self._settings.alpaca_data_url or ALPACA_DATA_URL).rstrip("/")
        path = "/v1beta3/crypto/us/latest/bars" if is_crypto(symbol) else "/v2/stocks/bars/latest"
        params = {"symbols": symbol} | ({} if is_crypto(symbol) else {"feed": "iex"})
        headers = {
            "APCA-API-KEY-ID": os.environ.get(API_KEY_VARIABLE, ""),
            "APCA-API-SECRET-KEY": os.environ.get(SECRET_KEY_VARIABLE, ""),
        }
        started = time.perf_counter()
        try:
            response = await self._resources.request(
                "alpaca-data", "GET", base + path, params=params, headers=headers
            )
        except Exception as err:  # the transport: nothing here can carry the keys
            return None, None, f"unreachable at {base}: {type(err).__name__}"
        latency = (time.perf_counter() - started) * 1000
        if response.status_code in (401, 403):
            return False, latency, f"refused the credentials (HTTP {response.status_code})"
        if response.status_code != 200:
            return None, latency, f"answered HTTP {response.status_code} at {base}{path}"
        return True, latency, None

    # ---- Step 2: switch data sources ---------------------------------------------------------------

    @activity.defn
    @step_activity
    async def switch_data_sources(self, request: SwitchSourcesRequest) -> SourcesSwitched:
        """Record the primary and its ordered fallbacks in SystemState; this worker reads them at once."""
        try:
            previous = await self._system_state().set_data_sources(
                DataSourcesChange(sources=request.sources, requested_by=request.integration_id),
                update_id=f"{request.integration_id}-switch-sources",
            )
        except WorkflowUpdateFailedError as err:
            raise ApplicationError(
                _update_refusal(err), type=ErrorType.INVALID_INPUT, non_retryable=True
            ) from err
        await self._markets.refresh(force=True)
        return SourcesSwitched(
            summary=f"data sources {describe(previous.sources)} -> {describe(request.sources)}",
            previous=previous.sources,
            current=request.sources,
        )

    # ---- Step 3: update algorithms -----------------------------------------------------------------

    @activity.defn
    @step_activity
    async def update_algorithms(self, request: UpdateAlgorithmsRequest) -> AlgorithmsUpdated:
        """Re-warm the agents on the new source's recent bars: regime thresholds recalibrated to keep the
        regime mix, per-symbol statistics measured, the active strategy's lookback checked."""
        return await self._update_algorithms(request)

    async def _update_algorithms(self, request: UpdateAlgorithmsRequest) -> AlgorithmsUpdated:
        state = await self._state()
        current = state.learning or LearningState()
        now = datetime.now(UTC)
        market = self._markets.market_for(request.sources, stale_after_seconds=request.max_data_age_seconds)
        loaded = await asyncio.to_thread(_load, market, request.symbols, request.warmup_bars, now)
        new = {s: h for s, h in loaded.items() if isinstance(h, PriceHistory) and len(h)}
        if not new:
            reasons = "; ".join(f"{s}: {why}" for s, why in loaded.items())
            raise ApplicationError(
                f"no recent bars from {describe(request.sources)}: {reasons}", type=ErrorType.NO_HISTORY
            )

        reference_name = describe(request.previous_sources)
        try:
            reference_market = self._markets.market_for(request.previous_sources, record=False)
            reference_loaded = await asyncio.to_thread(
                _load, reference_market, request.symbols, request.warmup_bars, now
            )
            reference = [h for h in reference_loaded.values() if isinstance(h, PriceHistory)]
        except (MarketDataError, UnknownSourceError) as err:
            reference, reference_name = [], f"{reference_name} (unavailable: {err})"
        calibration = await asyncio.to_thread(
            calibrate_thresholds, current.thresholds, reference, list(new.values())
        )

        strategy = state.config.active_strategy
        lookback = get_strategy(strategy).lookback
        enough = sum(1 for h in new.values() if len(h) >= lookback)
        if not enough:
            longest = max(len(h) for h in new.values())
            raise ApplicationError(
                f"the active strategy {strategy} needs {lookback} bars; {describe(request.sources)} "
                f"serves at most {longest} for {', '.join(new)}",
                type=ErrorType.INSUFFICIENT_HISTORY,
                non_retryable=True,
            )
        symbols = [_symbol_stats(h, market.served_by.get(s, request.sources.primary)) for s, h in new.items()]

        written = current.model_copy(update={"thresholds": calibration.thresholds})
        cycle_id = f"{request.integration_id}-calibration"
        await self._system_state().record_learning(
            LearningRecord(cycle_id=cycle_id, state=written), update_id=f"learn-{cycle_id}"
        )
        before, after = current.thresholds, calibration.thresholds
        return AlgorithmsUpdated(
            summary=f"regime thresholds trend {before.trend_efficiency:.3f} -> {after.trend_efficiency:.3f}, "
            f"volatile {before.volatility_ratio:.3f} -> {after.volatility_ratio:.3f} on {len(new)} symbols "
            f"x {request.warmup_bars} bars (reference {reference_name}); {strategy} needs {lookback} bars: "
            f"{enough}/{len(new)} symbols have them",
            thresholds_before=before,
            thresholds_after=after,
            reference=reference_name,
            reference_mix=calibration.reference_mix,
            new_mix=calibration.new_mix,
            symbols=symbols,
            strategy=strategy,
            strategy_lookback=lookback,
            symbols_with_lookback=enough,
            learning_cycle_id=cycle_id,
            written=written,
        )

    # ---- Step 4: test data flow ---------------------------------------------------------------------

    @activity.defn
    @step_activity
    async def test_data_flow(self, request: DataFlowRequest) -> DataFlowTested:
        """Recent bars through the data validation checks, then one dry cycle (patterns, composition,
        risk) that places no orders: no execution process is contacted."""
        return await self._test_data_flow(request)

    async def _test_data_flow(self, request: DataFlowRequest) -> DataFlowTested:
        state = await self._state()
        learning = state.learning or LearningState()
        strategy = state.config.active_strategy
        bars = max(request.lookback_bars, get_strategy(strategy).lookback + 1, MIN_BARS)
        market = self._markets.market_for(request.sources, stale_after_seconds=request.max_data_age_seconds)
        now = datetime.now(UTC)
        loaded = await asyncio.to_thread(_load, market, request.symbols, bars, now)
        histories = {s: h for s, h in loaded.items() if isinstance(h, PriceHistory)}
        max_age = request.max_data_age_seconds
        snapshot = await asyncio.to_thread(
            sense_market,
            histories,
            now,
            learning.thresholds,
            source=request.sources.primary,
            lookback_bars=bars,
            stale_after=None if max_age is None else timedelta(seconds=max_age),
        )
        issues = [f"{s}: {why}" for s, why in loaded.items() if isinstance(why, str)]
        issues += [
            f"{q.symbol}: {i.kind.value}: {i.message}" for q in snapshot.data_quality for i in q.issues
        ]
        if not snapshot.conditions:
            raise ApplicationError(
                f"no symbol's bars passed the data validation checks: {'; '.join(issues) or 'no bars'}",
                type=ErrorType.DATA_FLOW_FAILED,
            )
        usable = {c.symbol: histories[c.symbol] for c in snapshot.conditions}
        patterns = await asyncio.to_thread(analyse_patterns, usable, snapshot, 0)
        candidates = await asyncio.to_thread(_candidates, strategy, usable)
        account = Account(cash=DRY_RUN_EQUITY, equity=DRY_RUN_EQUITY, buying_power=DRY_RUN_EQUITY)
        limits = PortfolioRiskLimits()
        composition = compose(
            candidates,
            snapshot,
            patterns,
            account,
            [],
            limits,
            learning.weights,
            now=now,
            plan_id_prefix=f"{request.integration_id}-dry",
        )
        risk = await asyncio.to_thread(
            evaluate_risk, [c.plan for c in composition.plans], account, [], usable, limits
        )
        confirmed = sum(len(r.confirmed) for r in patterns.reports)
        fallbacks = list(market.events)
        return DataFlowTested(
            summary=f"{len(snapshot.conditions)}/{len(request.symbols)} symbols passed validation "
            f"({len(issues)} issues); dry cycle: {confirmed} confirmed patterns, "
            f"{len(composition.plans)} plans composed, {len(risk.approved_plans)} approved by risk, "
            "0 orders placed" + (f"; {len(fallbacks)} fallbacks taken" if fallbacks else ""),
            symbols=len(request.symbols),
            usable=len(snapshot.conditions),
            data_issues=issues[:50],
            regimes={c.symbol: c.regime.value for c in snapshot.conditions},
            served_by={s: market.served_by[s] for s in histories if s in market.served_by},
            patterns_confirmed=confirmed,
            candidates=len(candidates),
            plans_composed=len(composition.plans),
            plans_approved=len(risk.approved_plans),
            orders_placed=0,
            fallbacks=fallbacks[:50],
        )

    # ---- Step 5: enable real trading ----------------------------------------------------------------

    @activity.defn
    @step_activity
    async def enable_trading(self, request: EnableTradingRequest) -> TradingEnabled:
        """Switch the trading mode (paper; live only with its second confirmation) in SystemState."""
        try:
            previous = await self._system_state().set_trading_mode(
                TradingModeChange(
                    mode=request.mode, requested_by=request.integration_id, confirm_live=request.confirm_live
                ),
                update_id=f"{request.integration_id}-trading-mode",
            )
        except WorkflowUpdateFailedError as err:
            raise ApplicationError(
                _update_refusal(err), type=ErrorType.TRADING_MODE_REFUSED, non_retryable=True
            ) from err
        hft_mode, hft_note = await self._hft_trading_mode(request.mode)
        return TradingEnabled(
            summary=f"trading mode {previous.value} -> {request.mode.value}; {hft_note}",
            previous_mode=previous,
            mode=request.mode,
            hft_trading_mode=hft_mode,
        )

    async def _hft_trading_mode(self, mode: TradingMode) -> tuple[TradingMode | None, str]:
        """What orch hft trades on: its broker is set by its own flags, never by a workflow."""
        try:
            status = await self._hft.client().status()
        except HftClientError as err:
            self._hft.forget(err)
            return None, f"orch hft at {self._hft.url} not answering: cycles send no plans until it does"
        if status.trading_mode is mode:
            return mode, f"orch hft trades {mode.value} ({status.broker} broker): cycles send plans to it"
        return status.trading_mode, (
            f"orch hft trades {status.trading_mode.value} ({status.broker} broker): cycles send no plans "
            f"until it runs on a {mode.value} broker (orch hft --broker alpaca"
            + (", ORCH_HFT_ALPACA_PAPER=false)" if mode is TradingMode.LIVE else ")")
        )

    # ---- Compensation -------------------------------------------------------------------------------

    @activity.defn
    @step_activity
    async def restore_configuration(self, request: RestoreConfigRequest) -> StepOutcome:
        """Put back what the integration changed: data sources, trading mode, and the thresholds (unless a
        trading cycle has learned since, whose learning is newer than both)."""
        state = await self._state()
        handle = self._system_state()
        previous = request.previous
        done = []
        if request.restore_sources and state.config.data_sources != previous.data_sources:
            await handle.set_data_sources(
                DataSourcesChange(sources=previous.data_sources, requested_by=request.integration_id),
                update_id=f"{request.integration_id}-restore-sources",
            )
            done.append(f"data sources back to {describe(previous.data_sources)}")
        if request.restore_mode and state.config.trading_mode != previous.trading_mode:
            await handle.set_trading_mode(
                TradingModeChange(
                    mode=previous.trading_mode,
                    requested_by=request.integration_id,
                    confirm_live=previous.trading_mode is TradingMode.LIVE,
                ),
                update_id=f"{request.integration_id}-restore-mode",
            )
            done.append(f"trading mode back to {previous.trading_mode.value}")
        if request.written_learning is not None:
            if state.learning == request.written_learning:
                cycle_id = f"{request.integration_id}-restore-learning"
                await handle.record_learning(
                    LearningRecord(cycle_id=cycle_id, state=previous.learning or LearningState()),
                    update_id=f"learn-{cycle_id}",
                )
                done.append("regime thresholds restored")
            else:
                done.append("regime thresholds left: a trading cycle has learned since")
        await self._markets.refresh(force=True)
        return StepOutcome(summary="; ".join(done) or "nothing had changed")


def _candidates(strategy: str, histories: dict[str, PriceHistory]) -> list[Candidate]:
    """The symbols ranked by the active discovery strategy, the rest after them (as the cycle does)."""
    return rank_all(strategy, histories, sorted(histories))


def _symbol_stats(history: PriceHistory, served_by: str) -> SymbolStats:
    close = history.close
    steps = np.diff(history.timestamps).astype("timedelta64[s]").astype(np.int64)
    returns = indicators.log_returns(close)[1:]
    atr = indicators.atr(history.high, history.low, close, 14)
    return SymbolStats(
        symbol=history.symbol,
        served_by=served_by,
        bars=len(history),
        bar_interval_seconds=float(np.median(steps)) if len(steps) else None,
        volatility=float(np.std(returns)) if len(returns) else 0.0,
        atr_fraction=float(atr[-1] / close[-1]) if len(atr) and np.isfinite(atr[-1]) else 0.0,
        efficiency_ratio=efficiency_ratio(close, REGIME_WINDOW) if len(close) > REGIME_WINDOW + 1 else 0.0,
        volatility_ratio=volatility_ratio(close, VOLATILITY_WINDOW, LONG_WINDOW)[1]
        if len(close) > VOLATILITY_WINDOW + 2
        else 1.0,
    )


def _update_refusal(err: WorkflowUpdateFailedError) -> str:
    cause = err.cause
    while getattr(cause, "cause", None) is not None:
        cause = cause.cause
    return f"SystemState refused the change: {getattr(cause, 'message', None) or cause or err}"
