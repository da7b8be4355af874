"""The two workflow shapes `command_latency.py` compares, in a module of their own so that the
workflow sandbox can import them by name.

Both run five no-op activities one after the other with the same retry policy and timeouts; the
orch one adds what the framework adds: the slot from SystemState, progress, UI details, the
workflow timeout and the step reports.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from orch.activities.steps import step_activity
    from orch.contracts.commands import CommandOptions, StepOutcome
    from orch.workflows.command import CommandWorkflow, Step

STEP_NAMES = ("first", "second", "third", "fourth", "fifth")
STEPS = tuple(Step(name, name.title()) for name in STEP_NAMES)


@activity.defn
@step_activity
async def noop_step(name: str) -> StepOutcome:
    return StepOutcome(summary=name)


@activity.defn
async def plain_noop(name: str) -> str:
    return name


@workflow.defn(name="NoOpCommand")
class NoOpCommand(CommandWorkflow):
    command_type = "noop"
    steps = STEPS

    @workflow.init
    def __init__(self, options: CommandOptions) -> None:
        self._begin(options)

    @workflow.run
    async def run(self, options: CommandOptions) -> dict:
        async def body() -> None:
            for step in STEPS:
                await self.step_runner.run(step, noop_step, step.name, result_type=StepOutcome)

        return await self.execute(body)


@workflow.defn(name="PlainFiveActivities")
class PlainFiveActivities:
    @workflow.run
    async def run(self, options: CommandOptions) -> list[str]:
        retry = RetryPolicy(maximum_attempts=options.max_retries + 1)
        done = []
        for name in STEP_NAMES:
            done.append(
                await workflow.execute_activity(
                    plain_noop, name, start_to_close_timeout=timedelta(seconds=30), retry_policy=retry
                )
            )
        return done
