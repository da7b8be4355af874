"""`orch integrate-real-data` against the fake Alpaca server: the five steps end to end, the fallback
taken when the primary stops answering, refusals that change nothing, the previous configuration
kept after a failed step, and Alpaca's keys in no workflow history.

The workers run in this process with ALPACA_API_KEY/ALPACA_SECRET_KEY in their environment, as
`orch worker` would; the CLI runs as a child process and never needs the keys.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowUpdateFailedError

from orch.config import Settings
from orch.contracts.commands import CommandStatus
from orch.contracts.data import IntegrateRealDataInput, IntegrateRealDataResult
from orch.contracts.levels import TradingMode
from orch.contracts.names import (
    COMMANDS_QUEUE,
    INTEGRATE_REAL_DATA,
    SYSTEM_STATE_WORKFLOW_ID,
    VALIDATE_ALGORITHMS,
)
from orch.contracts.system import DataSources, DataSourcesChange
from orch.contracts.validation import ValidateAlgorithmsInput, ValidateAlgorithmsResult
from orch.fake_alpaca import FakeAlpacaServer
from orch.market.simulated import SimulatedMarket
from tests.data_support import write_csv_folder
from tests.helpers import FAST, progress_of, system_state, workflow_ids

KEY, SECRET = "itest-key-7f3a91", "itest-secret-c08e52d4"
CSV_SCALE = 1.5  # the csv fallback's prices, so a reader can tell which source served a bar
# The alpaca source's universe here: equities, which the csv fallback can serve too (a file per symbol).
SYMBOLS = [s for s in SimulatedMarket().universe() if "/" not in s][:12]


@pytest.fixture
def fake_alpaca(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAlpacaServer]:
    with FakeAlpacaServer(key=KEY, secret=SECRET) as server:
        monkeypatch.setenv("ALPACA_API_KEY", KEY)
        monkeypatch.setenv("ALPACA_SECRET_KEY", SECRET)
        yield server


@pytest.fixture
def settings(settings: Settings, fake_alpaca: FakeAlpacaServer, tmp_path: Path) -> Settings:
    """The workers' settings: Alpaca at the fake, a fresh csv folder of the same universe as fallback."""
    market = SimulatedMarket(seed=fake_alpaca.config.seed)
    folder = write_csv_folder(tmp_path / "csv", market, SYMBOLS, 300, scale=CSV_SCALE)
    return settings.model_copy(
        update={
            "alpaca_data_url": fake_alpaca.data_url,
            "alpaca_symbols": SYMBOLS,
            "alpaca_timeout_seconds": 1.0,
            "csv_folder": folder,
            "data_sources_refresh_seconds": 0.2,
            "data_source_retry_seconds": 60.0,
            "max_retries": 1,
        }
    )


async def _histories_mention(client: Client, *needles: str) -> dict[str, list[str]]:
    """Every workflow history of the namespace, byte for byte (payloads, failures, summaries), searched
    for each needle: {needle: [workflow ids whose history holds it]}."""
    found: dict[str, list[str]] = {n: [] for n in needles}
    async for execution in client.list_workflows():
        history = await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
        raw = b"".join(event.SerializeToString() for event in history.events)
        for needle in needles:
            if needle.encode() in raw:
                found[needle].append(execution.id)
    return found


