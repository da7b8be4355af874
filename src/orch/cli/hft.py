"""`orch hft`: start the execution process, and reach it directly as a last resort.

`orch hft` (or `orch hft run`) starts it; `status`, `kill` and `resume` talk to its control API
with the token from ORCH_HFT_TOKEN or the token file the process wrote beside its journal.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from orch.cli.values import ACCOUNT, PORT, FiniteNumber, Folder
from orch.contracts.system import EmergencyLevel

hft_app = typer.Typer(help="The low-latency execution process (outside Temporal).")

AccountOption = Annotated[
    str | None, typer.Option(parser=ACCOUNT, help="Account (default ORCH_HFT_ACCOUNT or paper-1).")
]
PortOption = Annotated[
    int | None, typer.Option(parser=PORT, help="Control API port (default ORCH_HFT_PORT or 8787).")
]
UrlOption = Annotated[str | None, typer.Option(help="Control API base URL (overrides --port).")]


def _settings(**overrides: Any) -> Any:
    """The process's settings from ORCH_HFT_* and the flags; a bad one is refused with exit code 2."""
    from pydantic import ValidationError

    from orch.cli.render import error_console
    from orch.hft.config import HftSettings

    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return HftSettings(**given)
    except ValidationError as err:
        for problem in err.errors():
            field = str(problem["loc"][0])
            where = (
                f"--{field.replace('_', '-')}"
                if field in given
                else "ORCH_HFT_" + "__".join(str(part) for part in problem["loc"]).upper()
            )
            error_console.print(f"[red]error:[/red] {where}: {problem['msg']} (got {problem['input']!r})")
        raise typer.Exit(2) from None


def _client(account: str | None, port: int | None, url: str | None) -> Any:
    from orch.hft.client import HftClient

    settings = _settings(account=account, port=port)
    token = settings.token.get_secret_value() if settings.token else None
    if token is None and settings.token_path.exists():
        token = settings.token_path.read_text().strip()
    return HftClient(url or settings.base_url, token=token, timeout_seconds=5.0)


def _call(account: str | None, port: int | None, url: str | None, action: Any) -> Any:
    from orch.cli.render import error_console
    from orch.hft.client import HftClientError

    async def go() -> Any:
        async with _client(account, port, url) as client:
            return await action(client)

    try:
        return asyncio.run(go())
    except HftClientError as error:
        error_console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None


def _start(
    market: str | None,
    broker: str | None,
    port: int | None,
    account: str | None,
    host: str | None,
    tick_rate: float | None,
    data_dir: Path | None,
) -> None:
    from orch.workers.hft import main

    overrides = dict(
        market=market,
        broker=broker,
        port=port,
        account=account,
        host=host,
        tick_rate=tick_rate,
        data_dir=data_dir,
    )
    _settings(**overrides)  # a bad ORCH_HFT_* setting: exit 2 with its name, before anything starts
    raise typer.Exit(main(**overrides))


MarketOption = Annotated[str | None, typer.Option(help="simulated or alpaca.")]
BrokerOption = Annotated[
    str | None, typer.Option(help="simulated or alpaca (paper unless ORCH_HFT_ALPACA_PAPER=false).")
]
HostOption = Annotated[str | None, typer.Option(help="Bind address; beyond loopback needs ORCH_HFT_TOKEN.")]
# The ceiling is HftSettings.tick_rate's: a rate the simulated venue cannot produce is refused here.
TICK_RATE = FiniteNumber(minimum=0, maximum=2_000_000, unit="ticks per second")
RateOption = Annotated[float | None, typer.Option(parser=TICK_RATE, help="Simulated ticks per second.")]
DataDirOption = Annotated[
    Path | None,
    typer.Option(parser=Folder(must_exist=False), help="Where the journal and the simulated venue live."),
]


