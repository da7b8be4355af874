"""Instrument rules: rounding onto the grid (property tests), each rule's denial on both sides of its
limit, no self-crossing (the market maker over thousands of volatile ticks), fees on positions."""

from __future__ import annotations

import asyncio
import math
import random
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orch.brokers.simulated import SimulatedBroker, SimulatedVenueConfig
from orch.contracts.instruments import (
    AssetClass,
    FeeAsset,
    FeeModel,
    InstrumentRules,
    TimeInForce,
    TradingCalendar,
    on_increment,
)
from orch.contracts.trading import DenialReason, Fill, Order, OrderStatus, OrderType, Side
from orch.hft.instruments import builtin_rules
from orch.hft.portfolio import crosses, standing_price
from orch.hft.strategies import MarketMaker
from orch.hft.ticks import QUOTE, Tick
from tests.test_hft_risk import SATURDAY, WEDNESDAY, make_engine

# Alpaca's rules as its assets endpoint and docs state them (the broker adapter builds these).
ALPACA_BTC = InstrumentRules(
    symbol="BTC/USD",
    asset_class=AssetClass.CRYPTO,
    min_quantity=1e-4,
    quantity_increment=1e-9,
    max_quantity=1e9,
    price_increment=1.0,
    min_notional=10.0,
    time_in_force=(TimeInForce.GTC, TimeInForce.IOC),
    fee=FeeModel(maker_bps=15, taker_bps=25, charged_in=FeeAsset.PROCEEDS),
    calendar=TradingCalendar.ALWAYS,
)
ALPACA_AAPL = InstrumentRules(
    symbol="AAPL",
    min_quantity=1e-9,
    quantity_increment=1e-9,
    max_quantity=1e9,
    price_increment=0.01,
    sub_dollar_price_increment=0.0001,
    fractional_order_types=frozenset({OrderType.MARKET}),
)
WHOLE_SHARES = ALPACA_AAPL.model_copy(update={"fractionable": False})

rules_strategy = st.sampled_from(
    [builtin_rules("AAPL"), builtin_rules("BTC/USD"), ALPACA_BTC, ALPACA_AAPL, WHOLE_SHARES]
)
prices = st.floats(min_value=1e-4, max_value=1e6, allow_nan=False, allow_infinity=False)
quantities = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)


# ---- Rounding (property tests) -------------------------------------------------------------------


@given(rules=rules_strategy, price=prices, side=st.sampled_from(Side))
def test_rounded_price_is_on_the_grid_and_never_more_aggressive(
    rules: InstrumentRules, price: float, side: Side
) -> None:
    rounded = rules.round_price(price, down=side is Side.BUY)
    if rounded == 0:  # a buy below the finest increment rounds to nothing: the gate denies it
        assert side is Side.BUY and price < rules.price_increment_at(price)
        return
    assert rules.price_breach(rounded) is None, (price, rounded)
    # Never pays more (a buy) or asks less (a sell) than the strategy wanted; within a millionth of
    # an increment a price already counts as on the grid (float error, e.g. 0.29 / 0.01).
    tolerance = rules.price_increment_at(price) * 1e-6
    if side is Side.BUY:
        assert rounded <= price + tolerance
    else:
        assert rounded >= price - tolerance
    assert abs(rounded - price) <= max(rules.price_increment, rules.price_increment_at(price)) + tolerance


@given(rules=rules_strategy, quantity=quantities, order_type=st.sampled_from(OrderType))
def test_rounded_quantity_is_on_its_increment_and_never_larger(
    rules: InstrumentRules, quantity: float, order_type: OrderType
) -> None:
    rounded = rules.round_quantity(quantity, order_type)
    step = rules.quantity_step(order_type)
    assert on_increment(rounded, step), (quantity, rounded)
    assert rounded <= quantity * (1 + 1e-9) + step * 1e-6
    assert quantity - rounded < step * (1 + 1e-6)
    if rounded >= rules.min_quantity:
        assert (
            rules.order_breach(Side.BUY, rounded, order_type, None, 1e9) is None
            or rounded > rules.max_quantity
        )


# ---- Each rule at the gate, both sides of its limit ----------------------------------------------


def alpaca_engine(wall: float = WEDNESDAY):
    engine = make_engine(wall, max_order_notional=1e9, max_position_notional=1e9, max_gross_exposure=1e9)
    engine.instruments.load({"BTC/USD": ALPACA_BTC, "AAPL": ALPACA_AAPL})
    return engine


