"""The public names users type into `temporal`, the Temporal UI and `orch` (DESIGN.md).

Changing any of these breaks users' scripts: keep them stable.
"""

from enum import IntEnum

# ---- Task queues ---------------------------------------------------------------------------------
COMMANDS_QUEUE = "orch"  # management commands and the trading cycle
CRITICAL_QUEUE = "orch-critical"  # emergency stop and health: own slots, never starved
DISCOVERY_QUEUE = "orch-discovery"  # DiscoveryScan workflows and their activities
BACKTEST_QUEUE = "orch-backtest"  # CPU-heavy backtests, concurrency = cores
# Every queue a default `orch worker` polls.
ALL_QUEUES = (COMMANDS_QUEUE, CRITICAL_QUEUE, DISCOVERY_QUEUE, BACKTEST_QUEUE)

# ---- Workflow types ------------------------------------------------------------------------------
RESTART_DISCOVERY = "RestartDiscoverySystem"
INTEGRATE_REAL_DATA = "IntegrateRealData"
VALIDATE_ALGORITHMS = "ValidateAlgorithms"
HEALTH_CHECK = "HealthCheck"
EMERGENCY_STOP = "EmergencyStop"
TRADING_ENGINE = "TradingEngine"
TRADING_CYCLE = "TradingCycle"
DISCOVERY_SCAN = "DiscoveryScan"
SYSTEM_STATE = "SystemState"
RESUME_TRADING = "ResumeTrading"
TACTICAL_REVIEW = "TacticalReview"  # tier 3
STRATEGIC_REVIEW = "StrategicReview"  # tier 4

# ---- Fixed ids -----------------------------------------------------------------------------------
SYSTEM_STATE_WORKFLOW_ID = "orch-system-state"
DISCOVERY_SCHEDULE_ID = "discovery-scan"
TACTICAL_REVIEW_SCHEDULE_ID = "tactical-review"
STRATEGIC_REVIEW_SCHEDULE_ID = "strategic-review"

# The workflow types that `orch list` shows and that answer the `progress` query.
COMMAND_WORKFLOW_TYPES = (
    RESTART_DISCOVERY,
    INTEGRATE_REAL_DATA,
    VALIDATE_ALGORITHMS,
    HEALTH_CHECK,
    EMERGENCY_STOP,
    RESUME_TRADING,
)


# The command-slot signals between SystemState and the command workflows (workflow to workflow, so no
# client can carry them: the two workflows share these names instead).
RELEASE_COMMAND_SLOT_SIGNAL = "release_command_slot"  # command -> SystemState, when it ends
COMMAND_SLOT_DECISION_SIGNAL = "command_slot_decision"  # SystemState -> a queued command, when granted


class TaskPriority(IntEnum):
    """The execution engine's five levels, mapped onto Temporal's `priority_key` (1 runs first)."""

    CRITICAL = 1
    HIGH = 2
    NORMAL = 3
    LOW = 4
    IDLE = 5
