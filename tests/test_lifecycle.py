"""SPEC §3.1, row by row, on the pure core: a `SessionTracker` fed plain event lists (no SDK, no I/O)."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Optional

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from cma_tracing.instrumentation.protocol import StreamEnd
from cma_tracing.instrumentation.registry import SessionRegistry
from cma_tracing.instrumentation.session import SessionTracker
from cma_tracing.instrumentation.telemetry import Telemetry
from tests.support import events as ev

SID = "sesn_core"


class Harness:
    """A tracker on an in-memory exporter, with a clock that advances 1 ms per event."""

    def __init__(self, registry: bool = False, orphan_timeout_s: float = 300) -> None:
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        tracer = Telemetry(provider.get_tracer("test"))
        self.registry = SessionRegistry(tracer, orphan_timeout_s) if registry else None
        self.tracker = self.registry.acquire(SID) if self.registry is not None else SessionTracker(SID, tracer)
        self.now = 1_000_000_000_000

    def tick(self) -> int:
        self.now += 1_000_000
        return self.now

    def feed(self, events: Iterable[Any]) -> None:
        for event in events:
            self.tracker.on_event(event, self.tick())

    def send(self, *events: Any, echo_ids: Optional[list[str]] = None) -> Any:
        send = self.tracker.begin_send(list(events), self.tick())
        ids = echo_ids if echo_ids is not None else [ev.new_id() for _ in events]
        echoed = [{**e, "id": i, "processed_at": None} for e, i in zip(events, ids)]
        self.tracker.send_succeeded(send, {"data": echoed})
        return send

    def turns(self) -> list[ReadableSpan]:
        spans = [
            s
            for s in self.exporter.get_finished_spans()
            if s.kind is SpanKind.CLIENT and s.name.startswith("invoke_agent")
        ]
        return sorted(spans, key=lambda s: s.start_time or 0)

    def turn(self) -> ReadableSpan:
        turns = self.turns()
        assert len(turns) == 1, [dict(t.attributes or {}) for t in turns]
        return turns[0]


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_send_with_a_user_message_opens_a_turn_before_the_request() -> None:
    h = Harness()
    send = h.tracker.begin_send([ev.user_message(id=None)], h.tick())
    assert send is not None and send.opened and h.tracker.turn is send.turn and not send.turn.ended


def test_a_user_message_on_a_stream_opens_a_turn_when_none_is_open() -> None:
    h = Harness()
    h.feed([ev.user_message(), ev.agent_message(), ev.idle()])
    assert attrs(h.turn())["anthropic.turn.stop_reason"] == "end_turn"
    assert attrs(h.turn())["anthropic.turn.trigger"] == "user.message"
    assert attrs(h.turn())["anthropic.turn.events"] == 3


def test_a_watcher_sees_running_first_opens_a_resume_turn_and_adopts_the_user_message() -> None:
    """The real order is status_running, thread_status_running, user.message: a process that only watches opens a
    `resume` turn at the agent's first work, and it takes the user.message that comes before its first model request
    as its own (trigger `user.message`), rather than being superseded by it."""
    h = Harness()
    h.feed([ev.running()])
    opened = h.now
    h.feed([ev.user_message(), ev.request_start(), ev.agent_message(), ev.idle()])
    span = h.turn()
    assert attrs(span)["anthropic.turn.trigger"] == "user.message"
    assert span.start_time == opened and attrs(span)["anthropic.turn.events"] == 5


def test_a_user_message_not_the_open_turns_own_supersedes_it() -> None:
    h = Harness()
    h.send(ev.user_message(), echo_ids=["sevt_own"])
    h.feed([ev.user_message("sevt_own"), ev.user_message("sevt_other"), ev.idle()])
    first, second = h.turns()
    assert attrs(first)["anthropic.turn.stop_reason"] == "superseded"
    assert attrs(second)["anthropic.turn.stop_reason"] == "end_turn"
    assert first.end_time == second.start_time


def test_a_turn_opened_by_send_adopts_the_first_user_message_until_the_response_names_it() -> None:
    h = Harness()
    send = h.tracker.begin_send([ev.user_message(id=None)], h.tick())
    h.feed([ev.user_message("sevt_echo")])  # the stream is faster than the send's response
    h.tracker.send_succeeded(send, {"data": [ev.user_message("sevt_echo")]})
    h.feed([ev.user_message("sevt_echo"), ev.agent_message(), ev.idle()])
    assert attrs(h.turn())["anthropic.turn.stop_reason"] == "end_turn"


@pytest.mark.parametrize("reply", ["user.tool_confirmation", "user.custom_tool_result", "user.interrupt"])
def test_other_user_events_sent_join_the_open_turn_as_span_events(reply: str) -> None:
    h = Harness()
    h.send(ev.user_message())
    sent = ev.event(reply, id=None, tool_use_id="sevt_x", result="allow")
    joined = h.tracker.begin_send([sent], h.tick())
    assert joined is not None and joined.turn is h.tracker.turn and not joined.opened
    echo = {**sent, "id": "sevt_reply"}
    h.tracker.send_succeeded(joined, {"data": [echo]})
    h.feed([{**echo, "processed_at": None}, echo, ev.idle()])  # its echoes are not recorded again
    span = h.turn()
    assert [e.name for e in span.events] == [reply]


def test_requires_action_keeps_the_turn_open_until_running_or_agent_output() -> None:
    h = Harness()
    h.send(ev.user_message())
    use = ev.tool_use("get_weather", kind="agent.custom_tool_use")
    h.feed([use, ev.idle("requires_action", event_ids=[use["id"]])])
    assert h.turns() == [] and h.tracker.turn is not None and h.tracker.turn.waiting
    h.feed([ev.running()])
    assert not h.tracker.turn.waiting
    h.feed([ev.idle("requires_action", event_ids=[]), ev.agent_message()])
    assert not h.tracker.turn.waiting
    h.feed([ev.idle()])
    assert attrs(h.turn())["anthropic.turn.stop_reason"] == "end_turn"


def test_the_send_that_opened_a_turn_failing_ends_it_with_send_error() -> None:
    h = Harness()
    send = h.tracker.begin_send([ev.user_message(id=None)], h.tick())
    h.tracker.send_failed(send, RuntimeError("refused"), "invalid_request_error")
    span = h.turn()
    assert attrs(span)["anthropic.turn.stop_reason"] == "send_error"
    assert attrs(span)["error.type"] == "invalid_request_error"
    assert span.status.status_code is StatusCode.ERROR


@pytest.mark.parametrize(
    ("stop", "finish", "status"),
    [
        ("end_turn", "stop", StatusCode.OK),
        ("refusal", "content_filter", StatusCode.UNSET),
        ("budget_reached", "length", StatusCode.UNSET),
        ("retries_exhausted", "error", StatusCode.ERROR),
        ("a_reason_from_the_future", "error", StatusCode.UNSET),
    ],
)
def test_idle_with_any_stop_reason_but_requires_action_ends_the_turn(stop: str, finish: str, status: Any) -> None:
    h = Harness()
    h.send(ev.user_message())
    h.feed([ev.session_error("model_overloaded_error", "exhausted")] if stop == "retries_exhausted" else [])
    h.feed([ev.idle(stop)])
    span = h.turn()
    assert attrs(span)["anthropic.turn.stop_reason"] == stop
    assert attrs(span)["gen_ai.response.finish_reasons"] == (finish,)
    assert span.status.status_code is status
    if stop == "retries_exhausted":
        assert attrs(span)["error.type"] == "model_overloaded_error"


def test_an_idle_without_a_readable_stop_reason_still_ends_the_turn() -> None:
    h = Harness()
    h.send(ev.user_message())
    h.feed([ev.event("session.status_idle", stop_reason=None)])
    assert attrs(h.turn())["anthropic.turn.stop_reason"] == "unknown"


@pytest.mark.parametrize(
    ("event_type", "reason"), [("session.status_terminated", "terminated"), ("session.deleted", "deleted")]
)
def test_terminated_and_deleted_end_the_turn(event_type: str, reason: str) -> None:
    h = Harness()
    h.send(ev.user_message())
    h.feed([ev.event(event_type)])
    span = h.turn()
    assert attrs(span)["anthropic.turn.stop_reason"] == reason
    assert span.status.status_code is StatusCode.UNSET
    assert "gen_ai.response.finish_reasons" not in attrs(span)


def test_terminated_after_a_session_error_is_an_error() -> None:
    h = Harness()
    h.send(ev.user_message())
    h.feed([ev.session_error("mcp_connection_failed_error", "terminal"), ev.event("session.status_terminated")])
    span = h.turn()
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == "mcp_connection_failed_error"


def test_a_new_user_message_sent_while_a_turn_is_open_supersedes_it() -> None:
    h = Harness()
    h.send(ev.user_message())
    h.send(ev.user_message())
    h.feed([ev.idle()])
    first, second = h.turns()
    assert attrs(first)["anthropic.turn.stop_reason"] == "superseded"
    assert (attrs(first)["anthropic.turn.index"], attrs(second)["anthropic.turn.index"]) == (1, 2)


def test_an_sse_error_frame_ends_the_turn_with_stream_error() -> None:
    h = Harness()
    h.tracker.claim(stream=True)
    h.send(ev.user_message())
    h.tracker.stream_finished(StreamEnd.FATAL, h.tick(), RuntimeError("Overloaded"), "overloaded_error")
    span = h.turn()
    assert attrs(span)["anthropic.turn.stop_reason"] == "stream_error"
    assert attrs(span)["error.type"] == "overloaded_error"
    assert span.status.status_code is StatusCode.ERROR


@pytest.mark.parametrize("how", [StreamEnd.ENDED, StreamEnd.TRANSPORT])
def test_a_stream_ended_by_the_server_or_failing_leaves_the_turn_open_for_a_reconnect(how: str) -> None:
    h = Harness()
    h.tracker.claim(stream=True)
    h.send(ev.user_message())
    h.tracker.stream_finished(how, h.tick(), ConnectionError("reset") if how == StreamEnd.TRANSPORT else None, "x.Err")
    assert h.turns() == [] and h.tracker.turn is not None
    h.tracker.claim(stream=True)
    h.feed([ev.agent_message(), ev.idle()])
    span = h.turn()
    assert attrs(span)["anthropic.turn.stop_reason"] == "end_turn"
    assert [e.name for e in span.events] == (["stream.error"] if how == StreamEnd.TRANSPORT else [])


def test_the_consumer_stopping_while_the_agent_runs_abandons_the_turn() -> None:
    h = Harness()
    h.tracker.claim(stream=True)
    h.send(ev.user_message())
    h.feed([ev.running()])
    h.tracker.stream_finished(StreamEnd.CLOSED, h.tick())
    span = h.turn()
    assert attrs(span)["anthropic.turn.stop_reason"] == "abandoned"
    assert span.status.status_code is StatusCode.UNSET


def test_closing_one_of_two_streams_does_not_abandon_the_turn() -> None:
    h = Harness()
    h.tracker.claim(stream=True)
    h.tracker.claim(stream=True)
    h.send(ev.user_message())
    h.tracker.stream_finished(StreamEnd.CLOSED, h.tick())
    assert h.turns() == []
    h.tracker.stream_finished(StreamEnd.CLOSED, h.tick())
    assert attrs(h.turn())["anthropic.turn.stop_reason"] == "abandoned"


def test_the_consumer_stopping_while_the_turn_waits_on_the_client_keeps_it_open() -> None:
    h = Harness()
    h.tracker.claim(stream=True)
    h.send(ev.user_message())
    h.feed([ev.idle("requires_action", event_ids=["sevt_x"])])
    h.tracker.stream_finished(StreamEnd.CLOSED, h.tick())
    assert h.turns() == [] and h.tracker.turn is not None


@pytest.mark.parametrize(
    ("failed", "reason", "status"), [(False, "unobserved", StatusCode.UNSET), (True, "stream_error", StatusCode.ERROR)]
)
def test_a_turn_with_no_stream_for_the_orphan_timeout_ends_at_its_last_event(
    failed: bool, reason: str, status: Any
) -> None:
    h = Harness()
    h.tracker.claim(stream=True)
    h.send(ev.user_message())
    h.feed([ev.agent_message()])
    last_seen = h.now
    how = StreamEnd.TRANSPORT if failed else StreamEnd.ENDED
    h.tracker.stream_finished(how, h.tick(), ConnectionError("reset") if failed else None, "httpx2.ReadError")
    timeout = 300 * 10**9
    assert h.tracker.check_orphan(h.now + timeout - 1, timeout)[0] is not None  # not yet
    assert h.turns() == []
    assert h.tracker.check_orphan(h.now + timeout, timeout)[0] is None
    span = h.turn()
    assert attrs(span)["anthropic.turn.stop_reason"] == reason
    assert span.status.status_code is status
    assert span.end_time == last_seen


def test_a_stream_opening_before_the_timeout_keeps_the_turn() -> None:
    h = Harness()
    h.send(ev.user_message())
    h.tracker.claim(stream=True)
    assert h.tracker.check_orphan(h.now + 10**15, 10**9)[0] is None
    assert h.tracker.turn is not None


def test_shutdown_ends_the_open_turn() -> None:
    h = Harness(registry=True)
    h.send(ev.user_message())
    assert h.registry is not None
    h.registry.shutdown()
    assert attrs(h.turn())["anthropic.turn.stop_reason"] == "shutdown"


def test_events_are_deduplicated_by_id_within_a_session() -> None:
    h = Harness()
    start = ev.request_start()
    end = ev.request_end(start["id"], input=10, output=1)
    h.feed([ev.user_message(), start, start, end, end, ev.agent_message(), ev.idle()])
    span_attrs = attrs(h.turn())
    assert (span_attrs["gen_ai.usage.input_tokens"], span_attrs["anthropic.turn.model_requests"]) == (10, 1)
    assert span_attrs["anthropic.turn.events"] == 5


def test_a_late_echo_of_the_turn_that_just_ended_is_not_a_new_turn() -> None:
    """Dedupe ids live with their turn (the stream never replays; list pages feed only the open turn), and the last
    ended turn's ids are kept: its user.message echoed again after its idle does not open a turn."""
    h = Harness()
    first = ev.user_message("sevt_u1")
    h.feed([first, ev.agent_message(), ev.idle()])
    h.feed([dict(first, processed_at=None)])
    assert h.tracker.turn is None and len(h.turns()) == 1
    assert h.tracker.has_seen("sevt_u1")
    h.feed([ev.user_message("sevt_u2"), ev.idle()])
    assert [attrs(t)["anthropic.turn.index"] for t in h.turns()] == [1, 2]
    assert not h.tracker.has_seen("sevt_u1")  # two turns on: forgotten, as bounded memory should