def test_invalid_increment_denied_on_either_side_of_the_grid() -> None:
    gate = alpaca_engine().gate
    reason, detail = gate.check("AAPL", Side.BUY, 1, 100.005)
    assert reason is DenialReason.INVALID_INCREMENT, detail
    assert gate.check("AAPL", Side.BUY, 1, 100.01) is None
    reason, detail = gate.check("AAPL", Side.BUY, 1, 0.12345)  # under $1: four decimals
    assert reason is DenialReason.INVALID_INCREMENT, detail
    assert gate.check("AAPL", Side.BUY, 1, 0.1234) is None
    reason, detail = gate.check("BTC/USD", Side.BUY, 0.0010000001, None)
    assert reason is DenialReason.BELOW_MINIMUM or reason is DenialReason.INVALID_INCREMENT, detail


def test_below_minimum_quantity_and_notional() -> None:
    gate = alpaca_engine().gate
    gate.portfolio.marks["BTC/USD"] = 50_000.0
    reason, detail = gate.check("BTC/USD", Side.BUY, 0.00009, None)  # under min_order_size 1e-4
    assert reason is DenialReason.BELOW_MINIMUM, detail
    reason, detail = gate.check("BTC/USD", Side.BUY, 0.000199, None)  # $9.95 < $10 minimum notional
    assert reason is DenialReason.BELOW_MINIMUM and "minimum 10.00" in detail, detail
    assert gate.check("BTC/USD", Side.BUY, 0.0002, None) is None  # exactly $10


def test_not_fractionable_and_fractional_order_types() -> None:
    engine = alpaca_engine()
    gate = engine.gate
    reason, detail = gate.check("AAPL", Side.BUY, 1.5, 100.0)  # fractional limit: Alpaca refuses it
    assert reason is DenialReason.NOT_FRACTIONABLE and "market" in detail, detail
    assert gate.check("AAPL", Side.BUY, 1.5, None) is None  # fractional market order: taken
    assert gate.check("AAPL", Side.BUY, 2, 100.0) is None
    engine.instruments.load({"AAPL": WHOLE_SHARES})
    reason, detail = gate.check("AAPL", Side.BUY, 1.5, None)
    assert reason is DenialReason.NOT_FRACTIONABLE and "whole" in detail, detail
    assert gate.check("AAPL", Side.BUY, 1, None) is None


def test_order_type_not_allowed() -> None:
    engine = alpaca_engine()
    engine.instruments.load(
        {"AAPL": ALPACA_AAPL.model_copy(update={"order_types": frozenset({OrderType.LIMIT})})}
    )
    reason, detail = engine.gate.check("AAPL", Side.BUY, 1, None)
    assert reason is DenialReason.ORDER_TYPE_NOT_ALLOWED, detail
    assert engine.gate.check("AAPL", Side.BUY, 1, 100.0) is None


def test_market_closed_for_equities_not_crypto() -> None:
    weekend = make_engine(SATURDAY).gate
    reason, detail = weekend.check("AAPL", Side.BUY, 1, None)
    assert reason is DenialReason.MARKET_CLOSED, detail
    assert weekend.check("BTC/USD", Side.BUY, 0.01, None) is None
    assert make_engine(WEDNESDAY).gate.check("AAPL", Side.BUY, 1, None) is None


def test_self_cross_denied_at_the_touch_allowed_inside() -> None:
    engine = make_engine()
    router = engine.router
    ask, _ = router.submit("AAPL", Side.SELL, 1, OrderType.LIMIT, 101.0, "test")
    bid, _ = router.submit("AAPL", Side.BUY, 1, OrderType.LIMIT, 99.0, "test")
    assert ask is not None and bid is not None
    for side, price in (
        (Side.BUY, 101.0),
        (Side.BUY, 101.5),
        (Side.BUY, None),
        (Side.SELL, 99.0),
        (Side.SELL, None),
    ):
        reason, detail = engine.gate.check("AAPL", side, 1, price)
        assert reason is DenialReason.SELF_CROSS, (side, price, detail)
    assert engine.gate.check("AAPL", Side.BUY, 1, 100.99) is None
    assert engine.gate.check("AAPL", Side.SELL, 1, 99.01) is None
    assert engine.gate.check("MSFT", Side.BUY, 1, 200.0) is None  # another symbol's book
    router.cancel(ask.client_order_id)
    assert engine.gate.check("AAPL", Side.BUY, 1, 101.5) is None  # the ask is gone


