"""The fake Alpaca refuses what Alpaca refuses: each rule's refused request and its accepted twin.

Requests go through alpaca-py's TradingClient (as orch sends them) and raw httpx (what is on the
wire: status, code, message, headers). Every answer is checked against Alpaca's published schemas.
The fake's clock is set to the day each test needs, so they run the same on any day.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, OrderStatus, TimeInForce
from alpaca.trading.requests import GetCalendarRequest, LimitOrderRequest, MarketOrderRequest

from orch.fake_alpaca import FakeAlpacaServer, FakeAlpacaSubprocess, FillPolicy
from orch.fake_alpaca.rules import Rule
from orch.fake_alpaca.spec_schemas import load, spec_violations

MONDAY_SESSION = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)  # 10:00 in New York
MONDAY_BEFORE_CLOSE = datetime(2026, 12, 7, 20, 59, 59, tzinfo=UTC)  # 15:59:59 in New York
MONDAY_AFTER_CLOSE = datetime(2026, 12, 7, 21, 0, 1, tzinfo=UTC)
SATURDAY_NOON = datetime(2026, 12, 5, 17, 0, tzinfo=UTC)
THANKSGIVING = datetime(2026, 11, 26, 16, 0, tzinfo=UTC)  # a Thursday: the NYSE is closed
BLACK_FRIDAY_AFTERNOON = datetime(2026, 11, 27, 18, 30, tzinfo=UTC)  # 13:30 New York, after the 13:00 close
SPEC = load()


@contextlib.contextmanager
def serve(**config: Any) -> Iterator[FakeAlpacaServer]:
    with FakeAlpacaServer(**({"clock_start": MONDAY_SESSION} | config)) as running:
        running.fake.set_price("AAPL", 150)
        running.fake.set_price("PENNY", Decimal("0.5"))
        running.fake.set_price("BTC/USD", 60_000)
        yield running
        problems = spec_violations(SPEC, running.fake.served_responses())
    assert not problems, "answers that break Alpaca's spec:\n" + "\n".join(problems)


@pytest.fixture
def server() -> Iterator[FakeAlpacaServer]:
    with serve(non_fractionable_symbols=frozenset({"KO"})) as running:
        yield running


@pytest.fixture
def trading(server: FakeAlpacaServer) -> TradingClient:
    return TradingClient(server.key, server.secret, paper=True, url_override=server.trading_url)


def post_order(server: FakeAlpacaServer, **body: Any) -> httpx.Response:
    return httpx.post(server.url + "/v2/orders", json=body, headers=server.headers)


def refusal(call: Callable[[], Any]) -> tuple[int | None, int, str]:
    with pytest.raises(APIError) as refused:
        call()
    return refused.value.status_code, refused.value.code, refused.value.message


def limit(symbol: str, side: OrderSide, qty: float, price: float, tif: TimeInForce = TimeInForce.DAY):
    return LimitOrderRequest(symbol=symbol, side=side, qty=qty, limit_price=price, time_in_force=tif)


def market(symbol: str, side: OrderSide, tif: TimeInForce = TimeInForce.DAY, **amount: float):
    return MarketOrderRequest(symbol=symbol, side=side, time_in_force=tif, **amount)


def wait_for(check: Callable[[], Any], what: str, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.02)
    raise AssertionError(f"{what}: not within {timeout}s")


# ---- Sub-penny prices ----------------------------------------------------------------------------


def test_sub_penny_limit_prices_are_refused_and_whole_cents_accepted(server, trading) -> None:
    status, code, message = refusal(lambda: trading.submit_order(limit("AAPL", OrderSide.BUY, 1, 149.995)))
    assert (status, code) == (422, 42210000)
    assert (
        message
        == "invalid limit_price 149.995. sub-penny increment does not fulfill minimum pricing criteria"
    )
    assert trading.submit_order(limit("AAPL", OrderSide.BUY, 1, 149.99)).status == OrderStatus.NEW

    # Under $1 a price may have 4 decimals, not 5.
    wire = post_order(server, symbol="PENNY", qty="10", side="buy", type="limit", time_in_force="day")
    assert wire.status_code == 422  # a limit order needs its price
    too_fine = post_order(
        server, symbol="PENNY", qty="10", side="buy", type="limit", time_in_force="day", limit_price="0.49995"
    )
    assert (too_fine.status_code, too_fine.json()["code"]) == (422, 42210000)
    assert "sub-penny increment" in too_fine.json()["message"]
    fine = post_order(
        server, symbol="PENNY", qty="10", side="buy", type="limit", time_in_force="day", limit_price="0.4999"
    )
    assert fine.status_code == 200, fine.text
    # Crypto prices follow the pair's own increment, not the equity cent.
    crypto = trading.submit_order(limit("BTC/USD", OrderSide.BUY, 0.001, 59_000.005, TimeInForce.GTC))
    assert crypto.status == OrderStatus.NEW


# ---- Wash trades ---------------------------------------------------------------------------------


def test_an_order_that_would_cross_the_accounts_own_order_is_refused(server, trading) -> None:
    trading.submit_order(market("AAPL", OrderSide.BUY, qty=10))
    resting_sell = trading.submit_order(limit("AAPL", OrderSide.SELL, 5, 155))

    crossing = refusal(lambda: trading.submit_order(limit("AAPL", OrderSide.BUY, 1, 155)))
    assert crossing == (422, 42210000, "potential wash trade detected. use complex orders")
    any_price = refusal(lambda: trading.submit_order(market("AAPL", OrderSide.BUY, qty=1)))
    assert any_price == crossing  # a market buy would take any price, its own sell's too
    wire = post_order(
        server, symbol="AAPL", qty="1", side="buy", type="limit", time_in_force="day", limit_price="160"
    )
    assert (wire.status_code, wire.json()["message"]) == (
        422,
        "potential wash trade detected. use complex orders",
    )

    # The twins: below the account's own offer, or the same side, or once that order is gone.
    assert trading.submit_order(limit("AAPL", OrderSide.BUY, 1, 154.99)).status == OrderStatus.FILLED
    assert trading.submit_order(limit("AAPL", OrderSide.SELL, 1, 156)).status == OrderStatus.NEW
    trading.cancel_order_by_id(resting_sell.id)
    wait_for(lambda: trading.get_order_by_id(resting_sell.id).status == OrderStatus.CANCELED, "the cancel")
    assert trading.submit_order(limit("AAPL", OrderSide.BUY, 1, 155.5)).status == OrderStatus.FILLED


# ---- The rate limit ------------------------------------------------------------------------------


def test_200_trading_requests_a_minute_then_429_with_alpacas_headers(server) -> None:
    with httpx.Client(base_url=server.url, headers=server.headers) as client:
        answers = [client.get("/v2/account") for _ in range(200)]
        assert {a.status_code for a in answers} == {200}
        first, last = answers[0].headers, answers[-1].headers
        assert (first["x-ratelimit-limit"], first["x-ratelimit-remaining"]) == ("200", "199")
        assert last["x-ratelimit-remaining"] == "0"
        reset = int(last["x-ratelimit-reset"])
        assert time.time() < reset <= time.time() + 61  # the end of this minute's window (whole seconds)

        refused = client.get("/v2/orders")
        assert refused.status_code == 429
        assert refused.json() == {"code": 42910000, "message": "rate limit exceeded"}
        assert refused.headers["x-ratelimit-remaining"] == "0"
        assert int(refused.headers["x-ratelimit-reset"]) == reset

        # Per account: market data and the admin API have their own budgets.
        assert client.get("/v2/stocks/trades/latest", params={"symbols": "AAPL"}).status_code == 200
        assert client.get("/_fake/admin/state").status_code == 200
        # A relaxed rule still counts, but no longer refuses.
        assert client.post("/_fake/admin/rules", json={"relaxed": ["rate_limit"]}).status_code == 200
        assert client.get("/v2/account").status_code == 200


def test_alpaca_py_gives_up_on_429_within_the_minute() -> None:
    """alpaca-py retries a 429 three times, three seconds apart: not enough to outlast Alpaca's window."""
    with serve(rate_limit_per_minute=3) as running:
        trading = TradingClient(running.key, running.secret, paper=True, url_override=running.trading_url)
        for _ in range(3):
            trading.get_clock()
        assert refusal(trading.get_account) == (429, 42910000, "rate limit exceeded")


