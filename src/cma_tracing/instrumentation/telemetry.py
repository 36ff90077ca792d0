"""What the trackers record with: the tracer, and the optional meter, content policy and log emitter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from opentelemetry.trace import Span, Tracer, set_span_in_context

from . import attributes as A
from .content import OFF, ContentPolicy
from .metrics import Metrics
from .safety import log_swallowed


@dataclass(frozen=True)
class Telemetry:
    tracer: Tracer
    child_spans: bool = True
    content: ContentPolicy = field(default=OFF)
    metrics: Optional[Metrics] = None
    logger: Any = None  # an OpenTelemetry `Logger`, for content in log records (EVENT modes)
    fetch_subthreads: bool = False  # fetch subagent threads' own events when a coordinator turn ends (API calls)

    def emit_content(self, span: Span, attributes: Mapping[str, Any], time_ns: int) -> None:
        """One `gen_ai.client.inference.operation.details` log record, in the span's context. Never raises."""
        if self.logger is None or not attributes:
            return
        try:
            self.logger.emit(
                event_name=A.CONTENT_EVENT_NAME,
                attributes=dict(attributes),
                timestamp=time_ns,
                context=set_span_in_context(span),
            )
        except Exception:
            log_swallowed("Telemetry.emit_content")