# ---- Through the router: rounded before the gate, or denied and never at the broker ----------------


def test_router_rounds_limit_prices_away_from_aggression() -> None:
    engine = make_engine()
    buy, denial = engine.router.submit("AAPL", Side.BUY, 1.0000004, OrderType.LIMIT, 99.5512345, "test")
    assert denial is None and buy is not None
    assert (buy.limit_price, buy.quantity) == (99.55, 1.0)
    sell, denial = engine.router.submit("AAPL", Side.SELL, 1, OrderType.LIMIT, 100.001, "test")
    assert denial is None and sell is not None
    assert sell.limit_price == 100.01
    at_venue = {order.client_order_id: order.limit_price for order in engine.broker.all_orders()}
    assert at_venue == {buy.client_order_id: 99.55, sell.client_order_id: 100.01}


def test_router_denies_what_rounding_cannot_save_and_the_broker_never_sees_it() -> None:
    engine = alpaca_engine()
    engine.portfolio.marks["BTC/USD"] = 50_000.0
    order, denial = engine.router.submit("AAPL", Side.BUY, 0.5, OrderType.LIMIT, 100.0, "test")
    assert order is None and denial is not None
    assert denial[0] is DenialReason.BELOW_MINIMUM, denial  # a fractional limit rounds to 0 shares
    order, denial = engine.router.submit("BTC/USD", Side.BUY, 0.0001, OrderType.MARKET, None, "test")
    assert order is None and denial is not None and denial[0] is DenialReason.BELOW_MINIMUM, denial
    assert engine.broker.all_orders() == []


# ---- No self-crossing, ever ----------------------------------------------------------------------


class WashCheckingVenue(SimulatedBroker):
    """The simulated venue with Alpaca's wash-trade view: each order that arrives is checked against
    the account's orders open at the venue at that moment. With `deferred_cancels`, cancels land on
    the event loop later, as a remote broker's do."""

    def __init__(self, deferred_cancels: bool) -> None:
        super().__init__(":memory:", SimulatedVenueConfig(latency_seconds=3600))  # quotes rest, unfilled
        self.deferred_cancels = deferred_cancels
        self.washes: list[tuple[str, float | None, float | None]] = []

    def submit_now(self, order: Order) -> Order:
        for other in self._open.values():
            opposite = other.symbol == order.symbol and other.side is not order.side
            if opposite and crosses(order.side, order.limit_price, standing_price(other)):
                self.washes.append((order.side.value, order.limit_price, other.limit_price))
        return super().submit_now(order)

    def cancel_now(self, client_order_id: str):
        return NotImplemented if self.deferred_cancels else super().cancel_now(client_order_id)


@pytest.mark.parametrize("deferred_cancels", [False, True], ids=["cancel-now", "cancel-later"])
async def test_market_maker_never_crosses_itself_over_volatile_ticks(deferred_cancels: bool) -> None:
    engine = make_engine(
        max_order_notional=1e9,
        max_position_notional=1e12,
        max_gross_exposure=1e12,
        max_position_quantity=1e9,
        max_orders_per_interval=10**9,
        max_daily_loss=1e12,
    )
    venue = engine.broker = engine.router.broker = WashCheckingVenue(deferred_cancels)
    engine.settings.mm_symbols = ["AAPL"]
    engine.settings.mm_requote_bps = 0
    engine.settings.tier1_min_requote_seconds = 0
    maker = MarketMaker(engine)
    rng = random.Random(7)
    mid = 100.0
    two_sided = 0
    for step in range(5_000):
        # 30 bps a tick, with jumps of 2 %: far more than the 5 bps half-spread, both ways.
        mid *= math.exp(rng.gauss(0, 0.003) + (rng.choice((-0.02, 0.02)) if rng.random() < 0.02 else 0))
        tick = Tick(QUOTE, 0, "AAPL", mid * 0.9999, mid * 1.0001, mid, 10, WEDNESDAY, 10**12 + step * 10**6)
        engine.on_tick(tick)
        maker.on_tick(tick)
        engine.end_of_batch()
        bids = [o.limit_price for o in venue._open.values() if o.side is Side.BUY]
        asks = [o.limit_price for o in venue._open.values() if o.side is Side.SELL]
        two_sided += bool(bids and asks)
        assert not (bids and asks) or max(bids) < min(asks), (step, max(bids), min(asks))
        if deferred_cancels and step % 3 == 0:
            await asyncio.sleep(0)  # some cancels land, not all: new quotes meet uncancelled ones
    await engine.drain()
    assert venue.washes == [], venue.washes[:5]  # no order ever reached the venue crossing our own
    assert engine.gate.denials[DenialReason.SELF_CROSS.value] == 0, dict(engine.gate.denials)
    assert engine.gate.approvals > 5_000, dict(engine.gate.denials)  # it really quoted, all along
    assert two_sided > 2_500, two_sided


