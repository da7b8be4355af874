"""`EmergencyStop` and `ResumeTrading` end to end: a real Temporal server, a real `orch hft` process.

What a user checks after `orch emergency-stop`: orch hft HALTED (or the level's state), its open orders
gone, positions closed at flatten, every TradingEngine told, the schedules paused, the incident with
its actions in SystemState; trading stays stopped until `orch resume --confirm`, which brings it all
back. The TradingEngine is the real one, paused from its start so that it runs no cycle: what is
checked is what it does with the signals.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.common import Priority

from orch.config import Settings
from orch.contracts.emergency import (
    EMERGENCY_PAUSED_SCHEDULES,
    EmergencyStopInput,
    EmergencyStopResult,
    ResumeTradingInput,
    ResumeTradingResult,
)
from orch.contracts.engine import EngineStatus, ExecutionSettings, TradingEngineInput, engine_workflow_id
from orch.contracts.names import (
    COMMANDS_QUEUE,
    CRITICAL_QUEUE,
    EMERGENCY_STOP,
    RESUME_TRADING,
    TRADING_ENGINE,
    TaskPriority,
)
from orch.contracts.system import EmergencyLevel
from orch.contracts.trading import OrderIntent, OrderType, Side, TradingState
from orch.embedded import temporal_binary
from orch.hft.client import HftClient
from tests.conftest import Stack, run_process
from tests.emergency_support import QUIET, client_of, running_hft, with_hft
from tests.helpers import FAST, eventually, system_state
from tests.test_hft_process import TOKEN, HftUnderTest

# ---- Fixtures ------------------------------------------------------------------------------------


@pytest.fixture
async def hft(tmp_path: Path) -> AsyncIterator[HftUnderTest]:
    """orch hft with market making on: resting quotes come and go, as in production."""
    async with running_hft(tmp_path / "hft") as process:
        yield process


@pytest.fixture
async def quiet_hft(tmp_path: Path) -> AsyncIterator[HftUnderTest]:
    async with running_hft(tmp_path / "quiet-hft", **QUIET) as process:
        yield process


@pytest.fixture
def hft_client(hft: HftUnderTest) -> HftClient:
    return client_of(hft)


@pytest.fixture
def quiet_client(quiet_hft: HftUnderTest) -> HftClient:
    return client_of(quiet_hft)


async def start_engine(client: Client, hft: HftUnderTest, monkeypatch: pytest.MonkeyPatch):
    """The real TradingEngine for the test's orch hft account, paused from its first moment (no cycle)."""
    monkeypatch.setenv("ORCH_HFT_TOKEN", TOKEN)  # its heartbeats to orch hft read the token like orch hft
    request = TradingEngineInput(
        account="t1",
        cycle_interval_seconds=3600,
        emergency_poll_seconds=0.2,
        execution=ExecutionSettings(hft_url=hft.url),
    )
    return await client.start_workflow(
        TRADING_ENGINE,
        request,
        id=engine_workflow_id("t1"),
        task_queue=COMMANDS_QUEUE,
        start_signal="pause",
        result_type=EngineStatus,
    )


async def engine_status(engine) -> EngineStatus:
    return await engine.query("status", result_type=EngineStatus)


async def resting_buy(hft_client: HftClient, price: float = 1.0) -> str:
    """A limit order far below the market: it rests until someone cancels it."""
    ack = await hft_client.submit_order(
        OrderIntent(
            symbol="BTC/USD", side=Side.BUY, quantity=0.01, order_type=OrderType.LIMIT, limit_price=price
        )
    )
    assert ack.accepted and ack.order is not None, ack
    order_id = ack.order.client_order_id
    await eventually(lambda: _is_open(hft_client, order_id), timeout=10)
    return order_id


async def _is_open(hft_client: HftClient, order_id: str) -> bool:
    return any(o.client_order_id == order_id for o in await hft_client.orders())


async def schedules(client: Client) -> dict[str, tuple[bool, str]]:
    views = {}
    for schedule_id in EMERGENCY_PAUSED_SCHEDULES:
        state = (await client.get_schedule_handle(schedule_id).describe()).schedule.state
        views[schedule_id] = (state.paused, state.note or "")
    return views


