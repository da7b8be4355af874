"""Everything `orch` draws: the live progress bar, result panels and tables (rich)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from rich.console import Console
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
from rich.table import Table

from orch.contracts.commands import Progress

console = Console()
error_console = Console(stderr=True)

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


async def live_progress(read: Callable[[], Awaitable[Progress]], poll_seconds: float) -> Progress:
    """A progress bar that follows `read()` until the command finishes."""
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
        seen_steps: set[str] = set()
        while True:
            progress = await read()
            for step in progress.details.steps_completed:
                if step not in seen_steps:
                    seen_steps.add(step)
                    bar.console.print(f"  [green]✓[/green] {step}")
            for step in progress.details.steps_failed:
                if step not in seen_steps:
                    seen_steps.add(step)
                    bar.console.print(f"  [red]✗[/red] {step}")
            bar.update(task, completed=progress.progress, description=_describe(progress))
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
        console.print(steps)
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


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    out = Table(*columns, title=title)
    for row in rows:
        out.add_row(*(str(v) if v is not None else "-" for v in row))
    console.print(out)
