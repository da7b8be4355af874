"""The engine: ticks in, strategies, the order router (the only way to a broker), fills back.

The hot path (`Engine.on_tick` down to `Broker.submit_now`) is synchronous: no awaits, no tasks,
so a tick's orders reach the simulated venue before the next tick is looked at. Remote brokers get
the order through a bounded async dispatch after it is journaled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

import numpy as np

from orch.brokers.base import Broker, BrokerError, OrderRejected, make_client_order_id, replace_order
from orch.contracts.instruments import FeeAsset, Liquidity
from orch.contracts.system import EmergencyLevel
from orch.contracts.trading import (
    Fill,
    HftStatus,
    KillAnswer,
    LatencyFigures,
    LevelSettlement,
    Order,
    OrderStatus,
    OrderType,
    PlanState,
    Side,
    TradingState,
)
from orch.hft.config import HftSettings
from orch.hft.instruments import Instruments
from orch.hft.journal import Journal
from orch.hft.portfolio import Portfolio, crosses, standing_price
from orch.hft.risk import Denial, RiskGate
from orch.hft.strategies import ArbitrageDetector, MarketMaker, PositionManager, Tier2, TrackedPlan
from orch.hft.ticks import QUOTE, Tick
from orch.market.calendars import current_sessions, day_order_expiry, market_status

log = logging.getLogger(__name__)
# Alpaca's cancels land in about 0.1 s (the fake's delay too): look then, and twice as late each time.
PENDING_CANCEL_FIRST_LOOK_SECONDS = 0.1


class LatencyRecorder:
    """Tick-to-order latencies in nanoseconds, in a ring buffer so memory stays flat."""

    def __init__(self, size: int = 65_536) -> None:
        self._samples = np.zeros(size, dtype=np.int64)
        self._count = 0

    def record(self, nanoseconds: int) -> None:
        self._samples[self._count % len(self._samples)] = nanoseconds
        self._count += 1

    def figures(self) -> LatencyFigures:
        filled = self._samples[: min(self._count, len(self._samples))]
        if not len(filled):
            return LatencyFigures()
        p50, p99, p999 = np.percentile(filled, [50, 99, 99.9]) / 1_000
        return LatencyFigures(
            samples=self._count,
            p50_us=float(p50),
            p99_us=float(p99),
            p999_us=float(p999),
            max_us=float(filled.max() / 1_000),
        )


# ---- The order router: the gate, the journal, then the broker ------------------------------------


class OrderRouter:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.account = engine.settings.account
        self.gate = engine.gate
        self.instruments = engine.instruments
        self.journal = engine.journal
        self.broker = engine.broker
        self.portfolio = engine.portfolio
        self.latency = engine.latency
        self.timeout = engine.settings.broker_timeout_seconds
        self._accepted: list[tuple[str, str | None]] = []
        self.cancelling: set[str] = set()
        self._cancelled: list[str] = []
        # Copied (not validated) for each new order; see `replace_order`.
        self._template = Order(
            client_order_id="template", symbol="-", side=Side.BUY, quantity=1.0, created_at=datetime.now(UTC)
        )
        self._template.__pydantic_fields_set__ = set(Order.model_fields)

    def flush(self) -> None:
        """After a batch of ticks: the venue persists what it accepted, then the journal notes it."""
        self.broker.flush()
        if self._accepted:
            accepted, self._accepted = self._accepted, []
            self.journal.mark_accepted_many(accepted)
        if self._cancelled:
            cancelled, self._cancelled = self._cancelled, []
            self.journal.mark_cancelled_many(cancelled)

    def submit(
        self,
        symbol: str,
        side: Side,
        quantity: float,
        order_type: OrderType = OrderType.MARKET,
        limit_price: float | None = None,
        source: str = "api",
        plan_id: str | None = None,
        reduce_only: bool = False,
        idempotency_key: str | None = None,
        received_ns: int = 0,
    ) -> tuple[Order | None, Denial | None]:
        """The only way an order reaches a broker. Returns the order, or the gate's denial; neither
        when the broker's request budget has no room now for a tier-1 order (`Broker.admits`)."""
        client_order_id = ""
        if idempotency_key is not None:
            client_order_id = make_client_order_id(self.account, idempotency_key=idempotency_key)
            known = self.portfolio.open_orders.get(client_order_id) or self.journal.order(client_order_id)
            if known is not None:
                return known, None  # the same intent again: the order it already made
        # On the grid before the gate: a buy's limit rounds down, a sell's up, quantities down.
        quantity, limit_price = self.instruments.rounded(symbol, side, quantity, order_type, limit_price)
        denial = self.gate.check(symbol, side, quantity, limit_price, reduce_only)
        if denial is not None:
            return None, denial
        if idempotency_key is None:
            sequence = self.journal.next_sequence()
            client_order_id = make_client_order_id(self.account, sequence)
        else:
            sequence = None
        # Unvalidated construction: every field comes from the checked arguments above.
        order = replace_order(
            self._template,
            client_order_id=client_order_id,
            broker_order_id=None,
            symbol=symbol,
            side=side,
            quantity=quantity,
            order_type=order_type,
            limit_price=limit_price,
            status=OrderStatus.PENDING_SUBMIT,
            filled_quantity=0.0,
            average_fill_price=None,
            source=source,
            plan_id=plan_id,
            reduce_only=reduce_only,
            # The engine's clock, as everything else it judges by time (a day order's session).
            created_at=datetime.fromtimestamp(self.engine.wall_clock(), UTC),
            updated_at=None,
            reject_reason=None,
        )
        if not self.broker.admits(order):
            # A requote the request budget has no room for now: dropped before the journal writes it
            # (it used to be written, then dropped by the broker: a rejected order and a warning each).
            return None, None
        self.journal.record_order(order, sequence)  # before the broker can know it
        self.gate.record_sent()
        self.portfolio.track_order(order)
        try:
            accepted = self.broker.submit_now(order)
        except OrderRejected as error:
            self._rejected(order, str(error))
            return order, None
        if accepted is not None:
            if received_ns:
                self.latency.record(time.perf_counter_ns() - received_ns)
            # The PENDING_SUBMIT row is the durable part; ACCEPTED is journaled with the batch.
            self._accepted.append((client_order_id, accepted.broker_order_id))
            self.portfolio.open_orders[client_order_id] = accepted  # same remaining: no re-count
            return accepted, None
        self.engine.spawn(self._submit_remote(order))
        if received_ns:
            self.latency.record(time.perf_counter_ns() - received_ns)
        return order, None

    async def _submit_remote(self, order: Order, attempts: int = 3) -> None:
        for attempt in range(1, attempts + 1):
            try:
                accepted = await asyncio.wait_for(self.broker.submit(order), self.timeout)
            except OrderRejected as error:
                self._rejected(order, str(error))
                return
            except (BrokerError, TimeoutError) as error:
                # Safe to retry: the same client_order_id cannot make a second order.
                log.warning("submit %s attempt %d failed: %s", order.client_order_id, attempt, error)
                await asyncio.sleep(0.2 * attempt)
                continue
            self.journal.mark_accepted(order.client_order_id, accepted.broker_order_id)
            current = self.portfolio.open_orders.get(order.client_order_id)
            if current is not None and current.status is OrderStatus.PENDING_SUBMIT:
                self.portfolio.track_order(accepted)
            return
        # Left PENDING_SUBMIT: reconciliation looks it up by client_order_id.

    def _rejected(self, order: Order, reason: str) -> None:
        self.journal.update_order_status(order.client_order_id, OrderStatus.REJECTED, reject_reason=reason)
        self.portfolio.track_order(order.model_copy(update={"status": OrderStatus.REJECTED}))
        log.warning("order %s rejected by the broker: %s", order.client_order_id, reason)

    def cancel(self, client_order_id: str) -> bool:
        """Cancels always pass the gate, in every state. False if the order is not open."""
        if client_order_id not in self.portfolio.open_orders:
            return False
        result = self.broker.cancel_now(client_order_id)
        if result is NotImplemented:
            self.cancelling.add(client_order_id)
            self.engine.spawn(self._cancel(client_order_id))
            return True
        if result is not None and result.status is OrderStatus.CANCELLED:
            self._cancelled.append(client_order_id)
            self.portfolio.track_order(result)
        return True

    async def _cancel(self, client_order_id: str) -> None:
        """A remote cancel may land later (Alpaca: `pending_cancel`, where the order can still fill).

        The order stays open, and in `cancelling` so reconciliation leaves it be, until the broker
        says cancelled or filled; a fill meanwhile comes in through the fill sync like any other.
        """
        try:
            result = await asyncio.wait_for(self.broker.cancel(client_order_id), self.timeout)
            pause = PENDING_CANCEL_FIRST_LOOK_SECONDS
            while result is not None and result.status is OrderStatus.PENDING_CANCEL:
                current = self.portfolio.open_orders.get(client_order_id)
                if current is not None and current.status is not OrderStatus.PENDING_CANCEL:
                    self.portfolio.track_order(
                        current.model_copy(update={"status": OrderStatus.PENDING_CANCEL})
                    )
                await asyncio.sleep(pause)
                pause = min(2 * pause, self.timeout)
                result = await asyncio.wait_for(self.broker.get_order(client_order_id), self.timeout)
        except (BrokerError, TimeoutError) as error:
            log.warning("cancel %s failed: %s", client_order_id, error)
            return
        finally:
            self.cancelling.discard(client_order_id)
        if result is not None and result.status is OrderStatus.CANCELLED:
            self.journal.update_order_status(client_order_id, OrderStatus.CANCELLED)
            current = self.journal.order(client_order_id)
            if current is not None:
                self.portfolio.track_order(current)

    def cancel_crossing(self, symbol: str, side: Side, limit_price: float | None) -> bool:
        """Cancel the account's open orders an order on `side` would cross (its own opposite side);
        True while any is still open (a remote broker's cancel lands later)."""
        portfolio = self.portfolio
        if portfolio.own_order_crossed(symbol, side, limit_price) is None:
            return False
        other = Side.SELL if side is Side.BUY else Side.BUY
        crossed = [
            order.client_order_id
            for order in portfolio.open_orders.values()
            if order.symbol == symbol
            and order.side is other
            and order.client_order_id not in self.cancelling
            and crosses(side, limit_price, standing_price(order))
        ]
        for client_order_id in crossed:
            self.cancel(client_order_id)
        return portfolio.own_order_crossed(symbol, side, limit_price) is not None


