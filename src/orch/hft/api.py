"""The control API (Starlette): what the workflows' activities call through `HftClient`.

Every route is declared once in `ROUTES`, which both mounts it and describes it in the published
OpenAPI schema (`GET /openapi.json`), its query parameters and every answer it can give included,
so what the schema calls valid the server accepts and what it refuses the schema documents.
Everything but `/health` and `/openapi.json` needs `Authorization: Bearer <ORCH_HFT_TOKEN>`.
Malformed requests get a 4xx whose body says what is wrong, with a machine-readable `RefusalCode`:
`{"error": "...", "code": "invalid_body", "details": [{"loc": "...", "msg": "..."}]}`.

Bodies are parsed strictly (pydantic's strict mode on the JSON itself): no string for a number or
a boolean, no 0 or 1 for false or true, no NaN or Infinity, and only `application/json`. A lax
parse once turned `{"confirm": "yes"}` into true.
"""

from __future__ import annotations

import hmac
import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from orch.contracts.errors import RefusalCode
from orch.contracts.system import EmergencyLevel
from orch.contracts.trading import (
    FillPage,
    Heartbeat,
    HftStatus,
    KillAnswer,
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
from orch.hft.instruments import Instruments, clip

if TYPE_CHECKING:
    from orch.hft.engine import Engine

PUBLIC_PATHS = frozenset({"/health", "/openapi.json"})
M = TypeVar("M", bound=BaseModel)


# The HTTP status of each refusal the API answers with (plan refusals travel inside a 200's PlanAck).
REFUSAL_STATUS: dict[RefusalCode, int] = {
    RefusalCode.UNAUTHORIZED: 401,
    RefusalCode.MALFORMED_REQUEST: 400,
    RefusalCode.UNSUPPORTED_MEDIA_TYPE: 415,
    RefusalCode.INVALID_BODY: 422,
    RefusalCode.INVALID_INSTRUMENT: 422,
    RefusalCode.NO_SUCH_ROUTE: 404,
    RefusalCode.METHOD_NOT_ALLOWED: 405,
    RefusalCode.NO_SUCH_ORDER: 404,
    RefusalCode.ORDER_NOT_OPEN: 409,
    RefusalCode.NOT_RECONCILED: 409,
}


# Starlette's own refusals (no route, wrong method) by their status.
ROUTING_REFUSALS: dict[int, RefusalCode] = {
    404: RefusalCode.NO_SUCH_ROUTE,
    405: RefusalCode.METHOD_NOT_ALLOWED,
}


class ApiError(Exception):
    def __init__(self, code: RefusalCode, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = REFUSAL_STATUS[code]
        self.message = message
        self.details = details or []


def _error(code: RefusalCode, message: str, details: list[dict[str, Any]] | None = None) -> JSONResponse:
    body = {"error": message, "code": code.value, "details": details or []}
    return JSONResponse(body, status_code=REFUSAL_STATUS[code])


class ErrorDetail(BaseModel):
    loc: str
    msg: str
    type: str = ""


class ErrorBody(BaseModel):
    """Every refusal's body."""

    error: str
    code: RefusalCode
    details: list[ErrorDetail] = Field(default_factory=list)


def _not_finite(text: str) -> float:
    raise ValueError(f"{text} is not a number this API accepts: send a finite number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        _not_finite(text)
    return value


async def parse_body(request: Request, model: type[M]) -> M:
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    raw = await request.body()
    if not raw:
        raise ApiError(
            RefusalCode.MALFORMED_REQUEST, f"request body is empty: expected a JSON {model.__name__}"
        )
    try:
        # Also refuses NaN, Infinity and numbers too large for a float (1e400) with a clear word.
        json.loads(raw, parse_constant=_not_finite, parse_float=_finite_float)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ApiError(RefusalCode.MALFORMED_REQUEST, f"request body is not valid JSON: {error}") from None
    except ValueError as error:
        raise ApiError(RefusalCode.INVALID_BODY, f"invalid {model.__name__}: {error}") from None
    if media_type != "application/json":
        raise ApiError(
            RefusalCode.UNSUPPORTED_MEDIA_TYPE,
            f"request body must be application/json, got {clip(media_type or '(no Content-Type)')}",
        )
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as error:
        details = [
            {"loc": ".".join(str(part) for part in e["loc"]) or "(body)", "msg": e["msg"], "type": e["type"]}
            for e in error.errors(include_url=False)
        ]
        summary = "; ".join(f"{d['loc']}: {d['msg']}" for d in details)
        raise ApiError(RefusalCode.INVALID_BODY, f"invalid {model.__name__}: {summary}", details) from None


@dataclass(frozen=True)
class Query:
    """One query parameter: declared once, read by the handler and published in the schema."""

    name: str
    kind: str  # "integer", "boolean" or "string"
    default: Any
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": self.kind, "default": self.default}
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        if self.choices:
            schema["enum"] = list(self.choices)
        return schema

    def read(self, request: Request) -> Any:
        raw = request.query_params.get(self.name)
        if raw is None:
            return self.default
        if self.kind == "boolean":
            if raw not in ("true", "false"):
                raise ApiError(
                    RefusalCode.MALFORMED_REQUEST,
                    f"query parameter {self.name!r} must be true or false, got {clip(raw)}",
                )
            return raw == "true"
        if self.kind == "string":
            if self.choices and raw not in self.choices:
                raise ApiError(
                    RefusalCode.MALFORMED_REQUEST,
                    f"query parameter {self.name!r} must be one of {'|'.join(self.choices)}, got {clip(raw)}",
                )
            return raw
        try:
            value = int(raw)
        except ValueError:
            raise ApiError(
                RefusalCode.MALFORMED_REQUEST,
                f"query parameter {self.name!r} must be an integer, got {clip(raw)}",
            ) from None
        low = self.minimum if self.minimum is not None else -math.inf
        high = self.maximum if self.maximum is not None else math.inf
        if not low <= value <= high:
            raise ApiError(
                RefusalCode.MALFORMED_REQUEST,
                f"query parameter {self.name!r} must be from {self.minimum} to {self.maximum}, got {value}",
            )
        return value


OPEN_ONLY = Query("open", "boolean", True)
ORDER_LIMIT = Query("limit", "integer", 500, 1, 10_000)
FILL_CURSOR = Query("since", "integer", 0, 0, 2**62)
FILL_LIMIT = Query("limit", "integer", 500, 1, 10_000)
METRICS_FORMAT = Query("format", "string", "json", choices=("json", "prometheus"))


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
                response = _error(
                    RefusalCode.UNAUTHORIZED, f"{message}: send 'Authorization: Bearer <ORCH_HFT_TOKEN>'"
                )
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
    query: tuple[Query, ...] = ()
    status: int = 200
    # Refusals beyond the ones every route can give (401; 400, 415 and 422 with a body or query).
    refusals: dict[int, str] = field(default_factory=dict)


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
    limit = ORDER_LIMIT.read(request)
    if OPEN_ONLY.read(request):
        return _json(list(engine.portfolio.open_orders.values())[:limit])
    return _json(engine.journal.orders(limit=limit))


async def submit_order(engine: Engine, request: Request) -> Response:
    intent = await parse_body(request, OrderIntent)
    # What no limit can make valid is a wrong request (422), not a risk denial (200, not accepted).
    problem = engine.instruments.problem(intent.symbol, intent.quantity, intent.limit_price)
    if problem is not None:
        raise ApiError(RefusalCode.INVALID_INSTRUMENT, f"invalid OrderIntent: {problem}")
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
        known = engine.journal.order(client_order_id)
        if known is not None:
            raise ApiError(
                RefusalCode.ORDER_NOT_OPEN,
                f"order {clip(client_order_id)} is {known.status.value}: nothing to cancel",
            )
        raise ApiError(RefusalCode.NO_SUCH_ORDER, f"no order {clip(client_order_id)}")
    return JSONResponse({"cancelling": client_order_id}, status_code=202)


async def fills(engine: Engine, request: Request) -> Response:
    since = FILL_CURSOR.read(request)
    limit = FILL_LIMIT.read(request)
    page = engine.journal.fills_since(since, limit)
    return _json(FillPage(fills=page, next_cursor=page[-1].sequence if page else since))


async def metrics(engine: Engine, request: Request) -> Response:
    figures = engine.metrics()
    if METRICS_FORMAT.read(request) == "prometheus":
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
    return _json(engine.kill(body.level, body.reason, body.requested_by))


async def _resume(engine: Engine, reason: str, requested_by: str) -> Response:
    if not engine.gate.reconciled:
        raise ApiError(
            RefusalCode.NOT_RECONCILED, "cannot resume: reconciliation with the broker is not clean yet"
        )
    engine.resume(reason, requested_by)
    return _json(engine.gate.status())


async def resume(engine: Engine, request: Request) -> Response:
    body = await parse_body(request, ResumeRequest)
    return await _resume(engine, body.reason, body.requested_by)


async def heartbeat(engine: Engine, request: Request) -> Response:
    body = await parse_body(request, Heartbeat)
    engine.heartbeat(body.sender)
    return _json(engine.gate.status())


class HealthAnswer(BaseModel):
    status: str
    state: TradingState
    account: str


class CancelAck(BaseModel):
    cancelling: str


NOT_RECONCILED = {409: "reconciliation with the broker is not clean yet: cannot resume"}

ROUTES: tuple[Endpoint, ...] = (
    Endpoint("GET", "/health", "Liveness (no token needed)", health, response=HealthAnswer),
    Endpoint("GET", "/status", "Everything `orch hft status` shows", status, response=HftStatus),
    Endpoint("GET", "/state", "The risk gate's trading state", get_state, response=TradingStatus),
    Endpoint(
        "POST",
        "/state",
        "Set the trading state (ACTIVE resumes)",
        set_state,
        TradingStateChange,
        TradingStatus,
        refusals=NOT_RECONCILED,
    ),
    Endpoint("GET", "/positions", "Positions", positions, response=list[Position]),
    Endpoint(
        "GET",
        "/orders",
        "Orders (open ones by default)",
        orders,
        response=list[Order],
        query=(OPEN_ONLY, ORDER_LIMIT),
    ),
    Endpoint(
        "POST",
        "/orders",
        "Submit an order intent through the risk gate (a denial is a 200 with accepted false)",
        submit_order,
        OrderIntent,
        OrderAck,
    ),
    Endpoint(
        "DELETE",
        "/orders/{client_order_id}",
        "Cancel an open order (always allowed)",
        cancel_order,
        response=CancelAck,
        status=202,
        refusals={404: "no order with that client_order_id", 409: "the order is no longer open"},
    ),
    Endpoint(
        "GET",
        "/fills",
        "Fills after a journal cursor",
        fills,
        response=FillPage,
        query=(FILL_CURSOR, FILL_LIMIT),
    ),
    Endpoint("GET", "/metrics", "Counters and latency figures", metrics, query=(METRICS_FORMAT,)),
    Endpoint("POST", "/plans", "Strategy plans from the trading cycle", receive_plans, PlanBatch, PlanAck),
    Endpoint("GET", "/plans", "Plans and where each stands", list_plans, response=list[PlanStatus]),
    Endpoint(
        "POST",
        "/kill",
        "Emergency stop at a level, with a reason: cancels what the level forbids (flatten: closes "
        "every position, then halts); answers what it cancelled and what the level still waits for",
        kill,
        KillRequest,
        KillAnswer,
    ),
    Endpoint(
        "POST",
        "/resume",
        "Trade again after a kill",
        resume,
        ResumeRequest,
        TradingStatus,
        refusals=NOT_RECONCILED,
    ),
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

REF_TEMPLATE = "#/components/schemas/{model}"


def _schema_of(declared: Any) -> dict[str, Any]:
    schema = TypeAdapter(declared).json_schema(ref_template=REF_TEMPLATE)
    schema.pop("$defs", None)
    return schema


def _error_answer(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF_TEMPLATE.format(model="ErrorBody")}}},
    }


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    success: dict[str, Any] = {"description": "OK"}
    if endpoint.response is not None:
        success["content"] = {"application/json": {"schema": _schema_of(endpoint.response)}}
    elif endpoint.handler is metrics:
        success["content"] = {
            "application/json": {"schema": {"type": "object", "additionalProperties": {"type": "number"}}},
            "text/plain": {"schema": {"type": "string"}},
        }
    responses: dict[str, Any] = {str(endpoint.status): success}
    operation: dict[str, Any] = {"summary": endpoint.summary, "operationId": endpoint.handler.__name__}
    if endpoint.path in PUBLIC_PATHS:
        operation["security"] = []
    else:
        responses["401"] = _error_answer("missing or wrong bearer token")
    if endpoint.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": REF_TEMPLATE.format(model=endpoint.body.__name__)}}
            },
        }
        responses["400"] = _error_answer("the body is empty or not JSON")
        responses["415"] = _error_answer("the body is not application/json")
        responses["422"] = _error_answer(
            "the body does not match the schema (strictly), or no instrument allows it"
        )
    parameters = [
        {"name": q.name, "in": "query", "required": False, "schema": q.schema()} for q in endpoint.query
    ]
    if parameters:
        responses["400"] = _error_answer("a query parameter is malformed or out of range")
    if "{client_order_id}" in endpoint.path:
        parameters.append(
            {"name": "client_order_id", "in": "path", "required": True, "schema": {"type": "string"}}
        )
    if parameters:
        operation["parameters"] = parameters
    for status_code, description in endpoint.refusals.items():
        responses[str(status_code)] = _error_answer(description)
    operation["responses"] = responses
    return operation


