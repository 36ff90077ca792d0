"""OpenTelemetry tracing for Claude Managed Agents: each unit of a session's work becomes an `invoke_agent` span."""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

from .after import TraceSummary, async_trace_session, trace_session
from .instrumentor import ClaudeManagedAgentsInstrumentor
from .version import __version__

__all__ = [
    "ClaudeManagedAgentsInstrumentor",
    "TraceSummary",
    "async_trace_session",
    "instrument",
    "trace_session",
    "uninstrument",
    "__version__",
]


def instrument(
    *,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    logger_provider: Any = None,
    capture_content: Optional[Union[bool, str]] = None,
    max_content_bytes: Optional[int] = None,
    child_spans: Optional[bool] = None,
    orphan_timeout_s: Optional[float] = None,
    redact: Optional[Callable[[Any], Any]] = None,
    fetch_subthreads: Optional[bool] = None,
    evaluation_events: Optional[str] = None,
) -> ClaudeManagedAgentsInstrumentor:
    """Patch the `anthropic` SDK and return the instrumentor. `None` means the global providers and the environment,
    then the defaults: `child_spans=True`, `orphan_timeout_s=300`, `fetch_subthreads=False`, content off,
    `evaluation_events="span"` (each outcome verdict as a span event; `"log"` or `"both"` for log records).

    Idempotent: a second call while instrumented changes nothing (OpenTelemetry logs a warning); to reconfigure,
    `uninstrument()` first.
    """
    instrumentor = ClaudeManagedAgentsInstrumentor()
    instrumentor.instrument(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        logger_provider=logger_provider,
        capture_content=capture_content,
        max_content_bytes=max_content_bytes,
        child_spans=child_spans,
        orphan_timeout_s=orphan_timeout_s,
        redact=redact,
        fetch_subthreads=fetch_subthreads,
        evaluation_events=evaluation_events,
    )
    return instrumentor


def uninstrument() -> None:
    """Remove every patch; open turns end with stop reason `shutdown`."""
    ClaudeManagedAgentsInstrumentor().uninstrument()
