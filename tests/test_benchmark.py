"""The benchmark measures what it says: every variant replays the whole slice, and the "OpenTelemetry alone" floor
makes the very spans and metric records cma-tracing makes for the same events, with none of its code running."""

from __future__ import annotations

from collections import Counter
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import cma_tracing
from benchmarks.floor import record_calls
from benchmarks.replay import Drop, SLICE_TURNS, slice_seconds, variants
from benchmarks.workload import Replay, sse_body

TURNS = 3


def _telemetry() -> tuple[TracerProvider, InMemorySpanExporter, MeterProvider, InMemoryMetricReader]:
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracer_provider, exporter, MeterProvider(metric_readers=[reader]), reader


def _shape(exporter: InMemorySpanExporter) -> Counter[Any]:
    """Each span's name, kind, parent's name, attribute names and status, counted."""
    spans = exporter.get_finished_spans()
    names = {s.context.span_id: s.name for s in spans}
    return Counter(
        (
            s.name,
            s.kind,
            names.get(s.parent.span_id) if s.parent else None,
            tuple(sorted(s.attributes or {})),
            s.status.status_code,
        )
        for s in spans
    )


def _record_counts(reader: InMemoryMetricReader) -> dict[str, int]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        metric.name: sum(int(getattr(point, "count", 0)) for point in metric.data.data_points)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        if scope.scope.name != "opentelemetry-sdk"  # sdk 1.41 records its own collection duration, 1.42+ does not
        for metric in scope.metrics
    }


def test_the_floor_makes_the_same_spans_and_records_as_cma_tracing() -> None:
    body = sse_body(TURNS, "shape")
    traced_provider, traced_spans, traced_meter, traced_reader = _telemetry()
    cma_tracing.instrument(tracer_provider=traced_provider, meter_provider=traced_meter)
    try:
        assert sum(1 for _ in _replay(body).events("sesn_traced")) == TURNS * 20
    finally:
        cma_tracing.uninstrument()

    floor_provider, floor_spans, floor_meter, floor_reader = _telemetry()
    floor = record_calls(child_spans=True, metrics=True).bind(floor_provider, floor_meter)
    assert sum(1 for _ in floor.events(_replay(body), "sesn_floor")) == TURNS * 20

    assert _shape(floor_spans) == _shape(traced_spans)
    assert len(floor_spans.get_finished_spans()) == TURNS * 6  # a turn, 3 model requests, 2 tool calls
    assert _record_counts(floor_reader) == _record_counts(traced_reader)
    assert sum(_record_counts(floor_reader).values()) == TURNS * 13


def test_the_turn_spans_only_floor_makes_one_span_per_turn_and_no_records() -> None:
    """The workload is read as a watching process reads it: `session.status_running` opens a `resume` turn, which
    adopts the user.message that follows (one `set_attribute`: its trigger)."""
    floor = record_calls(child_spans=False, metrics=False)
    calls = [what for per_event in floor.calls.values() for what, _, _ in per_event]
    assert Counter(calls) == Counter({"start": 1, "set_attribute": 1, "set_attributes": 1, "set_status": 1, "end": 1})


def test_every_variant_replays_the_whole_slice() -> None:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(Drop())
    body = sse_body(SLICE_TURNS, "smoke")
    for variant in variants(tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()])):
        assert slice_seconds(variant, tracer_provider, body, f"sesn_{variant.name}") > 0  # it asserts the count itself


def _replay(body: bytes) -> Replay:
    replay = Replay()
    replay.load(body)
    return replay
