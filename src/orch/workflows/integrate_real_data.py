"""`IntegrateRealData`: move the system onto real market data, in five real steps.

1 validate data connections (probe each named source: credentials, latency, freshness, a sample),
2 switch data sources (SystemState's primary and ordered fallbacks; every worker's market follows),
3 update algorithms (regime thresholds recalibrated on the new source's recent bars),
4 test data flow (bars through the validation checks, one dry cycle that places no orders),
5 enable real trading (simulated -> paper; live only with `live` and `confirm_live`).

A source with no adapter, a repeated source, or live without its confirmation is refused before a
slot is taken or anything changes. If a step fails (or the command is cancelled), the previous
configuration stays in force: data sources, trading mode and thresholds are put back.
"""

from __future__ import annotations

from pydantic import ValidationError
from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from orch.activities.data import DataActivities
    from orch.contracts.commands import CommandStatus
    from orch.contracts.data import (
        AlgorithmsUpdated,
        ConnectionsValidated,
        DataFlowRequest,
        DataFlowTested,
        EnableTradingRequest,
        IntegrateRealDataInput,
        IntegrateRealDataResult,
        PreviousConfig,
        RestoreConfigRequest,
        SourcesSwitched,
        SwitchSourcesRequest,
        TradingEnabled,
        UpdateAlgorithmsRequest,
        ValidateConnectionsRequest,
        integration_problems,
    )
    from orch.contracts.errors import ErrorType
    from orch.contracts.names import INTEGRATE_REAL_DATA
    from orch.workflows.command import CommandWorkflow, Step

VALIDATE = Step("validating_data_connections", "Validate data connections")
SWITCH = Step("switching_data_sources", "Switch data sources")
UPDATE = Step("updating_algorithms", "Update algorithms")
TEST = Step("testing_data_flow", "Test data flow")
ENABLE = Step("enabling_real_trading", "Enable real trading")


# Malformed input (wrong types, unknown fields) fails the workflow at once instead of retrying its task.
@workflow.defn(name=INTEGRATE_REAL_DATA, failure_exception_types=[ValidationError])
class IntegrateRealData(CommandWorkflow):
    command_type = "integrate_real_data"
    steps = (VALIDATE, SWITCH, UPDATE, TEST, ENABLE)
    exclusive = True

    @workflow.init
    def __init__(self, request: IntegrateRealDataInput) -> None:
        self._begin(request.options)
        self._previous: PreviousConfig | None = None
        self._validated: ConnectionsValidated | None = None
        self._calibrated: AlgorithmsUpdated | None = None
        self._dry_cycle: DataFlowTested | None = None
        self._enabled: TradingEnabled | None = None

    @workflow.run
    async def run(self, request: IntegrateRealDataInput) -> IntegrateRealDataResult:
        problems = integration_problems(request)
        if problems:
            message = "; ".join(problems)
            self._run.fail(message)
            raise ApplicationError(message, type=ErrorType.INVALID_INPUT, non_retryable=True)
        fields = await self.execute(lambda: self._integrate(request), compensate=self._restore)
        return IntegrateRealDataResult(
            **fields,
            previous_sources=self._previous.data_sources if self._previous else None,
            data_sources=request.sources,
            previous_trading_mode=self._enabled.previous_mode if self._enabled else None,
            trading_mode=self._enabled.mode if self._enabled else None,
            hft_trading_mode=self._enabled.hft_trading_mode if self._enabled else None,
            trading_mode_note=self._enabled.summary if self._enabled else None,
            probes=self._validated.probes if self._validated else [],
            thresholds=self._calibrated.thresholds_after if self._calibrated else None,
            dry_cycle=self._dry_cycle,
        )

    async def _integrate(self, request: IntegrateRealDataInput) -> None:
        integration_id = workflow.info().workflow_id
        sources = request.sources
        self._validated = await self.step_runner.run(
            VALIDATE,
            DataActivities.validate_connections,
            ValidateConnectionsRequest(
                integration_id=integration_id,
                sources=sources,
                symbols=request.symbols,
                probe_symbols=request.probe_symbols,
                max_data_age_seconds=request.max_data_age_seconds,
            ),
            result_type=ConnectionsValidated,
            detail=" -> ".join([sources.primary, *sources.fallbacks]),
        )
        self._previous = self._validated.previous
        symbols = self._validated.symbols
        switched = await self.step_runner.run(
            SWITCH,
            DataActivities.switch_data_sources,
            SwitchSourcesRequest(integration_id=integration_id, sources=sources),
            result_type=SourcesSwitched,
        )
        # What the update replaced is the truth if someone changed the sources since step 1 read them.
        self._previous = self._previous.model_copy(update={"data_sources": switched.previous})
        self._calibrated = await self.step_runner.run(
            UPDATE,
            DataActivities.update_algorithms,
            UpdateAlgorithmsRequest(
                integration_id=integration_id,
                sources=sources,
                previous_sources=switched.previous,
                symbols=symbols,
                warmup_bars=request.warmup_bars,
                max_data_age_seconds=request.max_data_age_seconds,
            ),
            result_type=AlgorithmsUpdated,
            detail=f"{len(symbols)} symbols x {request.warmup_bars} bars",
        )
        self._dry_cycle = await self.step_runner.run(
            TEST,
            DataActivities.test_data_flow,
            DataFlowRequest(
                integration_id=integration_id,
                sources=sources,
                symbols=symbols,
                max_data_age_seconds=request.max_data_age_seconds,
            ),
            result_type=DataFlowTested,
            detail="dry cycle, no orders",
        )
        self._enabled = await self.step_runner.run(
            ENABLE,
            DataActivities.enable_trading,
            EnableTradingRequest(
                integration_id=integration_id, mode=request.target_mode, confirm_live=request.confirm_live
            ),
            result_type=TradingEnabled,
            detail=request.target_mode.value,
        )

    async def _restore(self) -> None:
        """Keep the previous configuration in force: undo whatever the steps from 2 on changed."""
        reports = self._run.reports
        if self._previous is None or reports[SWITCH.name].status == CommandStatus.QUEUED:
            return  # step 1 only reads: nothing changed
        try:
            outcome = await workflow.execute_activity_method(
                DataActivities.restore_configuration,
                RestoreConfigRequest(
                    integration_id=workflow.info().workflow_id,
                    previous=self._previous,
                    restore_sources=True,
                    restore_mode=reports[ENABLE.name].status != CommandStatus.QUEUED,
                    written_learning=self._calibrated.written if self._calibrated else None,
                ),
                **self.activity_options(),
                summary="Compensate: restore the previous data sources, trading mode and thresholds",
            )
            self._run.compensation.append(outcome.summary)
        except ActivityError as err:
            self._run.compensation.append(f"restore failed: {err.cause or err}")
        self._run.touch()
