"""The discovery strategy registry: one decorated function per strategy, and `rank` to run one.

A strategy sees the whole universe at once, as a `HistoryPanel` (one row per symbol, the last
`lookback` bars of each), because ranking is cross-sectional: a volume z-score or a momentum only
means something next to the other symbols'. It returns a score per symbol (NaN: not a candidate)
and the named factors behind it; `rank` turns that into `Candidate`s.

    @discovery_strategy("my_idea", description="...", lookback=30,
                        params={"window": ParamSpec(default=10, low=5, high=30, step=1)})
    def my_idea(panel: HistoryPanel, params: Params) -> StrategyScores:
        change = momentum(panel.close, params["window"])[:, -1]
        return StrategyScores(score=change, factors={"momentum": change})

Each tunable parameter declares its default and its range (`ParamSpec`), which is what
walk-forward optimisation searches over.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from orch.contracts.discovery import Candidate
from orch.market.base import PriceHistory

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

logger = logging.getLogger(__name__)

Params = Mapping[str, float]  # resolved parameter values: int for whole-number parameters


@dataclass(frozen=True)
class ParamSpec:
    """A tunable parameter: its default and the grid low, low + step, ..., high it may take.

    All four whole numbers make a whole-number parameter (a window length, say).
    """

    default: float
    low: float
    high: float
    step: float

    def __post_init__(self) -> None:
        if not self.low <= self.default <= self.high:
            raise ValueError(f"default {self.default} is outside [{self.low}, {self.high}]")
        if not self.step > 0:
            raise ValueError(f"step must be positive, not {self.step}")

    @property
    def integer(self) -> bool:
        return all(isinstance(v, int) and not isinstance(v, bool) for v in self._fields())

    def grid(self) -> list[float]:
        """Every value from low to high by step (high included when the steps land on it)."""
        count = math.floor((self.high - self.low) / self.step + 1e-9) + 1
        values = [self.low + i * self.step for i in range(count)]
        return [int(v) for v in values] if self.integer else [round(v, 12) for v in values]

    def check(self, name: str, value: float) -> float:
        """The value, as an int for a whole-number parameter; ValueError when it is out of range."""
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"parameter {name!r} must be a number, not {value!r}")
        if not self.low <= value <= self.high:
            raise ValueError(f"parameter {name!r} = {value} is outside its range [{self.low}, {self.high}]")
        if self.integer:
            if int(value) != value:
                raise ValueError(f"parameter {name!r} must be a whole number, not {value}")
            return int(value)
        return float(value)

    def _fields(self) -> tuple[float, float, float, float]:
        return self.default, self.low, self.high, self.step


@dataclass(frozen=True)
class HistoryPanel:
    """The universe as a strategy sees it: each symbol's last `lookback` bars, one row per symbol.

    Rows align by position, not by date: column -1 is every symbol's latest bar (crypto trades
    at weekends, so its rows may span fewer calendar days). Every value is finite and prices are
    positive; `rank` leaves out symbols whose window is not.
    """

    symbols: tuple[str, ...]
    open: np.ndarray  # (symbols, lookback)
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.symbols)


@dataclass(frozen=True)
class StrategyScores:
    """A strategy's verdict, aligned with `HistoryPanel.symbols`: higher scores rank first, NaN
    leaves a symbol out, and `factors` name the components a reader sees on each candidate."""

    score: np.ndarray  # (symbols,)
    factors: Mapping[str, np.ndarray] = field(default_factory=dict)  # each (symbols,)


StrategyFunction = Callable[[HistoryPanel, Params], StrategyScores]


@dataclass(frozen=True)
class DiscoveryStrategy:
    name: str
    description: str
    function: StrategyFunction
    params: Mapping[str, ParamSpec]
    # Bars the strategy needs: a number, or a function of the resolved parameters when it
    # depends on them (a longer window needs more history).
    lookback_rule: int | Callable[[Params], int]

    @property
    def lookback(self) -> int:
        """Bars needed with the default parameters."""
        return self.lookback_for(None)

    def lookback_for(self, params: Mapping[str, float] | None) -> int:
        rule = self.lookback_rule
        bars = rule(self.resolve(params)) if callable(rule) else rule
        if int(bars) != bars or bars < 1:
            raise ValueError(f"strategy {self.name!r} needs a positive whole lookback, not {bars!r}")
        return int(bars)

    def defaults(self) -> dict[str, float]:
        return {name: spec.check(name, spec.default) for name, spec in self.params.items()}

    def resolve(self, overrides: Mapping[str, float] | None) -> dict[str, float]:
        """The defaults with `overrides` applied, each checked against its range."""
        unknown = sorted(set(overrides or {}) - set(self.params))
        if unknown:
            raise ValueError(
                f"strategy {self.name!r} has no parameter {', '.join(map(repr, unknown))}; "
                f"its parameters: {', '.join(self.params) or 'none'}"
            )
        resolved = self.defaults()
        for name, value in (overrides or {}).items():
            resolved[name] = self.params[name].check(name, value)
        return resolved


class UnknownStrategyError(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"unknown discovery strategy {name!r}; known strategies: {', '.join(known_strategies())}"
        )
        self.name = name

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return type(self), (self.name,)


_STRATEGIES: dict[str, DiscoveryStrategy] = {}


def discovery_strategy(
    name: str,
    *,
    description: str,
    lookback: int | Callable[[Params], int],
    params: Mapping[str, ParamSpec] | None = None,
) -> Callable[[StrategyFunction], StrategyFunction]:
    """Register the decorated function as the discovery strategy `name` (the function is returned
    unchanged). A name can be registered once; `unregister_strategy` frees it."""

    def register(function: StrategyFunction) -> StrategyFunction:
        if not name:
            raise ValueError("a strategy needs a name")
        if name in _STRATEGIES:
            raise ValueError(f"discovery strategy {name!r} is already registered")
        strategy = DiscoveryStrategy(
            name, description, function, MappingProxyType(dict(params or {})), lookback
        )
        strategy.lookback_for(None)  # a broken lookback rule fails here, not in the first scan
        _STRATEGIES[name] = strategy
        return function

    return register


def unregister_strategy(name: str) -> None:
    if _STRATEGIES.pop(name, None) is None:
        raise UnknownStrategyError(name)


def known_strategies() -> list[str]:
    return sorted(_STRATEGIES)


def get_strategy(name: str) -> DiscoveryStrategy:
    try:
        return _STRATEGIES[name]
    except KeyError:
        raise UnknownStrategyError(name) from None


def rank(
    strategy: str,
    histories: Mapping[str, PriceHistory],
    top_n: int,
    params: Mapping[str, float] | None = None,
) -> list[Candidate]:
    """The best `top_n` symbols of `histories` by `strategy`: rank 1 first, scores descending.

    Symbols with fewer bars than the strategy's lookback, or with a non-finite or non-positive
    value in that window, are left out, as are those the strategy scores NaN. Ties go to the
    alphabetically first symbol, so a ranking is reproducible.
    """
    if top_n < 1:
        raise ValueError(f"top_n must be at least 1, not {top_n}")
    chosen = get_strategy(strategy)
    resolved = chosen.resolve(params)
    panel = _panel(histories, chosen.lookback_for(resolved))
    if not len(panel):
        return []
    # Strategies divide and take logs freely; what comes out non-finite is dropped below.
    with np.errstate(all="ignore"):
        result = chosen.function(panel, MappingProxyType(resolved))
    score = _aligned(result.score, len(panel), f"{strategy}: score")
    factors = {
        name: _aligned(values, len(panel), f"{strategy}: factor {name}")
        for name, values in result.factors.items()
    }
    ranked = sorted(
        (i for i in range(len(panel)) if math.isfinite(score[i])), key=lambda i: (-score[i], panel.symbols[i])
    )
    return [
        Candidate(
            symbol=panel.symbols[i],
            score=float(score[i]),
            rank=position,
            # Non-finite factors are left out: NaN does not survive a JSON round trip as a float.
            factors={name: float(values[i]) for name, values in factors.items() if math.isfinite(values[i])},
            last_price=float(panel.close[i, -1]),
        )
        for position, i in enumerate(ranked[:top_n], start=1)
    ]


def rank_all(strategy: str, histories: Mapping[str, PriceHistory], symbols: list[str]) -> list[Candidate]:
    """Every one of `symbols` that has a history: those `strategy` ranks first, in its order, then the
    ones it leaves out (too short, no score) at score 0 in the given order, so a caller that must
    consider every symbol (the cycle's fallback, the recalibration) still sees each one."""
    ranked = rank(strategy, histories, len(histories))
    seen = {c.symbol for c in ranked}
    rest = [s for s in symbols if s in histories and s not in seen]
    return [
        *ranked,
        *(
            Candidate(symbol=s, score=0.0, rank=len(ranked) + i, last_price=float(histories[s].close[-1]))
            for i, s in enumerate(rest, start=1)
        ),
    ]


def _panel(histories: Mapping[str, PriceHistory], lookback: int) -> HistoryPanel:
    long_enough = [(symbol, h) for symbol, h in histories.items() if len(h) >= lookback]
    windows = np.empty((5, len(long_enough), lookback))  # (column, symbol, bar)
    for row, (_, history) in enumerate(long_enough):
        for column, values in enumerate(
            (history.open, history.high, history.low, history.close, history.volume)
        ):
            windows[column, row] = values[-lookback:]
    valid = (
        np.isfinite(windows).all(axis=(0, 2))
        & (windows[:4] > 0).all(axis=(0, 2))
        & (windows[4] >= 0).all(axis=1)
    )
    left_out = len(histories) - int(valid.sum())
    if left_out:
        logger.debug(
            "discovery: %d of %d symbols left out (short or invalid history)", left_out, len(histories)
        )
    symbols = tuple(symbol for (symbol, _), ok in zip(long_enough, valid, strict=True) if ok)
    return HistoryPanel(symbols, *windows[:, valid])


def _aligned(values: np.ndarray, count: int, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (count,):
        raise ValueError(f"{what} has shape {array.shape}; expected ({count},), one value per symbol")
    return array
