"""The backtest package without Temporal: periods, walk-forward splits, parameter sampling, the
engine against backtrader's own analyzers, the process runner's cancel, and the report."""

from __future__ import annotations

import asyncio
import itertools
import os
from datetime import UTC, datetime

import backtrader as bt
import numpy as np
import pytest

from orch.agents.discovery import get_strategy
from orch.backtest.data import BacktestInputError, period_start, prepare, walk_forward_splits
from orch.backtest.engine import BacktestCancelled, build_cerebro, run_backtest
from orch.backtest.metrics import buy_and_hold, performance
from orch.backtest.optimise import candidate_params
from orch.backtest.process import JobFailed, run_job
from orch.backtest.report import write_report
from orch.contracts.validation import (
    BacktestRequest,
    PortfolioRules,
    PrepareDataRequest,
    ValidateAlgorithmsResult,
    ValidationPeriod,
    parse_period,
)
from orch.market.sample_data import SAMPLE_SYMBOLS, sample_history

NEWEST = datetime(2013, 3, 1, tzinfo=UTC)
HISTORIES = {s: sample_history(s) for s in SAMPLE_SYMBOLS}


def test_periods_are_the_four_accepted_forms_measured_back_from_the_newest_bar():
    assert parse_period(" 6m ") is ValidationPeriod.MONTHS_6
    with pytest.raises(ValueError, match=r"'7W'; accepted: 30D, 6M, 1Y, 5Y"):
        parse_period("7W")
    assert period_start(NEWEST, ValidationPeriod.DAYS_30) == datetime(2013, 1, 30, tzinfo=UTC)
    assert period_start(NEWEST, ValidationPeriod.MONTHS_6) == datetime(2012, 9, 1, tzinfo=UTC)
    assert period_start(NEWEST, ValidationPeriod.YEAR_1) == datetime(2012, 3, 1, tzinfo=UTC)
    assert period_start(NEWEST, ValidationPeriod.YEARS_5) == datetime(2008, 3, 1, tzinfo=UTC)
    # The end of a longer month clamps: 31 August less 6 months is 28 February.
    assert period_start(datetime(2013, 8, 31, tzinfo=UTC), ValidationPeriod.MONTHS_6).day == 28


def test_walk_forward_test_windows_follow_their_fit_windows_and_never_overlap():
    stamps = np.arange(np.datetime64("2020-01-01"), np.datetime64("2020-05-01")).astype("datetime64[s]")
    splits, notes = walk_forward_splits(stamps, 3, 10)
    assert notes == [] and [s.index for s in splits] == [1, 2, 3]
    for split in splits:
        assert split.fit.end < split.test.start and split.fit.bars >= 10 and split.test.bars >= 10
    for earlier, later in itertools.pairwise(splits):
        assert earlier.test.end < later.test.start
        assert later.fit == earlier.test  # rolling: the next fit is the previous test window
    assert splits[-1].test.end.date().isoformat() == "2020-04-30"  # the last window takes the remainder
    fewer, notes = walk_forward_splits(stamps[:45], 3, 20)
    assert len(fewer) == 1 and "1 walk-forward split(s) instead of 3" in notes[0]
    with pytest.raises(BacktestInputError, match="too few for even one walk-forward split"):
        walk_forward_splits(stamps[:30], 2, 20)


def test_prepare_resolves_the_window_splits_and_warm_up_on_the_sample():
    prepared = prepare(
        PrepareDataRequest(strategies=["hybrid_v1"], period="1Y", walk_forward_splits=2),
        source_name="sample",
        csv_folder=None,
        seed=7,
    )
    window = prepared.data.window
    assert (window.start.date().isoformat(), window.end.date().isoformat(), window.bars) == (
        "2012-03-02",
        "2013-03-01",
        250,
    )
    assert prepared.bars_per_symbol == dict.fromkeys(SAMPLE_SYMBOLS, 250) and prepared.top_n == 2
    assert prepared.data.warmup_bars == 290  # hybrid_v1 at its longest squeeze history
    assert sum(s.test.bars for s in prepared.splits) + prepared.splits[0].fit.bars == 250
    with pytest.raises(BacktestInputError, match="sample has no TSLA"):
        prepare(
            PrepareDataRequest(strategies=["legacy_v0"], period="6M", symbols=["TSLA"]),
            source_name="sample",
            csv_folder=None,
            seed=7,
        )
    with pytest.raises(BacktestInputError, match="ORCH_CSV_FOLDER"):
        prepare(
            PrepareDataRequest(strategies=["legacy_v0"], period="6M"),
            source_name="csv",
            csv_folder=None,
            seed=7,
        )


def test_parameter_samples_start_with_the_defaults_are_distinct_and_reproducible():
    combos = candidate_params("hybrid_v1", 6, seed=1)
    assert combos[0] == get_strategy("hybrid_v1").defaults() and len(combos) == 6
    assert len({tuple(sorted(c.items())) for c in combos}) == 6
    assert combos == candidate_params("hybrid_v1", 6, seed=1) != candidate_params("hybrid_v1", 6, seed=2)
    for combo in combos:
        get_strategy("hybrid_v1").resolve(combo)  # every value inside its declared range


