"""Starting, following and reading command workflows: what every `orch` command shares.

`start_follow_print` is the one sequence of a command that starts a workflow: start it, then print its
id (--no-wait), or follow it (the live bar, or nothing until one JSON document with --json), print its
result and exit with the code it earned. Exit codes are in `orch.cli.run`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.service import RPCError

from orch.cli.run import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, CliError, validation_message
from orch.clients.system_state import SystemStateClient
from orch.contracts.commands import CommandOptions, CommandStatus, Progress, StepReport
from orch.contracts.names import (
    COMMAND_WORKFLOW_TYPES,
    COMMANDS_QUEUE,
    SYSTEM_STATE_WORKFLOW_ID,
    TaskPriority,
)
from orch.contracts.system import SystemStateSnapshot

POLL_SECONDS = 0.2
# Temporal's own deadline backs up the workflow's timeout, in case a worker never picks it up at all.
EXECUTION_TIMEOUT_MARGIN = timedelta(seconds=60)

ModelT = TypeVar("ModelT", bound=BaseModel)


class CommandInput(Protocol):
    """Every command workflow's input carries its tuning."""

    options: CommandOptions


# What a command shows after its result, given the workflow and the exit code so far; returns the
# exit code (a report that cannot be written, or a winner not applied, turns a success into 1).
AfterResult = Callable[[WorkflowHandle[Any, Any], int], Awaitable[int]]


async def connect_client() -> Client:
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


def checked_input(model: type[ModelT], **fields: Any) -> ModelT:
    """The model, or exit code 2 naming each bad field: refused before anything starts."""
    try:
        return model(**fields)
    except ValidationError as err:
        raise CliError(validation_message(err), EXIT_BAD_INPUT) from err


def command_options(max_retries: int | None, timeout: float | None) -> CommandOptions:
    """--max-retries and --timeout, each defaulting to its ORCH_* setting."""
    from orch.config import get_settings

    settings = get_settings()
    return checked_input(
        CommandOptions,
        max_retries=settings.max_retries if max_retries is None else max_retries,
        workflow_timeout_seconds=settings.workflow_timeout_seconds if timeout is None else timeout,
    )


def new_workflow_id(prefix: str) -> str:
    return f"{prefix}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


async def system_state(client: Client) -> SystemStateSnapshot:
    try:
        return await SystemStateClient(client).snapshot()
    except Exception as err:
        raise CliError(
            f"SystemState ({SYSTEM_STATE_WORKFLOW_ID}) is not reachable: is `orch up` (or `orch worker`) "
            f"running? ({err})"
        ) from err


def refuse_unknown_strategies(state: SystemStateSnapshot, strategies: Sequence[str]) -> None:
    unknown = [s for s in strategies if s not in state.known_strategies]
    if unknown:
        raise CliError(
            f"unknown strateg{'y' if len(unknown) == 1 else 'ies'} {', '.join(map(repr, unknown))}; "
            f"known strategies: {', '.join(state.known_strategies)}",
            EXIT_BAD_INPUT,
        )


def refuse_if_running(state: SystemStateSnapshot, workflow_type: str) -> None:
    """A command that may run only once at a time: name the running one and how to follow it."""
    running = next((c for c in state.running_commands if c.command_type == workflow_type), None)
    if running is not None:
        raise CliError(
            f"{workflow_type} {running.workflow_id} is already running; "
            f"watch it with: orch watch {running.workflow_id}"
        )


async def start_command(
    client: Client,
    workflow_type: str,
    request: BaseModel,
    *,
    id_prefix: str,
    summary: str,
    timeout_seconds: float,
    task_queue: str = COMMANDS_QUEUE,
    priority: TaskPriority = TaskPriority.NORMAL,
    result_type: type | None = None,
) -> WorkflowHandle[Any, Any]:
    from temporalio.common import Priority

    return await client.start_workflow(
        workflow_type,
        request,
        id=new_workflow_id(id_prefix),
        task_queue=task_queue,
        execution_timeout=timedelta(seconds=timeout_seconds) + EXECUTION_TIMEOUT_MARGIN,
        static_summary=summary,
        priority=Priority(priority_key=int(priority)),
        result_type=result_type,
    )


