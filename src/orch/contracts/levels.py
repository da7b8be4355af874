"""The trading modes, the gate's trading states and the emergency levels: the vocabulary of every layer,
from SystemState to `orch hft`, and the one home of what each emergency level allows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from orch.contracts.trading import Order


class TradingMode(StrEnum):
    SIMULATED = "simulated"
    PAPER = "paper"
    LIVE = "live"


class _Ranked(StrEnum):
    """Members declared from the mildest to the strictest: the one way any of them is ordered."""

    @property
    def severity(self) -> int:
        return list(type(self)).index(self)

    def stricter_than(self, other: Self) -> bool:
        return self.severity > other.severity

    def at_least(self, other: Self) -> bool:
        return not other.stricter_than(self)


class TradingState(_Ranked):
    """The pre-trade risk gate's states (NautilusTrader's naming)."""

    ACTIVE = "active"
    REDUCING = "reducing"  # only orders that shrink a position
    HALTED = "halted"  # everything denied except cancels


class RestingOrders(StrEnum):
    """Which of the account's open orders a kill at a level cancels."""

    NONE = "none"
    OPENING = "opening"  # those that would open or grow a position
    ALL = "all"


@dataclass(frozen=True)
class LevelRules:
    """What trading may still do at an emergency level, and what a kill at it must do by itself."""

    gate_state: TradingState  # where the kill puts `orch hft`'s gate
    allows_entries: bool  # may an order open or grow a position
    cancels: RestingOrders
    flattens: bool  # closes every position with reduce-only orders, then halts

    @property
    def settled_state(self) -> TradingState:
        """The gate's state once the kill's work is done: a flatten ends HALTED."""
        return TradingState.HALTED if self.flattens else self.gate_state


class EmergencyLevel(_Ranked):
    """Each level is stricter than the last (DESIGN.md); `rules` says what each allows."""

    NONE = "none"
    PAUSE_ENTRIES = "pause_entries"
    REDUCE_ONLY = "reduce_only"
    HALT = "halt"
    FLATTEN = "flatten"

    @property
    def rules(self) -> LevelRules:
        return _RULES[self]

    @staticmethod
    def strictest(levels: Iterable[EmergencyLevel]) -> EmergencyLevel:
        return max(levels, key=lambda level: level.severity, default=EmergencyLevel.NONE)

    def forbidden_orders(self, orders: Iterable[Order], held: Mapping[str, float]) -> list[Order]:
        """The open orders this level does not let rest; `held` is each symbol's signed position."""
        cancels = self.rules.cancels
        if cancels is RestingOrders.ALL:
            return list(orders)
        if cancels is RestingOrders.NONE:
            return []
        return [o for o in orders if o.opens_or_grows(held.get(o.symbol, 0.0))]


_RULES: dict[EmergencyLevel, LevelRules] = {
    EmergencyLevel.NONE: LevelRules(TradingState.ACTIVE, True, RestingOrders.NONE, flattens=False),
    # ACTIVE, so exits and strategies' reductions carry on; only what adds risk is denied.
    EmergencyLevel.PAUSE_ENTRIES: LevelRules(
        TradingState.ACTIVE, False, RestingOrders.OPENING, flattens=False
    ),
    EmergencyLevel.REDUCE_ONLY: LevelRules(
        TradingState.REDUCING, False, RestingOrders.OPENING, flattens=False
    ),
    EmergencyLevel.HALT: LevelRules(TradingState.HALTED, False, RestingOrders.ALL, flattens=False),
    # REDUCING, not HALTED, while it closes: its closing orders must pass the gate.
    EmergencyLevel.FLATTEN: LevelRules(TradingState.REDUCING, False, RestingOrders.ALL, flattens=True),
}
