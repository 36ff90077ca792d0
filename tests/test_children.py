"""SPEC §3 and §3.3 through the real SDK over loopback HTTP, with scripted timing: the turn's trace tree."""

from __future__ import annotations

import time
from typing import Any, Optional

import anthropic
import pytest
from opentelemetry.trace import SpanKind, StatusCode

from tests.support.spans import Spans
from tests.support import events as ev
from cma_tracing.demo.loopback import Event, FakeCMAServer, Hold
from tests.support.scenarios import Reads, message, run_turn, steps, turn_events
from tests.support.spans import assert_nested, at_least, attrs, ends_at, first_chunk_on, seconds, starts_at


def test_the_real_recording_timed_gives_chat_and_tool_spans_with_their_durations(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    real = ev.real_events()
    user_id = real[2]["id"]
    delays = {"agent.thinking": 0.25, "agent.tool_result": 0.4}  # thinking at +0.25 s; the tool runs 0.4 s
    server.queue_send("sesn_real", [user_id])
    server.queue_stream("sesn_real", [Event(e, delays.get(e["type"], 0.0)) for e in real])
    loop_client.beta.sessions.create(agent="a", environment_id="e")  # learns the agent: model, name
    server.set_session("sesn_real")
    loop_client.beta.sessions.retrieve("sesn_real")
    reads = run_turn(loop_client, "sesn_real")

    turn = spans.turn()
    # The turn opens with the send, before the stream that holds the thinking back 0.25 s: its first chunk.
    assert attrs(turn)["gen_ai.response.time_to_first_chunk"] >= at_least(0.25)
    first_chunk_on(turn, reads, "agent.thinking")
    chat_1, tool, chat_2 = spans.children(turn)
    assert chat_1.name == chat_2.name == "chat claude-haiku-4-5"
    assert chat_1.kind is SpanKind.CLIENT
    assert attrs(chat_1) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-haiku-4-5",
        "gen_ai.usage.input_tokens": 2192,
        "gen_ai.usage.output_tokens": 127,
        "gen_ai.usage.cache_read.input_tokens": 0,
        "gen_ai.usage.cache_write.input_tokens": 0,
    }
    # Its request's start and end, 0.25 s apart on the server: how far apart on our clock depends on when the client
    # got to read them, which events it spans does not.
    starts_at(chat_1, reads, "span.model_request_start")
    ends_at(chat_1, reads, "span.model_request_end")
    assert tool.name == "execute_tool bash" and tool.kind is SpanKind.INTERNAL
    assert attrs(tool) == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.tool.name": "bash",
        "gen_ai.tool.call.id": "sevt_016SabuQQG5up3DjLpYfzYgM",
        "gen_ai.tool.type": "extension",
        "anthropic.tool.permission": "allow",
    }
    starts_at(tool, reads, "agent.tool_use")
    ends_at(tool, reads, "agent.tool_result")  # 0.4 s after the tool_use on the server
    assert (chat_1.end_time or 0) <= (chat_2.start_time or 0)
    starts_at(chat_2, reads, "span.model_request_start", nth=1)
    ends_at(chat_2, reads, "span.model_request_end", nth=1)
    assert tool.status.status_code is StatusCode.UNSET
    assert_nested(spans)


