"""`orch up` as a user runs it: a real process starting the real Temporal dev server, worker and
`orch hft`, each on a free port under a temporary ORCH_HOME."""

from __future__ import annotations

import asyncio
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orch.embedded import free_port

READY_TIMEOUT_SECONDS = 90
LINE = "orch is up."


@pytest.fixture
def up_env(tmp_path: Path) -> dict[str, str]:
    """A stack of its own: ports nobody uses, a fresh ORCH_HOME, and a PATH without the virtualenv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_") and k != "VIRTUAL_ENV"}
    env.update(
        PATH="/usr/bin:/bin",
        ORCH_HOME=str(tmp_path / "home"),
        ORCH_TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}",
        ORCH_UI_PORT=str(free_port()),
        ORCH_HFT_PORT=str(free_port()),
        ORCH_TRADING_AUTOSTART="false",
        COLUMNS="200",
    )
    return env


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port another process (here: this test) is listening on, as a first `orch up`'s hft would."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def _up(env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "orch.cli.main", "up", "--ready-timeout", str(READY_TIMEOUT_SECONDS)],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _processes_of(home: str) -> list[str]:
    """Live processes started for this ORCH_HOME (its children get it in their environment)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if f"ORCH_HOME={home}".encode() in environ and state != "Z":
            found.append(f"{entry.name}: {command}")
    return found


def _assert_nothing_left(home: str) -> None:
    deadline = time.monotonic() + 30
    while (left := _processes_of(home)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"children of orch up still running: {left}"


def test_a_child_that_cannot_start_fails_orch_up_with_its_own_error(up_env, held_port, tmp_path):
    env = up_env | {"ORCH_HFT_PORT": str(held_port)}
    process = _up(env, tmp_path)
    try:
        output, _ = process.communicate(timeout=READY_TIMEOUT_SECONDS + 60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1, output
    assert LINE not in output
    assert "hft" in output and "address already in use" in output, output
    _assert_nothing_left(env["ORCH_HOME"])


def test_orch_up_is_up_once_every_child_answers_and_stops_them_all(up_env, tmp_path):
    process = _up(up_env, tmp_path)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    output = []
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS + 60
        while not any("Ctrl-C stops everything" in line for line in output):
            assert process.poll() is None, "orch up ended before it was up:\n" + "".join(output)
            assert time.monotonic() < deadline, "orch up never said it was up:\n" + "".join(output)
            try:
                output.append(lines.get(timeout=0.5))
            except queue.Empty:
                pass
        banner = "".join(output)
        assert LINE in banner
        suggested = [
            line.split()[0] for line in banner.split("Try, in another terminal:")[1].splitlines()[1:6]
        ]
        for program in suggested:
            runnable = shutil.which(program, path=up_env["PATH"]) or (
                os.access(tmp_path / program, os.X_OK)
                if not os.path.isabs(program)
                else os.access(program, os.X_OK)
            )
            assert runnable, f"the banner suggests {program!r}, which a fresh shell cannot run:\n{banner}"
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, "".join(output)
    _assert_nothing_left(up_env["ORCH_HOME"])


async def test_a_second_orch_up_whose_hft_port_is_taken_is_not_up(
    stack, settings, up_env, held_port, tmp_path
):
    """The issue's case: Temporal and SystemState already answer (a first `orch up`), so only the new
    hft child's failure tells; before, this printed "orch is up" and exited 0."""
    env = up_env | {
        "ORCH_TEMPORAL_ADDRESS": settings.temporal_address,
        "ORCH_NAMESPACE": settings.namespace,
        "ORCH_HFT_PORT": str(held_port),
    }
    process = _up(env, tmp_path)
    try:
        output, _ = await asyncio.to_thread(process.communicate, timeout=READY_TIMEOUT_SECONDS + 60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1, output
    assert "Using the Temporal server already" in output
    assert LINE not in output
    assert "address already in use" in output, output
    _assert_nothing_left(env["ORCH_HOME"])
