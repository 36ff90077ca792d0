"""SPEC §6.2-6.3 through the real SDK over loopback HTTP: the stream stays the SDK's, and every exit ends the turn."""

from __future__ import annotations

import asyncio
import json
import gc
from typing import Any

import anthropic
import httpx2
import pytest
from opentelemetry.trace import StatusCode

import cma_tracing
from cma_tracing.instrumentation.session import SessionTracker
from tests.support.spans import Spans
from cma_tracing.demo.loopback import Drop, FakeCMAServer, Hold, running_server
from tests.support.scenarios import message, queue_turn, steps, turn_events

#: What a connection dropped mid-stream raises into the app: the raw `httpx2.RemoteProtocolError` through anthropic
#: 2.16; from 2.17 the SDK wraps a failed body read too, in `APIConnectionError` (the httpx error its cause).
DROPPED = (httpx2.RemoteProtocolError, anthropic.APIConnectionError)


def qualified(error: BaseException) -> str:
    """SPEC §3.2's `error.type` of an exception that is not an `APIStatusError`: its class as `module.Class`."""
    return f"{type(error).__module__}.{type(error).__qualname__}"


def stop_reason(spans: Spans) -> str:
    return str(dict(spans.turn().attributes or {})["anthropic.turn.stop_reason"])