def test_dedupe_memory_is_bounded_but_covers_recent_ids() -> None:
    h = Harness()
    h.feed([ev.user_message()])
    ids = [ev.new_id() for _ in range(5000)]
    h.feed(ev.event("agent.thinking", id=i) for i in ids)
    h.feed(ev.event("agent.thinking", id=i) for i in ids[-1000:])  # the recent ones are remembered
    assert h.tracker.turn is not None and h.tracker.turn.events == 5001
    # Two generations of 1,024 ids: the last 1,024 are always remembered, none from 2,048 back.
    assert h.tracker.has_seen(ids[-1]) and h.tracker.has_seen(ids[-1024])
    assert not h.tracker.has_seen(ids[0]) and not h.tracker.has_seen(ids[-2048])


def test_list_pages_feed_only_events_after_the_turns_own_user_message() -> None:
    h = Harness()
    old = [ev.user_message("sevt_old"), ev.tool_use(), ev.request_end("sevt_r0", input=999), ev.idle()]
    h.send(ev.user_message(), echo_ids=["sevt_mine"])
    mine = ev.user_message("sevt_mine")
    start = ev.request_start()
    new = [start, ev.request_end(start["id"], input=7, output=3)]
    h.tracker.on_listed(old + [mine] + new, h.tick())
    h.feed([ev.idle()])
    span_attrs = attrs(h.turn())
    assert (span_attrs["gen_ai.usage.input_tokens"], span_attrs["anthropic.turn.tool_calls"]) == (7, 0)


