"""`orch`: start, watch, signal and query the system's workflows.

Heavy imports (temporalio, the worker) happen inside commands so `orch --no-wait` stays quick.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from orch.cli.agents import agents_app
from orch.cli.cycle import cycle_app
from orch.cli.data import integrate_real_data
from orch.cli.emergency import emergency_stop, health_check, resume
from orch.cli.hft import hft_app
from orch.cli.options import JsonFlag, MaxRetries, NoWait, WorkflowTimeout
from orch.cli.validate import validate_algorithms
from orch.cli.values import LISTED, seconds

app = typer.Typer(help="Durable orchestration for the trading system, on Temporal.", no_args_is_help=True)
discovery_app = typer.Typer(help="The discovery system: candidates and strategies.", no_args_is_help=True)
app.add_typer(discovery_app, name="discovery")


def _run(coroutine: Awaitable[object]) -> None:
    """Run one command's coroutine, then end the process with its exit code."""
    from orch.cli.commands import CliError

    code = 0
    try:
        asyncio.run(coroutine)  # type: ignore[arg-type]
    except CliError as err:
        code = _report_failure(str(err), err.exit_code)
    except KeyboardInterrupt:
        code = _report_failure(
            "interrupted (the workflow keeps running; follow it with `orch watch ID`)", 130
        )
    except typer.Exit as done:
        code = done.exit_code
    _finish(code)


def _finish(code: int) -> NoReturn:
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


def _report_failure(message: str, code: int) -> int:
    from orch.cli.render import error_console

    error_console.print(f"[red]error:[/red] {message}")
    return code


def _fail(message: str, code: int) -> NoReturn:
    raise typer.Exit(_report_failure(message, code))


async def _client() -> Any:
    from orch.cli.commands import CliError
    from orch.client import connect
    from orch.config import get_settings

    settings = get_settings()
    try:
        return await connect(settings)
    except RuntimeError as err:
        raise CliError(
            f"cannot reach Temporal at {settings.temporal_address} (namespace {settings.namespace}): {err}. "
            "Start the stack with `orch up`."
        ) from err


# ---- The embedded stack and the worker ------------------------------------------------------------


@app.command()
def up(
    worker: Annotated[bool, typer.Option(help="Also run the orch worker.")] = True,
    hft: Annotated[bool, typer.Option(help="Also run the execution process (`orch hft`).")] = True,
    ready_timeout: Annotated[
        float,
        typer.Option(
            parser=seconds(), help="Seconds each child may take to start answering before orch up gives up."
        ),
    ] = 120,
) -> None:
    """Run everything on this machine: Temporal (SQLite, UI on :8233), the worker, `orch hft`."""
    from orch.cli.up import run_stack

    raise typer.Exit(run_stack(with_worker=worker, with_hft=hft, ready_timeout=ready_timeout))


@app.command("worker")
def worker_command(
    queue: Annotated[list[str] | None, typer.Option(help="Task queues to poll (default: all).")] = None,
) -> None:
    """Run a worker for the orch task queues (any number of replicas may run)."""
    import logging

    from orch.workers.worker import ALL_QUEUES, run_workers

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    unknown = set(queue or ()) - set(ALL_QUEUES)
    if unknown:
        _fail(f"unknown task queue(s) {', '.join(sorted(unknown))}; known: {', '.join(ALL_QUEUES)}", 2)
    asyncio.run(run_workers(queues=tuple(queue or ALL_QUEUES)))


# ---- Commands -----------------------------------------------------------------------------------


@app.command("restart-discovery")
def restart_discovery(
    strategy: Annotated[str, typer.Option(help="Discovery strategy to switch to, e.g. hybrid_v1.")],
    force_stop: Annotated[
        bool, typer.Option(help="Cancel scans in flight instead of draining them.")
    ] = False,
    no_wait: NoWait = False,
    as_json: JsonFlag = False,
    max_retries: MaxRetries = None,
    timeout: WorkflowTimeout = None,
) -> None:
    """Restart the discovery system with a strategy (RestartDiscoverySystem)."""
    _run(_restart_discovery(strategy, force_stop, no_wait, as_json, max_retries, timeout))


