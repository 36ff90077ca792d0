"""SPEC §4: content is off by default, and when on it is semconv JSON, bounded, scrubbed, never a secret."""

from __future__ import annotations

import gc
import json
import logging
import tracemalloc
from typing import Any, Iterator

import anthropic
import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter

from cma_tracing.config import content_policy
from cma_tracing.instrumentation.content import cut
from tests.support.spans import Spans
from tests.support import events as ev
from cma_tracing.demo.loopback import FakeCMAServer
from tests.support.scenarios import steps

SECRET_TEXT = "the launch code is 0000"
TOOL_INPUT = {"command": "cat /etc/motd"}
TOOL_OUTPUT = "welcome aboard"
AGENT_TEXT = "Here is what I found."


@pytest.fixture
def logs() -> Iterator[tuple[LoggerProvider, InMemoryLogRecordExporter]]:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def scripted_turn(server: FakeCMAServer, session_id: str, agent_text: str = AGENT_TEXT) -> None:
    start = ev.request_start()
    use = ev.event("agent.tool_use", name="bash", input=TOOL_INPUT, evaluated_permission="allow")
    result = ev.event(
        "agent.tool_result", tool_use_id=use["id"], is_error=False, content=[{"type": "text", "text": TOOL_OUTPUT}]
    )
    second = ev.request_start()
    script = [
        ev.running(),
        ev.user_message("sevt_u", text=SECRET_TEXT),
        start,
        use,
        ev.request_end(start["id"], 3, 1),
        result,
    ]
    script += [second, ev.agent_message(agent_text), ev.request_end(second["id"], 4, 2), ev.idle()]
    server.queue_send(session_id, ["sevt_u"])
    server.queue_stream(session_id, steps(script))


def run(client: anthropic.Anthropic, server: FakeCMAServer, session_id: str = "sesn_c", **kwargs: Any) -> None:
    scripted_turn(server, session_id, **kwargs)
    client.beta.sessions.events.send(
        session_id, events=[{"type": "user.message", "content": [{"type": "text", "text": SECRET_TEXT}]}]
    )
    for event in client.beta.sessions.events.stream(session_id):
        if event.type == "session.status_idle":
            break


def everything_recorded(spans: Spans, logs: Any = None) -> str:
    """Every attribute, span event and log record, as one string to search."""
    parts = []
    for span in spans.all():
        parts.append(repr(dict(span.attributes or {})))
        parts.extend(repr((e.name, dict(e.attributes or {}))) for e in span.events)
    if logs is not None:
        for record in logs.get_finished_logs():
            parts.append(repr((record.log_record.body, dict(record.log_record.attributes or {}))))
    return "\n".join(parts)


def test_no_content_in_any_span_by_default(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    run(loop_client, server)
    recorded = everything_recorded(spans)
    for secret in (SECRET_TEXT, "cat /etc/motd", TOOL_OUTPUT, AGENT_TEXT):
        assert secret not in recorded
    assert "gen_ai.input.messages" not in recorded and "gen_ai.tool.call.arguments" not in recorded


@pytest.mark.parametrize(
    "switch", [{"capture_content": True}, {"capture_content": "SPAN_ONLY"}, {"env": "true"}, {"env": "span_only"}]
)
def test_span_content_is_semconv_json_when_on(
    instrument: Any,
    server: FakeCMAServer,
    loop_client: anthropic.Anthropic,
    spans: Spans,
    monkeypatch: pytest.MonkeyPatch,
    switch: dict[str, Any],
) -> None:
    if "env" in switch:
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", switch["env"])
        instrument()
    else:
        instrument(**switch)
    run(loop_client, server)
    turn = dict(spans.turn().attributes or {})
    assert json.loads(turn["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": SECRET_TEXT}]}
    ]
    output = json.loads(turn["gen_ai.output.messages"])
    assert output == [
        {
            "role": "assistant",
            "parts": [
                {"type": "tool_call", "id": output[0]["parts"][0]["id"], "name": "bash", "arguments": TOOL_INPUT},
                {"type": "text", "content": AGENT_TEXT},
            ],
            "finish_reason": "stop",
        }
    ]
    assert ", " not in turn["gen_ai.input.messages"]  # compact
    (tool,) = spans.named("execute_tool bash")
    tool_attrs = dict(tool.attributes or {})
    assert json.loads(tool_attrs["gen_ai.tool.call.arguments"]) == TOOL_INPUT
    assert json.loads(tool_attrs["gen_ai.tool.call.result"]) == [{"type": "text", "text": TOOL_OUTPUT}]
    assert "anthropic.content.truncated" not in turn


