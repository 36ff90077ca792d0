"""OTLP/HTTP export for the demo and `replay`: to `--otlp-endpoint`, else where the standard variables point."""

from __future__ import annotations

import os
from typing import Optional

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

_ENV = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def add_otlp(provider: TracerProvider, endpoint: Optional[str]) -> Optional[str]:
    """Add an OTLP/HTTP exporter when an endpoint is given or configured; returns where spans go (None: nowhere)."""
    if endpoint is None and not any(os.environ.get(name) for name in _ENV):
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    if endpoint is not None:
        endpoint = endpoint.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
    exporter = OTLPSpanExporter(endpoint=endpoint)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return endpoint or getattr(exporter, "_endpoint", "the OTEL_EXPORTER_OTLP_* endpoint")
