"""RestartDiscoverySystem against a real Temporal server: the five steps, failures, compensation,
the singleton rule and the durable concurrency cap."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, timedelta

import pytest
from temporalio import activity, workflow
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from orch.activities.steps import step_activity
from orch.agents.discovery import discovery_strategy
from orch.contracts.commands import CommandOptions, RestartDiscoveryInput, RestartDiscoveryResult, StepOutcome
from orch.contracts.names import DISCOVERY_QUEUE, RESTART_DISCOVERY
from orch.workflows.command import CommandWorkflow, Step
from tests.helpers import FAST, eventually, progress_of, schedule_view, system_state, workflow_ids

STEPS = [
    "stopping_rq_workers",
    "clearing_job_queue",
    "restarting_discovery_service",
    "validating_system_health",
    "updating_configuration",
]


@discovery_strategy("broken_test", description="an agent made to fail", lookback=20)
def _broken_strategy(histories, params):
    raise RuntimeError("pattern model crashed: singular matrix")


async def start_restart(client, strategy: str = "legacy_v0", **kwargs):
    request = RestartDiscoveryInput(strategy=strategy, options=kwargs.pop("options", FAST), **kwargs)
    return await client.start_workflow(
        RESTART_DISCOVERY,
        request,
        id=f"restart-{uuid.uuid4().hex[:8]}",
        task_queue="orch",
        result_type=RestartDiscoveryResult,
    )


async def test_progress_moves_through_the_five_steps_and_switches_the_strategy(stack):
    stack.settings.discovery_scan_pacing_seconds = 0.02  # the validation scan takes about a second
    handle = await start_restart(stack.client, "legacy_v0")
    seen: list[str] = []
    while True:
        progress = await progress_of(handle)
        if progress.current_step and (not seen or seen[-1] != progress.current_step):
            seen.append(progress.current_step)
        if progress.status.finished:
            break
        await asyncio.sleep(0.02)
    result = await handle.result()

    assert [STEPS.index(s) for s in seen] == sorted(STEPS.index(s) for s in seen), seen
    assert "validating_system_health" in seen
    assert progress.status == "completed" and progress.progress == 1.0
    assert progress.details.steps_completed == STEPS
    assert result.previous_strategy == "hybrid_v1" and result.active_strategy == "legacy_v0"
    assert result.candidates_found > 0
    assert [s.attempts for s in result.steps] == [1, 1, 1, 1, 1]
    state = await system_state(stack.client)
    assert state.config.active_strategy == "legacy_v0"
    assert state.latest_candidates.strategy == "legacy_v0"
    assert state.recent_changes[-1].by == handle.id
    assert await schedule_view(stack.client) == (
        False,
        f"resumed with legacy_v0 by RestartDiscoverySystem {handle.id}",
        "legacy_v0",
    )
    assert state.running_commands == []


async def test_unknown_strategy_fails_at_once_and_nothing_is_stopped(stack):
    before = await schedule_view(stack.client)
    handle = await start_restart(stack.client, "no_such_strategy")
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.non_retryable and cause.type == "UnknownStrategy"
    assert "hybrid_v1" in cause.message and "legacy_v0" in cause.message
    progress = await progress_of(handle)
    assert progress.status == "failed" and progress.details.steps_completed == []
    assert await schedule_view(stack.client) == before
    assert (await system_state(stack.client)).config.active_strategy == "hybrid_v1"


async def test_malformed_input_fails_without_retrying(stack):
    handle = await stack.client.start_workflow(
        RESTART_DISCOVERY, {"strategy": 5, "typo": True}, id=f"bad-{uuid.uuid4().hex[:6]}", task_queue="orch"
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(handle.result(), 20)
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InvalidInput" and cause.non_retryable
    assert "strategy: Input should be a valid string (got 5)" in cause.message, cause.message
    assert "typo: Extra inputs are not permitted" in cause.message, cause.message


async def test_a_transient_failure_is_retried_and_the_step_succeeds(bare_stack):
    # No worker polls orch-discovery yet: validation fails (retryable) until one appears.
    await bare_stack.start(queues=("orch", "orch-critical"))
    options = FAST.model_copy(update={"max_retries": 8, "initial_retry_interval_seconds": 0.5})
    handle = await start_restart(bare_stack.client, "legacy_v0", options=options)

    async def validation_failed_once() -> bool:
        progress = await progress_of(handle)
        description = await handle.describe()
        pending = description.raw_description.pending_activities
        return progress.current_step == "validating_system_health" and any(p.attempt >= 2 for p in pending)

    await eventually(validation_failed_once)
    await bare_stack.start(queues=(DISCOVERY_QUEUE,))
    result = await handle.result()
    validate = next(s for s in result.steps if s.name == "validating_system_health")
    assert validate.status == "completed" and validate.attempts >= 2
    assert (await system_state(bare_stack.client)).config.active_strategy == "legacy_v0"


async def test_a_failing_step_is_recorded_with_its_retries_and_compensated(bare_stack):
    await bare_stack.start(queues=("orch", "orch-critical"))  # and never a discovery worker
    options = FAST.model_copy(update={"max_retries": 2})
    handle = await start_restart(bare_stack.client, "legacy_v0", options=options)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    result = failure.value.cause.details[0]
    validate = next(s for s in result["steps"] if s["name"] == "validating_system_health")
    assert validate["status"] == "failed" and validate["attempts"] == 3
    progress = await progress_of(handle)
    assert progress.status == "failed"
    assert progress.details.steps_failed == ["validating_system_health"]
    assert progress.details.steps_completed == STEPS[:3]
    assert any("no worker is polling task queue orch-discovery" in m for m in progress.details.error_messages)
    # Compensation: the schedule runs the old strategy again, unpaused; the configuration is unchanged.
    paused, _, strategy = await schedule_view(bare_stack.client)
    assert (paused, strategy) == (False, "hybrid_v1")
    assert result["compensation"] and "restored to hybrid_v1" in result["compensation"][0]
    assert (await system_state(bare_stack.client)).config.active_strategy == "hybrid_v1"


async def test_an_agent_that_fails_fails_the_validation_step(stack):
    handle = await start_restart(stack.client, "broken_test")
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    progress = await progress_of(handle)
    assert progress.details.steps_failed == ["validating_system_health"]
    assert any("singular matrix" in m for m in progress.details.error_messages)
    assert (await system_state(stack.client)).config.active_strategy == "hybrid_v1"
    assert (await schedule_view(stack.client))[2] == "hybrid_v1"


@pytest.mark.parametrize("force_stop", [False, True])
async def test_scans_in_flight_are_drained_or_cancelled(stack, force_stop):
    stack.settings.discovery_scan_pacing_seconds = 0.05  # a scan takes about 3 s
    await stack.client.get_schedule_handle("discovery-scan").trigger()
    running = "WorkflowType = 'DiscoveryScan' AND ExecutionStatus = 'Running'"
    [scan_id] = await eventually(lambda: workflow_ids(stack.client, running))
    scan = stack.client.get_workflow_handle(scan_id)
    await eventually(lambda: _picked_up(scan))
    handle = await start_restart(stack.client, "legacy_v0", force_stop=force_stop)
    result = await handle.result()
    stopped = result.steps[0]
    expected = WorkflowExecutionStatus.CANCELED if force_stop else WorkflowExecutionStatus.COMPLETED
    assert (await scan.describe()).status == expected
    assert ("cancelled" if force_stop else "drained") in stopped.summary and "1 scans" in stopped.summary


async def _picked_up(handle) -> bool:
    return bool((await handle.describe()).raw_description.pending_activities)


async def test_a_second_restart_is_refused_while_one_runs(stack):
    stack.settings.discovery_scan_pacing_seconds = 0.05
    first = await start_restart(stack.client, "legacy_v0")
    await eventually(lambda: _status_is(first, "running"))
    second = await start_restart(stack.client, "hybrid_v1")
    with pytest.raises(WorkflowFailureError) as failure:
        await second.result()
    assert f"{first.id} is already running" in failure.value.cause.message
    assert f"orch watch {first.id}" in failure.value.cause.message
    assert (await first.result()).active_strategy == "legacy_v0"


async def _status_is(handle, status: str) -> bool:
    return (await progress_of(handle)).status == status


# ---- The durable concurrency cap, with a command of the tests' own --------------------------------

NAP = Step("napping", "Nap")


@activity.defn
@step_activity
async def nap(seconds: float) -> StepOutcome:
    await asyncio.sleep(seconds)
    return StepOutcome(summary=f"napped {seconds} s")


# Unsandboxed: the sandbox would re-import this test module, and with it numpy, which refuses.
@workflow.defn(name="NapCommand", sandboxed=False)
class NapCommand(CommandWorkflow):
    command_type = "nap"
    steps = (NAP,)

    @workflow.init
    def __init__(self, seconds: float) -> None:
        self._begin(CommandOptions())

    @workflow.run
    async def run(self, seconds: float) -> dict:
        async def body() -> None:
            await self.step_runner.run(NAP, nap, seconds, result_type=StepOutcome)

        return await self.execute(body)


async def test_the_concurrency_cap_queues_commands_durably(bare_stack):
    await bare_stack.start(extra_workflows=[NapCommand], extra_activities=[nap])
    await bare_stack.system_state().execute_update("set_max_concurrent_workflows", 1)
    first = await bare_stack.client.start_workflow("NapCommand", 1.5, id="nap-1", task_queue="orch")
    await eventually(lambda: _status_is(first, "running"))
    second = await bare_stack.client.start_workflow("NapCommand", 0.1, id="nap-2", task_queue="orch")
    await eventually(lambda: _waiting(bare_stack.client, "nap-2"))
    assert (await progress_of(second)).status == "queued"
    state = await system_state(bare_stack.client)
    assert [s.workflow_id for s in state.running_commands] == ["nap-1"]
    await first.result()
    await second.result()
    first_closed = (await first.describe()).close_time
    second_started_work = await _first_activity_start(second)
    assert second_started_work >= first_closed - timedelta(milliseconds=50)
    assert (await system_state(bare_stack.client)).running_commands == []


async def _waiting(client, workflow_id: str) -> bool:
    return any(s.workflow_id == workflow_id for s in (await system_state(client)).waiting_commands)


async def _first_activity_start(handle):
    async for event in handle.fetch_history_events():
        if event.HasField("activity_task_started_event_attributes"):
            return event.event_time.ToDatetime(tzinfo=UTC)
    raise AssertionError("no activity started")


async def test_a_terminated_command_gives_its_slot_back(bare_stack):
    await bare_stack.start(extra_workflows=[NapCommand], extra_activities=[nap])
    system = bare_stack.system_state()
    await system.execute_update("set_max_concurrent_workflows", 1)
    first = await bare_stack.client.start_workflow("NapCommand", 60, id="nap-stuck", task_queue="orch")
    await eventually(lambda: _status_is(first, "running"))
    await first.terminate(reason="test: a command that dies without releasing")
    second = await bare_stack.client.start_workflow("NapCommand", 0.1, id="nap-after", task_queue="orch")
    # SystemState's reaper notices the terminated holder (the tests' reap interval is 1 s).
    await asyncio.wait_for(second.result(), 30)
    assert (await system_state(bare_stack.client)).running_commands == []
