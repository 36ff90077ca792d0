"""SPEC §3.1, what opens a turn besides a sent user.message, through the real SDK over the loopback server: a
session created with `initial_events`, and work the agent resumes on its own."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anthropic
import pytest

from cma_tracing.demo.loopback import Event, FakeCMAServer
from tests.support.spans import Spans
from tests.support import events as ev
from tests.support.drive import Drive
from tests.support.scenarios import message


def _attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def _agent_work(user_id: str) -> list[dict[str, Any]]:
    start = ev.request_start()
    return [
        ev.running(),
        ev.user_message(user_id, text="from the create"),
        start,
        ev.agent_message("done"),
        ev.request_end(start["id"], 40, 4),
        ev.idle(),
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize("read", ["no stream", "stream first", "stream after"])
async def test_a_session_created_with_initial_events_opens_its_first_turn(
    instrument: Any, server: FakeCMAServer, sdk: Drive, spans: Spans, read: str
) -> None:
    """The agent starts at once, often before any stream is open; the create is the app's only call. The turn
    opens when the create succeeds (trigger `initial_events`) and owns the first user.message echo it sees."""
    instrument(orphan_timeout_s=0.3, capture_content=True)
    server.set_session("sesn_initial")
    events = _agent_work("sevt_initial_u")
    if read == "stream after":
        events = events[2:]  # the stream opened late: the running and the echo came before it
    server.queue_stream("sesn_initial", [Event(e, 0.01) for e in events])
    session = await sdk.create(agent="agent_1", environment_id="env_1", initial_events=[message("from the create")])
    if read != "no stream":
        assert await sdk.stream(session.id) == [e["type"] for e in events]
    else:
        assert server.wait_for_stream_close("sesn_initial", timeout=0.01) is False  # nobody streamed
    turn = spans.turn() if read != "no stream" else await _wait_for_turn(spans)
    a = _attrs(turn)
    assert a["anthropic.turn.trigger"] == "initial_events"
    assert a["anthropic.session.id"] == "sesn_initial"
    assert '"from the create"' in a["gen_ai.input.messages"]
    if read == "no stream":
        assert a["anthropic.turn.stop_reason"] == "unobserved"
    else:
        assert a["anthropic.turn.stop_reason"] == "end_turn"
        assert (a["gen_ai.usage.input_tokens"], a["anthropic.turn.model_requests"]) == (40, 1)


async def _wait_for_turn(spans: Spans) -> Any:
    """The orphan watch ends the turn nobody streamed, on its own thread: wait for it, letting the loop run."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not spans.turns():
        await asyncio.sleep(0.05)
    return spans.turn()


def test_a_create_that_fails_opens_no_turn(instrumented: Any, server: FakeCMAServer, spans: Spans) -> None:
    client = anthropic.Anthropic(base_url=server.base_url + "/nowhere", api_key="k", max_retries=0)
    with pytest.raises(anthropic.APIStatusError):
        client.beta.sessions.create(agent="a", environment_id="e", initial_events=[message()])
    assert spans.turns() == [] and instrumented.registry.active_count() == 0


async def _two_turns(
    server: FakeCMAServer, sdk: Drive, spans: Spans, session_id: str, user_id: str, script: list[dict[str, Any]]
) -> list[Any]:
    """Send a message (echoed as `user_id`), stream `script` to its end unchanged: the two turns it made, in order."""
    server.queue_send(session_id, [user_id])
    server.queue_stream(session_id, [Event(e, 0.01) for e in script])
    await sdk.send(session_id, message())
    assert await sdk.stream(session_id) == [e["type"] for e in script]
    turns = sorted(spans.turns(), key=lambda s: s.start_time or 0)
    assert len(turns) == 2
    return turns


@pytest.mark.asyncio
async def test_work_the_agent_resumes_on_its_own_is_a_resume_turn(
    instrumented: Any, server: FakeCMAServer, sdk: Drive, spans: Spans
) -> None:
    """A budget pause idles the session; raising the budget (`sessions.update`, a `session.updated` event) resumes it
    with no user event: that work is a `resume` turn, not dropped."""
    first = ev.request_start()
    second = ev.request_start()
    script = [
        ev.running(),
        ev.user_message("sevt_budget_u"),
        first,
        ev.request_end(first["id"], 100, 10),
        ev.idle("budget_reached"),
        ev.event("session.updated"),
        ev.running(),
        second,
        ev.agent_message("finished"),
        ev.request_end(second["id"], 30, 3),
        ev.idle(),
    ]
    paused, resumed = await _two_turns(server, sdk, spans, "sesn_budget", "sevt_budget_u", script)
    assert (_attrs(paused)["anthropic.turn.trigger"], _attrs(paused)["anthropic.turn.stop_reason"]) == (
        "user.message",
        "budget_reached",
    )
    r = _attrs(resumed)
    assert (r["anthropic.turn.trigger"], r["anthropic.turn.stop_reason"], r["anthropic.turn.index"]) == (
        "resume",
        "end_turn",
        2,
    )
    assert (r["gen_ai.usage.input_tokens"], r["anthropic.turn.model_requests"]) == (30, 1)


def test_list_pages_and_subagents_cross_posted_work_never_open_a_resume_turn(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    start = ev.request_start()
    server.queue_list_page("sesn_history", [ev.running(), start, ev.request_end(start["id"], 5, 1), ev.idle()])
    list(loop_client.beta.sessions.events.list("sesn_history"))
    cross_posted = ev.tool_use("web_search", session_thread_id="sthr_sub")
    server.queue_stream("sesn_history", [Event(cross_posted), Event(ev.idle())])
    with loop_client.beta.sessions.events.stream("sesn_history") as stream:
        list(stream)
    assert spans.turns() == []


@pytest.mark.asyncio
@pytest.mark.parametrize("child_spans", [True, False], ids=["child spans", "turn spans only"])
async def test_the_coordinators_later_work_resumes_a_turn_and_a_subagents_does_not(
    instrument: Any, server: FakeCMAServer, sdk: Drive, spans: Spans, child_spans: bool
) -> None:
    """The turn's first thread status names the coordinator's own thread. After the idle, that thread's work is a
    `resume` turn and a subagent's cross-posted work opens nothing: with turn spans only as with child spans."""
    instrument(child_spans=child_spans)
    start = ev.request_start()
    script = [
        ev.running(),
        ev.user_message("sevt_coord_u"),
        ev.event("session.thread_status_running", session_thread_id="sthr_main", agent_name="coordinator"),
        start,
        ev.agent_message("asked"),
        ev.request_end(start["id"], 50, 5),
        ev.event("session.thread_status_idle", session_thread_id="sthr_main", stop_reason={"type": "end_turn"}),
        ev.idle(),
        {**ev.agent_message("from a subagent"), "session_thread_id": "sthr_sub"},
        {**ev.agent_message("resumed"), "session_thread_id": "sthr_main"},
        ev.idle(),
    ]
    asked, resumed = await _two_turns(server, sdk, spans, "sesn_coord", "sevt_coord_u", script)
    assert (_attrs(asked)["anthropic.turn.trigger"], _attrs(asked)["anthropic.turn.events"]) == ("user.message", 8)
    r = _attrs(resumed)
    assert (r["anthropic.turn.trigger"], r["anthropic.turn.events"], r["anthropic.turn.index"]) == ("resume", 2, 2)
