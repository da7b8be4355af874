"""`orch cycle start|stop|pause|resume|status|report`: the account's `TradingEngine` and its cycles.

The engine has a fixed id (`trading-engine-<account>`), so every command finds it without a search.
Exit codes as everywhere in `orch`: 0 success, 1 the engine is missing or refused, 2 bad input.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from orch.cli.options import JsonFlag
from orch.cli.run import EXIT_BAD_INPUT, CliError, run_to_exit
from orch.cli.values import ACCOUNT, count, seconds

cycle_app = typer.Typer(help="The trading engine: one TradingCycle per interval.", no_args_is_help=True)

AccountOption = Annotated[
    str | None,
    typer.Option(
        parser=ACCOUNT, help="Account (default: ORCH_HFT_ACCOUNT, the one `orch hft` trades, or paper-1)."
    ),
]


def account_or_default(account: str | None) -> str:
    if account is not None:
        return account
    from orch.hft.config import HftSettings

    return HftSettings().account


async def find_engine(account: str) -> Any:
    """A handle on the account's engine, and its description; CliError when there is none."""
    from temporalio.service import RPCError, RPCStatusCode

    from orch.cli.commands import connect_client
    from orch.contracts.engine import engine_workflow_id

    client = await connect_client()
    handle = client.get_workflow_handle(engine_workflow_id(account))
    try:
        description = await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise CliError(
                f"no trading engine for account {account!r}; start it with `orch cycle start`"
            ) from err
        raise CliError(str(err)) from err
    return client, handle, description


# ---- start -----------------------------------------------------------------------------------------


