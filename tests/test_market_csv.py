"""The csv/Parquet market source and the offline sample bars (no Temporal needed)."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orch.market.base import MarketDataSource, UnknownSymbolError
from orch.market.csv import CsvMarketData, DataFileError
from orch.market.sample_data import SAMPLE_SYMBOLS, SampleMarketData, export_csv, sample_history

HEADER = "date,open,high,low,close,volume\n"


def write(folder, name: str, text: str):
    path = folder / name
    path.write_text(text)
    return path


def test_sample_bars_are_real_adjusted_daily_bars():
    source = SampleMarketData()
    assert isinstance(source, MarketDataSource) and source.name == "sample"
    assert source.universe() == list(SAMPLE_SYMBOLS) == ["AAPL", "GOOG", "IBM", "MSFT"]
    aapl = source.history("AAPL", 100_000)
    assert str(aapl.timestamps[0])[:10] == "2000-03-01" and str(aapl.timestamps[-1])[:10] == "2013-03-01"
    assert str(source.history("GOOG", 100_000).timestamps[0])[:10] == "2004-08-19"
    # Adjusted: AAPL's 2:1 split of 2005-02-28 is no 50 % overnight fall.
    daily = aapl.close[1:] / aapl.close[:-1]
    assert daily.min() > 0.4 and np.all(aapl.high >= aapl.low)
    split = int(np.searchsorted(aapl.timestamps, np.datetime64("2005-02-28")))
    assert 0.9 < aapl.close[split] / aapl.close[split - 1] < 1.1
    last5 = source.history("IBM", 5, end=datetime(2013, 1, 1, tzinfo=UTC))
    assert len(last5) == 5 and str(last5.timestamps[-1])[:10] == "2012-12-31"
    with pytest.raises(UnknownSymbolError, match="AAPL, GOOG, IBM, MSFT"):
        source.history("TSLA", 5)


def test_the_shared_sample_bars_cannot_be_edited_in_place():
    # Every reader shares one cached copy: an in-place edit would corrupt every later reader.
    history = SampleMarketData().history("AAPL", 10)
    with pytest.raises(ValueError, match="read-only"):
        history.close[0] = 0.0
    assert SampleMarketData().history("AAPL", 10).close[0] > 0


def test_csv_and_parquet_folders_serve_the_same_bars_as_the_sample(tmp_path):
    export_csv(tmp_path / "csv")
    parquet = tmp_path / "parquet"
    parquet.mkdir()
    for symbol in ("AAPL", "MSFT"):
        history = sample_history(symbol)
        table = pa.table(
            {
                "Timestamp": pa.array(
                    history.timestamps.astype("datetime64[s]"), pa.timestamp("s", tz="UTC")
                ),
                "Open": history.open,
                "High": history.high,
                "Low": history.low,
                "Close": history.close,
                "Volume": history.volume,
                "ignored": np.zeros(len(history)),
            }
        )
        pq.write_table(table, parquet / f"{symbol}.parquet")
    from_csv, from_parquet = CsvMarketData(tmp_path / "csv"), CsvMarketData(parquet)
    assert from_csv.universe() == list(SAMPLE_SYMBOLS) and from_parquet.universe() == ["AAPL", "MSFT"]
    end = datetime(2010, 6, 30, tzinfo=UTC)
    for source in (from_csv, from_parquet):
        got, want = source.history("MSFT", 300, end), SampleMarketData().history("MSFT", 300, end)
        assert np.array_equal(got.timestamps, want.timestamps)
        for column in ("open", "high", "low", "close", "volume"):
            assert np.array_equal(getattr(got, column), getattr(want, column)), column
    with pytest.raises(UnknownSymbolError, match="TSLA"):
        from_csv.history("TSLA", 5)


def test_rows_may_come_newest_first_and_a_changed_file_is_read_again(tmp_path):
    path = write(tmp_path, "XYZ.csv", HEADER + "2024-01-03,11,12,10,11.5,100\n2024-01-02,10,11,9,10.5,200\n")
    source = CsvMarketData(tmp_path)
    history = source.history("XYZ", 10)
    assert [str(t)[:10] for t in history.timestamps] == ["2024-01-02", "2024-01-03"]
    assert history.close.tolist() == [10.5, 11.5]
    path.write_text(
        HEADER + "2024-01-02,10,11,9,10.5,200\n2024-01-03,11,12,10,11.5,100\n2024-01-04,12,13,11,12.5,50\n"
    )
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert len(source.history("XYZ", 10)) == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty file"),
        (HEADER, "no bars"),
        ("date,open,high,low,close\n2024-01-02,1,1,1,1\n", "missing column(s) volume"),
        ("when,open,high,low,close,volume\n2024-01-02,1,1,1,1,1\n", "missing column(s) timestamp"),
        (HEADER + "2024-01-02,1,1,1,1,1\nyesterday,1,1,1,1,1\n", "line 3: timestamp 'yesterday'"),
        (HEADER + "2024-01-02,1,abc,1,1,1\n", "line 2: high 'abc' is not a number"),
        (HEADER + "2024-01-02,1,1,1,,1\n", "line 2: close '' is not a number"),
        (HEADER + "2024-01-02,1,1,1,nan,1\n", "line 2: close 'nan' is not a number"),
        (HEADER + "2024-01-02,-1,1,1,1,1\n", "line 2: prices must be positive"),
        (HEADER + "2024-01-02,1,1,2,1,1\n", "line 2: high 1.0 is below low 2.0"),
        (HEADER + "2024-01-02,1,1,1,1,-5\n", "line 2: volume -5.0 is negative"),
        (
            HEADER + "2024-01-02,1,1,1,1,1\n2024-01-02,1,1,1,1,1\n",
            "line 3: timestamp 2024-01-02T00:00:00 already",
        ),
        (HEADER + "2024-01-02,1,1,1\n", "line 2: 4 fields, the header has 6"),
    ],
)
def test_a_malformed_file_is_refused_with_where_and_why(tmp_path, content, message):
    write(tmp_path, "BAD.csv", content)
    with pytest.raises(DataFileError) as refused:
        CsvMarketData(tmp_path).history("BAD", 10)
    assert "BAD.csv" in str(refused.value) and message in str(refused.value)


def test_a_malformed_parquet_file_and_an_unusable_folder_are_refused(tmp_path):
    (tmp_path / "NOPE.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataFileError, match="not a readable Parquet file"):
        CsvMarketData(tmp_path).history("NOPE", 5)
    write(tmp_path, "TWICE.csv", HEADER + "2024-01-02,1,1,1,1,1\n")
    pq.write_table(pa.table({"date": ["2024-01-02"]}), tmp_path / "TWICE.parquet")
    with pytest.raises(DataFileError, match=r"TWICE\.csv and TWICE\.parquet both hold TWICE"):
        CsvMarketData(tmp_path).universe()
    with pytest.raises(DataFileError, match="is not a folder"):
        CsvMarketData(tmp_path / "missing").universe()


def _rows(closes: list[float]) -> str:
    """Daily rows on consecutive NYSE sessions of January 2024, each bar's open = low = high = close."""
    days = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08", "2024-01-09"]
    return HEADER + "".join(f"{d},{c},{c},{c},{c},100\n" for d, c in zip(days, closes, strict=False))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        # The case: a close ten times the day's high.
        (
            HEADER + "2024-01-02,10,11,9,10.5,100\n2024-01-03,10,11,9,110,100\n",
            "line 3: open 10 or close 110 is outside the bar's range (low 9, high 11)",
        ),
        (HEADER + "2024-01-02,8.5,11,9,10.5,100\n", "line 2: open 8.5 or close 10.5 is outside"),
        # A whole row times 100: consistent in itself, undone by the next row.
        (_rows([10, 10.2, 1020, 10.1, 10.3]), "line 4: open 1020 / close 1020 jumps more than 3x"),
        # A decimal slip down.
        (_rows([10, 10.2, 1.02, 10.1, 10.3]), "line 4: open 1.02 / close 1.02 jumps more than 3x"),
    ],
)
def test_a_price_no_trade_printed_is_refused_naming_file_and_line(tmp_path, content, message):
    write(tmp_path, "BAD.csv", content)
    with pytest.raises(DataFileError) as refused:
        CsvMarketData(tmp_path).history("BAD", 10)
    assert "BAD.csv" in str(refused.value) and message in str(refused.value)


def test_a_lasting_crash_or_rally_is_real_and_kept(tmp_path):
    # Each big move is confirmed by the bar after it (the price stays), so nothing is refused.
    write(tmp_path, "CRASH.csv", _rows([100, 99, 20, 21, 19.5, 20.5]))
    write(tmp_path, "RALLY.csv", _rows([10, 10.5, 45, 44, 46, 47]))
    # The last bar has no bar after it to confirm or undo it: it cannot be judged.
    write(tmp_path, "LAST.csv", _rows([10, 10.5, 10.2, 10.1, 10.4, 500]))
    source = CsvMarketData(tmp_path)
    assert source.history("CRASH", 10).close.tolist() == [100, 99, 20, 21, 19.5, 20.5]
    assert len(source.history("RALLY", 10)) == len(source.history("LAST", 10)) == 6