def openapi_schema(instruments: Instruments | None = None) -> dict[str, Any]:
    """The published schema; with `instruments`, order intents also carry this process's symbols
    and their quantity and price rules, so a schema-valid order is one the server takes."""
    models: set[type[BaseModel]] = {ErrorBody}
    for endpoint in ROUTES:
        for declared in (endpoint.body, endpoint.response):
            inner = getattr(declared, "__args__", (declared,))[0]
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                models.add(inner)
    _, definitions = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)], ref_template=REF_TEMPLATE
    )
    schemas = definitions.get("$defs", {})
    if instruments is not None:
        intent = schemas["OrderIntent"]
        rules = instruments.order_schema()
        intent["properties"]["symbol"].update(rules["properties"]["symbol"])
        intent["allOf"] = rules["allOf"]
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in ROUTES:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint)
    paths["/openapi.json"] = {
        "get": {
            "summary": "This schema (no token needed)",
            "operationId": "openapi",
            "security": [],
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "orch hft control API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


# ---- The application -----------------------------------------------------------------------------


def create_app(engine: Engine, token: str) -> Starlette:
    schema = openapi_schema(engine.instruments)

    async def serve_schema(request: Request) -> Response:
        return JSONResponse(schema)

    def bind(endpoints: list[Endpoint]) -> Callable[[Request], Awaitable[Response]]:
        """One route per path, so a 405 names every method the path takes in its Allow header."""
        by_method = {e.method: e for e in endpoints}

        async def handle(request: Request) -> Response:
            endpoint = by_method.get(request.method) or by_method["GET"]  # HEAD is GET without a body
            return await endpoint.handler(engine, request)

        return handle

    async def api_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, ApiError)
        return _error(error.code, error.message, error.details)

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        code = ROUTING_REFUSALS.get(error.status_code, RefusalCode.MALFORMED_REQUEST)
        response = _error(code, f"{error.detail}: {request.method} {clip(request.url.path)}")
        response.headers.update(error.headers or {})  # 405's Allow
        return response

    grouped: dict[str, list[Endpoint]] = {}
    for endpoint in ROUTES:
        grouped.setdefault(endpoint.path, []).append(endpoint)
    routes = [Route(path, bind(group), methods=[e.method for e in group]) for path, group in grouped.items()]
    routes.append(Route("/openapi.json", serve_schema, methods=["GET"]))
    return Starlette(
        routes=routes,
        middleware=[Middleware(BearerTokenMiddleware, token=token)],
        exception_handlers={ApiError: api_error, HTTPException: http_error},
    )
