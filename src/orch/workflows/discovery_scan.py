"""`DiscoveryScan`: rank the universe with one strategy and publish the candidates.

Started by the `discovery-scan` Schedule on `orch-discovery`, and once by each
`RestartDiscoverySystem` run to validate the new strategy before it goes live.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from orch.activities.discovery import DiscoveryActivities
    from orch.contracts.discovery import CandidateSet, DiscoveryScanInput
    from orch.contracts.errors import NON_RETRYABLE_ERROR_TYPES
    from orch.contracts.names import COMMANDS_QUEUE


@workflow.defn(name="DiscoveryScan")
class DiscoveryScanWorkflow:
    @workflow.run
    async def run(self, request: DiscoveryScanInput) -> CandidateSet:
        workflow.set_current_details(f"Ranking the universe with **{request.strategy}**")
        candidates = await workflow.execute_activity_method(
            DiscoveryActivities.rank_universe,
            request,
            start_to_close_timeout=timedelta(seconds=request.timeout_seconds),
            heartbeat_timeout=timedelta(seconds=request.heartbeat_timeout_seconds),
            retry_policy=RetryPolicy(maximum_attempts=3, non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES),
            summary=f"rank universe with {request.strategy}",
        )
        if request.publish:
            published = await workflow.execute_activity_method(
                DiscoveryActivities.publish_candidates,
                candidates,
                # Publishing talks to SystemState, which lives on the commands queue's workers.
                task_queue=COMMANDS_QUEUE,
                start_to_close_timeout=timedelta(seconds=30),
                summary="publish candidates to SystemState",
            )
            workflow.set_current_details(
                f"{len(candidates.candidates)} candidates; "
                + ("published" if published else "not published: strategy no longer active")
            )
        return candidates