def test_mcp_tool_spans_carry_the_server_and_an_error_result_is_an_error(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    use = ev.tool_use("search_docs", kind="agent.mcp_tool_use", mcp_server_name="docs")
    result = ev.event("agent.mcp_tool_result", mcp_tool_use_id=use["id"], is_error=True, content=[])
    start = ev.request_start()
    script = [ev.running(), ev.user_message("sevt_m"), start, use, ev.request_end(start["id"], 5, 1), result, ev.idle()]
    server.queue_send("sesn_mcp", ["sevt_m"])
    server.queue_stream("sesn_mcp", [Event(e, 0.1 if e is result else 0.0) for e in script])
    reads = run_turn(loop_client, "sesn_mcp")
    (tool,) = [s for s in spans.all() if s.name == "execute_tool search_docs"]
    assert attrs(tool)["anthropic.mcp.server_name"] == "docs"
    assert attrs(tool)["gen_ai.tool.type"] == "extension"
    assert attrs(tool)["error.type"] == "tool_error"
    assert tool.status.status_code is StatusCode.ERROR
    starts_at(tool, reads, "agent.mcp_tool_use")
    ends_at(tool, reads, "agent.mcp_tool_result")
    assert_nested(spans)


@pytest.mark.parametrize("answer", ["allow", "deny"])
def test_an_always_ask_tool_span_covers_the_wait_for_confirmation_and_a_denial_ends_it(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans, answer: str
) -> None:
    use = ev.tool_use("bash", evaluated_permission="ask")
    start = ev.request_start()
    first = [ev.running(), ev.user_message("sevt_c"), start, use, ev.request_end(start["id"], 5, 1)]
    first.append(ev.idle("requires_action", event_ids=[use["id"]]))
    server.queue_send("sesn_ask", ["sevt_c"])
    server.queue_stream("sesn_ask", steps(first))
    loop_client.beta.sessions.events.send("sesn_ask", events=[message()])
    for event in loop_client.beta.sessions.events.stream("sesn_ask"):
        if event.type == "session.status_idle":
            break
    time.sleep(0.2)  # the human thinks it over
    server.queue_send("sesn_ask", ["sevt_conf"])
    loop_client.beta.sessions.events.send(
        "sesn_ask", events=[{"type": "user.tool_confirmation", "tool_use_id": use["id"], "result": answer}]
    )
    rest: list[dict[str, Any]] = [
        ev.running(),
        ev.event("user.tool_confirmation", "sevt_conf", tool_use_id=use["id"], result=answer),
    ]
    if answer == "allow":
        rest.append(ev.tool_result(use["id"]))
    rest += [ev.agent_message(), ev.idle()]
    server.queue_stream("sesn_ask", [Event(e, 0.1 if e["type"] == "agent.tool_result" else 0.0) for e in rest])
    for event in loop_client.beta.sessions.events.stream("sesn_ask"):
        if event.type == "session.status_idle":
            break
    (tool,) = spans.named("execute_tool bash")
    assert attrs(tool)["anthropic.tool.permission"] == "ask"
    assert attrs(tool)["anthropic.tool.confirmation"] == answer
    # It opened before the human's 0.2 s and, when allowed, ran 0.1 s more; it was ended by its result or by the
    # denial, not left open for the turn's end to close.
    assert seconds(tool) >= at_least(0.3 if answer == "allow" else 0.2)
    assert "anthropic.span.incomplete" not in attrs(tool)
    assert_nested(spans)
    assert attrs(spans.turn())["anthropic.turn.stop_reason"] == "end_turn"
    assert [e.name for e in spans.turn().events] == ["user.tool_confirmation"]


def test_a_custom_tool_span_ends_when_the_app_sends_its_result_across_two_streams(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    use = ev.tool_use("get_weather", kind="agent.custom_tool_use")
    first = [ev.running(), ev.user_message("sevt_u"), use, ev.idle("requires_action", event_ids=[use["id"]])]
    server.queue_send("sesn_custom", ["sevt_u"])
    server.queue_stream("sesn_custom", steps(first))
    loop_client.beta.sessions.events.send("sesn_custom", events=[message()])
    with loop_client.beta.sessions.events.stream("sesn_custom") as stream:
        for event in stream:
            if event.type == "session.status_idle":
                break
    time.sleep(0.15)  # the app runs its tool
    server.queue_send("sesn_custom", ["sevt_r"])
    result_sent = time.time_ns()
    loop_client.beta.sessions.events.send(
        "sesn_custom",
        events=[
            {
                "type": "user.custom_tool_result",
                "custom_tool_use_id": use["id"],
                "content": [{"type": "text", "text": "18C"}],
            }
        ],
    )
    echo = ev.event("user.custom_tool_result", "sevt_r", custom_tool_use_id=use["id"], content=[])
    server.queue_stream(
        "sesn_custom",
        [
            Event(e, 0.2 if e["type"] == "agent.message" else 0.0)
            for e in [ev.running(), echo, ev.agent_message(), ev.idle()]
        ],
    )
    reads = Reads()
    with loop_client.beta.sessions.events.stream("sesn_custom") as stream:
        for event in stream:
            reads.add(event)
            if event.type == "session.status_idle":
                break
    (tool,) = spans.named("execute_tool get_weather")
    assert attrs(tool)["gen_ai.tool.type"] == "function"
    assert seconds(tool) >= at_least(0.15)
    # It ends with the app's result (sent, or echoed back), not with the agent's message 0.2 s later.
    assert result_sent <= (tool.end_time or 0) <= reads.at("user.custom_tool_result")
    assert_nested(spans)


def test_a_coordinator_with_two_subagents_and_a_cross_posted_blocking_tool_call(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    server.set_session("sesn_multi")
    loop_client.beta.sessions.retrieve("sesn_multi")  # the coordinator is the loopback template's agent
    coordinator = attrs_of_template_agent()
    primary, researcher, writer = "sthr_primary", "sthr_research", "sthr_writer"
    cross = ev.tool_use("web_search", session_thread_id=researcher)
    start = ev.request_start()
    script: list[Any] = [
        Event(ev.running()),
        Event(ev.event("session.thread_status_running", session_thread_id=primary, agent_name=coordinator)),
        Event(ev.user_message("sevt_u")),
        Event(start),
        Event(ev.event("session.thread_created", session_thread_id=researcher, agent_name="researcher")),
        Event(ev.event("session.thread_created", session_thread_id=writer, agent_name="writer")),
        Event(ev.event("agent.thread_message_sent", to_session_thread_id=researcher, content=[])),
        Event(ev.event("session.thread_status_running", session_thread_id=researcher, agent_name="researcher")),
        Event(cross, 0.05),
        Event(
            ev.event(
                "agent.tool_result", tool_use_id=cross["id"], is_error=False, content=[], session_thread_id=researcher
            ),
            0.1,
        ),
        Event(
            ev.event(
                "session.thread_status_idle",
                session_thread_id=researcher,
                agent_name="researcher",
                stop_reason={"type": "end_turn"},
            ),
            0.05,
        ),
        Event(ev.event("agent.thread_message_received", from_session_thread_id=researcher, content=[])),
        Event(ev.event("session.thread_status_terminated", session_thread_id=writer, agent_name="writer")),
        Event(ev.request_end(start["id"], 10, 2)),
        Event(
            ev.event(
                "session.thread_status_idle",
                session_thread_id=primary,
                agent_name=coordinator,
                stop_reason={"type": "end_turn"},
            )
        ),
        Event(ev.idle()),
    ]
    server.queue_send("sesn_multi", ["sevt_u"])
    server.queue_stream("sesn_multi", script)
    reads = run_turn(loop_client, "sesn_multi")

    turn = spans.turn()
    subagents = {
        attrs(s).get("gen_ai.agent.name"): s for s in spans.children(turn) if s.name.startswith("invoke_agent")
    }
    assert set(subagents) == {"researcher", "writer"}  # the primary thread is not a subagent
    research = subagents["researcher"]
    assert research.kind is SpanKind.INTERNAL and attrs(research)["anthropic.session.thread_id"] == researcher
    assert attrs(research)["anthropic.turn.stop_reason"] == "end_turn"
    assert attrs(subagents["writer"])["anthropic.turn.stop_reason"] == "terminated"
    (tool,) = spans.children(research)
    assert tool.name == "execute_tool web_search"
    starts_at(tool, reads, "agent.tool_use")
    ends_at(tool, reads, "agent.tool_result")  # not with its thread, 0.05 s later
    assert attrs(turn)["anthropic.turn.tool_calls"] == 1
    assert [e.name for e in turn.events] == ["agent.thread_message_sent", "agent.thread_message_received"]
    assert all("anthropic.span.incomplete" not in attrs(s) for s in spans.all())
    assert_nested(spans)


def test_a_subagent_threads_own_stream_adds_its_model_requests_under_its_span(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    researcher = "sthr_research"
    server.queue_send("sesn_feed", ["sevt_u"])
    server.queue_stream(
        "sesn_feed",
        steps(
            [
                ev.running(),
                ev.user_message("sevt_u"),
                ev.event("session.thread_created", session_thread_id=researcher, agent_name="researcher"),
            ]
        )
        + [Hold(0.6)]
        + steps(
            [
                ev.event(
                    "session.thread_status_idle",
                    session_thread_id=researcher,
                    agent_name="researcher",
                    stop_reason={"type": "end_turn"},
                ),
                ev.idle(),
            ]
        ),
    )
    start = ev.request_start()
    thread_feed = [
        ev.event("session.thread_status_running", session_thread_id=researcher, agent_name="researcher"),
        start,
    ]
    thread_feed += [
        ev.agent_message(),
        ev.request_end(start["id"], 300, 30),
        ev.event("session.status_idle", stop_reason={"type": "end_turn"}),
    ]
    server.queue_stream("sesn_feed", [Event(e, 0.05) for e in thread_feed], thread_id=researcher)

    loop_client.beta.sessions.events.send("sesn_feed", events=[message()])
    stream = loop_client.beta.sessions.events.stream("sesn_feed")
    for event in stream:
        if event.type == "session.thread_created":
            for _ in loop_client.beta.sessions.threads.events.stream(researcher, session_id="sesn_feed"):
                pass
        if event.type == "session.status_idle":
            break
    stream.close()
    turn = spans.turn()
    (research,) = [s for s in spans.children(turn) if s.name == "invoke_agent researcher"]
    (chat,) = spans.children(research)
    assert chat.name == "chat" and attrs(chat)["gen_ai.usage.input_tokens"] == 300
    assert attrs(turn)["gen_ai.usage.input_tokens"] == 300  # subagents' tokens count in the turn
    assert attrs(turn)["anthropic.turn.stop_reason"] == "end_turn"  # the thread feed's idle did not end the turn
    assert_nested(spans)


def test_event_delta_previews_set_time_to_first_chunk(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    start = ev.request_start()
    preview = ev.event("event_start", id=None, event={"type": "agent.message", "id": "sevt_msg"})
    delta = ev.event("event_delta", id=None, event_id="sevt_msg", delta={"type": "content_delta", "text": "4"})
    script = [
        Event(ev.running()),
        Event(ev.user_message("sevt_u")),
        Event(start),
        Event(preview, 0.15),
        Event(delta, 0.1),
    ]
    script += [Event(ev.agent_message("4"), 0.1), Event(ev.request_end(start["id"], 1, 1)), Event(ev.idle())]
    server.queue_send("sesn_delta", ["sevt_u"])
    server.queue_stream("sesn_delta", script)
    reads = run_turn(loop_client, "sesn_delta", event_deltas=["agent.message"])
    turn = spans.turn()
    assert attrs(turn)["gen_ai.response.time_to_first_chunk"] >= at_least(0.15)
    first_chunk_on(turn, reads, "event_start")  # the preview: not its delta 0.1 s later, nor the message after that


def test_retries_then_exhaustion_end_the_turn_with_error_and_failed_requests(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    first, second = ev.request_start(), ev.request_start()
    failed_1 = {**ev.request_end(first["id"], 5, 0), "is_error": True}
    failed_2 = {**ev.request_end(second["id"], 5, 0), "is_error": True}
    script = [
        ev.running(),
        ev.user_message("sevt_u"),
        first,
        failed_1,
        ev.session_error("model_overloaded_error", "retrying"),
    ]
    script += [ev.event("session.status_rescheduled"), ev.running(), second, failed_2]
    script += [ev.session_error("model_overloaded_error", "exhausted"), ev.idle("retries_exhausted")]
    server.queue_send("sesn_retry", ["sevt_u"])
    server.queue_stream("sesn_retry", steps(script))
    run_turn(loop_client, "sesn_retry")
    turn = spans.turn()
    assert attrs(turn)["anthropic.turn.stop_reason"] == "retries_exhausted"
    assert attrs(turn)["error.type"] == "model_overloaded_error"
    assert turn.status.status_code is StatusCode.ERROR
    assert [e.name for e in turn.events] == ["session.error", "session.status_rescheduled", "session.error"]
    chats = [s for s in spans.children(turn) if s.name.startswith("chat")]
    assert len(chats) == 2 and all(c.status.status_code is StatusCode.ERROR for c in chats)


def test_a_turn_abandoned_mid_tool_ends_its_open_children_marked_incomplete(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    events = turn_events("sevt_u")
    server.queue_send("sesn_gone", ["sevt_u"])
    server.queue_stream("sesn_gone", steps(events[:6]) + [Hold(10)])  # the tool is running
    loop_client.beta.sessions.events.send("sesn_gone", events=[message()])
    with loop_client.beta.sessions.events.stream("sesn_gone") as stream:
        for event in stream:
            if event.type == "span.model_request_end":
                break
    turn = spans.turn()
    assert attrs(turn)["anthropic.turn.stop_reason"] == "abandoned"
    (tool,) = spans.named("execute_tool bash")
    assert attrs(tool)["anthropic.span.incomplete"] is True
    assert tool.end_time == turn.end_time
    (chat,) = [s for s in spans.children(turn) if s.name.startswith("chat")]
    assert "anthropic.span.incomplete" not in attrs(chat)


def test_the_sdks_own_spans_and_ours_form_one_tree_without_duplicates(
    instrumented: Any, provider: Any, server: FakeCMAServer, spans: Spans
) -> None:
    client = anthropic.Anthropic(
        base_url=server.base_url, api_key="k", max_retries=0, open_telemetry={"tracer_provider": provider[0]}
    )
    server.queue_send("sesn_tree", ["sevt_u"])
    server.queue_stream("sesn_tree", steps(turn_events("sevt_u")))
    run_turn(client, "sesn_tree")
    turn = spans.turn()
    names = sorted(s.name for s in spans.all())
    assert names.count(turn.name) == 1 and names.count("execute_tool bash") == 1
    assert len([n for n in names if n.startswith("chat")]) == 2
    assert names.count("anthropic.sessions.events.send") == 1
    in_turn_trace = [s for s in spans.all() if s.context.trace_id == turn.context.trace_id]
    assert {s.name for s in in_turn_trace} >= {"anthropic.sessions.events.send", "execute_tool bash"}


def test_child_spans_false_keeps_the_turn_span_alone(
    instrument: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    instrument(child_spans=False)
    server.queue_send("sesn_flat", ["sevt_u"])
    server.queue_stream("sesn_flat", steps(turn_events("sevt_u")))
    run_turn(loop_client, "sesn_flat")
    assert [s.name for s in spans.all()] == ["invoke_agent"]
    assert attrs(spans.turn())["anthropic.turn.tool_calls"] == 1


def test_children_of_concurrent_sessions_never_cross(instrumented: Any, server: FakeCMAServer, spans: Spans) -> None:
    import threading

    def session(i: int) -> None:
        client = anthropic.Anthropic(base_url=server.base_url, api_key="k", max_retries=0, open_telemetry=False)
        sid = f"sesn_cross_{i}"
        server.queue_send(sid, [f"{sid}_u"])
        server.queue_stream(sid, steps(turn_events(f"{sid}_u", input_tokens=i + 1, output_tokens=1), delay=0.003))
        run_turn(client, sid)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    turns = spans.turns()
    assert len(turns) == 20
    for turn in turns:
        i = int(str(attrs(turn)["anthropic.session.id"]).rsplit("_", 1)[1])
        kids = spans.children(turn)
        assert [k.name.split()[0] for k in kids] == ["chat", "execute_tool", "chat"]
        assert all(attrs(k).get("gen_ai.usage.input_tokens", i + 1) == i + 1 for k in kids)
        assert all(k.context.trace_id == turn.context.trace_id for k in kids)
    assert_nested(spans)


def attrs_of_template_agent(name: Optional[str] = None) -> str:
    from cma_tracing.demo.loopback import SESSION_TEMPLATE

    return str(SESSION_TEMPLATE["agent"]["name"])


# -- other work the agent does (the synthetic orders in cassettes/) -------------------------------------------------


def test_a_self_hosted_tool_answered_by_user_tool_result_ends_at_the_result() -> None:
    """On a self-hosted environment the worker answers `agent.tool_use` with `user.tool_result` (no
    `agent.tool_result` follows): that answer ends the tool span, complete, with the tool's real duration."""
    from tests.support.core import Session, synthetic

    s = Session()
    events = synthetic("self_hosted_worker_view")
    s.feed(events)
    (tool,) = s.named("execute_tool bash")
    assert "anthropic.span.incomplete" not in attrs(tool) and tool.status.status_code is StatusCode.UNSET
    use = next(e for e in events if e["type"] == "agent.tool_use")
    result = next(e for e in events if e["type"] == "user.tool_result")
    assert (tool.end_time or 0) - (tool.start_time or 0) == (
        _stamp(result["processed_at"]) - _stamp(use["processed_at"])
    )
    assert [e.name for e in s.turn().events] == ["user.tool_result"]


def test_a_self_hosted_worker_sending_its_tool_result_through_the_sdk_ends_the_tool_span(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    use = ev.tool_use("bash")
    start, second = ev.request_start(), ev.request_start()
    server.queue_send("sesn_worker", ["sevt_worker_u"])
    server.queue_stream(
        "sesn_worker",
        steps([ev.running(), ev.user_message("sevt_worker_u"), start, use, ev.request_end(start["id"], 10, 1)])
        + [Event(ev.idle("requires_action", event_ids=[use["id"]]))],
    )
    loop_client.beta.sessions.events.send("sesn_worker", events=[message()])
    with loop_client.beta.sessions.events.stream("sesn_worker") as stream:
        for event in stream:
            if event.type == "session.status_idle":
                break
        server.queue_send("sesn_worker", ["sevt_worker_result"])
        answer = {"type": "user.tool_result", "tool_use_id": use["id"], "content": [], "is_error": True}
        loop_client.beta.sessions.events.send("sesn_worker", events=[answer])
    echo = {**answer, "id": "sevt_worker_result"}
    server.queue_stream(
        "sesn_worker",
        steps([echo, ev.running(), second, ev.agent_message(), ev.request_end(second["id"], 10, 1), ev.idle()]),
    )
    with loop_client.beta.sessions.events.stream("sesn_worker") as stream:
        list(stream)
    (tool,) = spans.named("execute_tool bash")
    assert tool.status.status_code is StatusCode.ERROR and attrs(tool)["error.type"] == "tool_error"
    assert "anthropic.span.incomplete" not in attrs(tool)
    assert (tool.end_time or 0) < (spans.turn().end_time or 0)
    assert [e.name for e in spans.turn().events] == ["user.tool_result"]  # the send's, not its echo too


def test_compaction_is_a_span_event_counted_on_the_turn_and_marks_later_model_requests() -> None:
    from tests.support.core import Session, synthetic

    s = Session()
    s.feed(synthetic("compaction_and_system_message"))
    turn = s.turn()
    assert attrs(turn)["anthropic.turn.compactions"] == 1
    assert "agent.thread_context_compacted" in [e.name for e in turn.events]
    chats = sorted(s.named("chat"), key=lambda c: c.start_time or 0)
    assert [attrs(c).get("gen_ai.conversation.compacted") for c in chats] == [None, True, True]  # never false


def test_a_subagents_compaction_goes_on_its_span_and_marks_only_its_requests() -> None:
    from tests.support.core import Session

    s = Session()
    thread = "sthr_sub"
    before, after, own = ev.request_start(), ev.request_start(), ev.request_start()
    s.feed([ev.user_message(), ev.event("session.thread_created", session_thread_id=thread, agent_name="helper")])
    s.feed([{**before, "session_thread_id": thread}, {**ev.request_end(before["id"]), "session_thread_id": thread}])
    s.feed([ev.event("agent.thread_context_compacted", session_thread_id=thread)])
    s.feed([{**after, "session_thread_id": thread}, {**ev.request_end(after["id"]), "session_thread_id": thread}])
    s.feed([own, ev.request_end(own["id"]), ev.idle()])
    (helper,) = s.named("invoke_agent helper")
    assert [e.name for e in helper.events] == ["agent.thread_context_compacted"]
    marks = {c.start_time: attrs(c).get("gen_ai.conversation.compacted") for c in s.named("chat")}
    assert sorted(marks.items()) == sorted(zip(sorted(marks), [None, True, None]))
    assert attrs(s.turn())["anthropic.turn.compactions"] == 1


def test_a_rescheduled_thread_is_a_span_event_on_its_subagent_never_a_new_start() -> None:
    from tests.support.core import Session, synthetic

    s = Session()
    s.feed(synthetic("thread_rescheduled"))
    (reviewer,) = s.named("invoke_agent Reviewer")
    assert [e.name for e in reviewer.events] == ["session.thread_status_rescheduled"]
    assert attrs(reviewer)["anthropic.turn.stop_reason"] == "end_turn"
    assert "anthropic.span.incomplete" not in attrs(reviewer)


def _stamp(value: str) -> int:
    from cma_tracing.instrumentation.fields import timestamp_ns

    at = timestamp_ns(value)
    assert at is not None
    return at
