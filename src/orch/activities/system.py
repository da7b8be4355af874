"""Activities that read the Temporal server on behalf of `SystemState` and the commands."""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode


class SystemActivities:
    def __init__(self, client: Client) -> None:
        self._client = client

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
