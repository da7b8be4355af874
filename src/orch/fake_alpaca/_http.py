"""Small helpers the fake's HTTP handlers share: Alpaca-shaped JSON answers and lenient parameter parsing."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from orch.fake_alpaca.core import FakeAlpaca
from orch.fake_alpaca.errors import CODE_INVALID, AlpacaError

_FRACTION = re.compile(r"(\.\d{6})\d+")  # Python parses microseconds; Alpaca may send nanoseconds


def fake_of(request: Request) -> FakeAlpaca:
    return request.app.state.fake


def answer(data: Any, status: int = 200) -> Response:
    return JSONResponse(data, status_code=status)


def error(status: int, code: int, message: str) -> Response:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def bad_request(message: str) -> AlpacaError:
    return AlpacaError(400, CODE_INVALID, message)


async def read_json(request: Request) -> dict[str, Any]:
    body = await request.body()
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise AlpacaError(400, CODE_INVALID, "request body format is invalid") from None
    if not isinstance(data, dict):
        raise AlpacaError(400, CODE_INVALID, "request body must be a JSON object")
    return data


def parse_time(text: str | None, name: str) -> datetime | None:
    """RFC-3339 (any precision, Z or offset) or YYYY-MM-DD, as Alpaca accepts; naive means UTC."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(_FRACTION.sub(r"\1", text.strip().replace(" ", "+")))
    except ValueError:
        raise bad_request(f"invalid {name}: {text!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_int(text: str | None, name: str, default: int) -> int:
    if text in (None, ""):
        return default
    try:
        return int(text)
    except ValueError:
        raise bad_request(f"invalid {name}: {text!r}") from None


def parse_symbols(text: str | None) -> list[str]:
    symbols = [s.strip() for s in (text or "").split(",") if s.strip()]
    if not symbols:
        raise bad_request("missing symbols")
    return symbols
