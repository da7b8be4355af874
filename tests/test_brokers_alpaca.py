"""The Alpaca broker adapter (alpaca-py's TradingClient) against the project's fake Alpaca server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from orch.brokers.alpaca import AlpacaBroker, crypto_symbol, retry_at
from orch.brokers.base import BrokerError, BrokerTimeout, CredentialsRefused, make_client_order_id
from orch.contracts.instruments import AssetClass, FeeAsset, TimeInForce, TradingCalendar
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


# ---- Alpaca's rules: assets, time in force, expiry, fees, the budget ---------------------------------

MONDAY_SESSION = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)  # 10:00 in New York, a regular session


async def test_instrument_rules_come_from_alpacas_assets_endpoint() -> None:
    with FakeAlpacaServer(non_fractionable_symbols=frozenset({"BRK.A"})) as server:
        server.fake.set_price("BRK.A", 700_000)
        broker = AlpacaBroker(server.key, server.secret, url_override=server.trading_url, timeout_seconds=2.0)
        rules = await broker.instrument_rules(["BTC/USD", "AAPL", "BRK.A"])
        asset_requests = [path for _, path, _ in trading_requests(server) if path.startswith("/v2/assets")]
        await broker.instrument_rules(["BTC/USD"])  # remembered: not asked again
        assert [path for _, path, _ in trading_requests(server) if path.startswith("/v2/assets")] == (
            asset_requests
        )
    btc, aapl, whole = rules["BTC/USD"], rules["AAPL"], rules["BRK.A"]
    # As the fake publishes BTC/USD: min_order_size, min_trade_increment, price_increment.
    assert (btc.asset_class, btc.min_quantity, btc.quantity_increment, btc.price_increment) == (
        AssetClass.CRYPTO,
        0.0001,
        0.0001,
        1.0,
    )
    assert btc.time_in_force == (TimeInForce.GTC, TimeInForce.IOC)
    assert (btc.fee.maker_bps, btc.fee.taker_bps, btc.fee.charged_in) == (15, 25, FeeAsset.PROCEEDS)
    assert btc.min_notional == 10 and btc.min_notional_sides == {Side.BUY} and not btc.shortable
    assert btc.calendar is TradingCalendar.ALWAYS
    # Equities: sub-penny bands, fractions only in market day orders, whole shares where not fractionable.
    assert (aapl.price_increment, aapl.sub_dollar_price_increment) == (0.01, 0.0001)
    assert aapl.fractionable and aapl.fractional_order_types == {OrderType.MARKET}
    assert aapl.default_time_in_force is TimeInForce.DAY and aapl.calendar is TradingCalendar.XNYS
    assert aapl.fee.taker_bps == 0 and aapl.shortable
    assert not whole.fractionable and whole.round_quantity(2.7) == 2


async def test_orders_go_with_their_rules_default_time_in_force(
    broker: AlpacaBroker, fake: FakeAlpacaServer
) -> None:
    await broker.submit(order(20, "BTC/USD", quantity=0.01, order_type=OrderType.LIMIT, limit_price=1_000))
    await broker.submit(order(21, "AAPL", quantity=1, order_type=OrderType.LIMIT, limit_price=50))
    assert {o["symbol"]: o["time_in_force"] for o in fake.fake.orders()} == {"BTC/USD": "gtc", "AAPL": "day"}


async def test_a_day_order_alpaca_expired_is_expired_not_cancelled() -> None:
    with FakeAlpacaServer(clock_start=MONDAY_SESSION, clock_frozen=True) as server:
        server.fake.set_price("AAPL", 100)
        broker = AlpacaBroker(server.key, server.secret, url_override=server.trading_url, timeout_seconds=2.0)
        resting = await broker.submit(
            order(22, "AAPL", quantity=1, order_type=OrderType.LIMIT, limit_price=50)
        )
        server.fake.set_clock(MONDAY_SESSION.replace(hour=22), ticking=False)  # past the 16:00 close
        expired = await broker.get_order(resting.client_order_id)
    assert expired.status is OrderStatus.EXPIRED  # was CANCELLED: reconciliation saw a difference


async def test_crypto_fills_carry_the_fee_alpaca_took_taker_or_maker(
    broker: AlpacaBroker, fake: FakeAlpacaServer
) -> None:
    fake.fake.set_fill_policy(FillPolicy.immediate())
    bid, ask = (float(side) for side in fake.fake.prices.quote("BTC/USD"))
    broker.update_quote("BTC/USD", bid, ask, time.time())  # what orch hft's stream last showed
    taker = await broker.submit(order(23, "BTC/USD", quantity=0.04))  # a market order takes
    crossing = await broker.submit(
        order(24, "BTC/USD", quantity=0.04, order_type=OrderType.LIMIT, limit_price=float(int(ask) + 1))
    )  # a limit buy above the ask takes too
    fake.fake.set_fill_policy(FillPolicy.manual())
    resting = await broker.submit(
        order(25, "BTC/USD", quantity=0.04, order_type=OrderType.LIMIT, limit_price=float(int(bid) - 100))
    )
    fake.fake.fill_order(resting.broker_order_id)  # it rested, then filled: maker
    fills, _ = await broker.fills_since(None)
    fee_by_order = {fill.client_order_id: fill.fee_quantity for fill in fills}
    assert fee_by_order == pytest.approx(
        {taker.client_order_id: 0.0001, crossing.client_order_id: 0.0001, resting.client_order_id: 0.00006}
    )
    # What the journal will hold is what Alpaca holds: bought less the fees.
    (position,) = await broker.positions()
    assert position.quantity == pytest.approx(0.12 - sum(fee_by_order.values()), abs=1e-12)


async def test_a_requote_the_budget_has_no_room_for_is_not_admitted_and_is_counted(
    fake: FakeAlpacaServer,
) -> None:
    from orch.brokers.budget import RequestBudget

    broker = AlpacaBroker(
        fake.key, fake.secret, url_override=fake.trading_url, timeout_seconds=2.0, budget=RequestBudget(4)
    )
    requote = order(26, "BTC/USD", quantity=0.01, order_type=OrderType.LIMIT, limit_price=1_000, source="mm")
    admitted = [broker.admits(requote.model_copy(update={"client_order_id": f"q{i}"})) for i in range(4)]
    assert admitted[0] and not admitted[-1], admitted  # a quarter of the burst stays for cancels
    assert broker.request_budget().requotes_dropped == admitted.count(False)
    assert broker.admits(order(27, "BTC/USD", quantity=0.01))  # anything else waits its turn instead


async def test_a_dropped_requote_never_reaches_the_journal(fake: FakeAlpacaServer) -> None:
    from orch.brokers.budget import RequestBudget
    from orch.hft.config import HftSettings
    from orch.hft.engine import Engine
    from orch.hft.journal import Journal

    # Alpaca's budget: a burst of 19 requests, of which a requote leaves 4 for cancels.
    broker = AlpacaBroker(
        fake.key, fake.secret, url_override=fake.trading_url, timeout_seconds=2.0, budget=RequestBudget(190)
    )
    settings = HftSettings(symbols=["BTC/USD"], market_making=False, arbitrage=False)
    engine = Engine(settings, broker, Journal(":memory:"))
    await engine.load_instrument_rules()
    engine.gate.reconciled = True
    engine.gate.resume("test")
    engine.portfolio.marks["BTC/USD"] = 60_000.0
    answers = [
        engine.router.submit("BTC/USD", Side.BUY, 0.001, OrderType.LIMIT, 50_000.0 - step, "mm")
        for step in range(30)
    ]
    await engine.drain()
    sent = [order.client_order_id for order, _ in answers if order is not None]
    dropped = broker.request_budget().requotes_dropped
    assert sent and dropped and len(sent) + dropped == 30, answers
    journaled = {order.client_order_id: order.status for order in engine.journal.all_orders()}
    # Only what was sent was written, and none of it rejected (each drop was a rejected order before).
    assert sorted(journaled) == sorted(sent)
    assert OrderStatus.REJECTED not in journaled.values(), journaled
    assert sorted(o["client_order_id"] for o in fake.fake.orders()) == sorted(sent)


async def test_polling_past_its_share_does_not_starve_requotes() -> None:
    from orch.brokers.budget import RequestBudget, RequestPriority

    budget = RequestBudget(190)  # a burst of 19; polling at most 95 a minute, a burst of 9
    polls = [asyncio.create_task(budget.take(RequestPriority.ROUTINE)) for _ in range(12)]
    await asyncio.sleep(0)
    assert budget.waiting == 3  # polling past its own share waits for it, not for the shared bucket
    # The shared bucket still has room (19 - 9): a requote goes, as polling could not use that room.
    assert budget.try_take(RequestPriority.DROPPABLE), budget.usage()
    for poll in polls:
        poll.cancel()
