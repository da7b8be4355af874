"""The control API (Starlette): what the workflows' activities call through `HftClient`.

Every route is declared once in `ROUTES`, which both mounts it and describes it in the published
OpenAPI schema (`GET /openapi.json`). Everything but `/health` and `/openapi.json` needs
`Authorization: Bearer <ORCH_HFT_TOKEN>`. Malformed requests get a 4xx whose body says what is
wrong: `{"error": "...", "details": [{"loc": "...", "msg": "..."}]}`.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from orch.contracts.system import EmergencyLevel
from orch.contracts.trading import (
    FillPage,
    Heartbeat,
    HftStatus,
    KillRequest,
    Order,
    OrderAck,
    OrderIntent,
    PlanAck,
    PlanBatch,
    PlanStatus,
    Position,
    ResumeRequest,
    RiskDecision,
    TradingState,
    TradingStateChange,
    TradingStatus,
)

if TYPE_CHECKING:
    from orch.hft.engine import Engine

PUBLIC_PATHS = frozenset({"/health", "/openapi.json"})
M = TypeVar("M", bound=BaseModel)


class ApiError(Exception):
    def __init__(self, status: int, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or []


def _error(status: int, message: str, details: list[dict[str, Any]] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "details": details or []}, status_code=status)


async def parse_body(request: Request, model: type[M]) -> M:
    raw = await request.body()
    if not raw:
        raise ApiError(400, f"request body is empty: expected a JSON {model.__name__}")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ApiError(400, f"request body is not valid JSON: {error}") from None
    try:
        return model.model_validate(data)
    except ValidationError as error:
        details = [
            {"loc": ".".join(str(part) for part in e["loc"]) or "(body)", "msg": e["msg"], "type": e["type"]}
            for e in error.errors(include_url=False)
        ]
        summary = "; ".join(f"{d['loc']}: {d['msg']}" for d in details)
        raise ApiError(422, f"invalid {model.__name__}: {summary}", details) from None


def _int_query(request: Request, name: str, default: int, minimum: int = 0, maximum: int = 10_000) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"query parameter {name!r} must be an integer, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ApiError(400, f"query parameter {name!r} must be between {minimum} and {maximum}, got {value}")
    return value


def _json(model: BaseModel | list[BaseModel], status: int = 200) -> Response:
    if isinstance(model, list):
        body = "[" + ",".join(m.model_dump_json() for m in model) + "]"
    else:
        body = model.model_dump_json()
    return Response(body, status_code=status, media_type="application/json")


# ---- Authentication ------------------------------------------------------------------------------


class BearerTokenMiddleware:
    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in PUBLIC_PATHS:
            supplied = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(supplied, self.expected):
                message = "missing bearer token" if not supplied else "wrong bearer token"
                response = _error(401, f"{message}: send 'Authorization: Bearer <ORCH_HFT_TOKEN>'")
                response.headers["WWW-Authenticate"] = "Bearer"
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# ---- Routes --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    summary: str
    handler: Callable[[Engine, Request], Awaitable[Response]]
    body: type[BaseModel] | None = None
    response: Any = None
    query: tuple[tuple[str, str], ...] = ()


async def health(engine: Engine, request: Request) -> Response:
    return JSONResponse(
        {"status": "ok", "state": engine.gate.state.value, "account": engine.settings.account}
    )


async def status(engine: Engine, request: Request) -> Response:
    return _json(engine.status())


async def get_state(engine: Engine, request: Request) -> Response:
    return _json(engine.gate.status())


async def set_state(engine: Engine, request: Request) -> Response:
    change = await parse_body(request, TradingStateChange)
    if change.state is TradingState.ACTIVE:
        return await _resume(engine, change.reason, change.requested_by)
    level = EmergencyLevel.HALT if change.state is TradingState.HALTED else EmergencyLevel.REDUCE_ONLY
    engine.kill(level, change.reason, change.requested_by)
    return _json(engine.gate.status())


async def positions(engine: Engine, request: Request) -> Response:
    return _json(engine.portfolio.snapshot())


async def orders(engine: Engine, request: Request) -> Response:
    open_only = request.query_params.get("open", "true").lower()
    if open_only not in ("true", "false"):
        raise ApiError(400, f"query parameter 'open' must be true or false, got {open_only!r}")
    limit = _int_query(request, "limit", 500, 1, 10_000)
    if open_only == "true":
        return _json(list(engine.portfolio.open_orders.values())[:limit])
    return _json(engine.journal.orders(limit=limit))


async def submit_order(engine: Engine, request: Request) -> Response:
    intent = await parse_body(request, OrderIntent)
    if intent.order_type.value == "limit" and intent.limit_price is None:
        raise ApiError(422, "invalid OrderIntent: limit_price: a limit order needs a limit_price")
    order, denial = engine.router.submit(
        intent.symbol,
        intent.side,
        intent.quantity,
        intent.order_type,
        intent.limit_price,
        intent.source,
        plan_id=intent.plan_id,
        reduce_only=intent.reduce_only,
        idempotency_key=intent.idempotency_key,
    )
    if denial is not None:
        reason, detail = denial
        return _json(
            OrderAck(accepted=False, decision=RiskDecision(approved=False, reason=reason, detail=detail))
        )
    return _json(OrderAck(accepted=True, order=order, decision=RiskDecision(approved=True)))


async def cancel_order(engine: Engine, request: Request) -> Response:
    client_order_id = request.path_params["client_order_id"]
    if not engine.router.cancel(client_order_id):
        raise ApiError(404, f"no open order {client_order_id!r}")
    return JSONResponse({"cancelling": client_order_id}, status_code=202)


async def fills(engine: Engine, request: Request) -> Response:
    since = _int_query(request, "since", 0, 0, 2**62)
    limit = _int_query(request, "limit", 500, 1, 10_000)
    page = engine.journal.fills_since(since, limit)
    return _json(FillPage(fills=page, next_cursor=page[-1].sequence if page else since))


async def metrics(engine: Engine, request: Request) -> Response:
    figures = engine.metrics()
    if request.query_params.get("format") == "prometheus":
        lines = []
        for name, value in figures.items():
            base, _, labels = name.partition("{")
            label_text = ""
            if labels:
                key, _, label_value = labels.rstrip("}").partition("=")
                label_text = f'{{{key}="{label_value}"}}'
            lines.append(f"orch_hft_{base}{label_text} {value}")
        return PlainTextResponse("\n".join(lines) + "\n")
    return JSONResponse(figures)


async def receive_plans(engine: Engine, request: Request) -> Response:
    batch = await parse_body(request, PlanBatch)
    accepted, rejected = [], {}
    now = engine.wall_clock()
    for plan in batch.plans:
        refusal = engine.tier2.accept(plan, now)
        if refusal is None:
            accepted.append(plan.plan_id)
        else:
            rejected[plan.plan_id] = refusal
    return _json(PlanAck(accepted=accepted, rejected=rejected))


async def list_plans(engine: Engine, request: Request) -> Response:
    return _json(
        [
            PlanStatus(plan=s.plan, status=s.status, exit_reason=s.exit_reason)
            for s in engine.tier2.plans.values()
        ]
    )


async def kill(engine: Engine, request: Request) -> Response:
    body = await parse_body(request, KillRequest)
    engine.kill(body.level, body.reason, body.requested_by)
    return _json(engine.gate.status())


async def _resume(engine: Engine, reason: str, requested_by: str) -> Response:
    if not engine.gate.reconciled:
        raise ApiError(409, "cannot resume: reconciliation with the broker is not clean yet")
    engine.resume(reason, requested_by)
    return _json(engine.gate.status())


async def resume(engine: Engine, request: Request) -> Response:
    body = await parse_body(request, ResumeRequest)
    return await _resume(engine, body.reason, body.requested_by)


async def heartbeat(engine: Engine, request: Request) -> Response:
    body = await parse_body(request, Heartbeat)
    engine.heartbeat(body.sender)
    return _json(engine.gate.status())


ROUTES: tuple[Endpoint, ...] = (
    Endpoint("GET", "/health", "Liveness (no token needed)", health),
    Endpoint("GET", "/status", "Everything `orch hft status` shows", status, response=HftStatus),
    Endpoint("GET", "/state", "The risk gate's trading state", get_state, response=TradingStatus),
    Endpoint(
        "POST",
        "/state",
        "Set the trading state (ACTIVE resumes)",
        set_state,
        TradingStateChange,
        TradingStatus,
    ),
    Endpoint("GET", "/positions", "Positions", positions, response=list[Position]),
    Endpoint(
        "GET",
        "/orders",
        "Orders (open ones by default)",
        orders,
        response=list[Order],
        query=(("open", "boolean"), ("limit", "integer")),
    ),
    Endpoint(
        "POST", "/orders", "Submit an order intent through the risk gate", submit_order, OrderIntent, OrderAck
    ),
    Endpoint("DELETE", "/orders/{client_order_id}", "Cancel an open order (always allowed)", cancel_order),
    Endpoint(
        "GET",
        "/fills",
        "Fills after a journal cursor",
        fills,
        response=FillPage,
        query=(("since", "integer"), ("limit", "integer")),
    ),
    Endpoint("GET", "/metrics", "Counters and latency figures", metrics, query=(("format", "string"),)),
    Endpoint("POST", "/plans", "Strategy plans from the trading cycle", receive_plans, PlanBatch, PlanAck),
    Endpoint("GET", "/plans", "Plans and where each stands", list_plans, response=list[PlanStatus]),
    Endpoint("POST", "/kill", "Emergency stop at a level, with a reason", kill, KillRequest, TradingStatus),
    Endpoint("POST", "/resume", "Trade again after a kill", resume, ResumeRequest, TradingStatus),
    Endpoint(
        "POST",
        "/heartbeat",
        "The orchestrator is alive (dead man's switch)",
        heartbeat,
        Heartbeat,
        TradingStatus,
    ),
)


# ---- OpenAPI -------------------------------------------------------------------------------------


def openapi_schema() -> dict[str, Any]:
    models: set[type[BaseModel]] = set()
    for endpoint in ROUTES:
        for declared in (endpoint.body, endpoint.response):
            inner = getattr(declared, "__args__", (declared,))[0]
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                models.add(inner)
    _, definitions = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}",
    )
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in ROUTES:
        operation: dict[str, Any] = {
            "summary": endpoint.summary,
            "operationId": endpoint.handler.__name__,
            "responses": {"200": {"description": "OK"}, "401": {"description": "missing or wrong token"}},
        }
        if endpoint.path in PUBLIC_PATHS:
            operation["security"] = []
        if endpoint.response is not None:
            schema = TypeAdapter(endpoint.response).json_schema(ref_template="#/components/schemas/{model}")
            schema.pop("$defs", None)
            operation["responses"]["200"]["content"] = {"application/json": {"schema": schema}}
        if endpoint.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{endpoint.body.__name__}"}}
                },
            }
            operation["responses"]["400"] = {"description": "body is not JSON"}
            operation["responses"]["422"] = {"description": "body does not match the schema"}
        parameters = [
            {"name": name, "in": "query", "required": False, "schema": {"type": kind}}
            for name, kind in endpoint.query
        ]
        if "{client_order_id}" in endpoint.path:
            parameters.append(
                {"name": "client_order_id", "in": "path", "required": True, "schema": {"type": "string"}}
            )
        if parameters:
            operation["parameters"] = parameters
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "orch hft control API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


# ---- The application -----------------------------------------------------------------------------


def create_app(engine: Engine, token: str) -> Starlette:
    schema = openapi_schema()

    def bind(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            return await endpoint.handler(engine, request)

        return handle

    async def serve_schema(request: Request) -> Response:
        return JSONResponse(schema)

    async def api_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, ApiError)
        return _error(error.status, error.message, error.details)

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        return _error(error.status_code, f"{error.detail}: {request.method} {request.url.path}")

    routes = [Route(e.path, bind(e), methods=[e.method]) for e in ROUTES]
    routes.append(Route("/openapi.json", serve_schema, methods=["GET"]))
    return Starlette(
        routes=routes,
        middleware=[Middleware(BearerTokenMiddleware, token=token)],
        exception_handlers={ApiError: api_error, HTTPException: http_error},
    )
