"""SPEC §3.3, subagent work that only a thread's own feed carries: fetched with `fetch_subthreads=True` when a
coordinator turn goes idle (each subagent thread's events listed with the app's client and added under its span
before the turn span ends; off by default, no API call of ours then), or listed by the app after the turn ended;
and a subagent's children ending with it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Optional

import anthropic
import httpx2
import pytest

from cma_tracing.demo.loopback import Event, FakeCMAServer
from tests.support.spans import Spans
from tests.support import events as ev
from tests.support.scenarios import message, run_turn
from tests.support.spans import assert_nested, attrs, seconds

RESEARCHER = "sthr_research"
T0 = datetime(2026, 8, 17, 16, 21, 33, tzinfo=timezone.utc)


def _at(event: dict[str, Any], seconds_after: float) -> dict[str, Any]:
    """The event stamped `seconds_after` the turn's user.message, on the server's clock."""
    return {**event, "processed_at": (T0 + timedelta(seconds=seconds_after)).isoformat().replace("+00:00", "Z")}


def _queue(
    server: FakeCMAServer,
    session_id: str,
    echo_delay: Optional[float] = None,
    queued: bool = True,
    one_page: bool = False,
) -> None:
    """A coordinator turn with one subagent (0.1 s → 0.8 s after the user.message), whose model request (0.2 s →
    0.5 s) only its own feed carries; the feed also has an older turn's request, before the user.message.

    With `echo_delay`, the processed user.message comes that many seconds after the send, and (when `queued`, as a
    stream-first app reads it) after its queued echo (`processed_at: null`, same id) at once. With `one_page`, the
    thread's feed is listed as one page rather than two."""
    echo = [Event(_at(ev.user_message("sevt_u"), 0))]
    if echo_delay is not None:
        echo = [Event({**echo[0].data, "processed_at": None})] if queued else []
        echo.append(Event(_at(ev.user_message("sevt_u"), 0), echo_delay))
    stream = [
        Event(_at(ev.running(), 0)),
        *echo,
        Event(_at(ev.event("session.thread_created", session_thread_id=RESEARCHER, agent_name="researcher"), 0.1), 0.1),
        Event(
            _at(ev.event("session.thread_status_running", session_thread_id=RESEARCHER, agent_name="researcher"), 0.1)
        ),
        Event(
            _at(
                ev.event(
                    "session.thread_status_idle",
                    session_thread_id=RESEARCHER,
                    agent_name="researcher",
                    stop_reason={"type": "end_turn"},
                ),
                0.8,
            ),
            0.7,
        ),
        Event(_at(ev.idle(), 0.9), 0.1),
    ]
    old_start, start = ev.request_start(), ev.request_start()
    feed = [
        _at(old_start, -60),
        _at(ev.request_end(old_start["id"], 999, 9), -59),  # an earlier turn's: not this one's
        _at(ev.event("session.thread_status_running", session_thread_id=RESEARCHER), 0.1),
        _at(start, 0.2),
        _at(ev.agent_message("found it"), 0.45),
        _at(ev.request_end(start["id"], 300, 30), 0.5),
        _at(
            ev.event("session.thread_status_idle", session_thread_id=RESEARCHER, stop_reason={"type": "end_turn"}), 0.8
        ),
    ]
    server.queue_send(session_id, ["sevt_u"])
    server.queue_stream(session_id, stream)
    if one_page:
        server.queue_list_page(session_id, feed, thread_id=RESEARCHER)
    else:
        server.queue_list_page(session_id, feed[:3], next_page="page_2", thread_id=RESEARCHER)
        server.queue_list_page(session_id, feed[3:], thread_id=RESEARCHER)


def _thread_lists(server: FakeCMAServer) -> list[str]:
    return [
        r.path for r in server.requests if r.method == "GET" and "/threads/" in r.path and r.path.endswith("/events")
    ]


def _assert_fetched(spans: Spans) -> None:
    turn = spans.turn()
    (research,) = [s for s in spans.children(turn) if s.name == "invoke_agent researcher"]
    (chat,) = spans.children(research)
    assert chat.name == "chat" and attrs(chat)["gen_ai.usage.input_tokens"] == 300
    assert seconds(chat) == pytest.approx(0.3, abs=0.002)  # the feed's stamps, placed on our clock as one block
    assert attrs(turn)["gen_ai.usage.input_tokens"] == 300  # the older turn's 999 stayed out
    assert attrs(turn)["anthropic.turn.stop_reason"] == "end_turn"
    assert "anthropic.span.incomplete" not in attrs(research)
    assert_nested(spans)


