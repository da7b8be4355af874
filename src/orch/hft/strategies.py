"""Tier 1 (market making, cross-venue arbitrage), tier 2 (plan handlers) and the position manager.

Strategies only propose orders: every proposal goes through `OrderRouter.submit`, which is where the
risk gate sits. The signal arithmetic is in small pure functions so tests can reach it directly.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from orch.contracts.trading import OrderType, PlanState, Side, StrategyKind, StrategyPlan
from orch.hft.instruments import clip
from orch.hft.ticks import QUOTE, Tick
from orch.market.calendars import is_tradable

if TYPE_CHECKING:
    from orch.hft.engine import Engine

log = logging.getLogger(__name__)

# ---- Signals (pure) ------------------------------------------------------------------------------


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def trend_direction(prices: list[float], fast: int, slow: int) -> int:
    """+1 when the fast average is above the slow one, -1 below, 0 without enough data."""
    if len(prices) < slow:
        return 0
    difference = mean(prices[-fast:]) - mean(prices[-slow:])
    return 0 if difference == 0 else (1 if difference > 0 else -1)


def zscore(prices: list[float], window: int) -> float | None:
    if len(prices) < window:
        return None
    recent = prices[-window:]
    average = mean(recent)
    spread = math.sqrt(sum((p - average) ** 2 for p in recent) / len(recent))
    return None if spread == 0 else (prices[-1] - average) / spread


def breakout_level(prices: list[float], window: int, side: Side) -> float | None:
    """The range edge the last price broke through, or None if it is still inside the range."""
    if len(prices) < window + 1:
        return None
    previous = prices[-window - 1 : -1]
    if side is Side.BUY:
        return max(previous) if prices[-1] > max(previous) else None
    return min(previous) if prices[-1] < min(previous) else None


def market_maker_quotes(
    mid: float,
    inventory: float,
    quantity: float,
    half_spread_bps: float,
    skew_bps_per_unit: float,
    inventory_limit: float,
) -> tuple[float | None, float | None]:
    """(bid, ask) around a reservation price skewed against inventory; no quote on a side that
    would take the inventory past its limit."""
    reservation = mid * (1 - skew_bps_per_unit * inventory / 10_000)
    bid = reservation * (1 - half_spread_bps / 10_000)
    ask = reservation * (1 + half_spread_bps / 10_000)
    if inventory + quantity > inventory_limit:
        bid = None
    if inventory - quantity < -inventory_limit:
        ask = None
    return bid, ask


# ---- Tier 1: market making -----------------------------------------------------------------------


class MarketMaker:
    def __init__(self, engine: Engine) -> None:
        settings = engine.settings
        self.engine = engine
        self.symbols = frozenset(settings.mm_symbols)
        self.quantity = settings.mm_quote_quantity
        self.half_spread_bps = settings.mm_half_spread_bps
        self.skew_bps_per_unit = settings.mm_skew_bps_per_unit
        self.inventory_limit = settings.mm_inventory_limit
        self.requote_fraction = settings.mm_requote_bps / 10_000
        self.min_requote_ns = int(settings.tier1_min_requote_seconds * 1e9)
        self._last: dict[str, tuple[int, float]] = {}  # symbol -> (requoted at ns, mid)
        self._live: dict[str, list[str]] = {}  # symbol -> client_order_ids of live quotes

    def on_tick(self, tick: Tick) -> None:
        symbol = tick.symbol
        if tick.kind != QUOTE or tick.venue != 0 or symbol not in self.symbols:
            return
        mid = tick.price
        last = self._last.get(symbol)
        if last is not None:
            if tick.received_ns - last[0] < self.min_requote_ns:
                return
            if abs(mid - last[1]) < mid * self.requote_fraction:
                return
        router = self.engine.router
        portfolio = self.engine.portfolio
        inventory = portfolio.quantity(symbol)
        bid, ask = market_maker_quotes(
            mid, inventory, self.quantity, self.half_spread_bps, self.skew_bps_per_unit, self.inventory_limit
        )
        # Cancel first: a new bid placed while the old ask still stands crosses it whenever the mid
        # moved more than the spread (Alpaca: "potential wash trade"; `orch hft status` showed the
        # account's bid above its ask).
        for client_order_id in self._live.pop(symbol, ()):
            router.cancel(client_order_id)
        live = []
        complete = True
        rules = self.engine.instruments.get(symbol)
        for side, price in ((Side.BUY, bid), (Side.SELL, ask)):
            if price is None or rules is None:
                continue
            price = rules.round_price(price, down=side is Side.BUY)  # on the grid, never more aggressive
            if portfolio.own_order_crossed(symbol, side, price) is not None:
                # A remote broker's cancel has not landed yet: quote this side on a later tick.
                complete = False
                continue
            order, _ = router.submit(
                symbol, side, self.quantity, OrderType.LIMIT, price, "mm", received_ns=tick.received_ns
            )
            if order is not None:
                live.append(order.client_order_id)
        self._live[symbol] = live
        # An incomplete quote is retried at the next tick past the requote interval, whatever the mid.
        self._last[symbol] = (tick.received_ns, mid if complete else math.nan)


# ---- Tier 1: cross-venue arbitrage ---------------------------------------------------------------


class ArbitrageDetector:
    """Watches both venues; when venue 1's bid clears venue 0's ask (or the reverse) by the minimum
    edge, it counts the opportunity and, if trading is on, takes the leg our broker can reach."""

    def __init__(self, engine: Engine) -> None:
        settings = engine.settings
        self.engine = engine
        self.min_edge = settings.arb_min_edge_bps / 10_000
        self.quantity = settings.arb_quantity
        self.trade = settings.arb_trade
        self.min_interval_ns = int(settings.tier1_min_requote_seconds * 1e9)
        self._books: dict[tuple[str, int], tuple[float, float]] = {}
        self._last_sent: dict[str, int] = {}
        self._working: dict[str, str] = {}
        self.opportunities = 0

    def on_tick(self, tick: Tick) -> None:
        if tick.kind != QUOTE:
            return
        symbol = tick.symbol
        self._books[(symbol, tick.venue)] = (tick.bid, tick.ask)
        here = self._books.get((symbol, 0))
        there = self._books.get((symbol, 1))
        if here is None or there is None:
            return
        if there[0] > here[1] * (1 + self.min_edge):
            side, price = Side.BUY, here[1]  # cheaper here than the other venue's bid
        elif here[0] > there[1] * (1 + self.min_edge):
            side, price = Side.SELL, here[0]
        else:
            return
        self.opportunities += 1
        if not self.trade or tick.received_ns - self._last_sent.get(symbol, -(10**18)) < self.min_interval_ns:
            return
        self._last_sent[symbol] = tick.received_ns
        router = self.engine.router
        working = self._working.pop(symbol, None)
        if working is not None:
            router.cancel(working)
        rules = self.engine.instruments.get(symbol)
        if rules is None:
            return
        price = rules.round_price(price, down=side is Side.BUY)  # on the grid, never more aggressive
        if self.engine.portfolio.own_order_crossed(symbol, side, price) is not None:
            return  # the account's own quote stands in the way (a wash trade at Alpaca)
        order, _ = router.submit(
            symbol, side, self.quantity, OrderType.LIMIT, price, "arb", received_ns=tick.received_ns
        )
        if order is not None:
            self._working[symbol] = order.client_order_id


# ---- Tier 2: handlers for the trading cycle's plans ----------------------------------------------


@dataclass
class TrackedPlan:
    plan: StrategyPlan
    status: PlanState = PlanState.WAITING
    entry_order: str | None = None
    exit_order: str | None = None
    exit_attempts: int = 0
    exit_reason: str | None = None
    breakout_level: float | None = None


@dataclass
class PriceSamples:
    values: deque[float] = field(default_factory=lambda: deque(maxlen=256))

    def as_list(self) -> list[float]:
        return list(self.values)


class Tier2:
    def __init__(self, engine: Engine) -> None:
        settings = engine.settings
        self.engine = engine
        self.fast = settings.tier2_fast_window
        self.slow = settings.tier2_slow_window
        self.z_entry = settings.tier2_zscore_entry
        self.plans: dict[str, TrackedPlan] = {}
        self.samples: dict[str, PriceSamples] = {}

    def accept(self, plan: StrategyPlan, now: float) -> str | None:
        """Take a plan; the reason it was refused otherwise."""
        if plan.valid_until.timestamp() <= now:
            return "valid_until is in the past"
        if plan.symbol not in self.engine.known_symbols:
            return f"no market data for {clip(plan.symbol)}"
        problem = self.engine.instruments.problem(plan.symbol, plan.quantity, plan.entry_price)
        if problem is not None:
            return problem
        low, high = (
            (plan.stop_loss, plan.take_profit)
            if plan.side is Side.BUY
            else (plan.take_profit, plan.stop_loss)
        )
        if not low < high:
            return "a buy needs stop_loss < take_profit, a sell take_profit < stop_loss"
        if plan.entry_price is not None and not low < plan.entry_price < high:
            return "entry_price must lie between stop_loss and take_profit"
        current = self.plans.get(plan.plan_id)
        if current is not None and current.status != PlanState.WAITING:
            return f"plan {plan.plan_id} is already {current.status}"
        self.plans[plan.plan_id] = TrackedPlan(plan)
        self.engine.journal.save_plan(plan, PlanState.WAITING)
        return None

    def sample(self) -> None:
        for symbol, price in self.engine.portfolio.marks.items():
            self.samples.setdefault(symbol, PriceSamples()).values.append(price)

    def prices(self, symbol: str) -> list[float]:
        samples = self.samples.get(symbol)
        return [] if samples is None else samples.as_list()

    def entry_signal(self, state: TrackedPlan) -> bool:
        plan = state.plan
        direction = 1 if plan.side is Side.BUY else -1
        prices = self.prices(plan.symbol)
        if plan.strategy is StrategyKind.GENERIC:
            return bool(prices)
        if plan.strategy is StrategyKind.TREND:
            return trend_direction(prices, self.fast, self.slow) == direction
        if plan.strategy is StrategyKind.MEAN_REVERSION:
            z = zscore(prices, self.slow)
            return z is not None and z * direction <= -self.z_entry
        level = breakout_level(prices, self.slow, plan.side)
        if level is not None:
            state.breakout_level = level
            return True
        return False

    def evaluate(self, now: float) -> None:
        self.sample()
        router = self.engine.router
        for state in self.plans.values():
            plan = state.plan
            if state.status == PlanState.ENTERING:
                self._follow_entry(state)
                continue
            if state.status != PlanState.WAITING:
                continue
            if plan.valid_until.timestamp() <= now:
                state.status = PlanState.EXPIRED
                self.engine.journal.set_plan_status(plan.plan_id, state.status)
                continue
            if not is_tradable(plan.symbol, now) or not self.entry_signal(state):
                continue
            if self.engine.portfolio.own_order_crossed(plan.symbol, plan.side, plan.entry_price) is not None:
                continue  # it would trade against the account's own quote: wait until that is gone
            order_type = OrderType.MARKET if plan.entry_price is None else OrderType.LIMIT
            order, _ = router.submit(
                plan.symbol,
                plan.side,
                plan.quantity,
                order_type,
                plan.entry_price,
                plan.strategy.value,
                plan_id=plan.plan_id,
                idempotency_key=f"{plan.plan_id}:entry",
            )
            if order is not None:
                state.status = PlanState.ENTERING
                state.entry_order = order.client_order_id
                self.engine.journal.set_plan_status(plan.plan_id, state.status)

    def _follow_entry(self, state: TrackedPlan) -> None:
        order = self.engine.order(state.entry_order)
        if order is None or not order.status.terminal:
            return
        state.status = PlanState.OPEN if order.filled_quantity > 0 else PlanState.FAILED
        self.engine.journal.set_plan_status(state.plan.plan_id, state.status)


# ---- The position manager ------------------------------------------------------------------------


def exit_reason(state: TrackedPlan, price: float, prices: list[float], fast: int, slow: int) -> str | None:
    """Why the plan's position should close now, or None: stops first, then the strategy's own exit."""
    plan = state.plan
    long = plan.side is Side.BUY
    if (long and price <= plan.stop_loss) or (not long and price >= plan.stop_loss):
        return "stop_loss"
    if (long and price >= plan.take_profit) or (not long and price <= plan.take_profit):
        return "take_profit"
    direction = 1 if long else -1
    if plan.strategy is StrategyKind.TREND and trend_direction(prices, fast, slow) == -direction:
        return "trend_reversal"
    if plan.strategy is StrategyKind.MEAN_REVERSION:
        z = zscore(prices, slow)
        if z is not None and z * direction >= 0:
            return "returned_to_mean"
    level = state.breakout_level
    if (
        plan.strategy is StrategyKind.BREAKOUT
        and level is not None
        and (price < level if long else price > level)
    ):
        return "failed_breakout"
    return None


class PositionManager:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def evaluate(self, now: float) -> None:
        engine = self.engine
        engine.gate.check_daily_loss()
        tier2 = engine.tier2
        for symbol, position in list(engine.portfolio.positions.items()):
            if position.quantity == 0 or position.plan_id is None:
                continue
            state = tier2.plans.get(position.plan_id)
            price = engine.portfolio.marks.get(symbol)
            if state is None or price is None:
                continue
            if state.status == PlanState.EXITING:
                exit_order = engine.order(state.exit_order)
                if exit_order is not None and not exit_order.status.terminal:
                    continue
            reason = exit_reason(state, price, tier2.prices(symbol), tier2.fast, tier2.slow)
            if reason is None:
                continue
            side = Side.SELL if position.quantity > 0 else Side.BUY
            # The exit is a market order: it would trade against any of the account's own orders on
            # the other side. Those go first; a remote broker's cancel lands before a later pass.
            if engine.router.cancel_crossing(symbol, side, None):
                continue
            state.exit_attempts += 1
            order, denial = engine.router.submit(
                symbol,
                side,
                abs(position.quantity),
                OrderType.MARKET,
                None,
                "exit",
                plan_id=state.plan.plan_id,
                reduce_only=True,
                idempotency_key=f"{state.plan.plan_id}:exit:{state.exit_attempts}",
            )
            if order is not None:
                state.status = PlanState.EXITING
                state.exit_order = order.client_order_id
                state.exit_reason = reason
                engine.journal.record_event("exit", plan_id=state.plan.plan_id, reason=reason, price=price)
                log.info("exit %s %s at %.4f: %s", state.plan.plan_id, symbol, price, reason)
            else:
                log.warning("exit of %s denied: %s", state.plan.plan_id, denial)
        for state in tier2.plans.values():
            closed = engine.portfolio.quantity(state.plan.symbol) == 0
            if state.status == PlanState.EXITING and closed:
                state.status = PlanState.CLOSED
                engine.journal.set_plan_status(state.plan.plan_id, state.status)
