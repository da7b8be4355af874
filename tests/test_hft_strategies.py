"""Tier 1 and tier 2 strategies and the position manager, on an engine with injected clocks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orch.contracts.trading import OrderStatus, Side, StrategyKind, StrategyPlan
from orch.hft.strategies import (
    MarketMaker,
    TrackedPlan,
    breakout_level,
    exit_reason,
    market_maker_quotes,
    trend_direction,
    zscore,
)
from orch.hft.ticks import QUOTE, Tick
from tests.test_hft_risk import SATURDAY, WEDNESDAY, make_engine


def plan(
    symbol: str = "AAPL", kind: StrategyKind = StrategyKind.GENERIC, side: Side = Side.BUY, **fields
) -> StrategyPlan:
    values = {
        "plan_id": f"p-{symbol}-{kind.value}",
        "symbol": symbol,
        "strategy": kind,
        "side": side,
        "quantity": 5,
        "stop_loss": 95.0 if side is Side.BUY else 105.0,
        "take_profit": 110.0 if side is Side.BUY else 90.0,
        "valid_until": datetime.fromtimestamp(WEDNESDAY, UTC) + timedelta(days=30),
        **fields,
    }
    return StrategyPlan(**values)


def quote(symbol: str, mid: float, venue: int = 0, received_ns: int = 10**12) -> Tick:
    return Tick(QUOTE, venue, symbol, mid * 0.9999, mid * 1.0001, mid, 10, WEDNESDAY, received_ns)


async def enter(engine, the_plan: StrategyPlan, now: float = WEDNESDAY) -> TrackedPlan:
    """Take a plan, let tier 2 enter it, and let the venue fill the entry."""
    engine.broker.update_quote(the_plan.symbol, 99.99, 100.01, now)
    assert engine.tier2.accept(the_plan, now) is None
    engine.tier2.evaluate(now)
    state = engine.tier2.plans[the_plan.plan_id]
    assert state.status == "entering"
    await engine.sync_fills()
    engine.tier2.evaluate(now)
    assert state.status == "open"
    return state


# ---- Market making -------------------------------------------------------------------------------


def test_quotes_skew_against_inventory() -> None:
    flat = market_maker_quotes(100.0, 0, 1, 5, 1, 10)
    long = market_maker_quotes(100.0, 5, 1, 5, 1, 10)
    assert flat[0] < 100.0 < flat[1]
    assert long[0] < flat[0] and long[1] < flat[1]  # long inventory: both quotes lower, to sell


def test_quotes_stop_at_the_inventory_limit() -> None:
    assert market_maker_quotes(100.0, 10, 1, 5, 1, 10)[0] is None
    assert market_maker_quotes(100.0, -10, 1, 5, 1, 10)[1] is None
    bid, ask = market_maker_quotes(100.0, 9, 1, 5, 1, 10)
    assert bid is not None and ask is not None


async def test_market_maker_only_sells_at_its_inventory_limit() -> None:
    engine = make_engine()
    engine.settings.mm_symbols = ["AAPL"]
    engine.settings.mm_inventory_limit = 10
    maker = MarketMaker(engine)
    engine.portfolio.set_position("AAPL", 10, 100.0, 0.0, None)
    maker.on_tick(quote("AAPL", 100.0))
    sides = [o.side for o in engine.portfolio.open_orders.values()]
    assert sides == [Side.SELL]
    engine.portfolio.set_position("AAPL", 0, 0.0, 0.0, None)
    maker.on_tick(quote("AAPL", 101.0, received_ns=10**13))
    await engine.drain()
    assert sorted(o.side.value for o in engine.portfolio.open_orders.values()) == ["buy", "sell"]


# ---- Tier 2 and the weekend rule -----------------------------------------------------------------


async def test_generic_plan_enters_and_is_journaled() -> None:
    engine = make_engine()
    state = await enter(engine, plan())
    assert engine.portfolio.quantity("AAPL") == 5
    assert engine.portfolio.positions["AAPL"].plan_id == state.plan.plan_id
    assert [s for _, s in engine.journal.plans()] == ["open"]


async def test_weekend_only_crypto_enters() -> None:
    engine = make_engine(wall=SATURDAY)
    engine.portfolio.marks["BTC/USD"] = 100.0
    stock, coin = plan("AAPL"), plan("BTC/USD")
    for p in (stock, coin):
        engine.broker.update_quote(p.symbol, 99.99, 100.01, SATURDAY)
        assert engine.tier2.accept(p, SATURDAY) is None
    engine.tier2.evaluate(SATURDAY)
    assert engine.tier2.plans[stock.plan_id].status == "waiting"
    assert engine.tier2.plans[coin.plan_id].status == "entering"
    assert "market_closed" not in engine.gate.denials  # tier 2 did not even propose it (was weekend_equity)


def test_plans_with_inconsistent_levels_are_refused() -> None:
    engine = make_engine()
    assert "stop_loss" in engine.tier2.accept(plan(stop_loss=120.0), WEDNESDAY)
    assert "no market data" in engine.tier2.accept(plan("XYZ"), WEDNESDAY)
    expired = plan(valid_until=datetime.fromtimestamp(WEDNESDAY - 60, UTC))
    assert "past" in engine.tier2.accept(expired, WEDNESDAY)


def test_signals() -> None:
    rising = [float(i) for i in range(30)]
    assert trend_direction(rising, 5, 20) == 1
    assert trend_direction(rising[::-1], 5, 20) == -1
    assert zscore([*([100.0, 101.0] * 10), 90.0], 20) < -1.5
    assert breakout_level([*([100.0, 101.0] * 10), 105.0], 20, Side.BUY) == 101.0
    assert breakout_level([*([100.0, 101.0] * 10), 100.5], 20, Side.BUY) is None


# ---- The position manager ------------------------------------------------------------------------


async def test_stop_loss_exit() -> None:
    engine = make_engine()
    state = await enter(engine, plan())
    engine.portfolio.marks["AAPL"] = 94.0
    engine.broker.update_quote("AAPL", 93.99, 94.01, WEDNESDAY)
    engine.position_manager.evaluate(WEDNESDAY)
    assert state.status == "exiting" and state.exit_reason == "stop_loss"
    exit_order = engine.order(state.exit_order)
    assert exit_order.reduce_only and exit_order.side is Side.SELL and exit_order.quantity == 5
    await engine.sync_fills()
    engine.position_manager.evaluate(WEDNESDAY)
    assert engine.portfolio.quantity("AAPL") == 0
    assert state.status == "closed"
    assert engine.journal.order(state.exit_order).status is OrderStatus.FILLED


async def test_take_profit_exit_of_a_short() -> None:
    engine = make_engine()
    state = await enter(engine, plan(side=Side.SELL))
    assert engine.portfolio.quantity("AAPL") == -5
    engine.portfolio.marks["AAPL"] = 89.0
    engine.position_manager.evaluate(WEDNESDAY)
    assert state.exit_reason == "take_profit"
    assert engine.order(state.exit_order).side is Side.BUY


async def test_no_exit_inside_the_band() -> None:
    engine = make_engine()
    state = await enter(engine, plan())
    engine.portfolio.marks["AAPL"] = 101.0
    engine.position_manager.evaluate(WEDNESDAY)
    assert state.status == "open"


def test_strategy_exits() -> None:
    trend = TrackedPlan(plan(kind=StrategyKind.TREND))
    falling = [float(110 - i * 0.1) for i in range(30)]
    assert exit_reason(trend, 100.0, falling, 5, 20) == "trend_reversal"
    reversion = TrackedPlan(plan(kind=StrategyKind.MEAN_REVERSION))
    assert exit_reason(reversion, 100.0, [*([99.0, 101.0] * 10), 100.5], 5, 20) == "returned_to_mean"
    breakout = TrackedPlan(plan(kind=StrategyKind.BREAKOUT), breakout_level=101.0)
    assert exit_reason(breakout, 100.5, [], 5, 20) == "failed_breakout"
    assert exit_reason(breakout, 102.0, [], 5, 20) is None