# ---- Market hours: the clock, the calendar, day orders ------------------------------------------


def test_the_clock_answers_as_alpacas_on_a_session_a_holiday_an_early_close_and_a_weekend(server, trading):
    clock = trading.get_clock()
    assert clock.is_open
    assert clock.next_close == datetime(2026, 12, 7, 21, 0, tzinfo=UTC)  # 16:00 New York today
    assert clock.next_open == datetime(2026, 12, 8, 14, 30, tzinfo=UTC)  # 09:30 tomorrow

    server.fake.set_clock(SATURDAY_NOON)
    weekend = trading.get_clock()
    assert not weekend.is_open
    assert (weekend.next_open, weekend.next_close) == (
        datetime(2026, 12, 7, 14, 30, tzinfo=UTC),
        datetime(2026, 12, 7, 21, 0, tzinfo=UTC),
    )

    server.fake.set_clock(THANKSGIVING)
    holiday = trading.get_clock()
    assert not holiday.is_open
    assert holiday.next_close == datetime(2026, 11, 27, 18, 0, tzinfo=UTC)  # the day after closes at 13:00

    server.fake.set_clock(BLACK_FRIDAY_AFTERNOON, ticking=False)
    wire = httpx.get(server.url + "/v2/clock", headers=server.headers).json()
    assert wire["is_open"] is False
    assert wire["timestamp"].startswith("2026-11-27T13:30:00") and wire["timestamp"].endswith("-05:00")


