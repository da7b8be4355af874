"""`SystemState`: the system's live configuration as one long-running entity workflow.

Every worker replica reads the same state, it changes only through validated updates, and its
history is the audit trail of every change. It also keeps the durable command slots: the cap on
concurrent command workflows holds however a command was started (orch, temporal CLI, the UI).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from orch.activities.system import SystemActivities
    from orch.contracts.data import source_problems
    from orch.contracts.discovery import CandidateSet
    from orch.contracts.errors import ErrorType
    from orch.contracts.names import COMMAND_SLOT_DECISION_SIGNAL, RELEASE_COMMAND_SLOT_SIGNAL
    from orch.contracts.system import (
        AgentErrorsUpdate,
        CommandSlot,
        ConfigChange,
        DataSourcesChange,
        EmergencyIncident,
        EmergencyLevel,
        EnableAgentsRequest,
        LearningRecord,
        LearningState,
        ResumeRequest,
        SetStrategyRequest,
        SlotDecision,
        SystemStateSnapshot,
        TradingMode,
        TradingModeChange,
    )

# Enough recent changes to answer "who changed what lately" without reading events.
RECENT_CHANGES_KEPT = 50
INCIDENTS_KEPT = 50


@workflow.defn(name="SystemState")
class SystemStateWorkflow:
    @workflow.init
    def __init__(self, snapshot: SystemStateSnapshot) -> None:
        self._state = snapshot
        # Slot decisions waiting to be signalled back; sent from the main loop because a signal to
        # another workflow is a command, and handlers should stay quick and synchronous.
        self._outbox: list[tuple[str, SlotDecision]] = []

    @workflow.run
    async def run(self, snapshot: SystemStateSnapshot) -> None:
        reap_every = timedelta(seconds=self._state.reap_interval_seconds)
        next_reap = workflow.now() + reap_every
        while True:
            self._dispatch_slots()
            await self._send_outbox()
            if self._state.running_commands and workflow.now() >= next_reap:
                await self._reap_finished_commands()
                next_reap = workflow.now() + reap_every
                continue
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                self._dispatch_slots()
                await self._send_outbox()
                workflow.continue_as_new(self._state)
            # Only commands holding slots need reaping; an idle entity sleeps with no timer, and wakes to
            # set one when a command takes a slot (the acquire_command_slot update grants without a loop).
            timed = bool(self._state.running_commands)
            try:
                await workflow.wait_condition(
                    lambda timed=timed: (
                        bool(self._outbox)
                        or self._can_dispatch()
                        or (not timed and bool(self._state.running_commands))
                        or workflow.info().is_continue_as_new_suggested()
                    ),
                    timeout=max(next_reap - workflow.now(), timedelta(seconds=1)) if timed else None,
                )
            except TimeoutError:
                pass
            if not timed and self._state.running_commands:
                next_reap = workflow.now() + reap_every  # the first holder after an idle spell

    # ---- Queries ---------------------------------------------------------------------------------

    # Query: reading the configuration must not add to the audit trail.
    @workflow.query
    def state(self) -> SystemStateSnapshot:
        return self._state

    # ---- Updates: configuration ------------------------------------------------------------------
    # Updates, not signals: the caller learns at once whether its change was accepted, validators
    # reject bad values before they reach history, and an update id makes a retried call a no-op.

    @workflow.update
    def register_strategies(self, names: list[str]) -> list[str]:
        known = sorted(set(self._state.known_strategies) | set(names))
        self._state.known_strategies = known
        return known

    @register_strategies.validator
    def _validate_register_strategies(self, names: list[str]) -> None:
        if not names or any(not n.strip() for n in names):
            raise ValueError("strategy names must be non-empty")

    @workflow.update
    def activate_strategy(self, request: SetStrategyRequest) -> str:
        """Make `request.strategy` the active discovery strategy; returns the previous one."""
        previous = self._state.config.active_strategy
        self._state.config.active_strategy = request.strategy
        self._record(request.requested_by, "active_strategy", previous, request.strategy)
        return previous

    @activate_strategy.validator
    def _validate_activate_strategy(self, request: SetStrategyRequest) -> None:
        known = self._state.known_strategies
        if request.strategy not in known:
            raise ValueError(f"unknown discovery strategy {request.strategy!r}; known: {', '.join(known)}")

    @workflow.update
    def publish_candidates(self, candidates: CandidateSet) -> None:
        self._state.latest_candidates = candidates

    @publish_candidates.validator
    def _validate_publish_candidates(self, candidates: CandidateSet) -> None:
        active = self._state.config.active_strategy
        if candidates.strategy != active:
            # Typed, so a publisher tells this ordinary race from a fault without reading the message.
            raise ApplicationError(
                f"candidates from {candidates.strategy!r} refused: the active strategy is {active!r}",
                type=ErrorType.STRATEGY_NOT_ACTIVE,
                non_retryable=True,
            )

    @workflow.update
    def set_max_concurrent_workflows(self, limit: int) -> int:
        previous = self._state.config.max_concurrent_workflows
        self._state.config.max_concurrent_workflows = limit
        self._record("operator", "max_concurrent_workflows", str(previous), str(limit))
        return previous

    @set_max_concurrent_workflows.validator
    def _validate_max_concurrent(self, limit: int) -> None:
        if not 1 <= limit <= 1000:
            raise ValueError(f"max_concurrent_workflows must be between 1 and 1000, got {limit}")

    @workflow.update
    def set_data_sources(self, change: DataSourcesChange) -> DataSourcesChange:
        """Record the primary source and its ordered fallbacks; returns the previous ones."""
        previous = DataSourcesChange(sources=self._state.config.data_sources, requested_by="")
        self._state.config.data_sources = change.sources
        self._record(
            change.requested_by,
            "data_sources",
            _describe_sources(previous.sources),
            _describe_sources(change.sources),
        )
        return previous

    @set_data_sources.validator
    def _validate_data_sources(self, change: DataSourcesChange) -> None:
        problems = source_problems(change.sources.primary, change.sources.fallbacks)
        if problems:
            raise ValueError("; ".join(problems))

    @workflow.update
    def set_trading_mode(self, change: TradingModeChange) -> TradingMode:
        previous = self._state.config.trading_mode
        self._state.config.trading_mode = change.mode
        self._record(change.requested_by, "trading_mode", previous.value, change.mode.value)
        return previous

    @set_trading_mode.validator
    def _validate_trading_mode(self, change: TradingModeChange) -> None:
        if change.mode is TradingMode.LIVE and not change.confirm_live:
            raise ValueError("live trading needs an explicit second confirmation (confirm_live)")

    # ---- Updates: emergencies --------------------------------------------------------------------

    @workflow.update
    def declare_emergency(self, incident: EmergencyIncident) -> EmergencyLevel:
        """Record an incident; the level only ever rises until a resume. Returns the level in force.

        The same incident id again (a retried activity, or the workflow adding its actions) replaces
        the record instead of adding a second one.
        """
        kept = [i for i in self._state.incidents if i.incident_id != incident.incident_id]
        self._state.incidents = [*kept, incident][-INCIDENTS_KEPT:]
        current = self._state.config.emergency_level
        if incident.level.stricter_than(current):
            self._state.config.emergency_level = incident.level
            self._record(incident.requested_by, "emergency_level", current.value, incident.level.value)
        return self._state.config.emergency_level

    @declare_emergency.validator
    def _validate_declare_emergency(self, incident: EmergencyIncident) -> None:
        if incident.level is EmergencyLevel.NONE:
            raise ValueError("an emergency needs a level above none; to end one, resume")

    @workflow.update
    def resolve_emergency(self, request: ResumeRequest) -> list[str]:
        """End the emergency: the level returns to none; returns the incidents resolved."""
        resolved = []
        for incident in self._state.incidents:
            if incident.resolved_at is None:
                incident.resolved_at = workflow.now()
                incident.resolved_by = request.requested_by
                resolved.append(incident.incident_id)
        previous = self._state.config.emergency_level
        self._state.config.emergency_level = EmergencyLevel.NONE
        self._record(request.requested_by, "emergency_level", previous.value, EmergencyLevel.NONE.value)
        return resolved

    @resolve_emergency.validator
    def _validate_resolve_emergency(self, request: ResumeRequest) -> None:
        if not request.confirm:
            raise ValueError("resuming trading needs an explicit confirmation (orch resume --confirm)")
        if self._state.config.emergency_level is EmergencyLevel.NONE:
            raise ValueError("no emergency stop is in force; nothing to resume")

    # ---- Updates: learning -----------------------------------------------------------------------

    @workflow.update
    def record_learning(self, record: LearningRecord) -> LearningState:
        """Record a cycle's learning; returns what is recorded, which a retried attempt must adopt (it may
        have computed from fills in another order, so its floats can differ in the last digit)."""
        if record.cycle_id != self._state.last_learning_cycle:  # else: the same cycle's update, retried
            self._state.learning = record.state
            self._state.last_learning_cycle = record.cycle_id
        assert self._state.learning is not None
        return self._state.learning

    # ---- Updates: agent errors ------------------------------------------------------------------
    # Update: the caller learns at once which agents are disabled, and a retried call (same id) is a no-op.

    @workflow.update
    def record_agent_errors(self, update: AgentErrorsUpdate) -> list[str]:
        """Replace one source's agent error counts; returns every agent now disabled, by any source."""
        before = set(self._state.disabled_agents())
        self._state.agent_errors[update.source] = update.log
        after = self._state.disabled_agents()
        for agent in sorted(set(after) - before):
            self._record(update.requested_by, f"agent:{agent}", "enabled", "disabled")
        return after

    @record_agent_errors.validator
    def _validate_record_agent_errors(self, update: AgentErrorsUpdate) -> None:
        if not update.source.strip():
            raise ValueError("agent errors need the name of the source that counted them")

    @workflow.update
    def enable_agents(self, request: EnableAgentsRequest) -> list[str]:
        """Re-enable agents in every source's log; returns the agents still disabled."""
        for agent in request.agents:
            if any([log.enable(agent) for log in self._state.agent_errors.values()]):
                self._record(request.requested_by, f"agent:{agent}", "disabled", "enabled")
        return self._state.disabled_agents()

    @enable_agents.validator
    def _validate_enable_agents(self, request: EnableAgentsRequest) -> None:
        known = {name for log in self._state.agent_errors.values() for name in log.agents}
        unknown = sorted(set(request.agents) - known)
        if unknown:
            listed = ", ".join(sorted(known)) or "none has errors"
            raise ValueError(f"no error record for agent(s) {', '.join(unknown)}; known: {listed}")

    # ---- Command slots ---------------------------------------------------------------------------
    # An update, sent by the command's local activity (a workflow cannot send updates itself): the
    # command learns in one round trip whether it holds a slot (most do at once), and a retried call
    # (same update id, or the same workflow id) is a no-op. A command that has to queue gets its grant
    # later by signal, the only message SystemState (a workflow) can send it.

    @workflow.update
    def acquire_command_slot(self, slot: CommandSlot) -> SlotDecision:
        return self._admit(slot)

    def _admit(self, slot: CommandSlot) -> SlotDecision:
        """Grant a slot now if one is free and nobody waits ahead; refuse an exclusive twin; else queue."""
        state = self._state
        if any(s.workflow_id == slot.workflow_id for s in state.running_commands):
            return SlotDecision(granted=True)
        if any(s.workflow_id == slot.workflow_id for s in state.waiting_commands):
            return SlotDecision(granted=False, queued=True)
        if slot.exclusive:
            held = [*state.running_commands, *state.waiting_commands]
            twin = next((s for s in held if s.command_type == slot.command_type), None)
            if twin is not None:
                reason = (
                    f"{slot.command_type} {twin.workflow_id} is already running; "
                    f"watch it with: orch watch {twin.workflow_id}"
                )
                return SlotDecision(granted=False, reason=reason)
        if not state.waiting_commands and len(state.running_commands) < state.config.max_concurrent_workflows:
            state.running_commands.append(slot)
            return SlotDecision(granted=True)
        state.waiting_commands.append(slot)
        return SlotDecision(granted=False, queued=True)

    # A signal, not an update: many commands ending at once are batched into one workflow task, where
    # as many updates would each need their own (measured: throughput fell eightfold at 40 at once).
    @workflow.signal(name=RELEASE_COMMAND_SLOT_SIGNAL)
    def release_command_slot(self, workflow_id: str) -> None:
        self._state.running_commands = [
            s for s in self._state.running_commands if s.workflow_id != workflow_id
        ]
        self._state.waiting_commands = [
            s for s in self._state.waiting_commands if s.workflow_id != workflow_id
        ]

    # ---- Internals -------------------------------------------------------------------------------

    def _can_dispatch(self) -> bool:
        return bool(self._state.waiting_commands) and (
            len(self._state.running_commands) < self._state.config.max_concurrent_workflows
        )

    def _dispatch_slots(self) -> None:
        while self._can_dispatch():
            slot = self._state.waiting_commands.pop(0)
            self._state.running_commands.append(slot)
            self._outbox.append((slot.workflow_id, SlotDecision(granted=True)))

    async def _send_outbox(self) -> None:
        while self._outbox:
            workflow_id, decision = self._outbox.pop(0)
            try:
                await workflow.get_external_workflow_handle(workflow_id).signal(
                    COMMAND_SLOT_DECISION_SIGNAL, decision
                )
            except Exception:
                workflow.logger.warning("command %s is gone; releasing its slot", workflow_id)
                self.release_command_slot(workflow_id)

    async def _reap_finished_commands(self) -> None:
        """Free slots whose holders ended without releasing them (terminated, timed out)."""
        holders = [s.workflow_id for s in self._state.running_commands]
        finished = await workflow.execute_activity_method(
            SystemActivities.find_closed_workflows,
            holders,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
        for workflow_id in finished:
            self.release_command_slot(workflow_id)

    def _record(self, by: str, field: str, old: str, new: str) -> None:
        change = ConfigChange(at=workflow.now(), by=by, field=field, old=old, new=new)
        self._state.recent_changes = [*self._state.recent_changes, change][-RECENT_CHANGES_KEPT:]


def _describe_sources(sources) -> str:
    return " -> ".join([sources.primary, *sources.fallbacks])
