"""End to end over the wire: a real turn through the real SDK and the loopback API, exported by the standard OTLP/HTTP
exporters to an in-process receiver, then checked as a collector decodes it (tree, kinds, typed attributes, scope,
resource, status), and a collector answering errors never reaching the app."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Optional

import anthropic
import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import cma_tracing
from cma_tracing.demo.loopback import FakeCMAServer
from tests.support.otlp_receiver import OTLPReceiver, ReceivedSpan, running_receiver
from tests.support.scenarios import message, queue_turn

SESSION = "sesn_e2e"
EXPORT_TIMEOUT_S = 2.0  # per export, retries included: a misbehaving exporter cannot hang the suite
TRACE_EXPORTER_LOGGER = "opentelemetry.exporter.otlp.proto.http.trace_exporter"


@dataclass
class Pipeline:
    """cma-tracing instrumented on a provider that exports over OTLP/HTTP and also keeps spans in memory."""

    provider: TracerProvider
    local: InMemorySpanExporter
    meter_provider: Optional[MeterProvider]

    def flush(self) -> None:
        cma_tracing.uninstrument()
        assert self.provider.force_flush(timeout_millis=5_000)
        if self.meter_provider is not None:
            assert self.meter_provider.force_flush(timeout_millis=5_000)


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    with running_receiver() as rx:
        yield rx


@pytest.fixture
def pipeline(receiver: OTLPReceiver) -> Iterator[Any]:
    """`pipeline(processor="batch"|"simple", compression=..., metrics=False)`: instruments; torn down after the test."""
    made: list[Pipeline] = []

    def _make(
        processor: str = "batch", compression: Compression = Compression.NoCompression, metrics: bool = False
    ) -> Pipeline:
        exporter = OTLPSpanExporter(
            endpoint=receiver.url + "/v1/traces", compression=compression, timeout=EXPORT_TIMEOUT_S
        )
        provider = TracerProvider(resource=Resource.create({"service.name": "e2e"}))
        local = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(local))
        remote: SpanProcessor
        if processor == "batch":
            remote = BatchSpanProcessor(exporter, schedule_delay_millis=50)
        else:
            remote = SimpleSpanProcessor(exporter)
        provider.add_span_processor(remote)
        meter_provider = None
        if metrics:
            reader = PeriodicExportingMetricReader(
                OTLPMetricExporter(endpoint=receiver.url + "/v1/metrics", timeout=EXPORT_TIMEOUT_S),
                export_interval_millis=60_000,  # only force_flush exports
            )
            meter_provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "e2e"}))
        cma_tracing.instrument(tracer_provider=provider, meter_provider=meter_provider)
        made.append(Pipeline(provider, local, meter_provider))
        return made[-1]

    yield _make
    if cma_tracing.ClaudeManagedAgentsInstrumentor().is_instrumented_by_opentelemetry:
        cma_tracing.uninstrument()
    for p in made:
        p.provider.shutdown()
        if p.meter_provider is not None:
            p.meter_provider.shutdown()


def run_turn(client: anthropic.Anthropic, server: FakeCMAServer) -> tuple[list[dict[str, Any]], list[str]]:
    """Learn the agent, queue one whole turn (two model requests around a bash call), send, read the stream to idle.

    Returns the events the server streamed and the ids of the events the app read."""
    client.beta.sessions.create(agent="a", environment_id="e")
    server.set_session(SESSION)
    client.beta.sessions.retrieve(SESSION)
    streamed = queue_turn(server, SESSION, "sevt_e2e_user")
    client.beta.sessions.events.send(SESSION, events=[message("what is 2+2?")])
    read: list[str] = []
    with client.beta.sessions.events.stream(SESSION) as stream:
        for event in stream:
            read.append(event.id)
            if event.type == "session.status_idle" and event.stop_reason.type != "requires_action":
                break
    return streamed, read


def by_name(spans: list[ReceivedSpan]) -> dict[str, list[ReceivedSpan]]:
    out: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        out.setdefault(span.name, []).append(span)
    return out


def wire_value(value: Any) -> Any:
    """What an SDK attribute value looks like once decoded from OTLP: sequences become lists."""
    return list(value) if isinstance(value, (tuple, list)) else value


def wire_kind(span: ReadableSpan) -> str:
    return span.kind.name


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip], ids=["plain", "gzip"])
def test_a_turn_exported_over_otlp_http_decodes_as_the_whole_tree_with_typed_attributes(
    pipeline: Any,
    receiver: OTLPReceiver,
    server: FakeCMAServer,
    loop_client: anthropic.Anthropic,
    compression: Compression,
) -> None:
    p = pipeline(compression=compression)
    streamed, read = run_turn(loop_client, server)
    assert read == [e["id"] for e in streamed]
    p.flush()

    requests = receiver.received("/v1/traces")
    assert requests
    assert all(r.answered == 200 and r.error is None for r in requests), [(r.answered, r.error) for r in requests]
    assert all(r.headers.get("content-type") == "application/x-protobuf" for r in requests)
    if compression is Compression.Gzip:
        assert all(r.headers.get("content-encoding") == "gzip" and r.body[:2] == b"\x1f\x8b" for r in requests)

    spans = receiver.spans()
    named = by_name(spans)
    assert sorted(named) == ["chat claude-haiku-4-5", "execute_tool bash", "invoke_agent loopback-agent-bash"]
    (turn,) = named["invoke_agent loopback-agent-bash"]
    chats = named["chat claude-haiku-4-5"]
    (tool,) = named["execute_tool bash"]
    assert len(chats) == 2 and len(spans) == 4

    # The tree: one trace, the turn its root, the three children directly under it, in the order the agent worked.
    assert {s.trace_id for s in spans} == {turn.trace_id}
    assert len(turn.trace_id) == 32 and turn.trace_id != "0" * 32
    assert turn.parent_span_id is None
    assert len({s.span_id for s in spans}) == 4
    children = sorted([*chats, tool], key=lambda s: s.start_ns)
    assert [s.name for s in children] == ["chat claude-haiku-4-5", "execute_tool bash", "chat claude-haiku-4-5"]
    for child in children:
        assert child.parent_span_id == turn.span_id
        assert turn.start_ns <= child.start_ns <= child.end_ns <= turn.end_ns

    # Kinds.
    assert turn.kind == "CLIENT"
    assert [c.kind for c in chats] == ["CLIENT", "CLIENT"]
    assert tool.kind == "INTERNAL"

    # Scope, resource, status.
    for span in spans:
        assert span.scope_name == "cma_tracing"
        assert span.scope_version == cma_tracing.__version__
        assert span.resource["service.name"] == "e2e"
        assert span.resource["telemetry.sdk.language"] == "python"
        assert span.dropped_attributes == 0
    assert (turn.status_code, turn.status_message) == ("OK", "")
    assert {c.status_code for c in children} == {"UNSET"}

    # Attribute types as a backend sees them: ints are ints (not doubles or strings), arrays are arrays of strings.
    t = turn.attributes
    for key in (
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_write.input_tokens",
        "anthropic.turn.index",
        "anthropic.turn.tool_calls",
        "anthropic.turn.model_requests",
        "anthropic.turn.events",
        "anthropic.turn.unknown_events",
        "server.port",
    ):
        assert type(t[key]) is int, (key, t[key])
    assert t["gen_ai.usage.input_tokens"] == 200 and t["gen_ai.usage.output_tokens"] == 20
    assert t["anthropic.turn.tool_calls"] == 1 and t["anthropic.turn.model_requests"] == 2
    assert t["anthropic.turn.index"] == 1
    assert t["server.port"] == int(server.base_url.rsplit(":", 1)[1])
    assert t["anthropic.turn.tool_names"] == ["bash"]
    assert t["gen_ai.response.finish_reasons"] == ["stop"]
    assert t["anthropic.agent.tools"] == ["bash"]
    assert isinstance(t["anthropic.beta"], list) and all(isinstance(v, str) for v in t["anthropic.beta"])
    ttfc = t["gen_ai.response.time_to_first_chunk"]
    assert type(ttfc) is float and 0 < ttfc * 1e9 <= turn.end_ns - turn.start_ns  # seconds, within the turn
    assert t["anthropic.turn.stop_reason"] == "end_turn"
    assert t["gen_ai.operation.name"] == "invoke_agent"
    assert t["gen_ai.conversation.id"] == t["anthropic.session.id"] == SESSION
    assert t["gen_ai.agent.name"] == "loopback-agent-bash"
    assert t["gen_ai.request.model"] == "claude-haiku-4-5"
    assert t["http.route"] == "/v1/sessions/{session_id}/events"
    for chat in chats:
        assert chat.attributes == {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-haiku-4-5",
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 10,
            "gen_ai.usage.cache_read.input_tokens": 0,
            "gen_ai.usage.cache_write.input_tokens": 0,
        }
        assert all(type(v) is int for k, v in chat.attributes.items() if k.startswith("gen_ai.usage."))
    assert tool.attributes == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.tool.name": "bash",
        "gen_ai.tool.call.id": streamed[4]["id"],
        "gen_ai.tool.type": "extension",
        "anthropic.tool.permission": "allow",
    }
    # Content is off by default: nothing of what was asked crossed the wire.
    assert all(b"2+2" not in r.body for r in requests if compression is Compression.NoCompression)

    # The wire carries exactly what the SDK recorded: same ids, parents, kinds, statuses, times and attributes.
    local = {format(s.context.span_id, "016x"): s for s in p.local.get_finished_spans()}
    assert set(local) == {s.span_id for s in spans}
    for span in spans:
        sdk = local[span.span_id]
        assert span.name == sdk.name
        assert span.trace_id == format(sdk.context.trace_id, "032x")
        assert span.parent_span_id == (format(sdk.parent.span_id, "016x") if sdk.parent is not None else None)
        assert span.kind == wire_kind(sdk)
        assert span.status_code == sdk.status.status_code.name
        assert (span.start_ns, span.end_ns) == (sdk.start_time, sdk.end_time)
        assert span.attributes == {k: wire_value(v) for k, v in (sdk.attributes or {}).items()}
        assert [name for name, _ in span.events] == [e.name for e in sdk.events]


def test_the_four_histograms_arrive_over_otlp_http_under_the_cma_tracing_scope(
    pipeline: Any, receiver: OTLPReceiver, server: FakeCMAServer, loop_client: anthropic.Anthropic
) -> None:
    p = pipeline(metrics=True)
    run_turn(loop_client, server)
    p.flush()

    assert receiver.received("/v1/metrics") and all(r.answered == 200 for r in receiver.received("/v1/metrics"))
    ours = {m.name: m for m in receiver.metrics() if m.scope_name == "cma_tracing"}
    assert set(ours) == {
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.time_to_first_chunk",
        "gen_ai.execute_tool.duration",
    }
    for metric in ours.values():
        assert metric.data == "histogram"
        assert metric.resource["service.name"] == "e2e"
        assert metric.points
    assert ours["gen_ai.client.operation.duration"].unit == "s"
    assert {pt["gen_ai.token.type"] for pt in ours["gen_ai.client.token.usage"].points} == {"input", "output"}
    durations = ours["gen_ai.client.operation.duration"].points
    assert {pt["gen_ai.operation.name"] for pt in durations} == {"invoke_agent", "chat"}
    assert {pt["gen_ai.tool.name"] for pt in ours["gen_ai.execute_tool.duration"].points} == {"bash"}


@pytest.mark.parametrize("processor", ["batch", "simple"])
@pytest.mark.parametrize("status", [500, 503])
def test_a_collector_answering_errors_never_reaches_the_app(
    pipeline: Any,
    receiver: OTLPReceiver,
    server: FakeCMAServer,
    loop_client: anthropic.Anthropic,
    caplog: pytest.LogCaptureFixture,
    status: int,
    processor: str,
) -> None:
    # 503 is retryable: Retry-After 0 makes the exporter retry at once instead of backing off for seconds. With the
    # simple processor the export (retries included) runs on the app's thread, inside the stream iteration.
    receiver.fail_with(status, retry_after=0 if status == 503 else None)
    p = pipeline(processor=processor)
    with caplog.at_level(logging.WARNING):
        streamed, read = run_turn(loop_client, server)
        assert p.provider.force_flush(timeout_millis=5_000)

    # The app read every event, in order, and nothing raised.
    assert read == [e["id"] for e in streamed]
    # The instrumentation saw a normal turn; its spans were sent and refused.
    (turn,) = [s for s in p.local.get_finished_spans() if s.name.startswith("invoke_agent")]
    assert (turn.attributes or {})["anthropic.turn.stop_reason"] == "end_turn"
    requests = receiver.received("/v1/traces")
    assert requests and {r.answered for r in requests} == {status}
    assert receiver.spans() == []
    refused = receiver.spans(accepted_only=False)
    assert {s.span_id for s in refused} == {format(s.context.span_id, "016x") for s in p.local.get_finished_spans()}
    attempts = Counter(r.body for r in requests)
    if status == 503 or _exporter_retries_every_5xx():
        assert all(n > 1 for n in attempts.values()), attempts.values()  # retryable: each batch sent again
    else:
        assert all(n == 1 for n in attempts.values()), attempts.values()  # not retryable: sent once
    # The exporter logged the failure; cma-tracing had nothing to say.
    assert any(r.name == TRACE_EXPORTER_LOGGER and r.levelno >= logging.ERROR for r in caplog.records)
    assert not [r for r in caplog.records if r.name.startswith("cma_tracing")]

    # The same exporter recovers once the collector does: the next turn arrives whole.
    receiver.fail_with(None)
    queue_turn(server, SESSION, "sevt_e2e_user_2", tool=False)
    loop_client.beta.sessions.events.send(SESSION, events=[message()])
    for event in loop_client.beta.sessions.events.stream(SESSION):
        if event.type == "session.status_idle":
            break
    p.flush()
    (second,) = [s for s in receiver.spans() if s.name.startswith("invoke_agent")]
    assert second.attributes["anthropic.turn.index"] == 2 and second.status_code == "OK"
    # The turn and its one chat; nothing of the refused turn is sent again.
    assert sorted(s.name for s in receiver.spans()) == ["chat claude-haiku-4-5", "invoke_agent loopback-agent-bash"]
    assert {s.trace_id for s in receiver.spans()} == {second.trace_id}


def _exporter_retries_every_5xx() -> bool:
    """The OTLP/HTTP exporter before 1.45 retries any 5xx; from 1.45 only the retryable ones (502, 503, 504)."""
    from importlib.metadata import version

    release = tuple(int(part) for part in version("opentelemetry-exporter-otlp-proto-http").split(".")[:2])
    return release < (1, 45)