# ---- The engine ----------------------------------------------------------------------------------


class Engine:
    def __init__(
        self,
        settings: HftSettings,
        broker: Broker,
        journal: Journal,
        wall_clock: Any = time.time,
        market_name: str = "simulated",
    ) -> None:
        self.settings = settings
        self.broker = broker
        self.journal = journal
        self.market_name = market_name
        self.wall_clock = wall_clock
        self.started_at = wall_clock()
        self.instruments = Instruments(settings.symbols)
        self.known_symbols = set(settings.symbols)
        self.portfolio = Portfolio(wall_clock)
        self.gate = RiskGate(
            settings.risk, self.portfolio, wall_clock=wall_clock, instruments=self.instruments
        )
        self.latency = LatencyRecorder()
        self.router = OrderRouter(self)
        self.market_maker = MarketMaker(self) if settings.market_making else None
        self.arbitrage = ArbitrageDetector(self) if settings.arbitrage else None
        self.tier2 = Tier2(self)
        self.position_manager = PositionManager(self)
        self.ticks = 0
        self.fills_applied = 0
        self._tick_rate_mark = (time.monotonic(), 0)
        self.ticks_per_second = 0.0
        self._tasks: set[asyncio.Task] = set()
        self.fill_cursor: str | None = journal.get_meta("broker_fill_cursor")
        # Dead man's switch
        self.last_heartbeat: float | None = None
        self.deadman_armed = settings.deadman_require_heartbeat
        self._deadman_since = time.monotonic()
        self.deadman_reducing = False
        self.reconcile_reducing = False
        # A flatten's closing loop runs (`kill`): one at a time, and left alone by `enforce_level`.
        self.flattening = False
        # The broker's realized P&L minus the journal's when they disagree (see reconcile).
        self.realized_pnl_mismatch: float | None = None
        # No open day order can have expired before the next session close after this moment.
        self._next_expiry_check = -math.inf
        self.gate.on_state_change(self._on_state_change)

    # ---- Background work -------------------------------------------------------------------------

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait for background broker calls (never for the task that is waiting)."""
        others = [task for task in self._tasks if task is not asyncio.current_task()]
        if others:
            await asyncio.wait(others, timeout=timeout)

    # ---- Instrument rules ------------------------------------------------------------------------

    async def load_instrument_rules(self) -> list[str]:
        """Take the broker's published rules (`Broker.instrument_rules`) over the built-in table,
        once at start-up before any order; returns the symbols whose rules came from the broker."""
        published = await asyncio.wait_for(
            self.broker.instrument_rules(list(self.settings.symbols)), self.settings.broker_timeout_seconds
        )
        loaded = self.instruments.load(published)
        self.journal.record_event("instrument_rules", broker=self.broker.name, symbols=loaded)
        return loaded

    # ---- Restore ---------------------------------------------------------------------------------

    def load_portfolio(self) -> None:
        """Rebuild the in-memory view from the journal (on start and after reconciliation).

        Flat symbols are loaded too: their realized P&L is the account's history, and the day's
        realized P&L comes from the journal's per-day sums, so a reload never forgets a loss.
        """
        self.portfolio.positions.clear()
        self.portfolio.clear_orders()
        for row in self.journal.positions(include_closed=True):
            self.portfolio.set_position(
                row.symbol, row.quantity, row.average_price, row.realized_pnl, row.plan_id
            )
        for order in self.journal.orders(open_only=True):
            self.portfolio.track_order(order)
        self.portfolio.realized_by_day = self.journal.realized_pnl_by_day()

    def restore(self) -> None:
        self.load_portfolio()
        for plan, status in self.journal.plans():
            self.tier2.plans[plan.plan_id] = TrackedPlan(plan, status=PlanState(status))
        for order in self.journal.all_orders():
            if order.plan_id in self.tier2.plans and order.source == "exit":
                self.tier2.plans[order.plan_id].exit_attempts += 1

    def restore_kill(self) -> None:
        """A kill survives restarts: trading stays stopped until an explicit resume."""
        level = self.journal.get_meta("emergency_level")
        if level and level != EmergencyLevel.NONE.value:
            self.gate.apply_kill(
                EmergencyLevel(level), self.journal.get_meta("emergency_reason") or "restored"
            )

    # ---- The hot path ----------------------------------------------------------------------------

    def on_tick(self, tick: Tick) -> None:
        self.ticks += 1
        if tick.venue == 0:
            if tick.kind == QUOTE:
                self.portfolio.marks[tick.symbol] = tick.price
                self.broker.update_quote(tick.symbol, tick.bid, tick.ask, tick.timestamp)
            else:
                self.portfolio.marks[tick.symbol] = tick.price
        if self.market_maker is not None:
            self.market_maker.on_tick(tick)
        if self.arbitrage is not None:
            self.arbitrage.on_tick(tick)

    def end_of_batch(self) -> None:
        self.router.flush()

    def order(self, client_order_id: str | None) -> Order | None:
        if client_order_id is None:
            return None
        return self.portfolio.open_orders.get(client_order_id) or self.journal.order(client_order_id)

    # ---- Fills -----------------------------------------------------------------------------------

    async def sync_fills(self) -> int:
        self.router.flush()
        fills, cursor = await asyncio.wait_for(
            self.broker.fills_since(self.fill_cursor), self.settings.broker_timeout_seconds
        )
        applied = 0
        for reported in fills:
            fill = self.with_fee_quantity(reported)
            result = self.journal.apply_fill(fill)
            if result is None and self.journal.order(fill.client_order_id) is None:
                await self.adopt_order(fill.client_order_id)
                result = self.journal.apply_fill(fill)
            if result is None:
                continue
            applied += 1
            self.fills_applied += 1
            self.portfolio.apply_fill(
                result.fill.symbol,
                result.fill.side,
                result.fill.quantity - result.fill.fee_quantity,
                result.fill.price,
                result.order.plan_id,
                result.trading_day,
            )
            self.portfolio.track_order(result.order)
        if cursor != self.fill_cursor:
            self.fill_cursor = cursor
            self.journal.set_meta("broker_fill_cursor", cursor)
        if applied:
            self.gate.check_daily_loss()
        await self.sync_expired_orders()  # after the fills: an order filled before its close is filled
        return applied

    def with_fee_quantity(self, fill: Fill) -> Fill:
        """The fill with the part of its quantity the venue kept as its fee, from the instrument's
        fee model, when the broker did not report it (Alpaca reports no fee on an order).

        A market order takes liquidity; a limit order is counted as resting (maker), as our quotes
        and entries are placed off the touch.
        """
        rules = self.instruments.get(fill.symbol)
        if fill.fee_quantity or rules is None or rules.fee.charged_in is not FeeAsset.PROCEEDS:
            return fill
        order = self.order(fill.client_order_id)
        limit = order is not None and order.order_type is OrderType.LIMIT
        fee_quantity = rules.fee.fee_quantity(
            fill.side, fill.quantity, Liquidity.MAKER if limit else Liquidity.TAKER
        )
        return fill.model_copy(update={"fee_quantity": fee_quantity}) if fee_quantity else fill

    # ---- Day orders: expired by the venue at the session's close --------------------------------

    async def sync_expired_orders(self) -> list[str]:
        """Journal the open day orders the venue expired at their session's close; their ids.

        Cheap until a close passes (one comparison per fill sync). Then each open order whose close
        has passed is looked up at the broker: expired there, it is journaled expired (not a
        cancel, not a reconciliation difference) and leaves the open orders. One the broker has not
        closed yet is asked about again on the next sync.
        """
        now = self.wall_clock()
        if now < self._next_expiry_check:
            return []
        expired: list[str] = []
        waiting = False
        for order in list(self.portfolio.open_orders.values()):
            expires_at = day_order_expiry(order.symbol, order.created_at.timestamp())
            if expires_at is None or expires_at > now:
                continue
            at_broker = await asyncio.wait_for(
                self.broker.get_order(order.client_order_id), self.settings.broker_timeout_seconds
            )
            if at_broker is None or at_broker.status is not OrderStatus.EXPIRED:
                waiting = waiting or at_broker is None or not at_broker.status.terminal
                continue
            if self.journal.mark_expired(order.client_order_id):
                expired.append(order.client_order_id)
            current = self.journal.order(order.client_order_id)
            if current is not None:
                self.portfolio.track_order(current)
        if expired:
            log.info("day orders expired at the close: %s", ", ".join(expired))
        self._next_expiry_check = now if waiting else current_sessions(now).next_close(now) or now
        return expired

    async def adopt_order(self, client_order_id: str) -> Order | None:
        """An order the broker has and the journal does not: journal it (without its fills)."""
        order = await asyncio.wait_for(
            self.broker.get_order(client_order_id), self.settings.broker_timeout_seconds
        )
        if order is None:
            return None
        adopted = order.model_copy(
            update={
                "filled_quantity": 0.0,
                "average_fill_price": None,
                "status": OrderStatus.ACCEPTED if not order.status.terminal else order.status,
            }
        )
        self.journal.record_order(adopted)
        self.journal.record_event("adopted_order", client_order_id=client_order_id, status=order.status.value)
        return adopted

    # ---- Trading state: kill, resume, dead man's switch ------------------------------------------

    def _on_state_change(self, previous: TradingState, state: TradingState, reason: str) -> None:
        self.journal.record_event("trading_state", previous=previous.value, state=state.value, reason=reason)
        if state is TradingState.HALTED:
            self._persist_kill()
            # Whatever halted the gate (a kill, the daily-loss breaker, a flatten's end), halt's rule
            # holds: no order rests. No running loop only when tests drive the engine synchronously.
            with contextlib.suppress(RuntimeError):
                self.cancel_forbidden(EmergencyLevel.HALT)

    def _persist_kill(self) -> None:
        self.journal.set_meta("emergency_level", self.gate.emergency_level.value)
        self.journal.set_meta("emergency_reason", self.gate.reason)

    def kill(self, level: EmergencyLevel, reason: str, requested_by: str = "api") -> KillAnswer:
        """Stop trading at the level and do, here and now, what the level requires of the account
        (`EmergencyLevel.rules`): cancel the open orders it forbids and, at flatten, start closing every
        position. The answer names what was cancelled and what the level still waits for."""
        self.journal.record_event("kill", level=level.value, reason=reason, requested_by=requested_by)
        # Cancelled before the gate moves: a halt's own cancel-everything then finds them gone, and
        # the answer can name them.
        cancelled = self.cancel_forbidden(EmergencyLevel.strictest((level, self.gate.emergency_level)))
        self.gate.apply_kill(level, reason)
        self._persist_kill()
        if level.rules.flattens and not self.flattening:
            self.flattening = True
            self.spawn(self._flatten(reason))
        return KillAnswer(
            **self.gate.status().model_dump(),
            cancelled=cancelled,
            settlement=self.settlement(),
        )

    def settlement(self) -> LevelSettlement:
        return LevelSettlement.of(
            self.gate.emergency_level,
            self.gate.state,
            list(self.portfolio.open_orders.values()),
            self.portfolio.snapshot(),
        )

    def cancel_forbidden(self, level: EmergencyLevel) -> list[str]:
        """Cancel the open orders `level` forbids that have no cancel under way; their ids."""
        held = {symbol: position.quantity for symbol, position in self.portfolio.positions.items()}
        forbidden = [
            order.client_order_id
            for order in level.forbidden_orders(self.portfolio.open_orders.values(), held)
            if order.client_order_id not in self.router.cancelling
        ]
        for client_order_id in forbidden:
            self.router.cancel(client_order_id)
        self.router.flush()
        return forbidden

    def enforce_level(self) -> list[str]:
        """Keep the level in force: cancel again what a broker dropped, and what became forbidden
        since the kill (a remote order that landed after it, a quote a fill turned into an entry).
        A flatten in progress owns the account until it halts: its closing orders must stay."""
        if self.flattening or self.gate.emergency_level is EmergencyLevel.NONE:
            return []
        return self.cancel_forbidden(self.gate.emergency_level)

    async def _flatten(self, reason: str) -> None:
        try:
            await self._close_every_position(reason)
        finally:
            self.flattening = False

    async def _close_every_position(self, reason: str) -> None:
        await self.drain(timeout=self.settings.broker_timeout_seconds)
        # Until flat or the deadline: each poll sends the next closing order of every position that
        # has none open, so a position worth more than one order may carry, an order the throttle
        # denied and a partial fill all close over a few polls (one order for the whole position was
        # denied `order_notional` above max_order_notional, and the flatten closed nothing).
        deadline = time.monotonic() + max(10 * self.settings.position_interval_seconds, 5.0)
        while time.monotonic() < deadline:
            open_positions = [(s, p.quantity) for s, p in self.portfolio.positions.items() if p.quantity]
            if not open_positions:
                break
            for symbol, quantity in open_positions:
                side = Side.SELL if quantity > 0 else Side.BUY
                closing = self.portfolio.pending_sell if side is Side.SELL else self.portfolio.pending_buy
                if closing.get(symbol, 0.0) > 0:
                    continue
                self.router.submit(
                    symbol,
                    side,
                    self._closing_slice(symbol, abs(quantity)),
                    source="flatten",
                    reduce_only=True,
                )
            await asyncio.sleep(self.settings.fill_poll_seconds)
        flat = not any(p.quantity for p in self.portfolio.positions.values())
        self.gate.set_state(
            TradingState.HALTED, f"flatten: {reason} ({'flat' if flat else 'NOT flat: check'})"
        )

    def _closing_slice(self, symbol: str, quantity: float) -> float:
        """The most of `quantity` one order may close within the gate's order-notional limit."""
        mark = self.portfolio.marks.get(symbol)
        limit = self.gate.limits.max_order_notional
        if not mark or quantity * mark <= limit:
            return quantity
        rules = self.instruments.get(symbol)
        most = limit / mark
        return (rules.round_quantity(most) if rules is not None else most) or quantity

    def resume(self, reason: str, requested_by: str = "api") -> None:
        self.journal.record_event("resume", reason=reason, requested_by=requested_by)
        self.journal.set_meta("emergency_level", EmergencyLevel.NONE.value)
        self.deadman_reducing = False
        self._deadman_since = time.monotonic()
        self.gate.resume(reason)

    def heartbeat(self, sender: str) -> None:
        now = time.monotonic()
        self.last_heartbeat = now
        self.deadman_armed = True
        if self.deadman_reducing and self.gate.state is TradingState.REDUCING:
            self.deadman_reducing = False
            if self.gate.emergency_level is EmergencyLevel.NONE and self.gate.reconciled:
                self.gate.set_state(TradingState.ACTIVE, f"heartbeat from {sender} is back")

    def check_deadman(self) -> None:
        if not self.deadman_armed:
            return
        since = self.last_heartbeat if self.last_heartbeat is not None else self._deadman_since
        silent = time.monotonic() - since
        settings = self.settings
        if silent >= settings.deadman_halt_after_seconds:
            if self.gate.state is not TradingState.HALTED:
                self.kill(
                    EmergencyLevel.HALT, f"dead man's switch: no heartbeat for {silent:.1f}s", "deadman"
                )
        elif silent >= settings.deadman_reducing_after_seconds and self.gate.state is TradingState.ACTIVE:
            self.deadman_reducing = True
            self.gate.set_state(TradingState.REDUCING, f"dead man's switch: no heartbeat for {silent:.1f}s")

    # ---- Status ----------------------------------------------------------------------------------

    def update_tick_rate(self) -> None:
        now = time.monotonic()
        then, count = self._tick_rate_mark
        if now - then >= 1.0:
            self.ticks_per_second = (self.ticks - count) / (now - then)
            self._tick_rate_mark = (now, self.ticks)

    def status(self) -> HftStatus:
        self.update_tick_rate()
        now = self.wall_clock()
        return HftStatus(
            account=self.settings.account,
            pid=os.getpid(),
            started_at=datetime.fromtimestamp(self.started_at, UTC),
            trading=self.gate.status(),
            positions=self.portfolio.snapshot(),
            open_orders=list(self.portfolio.open_orders.values()),
            realized_pnl=self.portfolio.realized_pnl(),
            unrealized_pnl=self.portfolio.unrealized_pnl(),
            risk=self.gate.usage(),
            latency=self.latency.figures(),
            ticks_processed=self.ticks,
            ticks_per_second=self.ticks_per_second,
            last_heartbeat_age_seconds=None
            if self.last_heartbeat is None
            else time.monotonic() - self.last_heartbeat,
            active_plans=sum(
                1 for s in self.tier2.plans.values() if s.status in ("waiting", "entering", "open")
            ),
            broker=self.broker.name,
            trading_mode=self.broker.trading_mode,
            market=self.market_name,
            symbols=list(self.settings.symbols),
            request_budget=self.broker.request_budget(),
            clock=datetime.fromtimestamp(now, UTC),
            clock_start=self.settings.clock_start,
            markets=[market_status(symbol, now) for symbol in self.settings.symbols],
        )

    def metrics(self) -> dict[str, float]:
        latency = self.latency.figures()
        figures: dict[str, float] = {
            "ticks_total": self.ticks,
            "ticks_per_second": self.ticks_per_second,
            "orders_sent_total": self.gate.approvals,
            "open_orders": len(self.portfolio.open_orders),
            "arbitrage_opportunities_total": self.arbitrage.opportunities if self.arbitrage else 0,
            "gross_exposure": self.portfolio.gross_exposure(),
            "realized_pnl": self.portfolio.realized_pnl(),
            "unrealized_pnl": self.portfolio.unrealized_pnl(),
            "tick_to_order_p50_us": latency.p50_us or 0.0,
            "tick_to_order_p99_us": latency.p99_us or 0.0,
            "tick_to_order_p999_us": latency.p999_us or 0.0,
        }
        for reason, count in self.gate.denials.items():
            figures[f"denials_total{{reason={reason}}}"] = count
        return figures