async def start_stop(client: Client, level: str = "halt", reason: str = "test fire", **kw):
    request = EmergencyStopInput(reason=reason, level=level, options=FAST)
    return await client.start_workflow(
        EMERGENCY_STOP,
        request,
        id=f"emergency-stop-{level}-{reason.replace(' ', '-')}",
        task_queue=CRITICAL_QUEUE,
        priority=Priority(priority_key=int(TaskPriority.CRITICAL)),
        result_type=EmergencyStopResult,
        **kw,
    )


# ---- From `orch`: halt, everything stopped, stays stopped, resume brings it back -------------------


async def test_orch_emergency_stop_halts_everything_until_orch_resume_confirm(
    bare_stack: Stack, settings: Settings, hft: HftUnderTest, hft_client: HftClient, orch, monkeypatch
) -> None:
    bare_stack.settings = with_hft(settings, hft.url)
    await bare_stack.start()
    client = bare_stack.client
    engine = await start_engine(client, hft, monkeypatch)
    order_id = await resting_buy(hft_client)
    assert all(not paused for paused, _ in (await schedules(client)).values())

    stopped = await orch("emergency-stop", "--reason", "operator saw a fat finger", "--json")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    outcome = json.loads(stopped.stdout)
    result = outcome["result"]
    incident_id = outcome["progress"]["workflow_id"]
    assert outcome["progress"]["status"] == "completed"
    assert result["hft_state"] == "halted" and result["level_in_force"] == "halt"
    assert order_id in result["orders_cancelled"]
    assert result["engines_signalled"] == [engine.id]
    assert sorted(result["schedules_paused"]) == sorted(EMERGENCY_PAUSED_SCHEDULES)
    assert {a["name"]: a["status"] for a in result["actions"]} == {
        "recording_incident": "done",
        "killing_hft": "done",
        "cancelling_orders": "done",
        "signalling_engines": "done",
        "pausing_schedules": "done",
        "recording_actions": "done",
    }

    # What a user checks, each at its source.
    assert (await hft_client.state()).state is TradingState.HALTED
    assert await hft_client.orders() == []
    journal = {
        o.client_order_id: o.status.value for o in await hft_client.orders(open_only=False, limit=10_000)
    }
    assert journal[order_id] == "cancelled"
    for schedule_id, (paused, note) in (await schedules(client)).items():
        assert paused and incident_id in note, (schedule_id, note)
    state = await system_state(client)
    assert state.config.emergency_level is EmergencyLevel.HALT
    [incident] = [i for i in state.incidents if i.incident_id == incident_id]
    assert incident.reason == "operator saw a fat finger" and incident.resolved_at is None
    assert any(line.startswith("killing_hft: done: orch hft halted") for line in incident.actions)
    assert len(incident.actions) == 5
    stopped_engine = await engine_status(engine)
    assert stopped_engine.state.value == "emergency_stopped"
    assert stopped_engine.emergency is not None and stopped_engine.emergency.incident_id == incident_id

    # Trading stays stopped: orch hft denies new orders, and a resume without --confirm changes nothing.
    denied = await hft_client.submit_order(OrderIntent(symbol="BTC/USD", side=Side.BUY, quantity=0.01))
    assert not denied.accepted and denied.decision.reason == "halted"
    refused = await orch("resume")
    assert refused.returncode == 2 and "--confirm" in refused.stderr
    assert (await hft_client.state()).state is TradingState.HALTED
    assert (await system_state(client)).config.emergency_level is EmergencyLevel.HALT
    assert all(paused for paused, _ in (await schedules(client)).values())

    resumed = await orch("resume", "--confirm", "--reason", "fat finger reverted", "--json")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    resumed_result = json.loads(resumed.stdout)["result"]
    assert resumed_result["resolved_incidents"] == [incident_id]
    assert resumed_result["hft_state"] == "active"
    assert (await hft_client.state()).state is TradingState.ACTIVE
    assert all(not paused for paused, _ in (await schedules(client)).values())
    state = await system_state(client)
    assert state.config.emergency_level is EmergencyLevel.NONE
    assert [i.resolved_by for i in state.incidents if i.incident_id == incident_id] == ["operator"]
    # The engine leaves its emergency once it has `resume` and SystemState's level is none.
    await eventually(lambda: _no_emergency(engine), timeout=15)
    # Trading is back: a new order is accepted. A resting limit, because orch hft's own market maker
    # quotes BTC/USD again, and a market buy would cross its ask (denied self_cross, as Alpaca would).
    await resting_buy(hft_client)

    again = await orch("resume", "--confirm")
    assert again.returncode == 1 and "nothing to resume" in again.stdout + again.stderr
    listed = await orch("list", "--json")
    assert listed.returncode == 0, listed.stderr
    kinds = {(row["workflow_id"], row["type"], row["status"]) for row in json.loads(listed.stdout)}
    assert (incident_id, "EmergencyStop", "completed") in kinds
    assert (json.loads(resumed.stdout)["progress"]["workflow_id"], "ResumeTrading", "completed") in kinds
    await engine.signal("stop")


