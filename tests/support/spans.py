"""Reading finished spans: attributes, durations, and the timing checks that hold however loaded the machine is."""

from __future__ import annotations

from typing import Any, Protocol

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.support.scenarios import Reads

#: Clock granularity, for the durations the app's own actions bound from below (see `at_least`).
CLOCK_SLACK_S = 0.005


class Spans:
    """The spans a test produced, with the lookups tests need."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.exporter = exporter

    def all(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def turns(self) -> list[ReadableSpan]:
        return [
            s
            for s in self.all()
            if (s.attributes or {}).get("gen_ai.operation.name") == "invoke_agent" and s.kind is SpanKind.CLIENT
        ]

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        """The direct children of `parent`, in start order."""
        kids = [s for s in self.all() if s.parent is not None and s.parent.span_id == parent.context.span_id]
        return sorted(kids, key=lambda s: s.start_time or 0)

    def turn(self) -> ReadableSpan:
        turns = self.turns()
        assert len(turns) == 1, [(s.name, dict(s.attributes or {})) for s in turns]
        return turns[0]

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.all() if s.name == name]


class HasSpans(Protocol):
    def all(self) -> list[ReadableSpan]: ...


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def seconds(span: ReadableSpan) -> float:
    return ((span.end_time or 0) - (span.start_time or 0)) / 1e9


def at_least(delay_s: float) -> float:
    """The shortest a span (or any interval the app times) can last that opened before the app waited, or before
    the server's script began, and that ends on an event the server sends `delay_s` later: the server cannot send
    it sooner, however loaded the machine, and the span can only last longer. (A span that both opens and ends on
    streamed events has no such bound: the client may read its first event late and its last one at once. Check
    which events it spans instead, with `starts_at` and `ends_at`.)"""
    return delay_s - CLOCK_SLACK_S


def starts_at(span: ReadableSpan, reads: Reads, event_type: str, nth: int = 0) -> None:
    """`span` opened on the `nth` event of `event_type` the app read, not on an earlier or a later one."""
    before, at = reads.window(event_type, nth)
    assert before <= (span.start_time or 0) <= at, (span.name, "starts at", event_type)


def ends_at(span: ReadableSpan, reads: Reads, event_type: str, nth: int = 0) -> None:
    """`span` ended on the `nth` event of `event_type` the app read, not on an earlier or a later one."""
    before, at = reads.window(event_type, nth)
    assert before <= (span.end_time or 0) <= at, (span.name, "ends at", event_type)


def assert_nested(spans: HasSpans) -> None:
    """Every child lies inside its parent's time range."""
    finished = spans.all()
    by_id = {s.context.span_id: s for s in finished}
    for span in finished:
        parent = by_id.get(span.parent.span_id) if span.parent is not None else None
        if parent is not None:
            assert (parent.start_time or 0) <= (span.start_time or 0), (span.name, parent.name)
            assert (span.end_time or 0) <= (parent.end_time or 0), (span.name, parent.name)


def first_chunk_on(turn: ReadableSpan, reads: Reads, event_type: str, nth: int = 0) -> None:
    """The turn's `gen_ai.response.time_to_first_chunk` ends on the `nth` event of `event_type` the app read."""
    ttfc = attrs(turn)["gen_ai.response.time_to_first_chunk"]
    before, at = reads.window(event_type, nth)
    assert before <= (turn.start_time or 0) + round(ttfc * 1e9) <= at, (ttfc, "first chunk on", event_type)


#: Attributes that say when the client saw an event, or which server it talked to: not the tree's shape.
NOT_SHAPE = frozenset({"gen_ai.response.time_to_first_chunk", "server.address", "server.port", "anthropic.beta"})


def tree_shape(spans: list[ReadableSpan], details: bool = False) -> list[tuple[Any, ...]]:
    """Each span as (its path of names from its root, its attributes but NOT_SHAPE), sorted, to compare two traces
    of the same events timing aside; with `details`, its status and span event names too."""
    by_id = {s.context.span_id: s for s in spans}

    def path(span: ReadableSpan) -> tuple[str, ...]:
        parent = by_id.get(span.parent.span_id) if span.parent is not None else None
        return (*path(parent), span.name) if parent is not None else (span.name,)

    rows: list[tuple[Any, ...]] = []
    for span in spans:
        kept = tuple(sorted((k, v) for k, v in (span.attributes or {}).items() if k not in NOT_SHAPE))
        if details:
            rows.append((path(span), span.status.status_code, kept, tuple(e.name for e in span.events)))
        else:
            rows.append((path(span), kept))
    return sorted(rows, key=repr)
