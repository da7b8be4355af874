"""The Alpaca broker adapter (alpaca-py's TradingClient) against the project's fake Alpaca server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from orch.brokers.alpaca import AlpacaBroker, crypto_symbol, retry_at
from orch.brokers.base import BrokerError, BrokerTimeout, CredentialsRefused, make_client_order_id
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


async def wait_for_status(broker: AlpacaBroker, client_order_id: str, status: OrderStatus) -> Order:
    """Poll Alpaca (bounded) until the order has `status`; fail with the status it kept."""
    seen = []
    for _ in range(100):
        seen.append(await broker.get_order(client_order_id))
        if seen[-1].status is status:
            return seen[-1]
        await asyncio.sleep(0.02)
    raise AssertionError(f"{client_order_id} never became {status}: last {seen[-1].status}")


async def test_cancel_limit_and_crypto(broker: AlpacaBroker, fake: FakeAlpacaServer) -> None:
    resting = await broker.submit(
        order(3, "BTC/USD", quantity=0.5, order_type=OrderType.LIMIT, limit_price=1_000)
    )
    assert [o.client_order_id for o in await broker.open_orders()] == [resting.client_order_id]
    asked = await broker.cancel(resting.client_order_id)
    # Alpaca answers 204: the cancel is on its way, the order still open and fillable.
    assert asked.status is OrderStatus.PENDING_CANCEL
    assert [o.status for o in await broker.open_orders()] == [OrderStatus.PENDING_CANCEL]
    await wait_for_status(broker, resting.client_order_id, OrderStatus.CANCELLED)
    assert await broker.open_orders() == []
    account = await broker.account()
    assert account.cash > 0 and account.equity > 0


async def test_a_fill_while_the_cancel_is_pending_is_reported(
    broker: AlpacaBroker, fake: FakeAlpacaServer
) -> None:
    resting = await broker.submit(
        order(4, "BTC/USD", quantity=0.5, order_type=OrderType.LIMIT, limit_price=1_000)
    )
    assert (await broker.cancel(resting.client_order_id)).status is OrderStatus.PENDING_CANCEL
    fake.fake.fill_order(resting.broker_order_id, qty=0.5, price=1_000)  # before the cancel lands
    filled = await wait_for_status(broker, resting.client_order_id, OrderStatus.FILLED)
    assert filled.filled_quantity == pytest.approx(0.5)
    fills, _ = await broker.fills_since(None)
    assert [(f.client_order_id, f.cumulative_quantity) for f in fills] == [(resting.client_order_id, 0.5)]


def trading_requests(fake: FakeAlpacaServer) -> list[tuple[str, str, int]]:
    return [(r.method, r.path, r.status) for r in fake.fake.served_responses() if r.path.startswith("/v2/")]


async def test_a_429_holds_the_budget_and_is_retried_once_by_one_layer(
    broker: AlpacaBroker, fake: FakeAlpacaServer
) -> None:
    fake.fake.inject_fault("trading", "error", status=429, count=1)
    account = await broker.account()
    assert account.equity > 0
    # One 429, then one success: alpaca-py did not retry on its own (it would have, 3 s later,
    # and the budget would never have heard of the 429).
    assert trading_requests(fake) == [("GET", "/v2/account", 429), ("GET", "/v2/account", 200)]
    assert broker.budget.usage().held_by_broker == 1


def test_retry_at_reads_the_rate_limit_reset_alpaca_sends() -> None:
    from alpaca.common.exceptions import APIError
    from alpaca.trading.client import TradingClient

    with FakeAlpacaServer(rate_limit_per_minute=1) as server:
        client = TradingClient(server.key, server.secret, url_override=server.trading_url)
        client._retry = 0
        client.get_account()
        with pytest.raises(APIError) as refused:
            client.get_account()
    assert refused.value.status_code == 429
    assert retry_at(refused.value) == float(refused.value.response.headers["X-RateLimit-Reset"])


async def test_refused_credentials_are_never_retried(fake: FakeAlpacaServer) -> None:
    broker = AlpacaBroker(fake.key, "wrong-secret", url_override=fake.trading_url, timeout_seconds=2.0)
    reasons: list[str] = []
    broker.on_credentials_refused(reasons.append)
    with pytest.raises(CredentialsRefused, match="broker refused the credentials"):
        await broker.account()
    with pytest.raises(CredentialsRefused):
        await broker.positions()
    assert reasons == ["broker refused the credentials (HTTP 401)"]
    assert trading_requests(fake) == [("GET", "/v2/account", 401)]  # the second call sent nothing


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
