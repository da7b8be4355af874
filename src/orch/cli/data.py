"""`orch integrate-real-data --primary alpaca --fallback csv [--live --i-understand-live-trading]`.

A source with no adapter, a source named twice, or `--live` without its second flag is refused with
exit code 2 before anything starts (no workflow, SystemState untouched). Otherwise it starts
`IntegrateRealData` on the `orch` queue and follows it with the live progress bar.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from orch.cli.options import JsonFlag, MaxRetries, NoWait, WorkflowTimeout
from orch.cli.values import seconds


def _names(values: list[str] | None) -> list[str]:
    """Repeated options and comma-separated lists both work: --fallback csv --fallback simulated."""
    return [name.strip() for value in values or () for name in value.split(",") if name.strip()]


def integrate_real_data(
    primary: Annotated[str, typer.Option(help="Primary data source: simulated, csv or alpaca.")] = "alpaca",
    fallback: Annotated[
        list[str] | None, typer.Option(help="Fallback source, in order (repeat, or comma-separated).")
    ] = None,
    live: Annotated[bool, typer.Option("--live", help="Enable LIVE trading instead of paper.")] = False,
    i_understand_live_trading: Annotated[
        bool, typer.Option("--i-understand-live-trading", help="The second confirmation --live needs.")
    ] = False,
    symbol: Annotated[
        list[str] | None, typer.Option(help="Symbols to probe and test (default: a few the primary serves).")
    ] = None,
    max_data_age: Annotated[
        float | None,
        typer.Option(
            parser=seconds(), help="Seconds after which a source's newest bar is stale (default: 3 bars)."
        ),
    ] = None,
    max_retries: MaxRetries = None,
    timeout: WorkflowTimeout = None,
    no_wait: NoWait = False,
    as_json: JsonFlag = False,
) -> None:
    """Move onto real market data (IntegrateRealData): probe, switch, recalibrate, dry-run, paper trading."""
    from orch.cli.main import _run

    _run(
        _integrate(
            primary,
            _names(fallback),
            live,
            i_understand_live_trading,
            _names(symbol),
            max_data_age,
            max_retries,
            timeout,
            no_wait,
            as_json,
        )
    )


async def _integrate(
    primary: str,
    fallbacks: list[str],
    live: bool,
    confirm_live: bool,
    symbols: list[str],
    max_data_age: float | None,
    max_retries: int | None,
    timeout: float | None,
    no_wait: bool,
    as_json: bool,
) -> None:
    from pydantic import ValidationError

    from orch.cli.commands import EXIT_BAD_INPUT, CliError, follow, start_command, system_state
    from orch.cli.main import _client, _validation_message
    from orch.config import get_settings
    from orch.contracts.commands import CommandOptions
    from orch.contracts.data import IntegrateRealDataInput, integration_problems
    from orch.contracts.names import INTEGRATE_REAL_DATA

    settings = get_settings()
    try:
        request = IntegrateRealDataInput(
            primary_source=primary,
            fallback_sources=fallbacks,
            live=live,
            confirm_live=confirm_live,
            symbols=symbols,
            max_data_age_seconds=max_data_age,
            options=CommandOptions(
                max_retries=settings.max_retries if max_retries is None else max_retries,
                workflow_timeout_seconds=settings.workflow_timeout_seconds if timeout is None else timeout,
            ),
        )
    except ValidationError as err:
        raise CliError(_validation_message(err), EXIT_BAD_INPUT) from err
    problems = integration_problems(request)
    if problems:
        raise CliError("; ".join(problems) + " (nothing was changed)", EXIT_BAD_INPUT)

    client = await _client()
    state = await system_state(client)
    running = next((c for c in state.running_commands if c.command_type == INTEGRATE_REAL_DATA), None)
    if running is not None:
        raise CliError(
            f"{INTEGRATE_REAL_DATA} {running.workflow_id} is already running; "
            f"watch it with: orch watch {running.workflow_id}"
        )
    chain = " -> ".join([primary, *fallbacks])
    handle = await start_command(
        client,
        INTEGRATE_REAL_DATA,
        request,
        id_prefix="integrate-real-data",
        summary=f"Integrate real data: {chain}, then {request.target_mode.value} trading",
        timeout_seconds=request.options.workflow_timeout_seconds,
    )
    if no_wait:
        print(
            json.dumps({"workflow_id": handle.id, "run_id": handle.result_run_id}) if as_json else handle.id
        )
        return
    if not as_json:
        from orch.cli.render import console

        console.print(f"Started {INTEGRATE_REAL_DATA} [bold]{handle.id}[/bold] ({chain})")
    code = await follow(client, handle.id, as_json=as_json)
    if not as_json:
        await _show_probes(handle)
    if code:
        raise typer.Exit(code)


async def _show_probes(handle: Any) -> None:
    """The sources as step 1 found them, and what the dry cycle did."""
    from orch.cli.render import console, table
    from orch.contracts.data import IntegrateRealDataResult

    try:
        result = IntegrateRealDataResult.model_validate(await handle.result())
    except Exception:
        return  # a failed run: its step errors are already shown
    table(
        "Data sources",
        ["source", "role", "ok", "authenticated", "latency ms", "newest bar", "sample"],
        [
            (
                p.name,
                p.role,
                "yes" if p.ok else "no",
                {True: "yes", False: "no", None: "n/a"}[p.authenticated],
                f"{p.latency_ms:.1f}" if p.latency_ms is not None else None,
                f"{p.newest_bar_at:%Y-%m-%d %H:%M} UTC" if p.newest_bar_at else None,
                f"{p.sample.symbol} close {p.sample.close:.2f}" if p.sample else None,
            )
            for p in result.probes
        ],
    )
    if result.thresholds is not None:
        console.print(
            f"regime thresholds: trend {result.thresholds.trend_efficiency:.3f}, "
            f"volatile {result.thresholds.volatility_ratio:.3f}"
        )
    if result.trading_mode is not None:
        console.print(f"trading mode: [bold]{result.trading_mode.value}[/bold] ({result.trading_mode_note})")
