"""SPEC §3.1-3.2 through the real SDK: recorded and scripted sessions replayed with vcrpy, sync and async."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest
from opentelemetry.trace import StatusCode

from cma_tracing.demo.loopback import Event
from tests.support.spans import Spans
from tests.support import events as ev

REAL_SESSION = "sesn_01GuGWpFoC5zy8bwPaUPogbX"


def read_until_idle(stream: Any) -> list[Any]:
    """Read a stream as apps do: stop at the first status_idle that is not `requires_action`, or at the end."""
    seen = []
    for event in stream:
        seen.append(event)
        if event.type == "session.status_idle" and event.stop_reason.type != "requires_action":
            break
    return seen


def test_real_recording_gives_one_turn_with_token_sums_and_tool_count(
    instrumented: Any, client: anthropic.Anthropic, cassette: Any, spans: Spans
) -> None:
    with cassette("real_bash_tool"):
        client.beta.environments.list(limit=1)
        session = client.beta.sessions.create(agent="agent_0178EAqEXzAVgoiucYPVscc6", environment_id="env_1")
        client.beta.sessions.events.send(
            session.id,
            events=[{"type": "user.message", "content": [{"type": "text", "text": "Use bash once to print 2+2."}]}],
        )
        with client.beta.sessions.events.stream(session.id) as stream:
            events = list(stream)
        assert [e.type for e in events][-1] == "session.status_idle"

    turn = spans.turn()
    attrs = dict(turn.attributes or {})
    assert turn.name == "invoke_agent braintrust-sdk-managed-agent-bash"
    assert attrs["gen_ai.usage.input_tokens"] == 2192 + 2333
    assert attrs["gen_ai.usage.output_tokens"] == 127 + 4
    assert attrs["anthropic.turn.tool_calls"] == 1
    assert attrs["anthropic.turn.tool_names"] == ("bash",)
    assert attrs["anthropic.turn.model_requests"] == 2
    assert attrs["anthropic.turn.stop_reason"] == "end_turn"
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["gen_ai.conversation.id"] == REAL_SESSION
    assert attrs["anthropic.session.id"] == REAL_SESSION
    assert attrs["gen_ai.agent.id"] == "agent_0178EAqEXzAVgoiucYPVscc6"
    assert attrs["gen_ai.agent.version"] == "1"
    assert attrs["gen_ai.request.model"] == "claude-haiku-4-5"
    assert attrs["anthropic.agent.tools"] == ("bash",)
    assert attrs["anthropic.environment.id"] == "env_012W55H8BqqsSgp2XJ3uQmBK"
    assert attrs["server.address"] == "api.anthropic.com"
    assert attrs["server.port"] == 443
    assert attrs["anthropic.beta"] == ("managed-agents-2026-04-01",)
    assert attrs["http.route"] == "/v1/sessions/{session_id}/events"
    assert attrs["anthropic.session.cost_usd"] == pytest.approx(0.01)
    assert attrs["anthropic.session.usage.input_tokens"] == 4525
    assert attrs["anthropic.session.usage.server_tool_use.web_search_requests"] == 0
    assert attrs["anthropic.turn.index"] == 1
    assert attrs["anthropic.turn.events"] == 14
    assert attrs["anthropic.turn.unknown_events"] == 0
    assert attrs["gen_ai.response.time_to_first_chunk"] >= 0
    assert turn.status.status_code is StatusCode.OK
    assert turn.kind.name == "CLIENT"
    assert turn.parent is None


@pytest.mark.asyncio
async def test_real_recording_async_gives_the_same_turn(
    instrumented: Any, async_client: anthropic.AsyncAnthropic, cassette: Any, spans: Spans
) -> None:
    with cassette("real_bash_tool"):
        await async_client.beta.environments.list(limit=1)
        session = await async_client.beta.sessions.create(agent="agent_0178EAqEXzAVgoiucYPVscc6", environment_id="e")
        await async_client.beta.sessions.events.send(
            session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "2+2"}]}]
        )
        async with await async_client.beta.sessions.events.stream(session.id) as stream:
            assert isinstance(stream, anthropic.AsyncStream)
            types = [event.type async for event in stream]
        assert types[-1] == "session.status_idle"
    attrs = dict(spans.turn().attributes or {})
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (4525, 131)
    assert attrs["anthropic.turn.tool_calls"] == 1
    assert attrs["gen_ai.agent.name"] == "braintrust-sdk-managed-agent-bash"


def test_two_turns_on_one_long_lived_stream(
    instrumented: Any, client: anthropic.Anthropic, cassette: Any, spans: Spans
) -> None:
    with cassette("two_turns_one_stream"):
        session = client.beta.sessions.create(agent="a", environment_id="e")
        client.beta.sessions.events.send(session.id, events=[_message("first")])
        with client.beta.sessions.events.stream(session.id) as stream:
            idles = 0
            for event in stream:
                if event.type == "session.status_idle":
                    idles += 1
                    if idles == 1:
                        client.beta.sessions.events.send(session.id, events=[_message("second")])
                    else:
                        break
    first, second = sorted(spans.turns(), key=lambda s: s.start_time or 0)
    a, b = dict(first.attributes or {}), dict(second.attributes or {})
    assert (a["anthropic.turn.index"], b["anthropic.turn.index"]) == (1, 2)
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (100, 10)
    assert (b["gen_ai.usage.input_tokens"], b["gen_ai.usage.output_tokens"]) == (555, 50)
    assert (b["gen_ai.usage.cache_read.input_tokens"], b["gen_ai.usage.cache_write.input_tokens"]) == (50, 5)
    assert (a["anthropic.turn.tool_calls"], b["anthropic.turn.tool_calls"]) == (0, 1)
    assert (a["anthropic.turn.model_requests"], b["anthropic.turn.model_requests"]) == (1, 2)
    assert a["anthropic.turn.stop_reason"] == b["anthropic.turn.stop_reason"] == "end_turn"


def test_custom_tool_answered_across_two_streams_is_one_turn(
    instrumented: Any, client: anthropic.Anthropic, cassette: Any, spans: Spans
) -> None:
    with cassette("custom_tool_two_streams"):
        session = client.beta.sessions.create(agent="a", environment_id="e")
        client.beta.sessions.events.send(session.id, events=[_message("weather?")])
        with client.beta.sessions.events.stream(session.id) as stream:
            tool_use = next(e for e in stream if e.type == "agent.custom_tool_use")
            idle = next(e for e in stream if e.type == "session.status_idle")
            assert idle.stop_reason.type == "requires_action"
        assert spans.turns() == []  # waiting on the client is not the end of the turn
        client.beta.sessions.events.send(
            session.id,
            events=[
                {
                    "type": "user.custom_tool_result",
                    "custom_tool_use_id": tool_use.id,
                    "content": [{"type": "text", "text": "18C"}],
                }
            ],
        )
        with client.beta.sessions.events.stream(session.id) as stream:
            read_until_idle(stream)
    turn = spans.turn()
    attrs = dict(turn.attributes or {})
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (1000, 100)
    assert attrs["anthropic.turn.tool_calls"] == 1
    assert attrs["anthropic.turn.tool_names"] == ("get_weather",)
    assert attrs["anthropic.turn.stop_reason"] == "end_turn"
    replies = [e for e in turn.events if e.name == "user.custom_tool_result"]
    assert len(replies) == 1  # sent once, echoed on the stream: one span event
    assert dict(replies[0].attributes or {})["custom_tool_use_id"] == tool_use.id


def test_observer_mode_opens_the_turn_from_the_stream(
    instrumented: Any, client: anthropic.Anthropic, cassette: Any, spans: Spans
) -> None:
    with cassette("observer_only"):
        session = client.beta.sessions.create(agent="a", environment_id="e")
        with client.beta.sessions.events.stream(session.id) as stream:
            read_until_idle(stream)
    attrs = dict(spans.turn().attributes or {})
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (120, 12)
    assert attrs["anthropic.turn.stop_reason"] == "end_turn"


def test_reconnect_with_an_overlapping_list_page_is_one_turn_without_double_counts(
    instrumented: Any, client: anthropic.Anthropic, cassette: Any, spans: Spans
) -> None:
    with cassette("reconnect_list_overlap"):
        session = client.beta.sessions.create(agent="a", environment_id="e")
        client.beta.sessions.events.send(session.id, events=[_message("go")])
        with client.beta.sessions.events.stream(session.id) as stream:
            first = list(stream)  # the server ends this stream mid-turn
        assert first[-1].type == "agent.tool_use"
        assert spans.turns() == []
        seen = {e.id for e in first}
        listed = [e for e in client.beta.sessions.events.list(session.id) if e.id not in seen]
        assert {e.type for e in listed} == {"span.model_request_end", "agent.tool_result"}
        with client.beta.sessions.events.stream(session.id) as stream:
            read_until_idle(stream)
    attrs = dict(spans.turn().attributes or {})
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (1500, 150)
    assert attrs["anthropic.turn.tool_calls"] == 1
    assert attrs["anthropic.turn.model_requests"] == 2
    assert attrs["anthropic.turn.stop_reason"] == "end_turn"


def test_paging_history_with_list_opens_no_turn(
    instrumented: Any, client: anthropic.Anthropic, cassette: Any, spans: Spans
) -> None:
    with cassette("list_history"):
        session = client.beta.sessions.create(agent="a", environment_id="e")
        history = list(client.beta.sessions.events.list(session.id))
    assert any(e.type == "user.message" for e in history)
    assert spans.turns() == []
    assert instrumented.registry.active_count() == 0


def test_a_new_user_message_supersedes_the_running_turn(
    instrumented: Any, client: anthropic.Anthropic, cassette: Any, spans: Spans
) -> None:
    with cassette("supersede"):
        session = client.beta.sessions.create(agent="a", environment_id="e")
        client.beta.sessions.events.send(session.id, events=[_message("first")])
        with client.beta.sessions.events.stream(session.id) as stream:
            for event in stream:
                if event.type == "agent.thinking":
                    client.beta.sessions.events.send(session.id, events=[_message("never mind")])
                if event.type == "session.status_idle":
                    break
    first, second = sorted(spans.turns(), key=lambda s: s.start_time or 0)
    a, b = dict(first.attributes or {}), dict(second.attributes or {})
    assert a["anthropic.turn.stop_reason"] == "superseded"
    assert "gen_ai.response.finish_reasons" not in a
    assert first.status.status_code is StatusCode.UNSET
    assert b["anthropic.turn.stop_reason"] == "end_turn"
    assert (b["gen_ai.usage.input_tokens"], b["anthropic.turn.model_requests"]) == (700, 1)
    assert (first.end_time or 0) <= (second.start_time or 0)


def test_terminated_after_a_session_error_ends_the_turn_with_error(
    instrumented: Any, client: anthropic.Anthropic, cassette: Any, spans: Spans
) -> None:
    with cassette("terminated"):
        session = client.beta.sessions.create(agent="a", environment_id="e")
        client.beta.sessions.events.send(session.id, events=[_message("go")])
        with client.beta.sessions.events.stream(session.id) as stream:
            for event in stream:
                if event.type == "session.status_terminated":
                    break
    turn = spans.turn()
    attrs = dict(turn.attributes or {})
    assert attrs["anthropic.turn.stop_reason"] == "terminated"
    assert attrs["error.type"] == "model_request_failed_error"
    assert turn.status.status_code is StatusCode.ERROR
    errors = [e for e in turn.events if e.name == "session.error"]
    assert [dict(e.attributes or {}) for e in errors] == [
        {"type": "model_request_failed_error", "message": "upstream failure", "retry_status": "terminal"}
    ]


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_an_sse_error_frame_reaches_the_app_unchanged_and_ends_the_turn_with_error(
    instrumented: Any, cassette: Any, spans: Spans, use_async: bool
) -> None:
    import asyncio

    caught: list[BaseException] = []
    with cassette("sse_error_frame"):
        if use_async:

            async def run() -> None:
                async_client = anthropic.AsyncAnthropic(api_key="k", max_retries=0, open_telemetry=False)
                session = await async_client.beta.sessions.create(agent="a", environment_id="e")
                await async_client.beta.sessions.events.send(session.id, events=[_message("go")])
                stream = await async_client.beta.sessions.events.stream(session.id)
                try:
                    async for _ in stream:
                        pass
                except anthropic.APIStatusError as error:
                    caught.append(error)

            asyncio.run(run())
        else:
            client = anthropic.Anthropic(api_key="k", max_retries=0, open_telemetry=False)
            session = client.beta.sessions.create(agent="a", environment_id="e")
            client.beta.sessions.events.send(session.id, events=[_message("go")])
            try:
                for _ in client.beta.sessions.events.stream(session.id):
                    pass
            except anthropic.APIStatusError as error:
                caught.append(error)
    assert len(caught) == 1 and type(caught[0]) is anthropic.APIStatusError
    assert caught[0].body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    turn = spans.turn()
    attrs = dict(turn.attributes or {})
    assert attrs["anthropic.turn.stop_reason"] == "stream_error"
    assert attrs["error.type"] == "overloaded_error"
    assert turn.status.status_code is StatusCode.ERROR


def test_a_failing_send_ends_its_turn_and_its_exception_propagates_unchanged(
    instrumented: Any, client: anthropic.Anthropic, cassette: Any, spans: Spans
) -> None:
    with cassette("send_error"):
        session = client.beta.sessions.create(agent="a", environment_id="e")
        with pytest.raises(anthropic.BadRequestError) as raised:
            client.beta.sessions.events.send(session.id, events=[_message("go")])
    assert raised.value.status_code == 400
    turn = spans.turn()
    attrs = dict(turn.attributes or {})
    assert attrs["anthropic.turn.stop_reason"] == "send_error"
    assert attrs["error.type"] == "invalid_request_error"
    assert turn.status.status_code is StatusCode.ERROR


def test_a_turn_with_no_stream_ends_on_time_as_unobserved_while_the_process_idles(
    instrument: Any, client: anthropic.Anthropic, cassette: Any, spans: Spans
) -> None:
    import time

    instrument(orphan_timeout_s=0.3)
    with cassette("send_only"):
        session = client.beta.sessions.create(agent="a", environment_id="e")
        sent_at = time.time_ns()
        client.beta.sessions.events.send(session.id, events=[_message("fire and forget")])
        sent_by = time.time_ns()
    assert spans.turns() == []
    deadline = time.monotonic() + 5
    while not spans.turns() and time.monotonic() < deadline:
        time.sleep(0.02)  # the app does nothing: only the orphan watch can end the turn
    turn = spans.turn()
    assert dict(turn.attributes or {})["anthropic.turn.stop_reason"] == "unobserved"
    assert turn.status.status_code is StatusCode.UNSET
    # The span ends at the last moment anything of the turn was seen, its send, not when the timer fired 0.3 s on.
    assert sent_at <= (turn.end_time or 0) <= sent_by


def _message(text: str) -> dict[str, Any]:
    return {"type": "user.message", "content": [{"type": "text", "text": text}]}


def test_a_failing_reply_never_ends_the_turn_a_racing_send_opened(
    instrumented: Any, server: Any, loop_client: anthropic.Anthropic, spans: Spans, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two sends race on one session: a tool result, and a new user.message that opens a turn just before the
    reply joins it. The reply's request then fails. Whether a send opened its turn is decided with the session's
    lock held, so the reply's failure cannot end the other send's turn as `send_error`."""
    import threading

    from cma_tracing.instrumentation.session import SessionTracker

    sid = "sesn_race"
    server.queue_send(sid, ["sevt_first"])
    server.queue_send(sid, ["sevt_second"])  # the racing user.message
    server.queue_send(sid, [], status=400, error={"type": "invalid_request_error", "message": "no such tool use"})
    loop_client.beta.sessions.events.send(sid, events=[_message("first")])
    original = SessionTracker.begin_send

    def interleaved(self: SessionTracker, events: Any, now_ns: int) -> Any:
        if events and events[0].get("type") == "user.custom_tool_result":
            racer = threading.Thread(
                target=lambda: loop_client.beta.sessions.events.send(sid, events=[_message("second")])
            )
            racer.start()
            racer.join()
        return original(self, events, now_ns)

    monkeypatch.setattr(SessionTracker, "begin_send", interleaved)
    reply = {"type": "user.custom_tool_result", "custom_tool_use_id": "sevt_tool", "content": []}
    with pytest.raises(anthropic.BadRequestError):
        loop_client.beta.sessions.events.send(sid, events=[reply])
    monkeypatch.undo()
    server.queue_stream(sid, [Event(e) for e in [ev.running(), ev.user_message("sevt_second"), ev.idle()]])
    with loop_client.beta.sessions.events.stream(sid) as stream:
        list(stream)
    reasons = [dict(t.attributes or {})["anthropic.turn.stop_reason"] for t in spans.turns()]
    assert reasons == ["superseded", "end_turn"]
