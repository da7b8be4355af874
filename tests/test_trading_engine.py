"""`TradingEngine` on a real Temporal server with a real `orch hft`: cycles every interval, pause, resume and
stop, the `set_config` validator, `status`, continue-as-new without losing anything, the emergency stop by
signal (also from the raw `temporal` CLI), the bootstrap's autostart, and the `orch cycle` commands.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType, ParentClosePolicy
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter

from orch.contracts.cycle import CycleOutcome, StrategyWeights, WeightsSource
from orch.contracts.emergency import ResumeTradingInput, ResumeTradingResult
from orch.contracts.engine import (
    EngineConfigChange,
    EngineRunState,
    EngineStatus,
    TradingCycleResult,
    TradingEngineInput,
    cycle_workflow_id,
    engine_workflow_id,
)
from orch.contracts.names import (
    COMMANDS_QUEUE,
    CRITICAL_QUEUE,
    EMERGENCY_STOP,
    RESUME_TRADING,
    SYSTEM_STATE_WORKFLOW_ID,
    TRADING_CYCLE,
    TRADING_ENGINE,
    TaskPriority,
)
from orch.contracts.system import EmergencyLevel, ResumeRequest
from orch.contracts.trading import StrategyKind
from orch.embedded import temporal_binary
from orch.workers.bootstrap import bootstrap
from tests.conftest import Stack, run_process
from tests.cycle_support import (
    ACCOUNT,
    CRYPTO,
    fast_config,
    fast_policies,
    hft_get,
    hft_process,
    start_cycle_stack,
)
from tests.helpers import eventually, system_state, workflow_ids
from tests.test_hft_process import HftUnderTest, free_port, hft

__all__ = ["hft", "hft_process"]  # fixtures used by name

ENGINE_ID = engine_workflow_id(ACCOUNT)


async def start_engine(client: Client, **config: Any) -> Any:
    config.setdefault("cycle_interval_seconds", 1.0)
    return await client.start_workflow(
        TRADING_ENGINE,
        TradingEngineInput(account=ACCOUNT, **fast_config(**config)),
        id=ENGINE_ID,
        task_queue=COMMANDS_QUEUE,
    )


async def status_of(handle: Any) -> EngineStatus:
    return await handle.query("status", result_type=EngineStatus)


async def until(handle: Any, check: Any, timeout: float = 60) -> EngineStatus:
    async def ready() -> EngineStatus | None:
        status = await status_of(handle)
        return status if check(status) else None

    return await eventually(ready, timeout=timeout, every=0.1)


def consistent(status: EngineStatus) -> bool:
    return status.cycles_total == status.cycles_successful + status.cycles_degraded + status.cycles_failed


async def cycle_ids(client: Client) -> list[str]:
    return await workflow_ids(client, f"WorkflowType = '{TRADING_CYCLE}'")


async def test_the_engine_runs_cycles_counts_them_pauses_resumes_and_stops_after_the_cycle(
    bare_stack: Stack, hft_process: HftUnderTest
) -> None:
    await start_cycle_stack(bare_stack, hft_process)
    handle = await start_engine(bare_stack.client)

    status = await until(handle, lambda s: s.cycles_total >= 2)
    assert consistent(status) and status.cycles_successful >= 1
    assert status.success_rate > 0 and status.average_duration_seconds
    assert status.last_report is not None and status.last_report.outcome is not CycleOutcome.FAILED
    assert status.last_report.execution is not None and status.last_report.execution.plans_sent >= 1
    assert status.interval_adjustments >= 1  # the adaptive scheduler moved the 1 s base

    await handle.signal("pause")
    paused = await until(handle, lambda s: s.state is EngineRunState.PAUSED)
    await asyncio.sleep(2.5)  # more than the interval: no cycle starts while paused
    assert (await status_of(handle)).cycles_total == paused.cycles_total

    await handle.signal("resume")
    running = await until(
        handle, lambda s: s.cycles_total > paused.cycles_total and s.current_cycle is not None
    )
    await handle.signal("stop")
    final = EngineStatus.model_validate(await handle.result())
    assert final.state is EngineRunState.STOPPED
    # The cycle running when `stop` arrived finished (it was not cancelled), and no other started.
    assert final.cycles_total == running.cycles_total + 1
    last = await bare_stack.client.get_workflow_handle(running.current_cycle or "").describe()
    assert last.status == WorkflowExecutionStatus.COMPLETED
    ids = await cycle_ids(bare_stack.client)
    assert sorted(ids) == sorted(f"{ENGINE_ID}-cycle-{n}" for n in range(1, final.cycles_total + 1))


async def test_set_config_refuses_bad_values_and_applies_good_ones(bare_stack: Stack) -> None:
    bare_stack.settings.hft_url = f"http://127.0.0.1:{free_port()}"  # nothing listens: no hft needed here
    await bare_stack.start()
    handle = await start_engine(bare_stack.client, cycle_interval_seconds=3600)
    first = await until(handle, lambda s: s.cycles_total >= 1)
    # The first cycle waited for orch hft, but only up to its bound, and said so.
    assert first.last_report is not None
    assert any("orch hft not ready after 2 s" in n for n in first.last_report.notes), first.last_report.notes

    refused = {
        "cycle_interval_seconds": ({"cycle_interval_seconds": -1}, "greater than 0"),
        "bounds": ({"min_interval_seconds": 100, "max_interval_seconds": 10}, "min_interval_seconds <="),
        "a limit out of range": ({"risk_limits": {"max_drawdown": 2}}, "max_drawdown"),
        "an unknown limit": ({"risk_limits": {"max_leverage": 2}}, "max_leverage"),
        "a negative weight": ({"strategy_weights": {"trend": -1}}, "must not be negative"),
        "an unknown strategy kind": ({"strategy_weights": {"momentum": 1}}, "unknown strategy kind"),
        "settling longer than the step": ({"settle_seconds": 120}, "must exceed"),
        "an unknown agent": ({"enable_agents": ["oracle"]}, "oracle"),
    }
    for what, (change, message) in refused.items():
        with pytest.raises(WorkflowUpdateFailedError) as error:
            await handle.execute_update("set_config", EngineConfigChange(**change))
        assert message in str(error.value.cause), (what, error.value.cause)
    before = await status_of(handle)
    assert before.config.risk_limits.max_drawdown == 0.2
    assert before.config.scheduler.base_interval_seconds == 3600

    config = await handle.execute_update(
        "set_config",
        EngineConfigChange(
            cycle_interval_seconds=1, strategy_weights={"trend": 5}, risk_limits={"max_drawdown": 0.1}
        ),
    )
    assert config["scheduler"]["base_interval_seconds"] == 1
    status = await status_of(handle)
    assert status.config.risk_limits.max_drawdown == 0.1
    assert (
        status.weights is not None and max(status.weights.root, key=status.weights.root.get).value == "trend"
    )
    # The shorter interval applies at once (no hour-long wait), and the next cycle persists the weights.
    await until(handle, lambda s: s.cycles_total >= 2)
    state = await eventually(lambda: _learning(bare_stack.client))
    assert state.weights == status.weights
    await handle.signal("stop")
    await handle.result()


async def _learning(client: Client) -> Any:
    return (await system_state(client)).learning


async def test_continue_as_new_keeps_counters_weights_and_configuration(
    bare_stack: Stack, hft_process: HftUnderTest
) -> None:
    await start_cycle_stack(bare_stack, hft_process)
    handle = await start_engine(bare_stack.client, max_cycles_per_run=2)
    first_run = (await handle.describe()).run_id
    await handle.execute_update("set_config", EngineConfigChange(top_n=3))

    # Plans close in orch hft (trend reversals) and later cycles learn from them: weights move.
    status = await until(handle, lambda s: s.runs >= 3 and s.cycles_total >= 5, timeout=120)
    learned = await eventually(lambda: _learning(bare_stack.client), timeout=90)
    await handle.signal("stop")
    final = EngineStatus.model_validate(await handle.result())

    assert (await handle.describe()).run_id != first_run
    assert final.runs >= status.runs >= 3
    assert consistent(final) and final.cycles_total >= 5
    assert final.next_cycle_number == final.cycles_total + 1
    assert final.config.top_n == 3  # a set_config change survives continue-as-new
    # Every cycle ran once, across every run: none lost, none repeated.
    ids = await cycle_ids(bare_stack.client)
    assert sorted(ids) == sorted(f"{ENGINE_ID}-cycle-{n}" for n in range(1, final.cycles_total + 1))
    assert learned.updates >= 1
    assert final.weights == (await _learning(bare_stack.client)).weights


async def test_emergency_stop_by_signal_stops_cycles_everywhere_until_resume_and_systemstate_agree(
    bare_stack: Stack, hft_process: HftUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()

    def slow_patterns(*args: object, **kwargs: object) -> None:
        release.wait(60)  # a cycle held in step 3 until the test lets go
        raise RuntimeError("pattern detector released")

    monkeypatch.setattr("orch.activities.cycle.analyse_patterns", slow_patterns)
    await start_cycle_stack(bare_stack, hft_process)
    client = bare_stack.client
    handle = await start_engine(client)
    try:
        held = await until(handle, lambda s: s.current_cycle is not None)

        # The raw `temporal` CLI, as an operator would: no orch involved.
        done = await run_process(
            str(temporal_binary()),
            "workflow",
            "signal",
            "--address",
            bare_stack.settings.temporal_address,
            "--namespace",
            bare_stack.settings.namespace,
            "--workflow-id",
            ENGINE_ID,
            "--name",
            "emergency_stop",
            "--input",
            json.dumps({"reason": "drill from the temporal CLI", "level": "halt", "requested_by": "pytest"}),
        )
        assert done.returncode == 0, done.stderr
        stopped = await until(
            handle, lambda s: s.state is EngineRunState.EMERGENCY_STOPPED and s.current_cycle is None
        )
        assert (
            stopped.last_report is not None
            and "cancelled by the emergency stop" in stopped.last_report.notes[0]
        )
        cycle = await client.get_workflow_handle(held.current_cycle or "").describe()
        assert cycle.status == WorkflowExecutionStatus.CANCELED

        # The engine started EmergencyStop on orch-critical at CRITICAL priority, abandoned on close.
        escalated = await until(
            handle, lambda s: s.emergency is not None and s.emergency.incident_id is not None
        )
        child_id = escalated.emergency.incident_id  # type: ignore[union-attr]
        assert child_id is not None and child_id.startswith(f"emergency-stop-{ENGINE_ID}-1-")
        initiated = [
            e.start_child_workflow_execution_initiated_event_attributes
            async for e in handle.fetch_history_events()
            if e.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED
            and e.start_child_workflow_execution_initiated_event_attributes.workflow_type.name
            == EMERGENCY_STOP
        ]
        assert len(initiated) == 1
        started = initiated[0]
        assert started.workflow_id == child_id and started.task_queue.name == CRITICAL_QUEUE
        assert started.parent_close_policy == ParentClosePolicy.PARENT_CLOSE_POLICY_ABANDON
        assert started.priority.priority_key == TaskPriority.CRITICAL
        [arg] = await pydantic_data_converter.decode(started.input.payloads, [dict])
        assert arg == {
            "reason": "drill from the temporal CLI",
            "level": "halt",
            "requested_by": f"pytest via {ENGINE_ID}",
        }

        # EmergencyStop ran: orch hft halted, the incident recorded, the engine told (with its id).
        try:
            await client.get_workflow_handle(child_id).result()
        except WorkflowFailureError:
            pass  # an action may fail (it says which); what matters here is checked below
        assert (await hft_get(hft_process, "/state"))["state"] == "halted"
        state = await system_state(client)
        assert state.config.emergency_level is EmergencyLevel.HALT
        assert any(i.incident_id == child_id for i in state.incidents)
        assert (await status_of(handle)).emergency.incident_id == child_id  # type: ignore[union-attr]

        # `resume` alone is not enough while SystemState still records the emergency.
        release.set()
        await handle.signal("resume")
        waiting = await until(handle, lambda s: s.resume_requested)
        await asyncio.sleep(1.5)
        still = await status_of(handle)
        assert still.state is EngineRunState.EMERGENCY_STOPPED and still.cycles_total == waiting.cycles_total
        await client.get_workflow_handle(SYSTEM_STATE_WORKFLOW_ID).execute_update(
            "resolve_emergency", ResumeRequest(requested_by="pytest", confirm=True, reason="drill over")
        )
        resumed = await until(handle, lambda s: s.cycles_total > waiting.cycles_total)
        assert resumed.emergency is None

        # A signal carrying an incident id came from EmergencyStop: no second EmergencyStop starts.
        await handle.signal(
            "emergency_stop", {"reason": "already handled", "incident_id": "incident-elsewhere"}
        )
        await until(handle, lambda s: s.state is EngineRunState.EMERGENCY_STOPPED)
        assert await workflow_ids(client, f"WorkflowType = '{EMERGENCY_STOP}'") == [child_id]

        # As after a resume that stopped before its last step: SystemState clear, orch hft trading, only
        # the engine still stopped. Running ResumeTrading again finishes the job.
        async with httpx.AsyncClient(headers=hft_process.headers, timeout=5) as http:
            (await http.post(hft_process.url + "/resume", json={"reason": "by hand"})).raise_for_status()
        finished = await client.execute_workflow(
            RESUME_TRADING,
            ResumeTradingInput(confirm=True, reason="finish the resume"),
            id="resume-leftover-engine",
            task_queue=CRITICAL_QUEUE,
            result_type=ResumeTradingResult,
        )
        assert f"engine {ENGINE_ID} still emergency-stopped" in finished.steps[0].summary
        assert finished.engines_signalled == [ENGINE_ID]
        await until(handle, lambda s: s.emergency is None)

        # A raw signal with a blank reason and no name still stops trading everywhere.
        await handle.signal("emergency_stop", {"reason": "  ", "requested_by": ""})
        second = await until(
            handle,
            lambda s: (
                s.emergency is not None
                and bool(s.emergency.incident_id)
                and s.emergency.incident_id != child_id
            ),
        )
        second_id = second.emergency.incident_id  # type: ignore[union-attr]
        assert second_id.startswith(f"emergency-stop-{ENGINE_ID}-2-")  # type: ignore[union-attr]
        await client.get_workflow_handle(second_id or "").result()
        assert (await hft_get(hft_process, "/state"))["state"] == "halted"
        incident = next(i for i in (await system_state(client)).incidents if i.incident_id == second_id)
        assert incident.reason == f"emergency_stop signalled to {ENGINE_ID}, no reason given"
        assert incident.requested_by == f"unknown via {ENGINE_ID}"
        await handle.signal("stop")
        assert EngineStatus.model_validate(await handle.result()).state is EngineRunState.STOPPED
    finally:
        release.set()


async def test_the_bootstrap_starts_one_engine_and_leaves_a_stopped_one_stopped(
    bare_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCH_HFT_ACCOUNT", ACCOUNT)
    settings = bare_stack.settings
    settings.hft_url = f"http://127.0.0.1:{free_port()}"
    settings.trading_autostart = True
    settings.cycle_interval_seconds = 3600
    await bare_stack.start()  # bootstraps once
    await bootstrap(bare_stack.client, settings)  # a second worker replica
    engines = await workflow_ids(bare_stack.client, f"WorkflowType = '{TRADING_ENGINE}'")
    assert engines == [ENGINE_ID]
    handle = bare_stack.client.get_workflow_handle(ENGINE_ID)
    assert (await status_of(handle)).config.scheduler.base_interval_seconds == 3600

    await handle.signal("stop")
    await handle.result()
    await bootstrap(bare_stack.client, settings)  # stopped on purpose: stays stopped
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED


async def test_orch_cycle_commands(
    bare_stack: Stack, hft_process: HftUnderTest, orch: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCH_HFT_SYMBOLS", json.dumps(CRYPTO))  # the worker's view of orch hft's symbols
    await start_cycle_stack(bare_stack, hft_process)
    account = ("--account", ACCOUNT)

    # Commands that change nothing run side by side: each is a process that spends seconds importing.
    missing, bad, bad_number = await asyncio.gather(
        orch("cycle", "status", *account, "--json"),
        orch("cycle", "start", "--interval", "0", *account),
        orch("cycle", "report", "0", *account),
    )
    assert missing.returncode == 1 and "orch cycle start" in missing.stderr
    # Refused by the CLI's option check before anything connects (cli/values.py), naming the option.
    assert bad.returncode == 2 and "Invalid value for '--interval'" in bad.stderr, bad.stderr
    assert bad_number.returncode == 2 and "Invalid value for 'number'" in bad_number.stderr, bad_number.stderr

    started = await orch("cycle", "start", "--interval", "2", *account, "--json")
    assert started.returncode == 0, started.stderr
    answer = json.loads(started.stdout)
    assert answer["workflow_id"] == ENGINE_ID and answer["started"] is True
    handle = bare_stack.client.get_workflow_handle(ENGINE_ID)
    await until(handle, lambda s: s.cycles_total >= 1)

    status, text, report, latest, unknown = await asyncio.gather(
        orch("cycle", "status", *account, "--json"),
        orch("cycle", "status", *account),
        orch("cycle", "report", "1", *account),
        orch("cycle", "report", *account, "--json"),
        orch("cycle", "report", "999", *account),
    )
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["cycles_total"] >= 1 and shown["temporal_status"] == "RUNNING"
    assert text.returncode == 0 and ENGINE_ID in text.stdout and "success rate" in text.stdout
    assert report.returncode == 0, report.stderr
    assert "Cycle 1:" in report.stdout and "initialize" in report.stdout
    assert json.loads(latest.stdout)["cycle_number"] >= 1
    assert unknown.returncode == 1 and "no report for cycle 999" in unknown.stderr

    assert (await orch("cycle", "pause", *account)).returncode == 0
    await until(handle, lambda s: s.state is EngineRunState.PAUSED)
    assert (await orch("cycle", "resume", *account, "--json")).returncode == 0
    await until(handle, lambda s: s.state is not EngineRunState.PAUSED)
    again = await orch("cycle", "start", "--interval", "5", *account)
    assert again.returncode == 0 and "already running" in again.stdout
    assert (await status_of(handle)).config.scheduler.base_interval_seconds == 5

    assert (await orch("cycle", "stop", *account)).returncode == 0
    await handle.result()
    after, refused = await asyncio.gather(
        orch("cycle", "status", *account, "--json"), orch("cycle", "pause", *account)
    )
    assert after.returncode == 0 and json.loads(after.stdout)["state"] == "stopped"
    assert refused.returncode == 1 and "not running" in refused.stderr


async def _cycle_report(client: Client, number: int) -> Any:
    cycle = client.get_workflow_handle(cycle_workflow_id(ENGINE_ID, number), result_type=TradingCycleResult)
    return (await cycle.result()).report


async def test_weights_set_while_a_cycle_runs_win_over_learning_from_the_next_cycle_until_handed_back(
    bare_stack: Stack, hft_process: HftUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the cycle running when set_config arrived cleared the operator's weights as it ended, so
    every later cycle composed with the learned 0.25 each while the configuration showed the new ones."""
    release = threading.Event()

    def held_patterns(*args: object, **kwargs: object) -> None:
        release.wait(60)  # cycle 1 is held in step 3 while the operator changes the weights
        raise RuntimeError("pattern detector released")

    monkeypatch.setattr("orch.activities.cycle.analyse_patterns", held_patterns)
    await start_cycle_stack(bare_stack, hft_process)
    client = bare_stack.client
    handle = await start_engine(client, cycle_interval_seconds=0.5)
    try:
        await until(handle, lambda s: s.current_cycle == cycle_workflow_id(ENGINE_ID, 1))
        config = await handle.execute_update("set_config", EngineConfigChange(strategy_weights={"trend": 8}))
        # Merged onto the weights in force (0.25 each) and normalised: trend 8 / 8.75.
        pinned = StrategyWeights.model_validate(config["strategy_weights"])
        assert round(pinned.root[StrategyKind.TREND], 3) == 0.914
        release.set()
        status = await until(handle, lambda s: s.cycles_total >= 3)
        assert status.weights == pinned and status.weights_source is WeightsSource.OPERATOR, status.weights
        for number in (2, 3):
            report = await _cycle_report(client, number)
            assert report.weights == pinned, (number, report.weights, report.notes)
            assert report.weights_source is WeightsSource.OPERATOR
        # Learning goes on beside them (from them: the next cycle recorded them in SystemState), and both
        # are shown: the report and the status carry what learning holds now.
        assert report.learned_weights is not None and status.learned_weights is not None

        # Handing the weights back to learning: the next cycle composes with what learning holds.
        await handle.execute_update("set_config", EngineConfigChange(strategy_weights="learned"))
        after = (await status_of(handle)).cycles_total
        back = await until(handle, lambda s: s.cycles_total >= after + 2)
        assert back.weights_source is WeightsSource.LEARNED and back.config.strategy_weights is None
        report = await _cycle_report(client, after + 2)
        assert report.weights_source is WeightsSource.LEARNED
        assert report.weights is not None and report.learned_weights is None
    finally:
        release.set()
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update("set_config", EngineConfigChange(strategy_weights={}))
    assert '"learned"' in str(refused.value.cause)
    await handle.signal("stop")
    await handle.result()


