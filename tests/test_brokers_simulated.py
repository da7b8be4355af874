"""The simulated venue: latency, partial fills, slippage, fees, idempotency, and surviving a restart."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from orch.brokers.base import make_client_order_id, position_after_fill
from orch.brokers.simulated import SimulatedBroker, SimulatedVenueConfig
from orch.contracts.trading import Order, OrderStatus, OrderType, Side


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def order(sequence: int, side: Side = Side.BUY, quantity: float = 10, **fields) -> Order:
    return Order(
        client_order_id=make_client_order_id("sim", sequence),
        symbol="AAPL",
        side=side,
        quantity=quantity,
        created_at=datetime.now(UTC),
        **fields,
    )


def venue(path: str | Path, clock: Clock, **config) -> SimulatedBroker:
    settings = {"latency_seconds": 0.01, "max_fill_fraction": 0.5, "slippage_bps": 10, "fee_bps": 1, **config}
    broker = SimulatedBroker(str(path), SimulatedVenueConfig(**settings), clock=clock)
    broker.update_quote("AAPL", 99.0, 101.0, clock.now)
    return broker


async def test_latency_partial_fills_slippage_and_fees() -> None:
    clock = Clock()
    broker = venue(":memory:", clock, min_partial_quantity=3)
    await broker.submit(order(1))
    assert (await broker.fills_since(None))[0] == []  # latency not elapsed
    clock.now += 0.02
    fills, cursor = await broker.fills_since(None)
    assert [f.quantity for f in fills] == [5]  # half of what remains per pass
    assert fills[0].price == pytest.approx(101.0 * 1.001)  # the ask plus slippage
    assert fills[0].fee == pytest.approx(5 * 101.0 * 1.001 * 0.0001)
    fills, cursor = await broker.fills_since(cursor)
    assert [f.quantity for f in fills] == [2.5]
    fills, _ = await broker.fills_since(cursor)
    assert [(f.quantity, f.cumulative_quantity) for f in fills] == [
        (2.5, 10)
    ]  # at or below 3: the rest, whole
    assert (await broker.get_order(order(1).client_order_id)).status is OrderStatus.FILLED


async def test_limit_orders_wait_for_the_market() -> None:
    clock = Clock()
    broker = venue(":memory:", clock, max_fill_fraction=1.0)
    await broker.submit(order(1, order_type=OrderType.LIMIT, limit_price=100.0))
    clock.now += 1
    assert (await broker.fills_since(None))[0] == []
    broker.update_quote("AAPL", 98.0, 99.5, clock.now)
    fills, _ = await broker.fills_since(None)
    assert [(f.quantity, f.price) for f in fills] == [(10, 99.5)]


async def test_same_client_order_id_is_the_same_order() -> None:
    broker = venue(":memory:", Clock())
    first = await broker.submit(order(7))
    again = await broker.submit(order(7, quantity=99))
    assert again.broker_order_id == first.broker_order_id and again.quantity == 10
    assert len(broker.all_orders()) == 1


async def test_state_survives_a_new_instance(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "venue.sqlite"
    broker = venue(path, clock, max_fill_fraction=1.0)
    await broker.submit(order(1))
    broker.submit_now(order(2, side=Side.SELL, quantity=4))
    broker.flush()  # what the process does after each batch of ticks
    clock.now += 1
    await broker.fills_since(None)
    await broker.submit(order(3, quantity=2, order_type=OrderType.LIMIT, limit_price=50.0))
    # A new process opens the same venue: same orders, fills and positions; the open order still works.
    reopened = SimulatedBroker(str(path), SimulatedVenueConfig(latency_seconds=0.01), clock=clock)
    assert [o.client_order_id for o in await reopened.open_orders()] == [order(3).client_order_id]
    assert len((await reopened.fills_since(None))[0]) == 2
    (position,) = await reopened.positions()
    assert position.quantity == 6
    assert (await reopened.submit(order(1))).status is OrderStatus.FILLED  # still idempotent


def test_position_arithmetic() -> None:
    assert position_after_fill(0, 0, 0, Side.BUY, 10, 100) == (10, 100, 0)
    assert position_after_fill(10, 100, 0, Side.SELL, 4, 110) == (6, 100, 40)
    assert position_after_fill(6, 100, 40, Side.SELL, 10, 90) == (-4, 90, -20)  # through zero
    assert position_after_fill(-4, 90, -20, Side.BUY, 4, 80) == (0, 0, 20)


# ---- Day orders expire at the session's close -----------------------------------------------------

MONDAY_MIDDAY = datetime(2026, 12, 7, 17, 0, tzinfo=UTC).timestamp()  # 12:00 in New York
MONDAY_CLOSE = datetime(2026, 12, 7, 21, 0, tzinfo=UTC).timestamp()  # 16:00 in New York (winter time)
CHRISTMAS_EVE_EARLY_CLOSE = datetime(2026, 12, 24, 18, 0, tzinfo=UTC).timestamp()  # 13:00 in New York


def day_venue(path: str | Path, clock: Clock) -> SimulatedBroker:
    """The venue as orch hft builds it: equity orders are day orders, crypto's good till cancelled."""
    from orch.market.calendars import day_order_expiry

    settings = SimulatedVenueConfig(latency_seconds=0.01, slippage_bps=0, fee_bps=0)
    broker = SimulatedBroker(str(path), settings, clock=clock, day_order_expiry=day_order_expiry)
    for symbol in ("AAPL", "BTC/USD"):
        broker.update_quote(symbol, 99.0, 101.0, clock.now)
    return broker


