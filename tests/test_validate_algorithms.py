"""ValidateAlgorithms against a real Temporal server, on real daily bars (the `sample` source).

Backtests run in their own processes on the `orch-backtest` worker; the suite keeps them small:
the 4-symbol sample universe, 6M periods, two walk-forward splits, three parameter combinations.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid

import backtrader as bt
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError

from orch.backtest.data import load_histories
from orch.backtest.engine import build_cerebro
from orch.contracts.names import VALIDATE_ALGORITHMS
from orch.contracts.validation import (
    BacktestProgress,
    PortfolioRules,
    ValidateAlgorithmsInput,
    ValidateAlgorithmsResult,
)
from tests.helpers import FAST, eventually, progress_of, system_state

STEPS = [
    "preparing_validation_data",
    "running_backtests",
    "analysing_performance",
    "optimising_parameters",
    "generating_recommendations",
]
SMALL = dict(
    data_source="sample",
    walk_forward_splits=2,
    max_param_combinations=3,
    options=FAST,
)


async def start_validation(client, strategies, period="6M", **kwargs):
    request = ValidateAlgorithmsInput(strategies=strategies, validation_period=period, **(SMALL | kwargs))
    return await client.start_workflow(
        VALIDATE_ALGORITHMS,
        request,
        id=f"validate-{uuid.uuid4().hex[:8]}",
        task_queue="orch",
        result_type=ValidateAlgorithmsResult,
    )


def plain_backtrader(result: ValidateAlgorithmsResult, strategy: str):
    """The same strategy on the same bars in a Cerebro of our own, measured by backtrader's analyzers."""
    assert result.data is not None
    histories = load_histories(result.data)
    backtest = next(b for b in result.backtests if b.strategy == strategy)
    window = result.data.window
    cerebro = build_cerebro(
        histories,
        window.start,
        window.end,
        strategy,
        None,
        PortfolioRules(top_n=len(result.data.symbols) // 2),
    )
    cerebro.addanalyzer(
        bt.analyzers.SharpeRatio,
        _name="sharpe",
        timeframe=bt.TimeFrame.Days,
        annualize=True,
        riskfreerate=0.0,
    )
    cerebro.addanalyzer(bt.analyzers.DrawDown, _name="drawdown")
    cerebro.addanalyzer(bt.analyzers.TradeAnalyzer, _name="trades")
    [run] = cerebro.run()
    return backtest, run, cerebro.broker.getvalue()


async def test_two_strategies_backtested_in_parallel_on_real_bars_agree_with_plain_backtrader(stack):
    handle = await start_validation(stack.client, ["hybrid_v1", "legacy_v0"])
    result = await asyncio.wait_for(handle.result(), 180)

    assert result.status == "completed"
    assert [s.name for s in result.steps] == STEPS
    assert all(s.status == "completed" for s in result.steps)
    assert result.data is not None and result.data.source == "sample"
    assert result.data.symbols == ["AAPL", "GOOG", "IBM", "MSFT"]
    # 6M back from the sample's newest bar (2013-03-01).
    assert result.data.window.end.date().isoformat() == "2013-03-01"
    assert result.data.window.start.date().isoformat() == "2012-09-04"

    # Both backtests were in flight at the same time: their activities overlapped.
    starts, ends = {}, {}
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            if attributes.activity_type.name == "run_backtest":
                starts[event.event_id] = None
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            scheduled = event.activity_task_started_event_attributes.scheduled_event_id
            if scheduled in starts:
                starts[scheduled] = event.event_time.ToDatetime()
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            scheduled = event.activity_task_completed_event_attributes.scheduled_event_id
            if scheduled in starts:
                ends[scheduled] = event.event_time.ToDatetime()
    assert len(starts) == 2
    assert max(starts.values()) < min(ends.values()), "the two backtests did not run at the same time"

    for strategy in ("hybrid_v1", "legacy_v0"):
        backtest, plain, final_value = plain_backtrader(result, strategy)
        metrics = backtest.metrics
        assert metrics.bars == result.data.window.bars
        assert metrics.final_value == pytest.approx(final_value, rel=1e-9)
        assert metrics.sharpe == pytest.approx(plain.analyzers.sharpe.get_analysis()["sharperatio"], rel=1e-9)
        assert metrics.max_drawdown == pytest.approx(
            plain.analyzers.drawdown.get_analysis().max.drawdown / 100, rel=1e-9
        )
        trades = plain.analyzers.trades.get_analysis()
        closed = trades.total.get("closed", 0)
        assert metrics.trades == closed and closed > 0
        assert metrics.win_rate == pytest.approx(trades.won.total / closed)
        assert metrics.buy_and_hold.total_return != 0
        assert metrics.excess_return == pytest.approx(
            metrics.total_return - metrics.buy_and_hold.total_return
        )

    # Walk-forward: each test window follows its own fit window, and test windows never overlap.
    assert len(result.splits) == 2
    for strategy_result in result.optimisation:
        assert [s.split.index for s in strategy_result.splits] == [1, 2]
        for split in strategy_result.splits:
            assert split.split.fit.end < split.split.test.start
            # The backtests really ran on those bars and no others.
            assert split.split.fit.start <= split.fit_bars_seen.start
            assert split.fit_bars_seen.end <= split.split.fit.end
            assert split.split.test.start <= split.test_bars_seen.start
            assert split.test_bars_seen.end <= split.split.test.end
            assert split.combinations_tried == 3
    first, second = result.splits
    assert first.test.end < second.test.start

    assert [r.rank for r in result.recommendations] == [1, 2]
    assert result.winner == result.recommendations[0].strategy
    assert all("out-of-sample" in r.basis for r in result.recommendations)
    # Tuned parameters are recommended only when they beat the defaults on the same test window, and
    # the score shown is theirs, with the defaults' beside it.
    for recommendation in result.recommendations:
        walk = next(o for o in result.optimisation if o.strategy == recommendation.strategy)
        if recommendation.tuned:
            split = next(s for s in walk.splits if s.split.index == recommendation.split)
            assert split.best_params == recommendation.params
            assert recommendation.score == split.out_of_sample.sharpe
            assert recommendation.default_score == split.default_out_of_sample.sharpe
            assert recommendation.score > recommendation.default_score
        else:
            assert (
                recommendation.score == recommendation.default_score == walk.mean_default_out_of_sample_sharpe
            )
    assert result.warnings == []  # the sample's bars are clean and cover the window
    assert not result.applied and result.apply_error is None
    assert (await system_state(stack.client)).config.active_strategy == "hybrid_v1"


async def _backtest_progress(client, handle) -> list[BacktestProgress]:
    pending = (await handle.describe()).raw_description.pending_activities
    progress = []
    for activity in pending:
        if activity.heartbeat_details.payloads:
            [detail] = await client.data_converter.decode(
                activity.heartbeat_details.payloads, [BacktestProgress]
            )
            progress.append(detail)
    return progress


async def test_a_cancel_stops_the_backtests_and_their_processes(stack):
    # 1,259 bars at 20 ms each: 25 s per backtest unless something stops it.
    stack.settings.backtest_bar_delay_seconds = 0.02
    stack.settings.backtest_progress_seconds = 0.1
    handle = await start_validation(stack.client, ["hybrid_v1", "legacy_v0"], period="5Y")

    async def both_running() -> list[BacktestProgress] | None:
        progress = await _backtest_progress(stack.client, handle)
        return progress if len(progress) == 2 and all(p.bars_done > 0 for p in progress) else None

    running = await eventually(both_running, timeout=60)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(handle.result(), 60)
    assert isinstance(failure.value.cause, CancelledError)

    # The workflow waited for every backtest and parameter search (started with them) to stop:
    # each ended cancelled...
    scheduled, cancelled = set(), set()
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            if event.activity_task_scheduled_event_attributes.task_queue.name == "orch-backtest":
                scheduled.add(event.event_id)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED:
            cancelled.add(event.activity_task_canceled_event_attributes.scheduled_event_id)
    assert len(scheduled) >= 2 and cancelled == scheduled
    # ...the running ones mid-way, and their processes are gone: nothing goes on consuming bars.
    for progress in running:
        assert 0 < progress.bars_done < progress.bars_total
        with pytest.raises(ProcessLookupError):
            os.kill(progress.pid, 0)
    report = await progress_of(handle)
    assert report.status == "cancelled" and report.current_step == "running_backtests"


async def test_apply_makes_the_winner_the_active_strategy(stack):
    assert (await system_state(stack.client)).config.active_strategy == "hybrid_v1"
    handle = await start_validation(stack.client, ["legacy_v0"], apply=True, optimise=False)
    result = await asyncio.wait_for(handle.result(), 120)

    assert result.winner == "legacy_v0" and result.applied and result.apply_error is None
    assert (result.previous_strategy, result.active_strategy) == ("hybrid_v1", "legacy_v0")
    assert (await system_state(stack.client)).config.active_strategy == "legacy_v0"
    restart = await stack.client.get_workflow_handle(result.restart_workflow_id).describe()
    assert restart.workflow_type == "RestartDiscoverySystem" and restart.parent_id == handle.id
    optimise = next(s for s in result.steps if s.name == "optimising_parameters")
    # A skipped step is `cancelled` in every workflow, as in the trading cycle (it was `completed` here, and
    # listed in steps_completed, though it did no work); progress still counts it as passed.
    assert optimise.status == "cancelled" and optimise.summary.startswith("skipped: ")
    progress = await progress_of(handle)
    assert progress.progress == 1.0 and "optimising_parameters" not in progress.details.steps_completed


async def test_apply_is_refused_clearly_while_a_restart_runs(stack):
    from tests.test_restart_discovery import start_restart

    stack.settings.discovery_scan_pacing_seconds = 0.5  # the restart's validation scan takes half a minute
    restart = await start_restart(stack.client, "legacy_v0")

    async def restart_holds_a_slot() -> bool:
        return any(c.workflow_id == restart.id for c in (await system_state(stack.client)).running_commands)

    await eventually(restart_holds_a_slot)
    handle = await start_validation(stack.client, ["legacy_v0"], apply=True, optimise=False)
    result = await asyncio.wait_for(handle.result(), 120)
    await restart.terminate(reason="test over")

    assert result.status == "completed" and result.winner == "legacy_v0"
    assert not result.applied
    assert result.apply_error is not None and restart.id in result.apply_error
    assert "already running" in result.apply_error
    recommend = next(s for s in result.steps if s.name == "generating_recommendations")
    assert "not applied" in recommend.summary


async def test_a_bad_period_fails_the_workflow_without_retrying(stack):
    handle = await stack.client.start_workflow(
        VALIDATE_ALGORITHMS,
        {"strategies": ["hybrid_v1"], "validation_period": "7W"},
        id=f"bad-{uuid.uuid4().hex[:6]}",
        task_queue="orch",
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(handle.result(), 20)
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.non_retryable and cause.type == "InvalidInput"
    assert "'7W'" in cause.message and "30D, 6M, 1Y, 5Y" in cause.message
    progress = await progress_of(handle)
    assert progress.status == "failed" and progress.details.steps_completed == []


async def test_an_unknown_strategy_fails_before_any_backtest(stack):
    handle = await start_validation(stack.client, ["hybrid_v1", "momentum_v9"])
    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(handle.result(), 30)
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "UnknownStrategy" and cause.non_retryable
    assert "momentum_v9" in cause.message and "legacy_v0" in cause.message
    progress = await progress_of(handle)
    assert progress.status == "failed" and progress.details.steps_completed == []


async def test_cli_refuses_bad_input_with_exit_2(stack, orch):
    bad_period = await orch("validate-algorithms", "--strategies", "hybrid_v1", "--period", "7W")
    assert bad_period.returncode == 2, bad_period.stderr
    assert "30D, 6M, 1Y, 5Y" in bad_period.stderr
    unknown = await orch("validate-algorithms", "--strategies", "hybrid_v1,nope_v2", "--period", "6M")
    assert unknown.returncode == 2, unknown.stderr
    assert "nope_v2" in unknown.stderr and "hybrid_v1, legacy_v0" in unknown.stderr
    folder = await orch(
        "validate-algorithms",
        "--strategies",
        "hybrid_v1",
        "--source",
        "csv",
        "--csv-folder",
        "../../../../etc",
    )
    assert folder.returncode == 2, folder.stderr
    assert "must be an absolute path without '..'" in folder.stderr.replace("\n", " ")
    symbols = await orch("validate-algorithms", "--strategies", "hybrid_v1", "--symbols", "💥,,")
    assert symbols.returncode == 2, symbols.stderr
    assert "'💥' is not a symbol" in symbols.stderr.replace("\n", " ")
    started = [e async for e in stack.client.list_workflows(f"WorkflowType = '{VALIDATE_ALGORITHMS}'")]
    assert started == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("csv_folder", "../../../../etc", "must be an absolute path without '..'"),
        ("symbols", ["💥", "", ""], "'💥' is not a symbol"),
    ],
)
async def test_bad_symbols_or_folder_fail_the_workflow_at_once(stack, field, value, message):
    # As the temporal CLI or the UI would start it: plain JSON, never checked by orch's CLI.
    handle = await stack.client.start_workflow(
        VALIDATE_ALGORITHMS,
        {"strategies": ["hybrid_v1"], "validation_period": "6M", "data_source": "csv", field: value},
        id=f"bad-{field}-{uuid.uuid4().hex[:6]}",
        task_queue="orch",
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(handle.result(), 20)
    assert message in str(failure.value.cause)
    scheduled = [
        e
        async for e in handle.fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert scheduled == []


async def test_cli_prints_the_results_and_writes_the_report(stack, orch, tmp_path):
    from tests.test_backtest import index_of, sample_folder

    def damage(symbol, lines):
        if symbol == "IBM":
            del lines[index_of(lines, "2012-11-29")]
        return lines[: index_of(lines, "2013-01-02")] if symbol == "GOOG" else lines

    bars = sample_folder(tmp_path / "data", damage)
    reports = tmp_path / "reports"
    done = await orch(
        "validate-algorithms",
        "--strategies",
        "hybrid_v1,legacy_v0",
        "--period",
        "6M",
        "--source",
        "csv",
        "--csv-folder",
        str(bars),
        "--splits",
        "2",
        "--max-combinations",
        "2",
        "--report-dir",
        str(reports),
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "hybrid_v1" in done.stdout and "legacy_v0" in done.stdout and "buy & hold" in done.stdout
    assert "defaults' score" in done.stdout
    # The data's faults are shown, not swallowed: GOOG ends early and is left out, IBM misses a day.
    output = " ".join(done.stdout.split())
    assert "warning (left_out): GOOG left out: ends early: its last bar is 2012-12-31" in output
    assert "warning (gap): IBM: 1 day(s) of the NYSE's sessions without a bar (2012-11-29)" in output
    [folder] = list(reports.iterdir())
    assert folder.name.startswith("validate-algorithms-")
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert {b["strategy"] for b in metrics["backtests"]} == {"hybrid_v1", "legacy_v0"}
    assert metrics["winner"] in ("hybrid_v1", "legacy_v0")
    assert metrics["data"]["symbols"] == ["AAPL", "IBM", "MSFT"]
    assert [(w["kind"], w["symbol"]) for w in metrics["warnings"]] == [("left_out", "GOOG"), ("gap", "IBM")]
    assert all(r["default_score"] is not None for r in metrics["recommendations"])
    assert (folder / "equity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
