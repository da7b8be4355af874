"""Run one backtest job in a process of its own, with live progress and a cancel that works.

Why a process, and one per job:

- backtrader is pure Python, so two backtests on two threads share one core through the GIL; only
  processes run them side by side (the `orch-backtest` worker runs as many at once as cores);
- a cancel must stop the CPU work, not just the coroutine waiting on it. The child checks a shared
  cancel flag on every bar and stops within a bar; if it does not answer within a grace period
  (stuck in a strategy's numpy call, say) it is terminated. A `ProcessPoolExecutor` cannot do
  that: it has no per-task cancel once a task runs, and terminating one of its workers breaks the
  whole pool for every other backtest;
- a process that ends takes its memory with it, so a worker that runs backtests all day does not
  grow.

Processes start from a fork server that has the backtest modules (backtrader, numpy, the
strategies) preloaded, so a new one costs a fork of a warm interpreter, a few milliseconds, and is
safe in a worker that runs threads (a plain fork of the worker would copy its Temporal threads'
locks mid-flight). Where there is no fork server (Windows, macOS spawn default) it falls back to
spawn.

As with any multiprocessing start method but fork, the parent's main module is imported on the
child's side (here once, in the fork server: `_forkserver_main`): a script that runs backtests must
keep its work under `if __name__ == "__main__":` (the `orch` command, `orch worker` and pytest do).

Progress (bars done) goes through a shared integer the parent reads whenever it likes; the result
comes back through a pipe.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing import process as parent_process
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from typing import Any

__all__ = ["JobDied", "JobFailed", "run_job"]

# The fork server imports these once; every job process is a fork of it. `_forkserver_main` imports
# the parent's main module there (see its docstring), so no job process imports it again.
PRELOAD = ["orch.backtest._forkserver_main", "orch.backtest.jobs"]
MAIN_PATH_VARIABLE = "ORCH_BACKTEST_PARENT_MAIN"  # read by _forkserver_main
_context: BaseContext | None = None
_context_lock = threading.Lock()


class JobFailed(Exception):
    """The job raised: its error type, message, and whether a retry could help."""

    def __init__(self, error_type: str, message: str, non_retryable: bool) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.non_retryable = non_retryable


class JobDied(RuntimeError):
    """The process ended without answering (killed, out of memory): worth a retry."""


def context() -> BaseContext:
    global _context
    with _context_lock:
        if _context is None:
            if "forkserver" in multiprocessing.get_all_start_methods():
                main_path = _main_path()
                if main_path:
                    os.environ[MAIN_PATH_VARIABLE] = f"{os.getpid()}:{main_path}"
                forkserver = multiprocessing.get_context("forkserver")
                forkserver.set_forkserver_preload(PRELOAD)
                _context = forkserver
            else:  # pragma: no cover - platforms without fork
                _context = multiprocessing.get_context("spawn")
        return _context


def _main_path() -> str | None:
    """The parent's main module as a job process would import it by path (None: by name, or none)."""
    main = sys.modules["__main__"]
    if getattr(main.__spec__, "name", None) is not None:
        return None  # `python -m`: children import it by name, and skip a package's __main__
    path = getattr(main, "__file__", None)
    if path is None:
        return None
    if not os.path.isabs(path) and parent_process.ORIGINAL_DIR is not None:
        path = os.path.join(parent_process.ORIGINAL_DIR, path)
    return os.path.normpath(path)


def _classify(err: BaseException) -> tuple[str, bool]:
    """(error type, non-retryable) for an error raised by a job."""
    from orch.agents.discovery import UnknownStrategyError
    from orch.backtest.data import BacktestInputError
    from orch.contracts.errors import ErrorType
    from orch.market.csv import DataFileError

    if isinstance(err, UnknownStrategyError):
        return ErrorType.UNKNOWN_STRATEGY, True
    if isinstance(err, BacktestInputError | DataFileError):
        return ErrorType.INVALID_INPUT, True
    return type(err).__name__, False