def test_list_pages_never_open_or_supersede_a_turn() -> None:
    h = Harness()
    h.tracker.on_listed([ev.user_message(), ev.agent_message(), ev.idle()], h.tick())
    assert h.tracker.turn is None
    h.send(ev.user_message(), echo_ids=["sevt_mine"])
    h.tracker.on_listed([ev.user_message("sevt_mine"), ev.user_message("sevt_later")], h.tick())
    assert h.turns() == [] and h.tracker.turn is not None


def test_time_to_first_chunk_counts_previews_and_tool_uses_as_output() -> None:
    h = Harness()
    h.send(ev.user_message())
    opened = h.now
    h.feed([ev.running(), ev.request_start(), ev.event("event_start", id=None, event={"type": "agent.message"})])
    first_output = h.now
    h.feed([ev.agent_message(), ev.idle()])
    span_attrs = attrs(h.turn())
    assert span_attrs["gen_ai.response.time_to_first_chunk"] == pytest.approx((first_output - opened) / 1e9)
    assert span_attrs["anthropic.turn.events"] == 4  # previews have no id and are not counted


def test_unknown_event_types_are_counted_and_never_end_a_turn() -> None:
    h = Harness()
    h.send(ev.user_message())
    h.feed([ev.event("session.something_new", data={"x": 1}), ev.event("agent.future_thing")])
    assert h.tracker.turn is not None
    h.feed([ev.idle()])
    span_attrs = attrs(h.turn())
    assert (span_attrs["anthropic.turn.unknown_events"], span_attrs["anthropic.turn.events"]) == (2, 3)