def test_the_calendar_lists_sessions_with_holidays_and_early_closes(server, trading) -> None:
    days = trading.get_calendar(GetCalendarRequest(start=date(2026, 11, 25), end=date(2026, 12, 1)))
    assert [d.date for d in days] == [
        date(2026, 11, 25),
        date(2026, 11, 27),
        date(2026, 11, 30),
        date(2026, 12, 1),
    ]
    friday = days[1]
    assert (friday.open.hour, friday.open.minute, friday.close.hour) == (9, 30, 13)
    wire = httpx.get(
        server.url + "/v2/calendar",
        params={"start": "2026-11-25", "end": "2026-11-25"},
        headers=server.headers,
    ).json()
    assert wire == [
        {
            "date": "2026-11-25",
            "open": "09:30",
            "close": "16:00",
            "session_open": "0400",
            "session_close": "2000",
            "settlement_date": "2026-11-27",  # T+1: the next session, over the holiday
        }
    ]


def test_equities_fill_only_in_session_and_crypto_around_the_clock(server, trading) -> None:
    server.fake.set_clock(THANKSGIVING)
    queued = trading.submit_order(market("AAPL", OrderSide.BUY, qty=1))
    crypto = trading.submit_order(market("BTC/USD", OrderSide.BUY, TimeInForce.GTC, qty=0.001))
    assert (queued.status, crypto.status) == (OrderStatus.ACCEPTED, OrderStatus.FILLED)

    server.fake.set_clock(BLACK_FRIDAY_AFTERNOON - timedelta(hours=1))  # 12:30, before the early close
    assert trading.get_order_by_id(queued.id).status == OrderStatus.FILLED


def test_day_orders_expire_at_the_close_and_gtc_orders_stay(server, trading) -> None:
    server.fake.set_clock(MONDAY_BEFORE_CLOSE, ticking=False)
    day = trading.submit_order(limit("AAPL", OrderSide.BUY, 1, 140))
    good_till_cancelled = trading.submit_order(limit("AAPL", OrderSide.BUY, 1, 139, TimeInForce.GTC))
    assert trading.get_order_by_id(day.id).status == OrderStatus.NEW

    server.fake.set_clock(MONDAY_AFTER_CLOSE, ticking=False)
    expired = trading.get_order_by_id(day.id)
    assert expired.status == OrderStatus.EXPIRED
    assert expired.expired_at == datetime(2026, 12, 7, 21, 0, tzinfo=UTC)
    assert trading.get_order_by_id(good_till_cancelled.id).status == OrderStatus.NEW


