"""The backtest package without Temporal: periods, walk-forward splits, parameter sampling, the
engine against backtrader's own analyzers, the process runner's cancel, and the report."""

from __future__ import annotations

import asyncio
import itertools
import os
from datetime import UTC, date, datetime

import backtrader as bt
import numpy as np
import pytest

from orch.agents.discovery import get_strategy
from orch.backtest import data as data_module
from orch.backtest.analysis import analyse, recommend, winner
from orch.backtest.data import BacktestInputError, load_histories, period_start, prepare, walk_forward_splits
from orch.backtest.engine import BacktestCancelled, build_cerebro, run_backtest
from orch.backtest.metrics import buy_and_hold, performance
from orch.backtest.optimise import candidate_params
from orch.backtest.process import JobFailed, run_job
from orch.cli.validation_report import write_report
from orch.contracts.validation import (
    BacktestRequest,
    DataWarningKind,
    OptimisationResult,
    PerformanceAnalysis,
    PerformanceMetrics,
    PortfolioRules,
    PrepareDataRequest,
    ReturnMetrics,
    SplitResult,
    StrategyAnalysis,
    ValidateAlgorithmsResult,
    ValidationPeriod,
    WalkForwardSplit,
    Window,
    parse_period,
)
from orch.market.base import PriceHistory
from orch.market.csv import DataFileError
from orch.market.sample_data import SAMPLE_SYMBOLS, SampleMarketData, export_csv, sample_history

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


# ---- Bad data: each case refused naming file and row, or a typed warning; one universe for all -------


def sample_folder(tmp_path, edit=None):
    """The sample's real bars as a csv folder; `edit(symbol, lines)` may change a file's data lines."""
    folder = tmp_path / "bars"
    for path in export_csv(folder):
        header, *lines = path.read_text().splitlines()
        if edit is not None:
            lines = edit(path.stem, lines)
        path.write_text("\n".join([header, *lines]) + "\n")
    return folder


def prepare_csv(folder, strategies=("hybrid_v1", "legacy_v0"), period="1Y", splits=0):
    return prepare(
        PrepareDataRequest(strategies=list(strategies), period=period, walk_forward_splits=splits),
        source_name="csv",
        csv_folder=str(folder),
        seed=7,
    )


def scaled(line: str, factor: float, columns=(1, 2, 3, 4)) -> str:
    cells = line.split(",")
    for c in columns:
        cells[c] = repr(float(cells[c]) * factor)
    return ",".join(cells)


def index_of(lines: list[str], day: str) -> int:
    return next(i for i, line in enumerate(lines) if line.startswith(day))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        # The two cases: a close ten times the day's high, and one row with every price x100.
        (lambda ln: scaled(ln, 10 * float(ln.split(",")[2]) / float(ln.split(",")[4]), (4,)), "outside"),
        (lambda ln: scaled(ln, 100), "jumps more than 3x"),
    ],
)
def test_a_bad_row_in_a_csv_file_is_refused_naming_file_and_line(tmp_path, edit, message):
    def corrupt(symbol, lines):
        if symbol == "AAPL":
            at = index_of(lines, "2012-06-01")
            lines[at] = edit(lines[at])
        return lines

    folder = sample_folder(tmp_path, corrupt)
    with pytest.raises(DataFileError) as refused:
        prepare_csv(folder)
    line = index_of((folder / "AAPL.csv").read_text().splitlines(), "2012-06-01") + 1
    assert f"AAPL.csv: line {line}: " in str(refused.value) and message in str(refused.value)


def test_a_lasting_crash_is_real_data_and_kept(tmp_path):
    def crash(symbol, lines):
        if symbol == "IBM":  # a fall to a quarter that stays: the next bars confirm it
            at = index_of(lines, "2012-06-01")
            lines[at:] = [scaled(ln, 0.25) for ln in lines[at:]]
        return lines

    prepared = prepare_csv(sample_folder(tmp_path, crash))
    assert prepared.data.symbols == list(SAMPLE_SYMBOLS) and prepared.warnings == []


class SpikedSample(SampleMarketData):
    """The sample with one bar of MSFT times 100: what a faulty vendor feed would serve."""

    def history(self, symbol, bars, end=None):
        history = super().history(symbol, bars, end)
        if symbol != "MSFT":
            return history
        stamps, *columns = (column.copy() for column in _columns(history))  # the sample's are shared
        at = int(np.searchsorted(stamps, np.datetime64("2012-06-01")))
        if 0 < at < len(stamps) - 1:
            for column in columns[:4]:
                column[at] *= 100
        return PriceHistory(symbol, stamps, *columns)


def test_a_bad_bar_from_any_source_is_refused_naming_symbol_and_date():
    request = PrepareDataRequest(strategies=["legacy_v0"], period="1Y")
    with pytest.raises(BacktestInputError, match=r"sample: MSFT 2012-06-01: close .* jumps more than 3x"):
        data_module._prepare(SpikedSample(), request, source_name="sample", csv_folder=None, seed=7)


