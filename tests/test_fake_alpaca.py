"""The fake Alpaca server, driven by alpaca-py itself: trading, market data, the stream, faults.

Every test's server records what it answers, and the `server` fixture checks each answer against
the response schemas copied from Alpaca's OpenAPI specs (`orch/fake_alpaca/spec_schemas.json`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import msgpack
import pytest
import websockets
from alpaca.common.exceptions import APIError
from alpaca.data.historical import CryptoHistoricalDataClient, StockHistoricalDataClient
from alpaca.data.live import StockDataStream
from alpaca.data.requests import (
    CryptoBarsRequest,
    CryptoLatestQuoteRequest,
    StockBarsRequest,
    StockLatestBarRequest,
    StockLatestQuoteRequest,
    StockLatestTradeRequest,
)
from alpaca.data.timeframe import TimeFrame, TimeFrameUnit
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, OrderStatus, QueryOrderStatus, TimeInForce
from alpaca.trading.requests import (
    ClosePositionRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
)

from orch.fake_alpaca import FakeAlpacaServer, FakeAlpacaSubprocess, FillPolicy
from orch.fake_alpaca.spec_schemas import load, spec_violations
from orch.market.simulated import SimulatedMarket

# A Friday evening after the close: every equity and crypto bar of that day has ended.
FRIDAY_EVENING = datetime(2025, 3, 7, 22, 0, tzinfo=UTC)
# Monday 7 December 2026, 10:00 in New York: the NYSE is in session, whatever day the tests run.
MONDAY_SESSION = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)
SATURDAY_NOON = datetime(2026, 12, 5, 17, 0, tzinfo=UTC)
SPEC = load()


@pytest.fixture
def server() -> Iterator[FakeAlpacaServer]:
    with FakeAlpacaServer(clock_start=MONDAY_SESSION) as running:
        yield running
        problems = spec_violations(SPEC, running.fake.served_responses())
    assert not problems, "answers that break Alpaca's spec:\n" + "\n".join(problems)


@pytest.fixture
def trading(server: FakeAlpacaServer) -> TradingClient:
    return TradingClient(server.key, server.secret, paper=True, url_override=server.trading_url)


def market_buy(symbol: str, qty: float, **extra: Any) -> MarketOrderRequest:
    return MarketOrderRequest(
        symbol=symbol, qty=qty, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, **extra
    )


def limit_buy(symbol: str, qty: float, limit_price: float, **extra: Any) -> LimitOrderRequest:
    return LimitOrderRequest(
        symbol=symbol,
        qty=qty,
        side=OrderSide.BUY,
        time_in_force=TimeInForce.GTC,
        limit_price=limit_price,
        **extra,
    )


def wait_for(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout}s")


# ---- Orders and positions ------------------------------------------------------------------------


def test_market_order_fills_at_the_live_price_and_moves_cash_and_position(server, trading) -> None:
    server.fake.set_price("AAPL", 150)
    order = trading.submit_order(market_buy("AAPL", 10, client_order_id="buy-aapl-1"))

    assert order.status == OrderStatus.FILLED
    assert (order.client_order_id, float(order.filled_qty), float(order.filled_avg_price)) == (
        "buy-aapl-1",
        10,
        150,
    )
    position = trading.get_open_position("AAPL")
    assert (position.qty, position.avg_entry_price, position.side.value) == ("10", "150", "long")

    server.fake.set_price("AAPL", 155)
    account = trading.get_account()
    assert Decimal(account.cash) == Decimal(100_000 - 1_500)
    assert Decimal(account.long_market_value) == Decimal(1_550)
    assert Decimal(account.equity) == Decimal(100_050)
    assert trading.get_open_position("AAPL").unrealized_pl == "50"


def test_limit_orders_wait_until_the_price_crosses(server, trading) -> None:
    server.fake.set_price("MSFT", 400)
    buy = trading.submit_order(
        LimitOrderRequest(
            symbol="MSFT", qty=5, side=OrderSide.BUY, time_in_force=TimeInForce.GTC, limit_price=390
        )
    )
    assert buy.status == OrderStatus.NEW
    # An open buy holds buying power (twice the equity: a Reg T margin account).
    assert Decimal(trading.get_account().buying_power) == Decimal(200_000 - 5 * 390)

    server.fake.set_price("MSFT", 395)
    assert trading.get_order_by_id(buy.id).status == OrderStatus.NEW
    server.fake.set_price("MSFT", 389.5)
    filled = trading.get_order_by_id(buy.id)
    assert (filled.status, filled.filled_avg_price) == (OrderStatus.FILLED, "389.5")

    sell = trading.submit_order(
        LimitOrderRequest(
            symbol="MSFT", qty=5, side=OrderSide.SELL, time_in_force=TimeInForce.GTC, limit_price=420
        )
    )
    assert trading.get_open_position("MSFT").qty_available == "0"  # held by the open sell
    server.fake.set_price("MSFT", 421)
    assert trading.get_order_by_id(sell.id).status == OrderStatus.FILLED
    assert trading.get_all_positions() == []
    assert Decimal(trading.get_account().cash) == Decimal(100_000) + 5 * (Decimal(421) - Decimal("389.5"))


def test_orders_list_get_and_cancel(server, trading) -> None:
    server.fake.set_price("AAPL", 100)
    filled = trading.submit_order(market_buy("AAPL", 1, client_order_id="a-1"))
    resting = [
        trading.submit_order(limit_buy("AAPL", 1, 90 - i, client_order_id=f"rest-{i}")) for i in range(3)
    ]

    open_ids = [o.id for o in trading.get_orders()]  # default: open, newest first
    assert open_ids == [o.id for o in reversed(resting)]
    closed = trading.get_orders(GetOrdersRequest(status=QueryOrderStatus.CLOSED))
    assert [o.id for o in closed] == [filled.id]
    assert len(trading.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, limit=2, nested=True))) == 2
    assert trading.get_order_by_client_id("rest-1").id == resting[1].id

    trading.cancel_order_by_id(resting[0].id)
    assert trading.get_order_by_id(resting[0].id).status == OrderStatus.PENDING_CANCEL
    wait_for(lambda: trading.get_order_by_id(resting[0].id).status == OrderStatus.CANCELED)
    with pytest.raises(APIError) as not_cancelable:
        trading.cancel_order_by_id(filled.id)
    assert not_cancelable.value.status_code == 422

    cancelled = trading.cancel_orders()
    assert sorted(str(c.id) for c in cancelled) == sorted(str(o.id) for o in resting[1:])
    assert all(c.status == 200 for c in cancelled)
    wait_for(lambda: trading.get_orders() == [])

    with pytest.raises(APIError) as missing:
        trading.get_order_by_id("00000000-0000-4000-8000-000000000000")
    assert missing.value.status_code == 404


def test_a_duplicate_client_order_id_is_refused_and_creates_nothing(server, trading) -> None:
    trading.submit_order(market_buy("AAPL", 1, client_order_id="once"))
    with pytest.raises(APIError) as refused:
        trading.submit_order(market_buy("AAPL", 1, client_order_id="once"))
    assert refused.value.status_code == 422
    assert (refused.value.code, refused.value.message) == (40010001, "client_order_id must be unique")
    assert len(server.fake.orders()) == 1
    assert trading.get_open_position("AAPL").qty == "1"


def test_orders_alpaca_would_refuse(server, trading) -> None:
    server.fake.set_price("AAPL", 100)
    with pytest.raises(APIError) as poor:
        trading.submit_order(market_buy("AAPL", 2_001))  # buying power: twice the $100,000 equity
    assert (poor.value.status_code, poor.value.message) == (403, "insufficient buying power")
    with pytest.raises(APIError) as unknown:
        trading.submit_order(market_buy("NOSUCH", 1))
    assert unknown.value.status_code == 422
    with pytest.raises(APIError) as crypto_short:
        trading.submit_order(
            MarketOrderRequest(symbol="BTC/USD", qty=1, side=OrderSide.SELL, time_in_force=TimeInForce.GTC)
        )
    assert crypto_short.value.status_code == 403
    assert server.fake.orders() == []


def test_positions_close_in_part_and_all_at_once(server, trading) -> None:
    server.fake.set_price("AAPL", 100)
    server.fake.set_price("BTC/USD", 50_000)
    trading.submit_order(market_buy("AAPL", 10))
    trading.submit_order(
        MarketOrderRequest(symbol="BTC/USD", qty=0.5, side=OrderSide.BUY, time_in_force=TimeInForce.GTC)
    )
    trading.submit_order(  # a short
        MarketOrderRequest(symbol="TSLA", qty=3, side=OrderSide.SELL, time_in_force=TimeInForce.DAY)
    )
    by_symbol = {p.symbol: p for p in trading.get_all_positions()}
    assert set(by_symbol) == {"AAPL", "BTCUSD", "TSLA"}  # Alpaca drops the slash in position symbols
    assert (by_symbol["TSLA"].side.value, by_symbol["TSLA"].qty) == ("short", "-3")
    assert trading.get_open_position(by_symbol["AAPL"].asset_id).symbol == "AAPL"

    partial = trading.close_position("AAPL", ClosePositionRequest(qty="4"))
    assert (partial.side, partial.qty, partial.status) == (OrderSide.SELL, "4", OrderStatus.FILLED)
    assert trading.get_open_position("AAPL").qty == "6"

    closed = trading.close_all_positions(cancel_orders=True)
    assert sorted(c.symbol for c in closed) == ["AAPL", "BTCUSD", "TSLA"]
    assert trading.get_all_positions() == []
    with pytest.raises(APIError) as gone:
        trading.get_open_position("AAPL")
    assert gone.value.status_code == 404
    account = trading.get_account()
    # No price moved: the equity round trips cost nothing; the crypto one paid the 0.25 % taker fee
    # twice, in bitcoin on the way in (0.5 bought, 0.49875 held) and in dollars on the way out.
    assert account.cash == account.equity == str(round(100_000 - 25_000 + 0.49875 * 50_000 * 0.9975, 2))


def test_partial_fills_keep_an_order_open_for_a_while(server, trading) -> None:
    server.fake.set_price("AAPL", 100)
    server.fake.set_fill_policy(FillPolicy.partial(pieces=3, interval_seconds=0.3))
    order = trading.submit_order(market_buy("AAPL", 10, client_order_id="slow"))

    assert (order.status, order.filled_qty) == (OrderStatus.PARTIALLY_FILLED, "4")  # 10 = 4 + 3 + 3
    assert trading.get_open_position("AAPL").qty == "4"
    done = wait_for(lambda: (o := trading.get_order_by_client_id("slow")).status == OrderStatus.FILLED and o)
    assert done.filled_qty == "10"
    assert [f.quantity for f in server.fake.fills()] == [4, 3, 3]
    first, last = server.fake.fills()[0].timestamp, server.fake.fills()[-1].timestamp
    assert last - first >= timedelta(seconds=0.5)


def test_manual_and_delayed_fills(server, trading) -> None:
    server.fake.set_price("AAPL", 100)
    server.fake.set_fill_policy(FillPolicy.manual())
    order = trading.submit_order(market_buy("AAPL", 5))
    time.sleep(0.15)
    assert trading.get_order_by_id(order.id).status == OrderStatus.NEW

    server.fake.fill_order(str(order.id), qty=2, price=99)
    assert trading.get_order_by_id(order.id).status == OrderStatus.PARTIALLY_FILLED
    trading.cancel_order_by_id(order.id)  # the unfilled rest; the filled part stays
    cancelled = wait_for(
        lambda: (o := trading.get_order_by_id(order.id)).status == OrderStatus.CANCELED and o
    )
    assert (cancelled.status, cancelled.filled_qty, cancelled.filled_avg_price) == (
        OrderStatus.CANCELED,
        "2",
        "99",
    )

    server.fake.set_fill_policy(FillPolicy.delayed(0.3))
    later = trading.submit_order(market_buy("AAPL", 1))
    assert later.status == OrderStatus.NEW
    wait_for(lambda: trading.get_order_by_id(later.id).status == OrderStatus.FILLED)


def test_the_clock_and_equity_orders_while_closed(server, trading) -> None:
    server.fake.set_price("AAPL", 100)
    server.fake.set_price("BTC/USD", 50_000)
    server.fake.set_clock(SATURDAY_NOON)
    clock = trading.get_clock()
    assert not clock.is_open and clock.timestamp < clock.next_open < clock.next_close

    queued = trading.submit_order(market_buy("AAPL", 1))
    crypto = trading.submit_order(
        MarketOrderRequest(symbol="BTC/USD", qty=0.1, side=OrderSide.BUY, time_in_force=TimeInForce.GTC)
    )
    assert (queued.status, crypto.status) == (OrderStatus.ACCEPTED, OrderStatus.FILLED)  # crypto never sleeps

    server.fake.set_clock(MONDAY_SESSION)
    assert trading.get_clock().is_open
    assert trading.get_order_by_id(queued.id).status == OrderStatus.FILLED


def test_assets(server, trading) -> None:
    asset = trading.get_asset("AAPL")
    assert (asset.symbol, asset.tradable) == ("AAPL", True)
    assert len(trading.get_all_assets()) == len(SimulatedMarket().universe())
    with pytest.raises(APIError) as missing:
        trading.get_asset("NOSUCH")
    assert missing.value.status_code == 404


# ---- Authentication ------------------------------------------------------------------------------


def test_requests_without_the_right_keys_are_refused(server) -> None:
    wrong = TradingClient(server.key, "not-the-secret", paper=True, url_override=server.trading_url)
    with pytest.raises(APIError) as refused:
        wrong.get_account()
    assert (refused.value.status_code, refused.value.code) == (401, 40110000)

    data = StockHistoricalDataClient("someone-else", server.secret, url_override=server.data_url)
    with pytest.raises(APIError) as forbidden:
        data.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols="AAPL"))
    assert forbidden.value.status_code == 403

    for path in ("/v2/account", "/v2/stocks/bars/latest?symbols=AAPL", "/_fake/admin/state"):
        assert httpx.get(server.url + path).status_code == 401
    assert httpx.get(server.url + "/_fake/health").status_code == 200
    assert server.fake.orders() == []


# ---- Market data ---------------------------------------------------------------------------------


def test_daily_bars_are_the_simulated_market(server) -> None:
    data = StockHistoricalDataClient(server.key, server.secret, url_override=server.data_url)
    request = StockBarsRequest(
        symbol_or_symbols=["AAPL", "MSFT"],
        timeframe=TimeFrame.Day,
        start=FRIDAY_EVENING - timedelta(days=30),
        end=FRIDAY_EVENING,
    )
    bars = data.get_stock_bars(request).data
    expected = SimulatedMarket(seed=server.config.seed, timeframe="1D").history("AAPL", 21, FRIDAY_EVENING)
    # The NYSE's sessions from Feb 6 to Mar 7: the weekdays but Presidents' Day (17 February).
    assert len(bars["AAPL"]) == len(bars["MSFT"]) == 21
    assert [b.close for b in bars["AAPL"]] == pytest.approx(list(expected.close), abs=1e-4)
    assert bars["AAPL"][-1].timestamp == datetime(2025, 3, 7, tzinfo=UTC)


def test_bars_page_through_next_page_token() -> None:
    with FakeAlpacaServer(bars_page_size=1000) as server:
        # Through alpaca-py: two symbols' minute bars over three sessions take three pages.
        data = StockHistoricalDataClient(server.key, server.secret, url_override=server.data_url)
        start = FRIDAY_EVENING - timedelta(days=3)
        request = StockBarsRequest(
            symbol_or_symbols=["AAPL", "MSFT"], timeframe=TimeFrame.Minute, start=start, end=FRIDAY_EVENING
        )
        bars = data.get_stock_bars(request).data
        assert len(bars["AAPL"]) == len(bars["MSFT"]) == 3 * 390  # three sessions of 390 minutes
        stamps = [bar.timestamp for bar in bars["AAPL"]]
        assert stamps == sorted(set(stamps))  # pages joined without gaps or repeats
        pages = [r for r in server.fake.served_responses() if r.path == "/v2/stocks/bars"]
        assert len(pages) == 3 and all("page_token=" in page.query for page in pages[1:])

        # By hand: small pages across symbols, ascending and descending, add up to one big page.
        for sort in ("asc", "desc"):
            params = {
                "symbols": "AAPL,MSFT,BTC/USD",
                "timeframe": "1Day",
                "start": "2025-02-01",
                "end": FRIDAY_EVENING.isoformat(),
                "sort": sort,
            }
            whole = _get(server, "/v2/stocks/bars", params | {"limit": 1000}).json()
            assert whole["next_page_token"] is None and set(whole["bars"]) == {"AAPL", "MSFT"}
            collected: dict[str, list[dict[str, Any]]] = {}
            token, calls = None, 0
            while True:
                page = _get(server, "/v2/stocks/bars", params | {"limit": 7, "page_token": token}).json()
                calls += 1
                assert sum(len(rows) for rows in page["bars"].values()) <= 7
                for symbol, rows in page["bars"].items():
                    collected.setdefault(symbol, []).extend(rows)
                token = page["next_page_token"]
                if token is None:
                    break
            assert collected == whole["bars"]
            assert calls == -(-sum(len(rows) for rows in whole["bars"].values()) // 7)

        bad = _get(server, "/v2/stocks/bars", {"symbols": "AAPL", "timeframe": "7Day"})
        assert (bad.status_code, bad.json()["code"]) == (400, 40010001)
        garbage = base64.urlsafe_b64encode(b"garbage").decode()
        bad = _get(server, "/v2/stocks/bars", {"symbols": "AAPL", "timeframe": "1Day", "page_token": garbage})
        assert bad.status_code == 400
        assert not spec_violations(SPEC, server.fake.served_responses())


def _get(server: FakeAlpacaServer, path: str, params: dict[str, Any]) -> httpx.Response:
    params = {name: value for name, value in params.items() if value is not None}
    return httpx.get(server.url + path, params=params, headers=server.headers)


def test_aggregated_timeframes_crypto_and_latest_values(server) -> None:
    data = StockHistoricalDataClient(server.key, server.secret, url_override=server.data_url)
    day = datetime(2025, 3, 7, tzinfo=UTC)
    five_minutes = TimeFrame(5, TimeFrameUnit.Minute)
    request = StockBarsRequest(
        symbol_or_symbols="AAPL", timeframe=five_minutes, start=day, end=day + timedelta(days=1)
    )
    five = data.get_stock_bars(request).data["AAPL"]
    minutes = SimulatedMarket(seed=server.config.seed, timeframe="1Min").history(
        "AAPL", 390, day + timedelta(days=1)
    )
    assert len(five) == 78
    assert (five[0].open, five[0].close) == pytest.approx((minutes.open[0], minutes.close[4]), abs=1e-4)
    assert five[0].high == pytest.approx(max(minutes.high[:5]), abs=1e-4)

    crypto = CryptoHistoricalDataClient(server.key, server.secret, url_override=server.data_url)
    whole_day = CryptoBarsRequest(
        symbol_or_symbols="BTC/USD",
        timeframe=TimeFrame.Hour,
        start=day,
        end=day + timedelta(hours=23, minutes=59),
    )
    hourly = crypto.get_crypto_bars(whole_day).data["BTC/USD"]
    assert len(hourly) == 24  # crypto trades around the clock

    server.fake.set_price("AAPL", 200)
    server.fake.set_price("BTC/USD", 60_000)
    quote = data.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols=["AAPL", "BTC/USD"]))
    assert set(quote) == {"AAPL"}  # the stock endpoint serves stocks only
    assert quote["AAPL"].bid_price < 200 < quote["AAPL"].ask_price
    assert data.get_stock_latest_trade(StockLatestTradeRequest(symbol_or_symbols="AAPL"))["AAPL"].price == 200
    assert data.get_stock_latest_bar(StockLatestBarRequest(symbol_or_symbols="AAPL"))["AAPL"].close > 0
    crypto_quote = crypto.get_crypto_latest_quote(CryptoLatestQuoteRequest(symbol_or_symbols="BTC/USD"))
    assert crypto_quote["BTC/USD"].bid_price < 60_000 < crypto_quote["BTC/USD"].ask_price


# ---- The stream ----------------------------------------------------------------------------------


def test_stock_data_stream_receives_trades_quotes_and_bars() -> None:
    with FakeAlpacaServer(tick_interval_seconds=0.02, ticks_per_bar=5) as server:
        stream = StockDataStream(server.key, server.secret, url_override=server.stream_url)
        received: list[Any] = []

        async def collect(item: Any) -> None:
            received.append(item)

        stream.subscribe_trades(collect, "AAPL")
        stream.subscribe_quotes(collect, "AAPL", "MSFT")
        stream.subscribe_bars(collect, "AAPL")
        runner = threading.Thread(target=stream.run, daemon=True)
        runner.start()
        try:

            def kinds() -> set[tuple[str, str]]:
                return {(type(item).__name__, item.symbol) for item in received}

            wait_for(
                lambda: {("Trade", "AAPL"), ("Quote", "AAPL"), ("Quote", "MSFT"), ("Bar", "AAPL")} <= kinds()
            )
            server.fake.set_price("AAPL", 123.45)
            wait_for(lambda: any(type(i).__name__ == "Trade" and i.price == 123.45 for i in received))
        finally:
            stream.stop()
            runner.join(timeout=10)
        assert not runner.is_alive()
        assert ("Trade", "MSFT") not in kinds()  # only what was subscribed
        trade = next(i for i in received if type(i).__name__ == "Trade")
        assert trade.timestamp.tzinfo is not None and trade.exchange == "V"


async def test_stream_protocol_in_json_and_refused_keys() -> None:
    with FakeAlpacaServer() as server:
        # Without the msgpack header the server speaks JSON text frames, as Alpaca does.
        async with websockets.connect(server.stream_url) as socket:
            assert json.loads(await socket.recv()) == [{"T": "success", "msg": "connected"}]
            await socket.send(json.dumps({"action": "auth", "key": server.key, "secret": server.secret}))
            assert json.loads(await socket.recv()) == [{"T": "success", "msg": "authenticated"}]
            await socket.send(json.dumps({"action": "subscribe", "trades": ["AAPL"], "quotes": ["AAPL"]}))
            subscription = json.loads(await socket.recv())[0]
            assert subscription["T"] == "subscription"
            assert subscription["trades"] == subscription["quotes"] == ["AAPL"]
            first = json.loads(await asyncio.wait_for(socket.recv(), 5))  # a price at once on subscribing
            assert {m["T"] for m in first} == {"t", "q"}
            assert datetime.fromisoformat(first[0]["t"]).tzinfo is not None

        msgpack_header = {"Content-Type": "application/msgpack"}
        async with websockets.connect(server.stream_url, additional_headers=msgpack_header) as socket:
            assert msgpack.unpackb(await socket.recv()) == [{"T": "success", "msg": "connected"}]
            await socket.send(msgpack.packb({"action": "auth", "key": server.key, "secret": "wrong"}))
            assert msgpack.unpackb(await socket.recv()) == [{"T": "error", "code": 402, "msg": "auth failed"}]
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(socket.recv(), 5)


# ---- Faults --------------------------------------------------------------------------------------


def test_injected_errors_hangs_and_latency(server, trading) -> None:
    server.fake.inject_fault("trading", "error", status=503, count=1)
    with pytest.raises(APIError) as unavailable:
        trading.get_account()
    assert (unavailable.value.status_code, unavailable.value.code) == (503, 50300000)
    assert trading.get_account().status.value == "ACTIVE"  # the fault was for one request

    server.fake.inject_fault("trading", "hang")
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(server.url + "/v2/account", headers=server.headers, timeout=0.3)
    # The admin API still answers while the Alpaca API hangs, and clears the fault.
    admin = httpx.Client(base_url=server.url, headers=server.headers)
    assert admin.get("/_fake/admin/state").json()["faults"][0]["kind"] == "hang"
    held: list[int] = []
    waiter = threading.Thread(target=lambda: held.append(admin.get("/v2/clock", timeout=5).status_code))
    waiter.start()
    time.sleep(0.2)
    assert admin.delete("/_fake/admin/faults").status_code == 204
    waiter.join(timeout=5)
    assert held == [200]  # a hung request goes on once released

    server.fake.inject_fault("all", "latency", seconds=0.3)
    started = time.monotonic()
    trading.get_clock()
    assert time.monotonic() - started >= 0.3
    server.fake.clear_faults()
    admin.close()


def test_stream_faults_drop_and_refuse_connections() -> None:
    async def connect_and_auth(server: FakeAlpacaServer) -> Any:
        socket = await websockets.connect(server.stream_url)
        await socket.recv()
        await socket.send(json.dumps({"action": "auth", "key": server.key, "secret": server.secret}))
        await socket.recv()
        return socket

    async def scenario(server: FakeAlpacaServer) -> None:
        socket = await connect_and_auth(server)
        server.fake.inject_fault("stream", "disconnect", count=1)
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(socket.recv(), 5)
        with pytest.raises(websockets.InvalidStatus):
            await websockets.connect(server.stream_url)  # refused once (count=1) ...
        socket = await connect_and_auth(server)  # ... then welcome again
        server.fake.inject_fault("stream", "mute")
        await socket.send(json.dumps({"action": "subscribe", "trades": ["AAPL"]}))
        server.fake.tick()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(socket.recv(), 0.3)
        await socket.close()

    with FakeAlpacaServer() as server:
        asyncio.run(scenario(server))


def test_the_admin_http_api(server, trading) -> None:
    admin = httpx.Client(base_url=server.url + "/_fake/admin/", headers=server.headers)
    assert admin.post("prices", json={"AAPL": 250}).json() == {"AAPL": "250.00"}
    assert admin.post("fill-policy", json={"mode": "manual"}).json()["mode"] == "manual"
    order = trading.submit_order(market_buy("AAPL", 2))
    filled = admin.post(f"orders/{order.id}/fill", json={"qty": 2}).json()
    assert (filled["status"], filled["filled_avg_price"]) == ("filled", "250")
    saturday = admin.post("clock", json={"at": SATURDAY_NOON.isoformat(), "ticking": False}).json()
    assert (saturday["is_open"], saturday["ticking"]) == (False, False)
    assert (
        admin.post("faults", json={"api": "data", "kind": "error", "status": 500}).json()[0]["status"] == 500
    )
    assert admin.post("faults", json={"api": "stream", "kind": "latency"}).status_code == 400
    state = admin.get("state").json()
    assert [p["symbol"] for p in state["positions"]] == ["AAPL"] and state["market_open"] is False
    assert admin.post("rules", json={"relaxed": ["wash_trade"]}).json() == {"relaxed": ["wash_trade"]}
    assert admin.post("rules", json={"relaxed": ["no_such_rule"]}).status_code == 400
    assert admin.post("tick", json={"count": 3}).status_code == 200
    admin.post("reset")
    state = admin.get("state").json()
    assert (state["orders"], state["relaxed_rules"], state["market_open"]) == ([], [], True)
    assert trading.get_account().cash == "100000"
    admin.close()


def test_subprocess_mode_serves_alpaca_py_and_stops_cleanly() -> None:
    partial = FillPolicy.partial(2, 5.0)
    with FakeAlpacaSubprocess(key="k", secret="s", fill_policy=partial, clock_start=MONDAY_SESSION) as server:
        assert server.admin is not None and server.pid is not None
        pid = server.pid
        server.admin.set_price("AAPL", 100)
        trading = TradingClient("k", "s", paper=True, url_override=server.trading_url)
        order = trading.submit_order(market_buy("AAPL", 4))
        assert (order.status, order.filled_qty) == (OrderStatus.PARTIALLY_FILLED, "2")
        assert server.admin.state()["orders"][0]["id"] == str(order.id)
        assert "s" not in server.command()  # the secret travels in the environment
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(pid, 0)
