"""SPEC §5: the four histograms, read back with an in-memory reader for a scripted session."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Optional

import anthropic
import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.trace import INVALID_SPAN_CONTEXT, NonRecordingSpan, NoOpTracer, NoOpTracerProvider, use_span

from cma_tracing.instrumentation.metrics import DURATION_BUCKETS, TOKEN_BUCKETS
from tests.support import events as ev
from cma_tracing.demo.loopback import Event, FakeCMAServer
from tests.support.spans import Spans
from tests.support.scenarios import message, queue_turn
from tests.support.spans import at_least, attrs, seconds

MODEL = "claude-haiku-4-5"


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    found: dict[str, list[Any]] = {}
    units: dict[str, str] = {}
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            if scope.scope.name != "cma_tracing":
                continue
            for metric in scope.metrics:
                units[metric.name] = metric.unit
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    found["_units"] = [units]
    return found


def test_histograms_for_a_scripted_session(
    instrument: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    reader = InMemoryMetricReader()
    instrument(meter_provider=MeterProvider(metric_readers=[reader]))
    server.set_session("sesn_m")
    loop_client.beta.sessions.retrieve("sesn_m")  # the agent's name and model
    agent = loop_client.beta.sessions.retrieve("sesn_m").agent.name
    first, second = ev.request_start(), ev.request_start()
    use = ev.tool_use("bash")
    failing = ev.tool_use("web_fetch")
    script = [
        Event(ev.running()),
        Event(ev.user_message("sevt_u")),
        Event(first),
        Event(ev.event("agent.thinking"), 0.1),
        Event(use),
        Event(failing),
        Event(ev.request_end(first["id"], 100, 10, read=20, write=5), 0.05),
        Event(ev.tool_result(use["id"]), 0.2),
        Event(ev.event("agent.tool_result", tool_use_id=failing["id"], is_error=True, content=[])),
        Event(second),
        Event(ev.agent_message()),
        Event(ev.request_end(second["id"], 200, 20)),
        Event(ev.idle()),
    ]
    server.queue_send("sesn_m", ["sevt_u"])
    server.queue_stream("sesn_m", script)
    loop_client.beta.sessions.events.send("sesn_m", events=[message()])
    for event in loop_client.beta.sessions.events.stream("sesn_m"):
        if event.type == "session.status_idle":
            break

    found = points(reader)
    units = found["_units"][0]
    assert units == {
        "gen_ai.client.operation.duration": "s",
        "gen_ai.client.token.usage": "{token}",
        "gen_ai.client.operation.time_to_first_chunk": "s",
        "gen_ai.execute_tool.duration": "s",
    }
    # Each duration is its span's, to the clock's reading; how long that was depends on the machine's load, except
    # from below: the turn opens with the send, before the server's 0.1 + 0.05 + 0.2 s of delays up to its idle.
    same_reading = 1e-6
    turn_span = spans.turn()
    durations = {p.attributes["gen_ai.operation.name"]: p for p in found["gen_ai.client.operation.duration"]}
    turn = durations["invoke_agent"]
    assert turn.count == 1 and turn.sum == pytest.approx(seconds(turn_span), abs=same_reading)
    assert turn.sum >= at_least(0.35)
    assert dict(turn.attributes) == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": MODEL,
        "gen_ai.agent.name": agent,
    }
    assert list(turn.explicit_bounds) == pytest.approx(DURATION_BUCKETS)
    chats = [s for s in spans.children(turn_span) if s.name.startswith("chat")]
    assert durations["chat"].count == 2 == len(chats)
    assert durations["chat"].sum == pytest.approx(sum(seconds(c) for c in chats), abs=same_reading)
    tokens = {p.attributes["gen_ai.token.type"]: p for p in found["gen_ai.client.token.usage"]}
    assert (tokens["input"].count, tokens["input"].sum) == (2, 125 + 200)
    assert (tokens["output"].count, tokens["output"].sum) == (2, 30)
    assert tokens["input"].attributes["gen_ai.operation.name"] == "chat"
    assert list(tokens["input"].explicit_bounds) == TOKEN_BUCKETS
    (ttfc,) = found["gen_ai.client.operation.time_to_first_chunk"]
    assert ttfc.count == 1
    assert ttfc.sum == pytest.approx(attrs(turn_span)["gen_ai.response.time_to_first_chunk"], abs=same_reading)
    assert ttfc.sum >= at_least(0.1)  # the thinking, 0.1 s into the stream
    tools = {p.attributes["gen_ai.tool.name"]: p for p in found["gen_ai.execute_tool.duration"]}
    (bash,) = spans.named("execute_tool bash")
    assert tools["bash"].count == 1 and tools["bash"].sum == pytest.approx(seconds(bash), abs=same_reading)
    assert "error.type" not in tools["bash"].attributes
    assert tools["web_fetch"].attributes["error.type"] == "tool_error"
    assert tools["web_fetch"].attributes["gen_ai.operation.name"] == "execute_tool"


def test_a_failed_turn_records_its_error_type(
    instrument: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic
) -> None:
    reader = InMemoryMetricReader()
    instrument(meter_provider=MeterProvider(metric_readers=[reader]))
    server.queue_send("sesn_f", ["sevt_u"])
    server.queue_stream(
        "sesn_f",
        [
            Event(e)
            for e in [
                ev.running(),
                ev.user_message("sevt_u"),
                ev.session_error("billing_error", "terminal"),
                ev.event("session.status_terminated"),
            ]
        ],
    )
    loop_client.beta.sessions.events.send("sesn_f", events=[message()])
    for event in loop_client.beta.sessions.events.stream("sesn_f"):
        if event.type == "session.status_terminated":
            break
    (turn,) = points(reader)["gen_ai.client.operation.duration"]
    assert turn.attributes["error.type"] == "billing_error"
    assert "gen_ai.client.operation.time_to_first_chunk" not in points(reader)


def test_a_sampled_out_turn_still_records_its_model_request_and_tool_metrics(
    instrument: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    from tests.support.scenarios import queue_turn

    reader = InMemoryMetricReader()
    import cma_tracing  # the `instrument` fixture's provider is replaced here; it still uninstruments afterwards

    cma_tracing.instrument(
        tracer_provider=TracerProvider(sampler=ALWAYS_OFF), meter_provider=MeterProvider(metric_readers=[reader])
    )
    queue_turn(server, "sesn_sampled_out", "sevt_u")
    loop_client.beta.sessions.events.send("sesn_sampled_out", events=[message()])
    for _ in loop_client.beta.sessions.events.stream("sesn_sampled_out"):
        pass
    found = points(reader)
    assert {p.attributes["gen_ai.operation.name"]: p.count for p in found["gen_ai.client.operation.duration"]} == {
        "invoke_agent": 1,
        "chat": 2,
    }
    assert [p.count for p in found["gen_ai.execute_tool.duration"]] == [1]


class WatchedSpan(NonRecordingSpan):
    """A span that records nothing, as a no-op tracer's or a sampled-out one's, and notes what it was asked to do."""

    def __init__(self, name: str, tracer: WatchedTracer) -> None:
        super().__init__(INVALID_SPAN_CONTEXT)
        self.name = name
        self.tracer = tracer

    def set_attribute(self, key: str, value: Any) -> None:
        self.tracer.calls.append((self.name, "set_attribute"))

    def set_attributes(self, attributes: Any) -> None:
        self.tracer.calls.append((self.name, "set_attributes"))

    def add_event(self, name: str, attributes: Any = None, timestamp: Optional[int] = None) -> None:
        self.tracer.calls.append((self.name, "add_event"))

    def set_status(self, status: Any, description: Optional[str] = None) -> None:
        self.tracer.calls.append((self.name, "set_status"))

    def record_exception(self, *args: Any, **kwargs: Any) -> None:
        self.tracer.calls.append((self.name, "record_exception"))

    def end(self, end_time: Optional[int] = None) -> None:
        self.tracer.ended.append(self.name)


class WatchedTracer(NoOpTracer):
    """A no-op tracer that notes which spans were started and ended, and what else reached them: what a tracer nobody
    records with sees of us."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.ended: list[str] = []
        self.calls: list[tuple[str, str]] = []

    def start_span(self, name: str, *args: Any, **kwargs: Any) -> WatchedSpan:
        self.started.append(name)
        return WatchedSpan(name, self)

    @contextmanager
    def start_as_current_span(self, name: str, *args: Any, **kwargs: Any) -> Iterator[WatchedSpan]:
        with use_span(self.start_span(name), end_on_exit=True) as span:
            yield span