# ---- Crypto --------------------------------------------------------------------------------------


def test_crypto_takes_gtc_and_ioc_only(server, trading) -> None:
    day = refusal(lambda: trading.submit_order(market("BTC/USD", OrderSide.BUY, TimeInForce.DAY, qty=0.001)))
    assert day == (422, 42210000, "invalid crypto time_in_force")
    wire = post_order(server, symbol="BTC/USD", qty="0.001", side="buy", type="market", time_in_force="fok")
    assert (wire.status_code, wire.json()["message"]) == (422, "invalid crypto time_in_force")
    for tif in (TimeInForce.GTC, TimeInForce.IOC):
        assert (
            trading.submit_order(market("BTC/USD", OrderSide.BUY, tif, qty=0.001)).status
            == OrderStatus.FILLED
        )


def test_usd_crypto_buys_under_the_minimum_notional_are_refused(server, trading) -> None:
    too_small = refusal(
        lambda: trading.submit_order(market("BTC/USD", OrderSide.BUY, TimeInForce.GTC, notional=9.99))
    )
    assert too_small == (403, 40310000, "cost basis must be >= minimal amount of order 10")
    by_quantity = post_order(
        server, symbol="BTC/USD", qty="0.0001", side="buy", type="market", time_in_force="gtc"
    )
    assert by_quantity.status_code == 403  # 0.0001 BTC at $60,000 is $6
    assert trading.submit_order(market("BTC/USD", OrderSide.BUY, TimeInForce.GTC, notional=10)).status == (
        OrderStatus.FILLED
    )


def test_the_crypto_fee_comes_out_of_the_asset_bought(server, trading) -> None:
    trading.submit_order(market("BTC/USD", OrderSide.BUY, TimeInForce.GTC, qty=0.1))
    position = trading.get_open_position("BTCUSD")
    assert position.qty == "0.09975"  # 0.1 bought, less the 0.25 % taker fee
    assert Decimal(trading.get_account().cash) == Decimal(100_000 - 6_000)

    too_much = refusal(
        lambda: trading.submit_order(market("BTC/USD", OrderSide.SELL, TimeInForce.GTC, qty=0.1))
    )
    assert too_much[:2] == (403, 40310000)  # what was bought is not what is held
    sold = trading.submit_order(market("BTC/USD", OrderSide.SELL, TimeInForce.GTC, qty=0.09975))
    assert sold.status == OrderStatus.FILLED
    # The sale's fee comes out of the dollars it credits.
    proceeds = Decimal("0.09975") * 60_000 * Decimal("0.9975")
    assert Decimal(trading.get_account().cash) == (94_000 + proceeds).quantize(Decimal("0.01"))


def test_a_resting_crypto_limit_pays_the_maker_fee() -> None:
    with serve(fill_policy=FillPolicy.immediate()) as running:
        trading = TradingClient(running.key, running.secret, paper=True, url_override=running.trading_url)
        trading.submit_order(limit("BTC/USD", OrderSide.BUY, 0.1, 59_000, TimeInForce.GTC))
        running.fake.set_price("BTC/USD", 58_900)
        assert trading.get_open_position("BTCUSD").qty == "0.09985"  # 0.15 %


def test_the_crypto_fee_is_taker_only_for_a_limit_marketable_on_arrival() -> None:
    """Alpaca charges taker to an order that trades against the book on arrival: a limit buy at or
    above the ask. One between the mid and the ask rests first: maker, even if it fills at once here."""
    with serve(fill_policy=FillPolicy.immediate()) as running:
        trading = TradingClient(running.key, running.secret, paper=True, url_override=running.trading_url)
        bid, ask = running.fake.prices.quote("BTC/USD")
        assert (bid, ask) == (Decimal(59_988), Decimal(60_012))  # 2 bps each side of 60,000
        trading.submit_order(limit("BTC/USD", OrderSide.BUY, 0.1, 60_005, TimeInForce.GTC))
        assert trading.get_open_position("BTCUSD").qty == "0.09985"  # maker: 0.15 %
        trading.submit_order(limit("BTC/USD", OrderSide.BUY, 0.1, float(ask), TimeInForce.GTC))
        assert trading.get_open_position("BTCUSD").qty == "0.1996"  # then 0.09975 as taker: 0.25 %


