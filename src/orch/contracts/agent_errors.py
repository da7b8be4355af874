"""Agents' error counts across cycles and reviews: consecutive errors per agent, disabled at a threshold.

A pure rule on contracts' types, so that the TradingCycle workflow (which counts the steps itself when
its report step fails), the cycle's activities and the reviews all count the same way, without a
workflow importing an agent.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from orch.contracts.commands import CommandStatus, StepReport
from orch.contracts.cycle import AgentErrorLog, AgentErrorRecord, CycleStep


class AgentErrorTracker:
    """Consecutive error counts per agent; an agent is disabled at `error_threshold` errors in a row.

    It works on an `AgentErrorLog` so the engine can keep the counts in its state and carry them across
    continue-as-new: `AgentErrorTracker(state.agent_errors)` ... `state.agent_errors = tracker.log`.
    """

    def __init__(self, log: AgentErrorLog | None = None, error_threshold: int | None = None) -> None:
        self._log = (log or AgentErrorLog()).model_copy(deep=True)
        if error_threshold is not None:
            self._log.error_threshold = error_threshold

    @property
    def log(self) -> AgentErrorLog:
        return self._log.model_copy(deep=True)

    @property
    def error_threshold(self) -> int:
        return self._log.error_threshold

    def record_error(
        self, agent: str, error: str, now: datetime, may_disable: bool = True
    ) -> AgentErrorRecord:
        """Count one error; the returned record says whether the agent is now disabled.

        An agent the system cannot run without (`may_disable=False`: a critical cycle step) is counted and
        reported, never disabled: skipping it would not make the cycle any safer.
        """
        record = self._log.agents.get(agent, AgentErrorRecord(agent=agent))
        consecutive = record.consecutive_errors + 1
        disabling = may_disable and not record.disabled and consecutive >= self.error_threshold
        record = record.model_copy(
            update={
                "consecutive_errors": consecutive,
                "total_errors": record.total_errors + 1,
                "last_error": error[:500],
                "disabled": record.disabled or disabling,
                "disabled_at": now if disabling else record.disabled_at,
            }
        )
        self._log.agents[agent] = record
        return record

    def record_success(self, agent: str) -> None:
        record = self._log.agents.get(agent)
        if record is not None and record.consecutive_errors:
            self._log.agents[agent] = record.model_copy(update={"consecutive_errors": 0})

    def is_enabled(self, agent: str) -> bool:
        record = self._log.agents.get(agent)
        return record is None or not record.disabled

    def enable(self, agent: str) -> None:
        """An operator's decision: the agent runs again, its consecutive count starting from zero."""
        self._log.enable(agent)

    def disabled(self) -> list[AgentErrorRecord]:
        return [r for _, r in sorted(self._log.agents.items()) if r.disabled]

    def report(self) -> list[str]:
        """One line per agent with errors, the disabled ones first."""
        records = sorted(self._log.agents.values(), key=lambda r: (not r.disabled, r.agent))
        return [
            f"{r.agent}: DISABLED after {r.consecutive_errors} consecutive errors"
            f" (since {r.disabled_at.isoformat() if r.disabled_at else '?'}); last: {r.last_error}"
            if r.disabled
            else f"{r.agent}: {r.consecutive_errors} consecutive, {r.total_errors} total errors"
            for r in records
            if r.total_errors
        ]


def count_step_errors(
    log: AgentErrorLog, steps: Sequence[StepReport], error_threshold: int, now: datetime
) -> AgentErrorLog:
    """One cycle's steps counted against their agents: a failure adds one in a row, a success resets.

    A critical step's agent is counted but never disabled (the cycle cannot run without it). Pure, so
    the cycle's report step and, when that step itself fails, the workflow count the same way.
    """
    tracker = AgentErrorTracker(log, error_threshold=error_threshold)
    for step in steps:
        if step.status is CommandStatus.FAILED:
            tracker.record_error(
                step.name,
                step.error or "failed",
                step.finished_at or now,
                may_disable=not CycleStep(step.name).critical,
            )
        elif step.status is CommandStatus.COMPLETED:
            tracker.record_success(step.name)
    return tracker.log