def resting(sequence: int, symbol: str = "AAPL") -> Order:
    """A buy limit well below the market: it rests until the close."""
    return order(sequence, order_type=OrderType.LIMIT, limit_price=90.0).model_copy(update={"symbol": symbol})


@pytest.mark.parametrize(
    ("accepted_at", "close"),
    [(MONDAY_MIDDAY, MONDAY_CLOSE), (CHRISTMAS_EVE_EARLY_CLOSE - 3600, CHRISTMAS_EVE_EARLY_CLOSE)],
    ids=["regular close", "early close"],
)
async def test_a_day_order_open_at_the_close_expires_and_crypto_does_not(
    tmp_path: Path, accepted_at: float, close: float
) -> None:
    clock = Clock()
    clock.now = accepted_at
    broker = day_venue(tmp_path / "venue.sqlite", clock)
    await broker.submit(resting(1))
    await broker.submit(resting(2, "BTC/USD"))
    equity_id, crypto_id = resting(1).client_order_id, resting(2).client_order_id

    clock.now = close - 1  # the last second of the session: still open
    assert {o.client_order_id for o in await broker.open_orders()} == {equity_id, crypto_id}
    clock.now = close  # at the close
    assert [o.client_order_id for o in await broker.open_orders()] == [crypto_id]
    assert (await broker.get_order(equity_id)).status is OrderStatus.EXPIRED
    assert (await broker.get_order(crypto_id)).status is OrderStatus.ACCEPTED
    # A quote after the close that would have filled it changes nothing: expired is final.
    broker.update_quote("AAPL", 80.0, 81.0, clock.now)
    clock.now += 60
    assert (await broker.fills_since(None))[0] == []
    # The venue outlives the process: a new one on the same file knows it expired.
    reopened = day_venue(tmp_path / "venue.sqlite", clock)
    assert (await reopened.get_order(equity_id)).status is OrderStatus.EXPIRED


async def test_an_order_accepted_while_closed_waits_for_the_next_session_s_close(tmp_path: Path) -> None:
    """Alpaca queues a day order sent outside the session for the next one; it expires at that close."""
    clock = Clock()
    clock.now = datetime(2026, 12, 5, 15, 0, tzinfo=UTC).timestamp()  # Saturday
    broker = day_venue(tmp_path / "venue.sqlite", clock)
    await broker.submit(resting(1))
    clock.now = MONDAY_CLOSE - 1
    assert [o.status for o in await broker.open_orders()] == [OrderStatus.ACCEPTED]
    # A venue restarted before the close still expires it at the close.
    reopened = day_venue(tmp_path / "venue.sqlite", clock)
    clock.now = MONDAY_CLOSE
    assert await reopened.open_orders() == []
    assert (await reopened.get_order(resting(1).client_order_id)).status is OrderStatus.EXPIRED


async def test_a_partly_filled_day_order_keeps_its_fills_when_it_expires(tmp_path: Path) -> None:
    clock = Clock()
    clock.now = MONDAY_MIDDAY
    broker = day_venue(tmp_path / "venue.sqlite", clock)
    broker.config = SimulatedVenueConfig(
        latency_seconds=0.01, max_fill_fraction=0.5, slippage_bps=0, fee_bps=0
    )
    await broker.submit(order(1))  # a market order: half fills on the first pass
    clock.now += 1
    fills, _ = await broker.fills_since(None)
    assert [f.quantity for f in fills] == [5]
    clock.now = MONDAY_CLOSE
    expired = await broker.get_order(order(1).client_order_id)
    assert (expired.status, expired.filled_quantity) == (OrderStatus.EXPIRED, 5)
    assert [(p.symbol, p.quantity) for p in await broker.positions()] == [("AAPL", 5)]