# ---- Fees on positions ---------------------------------------------------------------------------


async def test_crypto_buy_credits_quantity_less_fee_and_sells_all_of_it() -> None:
    engine = alpaca_engine()
    engine.portfolio.marks["BTC/USD"] = 50_000.0
    engine.broker.update_quote("BTC/USD", 49_999.0, 50_001.0, WEDNESDAY)
    order, denial = engine.router.submit("BTC/USD", Side.BUY, 0.1, OrderType.MARKET, None, "test")
    assert denial is None and order is not None
    await engine.sync_fills()
    held = 0.1 * (1 - 0.0025)  # the taker fee, out of the BTC bought
    assert engine.portfolio.quantity("BTC/USD") == pytest.approx(held, abs=1e-12)
    [journaled] = engine.journal.positions()
    assert journaled.quantity == pytest.approx(held, abs=1e-12)
    assert engine.journal.order(order.client_order_id).filled_quantity == pytest.approx(0.1)
    sell, denial = engine.router.submit("BTC/USD", Side.SELL, held, OrderType.MARKET, None, "test")
    assert denial is None and sell is not None
    assert sell.quantity == pytest.approx(0.09975, abs=1e-12)


def test_equity_and_simulated_fees_leave_the_quantity_whole() -> None:
    engine = make_engine()
    fill = Fill(
        fill_id="f",
        client_order_id="x",
        symbol="AAPL",
        side=Side.BUY,
        quantity=3,
        price=100.0,
        cumulative_quantity=3,
        timestamp=datetime.fromtimestamp(WEDNESDAY, UTC),
    )
    assert engine.with_fee_quantity(fill).fee_quantity == 0
    assert OrderStatus.FILLED.terminal


def test_the_journal_keeps_each_fills_fee_quantity_and_older_journals_gain_the_column(tmp_path) -> None:
    import sqlite3

    from orch.hft.journal import Journal

    path = tmp_path / "old-journal.sqlite"
    with sqlite3.connect(path) as old:  # the fills table as journals wrote it before the column
        old.execute(
            "CREATE TABLE fills (sequence INTEGER PRIMARY KEY AUTOINCREMENT, fill_id TEXT UNIQUE NOT NULL,"
            " client_order_id TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL,"
            " quantity REAL NOT NULL, price REAL NOT NULL, fee REAL NOT NULL,"
            " cumulative_quantity REAL NOT NULL, at REAL NOT NULL,"
            " realized_pnl REAL NOT NULL DEFAULT 0, trading_day TEXT)"
        )
        old.execute(
            "INSERT INTO fills VALUES (1, 'old#1', 'old', 'BTC/USD', 'buy', 1, 50000, 0, 1, 0, 0, NULL)"
        )
    journal = Journal(path)
    buy = Order(
        client_order_id="new",
        symbol="BTC/USD",
        side=Side.BUY,
        quantity=0.1,
        created_at=datetime.fromtimestamp(WEDNESDAY, UTC),
    )
    journal.record_order(buy)
    fill = Fill(
        fill_id="new#0.1",
        client_order_id="new",
        symbol="BTC/USD",
        side=Side.BUY,
        quantity=0.1,
        price=50_000.0,
        fee_quantity=0.00025,
        cumulative_quantity=0.1,
        timestamp=datetime.fromtimestamp(WEDNESDAY, UTC),
    )
    assert journal.apply_fill(fill) is not None
    journal.close()
    reopened = Journal(path)
    assert [(f.client_order_id, f.fee_quantity) for f in reopened.fills_since()] == [
        ("old", 0.0),
        ("new", pytest.approx(0.00025)),
    ]
