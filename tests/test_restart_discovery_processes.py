"""RestartDiscoverySystem driven from outside this process: a worker killed with SIGKILL, the
real `temporal` CLI, and the `orch` CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid

import pytest

from orch.contracts.commands import RestartDiscoveryInput, RestartDiscoveryResult
from orch.contracts.names import RESTART_DISCOVERY
from orch.embedded import temporal_binary
from tests.conftest import orch_env, run_process
from tests.helpers import FAST, eventually, progress_of, schedule_view, system_state, workflow_ids

STEPS = [
    "stopping_rq_workers",
    "clearing_job_queue",
    "restarting_discovery_service",
    "validating_system_health",
    "updating_configuration",
]


def spawn_worker(settings) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "orch.workers.worker"],
        env=orch_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def test_a_worker_killed_mid_workflow_loses_nothing_and_repeats_nothing(settings, client):
    settings.discovery_scan_pacing_seconds = 0.05  # the validation scan takes about 3 s
    worker = spawn_worker(settings)
    try:
        await eventually(lambda: system_state(client), timeout=60)
        handle = await client.start_workflow(
            RESTART_DISCOVERY,
            RestartDiscoveryInput(strategy="legacy_v0", options=FAST),
            id=f"restart-{uuid.uuid4().hex[:8]}",
            task_queue="orch",
            result_type=RestartDiscoveryResult,
        )

        async def validating() -> bool:
            return (await progress_of(handle)).current_step == "validating_system_health"

        await eventually(validating, timeout=60)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        worker = spawn_worker(settings)
        result = await handle.result()
        state = await system_state(client)  # a query: it needs the worker alive
    finally:
        worker.kill()
        worker.wait()

    assert result.status == "completed" and [s.name for s in result.steps] == STEPS
    # One validation scan, started once; one configuration change, applied once.
    scans = await workflow_ids(client, f"WorkflowId = 'discovery-scan-restart-{handle.id}'")
    assert len(scans) == 1
    changes = [c for c in state.recent_changes if c.by == handle.id]
    assert [(c.field, c.old, c.new) for c in changes] == [("active_strategy", "hybrid_v1", "legacy_v0")]
    assert (await schedule_view(client))[0::2] == (False, "legacy_v0")
    assert state.running_commands == [] and state.waiting_commands == []


async def temporal_cli(settings, *args: str) -> subprocess.CompletedProcess[str]:
    return await run_process(
        str(temporal_binary()),
        *args,
        "--address",
        settings.temporal_address,
        "--namespace",
        settings.namespace,
        timeout=60,
    )


async def test_the_temporal_cli_starts_it_by_type_and_reads_progress(stack):
    workflow_id = f"from-temporal-cli-{uuid.uuid4().hex[:6]}"
    started = await temporal_cli(
        stack.settings,
        "workflow",
        "start",
        "--type",
        "RestartDiscoverySystem",
        "--task-queue",
        "orch",
        "--workflow-id",
        workflow_id,
        "--input",
        '{"strategy": "legacy_v0"}',
    )
    assert started.returncode == 0, started.stderr
    await stack.client.get_workflow_handle(workflow_id).result()
    queried = await temporal_cli(
        stack.settings,
        "workflow",
        "query",
        "--workflow-id",
        workflow_id,
        "--name",
        "progress",
        "--output",
        "json",
    )
    assert queried.returncode == 0, queried.stderr
    progress = json.loads(queried.stdout)["queryResult"][0]
    assert set(progress) == {
        "workflow_id",
        "command_type",
        "progress",
        "current_step",
        "status",
        "timestamp",
        "details",
    }
    assert set(progress["details"]) == {"steps_completed", "steps_failed", "error_messages"}
    assert progress["workflow_id"] == workflow_id
    assert progress["command_type"] == "restart_discovery_system"
    assert progress["status"] == "completed" and progress["progress"] == 1.0
    assert progress["details"]["steps_completed"] == STEPS
    assert progress["timestamp"].endswith("Z")


# ---- The orch CLI ------------------------------------------------------------------------------


async def test_orch_restart_discovery_reports_and_exits_zero(stack, orch):
    done = await orch("restart-discovery", "--strategy", "legacy_v0", "--json")
    assert done.returncode == 0, done.stderr
    output = json.loads(done.stdout)
    assert output["progress"]["status"] == "completed"
    assert output["result"]["active_strategy"] == "legacy_v0"
    human = await orch("discovery", "candidates")
    assert human.returncode == 0 and "legacy_v0" in human.stdout
    candidates = json.loads((await orch("discovery", "candidates", "--json")).stdout)
    assert (
        candidates["strategy"] == "legacy_v0"
        and len(candidates["candidates"]) == stack.settings.discovery_top_n
    )


async def test_orch_shows_a_live_progress_bar(stack, orch):
    done = await orch("restart-discovery", "--strategy", "legacy_v0")
    assert done.returncode == 0, done.stderr
    for step in STEPS:
        assert f"✓ {step}" in done.stdout
    assert "restart_discovery_system completed" in done.stdout


async def test_orch_refuses_an_unknown_strategy_with_exit_code_2(stack, orch):
    refused = await orch("restart-discovery", "--strategy", "nope")
    assert refused.returncode == 2
    assert "unknown strategy 'nope'" in refused.stderr and "hybrid_v1" in refused.stderr
    assert await workflow_ids(stack.client, "WorkflowType = 'RestartDiscoverySystem'") == []
    bad_retries = await orch("restart-discovery", "--strategy", "legacy_v0", "--max-retries", "-1")
    assert bad_retries.returncode == 2 and "--max-retries" in bad_retries.stderr


async def test_orch_no_wait_then_watch_status_and_list(stack, orch):
    started = await orch("restart-discovery", "--strategy", "legacy_v0", "--no-wait")
    assert started.returncode == 0, started.stderr
    workflow_id = started.stdout.strip()
    assert workflow_id.startswith("restart-discovery-")
    watched = await orch("watch", workflow_id, "--json")
    assert watched.returncode == 0 and json.loads(watched.stdout)["progress"]["status"] == "completed"
    status = json.loads((await orch("status", workflow_id, "--json")).stdout)
    assert status["status"] == "completed" and status["temporal_status"] == "COMPLETED"
    listed = json.loads((await orch("list", "--json")).stdout)
    assert [r["workflow_id"] for r in listed] == [workflow_id] and listed[0]["progress"] == 1.0
    assert "stopping_rq_workers" in (await orch("status", workflow_id)).stdout


async def test_orch_exits_one_when_the_workflow_fails(bare_stack, orch):
    await bare_stack.start(queues=("orch", "orch-critical"))  # no discovery worker: validation fails
    failed = await orch("restart-discovery", "--strategy", "legacy_v0", "--max-retries", "0", "--json")
    assert failed.returncode == 1
    output = json.loads(failed.stdout)
    assert output["progress"]["details"]["steps_failed"] == ["validating_system_health"]
    workflow_id = output["progress"]["workflow_id"]
    assert (await orch("status", workflow_id)).returncode == 1


@pytest.mark.parametrize("args", [["status", "no-such-workflow"], ["watch", "no-such-workflow"]])
async def test_orch_says_when_a_workflow_does_not_exist(stack, orch, args):
    missing = await orch(*args)
    assert missing.returncode == 1 and "no command workflow 'no-such-workflow'" in missing.stderr


def test_orch_says_when_temporal_is_unreachable(settings):
    env = orch_env(settings) | {"ORCH_TEMPORAL_ADDRESS": "127.0.0.1:1"}
    done = subprocess.run(
        [sys.executable, "-m", "orch.cli.main", "list"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 1 and "cannot reach Temporal at 127.0.0.1:1" in done.stderr
