"""`orch emergency-stop`, `orch resume --confirm` and `orch health-check`.

Bad input (an unknown level, an empty reason, a resume without --confirm) is refused with exit code 2
before anything starts. Each command runs as a workflow on `orch-critical`, whose worker has its own
slots, so a busy system cannot delay them.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any, NoReturn

import typer

from orch.cli.options import JsonFlag, NoWait
from orch.cli.run import EXIT_BAD_INPUT, EXIT_FAILED, CliError, run_to_exit
from orch.contracts.emergency import STOP_LEVELS, stop_level_error
from orch.contracts.names import CRITICAL_QUEUE, TaskPriority

LEVEL_HELP = "How hard to stop: " + ", ".join(level.value for level in STOP_LEVELS) + " (default halt)."


def emergency_stop(
    reason: Annotated[str, typer.Option(help="Why (recorded with the incident).")],
    level: Annotated[str, typer.Option(help=LEVEL_HELP)] = "halt",
    requested_by: Annotated[str, typer.Option(help="Who asks (recorded with the incident).")] = "operator",
    no_wait: NoWait = False,
    as_json: JsonFlag = False,
) -> None:
    """Stop trading everywhere (EmergencyStop): orch hft, engines, schedules; recorded in SystemState."""
    run_to_exit(_emergency_stop(reason, level, requested_by, no_wait, as_json))


async def _emergency_stop(reason: str, level: str, requested_by: str, no_wait: bool, as_json: bool) -> None:
    from orch.cli.commands import checked_input, connect_client, start_follow_print
    from orch.config import get_settings
    from orch.contracts.emergency import EmergencyStopInput
    from orch.contracts.names import EMERGENCY_STOP

    if level not in {lv.value for lv in STOP_LEVELS}:
        raise CliError(stop_level_error(level), EXIT_BAD_INPUT)
    confirm_seconds = get_settings().emergency_confirm_seconds
    request = checked_input(
        EmergencyStopInput,
        reason=reason,
        level=level,
        requested_by=requested_by,
        options=_critical_options(
            step_timeout_seconds=confirm_seconds + 30, workflow_timeout_seconds=confirm_seconds + 120
        ),
    )

    async def remind(_: Any, code: int) -> int:
        if not as_json:
            from orch.cli.render import console

            console.print("Trading stays stopped until [bold]orch resume --confirm[/bold].")
        return code

    await start_follow_print(
        await connect_client(),
        EMERGENCY_STOP,
        request,
        id_prefix="emergency-stop",
        summary=f"Emergency stop ({request.level.value}): {request.reason}"[:200],
        no_wait=no_wait,
        as_json=as_json,
        announce=f" ({request.level.value})",
        task_queue=CRITICAL_QUEUE,
        priority=TaskPriority.CRITICAL,
        after_result=remind,
    )


def resume(
    confirm: Annotated[bool, typer.Option("--confirm", help="Required: yes, trade again.")] = False,
    reason: Annotated[str, typer.Option(help="Why (recorded with the resolution).")] = "resumed by operator",
    requested_by: Annotated[str, typer.Option(help="Who resumes.")] = "operator",
    no_wait: NoWait = False,
    as_json: JsonFlag = False,
) -> None:
    """Resume trading after an emergency stop (ResumeTrading): orch hft, SystemState, schedules, engines."""
    run_to_exit(_resume(confirm, reason, requested_by, no_wait, as_json))


async def _resume(confirm: bool, reason: str, requested_by: str, no_wait: bool, as_json: bool) -> None:
    from orch.cli.commands import checked_input, connect_client, start_follow_print
    from orch.contracts.emergency import CONFIRM_NEEDED, ResumeTradingInput
    from orch.contracts.names import RESUME_TRADING

    if not confirm:
        raise CliError(f"{CONFIRM_NEEDED} (nothing was changed)", EXIT_BAD_INPUT)
    request = checked_input(
        ResumeTradingInput,
        confirm=True,
        reason=reason,
        requested_by=requested_by,
        options=_critical_options(step_timeout_seconds=60, workflow_timeout_seconds=300),
    )
    await start_follow_print(
        await connect_client(),
        RESUME_TRADING,
        request,
        id_prefix="resume-trading",
        summary=f"Resume trading: {request.reason}"[:200],
        no_wait=no_wait,
        as_json=as_json,
        announce=None,
        task_queue=CRITICAL_QUEUE,
        priority=TaskPriority.CRITICAL,
    )


def _critical_options(*, step_timeout_seconds: float, workflow_timeout_seconds: float) -> Any:
    """Quick retries: a stop or a resume that waits half a minute between attempts is too late."""
    from orch.cli.commands import checked_input
    from orch.config import get_settings
    from orch.contracts.commands import CommandOptions

    return checked_input(
        CommandOptions,
        max_retries=get_settings().max_retries,
        initial_retry_interval_seconds=0.5,
        max_retry_interval_seconds=5.0,
        step_timeout_seconds=step_timeout_seconds,
        workflow_timeout_seconds=workflow_timeout_seconds,
    )


def health_check(as_json: JsonFlag = False) -> None:
    """Check every component (HealthCheck): a table, or --json; exit 1 when anything is unhealthy."""
    run_to_exit(_health_check(as_json))


async def _health_check(as_json: bool) -> None:
    from datetime import UTC, datetime

    from orch.cli.commands import start_command
    from orch.client import connect
    from orch.config import get_settings
    from orch.contracts.commands import CommandOptions
    from orch.contracts.emergency import ComponentHealth, HealthCheckInput, HealthCheckResult, HealthReport
    from orch.contracts.emergency import HealthStatus as Status
    from orch.contracts.names import HEALTH_CHECK

    settings = get_settings()

    def unhealthy_without_a_check(*components: ComponentHealth) -> NoReturn:
        """What kept the HealthCheck workflow from answering is the finding: report it, exit 1."""
        report = HealthReport(
            checked_at=datetime.now(UTC), status=Status.UNHEALTHY, components=list(components)
        )
        _show_health(report, as_json)
        raise typer.Exit(EXIT_FAILED)

    try:
        client = await connect(settings)
    except RuntimeError as err:
        unhealthy_without_a_check(
            ComponentHealth(
                component="temporal",
                status=Status.UNHEALTHY,
                detail=f"cannot reach {settings.temporal_address} (namespace {settings.namespace}): {err}",
            )
        )
    # Nobody polls orch-critical: the check itself could never run, and that is the finding.
    if not await _critical_pollers(client):
        unhealthy_without_a_check(
            ComponentHealth(
                component="temporal", status=Status.HEALTHY, detail=f"{settings.temporal_address}"
            ),
            ComponentHealth(
                component=f"queue:{CRITICAL_QUEUE}",
                status=Status.UNHEALTHY,
                detail=f"no worker polls {CRITICAL_QUEUE}: start `orch worker` (or `orch up`)",
            ),
        )
    budget = settings.health_check_timeout_seconds
    handle = await start_command(
        client,
        HEALTH_CHECK,
        HealthCheckInput(
            options=CommandOptions(
                max_retries=1, step_timeout_seconds=budget / 2, workflow_timeout_seconds=budget
            )
        ),
        id_prefix="health-check",
        summary="orch health-check",
        timeout_seconds=budget,
        task_queue=CRITICAL_QUEUE,
        priority=TaskPriority.HIGH,
        result_type=HealthCheckResult,
    )
    try:
        result = await asyncio.wait_for(handle.result(), timeout=budget + 5)
    except TimeoutError:
        await handle.terminate(reason="orch health-check gave up waiting")
        unhealthy_without_a_check(
            ComponentHealth(
                component="health-check",
                status=Status.UNHEALTHY,
                detail=f"{handle.id} did not finish within {budget:g} s: is the orch-critical worker stuck?",
            )
        )
    except Exception as err:
        unhealthy_without_a_check(
            ComponentHealth(component="health-check", status=Status.UNHEALTHY, detail=f"{handle.id}: {err}")
        )
    assert result.report is not None
    _show_health(result.report, as_json, workflow_id=handle.id)
    if result.report.status is Status.UNHEALTHY:
        raise typer.Exit(EXIT_FAILED)


async def _critical_pollers(client: Any) -> bool:
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=CRITICAL_QUEUE),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return bool(response.pollers)


def _show_health(report: Any, as_json: bool, workflow_id: str | None = None) -> None:
    from rich.table import Table

    from orch.cli.render import console, show

    if as_json:
        print(json.dumps(report.model_dump(mode="json") | {"workflow_id": workflow_id}))
        return
    style = {"healthy": "green", "degraded": "yellow", "unhealthy": "red"}
    table = Table("component", "status", "detail", title=f"Health: {report.status.value}")
    for component in report.components:
        s = component.status.value
        table.add_row(component.component, f"[{style[s]}]{s}[/]", component.detail)
    show(table, ids=("component",))
    if report.resource_pools:
        pools = Table("pool", "figures", title="Resource pools")
        for name, figures in sorted(report.resource_pools.items()):
            pools.add_row(name, ", ".join(f"{k} {v:g}" for k, v in figures.items()))
        show(pools, ids=("pool",))
    unhealthy = [c.component for c in report.components if c.status.value == "unhealthy"]
    summary = f"[{style[report.status.value]}]{report.status.value}[/]"
    if unhealthy:
        summary += f": unhealthy {', '.join(unhealthy)}"
    console.print(summary + (f"  ({workflow_id})" if workflow_id else ""))