def _child(
    job: str,
    request: Any,
    progress: Any,
    cancel: Any,
    conn: Connection,
    bar_delay_seconds: float,
    environment: dict[str, str],
) -> None:
    # The fork server's environment is the worker's at its start; this is the worker's now.
    os.environ.update(environment)
    from orch.backtest import jobs
    from orch.backtest.engine import BacktestCancelled

    def on_bar(done: int) -> None:
        progress.value = done
        if cancel.is_set():
            raise BacktestCancelled(done)
        if bar_delay_seconds:
            time.sleep(bar_delay_seconds)  # pacing, so tests can watch a backtest mid-way

    try:
        result = getattr(jobs, job)(request, on_bar)
    except BacktestCancelled as stopped:
        conn.send(("cancelled", stopped.bars_done))
    except BaseException as err:
        error_type, non_retryable = _classify(err)
        conn.send(("error", (error_type, f"{err}", non_retryable)))
    else:
        conn.send(("ok", result))
    finally:
        conn.close()


async def run_job(
    job: str,
    request: Any,
    *,
    on_progress: Callable[[int, int | None], None],
    poll_seconds: float = 0.2,
    cancel_grace_seconds: float = 5.0,
    bar_delay_seconds: float = 0.0,
    environment: dict[str, str] | None = None,
) -> Any:
    """Run `orch.backtest.jobs.<job>(request, on_bar)` in a new process and return its result.

    `environment` is set in the child before the job runs: what it needs of the worker's configuration
    that the request does not carry (a data source's credentials never travel in a request).

    `on_progress(bars_done, pid)` is called every `poll_seconds`. Cancelling the awaiting task
    sets the child's cancel flag, waits up to `cancel_grace_seconds` for it to stop, terminates
    it otherwise, and re-raises: when this returns or raises, the process is gone.
    """
    ctx = context()
    progress = ctx.Value("q", 0, lock=False)
    cancel = ctx.Event()
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(  # type: ignore[attr-defined]
        target=_child,
        args=(job, request, progress, cancel, sender, bar_delay_seconds, environment or {}),
        name=f"orch-backtest-{job}",
        daemon=True,
    )
    try:
        # Off the event loop: the first start launches the fork server, which imports backtrader.
        await asyncio.to_thread(process.start)
        sender.close()
        # Woken the moment the result arrives or the process ends, not at the next progress tick.
        wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        watched = (receiver.fileno(), process.sentinel)
        for fd in watched:
            loop.add_reader(fd, wake.set)
        try:
            while True:
                if receiver.poll():
                    kind, payload = receiver.recv()
                    break
                if not process.is_alive():
                    if receiver.poll():
                        continue
                    raise JobDied(
                        f"backtest process {process.pid} ended (exit code {process.exitcode}) "
                        "without a result"
                    )
                on_progress(progress.value, process.pid)
                wake.clear()
                try:
                    await asyncio.wait_for(wake.wait(), poll_seconds)
                except TimeoutError:
                    pass
        finally:
            for fd in watched:
                loop.remove_reader(fd)
    except BaseException:
        cancel.set()
        await asyncio.to_thread(_stop, process, cancel_grace_seconds)
        raise
    finally:
        receiver.close()
    await asyncio.to_thread(_stop, process, cancel_grace_seconds)
    on_progress(progress.value, process.pid)
    if kind == "ok":
        return payload
    if kind == "cancelled":
        raise JobFailed("Cancelled", f"backtest stopped after {payload} bars", non_retryable=False)
    error_type, message, non_retryable = payload
    raise JobFailed(error_type, message, non_retryable)


def _stop(process: Any, grace_seconds: float) -> None:
    """Wait for the process to end; terminate, then kill, one that does not."""
    if process.pid is None:
        return  # never started
    process.join(grace_seconds)
    if process.is_alive():
        process.terminate()
        process.join(2.0)
    if process.is_alive():  # pragma: no cover - SIGTERM ignored
        process.kill()
        process.join()
