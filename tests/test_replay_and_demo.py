"""Issue 6: `replay` builds the same tree as live tracing; the demo runs from the console script in under a minute."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anthropic
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cma_tracing.replay import load, replay
from tests.conftest import CASSETTES, Spans

#: Attributes that depend on when the client saw events, which a recording cannot know.
TIMING = {"gen_ai.response.time_to_first_chunk"}


def shape(spans: list[ReadableSpan]) -> list[tuple[str, str, dict[str, Any]]]:
    """Each span as (name, parent's name, attributes without timing), in start order."""
    by_id = {s.context.span_id: s for s in spans}
    rows = []
    for span in sorted(spans, key=lambda s: (s.start_time or 0, s.name)):
        parent = by_id.get(span.parent.span_id).name if span.parent is not None and span.parent.span_id in by_id else ""
        rows.append((span.name, parent, {k: v for k, v in (span.attributes or {}).items() if k not in TIMING}))
    return rows


def test_replay_of_the_real_recording_gives_the_same_tree_as_live_tracing(
    instrumented: Any, client: anthropic.Anthropic, cassette: Any, spans: Spans
) -> None:
    with cassette("real_bash_tool"):
        client.beta.environments.list(limit=1)
        session = client.beta.sessions.create(agent="agent_0178EAqEXzAVgoiucYPVscc6", environment_id="e")
        client.beta.sessions.events.send(
            session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "2+2"}]}]
        )
        for _ in client.beta.sessions.events.stream(session.id):
            pass
    live = shape(spans.all())

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert replay(load(CASSETTES / "real_bash_tool.yaml"), tracer_provider=provider) == 1
    replayed = shape(list(exporter.get_finished_spans()))
    for row in replayed + live:  # the live client sees the API at api.anthropic.com; a recording has no client
        row[2].pop("server.address", None), row[2].pop("server.port", None), row[2].pop("anthropic.beta", None)
    assert replayed == live
    assert sorted(name for name, _, _ in live) == [
        "chat claude-haiku-4-5",
        "chat claude-haiku-4-5",
        "execute_tool bash",
        "invoke_agent braintrust-sdk-managed-agent-bash",
    ]


def test_replay_uses_the_events_own_timestamps() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    replay(
        load(CASSETTES / "real_stream_2026-08-17_bash_tool.events.jsonl", session_id="sesn_x"), tracer_provider=provider
    )
    by_name = {s.name: s for s in exporter.get_finished_spans()}
    turn, tool = by_name["invoke_agent braintrust-sdk-managed-agent-bash"], by_name["execute_tool bash"]  # agent_name
    assert (turn.end_time - turn.start_time) / 1e9 == pytest.approx(
        38.426503 - 33.262700, abs=1e-3
    )  # session.status_running (the agent at work: a watcher's turn opens there) → idle
    assert dict(turn.attributes or {})["anthropic.turn.trigger"] == "user.message"  # adopted before any request
    assert (tool.end_time - tool.start_time) / 1e9 == pytest.approx(37.310218 - 34.588657, abs=1e-3)
    assert dict(turn.attributes or {})["anthropic.session.id"] == "sesn_x"


def test_replay_reads_a_json_list_as_events_list_returns_it(tmp_path: Path) -> None:
    events = [
        json.loads(line)
        for line in (CASSETTES / "real_stream_2026-08-17_bash_tool.events.jsonl").read_text().splitlines()
        if line.startswith("{")
    ]
    path = tmp_path / "session.json"
    path.write_text(json.dumps({"data": events, "next_page": None}))
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert replay(load(path), tracer_provider=provider) == 1
    (turn,) = [s for s in exporter.get_finished_spans() if s.name.startswith("invoke_agent")]
    assert dict(turn.attributes or {})["gen_ai.usage.input_tokens"] == 4525


def _console_script() -> str:
    return str(Path(sys.executable).with_name("cma-tracing"))


def test_the_replay_command_prints_the_tree() -> None:
    done = subprocess.run(
        [_console_script(), "replay", str(CASSETTES / "custom_tool_two_streams.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    assert "execute_tool get_weather" in done.stdout and "1 turn from 1 session" in done.stdout


def test_the_demo_runs_in_under_a_minute_and_shows_every_kind_of_span() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    started = time.monotonic()
    done = subprocess.run(
        [_console_script(), "demo"], capture_output=True, text=True, timeout=120, env={**env, "COLUMNS": "200"}
    )
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 60
    out = done.stdout
    for expected in (
        "invoke_agent braintrust-sdk-managed-agent-bash",
        "execute_tool bash",
        "chat claude-haiku-4-5",
        "execute_tool get_weather",
        "invoke_agent researcher",
        "invoke_agent writer",
        "retries_exhausted",
        "ERROR model_overloaded_error",
        "outcome satisfied after 2",
        "evaluation outcome",
        "verdict needs_revision",
        "verdict satisfied",
        "invoke_workflow",
        "workflow_phase Read the contracts",
        "workflow_phase Reconcile",
        "invoke_agent contract-reader",
        "6 turns",
    ):
        assert expected in out, expected
