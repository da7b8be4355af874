from datetime import UTC, datetime, timedelta

import pytest

from orch.agents.health import evaluate_health
from orch.contracts.agent_errors import AgentErrorTracker
from orch.contracts.cycle import (
    AdapterHealth,
    AgentErrorLog,
    BreakerName,
    HealthAssessment,
    HealthFigures,
    HealthStatus,
    HealthThresholds,
)
from orch.contracts.system import EmergencyLevel

NOW = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
THRESHOLDS = HealthThresholds()


def _figures(**changes) -> HealthFigures:
    fields = dict(
        latency_ms_p50=5.0,
        latency_ms_p99=40.0,
        requests=1_000,
        errors=3,
        fees=10.0,
        gross_pnl=200.0,
        equity=100_000.0,
        broker=AdapterHealth(name="simulated", reachable=True, latency_ms=1.0),
        data_sources=[
            AdapterHealth(name="simulated", reachable=True),
            AdapterHealth(name="csv", reachable=True),
        ],
    )
    return HealthFigures(**{**fields, **changes})


def test_good_figures_are_healthy_with_every_breaker_closed():
    health = evaluate_health(_figures(), THRESHOLDS, NOW)
    assert health.status is HealthStatus.HEALTHY
    assert health.tripped == []
    assert health.recommended_level is EmergencyLevel.NONE
    assert {b.name for b in health.breakers} == set(BreakerName)
    assert HealthAssessment.model_validate_json(health.model_dump_json()) == health


@pytest.mark.parametrize(
    ("changes", "breaker", "level"),
    [
        ({"latency_ms_p99": 400.0}, BreakerName.LATENCY, EmergencyLevel.PAUSE_ENTRIES),
        ({"errors": 80}, BreakerName.ERROR_RATE, EmergencyLevel.PAUSE_ENTRIES),
        ({"fees": 150.0}, BreakerName.FEES, EmergencyLevel.PAUSE_ENTRIES),
        ({"gross_pnl": -2_500.0}, BreakerName.PROFITABILITY, EmergencyLevel.REDUCE_ONLY),
        (
            {"broker": AdapterHealth(name="alpaca", reachable=False, error="timeout")},
            BreakerName.BROKER,
            EmergencyLevel.HALT,
        ),
        (
            {
                "data_sources": [
                    AdapterHealth(name="alpaca", reachable=False),
                    AdapterHealth(name="csv", reachable=False),
                ]
            },
            BreakerName.MARKET_DATA,
            EmergencyLevel.PAUSE_ENTRIES,
        ),
    ],
)
def test_each_threshold_trips_its_named_breaker(changes, breaker, level):
    health = evaluate_health(_figures(**changes), THRESHOLDS, NOW)
    assert health.status is HealthStatus.UNHEALTHY
    assert health.tripped == [breaker]
    assert health.recommended_level is level
    [tripped] = [b for b in health.breakers if b.tripped]
    assert tripped.tripped_at == NOW
    assert tripped.message


def test_the_strictest_tripped_breaker_sets_the_recommended_level():
    figures = _figures(latency_ms_p99=900.0, broker=AdapterHealth(name="alpaca", reachable=False))
    health = evaluate_health(figures, THRESHOLDS, NOW)
    assert set(health.tripped) == {BreakerName.LATENCY, BreakerName.BROKER}
    assert health.recommended_level is EmergencyLevel.HALT


def test_a_few_errors_in_a_few_requests_do_not_trip():
    health = evaluate_health(_figures(requests=4, errors=2), THRESHOLDS, NOW)
    assert health.tripped == []


def test_one_data_source_down_degrades_without_tripping():
    sources = [
        AdapterHealth(name="alpaca", reachable=False, error="401"),
        AdapterHealth(name="csv", reachable=True),
    ]
    health = evaluate_health(_figures(data_sources=sources), THRESHOLDS, NOW)
    assert health.status is HealthStatus.DEGRADED
    assert health.tripped == []
    assert "alpaca unreachable: 401" in health.notes[0]


def test_a_tripped_breaker_stays_open_for_its_cooldown():
    tripped = evaluate_health(_figures(latency_ms_p99=900.0), THRESHOLDS, NOW)
    still_slow = evaluate_health(
        _figures(latency_ms_p99=900.0), THRESHOLDS, NOW + timedelta(minutes=2), tripped
    )
    assert still_slow.tripped == [BreakerName.LATENCY]
    # The cooldown runs from the first trip, not the latest reading.
    assert [b.tripped_at for b in still_slow.breakers if b.tripped] == [NOW]

    recovered_early = evaluate_health(_figures(), THRESHOLDS, NOW + timedelta(minutes=4), still_slow)
    assert recovered_early.tripped == [BreakerName.LATENCY]
    assert "cooldown" in next(b.message for b in recovered_early.breakers if b.tripped)

    recovered = evaluate_health(_figures(), THRESHOLDS, NOW + timedelta(minutes=6), recovered_early)
    assert recovered.status is HealthStatus.HEALTHY


def test_an_agent_is_disabled_after_five_consecutive_errors_and_reported():
    tracker = AgentErrorTracker()
    for _ in range(4):
        assert not tracker.record_error("patterns", "boom", NOW).disabled
    assert tracker.is_enabled("patterns")
    record = tracker.record_error("patterns", "boom again", NOW)
    assert record.disabled and record.disabled_at == NOW and record.consecutive_errors == 5
    assert not tracker.is_enabled("patterns")
    assert [r.agent for r in tracker.disabled()] == ["patterns"]
    assert tracker.report() == [
        f"patterns: DISABLED after 5 consecutive errors (since {NOW.isoformat()}); last: boom again"
    ]


def test_an_agent_the_cycle_cannot_run_without_is_counted_but_never_disabled():
    tracker = AgentErrorTracker(error_threshold=2)
    for _ in range(3):
        record = tracker.record_error("evaluate_risks", "risk model diverged", NOW, may_disable=False)
    assert not record.disabled and record.consecutive_errors == 3
    assert tracker.is_enabled("evaluate_risks") and tracker.disabled() == []
    assert tracker.report() == ["evaluate_risks: 3 consecutive, 3 total errors"]


def test_a_success_resets_the_consecutive_count():
    tracker = AgentErrorTracker()
    for _ in range(4):
        tracker.record_error("risk", "flaky", NOW)
    tracker.record_success("risk")
    for _ in range(4):
        tracker.record_error("risk", "flaky", NOW)
    assert tracker.is_enabled("risk")
    assert tracker.report() == ["risk: 4 consecutive, 8 total errors"]


def test_the_counts_survive_in_the_log_and_an_operator_can_re_enable():
    tracker = AgentErrorTracker(error_threshold=2)
    tracker.record_error("health", "down", NOW)
    carried = AgentErrorLog.model_validate_json(tracker.log.model_dump_json())  # across continue-as-new
    resumed = AgentErrorTracker(carried)
    assert resumed.record_error("health", "down", NOW).disabled

    resumed.enable("health")
    assert resumed.is_enabled("health")
    assert not resumed.record_error("health", "down", NOW).disabled  # counting starts again
    assert resumed.log.agents["health"].total_errors == 3
    # The tracker works on its own copy: the log it was given is untouched.
    assert carried.agents["health"].consecutive_errors == 1