class WatchedTracerProvider(NoOpTracerProvider):
    def __init__(self) -> None:
        self.tracer = WatchedTracer()

    def get_tracer(self, *args: Any, **kwargs: Any) -> WatchedTracer:
        return self.tracer


def test_with_nothing_recording_a_turn_follows_only_its_lifecycle(
    instrument: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic
) -> None:
    """No-op tracer and meter, no content: the turn opens and ends, but its tools, tokens and children are not
    tracked (they would go nowhere), and the app sees every event."""
    import cma_tracing

    tracer_provider = WatchedTracerProvider()
    tracer = tracer_provider.tracer
    cma_tracing.instrument(tracer_provider=tracer_provider, meter_provider=NoOpMeterProvider())
    events = queue_turn(server, "sesn_nothing", "sevt_n")
    loop_client.beta.sessions.events.send("sesn_nothing", events=[message()])
    stream = loop_client.beta.sessions.events.stream("sesn_nothing")
    seen = []
    for event in stream:
        seen.append(event.type)
        if event.type == "agent.tool_use":
            assert (tracer.started, tracer.ended) == (["invoke_agent"], [])  # the turn is open, and alone
        if event.type == "session.status_idle":
            assert tracer.ended == ["invoke_agent"]  # ended by its idle, as a recorded turn is
    assert seen == [e["type"] for e in events]
    assert "agent.tool_use" in seen and seen[-1] == "session.status_idle"
    # No child span was started for its two model requests and its tool, and nothing was worked out for the turn
    # span (tokens, tool counts, status): only its start and its end reached the tracer.
    assert (tracer.started, tracer.ended, tracer.calls) == (["invoke_agent"], ["invoke_agent"], [])