async def _no_emergency(engine) -> bool:
    return (await engine_status(engine)).emergency is None


async def test_orch_refuses_bad_input_before_anything_starts(bare_stack: Stack, orch) -> None:
    await bare_stack.start(queues=(COMMANDS_QUEUE,))
    unknown = await orch("emergency-stop", "--reason", "x", "--level", "panic")
    assert unknown.returncode == 2
    assert "unknown emergency level 'panic'" in unknown.stderr
    assert "pause_entries, reduce_only, halt, flatten" in " ".join(unknown.stderr.split())
    blank = await orch("emergency-stop", "--reason", "   ")
    assert blank.returncode == 2 and "reason" in blank.stderr
    assert [e async for e in bare_stack.client.list_workflows(f"WorkflowType = '{EMERGENCY_STOP}'")] == []


async def test_orch_text_output_and_no_wait_at_pause_entries(
    bare_stack: Stack, settings: Settings, quiet_hft: HftUnderTest, quiet_client: HftClient, orch
) -> None:
    bare_stack.settings = with_hft(settings, quiet_hft.url)
    await bare_stack.start()
    order_id = await resting_buy(quiet_client)

    shown = await orch("emergency-stop", "--reason", "news at noon", "--level", "pause_entries")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    text = " ".join(shown.stdout.split())
    assert "emergency_stop completed" in text and "killing_hft completed" in text
    assert "Trading stays stopped until orch resume --confirm" in text
    status = await quiet_client.state()
    assert status.state is TradingState.ACTIVE and status.entries_paused
    assert status.emergency_level is EmergencyLevel.PAUSE_ENTRIES
    assert not await _is_open(quiet_client, order_id)  # a resting entry: pause_entries cancels it

    started = await orch("emergency-stop", "--reason", "worse news", "--level", "halt", "--no-wait")
    assert started.returncode == 0, started.stderr
    workflow_id = started.stdout.strip()
    result = await bare_stack.client.get_workflow_handle(
        workflow_id, result_type=EmergencyStopResult
    ).result()
    assert result.level_in_force is EmergencyLevel.HALT and result.hft_state == "halted"
    # `orch state` lists both incidents, open until `orch resume --confirm`.
    state = await orch("state")
    assert state.returncode == 0, state.stderr
    lines = " ".join(state.stdout.split())
    assert "emergency level: halt" in lines and "open incidents (2)" in lines
    assert f"{workflow_id}: halt by operator: worse news" in lines
    assert "pause_entries by operator: news at noon" in lines


# ---- Levels: flatten closes positions; reduce_only cancels what would grow them ------------------


@pytest.mark.parametrize("halted_first", [False, True], ids=["from-active", "after-a-halt"])
async def test_flatten_cancels_orders_and_closes_every_position(
    bare_stack: Stack,
    settings: Settings,
    quiet_hft: HftUnderTest,
    quiet_client: HftClient,
    halted_first: bool,
) -> None:
    hft_client = quiet_client
    bare_stack.settings = with_hft(settings, quiet_hft.url)
    await bare_stack.start()
    bought = await hft_client.submit_order(OrderIntent(symbol="ETH/USD", side=Side.BUY, quantity=3))
    assert bought.accepted, bought

    async def held() -> bool:
        return any(p.symbol == "ETH/USD" and p.quantity >= 3 for p in await hft_client.positions())

    await eventually(held, timeout=10)
    order_id = await resting_buy(hft_client)
    if halted_first:  # an operator halts, then decides to close everything
        halted = await (await start_stop(bare_stack.client, level="halt")).result()
        assert order_id in halted.orders_cancelled

    handle = await start_stop(bare_stack.client, level="flatten")
    result = await handle.result()
    assert result.hft_state == "halted"
    assert "ETH/USD" in result.positions_closed
    assert halted_first or order_id in result.orders_cancelled
    assert [p for p in await hft_client.positions() if p.quantity] == []
    assert await hft_client.orders() == []
    status = await hft_client.state()
    assert status.state is TradingState.HALTED and status.emergency_level is EmergencyLevel.FLATTEN
    assert (await system_state(bare_stack.client)).config.emergency_level is EmergencyLevel.FLATTEN


