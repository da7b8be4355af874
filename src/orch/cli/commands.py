"""Starting, following and reading command workflows: what every `orch` command shares.

Exit codes: 0 success, 1 the workflow failed (or was refused), 2 bad input.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle

from orch.clients.system_state import SystemStateClient
from orch.contracts.commands import CommandStatus, Progress
from orch.contracts.names import (
    COMMAND_WORKFLOW_TYPES,
    COMMANDS_QUEUE,
    SYSTEM_STATE_WORKFLOW_ID,
    TaskPriority,
)
from orch.contracts.system import SystemStateSnapshot

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
POLL_SECONDS = 0.2
# Temporal's own deadline backs up the workflow's timeout, in case a worker never picks it up at all.
EXECUTION_TIMEOUT_MARGIN = timedelta(seconds=60)


class CliError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


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
    )


async def read_progress(handle: WorkflowHandle[Any, Any]) -> Progress:
    return await handle.query("progress", result_type=Progress)


async def follow(client: Client, workflow_id: str, *, as_json: bool) -> int:
    """Show live progress until the workflow closes; print its result; return the exit code."""
    from orch.cli import render

    handle = client.get_workflow_handle(workflow_id)
    if as_json:
        await _wait_closed(handle)
    else:
        await render.live_progress(lambda: read_progress(handle), POLL_SECONDS)
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