def test_the_stream_is_still_an_sdk_stream_with_its_whole_surface(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    queue_turn(server, "sesn_a", "sevt_u1")
    loop_client.beta.sessions.events.send("sesn_a", events=[message()])
    stream = loop_client.beta.sessions.events.stream("sesn_a")
    assert isinstance(stream, anthropic.Stream)
    assert isinstance(stream.response, httpx2.Response) and stream.response.status_code == 200
    with stream as entered:
        assert entered is stream
        first = next(entered)
        rest = list(entered)
    assert [first.type] + [e.type for e in rest] == [e["type"] for e in turn_events("x")]
    assert stop_reason(spans) == "end_turn"


def test_it_yields_the_very_same_event_objects_in_the_same_order(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    observed: list[Any] = []
    original = SessionTracker.on_event

    def spy(self: SessionTracker, event: Any, now_ns: int, *origin: Any) -> None:
        observed.append(event)
        original(self, event, now_ns, *origin)

    monkeypatch.setattr(SessionTracker, "on_event", spy)
    queue_turn(server, "sesn_b", "sevt_u1")
    loop_client.beta.sessions.events.send("sesn_b", events=[message()])
    yielded = list(loop_client.beta.sessions.events.stream("sesn_b"))
    assert len(yielded) == len(observed) == 11
    assert all(a is b for a, b in zip(yielded, observed))


def test_events_are_the_same_with_and_without_instrumentation(
    instrument: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic
) -> None:
    script = turn_events("sevt_u1") + [{"type": "session.unheard_of", "id": "sevt_new"}, {"no_type": True}]
    for session in ("sesn_plain", "sesn_traced"):
        server.queue_stream(session, steps(script))
    plain = [e.model_dump() for e in loop_client.beta.sessions.events.stream("sesn_plain")]
    instrument()
    traced = [e.model_dump() for e in loop_client.beta.sessions.events.stream("sesn_traced")]
    assert traced == plain and len(plain) == len(script)


@pytest.mark.parametrize("exit_by", ["close", "with", "gc"])
def test_stopping_early_while_the_agent_runs_abandons_the_turn(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans, exit_by: str
) -> None:
    events = turn_events("sevt_u1")
    server.queue_send("sesn_c", ["sevt_u1"])
    server.queue_stream("sesn_c", steps(events[:4]) + [Hold(10)])
    loop_client.beta.sessions.events.send("sesn_c", events=[message()])
    if exit_by == "with":
        with loop_client.beta.sessions.events.stream("sesn_c") as stream:
            for event in stream:
                if event.type == "agent.thinking":
                    break
    else:
        stream = loop_client.beta.sessions.events.stream("sesn_c")
        for event in stream:
            if event.type == "agent.thinking":
                break
        assert spans.turns() == []  # a break alone does not stop the stream: it may be read on
        if exit_by == "close":
            stream.close()
        else:
            del stream, event
            gc.collect()
    turn = spans.turn()
    assert dict(turn.attributes or {})["anthropic.turn.stop_reason"] == "abandoned"
    assert turn.status.status_code is StatusCode.UNSET
    assert server.wait_for_stream_close("sesn_c", timeout=5)


def test_a_loop_left_with_break_then_resumed_on_the_same_stream_is_one_whole_turn(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    """`for` over the stream, `break`, then `for` again (or `next`) reads on where it stopped, as with the bare SDK."""
    events = queue_turn(server, "sesn_resume", "sevt_u1")
    loop_client.beta.sessions.events.send("sesn_resume", events=[message()])
    seen: list[str] = []
    with loop_client.beta.sessions.events.stream("sesn_resume") as stream:
        for event in stream:
            seen.append(event.type)
            if event.type == "agent.thinking":
                break
        seen.append(next(stream).type)
        assert spans.turns() == []
        seen.extend(event.type for event in stream)
    assert seen == [e["type"] for e in events]
    attributes = dict(spans.turn().attributes or {})
    assert attributes["anthropic.turn.stop_reason"] == "end_turn"
    assert attributes["anthropic.turn.events"] == len(events)


@pytest.mark.asyncio
async def test_an_async_loop_left_with_break_then_resumed_is_one_whole_turn(
    instrumented: Any, server: FakeCMAServer, loop_async_client: anthropic.AsyncAnthropic, spans: Spans
) -> None:
    events = queue_turn(server, "sesn_aresume", "sevt_u1")
    await loop_async_client.beta.sessions.events.send("sesn_aresume", events=[message()])
    seen: list[str] = []
    async with await loop_async_client.beta.sessions.events.stream("sesn_aresume") as stream:
        async for event in stream:
            seen.append(event.type)
            if event.type == "agent.thinking":
                break
        await asyncio.sleep(0)  # let the loop finalise the abandoned async generator
        assert spans.turns() == []
        async for event in stream:
            seen.append(event.type)
    assert seen == [e["type"] for e in events]
    assert stop_reason(spans) == "end_turn"


def test_closing_a_stream_that_already_ended_is_not_abandoning(
    instrument: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    instrument(orphan_timeout_s=0.2)
    events = turn_events("sevt_u1")
    server.queue_send("sesn_d", ["sevt_u1"])
    server.queue_stream("sesn_d", steps(events[:5]))  # the server ends it mid-turn
    loop_client.beta.sessions.events.send("sesn_d", events=[message()])
    with loop_client.beta.sessions.events.stream("sesn_d") as stream:
        assert len(list(stream)) == 5
    assert spans.turns() == []  # still open, waiting for a reconnect
    server.wait_for_stream_close("sesn_d", timeout=5)
    _wait(lambda: bool(spans.turns()))
    assert stop_reason(spans) == "unobserved"


def test_a_dropped_connection_mid_turn_then_a_reconnect_is_one_turn(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    events = turn_events("sevt_u1", input_tokens=10, output_tokens=1)
    server.queue_send("sesn_e", ["sevt_u1"])
    server.queue_stream("sesn_e", steps(events[:5]) + [Drop()])
    server.queue_stream("sesn_e", steps(events[4:]))  # overlaps by one event
    loop_client.beta.sessions.events.send("sesn_e", events=[message()])
    with pytest.raises(DROPPED) as info:
        for _ in loop_client.beta.sessions.events.stream("sesn_e"):
            pass
    assert spans.turns() == []
    for _ in loop_client.beta.sessions.events.stream("sesn_e"):
        pass
    turn = spans.turn()
    attrs = dict(turn.attributes or {})
    assert attrs["anthropic.turn.stop_reason"] == "end_turn"
    assert (attrs["gen_ai.usage.input_tokens"], attrs["anthropic.turn.tool_calls"]) == (20, 1)
    errors = [e for e in turn.events if e.name == "stream.error"]
    assert len(errors) == 1
    assert dict(errors[0].attributes or {})["exception.type"] == qualified(info.value)


def test_a_turn_whose_last_stream_failed_ends_as_stream_error_after_the_timeout(
    instrument: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    instrument(orphan_timeout_s=0.2)
    server.queue_send("sesn_f", ["sevt_u1"])
    server.queue_stream("sesn_f", steps(turn_events("sevt_u1")[:3]) + [Drop()])
    loop_client.beta.sessions.events.send("sesn_f", events=[message()])
    with pytest.raises(DROPPED) as info:
        list(loop_client.beta.sessions.events.stream("sesn_f"))
    _wait(lambda: bool(spans.turns()))
    turn = spans.turn()
    assert dict(turn.attributes or {})["anthropic.turn.stop_reason"] == "stream_error"
    assert dict(turn.attributes or {})["error.type"] == qualified(info.value)
    assert turn.status.status_code is StatusCode.ERROR


def test_keyboard_interrupt_mid_stream_propagates_and_the_turn_still_ends(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    server.queue_send("sesn_g", ["sevt_u1"])
    server.queue_stream("sesn_g", steps(turn_events("sevt_u1")[:4]) + [Hold(10)])
    loop_client.beta.sessions.events.send("sesn_g", events=[message()])
    stream = loop_client.beta.sessions.events.stream("sesn_g")
    with pytest.raises(KeyboardInterrupt):
        with stream:
            for event in stream:
                if event.type == "agent.thinking":
                    raise KeyboardInterrupt
    assert stop_reason(spans) == "abandoned"
    assert spans.turn().status.status_code is StatusCode.UNSET


def test_ctrl_c_while_the_sdk_reads_the_stream_propagates_and_abandons_the_turn(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    """The usual Ctrl-C lands inside the SDK's blocking read, not in the app's loop body, and without any `with`."""
    server.queue_send("sesn_ctrl_c", ["sevt_u1"])
    server.queue_stream("sesn_ctrl_c", steps(turn_events("sevt_u1")[:4]) + [Hold(10)])
    loop_client.beta.sessions.events.send("sesn_ctrl_c", events=[message()])
    stream = loop_client.beta.sessions.events.stream("sesn_ctrl_c")
    sdk_stream = stream.__wrapped__
    reading = sdk_stream._iterator

    def interrupted_read() -> Any:
        for _ in range(3):
            yield next(reading)
        raise KeyboardInterrupt

    sdk_stream._iterator = interrupted_read()
    seen = []
    with pytest.raises(KeyboardInterrupt):
        for event in stream:
            seen.append(event.type)
    assert len(seen) == 3
    assert stop_reason(spans) == "abandoned"
    assert spans.turn().status.status_code is StatusCode.UNSET
    stream.close()


@pytest.mark.asyncio
async def test_async_stream_is_an_async_stream_and_a_cancelled_task_ends_the_turn(
    instrumented: Any, server: FakeCMAServer, loop_async_client: anthropic.AsyncAnthropic, spans: Spans
) -> None:
    server.queue_send("sesn_h", ["sevt_u1"])
    server.queue_stream("sesn_h", steps(turn_events("sevt_u1")[:4]) + [Hold(10)])
    await loop_async_client.beta.sessions.events.send("sesn_h", events=[message()])
    reading = asyncio.Event()

    async def consume() -> None:
        async with await loop_async_client.beta.sessions.events.stream("sesn_h") as stream:
            assert isinstance(stream, anthropic.AsyncStream)
            async for event in stream:
                if event.type == "agent.thinking":
                    reading.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(reading.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stop_reason(spans) == "abandoned"


@pytest.mark.asyncio
async def test_async_reconnect_after_a_drop_is_one_turn(
    instrumented: Any, server: FakeCMAServer, loop_async_client: anthropic.AsyncAnthropic, spans: Spans
) -> None:
    events = turn_events("sevt_u1")
    server.queue_send("sesn_i", ["sevt_u1"])
    server.queue_stream("sesn_i", steps(events[:6]) + [Drop()])
    server.queue_stream("sesn_i", steps(events[6:]))
    await loop_async_client.beta.sessions.events.send("sesn_i", events=[message()])
    with pytest.raises(DROPPED):
        async for _ in await loop_async_client.beta.sessions.events.stream("sesn_i"):
            pass
    stream = await loop_async_client.beta.sessions.events.stream("sesn_i")
    async for _ in stream:
        pass
    await stream.close()
    assert stop_reason(spans) == "end_turn"
    assert dict(spans.turn().attributes or {})["anthropic.turn.model_requests"] == 2


def test_the_sdk_send_span_nests_under_the_turn_and_its_traceparent_carries_it(
    instrumented: Any, provider: Any, server: FakeCMAServer, spans: Spans
) -> None:
    client = anthropic.Anthropic(
        base_url=server.base_url, api_key="test-key", max_retries=0, open_telemetry={"tracer_provider": provider[0]}
    )
    queue_turn(server, "sesn_j", "sevt_u1")
    client.beta.sessions.events.send("sesn_j", events=[message()])
    for _ in client.beta.sessions.events.stream("sesn_j"):
        pass
    turn = spans.turn()
    (send_span,) = spans.named("anthropic.sessions.events.send")
    assert send_span.parent is not None and send_span.parent.span_id == turn.context.span_id
    assert send_span.context.trace_id == turn.context.trace_id
    (send_request,) = [r for r in server.requests if r.method == "POST"]
    assert f"{turn.context.trace_id:032x}" in send_request.headers["traceparent"]


def test_the_turn_is_a_child_of_the_apps_current_span(
    instrumented: Any, provider: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    queue_turn(server, "sesn_k", "sevt_u1")
    with provider[0].get_tracer("app").start_as_current_span("handle request") as request_span:
        loop_client.beta.sessions.events.send("sesn_k", events=[message()])
        for _ in loop_client.beta.sessions.events.stream("sesn_k"):
            pass
    turn = spans.turn()
    assert turn.parent is not None and turn.parent.span_id == request_span.get_span_context().span_id


def test_suppress_instrumentation_turns_it_off(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    queue_turn(server, "sesn_l", "sevt_u1")
    with suppress_instrumentation():
        loop_client.beta.sessions.events.send("sesn_l", events=[message()])
        stream = loop_client.beta.sessions.events.stream("sesn_l")
        assert type(stream) is anthropic.Stream
        list(stream)
    assert spans.turns() == []


def test_uninstrument_ends_open_turns_as_shutdown_and_removes_every_patch(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    from anthropic.resources.beta.sessions.events import AsyncEvents, Events

    server.queue_send("sesn_m", ["sevt_u1"])
    loop_client.beta.sessions.events.send("sesn_m", events=[message()])
    cma_tracing.uninstrument()
    assert stop_reason(spans) == "shutdown"
    for cls in (Events, AsyncEvents):
        assert not hasattr(cls.send, "__wrapped__") and not hasattr(cls.stream, "__wrapped__")
    queue_turn(server, "sesn_n", "sevt_u2")
    loop_client.beta.sessions.events.send("sesn_n", events=[message()])
    assert type(loop_client.beta.sessions.events.stream("sesn_n")) is anthropic.Stream
    cma_tracing.instrument()  # the fixture uninstruments again


def test_a_second_instrument_changes_nothing_and_returns_the_same_instrumentor(
    instrumented: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from anthropic.resources.beta.sessions.events import Events

    wrapper = Events.__dict__["send"]
    again = cma_tracing.instrument(child_spans=False)
    assert again is instrumented and Events.__dict__["send"] is wrapper
    assert again.options.child_spans is True
    assert any("already instrumented" in r.getMessage() for r in caplog.records)


def _wait(condition: Any, timeout: float = 5.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_with_the_sdks_own_tracing_on_its_stream_observer_still_sees_every_event(
    instrumented: Any, provider: Any, server: FakeCMAServer, spans: Spans, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proxy reads the SDK's event generator directly only when the stream's `__iter__` would just pass events
    on; with the SDK's tracing on, the stream's observer is fed by the SDK's own `__iter__`, as without us."""
    from anthropic import _tracing

    seen: list[object] = []
    original = _tracing.FirstEnd.item
    monkeypatch.setattr(_tracing.FirstEnd, "item", lambda self, item: (seen.append(item), original(self, item)))
    client = anthropic.Anthropic(
        base_url=server.base_url, api_key="test-key", max_retries=0, open_telemetry={"tracer_provider": provider[0]}
    )
    queue_turn(server, "sesn_obs", "sevt_u1")
    client.beta.sessions.events.send("sesn_obs", events=[message()])
    yielded = list(client.beta.sessions.events.stream("sesn_obs"))
    assert len(yielded) == 11 and [id(e) for e in seen[-11:]] == [id(e) for e in yielded]
    assert stop_reason(spans) == "end_turn"


def test_a_stream_subclass_with_its_own_iteration_is_read_through_it(client: anthropic.Anthropic) -> None:
    """A `Stream` whose class overrides `__iter__` is read through that override, never around it."""
    from cma_tracing.patchers.streams import TracedStream

    class Tagging(anthropic.Stream[Any]):
        def __iter__(self) -> Any:
            for item in super().__iter__():
                yield ("tagged", item)

    body = b"".join(b"event: message\ndata: " + json.dumps(e).encode() + b"\n\n" for e in turn_events("sevt_s"))
    response = httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)
    stream = Tagging(cast_to=object, response=response, client=client)
    seen: list[Any] = []
    ended: list[str] = []
    proxied = TracedStream(stream, lambda event, now: seen.append(event), lambda how, *rest: ended.append(how))
    yielded = list(proxied)
    assert len(yielded) == len(turn_events("x")) and all(item[0] == "tagged" for item in yielded)
    assert seen == yielded and ended == ["ended"]


def test_each_turn_names_the_client_and_betas_of_the_stream_that_opened_it(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    # The patcher keeps the last plain call's client attributes: a stream of another client, or one naming its
    # own betas, must still say its own.
    with running_server() as second:
        other = anthropic.Anthropic(base_url=second.base_url, api_key="test-key", max_retries=0, open_telemetry=False)
        calls = [(loop_client, server, None), (other, second, None), (loop_client, server, ["files-api-2025-04-14"])]
        calls.append((loop_client, server, None))
        for n, (client, fake, betas) in enumerate(calls):
            fake.queue_stream("sesn_clients", steps(turn_events(f"sevt_u{n}")))
            extra: dict[str, Any] = {"betas": betas} if betas else {}
            list(client.beta.sessions.events.stream("sesn_clients", **extra))
    ports = [int(fake.base_url.rsplit(":", 1)[1]) for _, fake, _ in calls]
    turns = spans.turns()
    assert [dict(t.attributes or {})["server.port"] for t in turns] == ports
    assert [dict(t.attributes or {})["anthropic.beta"] for t in turns] == [
        ("managed-agents-2026-04-01",),
        ("managed-agents-2026-04-01",),
        ("files-api-2025-04-14", "managed-agents-2026-04-01"),
        ("managed-agents-2026-04-01",),
    ]


@pytest.mark.parametrize("where", ["acquire", "proxy"])
def test_a_failure_of_ours_while_opening_a_stream_leaves_the_app_its_sdk_stream(
    where: str,
    instrumented: Any,
    server: FakeCMAServer,
    loop_client: anthropic.Anthropic,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Between the SDK's `stream()` and the app, nothing of ours may raise: neither finding the session's tracker nor
    making the proxy around the stream."""
    from cma_tracing.instrumentation.registry import SessionRegistry
    from cma_tracing.patchers import events as events_patcher

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("instrumentation bug")

    if where == "acquire":
        monkeypatch.setattr(SessionRegistry, "acquire", broken)
    else:
        monkeypatch.setattr(events_patcher, "TracedStream", broken)
    queue_turn(server, "sesn_broken", "sevt_u1")
    stream = loop_client.beta.sessions.events.stream("sesn_broken")
    assert type(stream) is anthropic.Stream  # the SDK's own, unwrapped
    assert [e.type for e in stream][-1] == "session.status_idle"
    assert instrumented.registry.active_count() == 0  # the claim made for the stream was handed back


@pytest.mark.asyncio
async def test_a_failure_of_ours_while_opening_an_async_stream_leaves_the_app_its_sdk_stream(
    instrumented: Any,
    server: FakeCMAServer,
    loop_async_client: anthropic.AsyncAnthropic,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cma_tracing.patchers import events as events_patcher

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("instrumentation bug")

    monkeypatch.setattr(events_patcher, "TracedAsyncStream", broken)
    queue_turn(server, "sesn_broken_async", "sevt_u1")
    stream = await loop_async_client.beta.sessions.events.stream("sesn_broken_async")
    assert type(stream) is anthropic.AsyncStream
    assert [e.type async for e in stream][-1] == "session.status_idle"
    await stream.close()
