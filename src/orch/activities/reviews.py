"""The tactical and strategic reviews' activities: each wraps one agent (conditions, risk, optimisation,
performance) around the data it needs, and one keeps the agents' error counts in SystemState.

Two kinds of failure are kept apart, because only one of them says the agent is broken:
- the data could not be read (orch hft down, the market source failing): retryable, and the review
  reports the area as unhealthy without counting it against the agent;
- the agent raised on the data it was given: `AgentError`, non-retryable (the same input fails the
  same way), counted by `AgentErrorTracker`; after `error_threshold` in a row the agent is disabled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from orch.activities.hft import HftLink
from orch.activities.steps import heartbeating
from orch.agents.conditions import sense_market
from orch.agents.reviews import assess_portfolio, optimise_portfolio, review_strategies, summarise_conditions
from orch.agents.risk import portfolio_risk
from orch.clients.system_state import SystemStateClient
from orch.config import Settings
from orch.contracts.agent_errors import AgentErrorTracker
from orch.contracts.cycle import PortfolioRiskLimits, RegimeThresholds
from orch.contracts.emergency import AgentHealth, AgentOutcomes, ReviewContext, ReviewFinding, ReviewInput
from orch.contracts.errors import ErrorType
from orch.contracts.system import AgentErrorsUpdate, SystemStateSnapshot
from orch.contracts.trading import HftStatus
from orch.hft.client import HftClientError
from orch.market.base import MarketDataSource, PriceHistory, is_crypto

# Bars behind each review's judgements: enough for the regime and volatility windows.
REVIEW_HISTORY_BARS = 120


@contextlib.contextmanager
def agent(name: str) -> Iterator[None]:
    """Run an agent's code: whatever it raises is its own failure, typed `AgentError`."""
    try:
        yield
    except Exception as err:
        raise ApplicationError(
            f"agent {name} failed: {type(err).__name__}: {err}",
            {"agent": name},
            type=ErrorType.AGENT_ERROR,
            non_retryable=True,
        ) from err


class ReviewActivities:
    def __init__(self, client: Client, settings: Settings, market: MarketDataSource, hft: HftLink) -> None:
        self._client = client
        self._settings = settings
        self._market = market
        self._hft = hft

    async def _system_state(self) -> SystemStateSnapshot:
        return await SystemStateClient(self._client).snapshot()

    async def _hft_status(self) -> HftStatus:
        try:
            return await self._hft.client().status()
        except HftClientError as err:
            self._hft.forget(err)
            raise ApplicationError(
                f"orch hft at {self._hft.url}: {err}", type=ErrorType.DATA_UNAVAILABLE
            ) from err

    async def _histories(self, symbols: list[str]) -> dict[str, PriceHistory]:
        """Bars per symbol from this worker's market source; symbols it does not serve are left out."""
        served = set(self._market.universe())
        end = datetime.now(UTC)

        def load() -> dict[str, PriceHistory]:
            return {s: self._market.history(s, REVIEW_HISTORY_BARS, end) for s in symbols if s in served}

        try:
            return await asyncio.to_thread(load)
        except Exception as err:
            raise ApplicationError(
                f"market source {getattr(self._market, 'name', '?')}: {err}", type=ErrorType.DATA_UNAVAILABLE
            ) from err

    # ---- Context ---------------------------------------------------------------------------------

    @activity.defn
    @heartbeating
    async def load_review_context(self) -> ReviewContext:
        state = await self._system_state()
        return ReviewContext(
            disabled_agents=state.disabled_agents(), emergency_level=state.config.emergency_level
        )

    # ---- Tier 3: tactical ------------------------------------------------------------------------

    @activity.defn
    @heartbeating
    async def assess_market_conditions(self, request: ReviewInput) -> ReviewFinding:
        universe = self._market.universe()
        # Crypto first: it trades around the clock, so the review says something on any day.
        symbols = sorted(universe, key=lambda s: not is_crypto(s))[: request.symbols]
        histories = await self._histories(symbols)
        state = await self._system_state()
        thresholds = state.learning.thresholds if state.learning else RegimeThresholds()
        with agent("conditions"):
            snapshot = sense_market(
                histories,
                datetime.now(UTC),
                thresholds,
                source=getattr(self._market, "name", "?"),
                lookback_bars=REVIEW_HISTORY_BARS,
            )
            return summarise_conditions(snapshot)

    @activity.defn
    @heartbeating
    async def assess_portfolio_risk(self, request: ReviewInput) -> ReviewFinding:
        status = await self._hft_status()
        values = _position_values(status)
        histories = await self._histories(sorted(values))
        with agent("risk"):
            # Measured against the gate's exposure budget: orch hft does not publish account equity.
            risk = portfolio_risk(
                values, status.risk.max_gross_exposure, histories, PortfolioRiskLimits(), 0.0
            )
            return assess_portfolio(risk, status.risk)

    # ---- Tier 4: strategic -----------------------------------------------------------------------

    @activity.defn
    @heartbeating
    async def optimise_portfolio(self, request: ReviewInput) -> ReviewFinding:
        status = await self._hft_status()
        values = _position_values(status)
        histories = await self._histories(sorted(values))
        with agent("optimisation"):
            return optimise_portfolio(values, histories)

    @activity.defn
    @heartbeating
    async def review_strategy_performance(self, request: ReviewInput) -> ReviewFinding:
        try:
            plans = await self._hft.client().plans()
        except HftClientError as err:
            raise ApplicationError(
                f"orch hft at {self._hft.url}: {err}", type=ErrorType.DATA_UNAVAILABLE
            ) from err
        state = await self._system_state()
        with agent("performance"):
            return review_strategies(state.learning, plans)

    # ---- Agents' error counts --------------------------------------------------------------------

    @activity.defn
    @heartbeating
    async def record_agent_outcomes(self, outcomes: AgentOutcomes) -> AgentHealth:
        """Count this review's agent errors and successes; disable agents at the threshold (SystemState).

        The update id is the review's, so a retry after the update went through changes nothing.
        """
        system_state = SystemStateClient(self._client)
        state = await system_state.snapshot()
        source = f"{outcomes.review}-review"
        tracker = AgentErrorTracker(state.agent_errors.get(source), error_threshold=outcomes.error_threshold)
        now = datetime.now(UTC)
        newly_disabled = []
        for name in outcomes.succeeded:
            tracker.record_success(name)
        for name, error in sorted(outcomes.failed.items()):
            was_enabled = tracker.is_enabled(name)
            if not tracker.record_error(name, error, now).disabled:
                continue
            if was_enabled:
                newly_disabled.append(name)
        await system_state.record_agent_errors(
            AgentErrorsUpdate(source=source, log=tracker.log, requested_by=outcomes.review_id),
            update_id=f"agent-errors-{outcomes.review_id}",
        )
        return AgentHealth(log=tracker.log, newly_disabled=newly_disabled, report=tracker.report())


def _position_values(status: HftStatus) -> dict[str, float]:
    """Signed money per held symbol, at the last price orch hft knows."""
    return {
        p.symbol: p.quantity * (p.market_price or p.average_price) for p in status.positions if p.quantity
    }