async def test_all_five_steps_then_the_fallback_when_alpaca_stops_answering(
    bare_stack, orch, fake_alpaca: FakeAlpacaServer
) -> None:
    await bare_stack.start()
    client = bare_stack.client
    before = await system_state(client)
    assert before.config.data_sources == DataSources() and before.config.trading_mode is TradingMode.SIMULATED

    done = await orch(
        "integrate-real-data", "--primary", "alpaca", "--fallback", "csv", "--json", "--max-retries", "1"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    outcome = json.loads(done.stdout)
    result = IntegrateRealDataResult.model_validate(outcome["result"])
    assert outcome["progress"]["status"] == "completed" and outcome["progress"]["progress"] == 1.0
    assert [s.name for s in result.steps] == [
        "validating_data_connections",
        "switching_data_sources",
        "updating_algorithms",
        "testing_data_flow",
        "enabling_real_trading",
    ]
    assert all(s.status is CommandStatus.COMPLETED for s in result.steps)

    # Step 1: each source probed and reported.
    alpaca, csv = result.probes
    assert (alpaca.name, alpaca.role, alpaca.ok, alpaca.authenticated, alpaca.fresh) == (
        "alpaca",
        "primary",
        True,
        True,
        True,
    )
    assert alpaca.latency_ms is not None and alpaca.sample is not None and alpaca.newest_bar_at is not None
    assert alpaca.symbols_probed == SYMBOLS[:6] and alpaca.symbols_served == len(SYMBOLS)
    assert alpaca.sample.close == pytest.approx(
        SimulatedMarket(seed=fake_alpaca.config.seed).history(alpaca.sample.symbol, 1).close[-1], rel=1e-4
    )
    assert (csv.name, csv.role, csv.ok, csv.authenticated) == ("csv", "fallback", True, None)
    assert csv.symbols_probed == alpaca.symbols_probed

    # Steps 2, 3 and 5 changed SystemState, each change audited under the command's id.
    after = await system_state(client)
    assert after.config.data_sources == DataSources(primary="alpaca", fallbacks=["csv"])
    assert after.config.trading_mode is TradingMode.PAPER
    assert result.trading_mode is TradingMode.PAPER and result.previous_trading_mode is TradingMode.SIMULATED
    # No orch hft runs here, so nothing trades paper yet, and step 5 says so.
    assert result.hft_trading_mode is None
    assert "not answering: cycles send no plans until it does" in (result.trading_mode_note or "")
    assert after.learning is not None and after.learning.thresholds == result.thresholds
    changes = {c.field: c for c in after.recent_changes if c.by == result.workflow_id}
    assert changes["data_sources"].old == "simulated" and changes["data_sources"].new == "alpaca -> csv"
    assert (changes["trading_mode"].old, changes["trading_mode"].new) == ("simulated", "paper")
    calibration = result.steps[2].summary
    assert "regime thresholds" in calibration and "hybrid_v1 needs 120 bars: 6/6 symbols" in calibration

    # Step 4: bars through the validation checks and a dry cycle that placed nothing anywhere.
    dry = result.dry_cycle
    assert dry is not None and dry.usable == 6 and dry.orders_placed == 0 and dry.candidates == 6
    assert set(dry.served_by.values()) == {"alpaca"} and dry.fallbacks == []
    assert fake_alpaca.fake.orders() == []

    # Alpaca stops answering: the worker's market, now SystemState's alpaca -> csv, falls back. A
    # discovery restart ranks the whole universe through it: one timeout, then csv for every symbol.
    fake_alpaca.fake.inject_fault("data", "hang")
    restarted = await orch("restart-discovery", "--strategy", "legacy_v0", "--json")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    scan = await client.get_workflow_handle(
        json.loads(restarted.stdout)["result"]["validation_scan_id"]
    ).result()
    universe = SimulatedMarket(seed=fake_alpaca.config.seed)
    for candidate in scan["candidates"]:
        expected = universe.history(candidate["symbol"], 1).close[-1] * CSV_SCALE
        assert candidate["last_price"] == pytest.approx(expected, rel=1e-6), candidate["symbol"]

    # `orch health-check` shows the pool: requests and errors per API, the cache, the fallbacks taken.
    health = await orch("health-check", "--json")
    pools = json.loads(health.stdout)["resource_pools"]
    assert pools["pool"]["data_fallbacks"] >= len(SYMBOLS)
    assert pools["api:alpaca-data"]["errors"] >= 1 and pools["api:alpaca-data"]["requests"] >= 7
    fake_alpaca.fake.clear_faults()

    # Nothing that went through Temporal carries the keys, though the fake saw them on every request.
    mentions = await _histories_mention(client, KEY, SECRET, result.workflow_id)
    assert mentions[result.workflow_id], "the search must find what is there"
    assert mentions[KEY] == [] and mentions[SECRET] == []
    assert KEY not in done.stdout + done.stderr and SECRET not in done.stdout + done.stderr


async def test_refusals_change_nothing_and_live_trading_needs_both_flags(stack, orch, client: Client) -> None:
    before = await system_state(client)
    refused = await orch("integrate-real-data", "--primary", "polygon", "--fallback", "csv")
    assert refused.returncode == 2
    assert "'polygon'; available sources: simulated, csv, alpaca" in refused.stderr.replace("\n", "")
    for argv in (("--primary", "alpaca", "--live"), ("--primary", "csv", "--fallback", "csv")):
        again = await orch("integrate-real-data", *argv)
        assert again.returncode == 2, argv
    assert "second confirmation" in (await orch("integrate-real-data", "--live")).stderr.replace("\n", " ")
    assert await workflow_ids(client, f"WorkflowType = '{INTEGRATE_REAL_DATA}'") == []

    # The same requests started some other way (the temporal CLI, the UI) fail at once, before any step.
    for bad in (
        IntegrateRealDataInput(primary_source="polygon", fallback_sources=["csv"], options=FAST),
        IntegrateRealDataInput(primary_source="alpaca", live=True, options=FAST),
    ):
        handle = await client.start_workflow(
            INTEGRATE_REAL_DATA,
            bad,
            id=f"integrate-{bad.primary_source}-{bad.live}",
            task_queue=COMMANDS_QUEUE,
        )
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
        assert failure.value.cause.type == "InvalidInput"
        progress = await progress_of(handle)
        assert progress.status is CommandStatus.FAILED and progress.details.steps_completed == []
    # SystemState's own validator refuses it too: an update sent by hand cannot record it either.
    with pytest.raises(WorkflowUpdateFailedError) as refused_update:
        await client.get_workflow_handle(SYSTEM_STATE_WORKFLOW_ID).execute_update(
            "set_data_sources",
            DataSourcesChange(sources=DataSources(primary="polygon"), requested_by="by hand"),
        )
    assert "no adapter for data source(s) 'polygon'" in str(refused_update.value.cause)
    after = await system_state(client)
    assert after.config == before.config and after.learning == before.learning
    assert after.recent_changes == before.recent_changes

    # With both flags, live it is (here on the simulated source, which needs no keys).
    live = await orch(
        "integrate-real-data", "--primary", "simulated", "--live", "--i-understand-live-trading", "--json"
    )
    assert live.returncode == 0, live.stdout + live.stderr
    assert json.loads(live.stdout)["result"]["trading_mode"] == "live"
    assert (await system_state(client)).config.trading_mode is TradingMode.LIVE


async def test_a_failed_step_leaves_the_previous_configuration_in_force(
    bare_stack, settings: Settings, tmp_path: Path, client: Client
) -> None:
    """csv with 60 bars a file passes the probe but cannot feed hybrid_v1's 120-bar lookback: step 3 fails
    for good after step 2 switched the sources, and the switch is undone. Live, fully confirmed, was asked."""
    short = write_csv_folder(tmp_path / "short", SimulatedMarket(seed=7), ["AAPL", "MSFT", "SPY"], 60)
    bare_stack.settings = settings.model_copy(update={"csv_folder": short})
    await bare_stack.start()
    before = await system_state(client)

    request = IntegrateRealDataInput(
        primary_source="csv", fallback_sources=["simulated"], live=True, confirm_live=True, options=FAST
    )
    handle = await client.start_workflow(
        INTEGRATE_REAL_DATA, request, id="integrate-short", task_queue=COMMANDS_QUEUE
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    result = IntegrateRealDataResult.model_validate(failure.value.cause.details[0])
    statuses = {s.name: s.status for s in result.steps}
    assert statuses["switching_data_sources"] is CommandStatus.COMPLETED
    assert statuses["updating_algorithms"] is CommandStatus.FAILED
    assert statuses["enabling_real_trading"] is CommandStatus.QUEUED
    assert "hybrid_v1 needs 120 bars; csv -> simulated serves at most 60" in result.error
    assert result.steps[2].attempts == 1  # no retry can lengthen a file
    assert result.compensation == ["data sources back to simulated"]

    after = await system_state(client)
    assert after.config == before.config and after.learning == before.learning
    fields = [(c.field, c.old, c.new) for c in after.recent_changes if c.by == "integrate-short"]
    assert fields == [
        ("data_sources", "simulated", "csv -> simulated"),
        ("data_sources", "csv -> simulated", "simulated"),
    ]


async def test_validation_backtests_on_the_active_alpaca_source(
    bare_stack, fake_alpaca: FakeAlpacaServer
) -> None:
    """After a switch to Alpaca, `orch validate-algorithms` (source `active`) backtests Alpaca's bars: the
    job processes get the worker's keys and URL from it, never from a request."""
    await bare_stack.start()
    client = bare_stack.client
    await client.get_workflow_handle(SYSTEM_STATE_WORKFLOW_ID).execute_update(
        "set_data_sources", DataSourcesChange(sources=DataSources(primary="alpaca"), requested_by="test")
    )
    symbols = SYMBOLS[:4]
    result = await client.execute_workflow(
        VALIDATE_ALGORITHMS,
        ValidateAlgorithmsInput(
            strategies=["hybrid_v1", "legacy_v0"],
            validation_period="6M",
            symbols=symbols,
            walk_forward_splits=2,
            max_param_combinations=2,
            options=FAST,
        ),
        id="validate-on-alpaca",
        task_queue=COMMANDS_QUEUE,
        result_type=ValidateAlgorithmsResult,
    )
    assert result.status is CommandStatus.COMPLETED, result.error
    assert result.data is not None and result.data.source == "alpaca" and result.data.symbols == symbols
    assert result.source_description.startswith("alpaca")
    assert {b.strategy for b in result.backtests} == {"hybrid_v1", "legacy_v0"}
    # Each backtest and parameter search ran in a job process that read the fake's bars itself (without
    # the worker's keys and URL it could not have: no network here, and the keys are not in the request).
    assert all(b.metrics.bars == result.data.window.bars for b in result.backtests)
    assert {o.strategy for o in result.optimisation} == {"hybrid_v1", "legacy_v0"}
    assert await _histories_mention(client, KEY, SECRET) == {KEY: [], SECRET: []}
