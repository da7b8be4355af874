"""`orch integrate-real-data --primary alpaca --fallback csv [--live --i-understand-live-trading]`.

A source with no adapter, a source named twice, or `--live` without its second flag is refused with
exit code 2 before anything starts (no workflow, SystemState untouched). Otherwise it starts
`IntegrateRealData` on the `orch` queue and follows it with the live progress bar.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from orch.cli.options import JsonFlag, MaxRetries, NoWait, WorkflowTimeout
from orch.cli.run import EXIT_BAD_INPUT, CliError, run_to_exit
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
    run_to_exit(
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
    from orch.cli.commands import (
        checked_input,
        command_options,
        connect_client,
        refuse_if_running,
        start_follow_print,
        system_state,
    )
    from orch.contracts.data import IntegrateRealDataInput, integration_problems
    from orch.contracts.names import INTEGRATE_REAL_DATA

    request = checked_input(
        IntegrateRealDataInput,
        primary_source=primary,
        fallback_sources=fallbacks,
        live=live,
        confirm_live=confirm_live,
        symbols=symbols,
        max_data_age_seconds=max_data_age,
        options=command_options(max_retries, timeout),
    )
    problems = integration_problems(request)
    if problems:
        raise CliError("; ".join(problems) + " (nothing was changed)", EXIT_BAD_INPUT)

    client = await connect_client()
    refuse_if_running(await system_state(client), INTEGRATE_REAL_DATA)

    async def show_probes(handle: Any, code: int) -> int:
        if not as_json:
            await _show_probes(handle)
        return code

    chain = " -> ".join([primary, *fallbacks])
    await start_follow_print(
        client,
        INTEGRATE_REAL_DATA,
        request,
        id_prefix="integrate-real-data",
        summary=f"Integrate real data: {chain}, then {request.target_mode.value} trading",
        no_wait=no_wait,
        as_json=as_json,
        announce=f" ({chain})",
        after_result=show_probes,
    )


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
