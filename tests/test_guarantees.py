"""SPEC §6: never breaks the app, bounded state, no mixing under concurrency, defensive against beta drift."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Sequence

import anthropic
import pydantic
import pytest
from anthropic.types.beta.sessions import BetaManagedAgentsStreamSessionEvents
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

import cma_tracing
from cma_tracing.instrumentation.registry import MAX_WARM_SESSIONS
from cma_tracing.instrumentation.telemetry import Telemetry
from cma_tracing.instrumentation.session import SessionTracker
from tests.support.spans import Spans
from tests.support import events as ev
from cma_tracing.demo.loopback import FakeCMAServer
from tests.support.scenarios import message, queue_turn, steps, turn_events


class RaisingProcessor(SpanProcessor):
    def on_start(self, span: Any, parent_context: Any = None) -> None:
        raise RuntimeError("processor on_start")

    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("processor on_end")


class RaisingExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise RuntimeError("exporter down")


class RaisingTracerProvider:
    """A provider whose tracer cannot even start a span."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
        return self

    def start_span(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("tracer broken")


def run_app(client: anthropic.Anthropic, server: FakeCMAServer, session_id: str) -> list[dict[str, Any]]:
    """What the app sees of one turn: the events it reads, as data."""
    queue_turn(server, session_id, f"{session_id}_u")
    response = client.beta.sessions.events.send(session_id, events=[message()])
    assert [e.id for e in response.data] == [f"{session_id}_u"]
    return [e.model_dump() for e in client.beta.sessions.events.stream(session_id)]


@pytest.mark.parametrize("failure", ["processor", "exporter", "tracer"])
def test_a_failing_tracer_processor_or_exporter_never_reaches_the_app(
    server: FakeCMAServer, loop_client: anthropic.Anthropic, failure: str
) -> None:
    baseline = run_app(loop_client, server, "sesn_base")
    provider: Any
    if failure == "tracer":
        provider = RaisingTracerProvider()
    else:
        provider = TracerProvider()
        provider.add_span_processor(
            RaisingProcessor() if failure == "processor" else SimpleSpanProcessor(RaisingExporter())
        )
    cma_tracing.instrument(tracer_provider=provider)
    try:
        seen = run_app(loop_client, server, "sesn_base")
    finally:
        cma_tracing.uninstrument()
    assert [_without_ids(e) for e in seen] == [_without_ids(e) for e in baseline]


class _Refusing:
    """A provider whose `get_tracer` / `get_meter` / `get_logger` raises."""

    def __getattr__(self, name: str) -> Any:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(f"{name} refused")

        return refuse


@pytest.mark.parametrize("signal", ["tracer_provider", "meter_provider", "logger_provider"])
def test_instrument_never_raises_when_a_provider_fails_and_the_other_signals_work(
    server: FakeCMAServer, loop_client: anthropic.Anthropic, signal: str
) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    providers: dict[str, Any] = {
        "tracer_provider": tracer_provider,
        "meter_provider": MeterProvider(metric_readers=[reader]),
        "logger_provider": None,
    }
    providers[signal] = _Refusing()
    baseline = run_app(loop_client, server, "sesn_refused")
    cma_tracing.instrument(capture_content="SPAN_AND_EVENT", **providers)
    try:
        seen = run_app(loop_client, server, "sesn_refused")
    finally:
        cma_tracing.uninstrument()
    assert [_without_ids(e) for e in seen] == [_without_ids(e) for e in baseline]
    turns = [s for s in exporter.get_finished_spans() if s.name.startswith("invoke_agent")]
    assert len(turns) == (0 if signal == "tracer_provider" else 1)
    metrics = reader.get_metrics_data()
    recorded = bool(metrics and metrics.resource_metrics)
    assert recorded is (signal != "meter_provider")


def test_malformed_and_unknown_events_pass_through_untouched(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    weird = [
        {"type": "session.status_idle"},  # no stop_reason
        {"type": "span.model_request_end", "model_usage": {"input_tokens": "many"}},
        {"type": "agent.tool_use", "id": 7, "name": None},
        {"type": "session.brand_new_thing", "id": "sevt_new", "payload": [1, 2]},
        {"id": "sevt_typeless"},
        {"type": ["not", "a", "string"]},
    ]
    script = [ev.user_message("sevt_u1")] + weird + [ev.idle()]
    server.queue_stream("sesn_weird", steps(script))
    seen = list(loop_client.beta.sessions.events.stream("sesn_weird"))
    assert len(seen) == len(script)
    assert spans.turns()  # the turn still opened and ended


def test_a_field_this_sdk_version_does_not_declare_is_still_read() -> None:
    """Beta drift: a field the installed SDK does not know lands in `__pydantic_extra__`; handlers read it all the
    same. Simulated by moving declared fields there, as an older SDK would have parsed them."""
    adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(BetaManagedAgentsStreamSessionEvents)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracker = SessionTracker("sesn_drift", Telemetry(provider.get_tracer("t")))
    start = ev.request_start()
    end = adapter.validate_python(ev.request_end(start["id"], input=7, output=3))
    use = adapter.validate_python(ev.tool_use("web_fetch"))
    for model, field in ((end, "model_usage"), (use, "name")):
        value = model.__dict__.pop(field)
        if model.__pydantic_extra__ is None:
            object.__setattr__(model, "__pydantic_extra__", {})
        model.__pydantic_extra__[field] = value
    for i, event in enumerate([ev.user_message(), start, use, end, ev.idle()]):
        tracker.on_event(event, 10**18 + i)
    (turn,) = [s for s in exporter.get_finished_spans() if s.name.startswith("invoke_agent")]
    attrs = dict(turn.attributes or {})
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (7, 3)
    assert attrs["anthropic.turn.tool_names"] == ("web_fetch",)


def test_a_dict_event_works_like_a_model_event() -> None:
    adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(BetaManagedAgentsStreamSessionEvents)
    results = []
    for as_model in (False, True):
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracker = SessionTracker("sesn_dict", Telemetry(provider.get_tracer("t")))
        for i, event in enumerate(ev.real_events()):
            tracker.on_event(adapter.validate_python(event) if as_model else event, 10**18 + i)
        finished = []
        for span in exporter.get_finished_spans():
            attrs = dict(span.attributes or {})
            attrs.pop("gen_ai.response.time_to_first_chunk", None)
            finished.append((span.name, span.start_time, span.end_time, attrs))
        results.append(finished)
    assert results[0] == results[1]
    assert [name for name, *_ in results[0]] == ["chat", "execute_tool bash", "chat", "invoke_agent"]
    assert results[0][-1][3]["gen_ai.usage.input_tokens"] == 4525


def test_idle_sessions_leave_no_state_behind(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic
) -> None:
    for i in range(MAX_WARM_SESSIONS + 6):
        run_app(loop_client, server, f"sesn_idle_{i}")
    registry = instrumented.registry
    assert registry.active_count() == 0
    # The last ones kept whole (a bounded few), the rest reduced to a turn count each in a bounded LRU.
    assert registry.warm_count() == MAX_WARM_SESSIONS and registry.remembered_count() == 6


def test_remembered_sessions_are_capped() -> None:
    from cma_tracing.instrumentation.registry import LRU

    lru: LRU[str, int] = LRU(3)
    for i in range(10):
        lru.put(f"s{i}", i)
    assert len(lru) == 3 and lru.get("s9") == 9 and lru.get("s0") is None


def test_the_orphan_watch_holds_dropped_sessions_weakly_sheds_them_and_sleeps_through_later_deadlines() -> None:
    """Every send opens a turn before its stream does, so a busy process watches thousands of sessions: that must
    neither pin their trackers, nor grow the heap without bound, nor wake the watch thread each time."""
    import gc
    import weakref

    from cma_tracing.instrumentation.registry import COMPACT_AT, OrphanWatch

    wakes = 0
    now = [10**18]

    def clock() -> int:
        nonlocal wakes
        if threading.current_thread().name == "cma-tracing-orphan-watch":
            wakes += 1
        return now[0]

    watch = OrphanWatch(300 * 10**9, lambda tracker, now: None, clock=clock)
    telemetry = Telemetry(TracerProvider().get_tracer("t"))
    try:
        first = SessionTracker("sesn_w0", telemetry)
        watch.watch(first)
        dropped = weakref.ref(first)
        del first
        gc.collect()
        assert dropped() is None  # the watch does not keep a dropped session's state alive
        kept = []
        for i in range(50):  # spaced out, so that a thread woken per watch would get to run each time
            now[0] += 1000
            kept.append(SessionTracker(f"sesn_k{i}", telemetry))
            watch.watch(kept[-1])
            threading.Event().wait(0.002)
        assert wakes <= 6  # woken for the earliest deadline only, not once per watched session
        for i in range(5 * COMPACT_AT):
            now[0] += 1000
            watch.watch(SessionTracker(f"sesn_w{i}", telemetry))  # each dropped right away
        assert len(kept) < watch.pending() <= COMPACT_AT  # 5,120 watched and dropped: their entries were shed
    finally:
        watch.stop()


def test_turn_indexes_continue_per_session_after_it_goes_idle(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    for _ in range(3):
        run_app(loop_client, server, "sesn_again")
    assert sorted(dict(s.attributes or {})["anthropic.turn.index"] for s in spans.turns()) == [1, 2, 3]


def test_fifty_sessions_in_threads_never_mix_events_turns_or_parents(
    instrumented: Any, provider: Any, server: FakeCMAServer, spans: Spans
) -> None:
    app_tracer = provider[0].get_tracer("app")
    barrier = threading.Barrier(50)

    def session(i: int) -> None:
        client = anthropic.Anthropic(base_url=server.base_url, api_key="k", max_retries=0, open_telemetry=False)
        sid = f"sesn_thread_{i}"
        server.queue_send(sid, [f"{sid}_u"])
        server.queue_stream(sid, steps(turn_events(f"{sid}_u", input_tokens=i, output_tokens=i), delay=0.002))
        with app_tracer.start_as_current_span(f"request {i}"):
            barrier.wait(10)
            client.beta.sessions.events.send(sid, events=[message()])
            for _ in client.beta.sessions.events.stream(sid):
                pass

    assert _in_threads(50, session) == []
    _assert_fifty_unmixed(spans)


@pytest.mark.asyncio
async def test_fifty_sessions_in_asyncio_tasks_never_mix_events_turns_or_parents(
    instrumented: Any, provider: Any, server: FakeCMAServer, spans: Spans
) -> None:
    app_tracer = provider[0].get_tracer("app")
    client = anthropic.AsyncAnthropic(base_url=server.base_url, api_key="k", max_retries=0, open_telemetry=False)

    async def session(i: int) -> None:
        sid = f"sesn_task_{i}"
        server.queue_send(sid, [f"{sid}_u"])
        server.queue_stream(sid, steps(turn_events(f"{sid}_u", input_tokens=i, output_tokens=i), delay=0.002))
        with app_tracer.start_as_current_span(f"request {i}"):
            await client.beta.sessions.events.send(sid, events=[message()])
            async for _ in await client.beta.sessions.events.stream(sid):
                await asyncio.sleep(0)

    await asyncio.gather(*(session(i) for i in range(50)))
    _assert_fifty_unmixed(spans)


class _EvenSessionsOnly(Sampler):
    """Records the turns of even-numbered sessions (and spans of no session); drops the rest."""

    def should_sample(
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: Any = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        session = str((attributes or {}).get("anthropic.session.id", "sesn_0"))
        if int(session.rsplit("_", 1)[1]) % 2:
            return SamplingResult(Decision.DROP)
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)  # a sampler hands the span its attributes

    def get_description(self) -> str:
        return "even sessions only"


def test_recorded_and_sampled_out_turns_in_fifty_threads_at_once(server: FakeCMAServer) -> None:
    """Half the sessions' turns are sampled out, so they follow only their lifecycle and skip events without the
    lock, while the other half are recorded in full, all at once in threads: the recorded ones are whole and unmixed,
    every app sees every event, and every turn ends (no session is left holding state)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=_EvenSessionsOnly())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = cma_tracing.instrument(tracer_provider=provider, meter_provider=NoOpMeterProvider())
    try:
        barrier = threading.Barrier(50)
        seen: dict[int, list[str]] = {}

        def session(i: int) -> None:
            client = anthropic.Anthropic(base_url=server.base_url, api_key="k", max_retries=0, open_telemetry=False)
            sid = f"sesn_mixed_{i}"
            server.queue_send(sid, [f"{sid}_u"])
            server.queue_stream(sid, steps(turn_events(f"{sid}_u", input_tokens=i, output_tokens=i), delay=0.002))
            barrier.wait(10)
            client.beta.sessions.events.send(sid, events=[message()])
            seen[i] = [event.type for event in client.beta.sessions.events.stream(sid)]

        assert _in_threads(50, session) == []
        expected = [e["type"] for e in turn_events("sevt_u", input_tokens=1, output_tokens=1)]
        assert seen == {i: expected for i in range(50)}
        assert instrumentor.registry.active_count() == 0  # sampled-out turns ended too
        turns = [s for s in exporter.get_finished_spans() if s.name.startswith("invoke_agent")]
        assert sorted(_assert_whole_turn(turn) for turn in turns) == list(range(0, 50, 2))
    finally:
        cma_tracing.uninstrument()


def _in_threads(n: int, work: Any) -> list[BaseException]:
    """Run `work(i)` for i in range(n), each in a thread of its own; returns what they raised."""
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            work(i)
        except BaseException as error:  # noqa: BLE001 - returned to the test
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return errors


def _assert_whole_turn(turn: ReadableSpan) -> int:
    """The turn of session `..._i` ended normally with its own session's tokens and events; returns i."""
    attrs = dict(turn.attributes or {})
    i = int(str(attrs["anthropic.session.id"]).rsplit("_", 1)[1])
    assert attrs["anthropic.turn.stop_reason"] == "end_turn"
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (2 * i, 2 * i)
    assert attrs["anthropic.turn.events"] == 11
    return i


def _assert_fifty_unmixed(spans: Spans) -> None:
    turns = spans.turns()
    assert len(turns) == 50
    requests = {s.name: s for s in spans.all() if s.name.startswith("request ")}
    for turn in turns:
        i = _assert_whole_turn(turn)
        assert turn.parent is not None and turn.parent.span_id == requests[f"request {i}"].context.span_id


def _without_ids(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in ("id", "processed_at", "model_request_start_id", "tool_use_id")}


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-08-17T16:21:33.262700Z",
        "2026-08-17T16:21:33.2627Z",
        "2026-08-17T16:21:33.262700123Z",
        "2026-08-17T16:21:33.262700+00:00",
        "2026-08-17T18:21:33.262700+0200",
        "2026-08-17T16:21:33.262700",
    ],
)
def test_timestamps_parse_the_same_on_every_python(stamp: str) -> None:
    """SPEC §6.7: before 3.11 `datetime.fromisoformat` rejects `Z` and fractions of other than 3 or 6 digits, and
    list-page anchoring and fetched-event timing silently broke there. A stamp with no offset is UTC."""
    from datetime import datetime, timezone

    from cma_tracing.instrumentation.fields import timestamp, timestamp_ns

    expected = datetime(2026, 8, 17, 16, 21, 33, 262700, tzinfo=timezone.utc)
    assert timestamp(stamp) == expected
    assert timestamp_ns(stamp) == int(expected.timestamp()) * 10**9 + 262_700_000


@pytest.mark.parametrize("stamp", [None, "", "yesterday", "2026-13-45T99:00:00Z", 17, b"2026-08-17"])
def test_unreadable_timestamps_are_none(stamp: Any) -> None:
    from cma_tracing.instrumentation.fields import timestamp

    assert timestamp(stamp) is None