def test_the_admin_api_counts_refusals_by_reason_and_requests_in_the_busiest_minute(server, trading) -> None:
    for _ in range(2):
        refusal(lambda: trading.submit_order(limit("AAPL", OrderSide.BUY, 1, 150.001)))
    refusal(lambda: trading.submit_order(market("BTC/USD", OrderSide.BUY, TimeInForce.DAY, qty=0.01)))
    trading.get_account()
    with httpx.Client(base_url=server.url, headers=server.headers) as admin:
        refusals = admin.get("/_fake/admin/refusals").json()
        requests = admin.get("/_fake/admin/requests").json()
    counted = {(r["status"], r["code"], r["message"]): r["count"] for r in refusals["reasons"]}
    assert counted == {
        (
            422,
            42210000,
            "invalid limit_price 150.001. sub-penny increment does not fulfill minimum pricing criteria",
        ): 2,
        (422, 42210000, "invalid crypto time_in_force"): 1,
    }
    assert refusals["total"] == 3 and refusals["reasons"][0]["last_request"] == "POST /v2/orders"
    mine = requests["accounts"][server.key]
    assert requests["limit_per_minute"] == 200
    assert (mine["total"], mine["busiest_minute"]) == (4, 4)  # the refused three count too, as at Alpaca


def test_crypto_assets_publish_their_increments(trading) -> None:
    bitcoin = trading.get_asset("BTC/USD")
    assert (bitcoin.min_order_size, bitcoin.min_trade_increment, bitcoin.price_increment) == (
        0.0001,
        0.0001,
        1,
    )
    assert bitcoin.fractionable
    apple = trading.get_asset("AAPL")
    assert apple.fractionable and apple.min_order_size is None  # published for crypto only
    assert not trading.get_asset("KO").fractionable


# ---- Fractional equity orders --------------------------------------------------------------------


def test_fractional_equity_orders_are_market_day_orders_on_fractionable_assets(server, trading) -> None:
    server.fake.set_price("KO", 60)
    assert refusal(lambda: trading.submit_order(market("KO", OrderSide.BUY, qty=1.5))) == (
        422,
        42210000,
        "asset KO is not fractionable",
    )
    assert trading.submit_order(market("KO", OrderSide.BUY, qty=2)).status == OrderStatus.FILLED

    not_market = refusal(lambda: trading.submit_order(limit("AAPL", OrderSide.BUY, 1.5, 150)))
    assert not_market[:2] == (422, 42210000)
    not_day = refusal(lambda: trading.submit_order(market("AAPL", OrderSide.BUY, TimeInForce.GTC, qty=1.5)))
    assert not_day[:2] == (422, 42210000)
    assert trading.submit_order(limit("AAPL", OrderSide.BUY, 2, 150)).status == OrderStatus.FILLED  # whole

    bought = trading.submit_order(market("AAPL", OrderSide.BUY, qty=1.5))
    assert (bought.status, bought.filled_qty) == (OrderStatus.FILLED, "1.5")
    by_dollars = trading.submit_order(market("AAPL", OrderSide.BUY, notional=75))
    assert by_dollars.filled_qty == "0.5"
    short = refusal(lambda: trading.submit_order(market("AAPL", OrderSide.SELL, qty=4.5)))
    assert short[:2] == (403, 40310000)  # holds 4: a fractional order may not go short
    assert trading.submit_order(market("AAPL", OrderSide.SELL, qty=3.5)).status == OrderStatus.FILLED


# ---- Cancels and their race ----------------------------------------------------------------------