async def test_reduce_only_cancels_resting_orders_that_would_grow_a_position(
    bare_stack: Stack, settings: Settings, quiet_hft: HftUnderTest, quiet_client: HftClient
) -> None:
    hft_client = quiet_client
    bare_stack.settings = with_hft(settings, quiet_hft.url)
    await bare_stack.start()
    order_id = await resting_buy(hft_client)

    result = await (await start_stop(bare_stack.client, level="reduce_only")).result()
    assert result.hft_state == "reducing"
    # orch hft's own kill cancelled the resting entry; the stop confirmed it and reports it.
    assert not await _is_open(hft_client, order_id)
    assert order_id in result.orders_cancelled
    status = await hft_client.state()
    assert status.state is TradingState.REDUCING and status.emergency_level is EmergencyLevel.REDUCE_ONLY


# ---- Busy system: the orch queue's activity slots are all taken ------------------------------------

HOG_STARTED: set[str] = set()


@activity.defn(name="hog_the_slot")
async def hog_the_slot(seconds: float) -> None:
    HOG_STARTED.add(activity.info().workflow_id)
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        pass


@workflow.defn(name="SlotHog", sandboxed=False)
class SlotHog:
    @workflow.run
    async def run(self, seconds: float) -> None:
        await workflow.execute_activity(
            hog_the_slot, seconds, start_to_close_timeout=timedelta(seconds=seconds + 30)
        )


async def test_emergency_stop_completes_while_the_orch_queue_is_saturated(
    bare_stack: Stack, settings: Settings, hft: HftUnderTest, hft_client: HftClient
) -> None:
    # One activity slot on `orch`, held by a long activity, with another waiting behind it.
    bare_stack.settings = with_hft(settings, hft.url, max_concurrent_activities=1)
    await bare_stack.start(extra_workflows=[SlotHog], extra_activities=[hog_the_slot])
    client = bare_stack.client
    HOG_STARTED.clear()
    hogs = [
        await client.start_workflow(SlotHog.run, 120.0, id=f"hog-{n}", task_queue=COMMANDS_QUEUE)
        for n in range(2)
    ]
    await eventually(lambda: _async(len(HOG_STARTED) == 1), timeout=15)

    result = await asyncio.wait_for((await start_stop(client, reason="busy")).result(), timeout=60)
    assert result.hft_state == "halted"
    assert (await hft_client.state()).state is TradingState.HALTED
    # The `orch` queue was saturated the whole time: the second hog never got a slot.
    assert len(HOG_STARTED) == 1
    for hog in hogs:
        assert (await hog.describe()).status == WorkflowExecutionStatus.RUNNING
        await hog.terminate("test over")


async def _async(value: bool) -> bool:
    return value


# ---- From the raw temporal CLI ---------------------------------------------------------------------


async def temporal(settings: Settings, *args: str):
    return await run_process(
        str(temporal_binary()),
        *args,
        "--address",
        settings.temporal_address,
        "--namespace",
        settings.namespace,
    )