def test_symbols_that_do_not_cover_the_window_are_left_out_with_a_warning(tmp_path):
    def shorten(symbol, lines):
        if symbol == "MSFT":  # ends two months early
            return lines[: index_of(lines, "2013-01-02")]
        if symbol == "GOOG":  # too recent to have the warm-up before the window: ranked only late
            return lines[index_of(lines, "2011-09-01") :]
        return lines

    folder = sample_folder(tmp_path, shorten)
    (folder / "TINY.csv").write_text(
        "date,open,high,low,close,volume\n"
        + "".join(f"2013-02-{d:02d},10,11,9,10,1000\n" for d in (11, 12, 13, 14, 15, 19, 20, 21, 22, 25))
    )
    prepared = prepare_csv(folder)
    assert prepared.data.symbols == ["AAPL", "IBM"]
    left_out = {w.symbol: w.message for w in prepared.warnings if w.kind is DataWarningKind.LEFT_OUT}
    assert set(left_out) == {"GOOG", "MSFT", "TINY"}
    assert "ends early: its last bar is 2012-12-31" in left_out["MSFT"]
    assert (
        "starts too late (2011-09-01): 125 bars before the window's first bar 2012-03-02" in left_out["GOOG"]
    )
    assert "only 10 bars; the strategies need 290" in left_out["TINY"]
    assert prepared.top_n == 1 and prepared.bars_per_symbol == {"AAPL": 250, "IBM": 250}

    # Strategies and buy-and-hold then see the same two symbols over the same bars.
    from orch.backtest.jobs import backtest

    request = BacktestRequest(
        strategy="legacy_v0",
        data=prepared.data,
        window=prepared.data.window,
        rules=PortfolioRules(top_n=prepared.top_n),
    )
    result = backtest(request, lambda done: None)
    loaded = load_histories(prepared.data)
    assert sorted(loaded) == ["AAPL", "IBM"] and result.metrics.bars == 250
    window = prepared.data.window
    expected = np.mean(
        [
            loaded[s].close[-1] / loaded[s].close[np.searchsorted(loaded[s].timestamps, _np(window.start))]
            for s in ("AAPL", "IBM")
        ]
    )
    assert result.metrics.buy_and_hold.total_return == pytest.approx(expected - 1.0, rel=1e-12)


def _np(moment: datetime) -> np.datetime64:
    return np.datetime64(moment.replace(tzinfo=None), "s")


def test_a_folder_without_warm_up_starts_the_window_later_and_says_so(tmp_path):
    def recent(symbol, lines):
        return lines[index_of(lines, "2011-06-01") :]  # 440 bars up to 2013-03-01

    prepared = prepare_csv(sample_folder(tmp_path, recent), strategies=["hybrid_v1"])
    [late] = [w for w in prepared.warnings if w.kind is DataWarningKind.WINDOW_STARTS_LATE]
    assert prepared.data.warmup_bars == 290  # hybrid_v1 with its longest windows
    # Each symbol has exactly its warm-up before the window: the summary's "warm-up 290" is true.
    for symbol, history in load_histories(prepared.data).items():
        assert int((history.timestamps < _np(prepared.data.window.start)).sum()) == 290, symbol
    assert prepared.data.window.start.date() > date(2012, 3, 2) and "not 2012-03-02" in late.message
    assert "warm-up 290 bars before it" in prepared.summary

    def too_recent(symbol, lines):
        return lines[index_of(lines, "2012-03-01") :]

    with pytest.raises(BacktestInputError, match="no symbol has more than 290 bars"):
        prepare_csv(sample_folder(tmp_path / "short", too_recent), strategies=["hybrid_v1"])


def test_missing_sessions_and_zero_volume_are_warnings_naming_symbol_and_days(tmp_path):
    def damage(symbol, lines):
        if symbol == "IBM":
            for day in ("2012-11-29", "2012-07-10", "2012-07-09"):
                del lines[index_of(lines, day)]
        if symbol == "MSFT":
            at = index_of(lines, "2012-12-03")
            lines[at : at + 2] = [ln.rsplit(",", 1)[0] + ",0.0" for ln in lines[at : at + 2]]
        return lines

    prepared = prepare_csv(sample_folder(tmp_path, damage))
    [gap] = [w for w in prepared.warnings if w.kind is DataWarningKind.GAP]
    assert gap.symbol == "IBM" and "3 day(s) of the NYSE's sessions without a bar" in gap.message
    assert "(2012-07-09, 2012-07-10, 2012-11-29)" in gap.message
    [silent] = [w for w in prepared.warnings if w.kind is DataWarningKind.ZERO_VOLUME]
    assert silent.symbol == "MSFT" and "volume 0 on 2 of 250 bars (first 2012-12-03)" in silent.message
    # Holidays and weekends are no gaps: the sample itself raises no warning.
    assert prepare_csv(sample_folder(tmp_path / "clean")).warnings == []


