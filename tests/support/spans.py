"""Reading finished spans: attributes, durations, nesting."""

from __future__ import annotations

from typing import Any, Protocol

from opentelemetry.sdk.trace import ReadableSpan


class HasSpans(Protocol):
    def all(self) -> list[ReadableSpan]: ...


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def seconds(span: ReadableSpan) -> float:
    return ((span.end_time or 0) - (span.start_time or 0)) / 1e9


def assert_nested(spans: HasSpans) -> None:
    """Every child lies inside its parent's time range."""
    finished = spans.all()
    by_id = {s.context.span_id: s for s in finished}
    for span in finished:
        parent = by_id.get(span.parent.span_id) if span.parent is not None else None
        if parent is not None:
            assert (parent.start_time or 0) <= (span.start_time or 0), (span.name, parent.name)
            assert (span.end_time or 0) <= (parent.end_time or 0), (span.name, parent.name)