def test_usage_becomes_session_attributes_with_cost_in_dollars() -> None:
    h = Harness()
    h.feed([ev.user_message()])
    usage = {
        "input_tokens": 5,
        "list_cost": {"amount": "250", "currency": "USD"},
        "cache_creation": {"ephemeral_5m_input_tokens": 3},
    }
    h.feed([ev.event("session.usage", usage=usage), ev.idle()])
    span_attrs = attrs(h.turn())
    assert span_attrs["anthropic.session.cost_usd"] == 2.5
    assert span_attrs["anthropic.session.usage.input_tokens"] == 5
    assert span_attrs["anthropic.session.usage.cache_creation.ephemeral_5m_input_tokens"] == 3


def test_turn_span_events_for_errors_reschedules_and_thread_messages() -> None:
    h = Harness()
    h.feed([ev.user_message(), ev.session_error(), ev.event("session.status_rescheduled"), ev.running()])
    h.feed([ev.event("agent.thread_message_sent", to_session_thread_id="sthr_1", content=[])])
    h.feed([ev.event("agent.thread_message_received", from_session_thread_id="sthr_1", content=[]), ev.idle()])
    names = [e.name for e in h.turn().events]
    assert names == [
        "session.error",
        "session.status_rescheduled",
        "agent.thread_message_sent",
        "agent.thread_message_received",
    ]


