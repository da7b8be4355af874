"""Discovery: strategies that rank a symbol universe into trade candidates.

Importing this package registers the built-in strategies (`legacy_v0`, `hybrid_v1`); a new one is
one function decorated with `discovery_strategy` (see `registry`).
"""

from orch.agents.discovery import strategies as _builtins  # noqa: F401  (registers the built-ins)
from orch.agents.discovery.registry import (
    DiscoveryStrategy,
    HistoryPanel,
    Params,
    ParamSpec,
    StrategyScores,
    UnknownStrategyError,
    discovery_strategy,
    get_strategy,
    known_strategies,
    rank,
    rank_all,
    unregister_strategy,
)

__all__ = [
    "DiscoveryStrategy",
    "HistoryPanel",
    "ParamSpec",
    "Params",
    "StrategyScores",
    "UnknownStrategyError",
    "discovery_strategy",
    "get_strategy",
    "known_strategies",
    "rank",
    "rank_all",
    "unregister_strategy",
]
