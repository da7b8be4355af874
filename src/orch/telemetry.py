"""OpenTelemetry wiring: one tracer provider per process, exporter chosen by configuration.

The Temporal client carries `TracingInterceptor`, so every start, signal, query, workflow and
activity becomes a span linked across processes; with `ORCH_OTEL_EXPORTER=none` (the default)
the spans are created but dropped, which costs next to nothing.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from temporalio.contrib.opentelemetry import TracingInterceptor

from orch.config import Settings, TelemetryExporter

_configured = False


def configure_tracing(settings: Settings) -> None:
    """Install the global tracer provider once per process."""
    global _configured
    if _configured:
        return
    _configured = True
    if settings.otel_exporter == TelemetryExporter.NONE:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    if settings.otel_exporter == TelemetryExporter.CONSOLE:
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otel_endpoint)))
    trace.set_tracer_provider(provider)


def tracing_interceptor() -> TracingInterceptor:
    return TracingInterceptor()


def flush_tracing() -> None:
    """Export the spans still buffered: a short-lived process (`orch`) ends before the batch timer fires."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush()