async def _restart_discovery(
    strategy: str,
    force_stop: bool,
    no_wait: bool,
    as_json: bool,
    max_retries: int | None,
    timeout: float | None,
) -> None:
    from pydantic import ValidationError

    from orch.cli.commands import EXIT_BAD_INPUT, CliError, follow, start_command, system_state
    from orch.config import get_settings
    from orch.contracts.commands import CommandOptions, RestartDiscoveryInput
    from orch.contracts.names import RESTART_DISCOVERY

    settings = get_settings()
    try:
        request = RestartDiscoveryInput(
            strategy=strategy,
            force_stop=force_stop,
            options=CommandOptions(
                max_retries=settings.max_retries if max_retries is None else max_retries,
                workflow_timeout_seconds=settings.workflow_timeout_seconds if timeout is None else timeout,
            ),
        )
    except ValidationError as err:
        raise CliError(_validation_message(err), EXIT_BAD_INPUT) from err
    client = await _client()
    state = await system_state(client)
    if strategy not in state.known_strategies:
        raise CliError(
            f"unknown strategy {strategy!r}; known strategies: {', '.join(state.known_strategies)}",
            EXIT_BAD_INPUT,
        )
    running = next((c for c in state.running_commands if c.command_type == RESTART_DISCOVERY), None)
    if running is not None:
        raise CliError(
            f"{RESTART_DISCOVERY} {running.workflow_id} is already running; "
            f"watch it with: orch watch {running.workflow_id}"
        )
    handle = await start_command(
        client,
        RESTART_DISCOVERY,
        request,
        id_prefix="restart-discovery",
        summary=f"Restart discovery with {strategy}" + (" (force stop)" if force_stop else ""),
        timeout_seconds=request.options.workflow_timeout_seconds,
    )
    if no_wait:
        print(
            json.dumps({"workflow_id": handle.id, "run_id": handle.result_run_id}) if as_json else handle.id
        )
        return
    if not as_json:
        from orch.cli.render import console

        console.print(f"Started {RESTART_DISCOVERY} [bold]{handle.id}[/bold]")
    code = await follow(client, handle.id, as_json=as_json)
    if code:
        raise typer.Exit(code)


def _validation_message(err: Any) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())


# ---- Reading any command ------------------------------------------------------------------------


@app.command()
def status(workflow_id: str, as_json: JsonFlag = False) -> None:
    """The progress of any command workflow."""
    _run(_status(workflow_id, as_json))


async def _status(workflow_id: str, as_json: bool) -> None:
    from orch.cli.commands import CliError, read_progress
    from orch.cli.render import progress_panel

    client = await _client()
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


@app.command()
def watch(workflow_id: str, as_json: JsonFlag = False) -> None:
    """Follow any command workflow live until it finishes."""
    _run(_watch(workflow_id, as_json))


async def _watch(workflow_id: str, as_json: bool) -> None:
    from orch.cli.commands import CliError, follow

    client = await _client()
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except Exception as err:
        raise CliError(f"no command workflow {workflow_id!r}: {err}") from err
    code = await follow(client, workflow_id, as_json=as_json)
    if code:
        raise typer.Exit(code)