def test_a_sync_stream_fetches_each_subagents_feed_before_the_turn_ends(
    instrument: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    instrument(fetch_subthreads=True)
    _queue(server, "sesn_fetch")
    run_turn(loop_client, "sesn_fetch")
    _assert_fetched(spans)
    assert len(_thread_lists(server)) == 2  # both pages, with the app's own client
    assert not [s for s in spans.all() if "list" in s.name]  # our own calls are not traced


@pytest.mark.asyncio
async def test_an_async_stream_fetches_each_subagents_feed_before_the_turn_ends(
    instrument: Any, server: FakeCMAServer, loop_async_client: anthropic.AsyncAnthropic, spans: Spans
) -> None:
    instrument(fetch_subthreads=True)
    _queue(server, "sesn_afetch")
    await loop_async_client.beta.sessions.events.send("sesn_afetch", events=[message()])
    async for event in await loop_async_client.beta.sessions.events.stream("sesn_afetch"):
        if event.type == "session.status_idle":
            break
    _assert_fetched(spans)
    assert len(_thread_lists(server)) == 2


def test_off_by_default_no_api_call_is_made(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    _queue(server, "sesn_nofetch")
    run_turn(loop_client, "sesn_nofetch")
    assert _thread_lists(server) == []
    (research,) = [s for s in spans.children(spans.turn()) if s.name == "invoke_agent researcher"]
    assert spans.children(research) == []


class _FailingThreadLists(httpx2.HTTPTransport):
    """Real HTTP, except that listing a thread's events answers 500."""

    failed = 0

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.method == "GET" and "/threads/" in request.url.path and request.url.path.endswith("/events"):
            self.failed += 1
            return httpx2.Response(500, json={"type": "error", "error": {"type": "api_error", "message": "boom"}})
        return super().handle_request(request)


def test_a_failing_fetch_still_ends_the_turn_and_the_app_sees_every_event(
    instrument: Any, server: FakeCMAServer, spans: Spans
) -> None:
    instrument(fetch_subthreads=True)
    _queue(server, "sesn_fetch_fails")
    transport = _FailingThreadLists()
    client = anthropic.Anthropic(
        base_url=server.base_url,
        api_key="k",
        max_retries=0,
        open_telemetry=False,
        http_client=httpx2.Client(transport=transport),
    )
    client.beta.sessions.events.send("sesn_fetch_fails", events=[message()])
    types = [event.type for event in client.beta.sessions.events.stream("sesn_fetch_fails")]
    assert types == [
        "session.status_running",
        "user.message",
        "session.thread_created",
        "session.thread_status_running",
        "session.thread_status_idle",
        "session.status_idle",
    ]
    assert transport.failed == 1
    turn = spans.turn()
    assert attrs(turn)["anthropic.turn.stop_reason"] == "end_turn"
    (research,) = [s for s in spans.children(turn) if s.name == "invoke_agent researcher"]
    assert spans.children(research) == []


def test_a_stream_first_app_gets_subagent_feeds_fetched_from_the_processed_echo(
    instrument: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    """The queued echo has no stamp and the processed one is a duplicate id: the processed echo must still anchor
    the turn, or nothing can be fetched and the subagent's tokens are missing."""
    instrument(fetch_subthreads=True)
    _queue(server, "sesn_echoes", echo_delay=0.0)
    run_turn(loop_client, "sesn_echoes")
    assert len(_thread_lists(server)) == 2
    _assert_fetched(spans)


@pytest.mark.parametrize("queued", [False, True])
def test_fetched_events_keep_their_durations_when_processing_starts_late(
    instrument: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans, queued: bool
) -> None:
    """The server processes the user.message 0.6 s after the send: the thread's events are placed from the moment
    that processed echo was seen, not from the send, so they are not pushed early and squashed to nothing at the
    subagent's start. Durations come from the server's stamps (exact, whatever the machine's load)."""
    instrument(fetch_subthreads=True)
    _queue(server, "sesn_late_echo", echo_delay=0.6, queued=queued)
    run_turn(loop_client, "sesn_late_echo")
    turn = spans.turn()
    (research,) = [s for s in spans.children(turn) if s.name == "invoke_agent researcher"]
    (chat,) = spans.children(research)
    assert seconds(chat) == pytest.approx(0.3, abs=0.002)
    assert_nested(spans)


def test_a_subagents_open_tools_end_with_it_marked_incomplete(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    """A subagent's tool call cross-posted to the session's stream has its result only on the thread's own feed,
    which this app does not read: the tool span ends with its subagent, inside it, marked incomplete."""
    use = ev.tool_use("web_search", session_thread_id=RESEARCHER)
    stream = [
        ev.running(),
        ev.user_message("sevt_u6"),
        ev.event("session.thread_created", session_thread_id=RESEARCHER, agent_name="researcher"),
        use,
        ev.event("session.thread_status_idle", session_thread_id=RESEARCHER, stop_reason={"type": "end_turn"}),
        ev.agent_message("done"),
        ev.idle(),
    ]
    server.queue_send("sesn_sub_tools", ["sevt_u6"])
    server.queue_stream("sesn_sub_tools", [Event(e, 0.05) for e in stream])
    run_turn(loop_client, "sesn_sub_tools")
    (research,) = spans.named("invoke_agent researcher")
    (tool,) = spans.named("execute_tool web_search")
    assert tool.parent is not None and tool.parent.span_id == research.context.span_id
    assert attrs(tool)["anthropic.span.incomplete"] is True
    assert "anthropic.span.incomplete" not in attrs(research)
    assert tool.end_time == research.end_time < spans.turn().end_time
    assert_nested(spans)


@pytest.mark.parametrize("pages", [1, 2])
def test_a_thread_listed_after_its_turn_ended_lands_under_its_subagent(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans, pages: int
) -> None:
    """Drain the coordinator's stream to idle, then list each subagent thread's events (a common order): its model
    requests land under the ended subagent span as late children, timed by their stamps and within it; the ended
    turn's attributes are not rewritten."""
    _queue(server, "sesn_list_late", one_page=pages == 1)
    run_turn(loop_client, "sesn_list_late")
    turn = spans.turn()
    listed = list(loop_client.beta.sessions.threads.events.list(RESEARCHER, session_id="sesn_list_late"))
    assert len(listed) == 7  # the app sees every event, as without cma-tracing
    (research,) = [s for s in spans.children(turn) if s.name == "invoke_agent researcher"]
    (chat,) = spans.children(research)
    assert chat.name == "chat" and attrs(chat)["gen_ai.usage.input_tokens"] == 300
    assert seconds(chat) == pytest.approx(0.3, abs=0.002)
    assert attrs(turn)["gen_ai.usage.input_tokens"] == 0  # the ended turn is not rewritten
    assert_nested(spans)