def test_a_cancel_passes_through_pending_cancel_and_the_order_can_fill_meanwhile() -> None:
    with serve(fill_policy=FillPolicy.manual(), cancel_delay_seconds=0.5) as running:
        trading = TradingClient(running.key, running.secret, paper=True, url_override=running.trading_url)
        raced = trading.submit_order(market("AAPL", OrderSide.BUY, qty=3))
        trading.cancel_order_by_id(raced.id)  # 204: asked, not done
        assert trading.get_order_by_id(raced.id).status == OrderStatus.PENDING_CANCEL
        running.fake.fill_order(str(raced.id))  # the fill wins the race
        assert trading.get_order_by_id(raced.id).status == OrderStatus.FILLED
        assert trading.get_open_position("AAPL").qty == "3"

        cancelled = trading.submit_order(limit("AAPL", OrderSide.BUY, 1, 140))
        trading.cancel_order_by_id(cancelled.id)
        assert trading.get_order_by_id(cancelled.id).status == OrderStatus.PENDING_CANCEL
        done = wait_for(
            lambda: (o := trading.get_order_by_id(cancelled.id)).status == OrderStatus.CANCELED and o,
            "the cancel to land",
        )
        assert done.filled_qty == "0" and done.canceled_at is not None


# ---- Buying power on a margin account ------------------------------------------------------------


def test_margin_buying_power_differs_from_cash_and_a_cash_account_has_none(server, trading) -> None:
    account = trading.get_account()
    assert (account.cash, account.buying_power, account.multiplier) == ("100000", "200000", "2")
    assert account.non_marginable_buying_power == "100000"
    trading.submit_order(market("AAPL", OrderSide.BUY, qty=1_000))  # $150,000: on margin
    after = trading.get_account()
    assert Decimal(after.cash) == Decimal(-50_000)
    assert Decimal(after.buying_power) == Decimal(200_000 - 150_000 * 2 + 150_000)  # 2 x equity - positions
    assert after.non_marginable_buying_power == "0"  # crypto buys with cash only
    assert refusal(lambda: trading.submit_order(market("BTC/USD", OrderSide.BUY, TimeInForce.GTC, qty=0.01)))[
        :2
    ] == (403, 40310000)

    with serve(margin_multiplier=1) as cash_account:
        client = TradingClient(cash_account.key, cash_account.secret, url_override=cash_account.trading_url)
        assert client.get_account().buying_power == client.get_account().cash == "100000"
        assert refusal(lambda: client.submit_order(market("AAPL", OrderSide.BUY, qty=700))) == (
            403,
            40310000,
            "insufficient buying power",
        )
        assert client.submit_order(market("AAPL", OrderSide.BUY, qty=600)).status == OrderStatus.FILLED


# ---- Relaxing a rule, and the subprocess's command line ------------------------------------------


def test_each_rule_can_be_relaxed_alone() -> None:
    relaxed = frozenset({Rule.WASH_TRADE, Rule.SUB_PENNY, Rule.MARKET_HOURS})
    with serve(relaxed_rules=relaxed, clock_start=SATURDAY_NOON) as running:
        trading = TradingClient(running.key, running.secret, paper=True, url_override=running.trading_url)
        assert trading.get_clock().is_open  # market hours relaxed: open on a Saturday
        trading.submit_order(limit("AAPL", OrderSide.SELL, 1, 155))
        crossing = trading.submit_order(limit("AAPL", OrderSide.BUY, 1, 155.001))
        assert crossing.status == OrderStatus.FILLED
        # The others still hold.
        assert refusal(lambda: trading.submit_order(market("BTC/USD", OrderSide.BUY, qty=0.001)))[0] == 422


def test_the_subprocess_takes_the_clock_and_relaxed_rules_on_its_command_line() -> None:
    options = {
        "clock_start": SATURDAY_NOON,
        "clock_frozen": True,
        "relaxed_rules": frozenset({Rule.WASH_TRADE}),
    }
    with FakeAlpacaSubprocess(**options) as running:
        assert running.admin is not None
        trading = TradingClient(running.key, running.secret, paper=True, url_override=running.trading_url)
        clock = trading.get_clock()
        assert not clock.is_open and clock.timestamp == SATURDAY_NOON
        assert running.admin.state()["relaxed_rules"] == ["wash_trade"]
        monday = running.admin.set_clock(MONDAY_SESSION)
        assert monday["is_open"] and monday["ticking"]
        running.admin.relax_rules([])
        assert running.admin.state()["relaxed_rules"] == []
