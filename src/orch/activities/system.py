"""Activities that read the Temporal server on behalf of `SystemState` and the commands."""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from orch.clients.system_state import SystemStateClient
from orch.contracts.errors import ErrorType
from orch.contracts.names import SYSTEM_STATE_WORKFLOW_ID
from orch.contracts.system import CommandSlot, SlotDecision


class SystemActivities:
    def __init__(self, client: Client) -> None:
        self._client = client

    @activity.defn
    async def acquire_command_slot(self, slot: CommandSlot) -> SlotDecision:
        """Ask SystemState for a command slot (a local activity of the command, so one round trip)."""
        info = activity.info()
        try:
            return await SystemStateClient(self._client).acquire_command_slot(
                slot,
                # One id per command run: a retried attempt is answered, never counted twice.
                update_id=f"slot-{info.workflow_id}-{info.workflow_run_id}",
            )
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            raise ApplicationError(
                f"SystemState ({SYSTEM_STATE_WORKFLOW_ID}) is not running: start the stack with "
                "`orch up` or a worker with `orch worker`",
                type=ErrorType.COMMAND_REJECTED,
                non_retryable=True,
            ) from err
        except WorkflowUpdateFailedError as err:
            raise ApplicationError(
                str(err.cause), type=ErrorType.COMMAND_REJECTED, non_retryable=True
            ) from err

    @activity.defn
    async def find_closed_workflows(self, workflow_ids: list[str]) -> list[str]:
        """The ids among `workflow_ids` whose workflow is no longer running (or never existed)."""
        closed = []
        for workflow_id in workflow_ids:
            try:
                description = await self._client.get_workflow_handle(workflow_id).describe()
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND:
                    closed.append(workflow_id)
                    continue
                raise
            if description.status != WorkflowExecutionStatus.RUNNING:
                closed.append(workflow_id)
        return closed
