"""The pure core on in-memory exporters, fed plain events at their own stamps: for tests of what a sequence of events
records (the synthetic orders in `cassettes/`, hand-made ones), with no SDK and no I/O."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Optional

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from cma_tracing.config import options_from
from cma_tracing.instrumentation.fields import timestamp_ns
from cma_tracing.instrumentation.session import SessionTracker
from cma_tracing.instrumentor import telemetry_from

CASSETTES = Path(__file__).resolve().parent.parent.parent / "cassettes"


def synthetic(name: str) -> list[dict[str, Any]]:
    lines = (CASSETTES / f"synthetic_{name}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip() and not line.startswith("#")]


class Session:
    """A tracker on in-memory exporters, fed events at their own `processed_at` (a 1 ms step without one)."""

    def __init__(self, agent: Optional[dict[str, Any]] = None, **options: Any) -> None:
        self.spans = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.logs = InMemoryLogRecordExporter()
        logger_provider = LoggerProvider()
        logger_provider.add_log_record_processor(SimpleLogRecordProcessor(self.logs))
        self.metrics = InMemoryMetricReader()
        providers = {
            "tracer_provider": tracer_provider,
            "meter_provider": MeterProvider(metric_readers=[self.metrics]),
            "logger_provider": logger_provider,
        }
        telemetry = telemetry_from(options_from(options), providers)
        self.tracker = SessionTracker(
            "sesn_outcome", telemetry, {"gen_ai.agent.name": "reporter"} if agent is None else agent
        )
        self.now = 10**18

    def feed(self, events: Iterable[dict[str, Any]]) -> None:
        for event in events:
            self.now = max(self.now + 1, timestamp_ns(event.get("processed_at")) or self.now + 10**6)
            self.tracker.on_event(event, self.now)

    def send(self, *events: dict[str, Any], echo: Optional[list[dict[str, Any]]] = None) -> Any:
        send = self.tracker.begin_send(list(events), self.now)
        self.tracker.send_succeeded(send, {"data": echo if echo is not None else list(events)})
        return send

    def turns(self) -> list[ReadableSpan]:
        found = [
            s for s in self.spans.get_finished_spans() if s.kind is SpanKind.CLIENT and s.name.startswith("invoke")
        ]
        return sorted(found, key=lambda s: s.start_time or 0)

    def turn(self) -> ReadableSpan:
        (turn,) = self.turns()
        return turn

    def evaluations(self) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name == "evaluation outcome"]

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name == name]
