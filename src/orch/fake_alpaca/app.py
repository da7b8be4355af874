"""The Starlette application of the fake Alpaca server: routes, the gate in front of them, and its lifespan.

Every HTTP request to an Alpaca route passes one gate, in this order: the response is recorded (when
recording is on), an injected fault applies (a broken server fails before it checks anything), the
key headers are checked, and a trading request counts against its account's rate limit (429 beyond
it; every trading answer carries the X-RateLimit-* headers). The admin routes skip the faults and
the rate limit; only the health check skips the keys.

Keys: Trading routes answer 401 to missing or wrong keys, as Alpaca's trading API does; market-data
routes answer 401 to missing keys and 403 to wrong ones, as Alpaca's data API does.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orch.fake_alpaca import admin_api, data_api, rules, trading_api
from orch.fake_alpaca.core import FakeAlpaca, ServedResponse
from orch.fake_alpaca.errors import CODE_FORBIDDEN, CODE_INTERNAL, CODE_UNAUTHORIZED, AlpacaError
from orch.fake_alpaca.faults import Fault
from orch.fake_alpaca.stream import stream_endpoint

log = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 0.05  # how late a scheduled fill may show up when nobody is asking


def api_of(path: str) -> str:
    """Which surface a path belongs to: health, admin, data or trading."""
    if path == "/_fake/health":
        return "health"
    if path.startswith(admin_api.ADMIN_PREFIX):
        return "admin"
    if path.startswith(("/v2/stocks", "/v1beta3/", "/v1beta1/")):
        return "data"
    return "trading"


def _json_error(status: int, code: int, message: str) -> bytes:
    return json.dumps({"code": code, "message": message}).encode()


def _error_body(body: bytes) -> tuple[int | None, str]:
    """(Alpaca's code, message) of an error answer the fake wrote; (None, the text) otherwise."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return None, body.decode(errors="replace")[:200]
    if not isinstance(parsed, dict):
        return None, str(parsed)[:200]
    code = parsed.get("code")
    return (code if isinstance(code, int) else None), str(parsed.get("message", ""))


class AlpacaGate:
    """Pure ASGI middleware: record, inject faults, check keys (see the module docstring)."""

    def __init__(self, app: ASGIApp, fake: FakeAlpaca) -> None:
        self.app = app
        self.fake = fake

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = api_of(scope["path"])
        if api == "health":
            await self.app(scope, receive, send)
            return
        if api in ("trading", "data"):
            send = self._counting_refusals(scope, self._recording(scope, send))
            fault = self.fake.take_fault(api)
            if fault is not None and await self._suffer(fault, send):
                return
        headers = Headers(scope=scope)
        refusal = self._refusal(headers, api)
        if refusal is not None:
            status, code, message = refusal
            await _respond(send, status, _json_error(status, code, message))
            return
        if api == "trading":
            allowance = self.fake.take_request(headers["apca-api-key-id"])
            if not allowance.allowed:
                refused = rules.rate_limited()
                body = _json_error(refused.status, refused.code, refused.message)
                await _respond(send, refused.status, body, allowance.headers())
                return
            send = _adding_headers(send, allowance.headers())
        await self.app(scope, receive, send)

    def _refusal(self, headers: Headers, api: str) -> tuple[int, int, str] | None:
        key, secret = headers.get("apca-api-key-id"), headers.get("apca-api-secret-key")
        if not key or not secret:
            return 401, CODE_UNAUTHORIZED, "request is not authorized"
        key_ok = hmac.compare_digest(key.encode(), self.fake.config.key.encode())
        secret_ok = hmac.compare_digest(secret.encode(), self.fake.config.secret.encode())
        if key_ok and secret_ok:
            return None
        if api == "data":
            return 403, CODE_FORBIDDEN, "forbidden"
        return 401, CODE_UNAUTHORIZED, "request is not authorized"

    async def _suffer(self, fault: Fault, send: Send) -> bool:
        """Apply `fault` to one request; True when it answered the request itself."""
        if fault.kind == "latency":
            await self._wait(fault, fault.seconds or 0, until_released=False)
            return False
        if fault.kind == "hang":
            await self._wait(fault, fault.seconds, until_released=True)
            if not self.fake.closing:
                return False  # released: the server "recovers" and answers
        status = fault.status if fault.kind == "error" else 503
        message = f"{HTTPStatus(status).phrase.lower()} (injected fault)"
        await _respond(send, status, _json_error(status, status * 100_000, message))
        return True

    async def _wait(self, fault: Fault, seconds: float | None, until_released: bool) -> None:
        """Sleep `seconds` (None: forever), cut short by shutdown and, for a hang, by a release."""
        loop = asyncio.get_running_loop()
        deadline = None if seconds is None else loop.time() + seconds
        while not self.fake.closing and not (until_released and fault.released):
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return
            await asyncio.sleep(0.02 if remaining is None else min(0.02, remaining))

    def _counting_refusals(self, scope: Scope, send: Send) -> Send:
        """Count every 4xx and 5xx answer by status and the Alpaca code of its body."""
        status = 0
        chunks: list[bytes] = []

        async def count_and_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status >= 400:
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    code, text = _error_body(b"".join(chunks))
                    self.fake.record_refusal(scope["method"], scope["path"], status, code, text)
            await send(message)

        return count_and_send

    def _recording(self, scope: Scope, send: Send) -> Send:
        if not self.fake.config.record_responses:
            return send
        started: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def record_and_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    headers = Headers(raw=started.get("headers", []))
                    self.fake.record(
                        ServedResponse(
                            method=scope["method"],
                            path=scope["path"],
                            query=scope.get("query_string", b"").decode(),
                            status=started.get("status", 0),
                            content_type=headers.get("content-type", ""),
                            body=b"".join(chunks),
                        )
                    )
            await send(message)

        return record_and_send


async def _respond(
    send: Send, status: int, body: bytes, extra_headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra_headers or [])})
    await send({"type": "http.response.body", "body": body})