async def test_the_first_cycle_waits_for_orch_hft_to_be_ready_instead_of_failing(
    bare_stack: Stack, hft: Any
) -> None:
    """`orch up` starts the workers and orch hft together: the first cycle may run before it listens."""
    process = hft(
        ORCH_HFT_SYMBOLS=json.dumps(CRYPTO), ORCH_HFT_MARKET_MAKING="false", ORCH_HFT_ARBITRAGE="false"
    )
    await start_cycle_stack(bare_stack, process)  # orch hft is not running yet
    handle = await start_engine(
        bare_stack.client,
        cycle_interval_seconds=3600,
        hft_ready_timeout_seconds=50,
        policies=fast_policies(
            initialize=fast_policies().initialize.model_copy(update={"timeout_seconds": 60})
        ),
    )
    await until(handle, lambda s: s.current_cycle is not None)
    process.start()  # while cycle 1 waits in step 1
    first = await until(handle, lambda s: s.cycles_total >= 1, timeout=90)
    report = first.last_report
    assert report is not None and report.outcome is CycleOutcome.COMPLETED, (report.steps, report.notes)
    assert any(n.startswith("waited ") and "for orch hft to be ready" in n for n in report.notes), (
        report.notes
    )
    assert report.execution is not None and report.execution.plans_sent >= 1, report.execution
    await handle.signal("stop")
    await handle.result()
