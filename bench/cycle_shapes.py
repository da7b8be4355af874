"""The no-op shapes `cycle_overhead.py` compares, in a module of their own so the workflow sandbox can
import them by name.

`NoOpCycleActivities` answers to the nine step activities' names with outcomes recorded from one real
cycle, instantly: `TradingCycle` runs on them unchanged, so what is measured is the orchestration
(framework, payloads, history), not the agents. `PlainNineActivities` is the plain temporalio baseline:
nine activities in a row, each handed the previous one's output, returning the same recorded payloads.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from orch.contracts.engine import (
        Composed,
        ComposeRequest,
        CycleContext,
        Executed,
        ExecuteRequest,
        HealthChecked,
        HealthRequest,
        InitializeRequest,
        Learned,
        LearnRequest,
        PatternsFound,
        PatternsRequest,
        Reported,
        ReportRequest,
        RiskEvaluated,
        RiskRequest,
        Sensed,
        SenseRequest,
    )

STEP_NAMES = (
    "initialize",
    "sense_market",
    "analyse_patterns",
    "compose_strategy",
    "evaluate_risks",
    "execute",
    "monitor_health",
    "learn_and_adapt",
    "log_and_report",
)
# Step name -> the outcome one real cycle returned (JSON), filled by the benchmark before workers start.
RECORDED: dict[str, dict[str, Any]] = {}


class NoOpCycleActivities:
    @activity.defn(name="initialize")
    async def initialize(self, request: InitializeRequest) -> CycleContext:
        return CycleContext.model_validate(RECORDED["initialize"])

    @activity.defn(name="sense_market")
    async def sense_market(self, request: SenseRequest) -> Sensed:
        return Sensed.model_validate(RECORDED["sense_market"])

    @activity.defn(name="analyse_patterns")
    async def analyse_patterns(self, request: PatternsRequest) -> PatternsFound:
        return PatternsFound.model_validate(RECORDED["analyse_patterns"])

    @activity.defn(name="compose_strategy")
    async def compose_strategy(self, request: ComposeRequest) -> Composed:
        return Composed.model_validate(RECORDED["compose_strategy"])

    @activity.defn(name="evaluate_risks")
    async def evaluate_risks(self, request: RiskRequest) -> RiskEvaluated:
        return RiskEvaluated.model_validate(RECORDED["evaluate_risks"])

    @activity.defn(name="execute")
    async def execute(self, request: ExecuteRequest) -> Executed:
        return Executed.model_validate(RECORDED["execute"])

    @activity.defn(name="monitor_health")
    async def monitor_health(self, request: HealthRequest) -> HealthChecked:
        return HealthChecked.model_validate(RECORDED["monitor_health"])

    @activity.defn(name="learn_and_adapt")
    async def learn_and_adapt(self, request: LearnRequest) -> Learned:
        return Learned.model_validate(RECORDED["learn_and_adapt"])

    @activity.defn(name="log_and_report")
    async def log_and_report(self, request: ReportRequest) -> Reported:
        return Reported.model_validate(RECORDED["log_and_report"])

    def all(self) -> list[Any]:
        return [getattr(self, name) for name in STEP_NAMES]


@activity.defn
async def plain_step(name: str, previous: dict[str, Any]) -> dict[str, Any]:
    return RECORDED[name]


@workflow.defn(name="PlainNineActivities")
class PlainNineActivities:
    @workflow.run
    async def run(self, names: list[str]) -> dict[str, Any]:
        retry = RetryPolicy(maximum_attempts=3)
        payload: dict[str, Any] = {}
        for name in names:
            payload = await workflow.execute_activity(
                plain_step,
                args=[name, payload],
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=retry,
            )
        return payload
