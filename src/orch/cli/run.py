"""How an `orch` command ends: its exit code, its error on stderr, and the process's exit.

Exit codes: 0 success, 1 the workflow failed (or was refused), 2 bad input.

Kept free of Temporal and rich at import time: every command module imports this one, and `orch
--no-wait` stays quick.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, NoReturn

import typer

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
EXIT_INTERRUPTED = 130


class CliError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def run_to_exit(coroutine: Awaitable[object]) -> NoReturn:
    """Run one command's coroutine, then end the process with its exit code."""
    code = EXIT_OK
    try:
        asyncio.run(coroutine)  # type: ignore[arg-type]
    except CliError as err:
        code = report_failure(str(err), err.exit_code)
    except KeyboardInterrupt:
        code = report_failure(
            "interrupted (the workflow keeps running; follow it with `orch watch ID`)", EXIT_INTERRUPTED
        )
    except typer.Exit as done:
        code = done.exit_code
    finish(code)


def finish(code: int) -> NoReturn:
    """End the `orch` process at once when the command is done, skipping interpreter teardown: there the
    Temporal client's Rust threads can abort the process (SIGABRT, "PyGILState_Release") after the
    command already succeeded (temporalio/sdk-python#300). Called in-process (a test's CliRunner), it
    only raises the exit code."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if Path(sys.argv[0]).name == "orch" or (spec is not None and spec.name == "orch.cli.main"):
        from orch.telemetry import flush_tracing

        flush_tracing()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise typer.Exit(code)


def report_failure(message: str, code: int) -> int:
    from orch.cli.render import error_console

    error_console.print(f"[red]error:[/red] {message}")
    return code


def fail(message: str, code: int) -> NoReturn:
    raise typer.Exit(report_failure(message, code))


def validation_message(err: Any) -> str:
    """A pydantic ValidationError as one line: each field's path and what is wrong with it."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
