"""The Trading API routes (`/v2/...` on the paper-trading host), as alpaca-py's `TradingClient` calls them."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orch.fake_alpaca._http import answer, bad_request, fake_of, parse_int, parse_time, read_json
from orch.fake_alpaca.broker import parse_bool, parse_decimal
from orch.fake_alpaca.errors import CODE_NOT_FOUND, AlpacaError

MAX_ORDERS_LISTED = 500  # Alpaca's cap on GET /v2/orders


async def get_account(request: Request) -> Response:
    return answer(fake_of(request).account())


async def get_clock(request: Request) -> Response:
    return answer(fake_of(request).market.alpaca_clock())


async def get_calendar(request: Request) -> Response:
    query = request.query_params
    first, last = (parse_time(query.get(name), name) for name in ("start", "end"))
    if query.get("date_type") not in (None, "", "TRADING"):
        raise bad_request("the fake serves date_type=TRADING only")
    calendar = fake_of(request).market.alpaca_calendar(first and first.date(), last and last.date())
    return answer(calendar)


async def list_assets(request: Request) -> Response:
    wanted_class = request.query_params.get("asset_class")
    assets = [a for a in fake_of(request).assets() if wanted_class in (None, "", a["class"])]
    return answer(assets)


async def get_asset(request: Request) -> Response:
    wanted = request.path_params["symbol_or_asset_id"]
    for asset in fake_of(request).assets():
        if wanted in (asset["symbol"], asset["id"], asset["symbol"].replace("/", "")):
            return answer(asset)
    raise AlpacaError(404, CODE_NOT_FOUND, "asset not found")


# ---- Orders --------------------------------------------------------------------------------------


async def submit_order(request: Request) -> Response:
    payload = await read_json(request)
    fake = fake_of(request)
    with fake.locked():
        return answer(fake.broker.submit(payload).to_alpaca())


async def list_orders(request: Request) -> Response:
    query = request.query_params
    symbols = {s.strip() for s in query.get("symbols", "").split(",") if s.strip()}
    fake = fake_of(request)
    with fake.locked():
        fake.broker.advance()
        orders = fake.broker.list_orders(
            status=query.get("status") or "open",
            limit=min(max(parse_int(query.get("limit"), "limit", 50), 1), MAX_ORDERS_LISTED),
            after=parse_time(query.get("after"), "after"),
            until=parse_time(query.get("until"), "until"),
            direction=query.get("direction") or "desc",
            symbols=symbols or None,
            side=query.get("side") or None,
        )
        parse_bool(query.get("nested"), "nested")  # simple orders have no legs to nest
        return answer([o.to_alpaca() for o in orders])


async def cancel_all_orders(request: Request) -> Response:
    fake = fake_of(request)
    with fake.locked():
        cancelled = fake.broker.cancel_all()
        return answer([{"id": o.id, "status": 200} for o in cancelled], status=207)


async def get_order(request: Request) -> Response:
    parse_bool(request.query_params.get("nested"), "nested")
    fake = fake_of(request)
    with fake.locked():
        fake.broker.advance()
        return answer(fake.broker.get(request.path_params["order_id"]).to_alpaca())


async def get_order_by_client_id(request: Request) -> Response:
    fake = fake_of(request)
    with fake.locked():
        fake.broker.advance()
        client_order_id = request.query_params.get("client_order_id", "")
        return answer(fake.broker.get_by_client_id(client_order_id).to_alpaca())


async def cancel_order(request: Request) -> Response:
    fake = fake_of(request)
    with fake.locked():
        fake.broker.advance()  # an order that has filled meanwhile is no longer cancelable
        fake.broker.cancel(request.path_params["order_id"])
    return Response(status_code=204)


# ---- Positions -----------------------------------------------------------------------------------


async def list_positions(request: Request) -> Response:
    return answer(fake_of(request).positions())


async def get_position(request: Request) -> Response:
    fake = fake_of(request)
    with fake.locked():
        fake.broker.advance()
        held = fake.broker.position(request.path_params["symbol_or_asset_id"])
        return answer(fake.broker.position_to_alpaca(held))


async def close_position(request: Request) -> Response:
    query = request.query_params
    fake = fake_of(request)
    with fake.locked():
        fake.broker.advance()
        order = fake.broker.close_position(
            request.path_params["symbol_or_asset_id"],
            quantity=parse_decimal(query.get("qty"), "qty"),
            percentage=parse_decimal(query.get("percentage"), "percentage"),
        )
        return answer(order.to_alpaca())


async def close_all_positions(request: Request) -> Response:
    cancel_orders = parse_bool(request.query_params.get("cancel_orders"), "cancel_orders")
    fake = fake_of(request)
    with fake.locked():
        fake.broker.advance()
        closed = fake.broker.close_all(cancel_orders)
        body = [
            {"symbol": order.symbol.replace("/", ""), "status": 200, "body": order.to_alpaca()}
            for _position, order in closed
        ]
        return answer(body, status=207)


routes = [
    Route("/v2/account", get_account, methods=["GET"]),
    Route("/v2/clock", get_clock, methods=["GET"]),
    Route("/v2/calendar", get_calendar, methods=["GET"]),
    Route("/v2/assets", list_assets, methods=["GET"]),
    Route("/v2/assets/{symbol_or_asset_id:path}", get_asset, methods=["GET"]),
    Route("/v2/orders", submit_order, methods=["POST"]),
    Route("/v2/orders", list_orders, methods=["GET"]),
    Route("/v2/orders", cancel_all_orders, methods=["DELETE"]),
    Route("/v2/orders:by_client_order_id", get_order_by_client_id, methods=["GET"]),
    Route("/v2/orders/{order_id}", get_order, methods=["GET"]),
    Route("/v2/orders/{order_id}", cancel_order, methods=["DELETE"]),
    Route("/v2/positions", list_positions, methods=["GET"]),
    Route("/v2/positions", close_all_positions, methods=["DELETE"]),
    Route("/v2/positions/{symbol_or_asset_id:path}", get_position, methods=["GET"]),
    Route("/v2/positions/{symbol_or_asset_id:path}", close_position, methods=["DELETE"]),
]
