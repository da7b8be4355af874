"""Everything `orch` draws: the live progress bar, result panels and tables (rich)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress import (
    Progress as Bar,
)
from rich.segment import Segments
from rich.table import Table

from orch.contracts.commands import CommandStatus, Progress, StepReport

console = Console()
error_console = Console(stderr=True)

# The narrowest a column that folds its long values is made beside wide id columns.
FOLDED_MIN_WIDTH = 10
# Wide enough to measure any table's own minimum width (rich caps a measurement at the width it is given).
UNBOUNDED_WIDTH = 100_000

# A skipped step's mark in the live view: neither done (✓) nor failed (✗).
SKIPPED_MARK = "\N{EN DASH}"

STATUS_STYLE = {
    "completed": "green",
    "failed": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "queued": "dim",
}


def _describe(progress: Progress) -> str:
    step = progress.current_step or progress.status.value
    return f"{progress.command_type} [bold]{step}[/bold]"


async def live_progress(
    read: Callable[[], Awaitable[Progress]],
    read_steps: Callable[[], Awaitable[list[StepReport]]],
    poll_seconds: float,
) -> Progress:
    """A progress bar that follows `read()` until the command finishes, with a line for each step that
    ends: completed, failed or skipped (`progress` does not list a skipped one: its report says so)."""
    with Bar(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task("starting", total=1.0)
        shown: set[str] = set()
        recorded_at = None
        step_order: list[str] = []
        skipped: dict[str, str] = {}
        while True:
            progress = await read()
            # The bar first, redrawn now: each line printed below repeats the last drawn bar beneath it,
            # and the refresh thread rarely runs between a poll's lines, so they sat under the previous
            # poll's bar (often "queued 0%") until the command ended.
            bar.update(task, completed=progress.progress, description=_describe(progress), refresh=True)
            # The reports change only when the run records something, which moves its timestamp.
            if progress.timestamp != recorded_at:
                recorded_at = progress.timestamp
                reports = await read_steps()
                step_order = [report.name for report in reports]
                skipped = {r.name: r.summary for r in reports if r.status is CommandStatus.CANCELLED}
            lines = {step: f"  [green]✓[/green] {step}" for step in progress.details.steps_completed}
            lines |= {step: f"  [red]✗[/red] {step}" for step in progress.details.steps_failed}
            lines |= {
                step: f"  [yellow]{SKIPPED_MARK}[/yellow] {step}: {summary}"
                for step, summary in skipped.items()
            }
            new = [step for step in lines if step not in shown]
            for step in sorted(
                new, key=lambda s: step_order.index(s) if s in step_order else len(step_order)
            ):
                shown.add(step)
                bar.console.print(lines[step])
            if progress.status.finished:
                return progress
            await asyncio.sleep(poll_seconds)


def outcome(progress: Progress, result: dict[str, Any] | None, error: str | None) -> None:
    style = STATUS_STYLE.get(progress.status.value, "")
    console.print(
        f"[{style}]{progress.command_type} {progress.status.value}[/{style}] ({progress.workflow_id})"
    )
    if result:
        for key in ("previous_strategy", "active_strategy", "validation_scan_id", "candidates_found"):
            if result.get(key) is not None:
                console.print(f"  {key.replace('_', ' ')}: {result[key]}")
        steps = Table("step", "status", "attempts", "summary / error", box=None, pad_edge=False)
        for step in result.get("steps", []):
            s = step["status"]
            steps.add_row(
                step["name"],
                f"[{STATUS_STYLE.get(s, '')}]{s}[/]",
                str(step["attempts"]),
                step.get("error") or step.get("summary") or "",
            )
        show(steps, ids=("step",))
        for line in result.get("compensation", []):
            console.print(f"  compensation: {line}")
    if error:
        error_console.print(f"[red]error:[/red] {error}")


def progress_panel(progress: Progress, temporal_status: str) -> None:
    style = STATUS_STYLE.get(progress.status.value, "")
    console.print(f"[bold]{progress.workflow_id}[/bold]  {progress.command_type}")
    console.print(f"  status: [{style}]{progress.status.value}[/]  (Temporal: {temporal_status})")
    console.print(f"  progress: {progress.progress:.0%}  current step: {progress.current_step or '-'}")
    console.print(f"  updated: {progress.timestamp.isoformat()}")
    for label, items in (
        ("completed", progress.details.steps_completed),
        ("failed", progress.details.steps_failed),
        ("errors", progress.details.error_messages),
    ):
        if items:
            console.print(f"  {label}: {', '.join(items) if label != 'errors' else ''}")
            if label == "errors":
                for message in items:
                    console.print(f"    - {message}")


def table(
    title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, ids: Collection[str] = ()
) -> None:
    """A table of plain values (None shows as "-"); `ids` names the columns holding ids (see `show`)."""
    out = Table(*columns, title=title)
    for row in rows:
        out.add_row(*(str(v) if v is not None else "-" for v in row))
    show(out, ids=ids)


def show(out: Table, *, ids: Collection[str] = ()) -> None:
    """Print a table without cutting any value: users copy ids from it into `orch status` and `temporal`.

    The columns named in `ids` keep each value on one line; the other columns fold a long value onto
    more lines instead of ending it with "…". rich fits a table too wide for the terminal (or for its
    80 columns when output is piped) by shrinking every column, ids too, and crops what is left: such a
    table is laid out as wide as its ids and a narrow floor for the other columns need, uncropped.
    """
    folding = [column for column in out.columns if column.header not in ids]
    for column in out.columns:
        column.no_wrap = column.header in ids
    for column in folding:
        column.overflow, column.max_width = "fold", FOLDED_MIN_WIDTH
    needed = Measurement.get(console, console.options.update_width(UNBOUNDED_WIDTH), out).minimum
    for column in folding:
        column.max_width = None
    if needed <= console.width:
        console.print(out)
    else:
        console.print(Segments(console.render(out, console.options.update_width(needed))), crop=False)
