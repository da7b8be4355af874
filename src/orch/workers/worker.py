"""`orch worker`: one process hosting a Temporal worker per task queue, each with its own slots.

`orch-critical` has its own worker and slot budget, so a backlog of commands or scans can never
delay an emergency stop or a health check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from orch.activities.backtest import BacktestActivities
from orch.activities.cycle import CycleActivities, cycle_activities
from orch.activities.data import DataActivities
from orch.activities.discovery import DiscoveryActivities
from orch.activities.emergency import EmergencyActivities
from orch.activities.health import HealthActivities
from orch.activities.hft import HftLink
from orch.activities.reviews import ReviewActivities
from orch.activities.system import SystemActivities
from orch.client import connect
from orch.clients.system_state import SystemStateClient
from orch.config import Settings, get_settings
from orch.contracts.names import ALL_QUEUES, BACKTEST_QUEUE, COMMANDS_QUEUE, CRITICAL_QUEUE, DISCOVERY_QUEUE
from orch.contracts.system import DataSources
from orch.market.base import MarketDataSource
from orch.market.sources import ConfiguredMarket
from orch.resources import ResourcePool
from orch.workers.bootstrap import bootstrap
from orch.workflows.discovery_scan import DiscoveryScanWorkflow
from orch.workflows.emergency_stop import EmergencyStop
from orch.workflows.health_check import HealthCheck
from orch.workflows.integrate_real_data import IntegrateRealData
from orch.workflows.restart_discovery import RestartDiscoverySystem
from orch.workflows.resume_trading import ResumeTrading
from orch.workflows.reviews import StrategicReview, TacticalReview
from orch.workflows.system_state import SystemStateWorkflow
from orch.workflows.trading_cycle import TradingCycle
from orch.workflows.trading_engine import TradingEngine
from orch.workflows.validate_algorithms import ValidateAlgorithms

log = logging.getLogger("orch.worker")

ALL_WORKFLOWS = (
    SystemStateWorkflow,
    RestartDiscoverySystem,
    DiscoveryScanWorkflow,
    ValidateAlgorithms,
    IntegrateRealData,
    EmergencyStop,
    ResumeTrading,
    HealthCheck,
    TacticalReview,
    StrategicReview,
    TradingEngine,
    TradingCycle,
)

# Modules that hold no workflow state: shared with the sandbox instead of re-imported per run.
SANDBOX_PASSTHROUGH = ("orch.contracts", "orch.activities", "orch.agents", "orch.market", "pydantic", "numpy")


def workflow_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*SANDBOX_PASSTHROUGH)
    )


def build_workers(
    client: Client,
    settings: Settings,
    *,
    market: MarketDataSource | None = None,
    queues: Sequence[str] = ALL_QUEUES,
    extra_workflows: Sequence[type] = (),
    extra_activities: Sequence[Callable[..., Any]] = (),
    resources: ResourcePool | None = None,
    # The trading cycle's clock for market hours (epoch seconds); tests pin a weekday or a weekend.
    market_clock: Callable[[], float] | None = None,
) -> list[Worker]:
    # One resource pool per worker process (HTTP connections, per-API rate limits, TTL cache, statistics).
    resources = resources or ResourcePool.from_settings(settings)
    # The worker's market: SystemState's data sources, looked up at activity time, so a switch by
    # `orch integrate-real-data` reaches every activity without a restart. A test may pin another.
    system_state = SystemStateClient(client)

    async def data_sources() -> DataSources:
        return (await system_state.snapshot()).config.data_sources

    markets = ConfiguredMarket(data_sources, settings, resources)
    market = market or markets
    # One link to orch hft per worker process, shared by the data, emergency, health and review activities.
    hft = HftLink(settings)
    data = DataActivities(client, settings, resources, markets, hft)
    data_activities = [
        data.validate_connections,
        data.switch_data_sources,
        data.update_algorithms,
        data.test_data_flow,
        data.enable_trading,
        data.restore_configuration,
        data.resource_pool_stats,
    ]
    discovery = DiscoveryActivities(client, settings, market)
    system = SystemActivities(client)
    backtests = BacktestActivities(client, settings)
    # ValidateAlgorithms' light steps; its backtests run on orch-backtest.
    validation = [
        backtests.prepare_validation_data,
        backtests.analyse_performance,
        backtests.generate_recommendations,
    ]
    emergency = EmergencyActivities(client, settings, hft)
    health = HealthActivities(
        client, settings, market, hft, resource_pools=resources.health_figures, clock=market_clock
    )
    reviews = ReviewActivities(client, settings, market, hft)
    cycle = (
        CycleActivities(client, settings, market, clock=market_clock)
        if market_clock is not None
        else CycleActivities(client, settings, market)
    )
    emergency_activities = [
        emergency.record_incident,
        emergency.kill_hft,
        emergency.settle_hft,
        emergency.signal_engines,
        emergency.pause_schedules,
        emergency.resume_schedules,
        emergency.check_emergency,
        emergency.resume_hft,
        emergency.resolve_emergency,
    ]
    health_activities = [
        health.check_temporal,
        health.check_task_queues,
        health.check_hft,
        health.check_data_sources,
        health.check_schedules,
        health.check_agents,
    ]
    review_activities = [
        reviews.load_review_context,
        reviews.assess_market_conditions,
        reviews.assess_portfolio_risk,
        reviews.optimise_portfolio,
        reviews.review_strategy_performance,
        reviews.record_agent_outcomes,
    ]
    discovery_activities = [
        discovery.validate_strategy,
        discovery.rank_universe,
        discovery.publish_candidates,
        discovery.stop_discovery_workers,
        discovery.clear_job_queue,
        discovery.restart_discovery_service,
        discovery.validate_discovery,
        discovery.update_configuration,
        discovery.restore_discovery,
    ]
    per_queue = {
        COMMANDS_QUEUE: dict(
            workflows=[
                SystemStateWorkflow,
                RestartDiscoverySystem,
                TacticalReview,
                StrategicReview,
                TradingEngine,
                TradingCycle,
                ValidateAlgorithms,
                IntegrateRealData,
                *extra_workflows,
            ],
            activities=[
                *discovery_activities,
                system.find_closed_workflows,
                system.acquire_command_slot,  # the commands' local activity
                *review_activities,
                *cycle_activities(cycle),
                *validation,
                *data_activities,
                *extra_activities,
            ],
            max_concurrent_activities=settings.max_concurrent_activities,
        ),
        CRITICAL_QUEUE: dict(
            workflows=[EmergencyStop, ResumeTrading, HealthCheck],
            activities=[system.find_closed_workflows, *emergency_activities, *health_activities],
            max_concurrent_activities=settings.critical_max_concurrent_activities,
        ),
        DISCOVERY_QUEUE: dict(
            workflows=[DiscoveryScanWorkflow],
            activities=discovery_activities,
            max_concurrent_activities=max(2, settings.max_concurrent_activities // 10),
        ),
        BACKTEST_QUEUE: dict(
            workflows=[],
            # CPU-bound: each backtest runs in a process of its own, one per core by default.
            activities=[backtests.run_backtest, backtests.optimise_split],
            max_concurrent_activities=settings.backtest_concurrency or os.cpu_count() or 1,
        ),
    }
    workers = []
    for queue in queues:
        spec = per_queue[queue]
        if not spec["workflows"] and not spec["activities"]:
            continue
        workers.append(
            Worker(
                client,
                task_queue=queue,
                workflows=spec["workflows"],
                activities=spec["activities"],
                max_concurrent_activities=spec["max_concurrent_activities"],
                workflow_runner=workflow_runner(),
            )
        )
    return workers


@contextlib.asynccontextmanager
async def running(workers: Sequence[Worker]) -> AsyncIterator[None]:
    """Poll with all `workers` inside the block; shut them all down on the way out."""
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker)
        yield


async def run_workers(settings: Settings | None = None, queues: Sequence[str] = ALL_QUEUES) -> None:
    """Connect, bootstrap the long-lived workflows, and poll until SIGINT or SIGTERM."""
    settings = settings or get_settings()
    client = await connect(settings)
    resources = ResourcePool.from_settings(settings)
    workers = build_workers(client, settings, queues=queues, resources=resources)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running(workers):
        if COMMANDS_QUEUE in queues:
            snapshot = await bootstrap(client, settings)
            log.info("SystemState ready: active strategy %s", snapshot.config.active_strategy)
        log.info("worker polling %s on %s", ", ".join(queues), settings.temporal_address)
        await stop.wait()
    await resources.aclose()
    log.info("worker stopped")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run_workers())


if __name__ == "__main__":
    main()