# -- fixed on the redesigned core: each test failed before its fix ------------------------------------------------


def test_a_send_that_joined_a_turn_another_send_opened_meanwhile_does_not_end_it_when_it_fails() -> None:
    """Two sends race: a tool result joins, a new user.message opens a turn. Whether a send opened its turn is
    decided inside the tracker's lock, so the failing reply cannot end the other send's turn as `send_error`."""
    h = Harness()
    h.send(ev.user_message())
    opened = h.tracker.begin_send([ev.user_message(id=None)], h.tick())
    joined = h.tracker.begin_send([ev.event("user.custom_tool_result", id=None, custom_tool_use_id="x")], h.tick())
    assert opened is not None and joined is not None and opened.turn is joined.turn
    assert opened.opened and not joined.opened
    h.tracker.send_failed(joined, RuntimeError("refused"), "invalid_request_error")
    assert h.tracker.turn is opened.turn and not opened.turn.ended
    h.feed([ev.idle()])
    first, second = h.turns()
    assert (attrs(first)["anthropic.turn.stop_reason"], attrs(second)["anthropic.turn.stop_reason"]) == (
        "superseded",
        "end_turn",
    )


@pytest.mark.parametrize("reply", ["user.custom_tool_result", "user.tool_confirmation", "user.interrupt"])
def test_a_reply_whose_echo_arrives_before_its_sends_response_is_recorded_once(reply: str) -> None:
    """Another task reads the stream while the app sends: the echo can beat the send's response, which is what
    used to name the reply's id. One reply, one record, whichever comes first."""
    h = Harness()
    h.send(ev.user_message())
    use = ev.tool_use("get_weather", kind="agent.custom_tool_use")
    h.feed([use, ev.idle("requires_action", event_ids=[use["id"]])])
    fields = {"custom_tool_use_id": use["id"]} if reply == "user.custom_tool_result" else {"tool_use_id": use["id"]}
    sent = ev.event(reply, id=None, **fields, result="allow", content=[], is_error=False)
    send = h.tracker.begin_send([sent], h.tick())
    echo = {**sent, "id": "sevt_reply_echo"}
    h.feed([{**echo, "processed_at": None}, echo])  # both echoes, before the response
    h.tracker.send_succeeded(send, {"data": [echo]})
    h.feed([ev.running(), ev.agent_message(), ev.idle()])
    assert [e.name for e in h.turn().events] == [reply]


