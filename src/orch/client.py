"""The one way every process connects to Temporal: the strict pydantic data converter plus tracing."""

from __future__ import annotations

from temporalio.client import Client

from orch.config import Settings, get_settings
from orch.converter import DATA_CONVERTER
from orch.telemetry import configure_tracing, tracing_interceptor


async def connect(settings: Settings | None = None, *, address: str | None = None) -> Client:
    settings = settings or get_settings()
    configure_tracing(settings)
    return await Client.connect(
        address or settings.temporal_address,
        namespace=settings.namespace,
        data_converter=DATA_CONVERTER,
        interceptors=[tracing_interceptor()],
    )