def test_content_is_cut_at_max_bytes_on_a_utf8_boundary(
    instrument: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    instrument(capture_content=True, max_content_bytes=100)
    run(loop_client, server, agent_text="é" * 400)
    turn = dict(spans.turn().attributes or {})
    output = turn["gen_ai.output.messages"]
    assert len(output.encode("utf-8")) <= 100
    output.encode("utf-8").decode("utf-8")  # whole characters only
    assert turn["anthropic.content.truncated"] is True


def test_cut_never_splits_a_character() -> None:
    text = "aé€😀" * 10
    for limit in range(0, 60):
        piece, was_cut = cut(text, limit)
        assert len(piece.encode()) <= limit and text.startswith(piece)
        assert was_cut == (piece != text)


def test_a_turn_streaming_megabytes_holds_at_most_the_cap(
    instrument: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    instrument(capture_content=True, max_content_bytes=1000)
    chunk = "x" * 10_000
    messages = 200
    script = [ev.running(), ev.user_message("sevt_u")] + [ev.agent_message(chunk) for _ in range(messages)]
    server.queue_send("sesn_big", ["sevt_u"])
    server.queue_stream("sesn_big", steps(script + [ev.idle()]))
    loop_client.beta.sessions.events.send(
        "sesn_big", events=[{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]
    )
    # What the turn holds while it runs, as the process's memory shows it: the app keeps no event, so what is still
    # allocated after the last message that was not after the tenth is what the turn kept of the 190 in between.
    first, last = 2 + 10 - 1, 2 + messages - 1  # indices of the 10th and the last agent.message
    allocated: dict[int, int] = {}
    tracemalloc.start()
    try:
        for n, event in enumerate(loop_client.beta.sessions.events.stream("sesn_big")):
            if n in (first, last):
                gc.collect()
                allocated[n] = tracemalloc.get_traced_memory()[0]
            if event.type == "session.status_idle":
                break
    finally:
        tracemalloc.stop()
    kept = allocated[last] - allocated[first]  # within ±30 kB of 0 as it is
    # Had it kept every message, 1.9 MB; had it kept 1,000 bytes of each (a cap per message, not per turn), 190 kB.
    assert kept < 100_000, kept
    output = dict(spans.turn().attributes or {})["gen_ai.output.messages"]
    assert len(output.encode("utf-8")) <= 1000
    assert dict(spans.turn().attributes or {})["anthropic.content.truncated"] is True


def test_redact_scrubs_every_content_value_and_a_raising_redact_drops_only_that_value(
    instrument: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    def redact(value: Any) -> Any:
        if isinstance(value, str) and "launch code" in value:
            return "[REDACTED]"
        if isinstance(value, dict) and "command" in value:
            raise ValueError("cannot scrub commands")
        return value

    instrument(capture_content=True, redact=redact)
    run(loop_client, server)
    recorded = everything_recorded(spans)
    assert SECRET_TEXT not in recorded and "[REDACTED]" in recorded
    assert "cat /etc/motd" not in recorded
    (tool,) = spans.named("execute_tool bash")
    assert "gen_ai.tool.call.arguments" not in dict(tool.attributes or {})
    assert dict(spans.turn().attributes or {})["anthropic.turn.stop_reason"] == "end_turn"


@pytest.mark.parametrize("mode", ["EVENT_ONLY", "SPAN_AND_EVENT"])
def test_event_modes_emit_log_records(
    instrument: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans, logs: Any, mode: str
) -> None:
    instrument(capture_content=mode, logger_provider=logs[0])
    run(loop_client, server)
    records = [r.log_record for r in logs[1].get_finished_logs()]
    assert {r.event_name for r in records} == {"gen_ai.client.inference.operation.details"}
    turn = spans.turn()
    (turn_record,) = [r for r in records if "gen_ai.input.messages" in (r.attributes or {})]
    assert turn_record.trace_id == turn.context.trace_id and turn_record.span_id == turn.context.span_id
    assert json.loads(turn_record.attributes["gen_ai.input.messages"])[0]["parts"][0]["content"] == SECRET_TEXT
    (tool_record,) = [r for r in records if "gen_ai.tool.call.arguments" in (r.attributes or {})]
    assert json.loads(tool_record.attributes["gen_ai.tool.call.result"]) == [{"type": "text", "text": TOOL_OUTPUT}]
    on_spans = SECRET_TEXT in everything_recorded(spans)
    assert on_spans is (mode == "SPAN_AND_EVENT")


def test_an_invalid_mode_warns_once_and_keeps_content_off(
    instrument: Any,
    server: FakeCMAServer,
    loop_client: anthropic.Anthropic,
    spans: Spans,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "everything-please")
    with caplog.at_level(logging.WARNING, logger="cma_tracing"):
        instrument()
        content_policy()
    warnings = [r for r in caplog.records if "everything-please" in r.getMessage()]
    assert len(warnings) == 1
    run(loop_client, server)
    assert SECRET_TEXT not in everything_recorded(spans)


@pytest.mark.parametrize("value", ["NO_CONTENT", "false", "False"])
def test_off_values_keep_content_off(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", value)
    assert not content_policy().enabled


def test_max_bytes_from_the_environment_and_invalid_values_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CMA_TRACING_MAX_CONTENT_BYTES", "123")
    assert content_policy(True).max_bytes == 123
    monkeypatch.setenv("CMA_TRACING_MAX_CONTENT_BYTES", "lots")
    assert content_policy(True).max_bytes == 65536
    assert content_policy(True, max_bytes=-5).max_bytes == 65536


def test_no_api_key_header_or_token_is_ever_recorded(
    instrument: Any, server: FakeCMAServer, spans: Spans, logs: Any, provider: Any
) -> None:
    key = "sk-ant-api03-SECRETSECRETSECRET"
    token = "Bearer tok_SECRET_AUTH_TOKEN"
    instrument(capture_content="SPAN_AND_EVENT", logger_provider=logs[0])
    client = anthropic.Anthropic(
        base_url=server.base_url,
        api_key=key,
        max_retries=0,
        default_headers={"Authorization": token, "x-api-key": key},
        open_telemetry={"tracer_provider": provider[0]},
    )
    run(client, server)
    assert server.requests[0].headers.get("x-api-key") == key  # it was really sent
    recorded = everything_recorded(spans, logs[1])
    for secret in ("SECRETSECRETSECRET", "tok_SECRET_AUTH_TOKEN", "x-api-key", "authorization"):
        assert secret not in recorded.lower() if secret.islower() else secret not in recorded


def test_a_system_message_is_a_span_event_and_a_system_entry_of_the_input_messages() -> None:
    from tests.support.core import Session, synthetic

    s = Session(capture_content=True)
    s.feed(synthetic("compaction_and_system_message"))
    turn = s.turn()
    assert "system.message" in [e.name for e in turn.events]
    inputs = json.loads(dict(turn.attributes or {})["gen_ai.input.messages"])
    assert [(m["role"], [p["content"] for p in m["parts"]]) for m in inputs] == [
        ("user", ["Continue the refactor."]),
        ("system", ["The user's timezone is America/New_York."]),
    ]


def test_a_system_message_sent_with_the_user_message_is_recorded_once() -> None:
    from tests.support.core import Session

    s = Session(capture_content=True)
    user = {"type": "user.message", "content": [{"type": "text", "text": "hi"}]}
    system = {"type": "system.message", "content": [{"type": "text", "text": "be brief"}]}
    s.send(user, system, echo=[{**user, "id": "sevt_u"}, {**system, "id": "sevt_s"}])
    s.feed([{**user, "id": "sevt_u", "processed_at": None}, {**system, "id": "sevt_s", "processed_at": None}])
    s.feed([{"type": "session.status_idle", "id": "sevt_i", "stop_reason": {"type": "end_turn"}}])
    turn = s.turn()
    assert [e.name for e in turn.events] == ["system.message"]
    inputs = json.loads(dict(turn.attributes or {})["gen_ai.input.messages"])
    assert [m["role"] for m in inputs] == ["user", "system"]


def test_each_chat_span_has_the_output_of_its_own_model_request(
    instrument: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    instrument(capture_content=True)
    run(loop_client, server, "sesn_chat_output")
    first, second = sorted(spans.named("chat"), key=lambda c: c.start_time or 0)
    (call,) = json.loads(dict(first.attributes or {})["gen_ai.output.messages"])[0]["parts"]
    assert (call["type"], call["name"], call["arguments"]) == ("tool_call", "bash", TOOL_INPUT)
    (said,) = json.loads(dict(second.attributes or {})["gen_ai.output.messages"])[0]["parts"]
    assert said == {"type": "text", "content": AGENT_TEXT}


def test_chat_output_is_off_by_default_and_redacted_when_on(
    instrument: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    instrument(capture_content=True, redact=lambda v: v.replace("found", "[x]") if isinstance(v, str) else v)
    run(loop_client, server, "sesn_chat_redact")
    second = max(spans.named("chat"), key=lambda c: c.start_time or 0)
    assert "[x]" in dict(second.attributes or {})["gen_ai.output.messages"]
    assert "found" not in dict(second.attributes or {})["gen_ai.output.messages"]


def test_the_agents_system_prompt_and_tools_from_a_session_this_process_saw(
    instrument: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    instrument(capture_content=True)
    server.set_session("sesn_agent_content")
    session = loop_client.beta.sessions.retrieve("sesn_agent_content")
    run(loop_client, server, "sesn_agent_content")
    turn = dict(spans.turn().attributes or {})
    assert json.loads(turn["gen_ai.system_instructions"]) == [{"type": "text", "content": session.agent.system}]
    (toolset,) = json.loads(turn["gen_ai.tool.definitions"])
    assert toolset["type"] == "agent_toolset_20260401" and toolset["configs"][0]["name"] == "bash"


def test_no_agent_content_is_kept_with_content_off(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    server.set_session("sesn_agent_off")
    loop_client.beta.sessions.retrieve("sesn_agent_off")
    run(loop_client, server, "sesn_agent_off")
    turn = dict(spans.turn().attributes or {})
    assert "gen_ai.system_instructions" not in turn and "gen_ai.tool.definitions" not in turn
    assert not any("gen_ai.output.messages" in dict(c.attributes or {}) for c in spans.named("chat"))