async def test_temporal_cli_starts_an_emergency_stop_and_refuses_bad_input(
    bare_stack: Stack, settings: Settings, hft: HftUnderTest, hft_client: HftClient
) -> None:
    bare_stack.settings = with_hft(settings, hft.url)
    await bare_stack.start()
    client = bare_stack.client
    started = await temporal(
        settings,
        "workflow",
        "start",
        "--type",
        EMERGENCY_STOP,
        "--task-queue",
        CRITICAL_QUEUE,
        "--workflow-id",
        "cli-stop",
        "--input",
        '{"reason": "x", "level": "halt"}',
    )
    assert started.returncode == 0, started.stderr
    result = await client.get_workflow_handle("cli-stop", result_type=EmergencyStopResult).result()
    assert result.hft_state == "halted" and result.incident_id == "cli-stop"
    assert (await hft_client.state()).state is TradingState.HALTED

    # Level "none" is no stop: the workflow fails at once, it does not retry its task forever.
    bad = await temporal(
        settings,
        "workflow",
        "start",
        "--type",
        EMERGENCY_STOP,
        "--task-queue",
        CRITICAL_QUEUE,
        "--workflow-id",
        "cli-bad-stop",
        "--input",
        '{"reason": "x", "level": "none"}',
    )
    assert bad.returncode == 0, bad.stderr
    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(client.get_workflow_handle("cli-bad-stop").result(), timeout=30)
    assert "level" in str(failure.value.cause)

    # A resume without confirm is refused by the workflow too, and changes nothing.
    refused = client.get_workflow_handle(
        (
            await client.start_workflow(
                RESUME_TRADING, ResumeTradingInput(confirm=False), id="cli-resume", task_queue=CRITICAL_QUEUE
            )
        ).id
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await refused.result()
    assert "--confirm" in str(failure.value.cause)
    assert (await hft_client.state()).state is TradingState.HALTED
    resumed = await client.execute_workflow(
        RESUME_TRADING,
        ResumeTradingInput(confirm=True, options=FAST),
        id="cli-resume-confirmed",
        task_queue=CRITICAL_QUEUE,
        result_type=ResumeTradingResult,
    )
    assert resumed.resolved_incidents == ["cli-stop"] and resumed.hft_state == "active"


async def test_a_raw_emergency_stop_signal_to_the_engine_stops_trading_everywhere(
    bare_stack: Stack, settings: Settings, hft: HftUnderTest, hft_client: HftClient, monkeypatch
) -> None:
    """`temporal workflow signal --name emergency_stop` to the engine alone: the engine starts an
    EmergencyStop, so orch hft halts, the schedules pause and the incident is recorded."""
    bare_stack.settings = with_hft(settings, hft.url)
    await bare_stack.start()
    client = bare_stack.client
    engine = await start_engine(client, hft, monkeypatch)
    signalled = await temporal(
        settings,
        "workflow",
        "signal",
        "--workflow-id",
        engine.id,
        "--name",
        "emergency_stop",
        "--input",
        '{"reason": "signalled by hand", "level": "halt"}',
    )
    assert signalled.returncode == 0, signalled.stderr

    async def halted() -> bool:
        return (await hft_client.state()).state is TradingState.HALTED

    await eventually(halted, timeout=30)
    state = await eventually(lambda: _with_incident(client), timeout=30)
    [incident] = state.incidents
    # Who asked is kept (the default, `operator`, here) and the engine it came through is named.
    assert incident.reason == "signalled by hand" and incident.requested_by == f"operator via {engine.id}"
    stop = client.get_workflow_handle(incident.incident_id, result_type=EmergencyStopResult)
    result = await stop.result()
    assert result.engines_signalled == [engine.id] and result.hft_state == "halted"
    assert all(paused for paused, _ in (await schedules(client)).values())
    status = await engine_status(engine)
    assert status.emergency is not None and status.emergency.incident_id == incident.incident_id
    await engine.signal("stop")


async def _with_incident(client: Client):
    state = await system_state(client)
    return state if state.incidents and state.incidents[-1].actions else None


# ---- One action failing never stops the others -----------------------------------------------------


async def test_with_hft_down_the_other_actions_still_happen_and_the_stop_fails(
    bare_stack: Stack, settings: Settings, tmp_path: Path, monkeypatch
) -> None:
    down = HftUnderTest(tmp_path)  # never started: nothing listens on its port
    bare_stack.settings = with_hft(settings, down.url)
    await bare_stack.start()
    client = bare_stack.client
    engine = await start_engine(client, down, monkeypatch)
    handle = await start_stop(client, reason="hft unreachable")
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    message = str(failure.value.cause)
    assert "killing_hft" in message and "did not answer" in message

    for schedule_id, (paused, note) in (await schedules(client)).items():
        assert paused and handle.id in note, schedule_id
    status = await engine_status(engine)
    assert status.emergency is not None and status.emergency.incident_id == handle.id
    state = await system_state(client)
    assert state.config.emergency_level is EmergencyLevel.HALT
    [incident] = [i for i in state.incidents if i.incident_id == handle.id]
    lines = {line.split(":")[0]: line for line in incident.actions}
    assert (
        lines["killing_hft"].startswith("killing_hft: failed: ") and "did not answer" in lines["killing_hft"]
    )
    assert lines["signalling_engines"].startswith("signalling_engines: done")
    assert lines["pausing_schedules"].startswith("pausing_schedules: done")
    await engine.signal("stop")