@pytest.mark.parametrize("strategy", ["hybrid_v1", "legacy_v0"])
def test_engine_metrics_agree_with_backtraders_analyzers(strategy):
    start, end, rules = (
        datetime(2011, 3, 1, tzinfo=UTC),
        NEWEST,
        PortfolioRules(top_n=2, rebalance_every_bars=3),
    )
    run = run_backtest(HISTORIES, start, end, strategy, None, rules)
    metrics = performance(run, HISTORIES)

    cerebro = build_cerebro(HISTORIES, start, end, strategy, None, rules)
    cerebro.addanalyzer(
        bt.analyzers.SharpeRatio_A, _name="sharpe", timeframe=bt.TimeFrame.Days, riskfreerate=0.0
    )
    cerebro.addanalyzer(bt.analyzers.DrawDown, _name="drawdown")
    cerebro.addanalyzer(bt.analyzers.TradeAnalyzer, _name="trades")
    cerebro.addanalyzer(bt.analyzers.TimeReturn, _name="returns", timeframe=bt.TimeFrame.Days)
    [plain] = cerebro.run()

    returns = list(plain.analyzers.returns.get_analysis().values())
    assert metrics.bars == len(returns) == len(run.values)
    assert metrics.final_value == pytest.approx(cerebro.broker.getvalue(), rel=1e-12)
    assert metrics.total_return == pytest.approx(np.prod(np.add(returns, 1.0)) - 1.0, rel=1e-9)
    assert metrics.sharpe == pytest.approx(plain.analyzers.sharpe.get_analysis()["sharperatio"], rel=1e-9)
    assert metrics.max_drawdown == pytest.approx(plain.analyzers.drawdown.get_analysis().max.drawdown / 100)
    trades = plain.analyzers.trades.get_analysis()
    assert metrics.trades == trades.total.closed > 0
    assert metrics.win_rate == pytest.approx(trades.won.total / trades.total.closed)
    assert 0.5 < metrics.exposure <= 1.0


def test_buy_and_hold_is_equal_weights_bought_on_the_first_bar():
    stamps = HISTORIES["IBM"].timestamps[-20:]
    growth = buy_and_hold(HISTORIES, stamps)
    manual = np.mean([HISTORIES[s].close[-20:] / HISTORIES[s].close[-20] for s in SAMPLE_SYMBOLS], axis=0)
    assert growth[0] == 1.0 and np.allclose(growth, manual)


def test_a_backtest_stops_at_the_bar_on_bar_raises():
    seen = []

    def on_bar(done: int) -> None:
        seen.append(done)
        if done == 40:
            raise BacktestCancelled(done)

    with pytest.raises(BacktestCancelled) as stopped:
        run_backtest(
            HISTORIES, datetime(2012, 1, 1, tzinfo=UTC), NEWEST, "legacy_v0", None, PortfolioRules(), on_bar
        )
    assert stopped.value.bars_done == 40 and seen == list(range(1, 41))


async def test_a_job_process_reports_progress_stops_on_cancel_and_types_its_errors():
    prepared = prepare(
        PrepareDataRequest(strategies=["legacy_v0"], period="1Y"),
        source_name="sample",
        csv_folder=None,
        seed=7,
    )
    request = BacktestRequest(
        strategy="legacy_v0", data=prepared.data, window=prepared.data.window, rules=PortfolioRules()
    )
    seen: list[tuple[int, int | None]] = []
    job = asyncio.create_task(
        run_job(
            "backtest",
            request,
            on_progress=lambda d, p: seen.append((d, p)),
            poll_seconds=0.02,
            bar_delay_seconds=0.05,
        )
    )
    while not seen or seen[-1][0] < 3:
        await asyncio.sleep(0.02)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    bars, pid = seen[-1]
    assert 3 <= bars < 250 and pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped and reaped

    done = await run_job("backtest", request, on_progress=lambda d, p: seen.append((d, p)))
    assert done.metrics.bars == 250 and seen[-1][0] == 250

    missing = request.model_copy(update={"data": prepared.data.model_copy(update={"source": "csv"})})
    with pytest.raises(JobFailed) as failed:
        await run_job("backtest", missing, on_progress=lambda d, p: None)
    assert failed.value.error_type == "InvalidInput" and failed.value.non_retryable
    assert "ORCH_CSV_FOLDER" in str(failed.value)


def test_the_report_is_metrics_json_and_an_equity_png_drawn_without_a_display(tmp_path):
    import matplotlib

    from orch.backtest.jobs import backtest

    prepared = prepare(
        PrepareDataRequest(strategies=["legacy_v0"], period="6M"),
        source_name="sample",
        csv_folder=None,
        seed=7,
    )
    request = BacktestRequest(
        strategy="legacy_v0", data=prepared.data, window=prepared.data.window, rules=PortfolioRules()
    )
    result = ValidateAlgorithmsResult(
        workflow_id="validate-test",
        command_type="validate_algorithms",
        status="completed",
        steps=[],
        period=ValidationPeriod.MONTHS_6,
        data=prepared.data,
        backtests=[backtest(request, lambda done: None)],
    )
    metrics, png = write_report(result, tmp_path / "report")
    assert matplotlib.get_backend().lower() == "agg"
    assert (
        ValidateAlgorithmsResult.model_validate_json(metrics.read_text()).backtests[0].strategy == "legacy_v0"
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