@hft_app.callback(invoke_without_command=True)
def default(
    context: typer.Context,
    market: MarketOption = None,
    broker: BrokerOption = None,
    port: PortOption = None,
    account: AccountOption = None,
    host: HostOption = None,
    tick_rate: RateOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Start the process (the same as `orch hft run`)."""
    if context.invoked_subcommand is None:
        _start(market, broker, port, account, host, tick_rate, data_dir)


@hft_app.command("run")
def run_command(
    market: MarketOption = None,
    broker: BrokerOption = None,
    port: PortOption = None,
    account: AccountOption = None,
    host: HostOption = None,
    tick_rate: RateOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Start the process: ticks, tiers 1 and 2, the risk gate, the journal, the control API."""
    _start(market, broker, port, account, host, tick_rate, data_dir)


@hft_app.command()
def status(
    account: AccountOption = None,
    port: PortOption = None,
    url: UrlOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Trading state, positions, open orders, P&L, risk usage and latency."""
    report = _call(account, port, url, lambda client: client.status())
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    _render_status(report)


def _render_status(report: Any) -> None:
    from rich.table import Table

    from orch.cli.render import console, show

    trading = report.trading
    style = {"active": "green", "reducing": "yellow", "halted": "red"}[trading.state.value]
    console.print(
        f"[bold]{report.account}[/bold] pid {report.pid}  [{style}]{trading.state.value.upper()}[/{style}]"
        f"  level {trading.emergency_level.value}  {trading.reason}"
    )
    heartbeat = report.last_heartbeat_age_seconds
    console.print(
        f"broker {report.broker} ({report.trading_mode.value}), market {report.market}; "
        f"ticks {report.ticks_processed:,} ({report.ticks_per_second:,.0f}/s); heartbeat "
        + ("never" if heartbeat is None else f"{heartbeat:.1f}s ago")
        + f"; plans active {report.active_plans}"
    )
    if report.clock_start is not None:
        console.print(
            f"[yellow]clock set[/yellow]: started at {report.clock_start.isoformat()} "
            f"(ORCH_HFT_CLOCK_START), now {report.clock.isoformat() if report.clock else '?'}"
        )
    closed = [str(market) for market in report.markets if not market.open]
    if closed:
        console.print(f"market closed, not trading: {', '.join(closed)}")
    summary = Table(title="P&L and risk", show_header=False)
    risk, latency = report.risk, report.latency
    summary.add_row("realized / unrealized", f"{report.realized_pnl:,.2f} / {report.unrealized_pnl:,.2f}")
    summary.add_row("daily P&L / max loss", f"{risk.daily_pnl:,.2f} / -{risk.max_daily_loss:,.2f}")
    summary.add_row("gross exposure", f"{risk.gross_exposure:,.2f} / {risk.max_gross_exposure:,.2f}")
    summary.add_row("orders in window", f"{risk.orders_in_interval} / {risk.max_orders_per_interval}")
    summary.add_row("denials", ", ".join(f"{k} {v}" for k, v in sorted(risk.denials.items())) or "none")
    if latency.samples:
        summary.add_row(
            "tick-to-order (us)",
            f"p50 {latency.p50_us:.1f}  p99 {latency.p99_us:.1f}  p99.9 {latency.p999_us:.1f}"
            f"  ({latency.samples:,} orders)",
        )
    show(summary)
    positions = Table(title="Positions")
    for column in ("symbol", "quantity", "avg price", "mark", "unrealized", "realized", "plan"):
        positions.add_column(column, justify="left" if column in ("symbol", "plan") else "right")
    for p in report.positions:
        positions.add_row(
            p.symbol,
            f"{p.quantity:g}",
            f"{p.average_price:,.4f}",
            "-" if p.market_price is None else f"{p.market_price:,.4f}",
            f"{p.unrealized_pnl:,.2f}",
            f"{p.realized_pnl:,.2f}",
            p.plan_id or "",
        )
    show(positions, ids=("symbol", "plan"))
    orders = Table(title=f"Open orders ({len(report.open_orders)})")
    for column in ("client_order_id", "symbol", "side", "qty", "filled", "type", "limit", "status", "source"):
        orders.add_column(column)
    for o in report.open_orders[:20]:
        orders.add_row(
            o.client_order_id,
            o.symbol,
            o.side.value,
            f"{o.quantity:g}",
            f"{o.filled_quantity:g}",
            o.order_type.value,
            "" if o.limit_price is None else f"{o.limit_price:,.4f}",
            o.status.value,
            o.source,
        )
    show(orders, ids=("client_order_id", "symbol"))


@hft_app.command()
def kill(
    reason: Annotated[str, typer.Option(help="Why (recorded in the journal).")],
    level: Annotated[EmergencyLevel, typer.Option(help="pause_entries, reduce_only, halt or flatten.")] = (
        EmergencyLevel.HALT
    ),
    account: AccountOption = None,
    port: PortOption = None,
    url: UrlOption = None,
) -> None:
    """Stop trading now, directly (a last resort beside the EmergencyStop workflow)."""
    if level is EmergencyLevel.NONE:
        raise typer.BadParameter("level none is not a kill; use `orch hft resume`", param_hint="--level")
    result = _call(account, port, url, lambda client: client.kill(level, reason, requested_by="cli"))
    typer.echo(json.dumps(result.model_dump(mode="json")))


@hft_app.command()
def resume(
    reason: Annotated[str, typer.Option(help="Why trading may start again.")] = "resumed from the CLI",
    account: AccountOption = None,
    port: PortOption = None,
    url: UrlOption = None,
) -> None:
    """Trade again after a kill (needs a clean reconciliation)."""
    result = _call(account, port, url, lambda client: client.resume(reason, requested_by="cli"))
    typer.echo(json.dumps(result.model_dump(mode="json")))
