"""`orch restart-discovery` and `orch discovery candidates`: the discovery system.

An unknown strategy, or a restart while another runs, is refused before anything starts.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from orch.cli.options import JsonFlag, MaxRetries, NoWait, WorkflowTimeout
from orch.cli.run import run_to_exit

discovery_app = typer.Typer(help="The discovery system: candidates and strategies.", no_args_is_help=True)


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
    run_to_exit(_restart_discovery(strategy, force_stop, no_wait, as_json, max_retries, timeout))


async def _restart_discovery(
    strategy: str,
    force_stop: bool,
    no_wait: bool,
    as_json: bool,
    max_retries: int | None,
    timeout: float | None,
) -> None:
    from orch.cli.commands import (
        checked_input,
        command_options,
        connect_client,
        refuse_if_running,
        refuse_unknown_strategies,
        start_follow_print,
        system_state,
    )
    from orch.contracts.commands import RestartDiscoveryInput
    from orch.contracts.names import RESTART_DISCOVERY

    request = checked_input(
        RestartDiscoveryInput,
        strategy=strategy,
        force_stop=force_stop,
        options=command_options(max_retries, timeout),
    )
    client = await connect_client()
    state = await system_state(client)
    refuse_unknown_strategies(state, [strategy])
    refuse_if_running(state, RESTART_DISCOVERY)
    await start_follow_print(
        client,
        RESTART_DISCOVERY,
        request,
        id_prefix="restart-discovery",
        summary=f"Restart discovery with {strategy}" + (" (force stop)" if force_stop else ""),
        no_wait=no_wait,
        as_json=as_json,
    )


@discovery_app.command("candidates")
def discovery_candidates(as_json: JsonFlag = False) -> None:
    """The latest ranked candidates and the strategy that produced them."""
    run_to_exit(_candidates(as_json))


async def _candidates(as_json: bool) -> None:
    from orch.cli.commands import connect_client, system_state
    from orch.cli.render import console, table

    client = await connect_client()
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

    from orch.cli.render import console
    from orch.cli.run import CliError
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
