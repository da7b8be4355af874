from datetime import timedelta

import numpy as np
import pytest

from orch.agents.conditions import (
    ZSCORE_CAP,
    assess_conditions,
    robust_zscore,
    sense_market,
    validate_history,
)
from orch.contracts.cycle import (
    AnomalyKind,
    DataIssueKind,
    ImbalanceSource,
    MarketSnapshot,
    OrderBookSummary,
    RegimeThresholds,
)
from orch.contracts.market import Regime
from orch.market.base import PriceHistory
from tests.test_agents_support import (
    history_from_returns,
    now_after,
    random_walk,
    range_bound,
    uptrend,
    with_last_bar,
)

THRESHOLDS = RegimeThresholds()


def test_a_steady_uptrend_is_trending_and_points_up():
    conditions = assess_conditions(uptrend(), THRESHOLDS)
    assert conditions.regime is Regime.TRENDING
    assert conditions.trend > 0.05
    assert conditions.efficiency_ratio > THRESHOLDS.trend_efficiency


@pytest.mark.parametrize("history", [range_bound(), random_walk()], ids=["range", "random walk"])
def test_a_market_going_nowhere_is_ranging(history):
    conditions = assess_conditions(history, THRESHOLDS)
    assert conditions.regime is Regime.RANGING
    assert conditions.efficiency_ratio < THRESHOLDS.trend_efficiency


def test_a_volatility_burst_is_volatile_even_when_it_trends():
    rng = np.random.default_rng(5)
    calm = 0.003 + 0.004 * rng.standard_normal(170)
    wild = 0.003 + 0.02 * rng.standard_normal(29)
    conditions = assess_conditions(history_from_returns("BURST", np.concatenate([calm, wild])), THRESHOLDS)
    assert conditions.volatility_ratio >= THRESHOLDS.volatility_ratio
    assert conditions.regime is Regime.VOLATILE


def test_the_trend_threshold_decides_between_trending_and_ranging():
    history = uptrend()
    er = assess_conditions(history, THRESHOLDS).efficiency_ratio
    stricter = RegimeThresholds(trend_efficiency=min(er + 0.05, 0.99))
    assert assess_conditions(history, stricter).regime is Regime.RANGING


def test_clean_fresh_data_has_no_flags():
    history = uptrend()
    quality = validate_history(history, now_after(history))
    assert quality.issues == []
    assert quality.usable


def _replace(history: PriceHistory, **columns) -> PriceHistory:
    fields = {
        name: getattr(history, name) for name in ("timestamps", "open", "high", "low", "close", "volume")
    }
    return PriceHistory(history.symbol, **{**fields, **columns})


def test_missing_bars_are_flagged_as_a_gap_that_does_not_block():
    history = uptrend()
    keep = np.ones(len(history), dtype=bool)
    keep[100:105] = False
    gapped = _replace(
        history,
        **{
            name: getattr(history, name)[keep]
            for name in ("timestamps", "open", "high", "low", "close", "volume")
        },
    )
    quality = validate_history(gapped, now_after(history))
    assert quality.kinds == {DataIssueKind.GAP}
    assert quality.usable
    assert "0:06:00" in quality.issues[0].message  # five bars missing: six minutes between neighbours


def test_timestamps_going_backwards_are_flagged_and_block():
    history = uptrend()
    stamps = history.timestamps.copy()
    stamps[[50, 51]] = stamps[[51, 50]]
    quality = validate_history(_replace(history, timestamps=stamps), now_after(history))
    assert DataIssueKind.NON_MONOTONIC_TIMESTAMPS in quality.kinds
    assert not quality.usable


@pytest.mark.parametrize("bad", [0.0, -3.0, np.nan])
def test_a_non_positive_or_missing_price_is_flagged_and_blocks(bad):
    history = uptrend()
    low = history.low.copy()
    low[120] = bad
    quality = validate_history(_replace(history, low=low), now_after(history))
    assert quality.kinds == {DataIssueKind.NON_POSITIVE_PRICE}
    assert not quality.usable


def test_old_crypto_data_is_flagged_stale_and_blocks():
    history = uptrend("BTC/USD")
    quality = validate_history(history, now_after(history) + timedelta(hours=1))
    assert quality.kinds == {DataIssueKind.STALE}
    assert not quality.usable
    # An explicit allowance overrides the default of three bars.
    late = now_after(history) + timedelta(hours=1)
    assert validate_history(history, late, stale_after=timedelta(days=1)).usable


def test_equity_minute_bars_age_only_while_the_market_is_open():
    history = uptrend("AAPL")  # minute bars ending at 03:20 UTC on Monday 3 March 2025, before the open
    monday = now_after(history).replace(hour=0, minute=0)
    # Closed hours do not age them: fresh until the open and a minute into the session (09:31 New York).
    assert validate_history(history, monday.replace(hour=14, minute=31)).usable
    # The session went on with no bar: stale (the old 72-hour allowance called this fresh until Thursday).
    assert validate_history(history, monday.replace(hour=16)).kinds == {DataIssueKind.STALE}
    assert validate_history(history, monday + timedelta(days=4)).kinds == {DataIssueKind.STALE}


