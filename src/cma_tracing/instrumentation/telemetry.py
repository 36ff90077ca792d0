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
    evaluation_events_on_span: bool = True  # each outcome verdict as a `gen_ai.evaluation.result` span event
    evaluation_events_as_logs: bool = False  # ... and/or as a log record (needs `logger`)

    def emit_content(self, span: Span, attributes: Mapping[str, Any], time_ns: int) -> None:
        """One `gen_ai.client.inference.operation.details` log record, in the span's context. Never raises."""
        self.emit_event(A.CONTENT_EVENT_NAME, span, attributes, time_ns)

    def emit_event(self, name: str, span: Span, attributes: Mapping[str, Any], time_ns: int) -> None:
        """One OpenTelemetry log record named `name`, in the span's context. Never raises."""
        if self.logger is None or not attributes:
            return
        try:
            self.logger.emit(
                event_name=name, attributes=dict(attributes), timestamp=time_ns, context=set_span_in_context(span)
            )
        except Exception:
            log_swallowed("Telemetry.emit_event")
