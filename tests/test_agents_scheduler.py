import pytest
from pydantic import ValidationError

from orch.agents.conditions import sense_market
from orch.agents.scheduler import (
    initial_state,
    load_signal,
    market_activity,
    next_interval,
    performance_signal,
)
from orch.contracts.cycle import RegimeThresholds, SchedulerSettings, SchedulerSignals
from tests.test_agents_support import history_from_returns, now_after, random_walk, with_last_bar

SETTINGS = SchedulerSettings(base_interval_seconds=60, min_interval_seconds=10, max_interval_seconds=600)


def test_a_normal_market_keeps_the_base_interval_without_counting_an_adjustment():
    decision = next_interval(SETTINGS, initial_state(SETTINGS), SchedulerSignals())
    assert decision.state.interval_seconds == 60
    assert not decision.adjusted
    assert decision.state.adjustments == 0


def test_an_active_market_shortens_the_interval_and_counts_the_adjustment():
    decision = next_interval(SETTINGS, initial_state(SETTINGS), SchedulerSignals(market_activity=1.0))
    # Market weight 0.5 at half the interval, performance and load unchanged: 0.5 x 0.5 + 0.3 + 0.2.
    assert decision.state.interval_seconds == pytest.approx(45.0)
    assert decision.adjusted
    assert decision.state.adjustments == 1
    assert "60.0s -> 45.0s" in decision.reason


def test_each_signal_pulls_its_way_with_its_weight():
    def interval(**signals):
        return next_interval(SETTINGS, initial_state(SETTINGS), SchedulerSignals(**signals)).target_seconds

    assert interval(market_activity=0.0) == pytest.approx(60 * (0.5 * 2 + 0.3 + 0.2))
    assert interval(performance=1.0) == pytest.approx(60 * (0.5 + 0.3 * 0.5 + 0.2))
    assert interval(performance=0.0) == pytest.approx(60 * (0.5 + 0.3 * 2 + 0.2))
    assert interval(system_load=1.0) == pytest.approx(60 * (0.5 + 0.3 + 0.2 * 2))
    assert interval(system_load=0.0) == pytest.approx(60 * (0.5 + 0.3 + 0.2 * 0.5))


def test_the_interval_stays_within_its_bounds():
    narrow = SchedulerSettings(base_interval_seconds=60, min_interval_seconds=50, max_interval_seconds=70)
    busy = SchedulerSignals(market_activity=1.0, performance=1.0, system_load=0.0)
    quiet = SchedulerSignals(market_activity=0.0, performance=0.0, system_load=1.0)
    assert next_interval(narrow, initial_state(narrow), busy).state.interval_seconds == 50
    assert next_interval(narrow, initial_state(narrow), quiet).state.interval_seconds == 70


def test_small_changes_are_ignored_and_adjustments_accumulate():
    state = initial_state(SETTINGS)
    nudge = next_interval(SETTINGS, state, SchedulerSignals(market_activity=0.52))
    assert not nudge.adjusted and nudge.state.interval_seconds == 60

    state = next_interval(SETTINGS, state, SchedulerSignals(market_activity=1.0)).state
    state = next_interval(SETTINGS, state, SchedulerSignals(market_activity=0.0)).state
    state = next_interval(SETTINGS, state, SchedulerSignals()).state
    assert state.adjustments == 3
    assert state.interval_seconds == 60


def test_narrowed_bounds_move_an_interval_left_outside_them():
    state = next_interval(SETTINGS, initial_state(SETTINGS), SchedulerSignals(market_activity=0.0)).state
    assert state.interval_seconds == 90
    tighter = SchedulerSettings(base_interval_seconds=60, min_interval_seconds=10, max_interval_seconds=89)
    decision = next_interval(tighter, state, SchedulerSignals(market_activity=0.0))
    assert decision.adjusted and decision.state.interval_seconds == 89


def test_settings_refuse_a_base_outside_the_bounds():
    with pytest.raises(ValidationError, match="min_interval_seconds"):
        SchedulerSettings(base_interval_seconds=5, min_interval_seconds=10, max_interval_seconds=600)


def test_market_activity_is_higher_for_bursts_and_spikes_than_for_a_quiet_market():
    quiet = random_walk("Q", noise=0.005)
    noisy_tail = history_from_returns(
        "B", [0.005 * ((-1) ** i) for i in range(170)] + [0.03 * ((-1) ** i) for i in range(29)]
    )
    burst = with_last_bar(noisy_tail, close_factor=1.05, volume_factor=10.0)
    now = now_after(quiet)
    calm = sense_market({"Q": quiet}, now, RegimeThresholds(), source="s", lookback_bars=200)
    active = sense_market({"B": burst}, now, RegimeThresholds(), source="s", lookback_bars=200)
    assert market_activity(calm) == pytest.approx(0.5, abs=0.15)
    assert market_activity(active) > 0.9


def test_performance_and_load_signals_are_neutral_at_normal():
    assert performance_signal(success_rate=1.0, pnl_fraction=0.0) == 0.5
    assert performance_signal(success_rate=1.0, pnl_fraction=0.02) == 1.0
    assert performance_signal(success_rate=0.5, pnl_fraction=0.0) == 0.25
    assert load_signal(0.25) == 0.5
    assert load_signal(0.9) == 1.0
    assert load_signal(0.0) == 0.0