@app.command("list")
def list_command(
    limit: Annotated[int, typer.Option(parser=LISTED, help="How many recent commands.")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """Recent command workflows with their status and progress."""
    _run(_list(limit, as_json))


async def _list(limit: int, as_json: bool) -> None:
    from orch.cli.commands import list_commands
    from orch.cli.render import table

    rows = await list_commands(await _client(), limit)
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


# ---- The system's state -------------------------------------------------------------------------


@app.command()
def state(as_json: JsonFlag = False) -> None:
    """The live configuration held by SystemState, and the commands holding slots."""
    _run(_state(as_json))


async def _state(as_json: bool) -> None:
    from orch.cli.commands import system_state
    from orch.cli.render import console

    snapshot = await system_state(await _client())
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


@discovery_app.command("candidates")
def discovery_candidates(as_json: JsonFlag = False) -> None:
    """The latest ranked candidates and the strategy that produced them."""
    _run(_candidates(as_json))


async def _candidates(as_json: bool) -> None:
    from orch.cli.commands import system_state
    from orch.cli.render import console, table

    client = await _client()
    snapshot = await system_state(client)
    candidates = snapshot.latest_candidates
    if candidates is None:
        await _no_candidates_yet(client, as_json)
        return
    if as_json:
        print(candidates.model_dump_json())
        return
    console.print(
        f"strategy [bold]{candidates.strategy}[/bold], scan {candidates.scan_workflow_id}, "
        f"as of {candidates.as_of:%Y-%m-%d %H:%M:%S} UTC, universe {candidates.universe_size} symbols"
    )
    factor_names = sorted({name for c in candidates.candidates for name in c.factors})
    table(
        "Candidates",
        ["rank", "symbol", "score", "last price", *factor_names],
        [
            (
                c.rank,
                c.symbol,
                f"{c.score:.3f}",
                f"{c.last_price:.2f}",
                *(f"{c.factors[f]:.3f}" if f in c.factors else None for f in factor_names),
            )
            for c in candidates.candidates
        ],
        ids=("symbol",),
    )


async def _no_candidates_yet(client: Any, as_json: bool) -> None:
    """Before the first scan has published, say so and when the next scan is due: not a failure."""
    from temporalio.service import RPCError, RPCStatusCode

    from orch.cli.commands import CliError
    from orch.cli.render import console
    from orch.contracts.names import DISCOVERY_SCHEDULE_ID

    try:
        description = await client.get_schedule_handle(DISCOVERY_SCHEDULE_ID).describe()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise CliError(f"cannot read the schedule {DISCOVERY_SCHEDULE_ID}: {err}") from err
        description = None
    paused = description is not None and description.schedule.state.paused
    next_scan = (
        description.info.next_action_times[0] if description and description.info.next_action_times else None
    )
    running = [action.workflow_id for action in description.info.running_actions] if description else []
    if as_json:
        print(
            json.dumps(
                {
                    "candidates": None,
                    "schedule_exists": description is not None,
                    "schedule_paused": paused,
                    "next_scan_at": next_scan.isoformat() if next_scan and not paused else None,
                    "running_scans": running,
                }
            )
        )
        return
    console.print("No discovery scan has published candidates yet.")
    if description is None:
        console.print(
            f"The schedule {DISCOVERY_SCHEDULE_ID} does not exist: start `orch worker` (or `orch up`)."
        )
        return
    if running:
        console.print(
            f"A scan is running now: {', '.join(running)} (`orch discovery candidates` again soon)."
        )
    if paused:
        note = description.schedule.state.note
        console.print(f"The schedule {DISCOVERY_SCHEDULE_ID} is paused" + (f": {note}" if note else "."))
    elif next_scan is not None:
        console.print(
            f"The next scan is due at {next_scan:%Y-%m-%d %H:%M:%S} UTC (schedule {DISCOVERY_SCHEDULE_ID})."
        )


app.add_typer(hft_app, name="hft")
app.add_typer(cycle_app, name="cycle")
app.add_typer(agents_app, name="agents")

# ---- Emergency stop, resume, health check (src/orch/cli/emergency.py) ------------------------------
app.command("emergency-stop")(emergency_stop)
app.command("resume")(resume)
app.command("health-check")(health_check)

app.command("validate-algorithms")(validate_algorithms)  # src/orch/cli/validate.py
app.command("integrate-real-data")(integrate_real_data)  # src/orch/cli/data.py

if __name__ == "__main__":
    sys.exit(app())
