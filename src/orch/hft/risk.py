"""The one pre-trade risk gate every order passes (in the spirit of NautilusTrader's RiskEngine).

Nothing reaches a broker except through `RiskGate.check` followed by `RiskGate.record_sent`; the
order router (`engine.OrderRouter`) is the only caller and has no other path to the broker. Every
denial carries a `DenialReason` and a sentence, and is counted.

The checks run cheapest and most absolute first: trading state, then the order itself (its
instrument's rules, its market's hours, the account's own opposite orders), then limits that depend
on the portfolio, then the throttle (which only counts orders that pass). The router has already
rounded the order to its instrument's grid (`Instruments.rounded`); what still breaks a rule here
is denied, never corrected.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime

from orch.contracts.system import EmergencyLevel
from orch.contracts.trading import (
    DenialReason,
    OrderType,
    RiskLimits,
    RiskUsage,
    Side,
    TradingState,
    TradingStatus,
    daily_loss_reached,
)
from orch.hft.instruments import Instruments
from orch.hft.portfolio import Portfolio
from orch.market.calendars import is_tradable

log = logging.getLogger(__name__)

Denial = tuple[DenialReason, str]
StateListener = Callable[[TradingState, TradingState, str], None]


class RiskGate:
    def __init__(
        self,
        limits: RiskLimits,
        portfolio: Portfolio,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        initial_state: TradingState = TradingState.REDUCING,
        instruments: Instruments | None = None,
    ) -> None:
        self.limits = limits
        # None: any symbol, any positive quantity (for tests of the limits alone).
        self.instruments = instruments
        self.portfolio = portfolio
        self._clock = clock
        self._wall_clock = wall_clock
        self.state = initial_state
        self.emergency_level = EmergencyLevel.NONE
        self.entries_paused = False
        self.reason = "starting: reconciliation pending"
        self.changed_at = wall_clock()
        self.reconciled = False
        self.denials: Counter[str] = Counter()
        self.approvals = 0
        self._sent: deque[float] = deque()
        self._listeners: list[StateListener] = []
        # symbol -> (tradable, until): sessions open and close on whole minutes, so a minute's answer holds.
        self._tradable: dict[str, tuple[bool, float]] = {}

    # ---- Trading state ---------------------------------------------------------------------------

    def on_state_change(self, listener: StateListener) -> None:
        self._listeners.append(listener)

    def set_state(self, state: TradingState, reason: str) -> None:
        previous = self.state
        self.state = state
        self.reason = reason
        self.changed_at = self._wall_clock()
        if previous is not state:
            log.warning("trading state %s -> %s: %s", previous.value, state.value, reason)
            for listener in self._listeners:
                listener(previous, state, reason)

    def apply_kill(self, level: EmergencyLevel, reason: str) -> None:
        """Move to the level's state (`EmergencyLevel.rules`); a kill never loosens a stricter one in force.

        The one exception is a flatten requested while HALTED (after a halt, or the daily-loss breaker):
        it must close positions, so the gate goes REDUCING (only orders that shrink a position pass)
        until the engine's flatten has closed them, and then HALTED again.
        """
        requested = level
        level = EmergencyLevel.strictest((level, self.emergency_level))
        self.emergency_level = level
        self.entries_paused = not level.rules.allows_entries
        target = level.rules.gate_state
        if self.state is TradingState.HALTED and not requested.rules.flattens:
            target = TradingState.HALTED
        self.set_state(target, f"{level.value}: {reason}")

    def resume(self, reason: str) -> None:
        self.emergency_level = EmergencyLevel.NONE
        self.entries_paused = False
        self.set_state(TradingState.ACTIVE if self.reconciled else TradingState.REDUCING, reason)

    def status(self) -> TradingStatus:
        return TradingStatus(
            state=self.state,
            entries_paused=self.entries_paused,
            emergency_level=self.emergency_level,
            reason=self.reason,
            changed_at=datetime.fromtimestamp(self.changed_at, UTC),
            reconciled=self.reconciled,
        )

    # ---- The check: state ------------------------------------------------------------------------

    def check(
        self, symbol: str, side: Side, quantity: float, price: float | None, reduce_only: bool = False
    ) -> Denial | None:
        """None when the order may go; otherwise why not. Cancels never come here: they always pass."""
        if self.state is TradingState.HALTED:
            return self._deny(DenialReason.HALTED, f"trading is halted ({self.reason})")
        portfolio = self.portfolio
        position = portfolio.quantity(symbol)
        # Judged against the worst case: every open order on this side fills, none on the other.
        after = portfolio.worst_case(symbol, side) + (quantity if side is Side.BUY else -quantity)
        # Shrinking means moving toward zero without crossing it.
        shrinks = (
            position != 0 and abs(after) < abs(position) and (after == 0 or (after > 0) == (position > 0))
        )
        if not shrinks:
            if reduce_only:
                return self._deny(
                    DenialReason.REDUCE_ONLY_WOULD_INCREASE,
                    f"reduce-only {side.value} {quantity:g} {symbol} would take the position "
                    f"from {position:g} to {after:g}",
                )
            if self.state is TradingState.REDUCING:
                return self._deny(
                    DenialReason.REDUCING_WOULD_INCREASE,
                    f"reducing ({self.reason}): {side.value} {quantity:g} {symbol} would take the "
                    f"position from {position:g} to {after:g}",
                )
            if self.entries_paused:
                return self._deny(DenialReason.ENTRIES_PAUSED, f"new entries are paused ({self.reason})")

        # ---- The check: the order itself ---------------------------------------------------------
        limit_price = price
        if price is None:
            price = portfolio.marks.get(symbol)
            if price is None:
                return self._deny(DenialReason.NO_PRICE, f"no price known for {symbol} to value the order")
        if self.instruments is not None:
            rules = self.instruments.get(symbol)
            order_type = OrderType.MARKET if limit_price is None else OrderType.LIMIT
            breach = (
                self.instruments.unknown(symbol)
                if rules is None
                else rules.order_breach(side, quantity, order_type, limit_price, price)
                or rules.short_breach(side, quantity, portfolio.worst_case(symbol, Side.SELL))
            )
            if breach is not None:
                return self._deny(breach.reason, breach.detail)
        elif not quantity > 0:
            return self._deny(DenialReason.INVALID, f"quantity must be positive, got {quantity:g}")
        if not self._is_tradable(symbol):
            return self._deny(DenialReason.MARKET_CLOSED, f"{symbol}'s market is closed now")
        crossed = portfolio.own_order_crossed(symbol, side, limit_price)
        if crossed is not None:
            limit_text = "market" if limit_price is None else f"limit {limit_price:g}"
            return self._deny(
                DenialReason.SELF_CROSS,
                f"{side.value} {symbol} at {limit_text} would cross the account's own open "
                f"{'sell' if side is Side.BUY else 'buy'} at {crossed:g}",
            )
        notional = quantity * price
        limits = self.limits
        if notional > limits.max_order_notional:
            return self._deny(
                DenialReason.ORDER_NOTIONAL,
                f"order notional {notional:,.2f} exceeds max_order_notional {limits.max_order_notional:,.2f}",
            )

        # ---- The check: position and exposure limits (only when the order adds risk) -------------
        if not shrinks:
            if abs(after) > limits.max_position_quantity:
                return self._deny(
                    DenialReason.POSITION_QUANTITY,
                    f"{symbol} position would reach {after:g}, max_position_quantity is "
                    f"{limits.max_position_quantity:g}",
                )
            if abs(after) * price > limits.max_position_notional:
                return self._deny(
                    DenialReason.POSITION_NOTIONAL,
                    f"{symbol} position would be worth {abs(after) * price:,.2f}, max_position_notional "
                    f"is {limits.max_position_notional:,.2f}",
                )
            gross = portfolio.gross_exposure() + (abs(after) - abs(position)) * price
            if gross > limits.max_gross_exposure:
                return self._deny(
                    DenialReason.GROSS_EXPOSURE,
                    f"gross exposure would reach {gross:,.2f}, max_gross_exposure is "
                    f"{limits.max_gross_exposure:,.2f}",
                )

        # ---- The check: daily loss circuit breaker -----------------------------------------------
        # A flatten in progress only sends what closes positions (REDUCING denied the rest above):
        # closing the losers is what the breaker wants, so the breaker lets those orders through.
        if self.check_daily_loss() and not self.emergency_level.rules.flattens:
            return self._deny(DenialReason.DAILY_LOSS, self.reason)

        # ---- The check: order-rate throttle ------------------------------------------------------
        now = self._clock()
        window_start = now - limits.throttle_interval_seconds
        sent = self._sent
        while sent and sent[0] <= window_start:
            sent.popleft()
        if len(sent) >= limits.max_orders_per_interval:
            return self._deny(
                DenialReason.RATE_THROTTLE,
                f"{len(sent)} orders in the last {limits.throttle_interval_seconds:g}s, "
                f"max_orders_per_interval is {limits.max_orders_per_interval}",
            )
        return None

    def _is_tradable(self, symbol: str) -> bool:
        now = self._wall_clock()
        known = self._tradable.get(symbol)
        if known is not None and now < known[1]:
            return known[0]
        tradable = is_tradable(symbol, now)  # the calendar's rule, asked once a minute per symbol
        self._tradable[symbol] = (tradable, now - now % 60 + 60)
        return tradable

    def record_sent(self) -> None:
        """The order passed and is on its way: it counts toward the throttle."""
        self._sent.append(self._clock())
        self.approvals += 1

    def _deny(self, reason: DenialReason, detail: str) -> Denial:
        self.denials[reason.value] += 1
        return reason, detail

    # ---- Daily loss circuit breaker ----------------------------------------------------------------

    def check_daily_loss(self) -> bool:
        """Trip to HALTED by itself when today's loss reaches the limit; True when the loss is there.

        A flatten in progress is left to finish (REDUCING until flat, then the engine halts): halting
        it again here denied its own closing orders, so a flatten after the breaker closed nothing.
        """
        pnl = self.portfolio.daily_pnl()
        if daily_loss_reached(pnl, self.limits.max_daily_loss):
            if self.state is not TradingState.HALTED and not self.emergency_level.rules.flattens:
                self.emergency_level = EmergencyLevel.HALT
                self.entries_paused = True
                self.set_state(
                    TradingState.HALTED,
                    f"daily loss breaker: P&L today {pnl:,.2f} reached -{self.limits.max_daily_loss:,.2f}",
                )
            return True
        return False

    # ---- Usage -------------------------------------------------------------------------------------

    def usage(self) -> RiskUsage:
        now = self._clock()
        window_start = now - self.limits.throttle_interval_seconds
        return RiskUsage(
            gross_exposure=self.portfolio.gross_exposure(),
            max_gross_exposure=self.limits.max_gross_exposure,
            daily_pnl=self.portfolio.daily_pnl(),
            max_daily_loss=self.limits.max_daily_loss,
            orders_in_interval=sum(1 for t in self._sent if t > window_start),
            max_orders_per_interval=self.limits.max_orders_per_interval,
            denials=dict(self.denials),
        )
