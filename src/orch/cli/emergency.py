"""`orch emergency-stop`, `orch resume --confirm` and `orch health-check`.

Bad input (an unknown level, an empty reason, a resume without --confirm) is refused with exit code 2
before anything starts. Each command runs as a workflow on `orch-critical`, whose worker has its own
slots, so a busy system cannot delay them.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer

from orch.cli.options import JsonFlag, NoWait
from orch.contracts.emergency import STOP_LEVELS, stop_level_error

LEVEL_HELP = "How hard to stop: " + ", ".join(level.value for level in STOP_LEVELS) + " (default halt)."


def emergency_stop(
    reason: Annotated[str, typer.Option(help="Why (recorded with the incident).")],
    level: Annotated[str, typer.Option(help=LEVEL_HELP)] = "halt",
    requested_by: Annotated[str, typer.Option(help="Who asks (recorded with the incident).")] = "operator",
    no_wait: NoWait = False,
    as_json: JsonFlag = False,
) -> None:
    """Stop trading everywhere (EmergencyStop): orch hft, engines, schedules; recorded in SystemState."""
    from orch.cli.main import _run

    _run(_emergency_stop(reason, level, requested_by, no_wait, as_json))


async def _emergency_stop(reason: str, level: str, requested_by: str, no_wait: bool, as_json: bool) -> None:
    from pydantic import ValidationError

    from orch.cli.commands import EXIT_BAD_INPUT, CliError, follow, start_command
    from orch.cli.main import _client, _validation_message
    from orch.config import get_settings
    from orch.contracts.commands import CommandOptions
    from orch.contracts.emergency import EmergencyStopInput
    from orch.contracts.names import CRITICAL_QUEUE, EMERGENCY_STOP, TaskPriority

    if level not in {lv.value for lv in STOP_LEVELS}:
        raise CliError(stop_level_error(level), EXIT_BAD_INPUT)
    settings = get_settings()
    try:
        request = EmergencyStopInput(
            reason=reason,
            level=level,
            requested_by=requested_by,
            options=CommandOptions(
                max_retries=settings.max_retries,
                initial_retry_interval_seconds=0.5,
                max_retry_interval_seconds=5.0,
                step_timeout_seconds=settings.emergency_confirm_seconds + 30,
                workflow_timeout_seconds=settings.emergency_confirm_seconds + 120,
            ),
        )
    except ValidationError as err:
        raise CliError(_validation_message(err), EXIT_BAD_INPUT) from err
    client = await _client()
    handle = await start_command(
        client,
        EMERGENCY_STOP,
        request,
        id_prefix="emergency-stop",
        summary=f"Emergency stop ({request.level.value}): {request.reason}"[:200],
        timeout_seconds=request.options.workflow_timeout_seconds,
        task_queue=CRITICAL_QUEUE,
        priority=TaskPriority.CRITICAL,
    )
    if no_wait:
        print(
            json.dumps({"workflow_id": handle.id, "run_id": handle.result_run_id}) if as_json else handle.id
        )
        return
    if not as_json:
        from orch.cli.render import console

        console.print(f"Started {EMERGENCY_STOP} [bold]{handle.id}[/bold] ({request.level.value})")
    code = await follow(client, handle.id, as_json=as_json)
    if not as_json:
        from orch.cli.render import console

        console.print("Trading stays stopped until [bold]orch resume --confirm[/bold].")
    if code:
        raise typer.Exit(code)


def resume(
    confirm: Annotated[bool, typer.Option("--confirm", help="Required: yes, trade again.")] = False,
    reason: Annotated[str, typer.Option(help="Why (recorded with the resolution).")] = "resumed by operator",
    requested_by: Annotated[str, typer.Option(help="Who resumes.")] = "operator",
    no_wait: NoWait = False,
    as_json: JsonFlag = False,
) -> None:
    """Resume trading after an emergency stop (ResumeTrading): orch hft, SystemState, schedules, engines."""
    from orch.cli.main import _run

    _run(_resume(confirm, reason, requested_by, no_wait, as_json))


async def _resume(confirm: bool, reason: str, requested_by: str, no_wait: bool, as_json: bool) -> None:
    from pydantic import ValidationError

    from orch.cli.commands import EXIT_BAD_INPUT, CliError, follow, start_command
    from orch.cli.main import _client, _validation_message
    from orch.config import get_settings
    from orch.contracts.commands import CommandOptions
    from orch.contracts.emergency import CONFIRM_NEEDED, ResumeTradingInput
    from orch.contracts.names import CRITICAL_QUEUE, RESUME_TRADING, TaskPriority

    if not confirm:
        raise CliError(f"{CONFIRM_NEEDED} (nothing was changed)", EXIT_BAD_INPUT)
    settings = get_settings()
    try:
        request = ResumeTradingInput(
            confirm=True,
            reason=reason,
            requested_by=requested_by,
            options=CommandOptions(
                max_retries=settings.max_retries,
                initial_retry_interval_seconds=0.5,
                max_retry_interval_seconds=5.0,
                step_timeout_seconds=60,
                workflow_timeout_seconds=300,
            ),
        )
    except ValidationError as err:
        raise CliError(_validation_message(err), EXIT_BAD_INPUT) from err
    client = await _client()
    handle = await start_command(
        client,
        RESUME_TRADING,
        request,
        id_prefix="resume-trading",
        summary=f"Resume trading: {request.reason}"[:200],
        timeout_seconds=request.options.workflow_timeout_seconds,
        task_queue=CRITICAL_QUEUE,
        priority=TaskPriority.CRITICAL,
    )
    if no_wait:
        print(
            json.dumps({"workflow_id": handle.id, "run_id": handle.result_run_id}) if as_json else handle.id
        )
        return
    code = await follow(client, handle.id, as_json=as_json)
    if code:
        raise typer.Exit(code)


def health_check(as_json: JsonFlag = False) -> None:
    """Check every component (HealthCheck): a table, or --json; exit 1 when anything is unhealthy."""
    from orch.cli.main import _run

    _run(_health_check(as_json))


async def _health_check(as_json: bool) -> None:
    from datetime import UTC, datetime, timedelta

    from orch.cli.commands import new_workflow_id
    from orch.client import connect
    from orch.config import get_settings
    from orch.contracts.commands import CommandOptions
    from orch.contracts.emergency import ComponentHealth, HealthCheckInput, HealthCheckResult, HealthReport
    from orch.contracts.emergency import HealthStatus as Status
    from orch.contracts.names import CRITICAL_QUEUE, HEALTH_CHECK, TaskPriority

    settings = get_settings()

    def without_worker(*components: ComponentHealth) -> HealthReport:
        return HealthReport(
            checked_at=datetime.now(UTC), status=Status.UNHEALTHY, components=list(components)
        )

    try:
        client = await connect(settings)
    except RuntimeError as err:
        report = without_worker(
            ComponentHealth(
                component="temporal",
                status=Status.UNHEALTHY,
                detail=f"cannot reach {settings.temporal_address} (namespace {settings.namespace}): {err}",
            )
        )
        _show_health(report, as_json)
        raise typer.Exit(1) from None
    # Nobody polls orch-critical: the check itself could never run, and that is the finding.
    if not await _critical_pollers(client):
        report = without_worker(
            ComponentHealth(
                component="temporal", status=Status.HEALTHY, detail=f"{settings.temporal_address}"
            ),
            ComponentHealth(
                component=f"queue:{CRITICAL_QUEUE}",
                status=Status.UNHEALTHY,
                detail=f"no worker polls {CRITICAL_QUEUE}: start `orch worker` (or `orch up`)",
            ),
        )
        _show_health(report, as_json)
        raise typer.Exit(1)
    from temporalio.common import Priority

    budget = settings.health_check_timeout_seconds
    handle = await client.start_workflow(
        HEALTH_CHECK,
        HealthCheckInput(
            options=CommandOptions(
                max_retries=1, step_timeout_seconds=budget / 2, workflow_timeout_seconds=budget
            )
        ),
        id=new_workflow_id("health-check"),
        task_queue=CRITICAL_QUEUE,
        execution_timeout=timedelta(seconds=budget + 30),
        static_summary="orch health-check",
        priority=Priority(priority_key=int(TaskPriority.HIGH)),
        result_type=HealthCheckResult,
    )
    try:
        result = await asyncio.wait_for(handle.result(), timeout=budget + 5)
    except TimeoutError:
        await handle.terminate(reason="orch health-check gave up waiting")
        report = without_worker(
            ComponentHealth(
                component="health-check",
                status=Status.UNHEALTHY,
                detail=f"{handle.id} did not finish within {budget:g} s: is the orch-critical worker stuck?",
            )
        )
        _show_health(report, as_json)
        raise typer.Exit(1) from None
    except Exception as err:
        report = without_worker(
            ComponentHealth(component="health-check", status=Status.UNHEALTHY, detail=f"{handle.id}: {err}")
        )
        _show_health(report, as_json)
        raise typer.Exit(1) from None
    assert result.report is not None
    _show_health(result.report, as_json, workflow_id=handle.id)
    if result.report.status is Status.UNHEALTHY:
        raise typer.Exit(1)


async def _critical_pollers(client: Any) -> bool:
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    from orch.contracts.names import CRITICAL_QUEUE

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
