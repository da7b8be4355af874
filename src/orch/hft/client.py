"""`HftClient`: the typed async client of the control API, for the workflows' activities and the CLI.

Every call has a timeout; an answer other than 2xx raises `HftApiError` with the server's message and
its `RefusalCode` (what a caller switches on), and a process that cannot be reached raises
`HftUnavailable` (retryable).
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

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
    StrategyPlan,
    TradingState,
    TradingStateChange,
    TradingStatus,
)

T = TypeVar("T")


class HftClientError(RuntimeError):
    pass


class HftUnavailable(HftClientError):
    """The process did not answer (down, starting, or too slow). Retryable."""


class HftApiError(HftClientError):
    """The process answered with an error; `status` 4xx means the request itself is wrong, and `code`
    says which refusal it was (None: no code in the answer, as from a proxy in between)."""

    def __init__(
        self,
        status: int,
        message: str,
        details: list[dict[str, Any]] | None = None,
        code: RefusalCode | None = None,
    ) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.details = details or []
        self.code = code


def _refusal_code(value: Any) -> RefusalCode | None:
    try:
        return RefusalCode(value)
    except ValueError:
        return None


class HftClient:
    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8787",
        token: str | None = None,
        timeout_seconds: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=timeout_seconds, transport=transport
        )

    async def __aenter__(self) -> HftClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(
        self, method: str, path: str, answer: Any, body: BaseModel | None = None, params: dict | None = None
    ) -> Any:
        try:
            response = await self._http.request(
                method,
                path,
                content=None if body is None else body.model_dump_json(),
                headers=None if body is None else {"Content-Type": "application/json"},
                params=params,
            )
        except httpx.TransportError as error:
            raise HftUnavailable(f"orch hft at {self._http.base_url} did not answer: {error!r}") from error
        if response.status_code >= 400:
            try:
                payload = response.json()
                raise HftApiError(
                    response.status_code,
                    payload.get("error", response.text),
                    payload.get("details"),
                    _refusal_code(payload.get("code")),
                )
            except ValueError:
                raise HftApiError(response.status_code, response.text) from None
        if answer is None:
            return response.json()
        return TypeAdapter(answer).validate_json(response.content)

    # ---- Reads -----------------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        return await self._call("GET", "/health", None)

    async def status(self) -> HftStatus:
        return await self._call("GET", "/status", HftStatus)

    async def state(self) -> TradingStatus:
        return await self._call("GET", "/state", TradingStatus)

    async def positions(self) -> list[Position]:
        return await self._call("GET", "/positions", list[Position])

    async def orders(self, open_only: bool = True, limit: int = 500) -> list[Order]:
        params = {"open": str(open_only).lower(), "limit": limit}
        return await self._call("GET", "/orders", list[Order], params=params)

    async def fills(self, since: int = 0, limit: int = 500) -> FillPage:
        return await self._call("GET", "/fills", FillPage, params={"since": since, "limit": limit})

    async def metrics(self) -> dict[str, float]:
        return await self._call("GET", "/metrics", None)

    async def plans(self) -> list[PlanStatus]:
        return await self._call("GET", "/plans", list[PlanStatus])

    # ---- Commands --------------------------------------------------------------------------------

    async def send_plans(self, plans: list[StrategyPlan]) -> PlanAck:
        return await self._call("POST", "/plans", PlanAck, PlanBatch(plans=plans))

    async def submit_order(self, intent: OrderIntent) -> OrderAck:
        return await self._call("POST", "/orders", OrderAck, intent)

    async def cancel_order(self, client_order_id: str) -> dict[str, Any]:
        return await self._call("DELETE", f"/orders/{client_order_id}", None)

    async def kill(
        self, level: EmergencyLevel, reason: str, requested_by: str = "orchestrator"
    ) -> KillAnswer:
        return await self._call(
            "POST", "/kill", KillAnswer, KillRequest(level=level, reason=reason, requested_by=requested_by)
        )

    async def resume(self, reason: str, requested_by: str = "orchestrator") -> TradingStatus:
        return await self._call(
            "POST", "/resume", TradingStatus, ResumeRequest(reason=reason, requested_by=requested_by)
        )

    async def set_state(
        self, state: TradingState, reason: str, requested_by: str = "orchestrator"
    ) -> TradingStatus:
        return await self._call(
            "POST",
            "/state",
            TradingStatus,
            TradingStateChange(state=state, reason=reason, requested_by=requested_by),
        )

    async def heartbeat(self, sender: str = "orchestrator") -> TradingStatus:
        return await self._call("POST", "/heartbeat", TradingStatus, Heartbeat(sender=sender))
