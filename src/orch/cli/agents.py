"""`orch agents list` and `orch agents enable NAME ...`: the agents' error counts, and re-enabling an
agent disabled after `error_threshold` errors in a row.

An agent can be disabled in two places: by the reviews, in SystemState (one log per review), and by the
account's TradingEngine, in its own state. `enable` re-enables it wherever it is disabled, through each
owner's validated update, and refuses a name that is disabled nowhere before changing anything.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from orch.cli.options import JsonFlag
from orch.cli.run import EXIT_BAD_INPUT, CliError, run_to_exit
from orch.cli.values import ACCOUNT

agents_app = typer.Typer(help="The agents' error counts; re-enable a disabled agent.", no_args_is_help=True)

AccountOption = Annotated[
    str | None,
    typer.Option(
        parser=ACCOUNT, help="Account whose engine to include (default: ORCH_HFT_ACCOUNT, or paper-1)."
    ),
]


@agents_app.command("list")
def list_agents(account: AccountOption = None, as_json: JsonFlag = False) -> None:
    """Error counts per agent and source (the reviews in SystemState, the trading engine)."""
    run_to_exit(_list(account, as_json))


@agents_app.command("enable")
def enable(
    names: Annotated[list[str], typer.Argument(help="Agents to re-enable, e.g. conditions.")],
    account: AccountOption = None,
    requested_by: Annotated[str, typer.Option(help="Who re-enables (recorded).")] = "operator",
    as_json: JsonFlag = False,
) -> None:
    """Re-enable agents disabled after repeated errors, in SystemState and in the trading engine."""
    run_to_exit(_enable(names, account, requested_by, as_json))


async def _disabled_everywhere(account: str | None) -> tuple[Any, Any, list[Any], Any, list[str]]:
    """SystemState's snapshot, its error records, the engine's handle (None: not running) and its
    disabled agents."""
    from temporalio.client import WorkflowExecutionStatus

    from orch.cli.commands import connect_client, system_state
    from orch.cli.cycle import account_or_default, find_engine
    from orch.contracts.engine import EngineStatus

    client = await connect_client()
    snapshot = await system_state(client)
    records = [
        (source, record)
        for source, log in sorted(snapshot.agent_errors.items())
        for record in log.agents.values()
    ]
    engine, engine_disabled = None, []
    try:
        _, handle, description = await find_engine(account_or_default(account))
    except CliError:
        return client, snapshot, records, None, []  # no engine for the account: nothing disabled there
    if description.status == WorkflowExecutionStatus.RUNNING:
        engine = handle
        engine_disabled = (await handle.query("status", result_type=EngineStatus)).disabled_agents
    return client, snapshot, records, engine, engine_disabled


async def _list(account: str | None, as_json: bool) -> None:
    _, _, records, engine, engine_disabled = await _disabled_everywhere(account)
    rows = [
        {
            "source": source,
            "agent": r.agent,
            "consecutive_errors": r.consecutive_errors,
            "total_errors": r.total_errors,
            "disabled": r.disabled,
            "last_error": r.last_error,
        }
        for source, r in records
    ] + [
        {"source": engine.id, "agent": agent, "disabled": True}
        for agent in engine_disabled
        if engine is not None
    ]
    if as_json:
        print(json.dumps(rows))
        return
    from orch.cli.render import console, table

    if not rows:
        console.print("no agent has errors")
        return
    table(
        "Agents with errors",
        ["source", "agent", "in a row", "total", "disabled", "last error"],
        [
            (
                row["source"],
                row["agent"],
                row.get("consecutive_errors", "-"),
                row.get("total_errors", "-"),
                "DISABLED" if row["disabled"] else "no",
                row.get("last_error") or "",
            )
            for row in rows
        ],
        ids=("source", "agent"),
    )


async def _enable(names: list[str], account: str | None, requested_by: str, as_json: bool) -> None:
    from temporalio.client import WorkflowUpdateFailedError

    from orch.cli.cycle import set_engine_config
    from orch.clients.system_state import SystemStateClient
    from orch.contracts.engine import EngineConfigChange
    from orch.contracts.system import EnableAgentsRequest

    client, snapshot, _, engine, engine_disabled = await _disabled_everywhere(account)
    in_state = sorted(set(snapshot.disabled_agents()) & set(names))
    in_engine = sorted(set(engine_disabled) & set(names))
    nowhere = sorted(set(names) - set(in_state) - set(in_engine))
    if nowhere:
        disabled = sorted(set(snapshot.disabled_agents()) | set(engine_disabled))
        raise CliError(
            f"not disabled anywhere: {', '.join(nowhere)} (disabled: {', '.join(disabled) or 'none'})",
            EXIT_BAD_INPUT,
        )
    still: list[str] = []
    if in_state:
        request = EnableAgentsRequest(agents=in_state, requested_by=requested_by)
        try:
            still = await SystemStateClient(client).enable_agents(request)
        except WorkflowUpdateFailedError as err:
            raise CliError(f"SystemState refused: {err.cause}", EXIT_BAD_INPUT) from err
    if in_engine and engine is not None:
        await set_engine_config(
            engine, EngineConfigChange(enable_agents=in_engine, requested_by=requested_by)
        )
    outcome = {"enabled_in_system_state": in_state, "enabled_in_engine": in_engine, "still_disabled": still}
    if as_json:
        print(json.dumps(outcome))
        return
    from orch.cli.render import console

    if in_state:
        console.print(f"re-enabled in SystemState (the reviews): {', '.join(in_state)}")
    if in_engine and engine is not None:
        console.print(f"re-enabled in {engine.id}: {', '.join(in_engine)}")
    console.print(f"still disabled: {', '.join(still) or 'none'}")
