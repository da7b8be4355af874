"""`orch validate-algorithms`: backtest discovery strategies, compare them, recommend one.

    orch validate-algorithms --strategies hybrid_v1,legacy_v0 --period 6M [--apply] [--source sample]

Bad input (a period other than 30D/6M/1Y/5Y, an unknown strategy or source) is refused with exit
code 2 before anything starts. While the workflow runs, the live progress bar shows its steps;
then a results table, the recommendations, and a report folder (`metrics.json` and `equity.png`)
under `--report-dir` (default `ORCH_REPORT_DIR`, else `<ORCH_HOME>/reports`). Exit code 1 when the
validation failed, or when `--apply` was asked for and the winner could not be applied.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from orch.cli.options import JsonFlag, MaxRetries, NoWait, WorkflowTimeout
from orch.cli.run import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, CliError, run_to_exit
from orch.cli.values import count
from orch.contracts.validation import ACTIVE_SOURCE, BACKTEST_SOURCES, VALIDATION_PERIODS

SOURCE_HELP = (
    f"Bars to validate on: {ACTIVE_SOURCE} (SystemState's primary data source), "
    + ", ".join(BACKTEST_SOURCES)
    + " (sample: real daily AAPL, GOOG, IBM, MSFT 2000-2013, offline)."
)


def validate_algorithms(
    strategies: Annotated[
        str, typer.Option(help="Comma-separated discovery strategies, e.g. hybrid_v1,legacy_v0.")
    ],
    period: Annotated[
        str, typer.Option(help=f"{', '.join(VALIDATION_PERIODS)}: how far back from the newest bar.")
    ] = "6M",
    apply: Annotated[
        bool, typer.Option("--apply", help="Make the winner the active discovery strategy.")
    ] = False,
    source: Annotated[str, typer.Option(help=SOURCE_HELP)] = ACTIVE_SOURCE,
    csv_folder: Annotated[
        str | None,
        typer.Option(
            help="The csv source's folder on the workers, an absolute path (default ORCH_CSV_FOLDER)."
        ),
    ] = None,
    symbols: Annotated[
        str | None, typer.Option(help="Comma-separated subset of the source's symbols.")
    ] = None,
    top_n: Annotated[
        int | None,
        typer.Option(
            parser=count(minimum=1, maximum=500), help="Candidates held (default half the universe)."
        ),
    ] = None,
    rebalance_every: Annotated[
        int, typer.Option(parser=count(minimum=1, maximum=500), help="Bars between rebalances.")
    ] = 5,
    optimise: Annotated[bool, typer.Option(help="Walk-forward parameter optimisation.")] = True,
    splits: Annotated[
        int, typer.Option(parser=count(minimum=1, maximum=20), help="Walk-forward splits.")
    ] = 3,
    max_combinations: Annotated[
        int,
        typer.Option(
            parser=count(minimum=1, maximum=2000), help="Parameter combinations tried per strategy."
        ),
    ] = 20,
    report_dir: Annotated[Path | None, typer.Option(help="Where the report folder goes.")] = None,
    no_wait: NoWait = False,
    as_json: JsonFlag = False,
    max_retries: MaxRetries = None,
    timeout: WorkflowTimeout = None,
) -> None:
    """Backtest strategies on real bars, optimise them walk-forward and recommend one (ValidateAlgorithms)."""
    run_to_exit(
        _validate(
            dict(
                # Empty entries are kept so that the input's check refuses them ("a,,b" is a typo).
                strategies=[s.strip() for s in strategies.split(",")],
                validation_period=period,
                apply=apply,
                data_source=source,
                csv_folder=csv_folder,
                symbols=[s.strip() for s in symbols.split(",")] if symbols is not None else None,
                top_n=top_n,
                rebalance_every_bars=rebalance_every,
                optimise=optimise,
                walk_forward_splits=splits,
                max_param_combinations=max_combinations,
            ),
            report_dir,
            no_wait,
            as_json,
            max_retries,
            timeout,
        )
    )


async def _validate(
    fields: dict[str, Any],
    report_dir: Path | None,
    no_wait: bool,
    as_json: bool,
    max_retries: int | None,
    timeout: float | None,
) -> None:
    from orch.cli.commands import (
        checked_input,
        command_options,
        connect_client,
        refuse_unknown_strategies,
        start_follow_print,
        system_state,
    )
    from orch.contracts.names import VALIDATE_ALGORITHMS
    from orch.contracts.validation import ValidateAlgorithmsInput, parse_period

    try:
        period = parse_period(fields["validation_period"])
    except ValueError as err:
        raise CliError(str(err), EXIT_BAD_INPUT) from err
    request = checked_input(ValidateAlgorithmsInput, **fields, options=command_options(max_retries, timeout))
    client = await connect_client()
    refuse_unknown_strategies(await system_state(client), request.strategies)

    async def write_and_show_report(handle: Any, code: int) -> int:
        if code:
            return code
        return await _write_and_show_report(client, handle.id, report_dir, as_json)

    await start_follow_print(
        client,
        VALIDATE_ALGORITHMS,
        request,
        id_prefix="validate-algorithms",
        summary=f"Validate {', '.join(request.strategies)} over {period.value}"
        + (" and apply the winner" if request.apply else ""),
        no_wait=no_wait,
        as_json=as_json,
        after_result=write_and_show_report,
    )


async def _write_and_show_report(
    client: Any, workflow_id: str, report_dir: Path | None, as_json: bool
) -> int:
    """The report folder; then the results, or (with --json) where the folder is. Exit 1 when the winner
    was to be applied and was not."""
    from orch.cli.validation_report import write_report
    from orch.config import get_settings
    from orch.contracts.validation import ValidateAlgorithmsResult

    settings = get_settings()
    result = await client.get_workflow_handle(workflow_id, result_type=ValidateAlgorithmsResult).result()
    folder = (report_dir or settings.report_dir or settings.home / "reports") / workflow_id
    written = write_report(result, folder)
    if as_json:
        # stdout carries the one JSON document `follow` printed; the report's place goes to stderr.
        print(json.dumps({"report": [str(p) for p in written]}), file=sys.stderr)
    else:
        show(result, folder)
    return EXIT_FAILED if result.apply_requested and not result.applied else EXIT_OK


def show(result: Any, folder: Path) -> None:
    """The results table, the recommendations, and where the report is."""
    from rich.markup import escape

    from orch.cli.render import console, table

    def pct(value: float | None) -> str:
        return f"{value:+.1%}" if value is not None else "-"

    def num(value: float | None) -> str:
        return f"{value:.2f}" if value is not None else "-"

    if result.data is not None:
        window = result.data.window
        console.print(
            f"{result.source_description}; {len(result.data.symbols)} symbols "
            f"({', '.join(result.data.symbols[:8])}{' ...' if len(result.data.symbols) > 8 else ''}), "
            f"{window.bars} bars {window.start:%Y-%m-%d}..{window.end:%Y-%m-%d}, "
            f"{result.data.warmup_bars} bars of warm-up before them"
        )
    for warning in result.warnings:
        console.print(f"[yellow]warning[/yellow] ({warning.kind.value}): {escape(warning.message)}")
    rows = []
    for b in result.backtests:
        m = b.metrics
        rows.append(
            (
                b.strategy,
                pct(m.total_return),
                pct(m.cagr),
                num(m.sharpe),
                num(m.sortino),
                f"{m.max_drawdown:.1%}",
                f"{m.win_rate:.0%}" if m.win_rate is not None else "-",
                m.trades,
                f"{m.exposure:.0%}",
                pct(m.buy_and_hold.total_return),
            )
        )
    table(
        "Backtests (default parameters, whole period)",
        [
            "strategy",
            "return",
            "CAGR",
            "Sharpe",
            "Sortino",
            "max DD",
            "win rate",
            "trades",
            "exposure",
            "buy & hold",
        ],
        rows,
    )
    # What each strategy was ranked by (out of sample when optimised), beside the defaults' figure on
    # the same window(s): tuned parameters are recommended only when they do better.
    table(
        "Ranking (score: the recommended parameters' Sharpe, out of sample when optimised)",
        ["rank", "strategy", "parameters", "score", "defaults' score", "recommendable"],
        [
            (
                r.rank,
                r.strategy,
                f"tuned in split {r.split}" if r.tuned else "defaults",
                num(r.score),
                num(r.default_score),
                "yes" if r.recommendable else "no: no trades",
            )
            for r in result.recommendations
        ],
    )
    if result.recommendations and result.winner is None:
        console.print("[red]no strategy recommended[/red]: none made a trade over the period")
    for r in result.recommendations:
        params = ", ".join(f"{k}={v:g}" for k, v in r.params.items())
        kind = f"tuned in split {r.split}" if r.tuned else "default"
        console.print(
            f"[bold]{r.rank}. {r.strategy}[/bold] ({kind} parameters: {params})"
            + ("" if r.recommendable else " [red]not recommendable[/red]")
        )
        for reason in r.reasons:
            console.print(f"   - {reason}")
    if result.apply_requested:
        if result.applied:
            console.print(f"[green]applied[/green]: active strategy {result.active_strategy}")
        else:
            console.print(f"[red]not applied[/red]: {result.apply_error}")
    console.print(f"report: {folder}")