def test_buy_and_hold_holds_every_symbol_even_one_whose_first_bar_comes_a_bar_later():
    stamps = HISTORIES["IBM"].timestamps[-20:]
    late = PriceHistory("MSFT", *(column[-19:] for column in _columns(HISTORIES["MSFT"])))
    growth = buy_and_hold({"IBM": HISTORIES["IBM"], "MSFT": late}, stamps)
    ibm = HISTORIES["IBM"].close[-20:] / HISTORIES["IBM"].close[-20]
    msft = np.concatenate([[1.0], late.close / late.close[0]])  # cash until its first bar, then held
    assert np.allclose(growth, (ibm + msft) / 2)


def _columns(history: PriceHistory):
    return (history.timestamps, history.open, history.high, history.low, history.close, history.volume)


# ---- Recommendations ----------------------------------------------------------------------------------


def _returns(sharpe: float | None, total: float = 0.0) -> ReturnMetrics:
    return ReturnMetrics(total_return=total, cagr=None, sharpe=sharpe, sortino=None, max_drawdown=0.1)


def _row(strategy: str, sharpe: float, trades: int = 20) -> StrategyAnalysis:
    metrics = PerformanceMetrics(
        **_returns(sharpe, 0.1).model_dump(),
        win_rate=0.5 if trades else None,
        trades=trades,
        exposure=0.9 if trades else 0.0,
        final_value=110_000.0,
        bars=250,
        buy_and_hold=_returns(0.5, 0.05),
        excess_return=0.05,
    )
    defaults = get_strategy(strategy).defaults()
    return StrategyAnalysis(
        strategy=strategy, params=defaults, metrics=metrics, beats_buy_and_hold=True, rank_by_sharpe=1
    )


def _split(strategy: str, index: int, params: dict, tuned: float, default: float) -> SplitResult:
    window = Window(start=NEWEST, end=NEWEST, bars=50)
    return SplitResult(
        summary="",
        strategy=strategy,
        split=WalkForwardSplit(index=index, fit=window, test=window),
        best_params=params,
        in_sample=_returns(3.0),
        out_of_sample=_returns(tuned),
        default_out_of_sample=_returns(default),
        combinations_tried=3,
        fit_bars_seen=window,
        test_bars_seen=window,
    )


def test_the_recommended_parameters_are_the_ones_that_beat_the_defaults_out_of_sample():
    a, b = candidate_params("legacy_v0", 3, seed=1)[1:]
    # The case: tuned sets win on average (1.55 against 1.30), but the last split's set
    # does worse out of sample than the defaults on the same window (1.01 against 1.46).
    walk = OptimisationResult(
        strategy="legacy_v0",
        splits=[_split("legacy_v0", 1, a, 2.10, 1.15), _split("legacy_v0", 2, b, 1.01, 1.46)],
    )
    analysis = PerformanceAnalysis(summary="", strategies=[_row("legacy_v0", 0.8)], best="legacy_v0")
    [recommended] = recommend(analysis, [walk])
    assert recommended.tuned and recommended.split == 1 and recommended.params == a
    assert (recommended.score, recommended.default_score) == (2.10, 1.15)

    # No tuned set beats the defaults on its own window: the defaults, scored by their mean.
    losing = OptimisationResult(
        strategy="legacy_v0",
        splits=[_split("legacy_v0", 1, a, 1.0, 1.15), _split("legacy_v0", 2, b, 1.01, 1.46)],
    )
    [kept] = recommend(analysis, [losing])
    assert not kept.tuned and kept.params == get_strategy("legacy_v0").defaults() and kept.split is None
    assert kept.score == kept.default_score == pytest.approx((1.15 + 1.46) / 2)
    assert "keeping the defaults" in " ".join(kept.reasons)


def test_a_strategy_with_no_trades_is_never_recommended():
    analysis = PerformanceAnalysis(
        summary="",
        strategies=[_row("hybrid_v1", 2.5, trades=0), _row("legacy_v0", 0.3)],
        best="hybrid_v1",
    )
    ranked = recommend(analysis, [])
    assert [r.strategy for r in ranked] == ["legacy_v0", "hybrid_v1"]
    assert winner(ranked).strategy == "legacy_v0" and not ranked[1].recommendable
    assert "never recommended: it made no trades" in " ".join(ranked[1].reasons)
    assert (
        winner(
            recommend(
                PerformanceAnalysis(summary="", strategies=[_row("hybrid_v1", 2.5, 0)], best="hybrid_v1"), []
            )
        )
        is None
    )


def test_a_universe_without_volume_recommends_no_strategy(tmp_path):
    from orch.backtest.jobs import backtest

    def silent(symbol, lines):
        return [line.rsplit(",", 1)[0] + ",0.0" for line in lines]

    prepared = prepare_csv(sample_folder(tmp_path, silent), period="6M")
    assert {w.symbol for w in prepared.warnings if w.kind is DataWarningKind.ZERO_VOLUME} == set(
        SAMPLE_SYMBOLS
    )
    results = [
        backtest(
            BacktestRequest(
                strategy=strategy,
                data=prepared.data,
                window=prepared.data.window,
                rules=PortfolioRules(top_n=prepared.top_n),
            ),
            lambda done: None,
        )
        for strategy in ("hybrid_v1", "legacy_v0")
    ]
    assert [r.metrics.trades for r in results] == [0, 0]
    assert winner(recommend(analyse(results), [])) is None
