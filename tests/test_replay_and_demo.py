"""`replay` builds the same tree as live tracing; the demo runs from the console script in under a minute, fits 80
columns with each field whole, and the README shows what it prints."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from rich.cells import cell_len
from rich.console import Console

from cma_tracing.demo.render import fields_of, fit_width, name_of
from cma_tracing.demo.run import run_demo
from cma_tracing.demo.loopback import Event
from cma_tracing.demo.scenarios import REAL_SPEED, real_turn
from cma_tracing.demo.serve import LIVE_SESSION, serve
from cma_tracing.demo.serve import start as start_serving
from cma_tracing.replay import load, replay
from tests.conftest import CASSETTES
from tests.support.output import digits_aside
from tests.support.spans import Spans

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
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and k != "COLUMNS"}
    started = time.monotonic()
    done = subprocess.run([_console_script(), "demo"], capture_output=True, text=True, timeout=120, env=env)
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
    assert max(cell_len(line) for line in out.splitlines()) <= 80  # a pipe, no COLUMNS: 80 columns


@dataclass(frozen=True)
class DemoRun:
    output: str
    spans: list[ReadableSpan]


@pytest.fixture(scope="module")
def demo_run() -> DemoRun:
    """The demo, run once in this process, printed to an 80-column console that is not a terminal."""
    console = Console(width=80, file=io.StringIO(), color_system=None, force_terminal=False)
    memory = InMemorySpanExporter()
    assert run_demo(console, capture_content=True, memory=memory)[0] == 6
    file = console.file
    assert isinstance(file, io.StringIO)
    return DemoRun(file.getvalue(), list(memory.get_finished_spans()))


def _content(line: str) -> str:
    """A tree line without its guides and indentation."""
    return line.lstrip("│├└─ ")


def test_the_demo_fits_80_columns_and_keeps_each_field_whole(demo_run: DemoRun) -> None:
    lines = demo_run.output.splitlines()
    assert max(cell_len(line) for line in lines) <= 80
    by_id = {s.context.span_id: s for s in demo_run.spans}
    expected: Counter[str] = Counter()
    for span in demo_run.spans:
        parent = by_id.get(span.parent.span_id) if span.parent is not None else None
        expected.update(fields_of(span, parent))
    for field, count in expected.items():
        assert sum(line.count(field) for line in lines) >= count, f"{field!r} is broken across lines"
    tokens = re.compile(r"[\d,]+ in / [\d,]+ out tokens")
    for line in lines:
        content = _content(line)
        if " in / " in content:
            assert tokens.search(content), line
        assert not content.startswith(("tokens", "s ·", "out ")) and not content.endswith((" in /", " in", "·")), line
    assert any(len(lines[i + 1]) - len(_content(lines[i + 1])) > 4 for i in range(len(lines) - 1))  # some wrapped


def test_the_header_url_is_whole_on_its_line(demo_run: DemoRun) -> None:
    assert re.search(r"^  http://127\.0\.0\.1:\d+$", demo_run.output, re.MULTILINE), demo_run.output[:300]


def _interval(output: str, name: str) -> list[tuple[float, float]]:
    """(start after the parent, end after the parent) of each line naming `name`."""
    found = re.findall(rf"{re.escape(name)} · at \+(\d+\.\d\d) s · (\d+\.\d\d) s", output)
    return [(float(at), float(at) + float(took)) for at, took in found]


def test_each_child_shows_its_start_after_its_parent_so_parallel_work_overlaps(demo_run: DemoRun) -> None:
    children = [s for s in demo_run.spans if s.parent is not None]
    assert demo_run.output.count(" · at +") == len(children)
    ((researcher_start, researcher_end),) = _interval(demo_run.output, "invoke_agent researcher")
    ((writer_start, writer_end),) = _interval(demo_run.output, "invoke_agent writer")
    assert researcher_start < writer_end and writer_start < researcher_end  # the two subagents overlap
    readers = _interval(demo_run.output, "invoke_agent contract-reader")
    assert len(readers) == 3 and max(start for start, _ in readers) <= min(end for _, end in readers)


def test_chat_lines_name_the_model_and_no_line_has_a_double_space(demo_run: DemoRun) -> None:
    chats = [_content(line) for line in demo_run.output.splitlines() if _content(line).startswith("chat")]
    assert len(chats) == 14
    coordinator = [c for c in chats if not c.startswith("chat · ")]
    assert len(coordinator) == 12 and all(re.match(r"chat claude-[\w.-]+ · ", c) for c in coordinator)
    assert all("  " not in _content(line) for line in demo_run.output.splitlines()), demo_run.output


def test_a_chat_span_named_plainly_shows_the_model_its_attributes_name() -> None:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("chat", attributes={"gen_ai.operation.name": "chat"}):
        pass
    attributes = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "claude-haiku-4-5"}
    with tracer.start_as_current_span("chat", attributes=attributes):
        pass
    plain, named = exporter.get_finished_spans()
    assert (name_of(plain), name_of(named)) == ("chat", "chat claude-haiku-4-5")


def test_the_demo_says_the_real_recording_plays_faster_than_it_was_recorded(demo_run: DemoRun) -> None:
    assert f"the real recording at {REAL_SPEED:g}× speed" in demo_run.output
    assert f"plays\nat {REAL_SPEED:g}× its speed, so its durations are 1/{REAL_SPEED:g} of what the API took" in (
        demo_run.output
    )
    recorded = 38.426503 - 33.262700  # status_running → idle, as the API stamped them
    assert sum(step.delay for step in real_turn() if isinstance(step, Event)) == pytest.approx(recorded / REAL_SPEED)


def test_the_readme_shows_what_the_demo_prints(demo_run: DemoRun) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    capture = readme.split("<!-- demo-output:", 1)[1].split("```\n", 1)[1].split("\n```", 1)[0]
    assert digits_aside(capture) == digits_aside(demo_run.output)


def test_a_pipe_gets_80_columns_unless_columns_says_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    assert fit_width(Console(file=io.StringIO(), width=200)) == 80
    monkeypatch.setenv("COLUMNS", "132")
    assert fit_width(Console(file=io.StringIO())) == 132
    monkeypatch.delenv("COLUMNS")
    assert fit_width(Console(file=io.StringIO(), force_terminal=True, width=120)) == 120  # a terminal: its width


def test_serve_prints_the_base_url_and_the_session_of_a_live_turn() -> None:
    console = Console(width=80, file=io.StringIO(), color_system=None)
    stop = threading.Event()
    serving = threading.Thread(target=serve, args=(console,), kwargs={"stop": stop}, daemon=True)
    serving.start()
    try:
        deadline = time.monotonic() + 60
        while "export " not in console.file.getvalue() and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.05)
        printed = console.file.getvalue()  # type: ignore[attr-defined]
    finally:
        stop.set()
        serving.join(timeout=30)
    exported = re.search(r"^export (.+)$", printed, re.MULTILINE)
    assert exported, printed
    variables = dict(pair.split("=", 1) for pair in exported.group(1).split())
    assert variables["CMA_SESSION_ID"] == LIVE_SESSION
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", variables["ANTHROPIC_BASE_URL"])
    assert variables["ANTHROPIC_BASE_URL"] in printed.splitlines()[0]
    assert not serving.is_alive()


def test_the_live_session_answers_every_send_with_a_fresh_recorded_turn(instrumented: Any, spans: Spans) -> None:
    server = start_serving()
    try:
        client = anthropic.Anthropic(base_url=server.base_url, api_key="any", max_retries=0, open_telemetry=False)
        client.beta.sessions.retrieve(LIVE_SESSION)
        seen = []
        for question in ("What is 2+2?", "And 3+3?"):
            sent = client.beta.sessions.events.send(
                LIVE_SESSION, events=[{"type": "user.message", "content": [{"type": "text", "text": question}]}]
            )
            with client.beta.sessions.events.stream(LIVE_SESSION) as stream:
                for event in stream:
                    seen.append(event)
                    if event.type == "session.status_idle":
                        break
            (echo,) = [e for e in seen if e.type == "user.message" and e.id == sent.data[0].id]
            assert echo.content[0].text == question  # the stream carries what was sent
    finally:
        server.stop()
    ids = [e.id for e in seen]
    assert len(ids) == len(set(ids)) == 2 * len(real_turn())  # each play has ids of its own
    turns = spans.turns()
    assert [t.name for t in turns] == ["invoke_agent braintrust-sdk-managed-agent-bash"] * 2
    for turn in turns:
        attrs = dict(turn.attributes or {})
        assert (attrs["gen_ai.usage.input_tokens"], attrs["anthropic.turn.stop_reason"]) == (4525, "end_turn")
        assert sorted(s.name for s in spans.children(turn)) == [
            "chat claude-haiku-4-5",
            "chat claude-haiku-4-5",
            "execute_tool bash",
        ]
    assert [dict(t.attributes or {})["anthropic.turn.index"] for t in turns] == [1, 2]
