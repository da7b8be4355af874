"""The fake's own control routes, under `/_fake/admin/` and apart from anything Alpaca serves.

They take the same key headers as the Alpaca routes and are never subject to injected faults, so a
test (or a person with curl) can always steer a server that is "down":

    GET    /_fake/admin/state                      everything: account, orders, positions, fills, prices
    GET    /_fake/admin/refusals                   every refused trading or data request (4xx, 5xx):
                                                    {"total", "reasons": [{"status", "code",
                                                    "message", "count", "last_request"}]}
    GET    /_fake/admin/requests                   trading requests per key: {"limit_per_minute",
                                                    "accounts": {key: {"total", "busiest_minute",
                                                    "first_at", "last_at"}}} (busiest in any 60 s)
    POST   /_fake/admin/reset                      {"starting_cash": 100000}  (body optional)
    POST   /_fake/admin/prices                     {"AAPL": 190.5, "BTC/USD": 60000}
    POST   /_fake/admin/tick                       {"count": 1}: move live prices that many steps
    POST   /_fake/admin/fill-policy                {"mode": "immediate" | "delayed" | "partial" | "manual",
                                                    "delay_seconds", "pieces", "interval_seconds",
                                                    "first_delay_seconds"}
    POST   /_fake/admin/orders/{order_id}/fill     {"qty": 5, "price": 101.0}  (both optional)
    POST   /_fake/admin/clock                      {"at": "2026-12-07T15:00:00Z" | null, "ticking": true}:
                                                    the fake's time (null: the wall clock), frozen
                                                    unless ticking; answers /v2/clock's fields
    POST   /_fake/admin/rules                      {"relaxed": ["wash_trade", ...]}: enforce every
                                                    rule but these ([] for all; see rules.py)
    POST   /_fake/admin/faults                     {"api": "trading" | "data" | "stream" | "all",
                                                    "kind": "hang" | "error" | "latency"
                                                            | "disconnect" | "mute",
                                                    "status": 503, "seconds": null, "count": null}
    DELETE /_fake/admin/faults?api=trading         clear one API's fault (no api: all)
    GET    /_fake/health                           no auth; {"status": "ok"} once the server is up
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orch.fake_alpaca._http import answer, bad_request, fake_of, parse_time, read_json
from orch.fake_alpaca.broker import FillPolicy
from orch.fake_alpaca.rules import parse_rules

ADMIN_PREFIX = "/_fake/"


async def health(request: Request) -> Response:
    return answer({"status": "ok"})


async def state(request: Request) -> Response:
    return answer(fake_of(request).snapshot())


async def refusals(request: Request) -> Response:
    return answer(fake_of(request).refusals())


async def requests(request: Request) -> Response:
    return answer(fake_of(request).requests())


async def reset(request: Request) -> Response:
    body = await read_json(request)
    cash = body.get("starting_cash")
    fake_of(request).reset(None if cash is None else float(cash))
    return answer(fake_of(request).snapshot())


async def set_prices(request: Request) -> Response:
    body = await read_json(request)
    fake = fake_of(request)
    try:
        changed = {symbol: str(fake.set_price(symbol, float(price))) for symbol, price in body.items()}
    except (TypeError, ValueError) as problem:
        raise bad_request(f"invalid price: {problem}") from None
    return answer(changed)


async def tick(request: Request) -> Response:
    body = await read_json(request)
    fake_of(request).tick(int(body.get("count", 1)))
    return answer(fake_of(request).snapshot()["prices"])


async def set_fill_policy(request: Request) -> Response:
    body = await read_json(request)
    try:
        policy = FillPolicy.from_dict(body)
    except (TypeError, ValueError) as problem:
        raise bad_request(str(problem)) from None
    fake_of(request).set_fill_policy(policy)
    return answer(policy.to_dict())


async def fill_order(request: Request) -> Response:
    body = await read_json(request)
    qty, price = body.get("qty"), body.get("price")
    order = fake_of(request).fill_order(
        request.path_params["order_id"],
        None if qty is None else float(qty),
        None if price is None else float(price),
    )
    return answer(order)


async def set_clock(request: Request) -> Response:
    body = await read_json(request)
    ticking = body.get("ticking", True)
    if not isinstance(ticking, bool):
        raise bad_request("ticking must be true or false")
    at = parse_time(body.get("at"), "at")
    fake_of(request).set_clock(at, ticking)
    return answer(fake_of(request).clock_state())


async def relax_rules(request: Request) -> Response:
    body = await read_json(request)
    try:
        relaxed = parse_rules(body.get("relaxed", []))
    except ValueError as problem:
        raise bad_request(str(problem)) from None
    fake_of(request).relax_rules(relaxed)
    return answer({"relaxed": sorted(fake_of(request).relaxed_rules())})


async def inject_fault(request: Request) -> Response:
    body = await read_json(request)
    try:
        injected = fake_of(request).inject_fault(
            api=body.get("api", "all"),
            kind=body.get("kind", "error"),
            status=int(body.get("status", 503)),
            seconds=None if body.get("seconds") is None else float(body["seconds"]),
            count=None if body.get("count") is None else int(body["count"]),
        )
    except (TypeError, ValueError) as problem:
        raise bad_request(str(problem)) from None
    return answer([fault.to_dict() for fault in injected])


async def clear_faults(request: Request) -> Response:
    fake_of(request).clear_faults(request.query_params.get("api"))
    return Response(status_code=204)


routes = [
    Route("/_fake/health", health, methods=["GET"]),
    Route("/_fake/admin/state", state, methods=["GET"]),
    Route("/_fake/admin/refusals", refusals, methods=["GET"]),
    Route("/_fake/admin/requests", requests, methods=["GET"]),
    Route("/_fake/admin/reset", reset, methods=["POST"]),
    Route("/_fake/admin/prices", set_prices, methods=["POST"]),
    Route("/_fake/admin/tick", tick, methods=["POST"]),
    Route("/_fake/admin/fill-policy", set_fill_policy, methods=["POST"]),
    Route("/_fake/admin/orders/{order_id}/fill", fill_order, methods=["POST"]),
    Route("/_fake/admin/clock", set_clock, methods=["POST"]),
    Route("/_fake/admin/rules", relax_rules, methods=["POST"]),
    Route("/_fake/admin/faults", inject_fault, methods=["POST"]),
    Route("/_fake/admin/faults", clear_faults, methods=["DELETE"]),
]