def _adding_headers(send: Send, extra_headers: list[tuple[bytes, bytes]]) -> Send:
    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra_headers]}
        await send(message)

    return send_with_headers


# ---- Errors --------------------------------------------------------------------------------------


async def _alpaca_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AlpacaError)
    return JSONResponse(exc.body(), status_code=exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = "endpoint not found" if exc.status_code == 404 else str(exc.detail).lower()
    return JSONResponse({"code": exc.status_code * 100_000, "message": message}, status_code=exc.status_code)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("fake alpaca: unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"code": CODE_INTERNAL, "message": f"internal error: {exc}"}, status_code=500)


# ---- The application -----------------------------------------------------------------------------


def build_app(fake: FakeAlpaca) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        fake.closing = False
        fake.hub.attach(asyncio.get_running_loop())
        tasks = [asyncio.create_task(_housekeeping(fake))]
        if fake.config.tick_interval_seconds:
            tasks.append(asyncio.create_task(_ticker(fake, fake.config.tick_interval_seconds)))
        try:
            yield
        finally:
            fake.closing = True
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            fake.hub.attach(None)

    app = Starlette(
        routes=[
            *trading_api.routes,
            *data_api.routes,
            *admin_api.routes,
            WebSocketRoute("/v2/{feed}", stream_endpoint),
            WebSocketRoute("/v1beta3/crypto/{loc}", stream_endpoint),
        ],
        exception_handlers={
            AlpacaError: _alpaca_error,
            HTTPException: _http_error,
            Exception: _unexpected_error,
        },
        lifespan=lifespan,
    )
    app.state.fake = fake
    app.add_middleware(AlpacaGate, fake=fake)
    return app


async def _housekeeping(fake: FakeAlpaca) -> None:
    while True:
        await asyncio.sleep(HOUSEKEEPING_SECONDS)
        try:
            fake.advance()
        except Exception:
            log.exception("fake alpaca: applying scheduled fills failed")


async def _ticker(fake: FakeAlpaca, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            fake.tick()
        except Exception:
            log.exception("fake alpaca: price tick failed")