async def start_follow_print(
    client: Client,
    workflow_type: str,
    request: CommandInput,
    *,
    id_prefix: str,
    summary: str,
    no_wait: bool,
    as_json: bool,
    announce: str | None = "",
    task_queue: str = COMMANDS_QUEUE,
    priority: TaskPriority = TaskPriority.NORMAL,
    after_result: AfterResult | None = None,
) -> None:
    """Start the command; with --no-wait print its id, else follow it, print its result and exit 1 when
    it did not complete.

    `announce` ends the "Started <type> <id>" line (None: no such line); `after_result` shows what the
    command adds after the result and may change the exit code.
    """
    handle = await start_command(
        client,
        workflow_type,
        request,
        id_prefix=id_prefix,
        summary=summary,
        timeout_seconds=request.options.workflow_timeout_seconds,
        task_queue=task_queue,
        priority=priority,
    )
    if no_wait:
        print(
            json.dumps({"workflow_id": handle.id, "run_id": handle.result_run_id}) if as_json else handle.id
        )
        return
    if announce is not None and not as_json:
        from orch.cli.render import console

        console.print(f"Started {workflow_type} [bold]{handle.id}[/bold]{announce}")
    code = await follow(client, handle.id, as_json=as_json)
    if after_result is not None:
        code = await after_result(handle, code)
    if code:
        raise typer.Exit(code)


async def read_progress(handle: WorkflowHandle[Any, Any]) -> Progress:
    return await handle.query("progress", result_type=Progress)


async def read_steps(handle: WorkflowHandle[Any, Any]) -> list[StepReport]:
    """Each step's report so far; none from a workflow that does not answer `steps` (a worker older than
    the query): the live view then shows what `progress` says."""
    try:
        return await handle.query("steps", result_type=list[StepReport])
    except (WorkflowQueryFailedError, RPCError):
        return []


async def follow(client: Client, workflow_id: str, *, as_json: bool) -> int:
    """Show live progress until the workflow closes; print its result; return the exit code."""
    from orch.cli import render

    handle = client.get_workflow_handle(workflow_id)
    if as_json:
        await _wait_closed(handle)
    else:
        await render.live_progress(lambda: read_progress(handle), lambda: read_steps(handle), POLL_SECONDS)
    return await report_outcome(handle, as_json=as_json)


async def _wait_closed(handle: WorkflowHandle[Any, Any]) -> None:
    while (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
        await asyncio.sleep(POLL_SECONDS)


async def report_outcome(handle: WorkflowHandle[Any, Any], *, as_json: bool) -> int:
    from orch.cli import render

    progress = await read_progress(handle)
    try:
        result = await handle.result()
        error = None
    except WorkflowFailureError as err:
        result, error = _failure_details(err)
    if as_json:
        print(json.dumps({"progress": progress.model_dump(mode="json"), "result": result, "error": error}))
    else:
        render.outcome(progress, result, error)
    return EXIT_OK if progress.status == CommandStatus.COMPLETED else EXIT_FAILED


def _failure_details(err: WorkflowFailureError) -> tuple[dict[str, Any] | None, str]:
    cause = err.cause
    details = getattr(cause, "details", None) or ()
    result = next((d for d in details if isinstance(d, dict)), None)
    return result, getattr(cause, "message", None) or str(cause or err)


async def list_commands(client: Client, limit: int) -> list[dict[str, Any]]:
    types = " OR ".join(f"WorkflowType = '{t}'" for t in COMMAND_WORKFLOW_TYPES)
    executions = []
    async for execution in client.list_workflows(f"({types})", limit=limit):
        executions.append(execution)

    async def row(execution: Any) -> dict[str, Any]:
        progress: Progress | None = None
        try:
            progress = await read_progress(client.get_workflow_handle(execution.id, run_id=execution.run_id))
        except Exception:
            pass
        return {
            "workflow_id": execution.id,
            "type": execution.workflow_type,
            "temporal_status": execution.status.name if execution.status else "UNKNOWN",
            "status": progress.status.value if progress else "unknown",
            "progress": progress.progress if progress else 0.0,
            "current_step": progress.current_step if progress else None,
            "started": execution.start_time.isoformat() if execution.start_time else None,
        }

    return list(await asyncio.gather(*(row(e) for e in executions)))