@cycle_app.command("start")
def start(
    interval: Annotated[
        float | None,
        typer.Option(
            parser=seconds(), help="Base seconds between cycles (default ORCH_CYCLE_INTERVAL_SECONDS, 60)."
        ),
    ] = None,
    account: AccountOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Start the account's TradingEngine; if it runs already, set its interval (when given)."""
    run_to_exit(_start(interval, account, as_json))


async def _start(interval: float | None, account_name: str | None, as_json: bool) -> None:
    from temporalio.common import WorkflowIDConflictPolicy
    from temporalio.exceptions import WorkflowAlreadyStartedError

    from orch.cli.commands import checked_input, connect_client
    from orch.clients.cycle_reports import next_cycle_number
    from orch.config import get_settings
    from orch.contracts.engine import (
        EngineConfigChange,
        TradingEngineInput,
        engine_workflow_id,
    )
    from orch.contracts.names import COMMANDS_QUEUE, TRADING_ENGINE

    settings = get_settings()
    account = account_or_default(account_name)
    request = checked_input(
        TradingEngineInput,
        account=account,
        cycle_interval_seconds=settings.cycle_interval_seconds if interval is None else interval,
        error_threshold=settings.agent_error_threshold,
        first_cycle_number=next_cycle_number(settings.home, account),
    )
    engine_id = engine_workflow_id(account)
    client = await connect_client()
    try:
        handle = await client.start_workflow(
            TRADING_ENGINE,
            request,
            id=engine_id,
            task_queue=COMMANDS_QUEUE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            static_summary=f"The trading engine of {account}: one TradingCycle per interval",
        )
        started, message = True, f"Started {engine_id}: a cycle every {request.cycle_interval_seconds:g} s"
    except WorkflowAlreadyStartedError:
        handle = client.get_workflow_handle(engine_id)
        started, message = False, f"{engine_id} is already running"
        if interval is not None:
            await set_engine_config(handle, EngineConfigChange(cycle_interval_seconds=interval))
            message += f"; its interval is now {interval:g} s"
    if as_json:
        print(json.dumps({"workflow_id": engine_id, "started": started, "message": message}))
    else:
        from orch.cli.render import console

        console.print(message)
        console.print(f"Follow it with `orch cycle status` or in the Temporal UI ({engine_id}).")


async def set_engine_config(handle: Any, change: Any) -> Any:
    from temporalio.client import WorkflowUpdateFailedError

    try:
        return await handle.execute_update("set_config", change)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        raise CliError(f"refused: {getattr(cause, 'message', None) or cause}", EXIT_BAD_INPUT) from err


# ---- signals ---------------------------------------------------------------------------------------


def _signal(name: str, account: str | None, as_json: bool, message: str) -> None:
    run_to_exit(_send(name, account_or_default(account), as_json, message))


async def _send(name: str, account: str, as_json: bool, message: str) -> None:
    from temporalio.client import WorkflowExecutionStatus
    from temporalio.service import RPCError

    _, handle, description = await find_engine(account)
    if description.status != WorkflowExecutionStatus.RUNNING:
        raise CliError(f"{handle.id} is not running ({description.status.name.lower()})")
    try:
        await handle.signal(name)
    except RPCError as err:
        raise CliError(f"could not signal {name} to {handle.id}: {err}") from err
    if as_json:
        print(json.dumps({"workflow_id": handle.id, "signal": name}))
    else:
        from orch.cli.render import console

        console.print(f"{handle.id}: {message}")


@cycle_app.command("stop")
def stop(account: AccountOption = None, as_json: JsonFlag = False) -> None:
    """Stop the engine: the running cycle finishes, then the engine ends."""
    _signal("stop", account, as_json, "stop sent; the current cycle finishes, then the engine ends")


@cycle_app.command("pause")
def pause(account: AccountOption = None, as_json: JsonFlag = False) -> None:
    """No new cycles until `orch cycle resume` (a running cycle finishes)."""
    _signal("pause", account, as_json, "paused; no new cycles until `orch cycle resume`")


@cycle_app.command("resume")
def resume(account: AccountOption = None, as_json: JsonFlag = False) -> None:
    """Lift a pause; after an emergency stop, cycles resume once `orch resume --confirm` cleared it."""
    _signal(
        "resume",
        account,
        as_json,
        "resume sent; after an emergency stop, cycles start again once SystemState's level is none",
    )


# ---- status ----------------------------------------------------------------------------------------


@cycle_app.command("status")
def status(account: AccountOption = None, as_json: JsonFlag = False) -> None:
    """Cycles run, completed, degraded and failed; success rate, average duration, the last report."""
    run_to_exit(_status(account_or_default(account), as_json))


async def _status(account: str, as_json: bool) -> None:
    from orch.contracts.engine import EngineStatus

    _, handle, description = await find_engine(account)
    try:
        engine = await handle.query("status", result_type=EngineStatus)
    except Exception as err:
        raise CliError(f"{handle.id} does not answer `status`: {err}") from err
    temporal_status = description.status.name if description.status else "UNKNOWN"
    if as_json:
        print(json.dumps(engine.model_dump(mode="json") | {"temporal_status": temporal_status}))
        return
    from orch.cli.render import console, table

    console.print(f"[bold]{engine.workflow_id}[/bold]: {engine.state.value} (Temporal: {temporal_status})")
    average = (
        f"{engine.average_duration_seconds:.1f} s" if engine.average_duration_seconds is not None else "-"
    )
    table(
        "Cycles",
        ["total", "completed", "degraded", "failed", "success rate", "average duration", "interval"],
        [
            (
                engine.cycles_total,
                engine.cycles_successful,
                engine.cycles_degraded,
                engine.cycles_failed,
                f"{engine.success_rate:.0%}",
                average,
                f"{engine.interval_seconds:.0f} s ({engine.interval_adjustments} adjustments)",
            )
        ],
    )
    if engine.current_cycle:
        console.print(f"running: {engine.current_cycle}")
    elif engine.next_cycle_at:
        console.print(f"next cycle ({engine.next_cycle_number}) at {engine.next_cycle_at:%H:%M:%S} UTC")
    if engine.emergency is not None:
        e = engine.emergency
        console.print(
            f"[red]emergency stop[/red] ({e.level.value}) by {e.requested_by}: {e.reason}"
            + ("; resume requested, waiting for SystemState" if engine.resume_requested else "")
        )
    if engine.weights is not None:
        from orch.cli.cycle_report import format_weights
        from orch.contracts.cycle import WeightsSource

        line = f"weights: {format_weights(engine.weights)} ({engine.weights_source.value})"
        if engine.weights_source is WeightsSource.OPERATOR:
            line += ', set with set_config: they win over learning until {"strategy_weights": "learned"}'
            if engine.learned_weights is not None:
                line += f"; learned: {format_weights(engine.learned_weights)}"
        console.print(line)
    if engine.trading_blocked is not None:
        console.print(f"[yellow]not sending plans[/yellow]: {engine.trading_blocked.detail}")
    if engine.breakers_tripped:
        console.print(f"[yellow]breakers open[/yellow]: {', '.join(engine.breakers_tripped)}")
    if engine.disabled_agents:
        console.print(f"[yellow]disabled agents[/yellow]: {', '.join(engine.disabled_agents)}")
    if engine.last_report is not None:
        from orch.cli.cycle_report import render_text

        console.print(render_text(engine.last_report), end="")


# ---- report ----------------------------------------------------------------------------------------


@cycle_app.command("report")
def report(
    number: Annotated[
        int | None,
        typer.Argument(parser=count(minimum=1, maximum=10**12), help="Cycle number (default: the latest)."),
    ] = None,
    account: AccountOption = None,
    as_json: JsonFlag = False,
) -> None:
    """One cycle's report: steps, market, plans and verdicts, execution, health, adaptation."""
    run_to_exit(_report(number, account_or_default(account), as_json))


async def _report(number: int | None, account: str, as_json: bool) -> None:
    from orch.clients.cycle_reports import cycle_report_path, cycle_reports_dir, report_paths
    from orch.config import get_settings
    from orch.contracts.cycle import CycleReport

    home = get_settings().home
    if number is None:
        files = report_paths(home, account)
        path = files[-1] if files else None
    else:
        path = cycle_report_path(home, account, number)
    if path is not None and path.exists():
        found: CycleReport | None = CycleReport.model_validate_json(path.read_text())
    else:
        found = await _report_from_temporal(account, number)
    if found is None:
        which = f"cycle {number}" if number is not None else "any cycle"
        raise CliError(f"no report for {which} of {account} (not in {cycle_reports_dir(home, account)})")
    if as_json:
        print(found.model_dump_json())
        return
    from rich.markdown import Markdown

    from orch.cli.cycle_report import render_markdown
    from orch.cli.render import console

    console.print(Markdown(render_markdown(found)))


async def _report_from_temporal(account: str, number: int | None) -> Any:
    """The report as the cycle's result in history (another machine's worker wrote the file)."""
    from orch.contracts.engine import EngineStatus, TradingCycleResult, cycle_workflow_id

    try:
        client, handle, _ = await find_engine(account)
    except Exception:
        return None
    if number is None:
        return (await handle.query("status", result_type=EngineStatus)).last_report
    from temporalio.client import WorkflowExecutionStatus

    try:
        cycle = client.get_workflow_handle(cycle_workflow_id(handle.id, number))
        if (await cycle.describe()).status != WorkflowExecutionStatus.COMPLETED:
            return None
        return (await cycle.result(result_type=TradingCycleResult)).report
    except Exception:
        return None
