"""The Market Data API routes (stocks under `/v2/stocks`, crypto under `/v1beta3/crypto/{loc}`).

Historical bars follow the spec's paging: results are sorted by symbol, then time; `limit` counts
bars across all symbols; `next_page_token` names the first bar of the next page (opaque to clients;
here base64 of "symbol|timestamp"). Symbols no source knows are left out, as Alpaca leaves out
symbols without data.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orch.fake_alpaca._http import answer, bad_request, fake_of, parse_int, parse_symbols, parse_time
from orch.fake_alpaca.broker import timestamp
from orch.fake_alpaca.prices import BarRow, Timeframe
from orch.market.base import is_crypto

MAX_LIMIT = 10_000
CRYPTO_LOCATIONS = ("us", "us-1", "eu-1")


def _kind_symbols(request: Request, symbols: list[str]) -> list[str]:
    """The requested symbols this endpoint serves: stocks on /v2/stocks, pairs on /v1beta3/crypto."""
    crypto = request.url.path.startswith("/v1beta3/crypto")
    if crypto and request.path_params.get("loc") not in CRYPTO_LOCATIONS:
        raise bad_request(f"invalid location: {request.path_params.get('loc')!r}")
    return [s for s in symbols if is_crypto(s) == crypto]


def _bar_json(row: BarRow, crypto: bool) -> dict[str, Any]:
    return {
        "t": timestamp(row.timestamp),
        "o": round(row.open, 4),
        "h": round(row.high, 4),
        "l": round(row.low, 4),
        "c": round(row.close, 4),
        "v": round(row.volume, 9) if crypto else int(row.volume),
        "n": row.trade_count,
        "vw": round(row.vwap, 4),
    }


# ---- Historical bars -----------------------------------------------------------------------------


def _encode_token(symbol: str, moment: datetime) -> str:
    return base64.urlsafe_b64encode(f"{symbol}|{moment.isoformat()}".encode()).decode()


def _decode_token(token: str) -> tuple[str, datetime]:
    try:
        symbol, _, moment = base64.urlsafe_b64decode(token.encode()).decode().partition("|")
        return symbol, datetime.fromisoformat(moment)
    except (ValueError, binascii.Error):
        raise bad_request("invalid page_token") from None


async def bars(request: Request) -> Response:
    query = request.query_params
    symbols = sorted(set(_kind_symbols(request, parse_symbols(query.get("symbols")))))
    try:
        timeframe = Timeframe.parse(query.get("timeframe", ""))
    except ValueError as problem:
        raise bad_request(str(problem)) from None
    now = datetime.now(UTC)
    end = parse_time(query.get("end"), "end") or now
    start = parse_time(query.get("start"), "start") or now.replace(hour=0, minute=0, second=0, microsecond=0)
    if start > end:
        raise bad_request("end should not be before start")
    limit = parse_int(query.get("limit"), "limit", 1000)
    if not 1 <= limit <= MAX_LIMIT:
        raise bad_request(f"invalid limit: must be between 1 and {MAX_LIMIT}")
    descending = (query.get("sort") or "asc") == "desc"
    if query.get("sort") not in (None, "", "asc", "desc"):
        raise bad_request("invalid sort: must be asc or desc")
    resume = _decode_token(query["page_token"]) if query.get("page_token") else None

    crypto = request.url.path.startswith("/v1beta3/crypto")
    fake = fake_of(request)
    page: dict[str, list[dict[str, Any]]] = {}
    room = min(limit, fake.config.bars_page_size)
    next_token = None
    with fake.locked():
        for symbol in symbols:
            if resume and symbol < resume[0]:
                continue
            rows = fake.prices.bars(symbol, timeframe, start, end)
            if descending:
                rows = rows[::-1]
            if resume and symbol == resume[0]:
                rows = [
                    r for r in rows if (r.timestamp <= resume[1] if descending else r.timestamp >= resume[1])
                ]
            if not rows:
                continue
            if room == 0:
                next_token = _encode_token(symbol, rows[0].timestamp)
                break
            taken = rows[:room]
            page[symbol] = [_bar_json(r, crypto) for r in taken]
            room -= len(taken)
            if len(taken) < len(rows):
                next_token = _encode_token(symbol, rows[len(taken)].timestamp)
                break
    body: dict[str, Any] = {"bars": page, "next_page_token": next_token}
    if not crypto:
        body["currency"] = "USD"
    return answer(body)


# ---- Latest values -------------------------------------------------------------------------------


async def latest_bars(request: Request) -> Response:
    crypto = request.url.path.startswith("/v1beta3/crypto")
    symbols = _kind_symbols(request, parse_symbols(request.query_params.get("symbols")))
    fake = fake_of(request)
    now = datetime.now(UTC)
    with fake.locked():
        found = {s: fake.prices.latest_minute_bar(s, now) for s in symbols if fake.prices.knows(s)}
    return answer(_with_currency({"bars": {s: _bar_json(b, crypto) for s, b in found.items() if b}}, crypto))


async def latest_quotes(request: Request) -> Response:
    crypto = request.url.path.startswith("/v1beta3/crypto")
    symbols = _kind_symbols(request, parse_symbols(request.query_params.get("symbols")))
    fake = fake_of(request)
    now = datetime.now(UTC)
    quotes = {}
    with fake.locked():
        for symbol in symbols:
            if not fake.prices.knows(symbol):
                continue
            tick = fake.prices.quote_tick(symbol, now)
            quote: dict[str, Any] = {"t": timestamp(now), "bp": float(tick.bid), "ap": float(tick.ask)}
            if crypto:
                quote |= {"bs": 1.0, "as": 1.0}
            else:
                quote |= {"bs": 1, "as": 1, "bx": "V", "ax": "V", "c": ["R"], "z": "C"}
            quotes[symbol] = quote
    return answer(_with_currency({"quotes": quotes}, crypto))


async def latest_trades(request: Request) -> Response:
    crypto = request.url.path.startswith("/v1beta3/crypto")
    symbols = _kind_symbols(request, parse_symbols(request.query_params.get("symbols")))
    fake = fake_of(request)
    now = datetime.now(UTC)
    trades = {}
    with fake.locked():
        for symbol in symbols:
            if not fake.prices.knows(symbol):
                continue
            tick = fake.prices.quote_tick(symbol, now)
            trade: dict[str, Any] = {"t": timestamp(now), "p": float(tick.price), "i": tick.trade_id}
            if crypto:
                trade |= {"s": 0.1, "tks": "B"}
            else:
                trade |= {"s": 100, "x": "V", "c": ["@"], "z": "C"}
            trades[symbol] = trade
    return answer(_with_currency({"trades": trades}, crypto))


def _with_currency(body: dict[str, Any], crypto: bool) -> dict[str, Any]:
    return body if crypto else {**body, "currency": "USD"}


routes = [
    Route("/v2/stocks/bars", bars, methods=["GET"]),
    Route("/v2/stocks/bars/latest", latest_bars, methods=["GET"]),
    Route("/v2/stocks/quotes/latest", latest_quotes, methods=["GET"]),
    Route("/v2/stocks/trades/latest", latest_trades, methods=["GET"]),
    Route("/v1beta3/crypto/{loc}/bars", bars, methods=["GET"]),
    Route("/v1beta3/crypto/{loc}/latest/bars", latest_bars, methods=["GET"]),
    Route("/v1beta3/crypto/{loc}/latest/quotes", latest_quotes, methods=["GET"]),
    Route("/v1beta3/crypto/{loc}/latest/trades", latest_trades, methods=["GET"]),
]