def test_until_a_meter_provider_is_set_a_sampled_out_turn_follows_only_its_lifecycle(
    instrument: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic
) -> None:
    """With no meter provider given, the meter is the API's global proxy, which drops records until the app sets a
    provider. Until then a sampled-out turn is one nobody records; once a provider is set, the next turn is tracked
    in full and its metrics reach that provider."""
    from opentelemetry.metrics._internal import _ProxyMeterProvider  # the global provider, until the app sets one

    import cma_tracing

    proxy = _ProxyMeterProvider()  # a fresh one: setting the global provider could not be undone for later tests
    tracer_provider = WatchedTracerProvider()  # its spans record nothing, as sampled-out ones
    cma_tracing.instrument(tracer_provider=tracer_provider, meter_provider=proxy)
    reader = InMemoryMetricReader()
    started = []
    for n, provider_set in enumerate((False, True)):
        if provider_set:
            proxy.on_set_meter_provider(MeterProvider(metric_readers=[reader]))  # what `set_meter_provider` does
        tracer_provider.tracer.started.clear()
        queue_turn(server, "sesn_proxy", f"sevt_p{n}")
        loop_client.beta.sessions.events.send("sesn_proxy", events=[message()])
        for _ in loop_client.beta.sessions.events.stream("sesn_proxy"):
            pass
        started.append(list(tracer_provider.tracer.started))
    assert started == [["invoke_agent"], ["invoke_agent", "chat", "execute_tool bash", "chat"]]
    found = points(reader)  # the second turn's alone: the first one's went nowhere, as the proxy drops them
    assert {p.attributes["gen_ai.operation.name"]: p.count for p in found["gen_ai.client.operation.duration"]} == {
        "invoke_agent": 1,
        "chat": 2,
    }
    assert [p.count for p in found["gen_ai.execute_tool.duration"]] == [1]


def test_agent_attributes_learnt_mid_turn_leave_the_running_turns_metric_attributes_whole(
    instrument: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic
) -> None:
    """A `sessions.retrieve` while a turn runs changes the attributes of the session's next turns; the running one
    records its duration with the attributes it started with, not with none."""
    reader = InMemoryMetricReader()
    instrument(meter_provider=MeterProvider(metric_readers=[reader]))
    server.set_session("sesn_mid")
    before = loop_client.beta.sessions.retrieve("sesn_mid")
    server.queue_send("sesn_mid", ["sevt_u"])
    server.queue_stream("sesn_mid", [Event(e) for e in [ev.running(), ev.user_message("sevt_u"), ev.agent_message()]])
    server.queue_stream("sesn_mid", [Event(ev.idle())])
    loop_client.beta.sessions.events.send("sesn_mid", events=[message()])
    with loop_client.beta.sessions.events.stream("sesn_mid") as stream:
        for event in stream:
            if event.type == "agent.message":
                break
        renamed = before.model_dump(mode="json")
        renamed["agent"]["name"] = "renamed-agent"
        server.set_session("sesn_mid", renamed)
        loop_client.beta.sessions.retrieve("sesn_mid")  # mid-turn
        with loop_client.beta.sessions.events.stream("sesn_mid") as again:
            list(again)
    (turn,) = [
        p
        for p in points(reader)["gen_ai.client.operation.duration"]
        if p.attributes.get("gen_ai.operation.name") == "invoke_agent"
    ]
    assert turn.attributes["gen_ai.agent.name"] == before.agent.name != "renamed-agent"
    assert turn.attributes["gen_ai.provider.name"] == "anthropic"
