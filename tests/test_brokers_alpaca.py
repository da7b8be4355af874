"""The Alpaca broker adapter (alpaca-py's TradingClient) against the project's fake Alpaca server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from orch.brokers.alpaca import AlpacaBroker, crypto_symbol
from orch.brokers.base import BrokerError, BrokerTimeout, make_client_order_id
from orch.contracts.trading import Order, OrderStatus, OrderType, Side
from orch.fake_alpaca.broker import FillPolicy
from orch.fake_alpaca.server import FakeAlpacaServer


@pytest.fixture
def fake() -> Iterator[FakeAlpacaServer]:
    with FakeAlpacaServer(fill_policy=FillPolicy.manual()) as server:
        server.fake.set_price("AAPL", 100)
        server.fake.set_price("BTC/USD", 60_000)
        yield server


@pytest.fixture
def broker(fake: FakeAlpacaServer) -> AlpacaBroker:
    return AlpacaBroker(fake.key, fake.secret, url_override=fake.trading_url, timeout_seconds=2.0)


def order(sequence: int, symbol: str = "AAPL", side: Side = Side.BUY, quantity: float = 3, **fields) -> Order:
    return Order(
        client_order_id=make_client_order_id("acct", sequence),
        symbol=symbol,
        side=side,
        quantity=quantity,
        created_at=datetime.now(UTC),
        **fields,
    )


async def test_submit_is_idempotent_on_client_order_id(broker: AlpacaBroker, fake: FakeAlpacaServer) -> None:
    first = await broker.submit(order(1))
    again = await broker.submit(order(1))  # a retry after a timeout, say
    assert first.broker_order_id == again.broker_order_id
    assert [o["client_order_id"] for o in fake.fake.orders()] == [first.client_order_id]
    assert first.status is OrderStatus.ACCEPTED
    assert await broker.get_order("acct-unknown") is None


async def test_fills_come_back_cumulatively(broker: AlpacaBroker, fake: FakeAlpacaServer) -> None:
    submitted = await broker.submit(order(2, quantity=4))
    fake.fake.fill_order(submitted.broker_order_id, qty=1, price=100)
    fills, _ = await broker.fills_since(None)
    assert [(f.cumulative_quantity, f.price) for f in fills] == [(1, 100)]
    fake.fake.fill_order(submitted.broker_order_id, qty=3, price=104)
    fills, _ = await broker.fills_since(None)
    assert [(f.cumulative_quantity, f.price) for f in fills] == [(4, 103)]
    (position,) = await broker.positions()
    assert (position.symbol, position.quantity, position.average_price) == ("AAPL", 4, 103)
    assert (await broker.get_order(submitted.client_order_id)).status is OrderStatus.FILLED


async def test_cancel_limit_and_crypto(broker: AlpacaBroker, fake: FakeAlpacaServer) -> None:
    resting = await broker.submit(
        order(3, "BTC/USD", quantity=0.5, order_type=OrderType.LIMIT, limit_price=1_000)
    )
    assert [o.client_order_id for o in await broker.open_orders()] == [resting.client_order_id]
    cancelled = await broker.cancel(resting.client_order_id)
    assert cancelled.status is OrderStatus.CANCELLED
    assert await broker.open_orders() == []
    account = await broker.account()
    assert account.cash > 0 and account.equity > 0


async def test_a_hanging_broker_times_out_without_blocking(
    broker: AlpacaBroker, fake: FakeAlpacaServer
) -> None:
    fake.fake.inject_fault("trading", "hang")
    started = time.monotonic()
    with pytest.raises(BrokerTimeout):
        await broker.account()
    assert time.monotonic() - started < 5
    fake.fake.clear_faults()


async def test_server_errors_are_retryable_broker_errors(
    broker: AlpacaBroker, fake: FakeAlpacaServer
) -> None:
    fake.fake.inject_fault("trading", "error", status=500)
    with pytest.raises(BrokerError):
        await broker.positions()
    fake.fake.clear_faults()


def test_crypto_position_symbols() -> None:
    assert crypto_symbol("BTCUSD", "crypto") == "BTC/USD"
    assert crypto_symbol("AAPL", "us_equity") == "AAPL"