def test_an_equity_lagging_its_peers_is_stale():
    history = uptrend("AAPL")
    now = now_after(history)
    assert validate_history(history, now, peer_latest=now).usable
    quality = validate_history(history, now + timedelta(minutes=10), peer_latest=now + timedelta(minutes=10))
    assert quality.kinds == {DataIssueKind.STALE}
    assert "lags the newest of its peers" in quality.issues[0].message


def _daily(symbol: str, days: np.ndarray) -> PriceHistory:
    base = uptrend(symbol, bars=len(days))
    return _replace(base, timestamps=days.astype("datetime64[s]"))


def test_weekends_are_no_gap_for_equities_but_are_for_crypto():
    weekdays = np.busday_offset(np.datetime64("2025-01-01"), np.arange(60), roll="forward")
    assert validate_history(_daily("AAPL", weekdays), now_after(_daily("AAPL", weekdays))).kinds == set()
    crypto = validate_history(_daily("ETH/USD", weekdays), now_after(_daily("ETH/USD", weekdays)))
    assert crypto.kinds == {DataIssueKind.GAP}

    missing_tuesday = np.delete(weekdays, 30)
    quality = validate_history(_daily("AAPL", missing_tuesday), now_after(_daily("AAPL", missing_tuesday)))
    assert quality.kinds == {DataIssueKind.GAP}
    assert quality.issues[0].count == 1


def test_nights_are_no_gap_for_equity_minute_bars():
    day_one = np.datetime64("2025-03-03T14:30") + np.arange(390)
    day_two = np.datetime64("2025-03-04T14:30") + np.arange(390)
    stamps = np.concatenate([day_one, day_two]).astype("datetime64[s]")
    history = _replace(uptrend("AAPL", bars=780), timestamps=stamps)
    assert validate_history(history, now_after(history)).kinds == set()


def test_too_short_a_history_blocks():
    history = uptrend(bars=10)
    quality = validate_history(history, now_after(history))
    assert quality.kinds == {DataIssueKind.INSUFFICIENT_HISTORY}
    assert not quality.usable


def test_imbalance_reads_buying_from_closes_at_the_highs_and_prefers_the_order_book():
    rising = assess_conditions(uptrend(), THRESHOLDS)
    assert rising.imbalance_source is ImbalanceSource.VOLUME
    assert rising.imbalance > 0.2

    falling = assess_conditions(
        history_from_returns("DOWN", -0.003 + 0.004 * np.random.default_rng(1).standard_normal(199)),
        THRESHOLDS,
    )
    assert falling.imbalance < -0.2

    book = OrderBookSummary(bid_size=100.0, ask_size=300.0)
    with_book = assess_conditions(uptrend(), THRESHOLDS, order_book=book)
    assert with_book.imbalance_source is ImbalanceSource.ORDER_BOOK
    assert with_book.imbalance == pytest.approx(-0.5)


def test_a_shock_and_a_volume_spike_are_anomalies_and_quiet_bars_are_not():
    history = random_walk()
    assert assess_conditions(history, THRESHOLDS).anomalies == []

    shocked = assess_conditions(with_last_bar(history, close_factor=1.12, volume_factor=25.0), THRESHOLDS)
    kinds = {a.kind for a in shocked.anomalies}
    assert kinds == {AnomalyKind.RETURN, AnomalyKind.VOLUME}
    assert all(abs(a.robust_zscore) >= 4 for a in shocked.anomalies)


def test_sense_market_keeps_unusable_symbols_out_of_the_conditions_but_reports_them():
    good, short = uptrend("GOOD"), uptrend("SHORT", bars=10)
    snapshot = sense_market(
        {"GOOD": good, "SHORT": short}, now_after(good), THRESHOLDS, source="synthetic", lookback_bars=200
    )
    assert [c.symbol for c in snapshot.conditions] == ["GOOD"]
    assert {q.symbol: q.usable for q in snapshot.data_quality} == {"GOOD": True, "SHORT": False}
    # It crosses Temporal's data converter as JSON: the round trip must be lossless.
    assert MarketSnapshot.model_validate_json(snapshot.model_dump_json()) == snapshot


def test_robust_zscore_measures_in_standard_deviations_and_caps_a_flat_baseline():
    baseline = np.random.default_rng(9).normal(10.0, 2.0, 20_000)
    assert robust_zscore(14.0, baseline) == pytest.approx(2.0, abs=0.05)
    # One huge outlier in the baseline barely moves a robust score.
    assert robust_zscore(14.0, np.append(baseline, 1e9)) == pytest.approx(2.0, abs=0.05)
    assert robust_zscore(5.0, np.full(50, 4.0)) == ZSCORE_CAP
    assert robust_zscore(4.0, np.full(50, 4.0)) == 0.0
