"""What `orch` shows, as a user reads it: candidates before the first scan, tables at 80 columns, the
progress bar in a terminal. Each runs the real `orch` process against a real Temporal server."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import select
import subprocess
import sys
import time

from rich.console import Console
from rich.table import Table

from orch.cli import render
from orch.contracts.names import DISCOVERY_SCHEDULE_ID
from tests.conftest import orch_env

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
BAR = re.compile(r"━.*?(\d+)%")
RESTART_STEPS = 5


async def test_candidates_before_the_first_scan_say_when_the_next_is_due(stack, orch, client):
    description = await client.get_schedule_handle(DISCOVERY_SCHEDULE_ID).describe()
    [next_scan, *_] = description.info.next_action_times

    shown = await orch("discovery", "candidates")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "No discovery scan has published candidates yet" in shown.stdout
    assert f"next scan is due at {next_scan:%Y-%m-%d %H:%M:%S} UTC" in shown.stdout

    as_json = await orch("discovery", "candidates", "--json")
    assert as_json.returncode == 0, as_json.stdout + as_json.stderr
    answer = json.loads(as_json.stdout)
    assert answer["candidates"] is None and answer["schedule_paused"] is False
    assert answer["next_scan_at"] == next_scan.isoformat()


async def test_list_never_cuts_a_workflow_id_at_80_columns(stack, settings):
    env = orch_env(settings) | {"COLUMNS": "80"}
    started = []
    for strategy in ("legacy_v0", "hybrid_v1"):
        run = await _orch(env, "restart-discovery", "--strategy", strategy, "--json")
        assert run.returncode == 0, run.stdout + run.stderr
        started.append(json.loads(run.stdout)["progress"]["workflow_id"])

    listed = await _orch(env, "list")
    assert listed.returncode == 0, listed.stderr
    for workflow_id in started:
        assert any(workflow_id in line for line in listed.stdout.splitlines()), (
            f"{workflow_id} is not whole on one line of:\n{listed.stdout}"
        )


def test_an_id_column_stays_whole_in_a_crowded_table(monkeypatch):
    """Every table `orch` draws goes through render.show: ids stay whole, other long values fold."""
    out = io.StringIO()
    monkeypatch.setattr(render, "console", Console(file=out, width=80))
    order_id = "trading-engine-paper-1-cycle-1234-plan-AAPL-trend-entry-000017"
    long_text = "a reason long enough that it cannot fit in what is left of eighty columns at all"
    table = Table("client_order_id", "symbol", "side", "status", "source")
    table.add_row(order_id, "BTC/USD", "buy", "partially_filled", long_text)
    render.show(table, ids=("client_order_id", "symbol"))
    text = out.getvalue()
    assert any(order_id in line for line in text.splitlines()), text
    assert "…" not in text
    assert all(word in text for word in long_text.split()), f"a value was cut:\n{text}"


async def test_the_progress_bar_moves_with_the_steps(stack, settings):
    """In a terminal, the bar drawn under each step's line already counts that step."""
    output = await asyncio.to_thread(
        _run_in_terminal, orch_env(settings), "restart-discovery", "--strategy", "legacy_v0"
    )
    frames = [ANSI.sub("", part).strip() for part in re.split(r"[\r\n]", output)]
    frames = [frame for frame in frames if frame]
    steps_done = 0
    bar_after_step: list[tuple[str, int]] = []
    for frame in frames:
        if frame.startswith("✓"):
            steps_done += 1
            bar_after_step.append((frame, -1))
        elif (match := BAR.search(frame)) and bar_after_step and bar_after_step[-1][1] == -1:
            bar_after_step[-1] = (bar_after_step[-1][0], int(match.group(1)))
    assert steps_done == RESTART_STEPS, "\n".join(frames)
    for done, (line, percent) in enumerate(bar_after_step, start=1):
        assert percent >= 100 * done // RESTART_STEPS, (
            f"under {line!r} (step {done} of {RESTART_STEPS}) the bar shows {percent}%:\n" + "\n".join(frames)
        )


async def test_the_live_view_shows_a_skipped_step_in_its_place(stack, orch, tmp_path):
    """A skipped step is neither done nor failed: the live view says it was skipped, and why."""
    done = await orch(
        "validate-algorithms",
        "--strategies",
        "legacy_v0",
        "--source",
        "sample",
        "--no-optimise",
        "--report-dir",
        str(tmp_path / "reports"),
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    marks = ("✓", "✗", render.SKIPPED_MARK)
    steps = [
        line.strip() for line in done.stdout.splitlines() if line.startswith(tuple(f"  {m}" for m in marks))
    ]
    assert steps == [
        "✓ preparing_validation_data",
        "✓ running_backtests",
        "✓ analysing_performance",
        f"{render.SKIPPED_MARK} optimising_parameters: skipped: optimisation off"
        " (the defaults are recommended)",
        "✓ generating_recommendations",
    ], done.stdout


async def _orch(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "orch.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _run_in_terminal(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    """Run `orch` with a pseudo-terminal as its output (rich draws live bars only to a terminal)."""
    controller, terminal = os.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "orch.cli.main", *args],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=env | {"TERM": "xterm", "COLUMNS": "120"},
    )
    os.close(terminal)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            readable, _, _ = select.select([controller], [], [], 0.5)
            if not readable:
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        process.wait(max(deadline - time.monotonic(), 1))
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
    output = b"".join(chunks).decode(errors="replace")
    assert process.returncode == 0, output
    return output