def test_evicting_a_session_with_an_open_turn_lets_go_of_its_tracker() -> None:
    """Past the active-session cap the least recently used session's turn ends `unobserved`; a stream still holding
    its tracker no longer feeds it, and the session's next tracker goes on counting turns (never index 1 twice)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    registry = SessionRegistry(Telemetry(provider.get_tracer("t")), orphan_timeout_s=300, max_active=2)
    held = registry.acquire("sesn_a", stream=True)  # a stream of sesn_a stays open throughout
    held.on_event(ev.user_message(), 10**18)
    registry.acquire("sesn_b", stream=True)
    registry.acquire("sesn_c", stream=True)  # evicts sesn_a
    held.on_event(ev.user_message(), 10**18 + 1)  # the old stream reads on: ignored, no second turn
    fresh = registry.acquire("sesn_a", stream=True)
    assert fresh is not held
    fresh.on_event(ev.user_message(), 10**18 + 2)
    fresh.on_event(ev.idle(), 10**18 + 3)
    registry.shutdown()
    turns = [dict(s.attributes or {}) for s in exporter.get_finished_spans() if s.name.startswith("invoke_agent")]
    by_session = [
        (t["anthropic.session.id"], t["anthropic.turn.index"], t["anthropic.turn.stop_reason"]) for t in turns
    ]
    assert by_session == [("sesn_a", 1, "unobserved"), ("sesn_a", 2, "end_turn")]


def test_the_processed_echo_of_a_queued_user_message_anchors_the_turn() -> None:
    """Stream-first apps see each client event twice: queued (`processed_at: null`), then processed, with one id.
    The processed echo is a duplicate id, but it must still give the turn its anchor on the server's clock (which
    `fetch_subthreads` and late thread feeds need)."""
    h = Harness()
    h.send(ev.user_message(), echo_ids=["sevt_mine"])
    processed = ev.user_message("sevt_mine")
    h.feed([{**processed, "processed_at": None}])
    h.feed([ev.event("session.thread_created", session_thread_id="sthr_r", agent_name="researcher")])
    assert h.tracker.threads_to_fetch(ev.idle()) == []  # no anchor yet: nothing could be placed
    h.feed([processed])
    assert h.tracker.threads_to_fetch(ev.idle()) == ["sthr_r"]


def test_fetched_events_are_placed_from_the_moment_the_turns_echo_was_seen() -> None:
    """The send goes out at T, the server processes its user.message 0.6 s later and the stream shows that echo
    then: a fetched thread event stamped 0.4 s after the user.message lies at T + 1.0 s (echo seen + 0.4), not at
    T + 0.4 (send + 0.4), which would fall before the subagent's start and be squashed onto it."""
    h = Harness()
    second = 1_000_000_000
    t = h.now
    send = h.tracker.begin_send([ev.user_message()], t)
    h.tracker.send_succeeded(send, {"data": [{**ev.user_message("sevt_mine"), "processed_at": None}]})
    h.tracker.on_event(ev.running(), t + second // 10)
    h.tracker.on_event({**ev.user_message("sevt_mine"), "processed_at": "2026-08-17T16:00:00Z"}, t + 6 * second // 10)
    created = ev.event("session.thread_created", session_thread_id="sthr_r", agent_name="researcher")
    h.tracker.on_event({**created, "processed_at": "2026-08-17T16:00:00.100Z"}, t + 7 * second // 10)
    fetched = [
        {**ev.request_start("sevt_rs"), "processed_at": "2026-08-17T16:00:00.400Z"},
        {**ev.request_end("sevt_rs", input=5, output=7), "processed_at": "2026-08-17T16:00:00.500Z"},
    ]
    h.tracker.on_fetched("sthr_r", fetched, t + 2 * second)
    h.tracker.on_event(
        ev.event("session.thread_status_idle", session_thread_id="sthr_r", stop_reason={"type": "end_turn"}),
        t + 2 * second,
    )
    h.tracker.on_event(ev.idle(), t + 2 * second)
    (subagent,) = [s for s in h.exporter.get_finished_spans() if s.name == "invoke_agent researcher"]
    (chat,) = [s for s in h.exporter.get_finished_spans() if s.name.startswith("chat")]
    assert chat.parent is not None and chat.parent.span_id == subagent.context.span_id
    assert chat.start_time == t + second  # the echo seen at T + 0.6, plus the server's 0.4
    assert chat.end_time == t + second + second // 10  # the server's duration
    assert subagent.start_time == t + 7 * second // 10


def _one_stream(registry: SessionRegistry, session_id: str, events: list[Any], now: int) -> SessionTracker:
    tracker = registry.acquire(session_id, stream=True)
    for n, event in enumerate(events):
        tracker.on_event(event, now + n)
    registry.stream_finished(tracker)(StreamEnd.ENDED, now + len(events), None, "")
    return tracker


def test_a_stream_per_turn_takes_up_the_same_tracker_and_a_late_echo_opens_nothing() -> None:
    """An app that opens a stream per turn: the session goes idle between streams, its tracker is kept whole (a
    bounded few) and taken up again, so turn indexes go on and an echo of the last turn's events on the next
    stream is not news."""
    h = Harness(registry=True)
    assert h.registry is not None
    registry = h.registry
    registry.release(h.tracker)
    mine = ev.user_message("sevt_first")
    first = _one_stream(registry, SID, [ev.running(), mine, ev.idle()], h.tick())
    assert registry.active_count() == 0 and registry.warm_count() == 1
    second = _one_stream(registry, SID, [mine, ev.running(), ev.user_message(), ev.idle()], h.tick() + 10)
    assert second is first
    assert [attrs(t)["anthropic.turn.index"] for t in h.turns()] == [1, 2]


def test_idle_sessions_kept_whole_are_bounded_and_the_rest_are_remembered() -> None:
    h = Harness(registry=True)
    assert h.registry is not None
    registry = h.registry
    registry.release(h.tracker)
    sessions = [f"sesn_{n}" for n in range(200)]
    for round_ in range(2):
        for n, session_id in enumerate(sessions):
            _one_stream(registry, session_id, [ev.running(), ev.user_message(), ev.idle()], h.tick() + 10 * n)
        assert registry.active_count() == 0 and registry.warm_count() == 64
    by_session: dict[str, list[int]] = {}
    for turn in h.turns():
        by_session.setdefault(attrs(turn)["anthropic.session.id"], []).append(attrs(turn)["anthropic.turn.index"])
    assert len(by_session) == 200 and all(indexes == [1, 2] for indexes in by_session.values())


def test_warm_sessions_count_against_no_cap_and_are_remembered_when_pushed_out() -> None:
    """A warm session (idle, kept whole) is not one with something open: it neither fills the active cap nor ends
    `unobserved` when the cap pushes it out; it is reduced to what is remembered, and its turns go on counting."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    registry = SessionRegistry(Telemetry(provider.get_tracer("t")), orphan_timeout_s=300, max_active=2)
    now = 10**18
    _one_stream(registry, "sesn_a", [ev.user_message(), ev.idle()], now)
    assert (registry.active_count(), registry.warm_count()) == (0, 1)
    for session_id in ("sesn_b", "sesn_c"):
        registry.acquire(session_id, stream=True).on_event(ev.user_message(), now + 10)
    assert (registry.active_count(), registry.warm_count(), registry.remembered_count()) == (2, 1, 0)
    registry.acquire("sesn_d", stream=True)  # past the cap: sesn_a (warm, oldest) goes, then sesn_b (open)
    assert (registry.active_count(), registry.warm_count()) == (2, 0)
    again = _one_stream(registry, "sesn_a", [ev.user_message(), ev.idle()], now + 20)  # pushes sesn_c out
    registry.shutdown()
    turns = [dict(s.attributes or {}) for s in exporter.get_finished_spans() if s.name.startswith("invoke_agent")]
    ended = sorted(
        (t["anthropic.session.id"], t["anthropic.turn.index"], t["anthropic.turn.stop_reason"]) for t in turns
    )
    assert ended == [
        ("sesn_a", 1, "end_turn"),
        ("sesn_a", 2, "end_turn"),
        ("sesn_b", 1, "unobserved"),
        ("sesn_c", 1, "unobserved"),
    ]
    assert again.turn_count == 2


def test_an_agent_learnt_while_its_session_is_warm_names_its_next_turn() -> None:
    h = Harness(registry=True)
    assert h.registry is not None
    registry = h.registry
    registry.release(h.tracker)
    _one_stream(registry, SID, [ev.user_message(), ev.idle()], h.tick())
    assert registry.warm_count() == 1
    registry.remember_agent(SID, {"gen_ai.agent.name": "researcher"})
    _one_stream(registry, SID, [ev.user_message(), ev.idle()], h.tick() + 10)
    first, second = h.turns()
    assert "gen_ai.agent.name" not in attrs(first) and attrs(second)["gen_ai.agent.name"] == "researcher"


def test_start_attributes_given_again_after_others_apply_again() -> None:
    """A session named by one client, then another, then the first again (one shared mapping per client): each turn
    carries the client it was opened under, though the tracker skips a mapping it was just given."""
    h = Harness()
    first = {"server.address": "a.example", "server.port": 443}
    other = {"server.address": "b.example", "server.port": 443}
    hosts = []
    for client in (first, first, other, first):
        h.tracker.update_start_attributes(client)
        h.feed([ev.user_message(), ev.idle()])
        hosts.append(attrs(h.turns()[-1])["server.address"])
    assert hosts == ["a.example", "a.example", "b.example", "a.example"]


@pytest.mark.parametrize("child_spans", [True, False])
def test_the_coordinators_own_thread_is_learnt_with_or_without_child_spans(child_spans: bool) -> None:
    """A turn's first thread status names the coordinator's thread: later work of that thread resumes a turn, a
    subagent's cross-posted work does not. Turn spans alone need this as much as child spans do."""
    h = Harness()
    h.tracker = SessionTracker(SID, dataclasses.replace(h.tracker.telemetry, child_spans=child_spans))
    start = ev.request_start()
    h.feed(
        [
            ev.user_message(),
            ev.running(),
            ev.event("session.thread_status_running", session_thread_id="sthr_main", agent_name="coordinator"),
            start,
            ev.agent_message(),
            ev.request_end(start["id"], 10, 1),
            ev.event("session.thread_status_idle", session_thread_id="sthr_main", stop_reason={"type": "end_turn"}),
            ev.idle(),
        ]
    )
    assert h.tracker.primary_thread == "sthr_main"
    h.feed([{**ev.agent_message("from a subagent"), "session_thread_id": "sthr_sub"}])
    assert h.tracker.turn is None
    h.feed([{**ev.agent_message("resumed"), "session_thread_id": "sthr_main"}, ev.idle()])
    first, resumed = h.turns()
    assert attrs(first)["anthropic.turn.events"] == 8
    assert (attrs(resumed)["anthropic.turn.trigger"], attrs(resumed)["anthropic.turn.events"]) == ("resume", 2)
