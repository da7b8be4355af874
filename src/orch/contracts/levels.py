"""The trading modes and emergency levels: the vocabulary of every layer, from SystemState to `orch hft`."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class TradingMode(StrEnum):
    SIMULATED = "simulated"
    PAPER = "paper"
    LIVE = "live"


class EmergencyLevel(StrEnum):
    """Each level is stricter than the last (DESIGN.md)."""

    NONE = "none"
    PAUSE_ENTRIES = "pause_entries"  # no new positions
    REDUCE_ONLY = "reduce_only"
    HALT = "halt"  # everything denied but cancels; open orders cancelled
    FLATTEN = "flatten"  # halt, then close every position

    @property
    def severity(self) -> int:
        """The level's rank, declared from the mildest to the strictest: the one ordering of levels."""
        return list(EmergencyLevel).index(self)

    def stricter_than(self, other: EmergencyLevel) -> bool:
        return self.severity > other.severity

    @staticmethod
    def strictest(levels: Iterable[EmergencyLevel]) -> EmergencyLevel:
        return max(levels, key=lambda level: level.severity, default=EmergencyLevel.NONE)
