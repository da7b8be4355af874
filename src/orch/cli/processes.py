"""`orch up` and `orch worker`: the processes that run the system on this machine."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from orch.cli.run import EXIT_BAD_INPUT, fail
from orch.cli.values import seconds


def up(
    worker: Annotated[bool, typer.Option(help="Also run the orch worker.")] = True,
    hft: Annotated[bool, typer.Option(help="Also run the execution process (`orch hft`).")] = True,
    ready_timeout: Annotated[
        float,
        typer.Option(
            parser=seconds(), help="Seconds each child may take to start answering before orch up gives up."
        ),
    ] = 120,
) -> None:
    """Run everything on this machine: Temporal (SQLite, UI on :8233), the worker, `orch hft`."""
    from orch.cli.up import run_stack

    raise typer.Exit(run_stack(with_worker=worker, with_hft=hft, ready_timeout=ready_timeout))


def worker(
    queue: Annotated[list[str] | None, typer.Option(help="Task queues to poll (default: all).")] = None,
) -> None:
    """Run a worker for the orch task queues (any number of replicas may run)."""
    import logging

    from orch.workers.worker import ALL_QUEUES, run_workers

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    unknown = set(queue or ()) - set(ALL_QUEUES)
    if unknown:
        fail(
            f"unknown task queue(s) {', '.join(sorted(unknown))}; known: {', '.join(ALL_QUEUES)}",
            EXIT_BAD_INPUT,
        )
    asyncio.run(run_workers(queues=tuple(queue or ALL_QUEUES)))
