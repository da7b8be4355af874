"""`orch status`, `watch`, `list` and `state`: reading the system's workflows without changing them."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from orch.cli.options import JsonFlag
from orch.cli.run import CliError, run_to_exit
from orch.cli.values import LISTED


def status(workflow_id: str, as_json: JsonFlag = False) -> None:
    """The progress of any command workflow."""
    run_to_exit(_status(workflow_id, as_json))


async def _status(workflow_id: str, as_json: bool) -> None:
    from orch.cli.commands import connect_client, read_progress
    from orch.cli.render import progress_panel

    client = await connect_client()
    handle = client.get_workflow_handle(workflow_id)
    try:
        description = await handle.describe()
        progress = await read_progress(handle)
    except Exception as err:
        raise CliError(f"no command workflow {workflow_id!r}: {err}") from err
    temporal_status = description.status.name if description.status else "UNKNOWN"
    if as_json:
        print(json.dumps(progress.model_dump(mode="json") | {"temporal_status": temporal_status}))
    else:
        progress_panel(progress, temporal_status)
    if progress.status.value in ("failed", "cancelled"):
        raise typer.Exit(1)


def watch(workflow_id: str, as_json: JsonFlag = False) -> None:
    """Follow any command workflow live until it finishes."""
    run_to_exit(_watch(workflow_id, as_json))


async def _watch(workflow_id: str, as_json: bool) -> None:
    from orch.cli.commands import connect_client, follow

    client = await connect_client()
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except Exception as err:
        raise CliError(f"no command workflow {workflow_id!r}: {err}") from err
    code = await follow(client, workflow_id, as_json=as_json)
    if code:
        raise typer.Exit(code)


def list_command(
    limit: Annotated[int, typer.Option(parser=LISTED, help="How many recent commands.")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """Recent command workflows with their status and progress."""
    run_to_exit(_list(limit, as_json))


async def _list(limit: int, as_json: bool) -> None:
    from orch.cli.commands import connect_client, list_commands
    from orch.cli.render import table

    rows = await list_commands(await connect_client(), limit)
    if as_json:
        print(json.dumps(rows))
        return
    table(
        "Recent commands",
        ["workflow id", "type", "status", "progress", "current step", "started"],
        [
            (
                r["workflow_id"],
                r["type"],
                r["status"],
                f"{r['progress']:.0%}",
                r["current_step"],
                r["started"],
            )
            for r in rows
        ],
        ids=("workflow id",),
    )


def state(as_json: JsonFlag = False) -> None:
    """The live configuration held by SystemState, and the commands holding slots."""
    run_to_exit(_state(as_json))


async def _state(as_json: bool) -> None:
    from orch.cli.commands import connect_client, system_state
    from orch.cli.render import console

    snapshot = await system_state(await connect_client())
    if as_json:
        print(snapshot.model_dump_json(exclude={"latest_candidates"}))
        return
    config = snapshot.config
    known = ", ".join(snapshot.known_strategies)
    console.print(f"active strategy: [bold]{config.active_strategy}[/bold]  (known: {known})")
    console.print(f"data sources: {config.data_sources.primary} -> {config.data_sources.fallbacks or '-'}")
    console.print(
        f"trading mode: {config.trading_mode.value}  emergency level: {config.emergency_level.value}"
    )
    console.print(
        f"command slots: {len(snapshot.running_commands)}/{config.max_concurrent_workflows} in use, "
        f"{len(snapshot.waiting_commands)} waiting"
    )
    for change in snapshot.recent_changes[-5:]:
        console.print(
            f"  {change.at:%Y-%m-%d %H:%M:%S} {change.field}: {change.old} -> {change.new} by {change.by}"
        )
    open_incidents = [i for i in snapshot.incidents if i.resolved_at is None]
    if open_incidents:
        console.print(f"[red]open incidents ({len(open_incidents)}), until `orch resume --confirm`:[/red]")
    for incident in open_incidents:
        console.print(
            f"  {incident.at:%Y-%m-%d %H:%M:%S} {incident.incident_id}: {incident.level.value} "
            f"by {incident.requested_by}: {incident.reason}"
        )
