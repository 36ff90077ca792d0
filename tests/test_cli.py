"""The `cma-tracing` command: bad input is one line and exit 2, exports are verified and bounded, exit 0 only when
everything asked for was done. Through `main(argv)` (fast) and, where the entry point matters, a subprocess."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cma_tracing.cli import main
from cma_tracing.demo.loopback import FakeCMAServer
from cma_tracing.replay import load, replay
from cma_tracing.version import __version__
from tests.support.core import synthetic
from tests.support.otlp_receiver import OTLPReceiver, running_receiver

CASSETTES = Path(__file__).resolve().parent.parent / "cassettes"
REAL_JSONL = CASSETTES / "real_stream_2026-08-17_bash_tool.events.jsonl"
CASSETTE = CASSETTES / "custom_tool_two_streams.yaml"


@pytest.fixture(autouse=True)
def _no_ambient_otlp(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "200")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, list[str]]:
    """main(argv): its exit status, stdout, and stderr's lines."""
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err.strip().splitlines()


def _one_line(err: list[str]) -> str:
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def _real_lines() -> list[str]:
    return [line for line in REAL_JSONL.read_text().splitlines() if line.strip() and not line.startswith("#")]


# (file name, content, what the one line says)
BAD_INPUT = [
    ("empty.json", b"", "no events in"),
    ("empty.jsonl", b"\n\n", "no events in"),
    ("garbage.json", b"not json at all", "not valid JSON"),
    ("garbage.jsonl", b'{"type": "user.message"}\n{"cut":', "line 2 is not valid JSON"),
    ("latin1.json", '[{"type": "agent.message", "text": "café"}]'.encode("latin-1"), "not UTF-8"),
    ("bad.yaml", b"interactions: [\n  - {request: ", "not valid YAML"),
    ("number.json", b"42", "no events in"),
    ("list.yaml", b"- 1\n- 2\n", "not a vcrpy cassette"),
    ("string.yml", b'interactions: "x"\n', "not a vcrpy cassette"),
    ("foo.json", b'{"foo": 1}', "no events in"),
    ("data.json", b'{"data": "nope"}', "no events in"),
    ("junk.json", b'[1, "x", null]', "no events in"),
    ("junk.jsonl", b'1\n"x"\nnull\n', "no events in"),
    ("interactions.yaml", b"interactions: []\n", "no events in"),
]


@pytest.mark.parametrize(("name", "content", "says"), BAD_INPUT, ids=[case[0] for case in BAD_INPUT])
def test_bad_input_is_one_line_naming_the_file_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, content: bytes, says: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    status, out, err = _run(capsys, "replay", str(path))
    assert status == 2
    line = _one_line(err)
    assert says in line and str(path) in line, line
    assert "turn" not in out  # nothing was traced, so no summary


def test_a_missing_file_and_a_directory_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, _, err = _run(capsys, "replay", str(tmp_path / "nowhere.json"))
    assert status == 2 and "no such file" in _one_line(err)
    (tmp_path / "folder.json").mkdir()
    status, _, err = _run(capsys, "replay", str(tmp_path / "folder.json"))
    assert status == 2 and "is a directory" in _one_line(err)


def test_debug_shows_the_traceback_then_the_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "garbage.json"
    path.write_text("{")
    status = main(["replay", str(path), "--debug"])
    err = capsys.readouterr().err
    assert status == 2
    assert "Traceback" in err and "JSONDecodeError" in err  # the cause, not only our wrapper
    assert err.strip().splitlines()[-1].startswith(f"cma-tracing: {path}: not valid JSON")
    assert main(["--debug", "replay", str(path)]) == 2 and "Traceback" in capsys.readouterr().err


def test_events_that_open_no_turn_say_so_and_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "idle.json"
    idle = {"type": "session.status_idle", "id": "sevt_1", "processed_at": "2026-01-01T00:00:00Z"}
    path.write_text(json.dumps([{**idle, "stop_reason": {"type": "end_turn"}}]))
    status, _, err = _run(capsys, "replay", str(path))
    assert status == 1 and "open no turn" in _one_line(err)


@pytest.mark.parametrize(
    ("name", "source", "expected"),
    [
        ("UPPER.YAML", "cassette", "execute_tool get_weather"),
        ("no_suffix", "cassette", "execute_tool get_weather"),
        ("Cassette.Yml", "cassette", "execute_tool get_weather"),
        ("events.JSONL", "jsonl", "execute_tool bash"),
        ("events", "jsonl", "execute_tool bash"),
    ],
)
def test_a_recording_is_known_by_its_suffix_in_any_case_or_by_its_content(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, source: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_bytes((CASSETTE if source == "cassette" else REAL_JSONL).read_bytes())
    status, out, err = _run(capsys, "replay", str(path))
    assert status == 0 and err == []
    assert expected in out and "1 turn from 1 session" in out
    if source == "cassette":
        assert "1 turn from 1 session, 4 spans" in out


def test_counts_are_singular_for_one_and_plural_otherwise(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = _run(capsys, "replay", str(CASSETTE))
    assert status == 0 and "1 turn from 1 session, 4 spans" in out
    assert "1 turns" not in out and "1 sessions" not in out
    status, out, _ = _run(capsys, "replay", str(CASSETTES / "two_turns_one_stream.yaml"))
    assert status == 0 and "2 turns from 1 session," in out


def test_events_listed_newest_first_trace_as_in_time_order(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    forward, backward = tmp_path / "forward.jsonl", tmp_path / "backward.jsonl"
    forward.write_text("\n".join(_real_lines()))
    backward.write_text("\n".join(reversed(_real_lines())))
    assert main(["replay", str(forward)]) == 0
    expected = capsys.readouterr().out.split("\n", 1)[1]
    status, out, err = _run(capsys, "replay", str(backward))
    assert status == 0 and err == []
    assert out.split("\n", 1)[1] == expected  # the same tree and summary, below its title
    assert "unobserved" not in out and "end_turn" in out


def test_a_newest_first_export_keeps_events_with_the_same_stamp_in_their_order(tmp_path: Path) -> None:
    events = synthetic("compaction_and_system_message")  # user.message and system.message share a stamp
    path = tmp_path / "export.json"
    path.write_text(json.dumps({"data": list(reversed(events))}))
    (recorded,) = load(path)
    assert [e["id"] for e in recorded.steps[0].events] == [e["id"] for e in events]


def test_events_without_stamps_keep_the_files_order(tmp_path: Path) -> None:
    events = [json.loads(line) for line in _real_lines()]
    events[3]["processed_at"] = None
    shuffled = [events[1], events[0], *events[2:]]
    path = tmp_path / "partial.json"
    path.write_text(json.dumps(shuffled))
    (recorded,) = load(path)
    assert [e["id"] for e in recorded.steps[0].events] == [e["id"] for e in shuffled]


def _replayed_turn(path: Path) -> Any:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert replay(load(path), tracer_provider=provider) == 1
    (turn,) = [s for s in exporter.get_finished_spans() if s.parent is None]
    return turn


def test_json_lines_take_the_session_and_agent_from_the_events(tmp_path: Path) -> None:
    path = tmp_path / "exported.jsonl"
    lines = [json.dumps({**json.loads(line), "session_id": "sesn_from_events"}) for line in _real_lines()]
    path.write_text("\n".join(lines))
    turn = _replayed_turn(path)
    assert turn.name == "invoke_agent braintrust-sdk-managed-agent-bash"  # the primary thread's agent_name
    assert dict(turn.attributes or {})["gen_ai.conversation.id"] == "sesn_from_events"
    assert dict(turn.attributes or {})["gen_ai.agent.name"] == "braintrust-sdk-managed-agent-bash"


def test_a_session_object_in_the_file_names_the_session_and_its_agent(tmp_path: Path) -> None:
    session = {"type": "session", "id": "sesn_obj", "agent": {"id": "agent_1", "name": "planner", "version": 3}}
    path = tmp_path / "session_and_events.jsonl"
    path.write_text("\n".join([json.dumps(session), *_real_lines()]))
    turn = _replayed_turn(path)
    assert turn.name == "invoke_agent planner"
    assert dict(turn.attributes or {})["gen_ai.conversation.id"] == "sesn_obj"


def test_a_subagents_thread_does_not_name_the_session(tmp_path: Path) -> None:
    events = synthetic("thread_rescheduled")  # a Reviewer subagent, and no agent_name for the primary thread
    path = tmp_path / "coordinator.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in events))
    (recorded,) = load(path)
    assert recorded.session is None and recorded.session_id == "coordinator"


def test_session_id_option_wins_over_the_events(tmp_path: Path) -> None:
    path = tmp_path / "exported.jsonl"
    path.write_text("\n".join(json.dumps({**json.loads(line), "session_id": "sesn_a"}) for line in _real_lines()))
    (recorded,) = load(path, "sesn_given")
    assert recorded.session_id == "sesn_given"


# --- exporting -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["replay", str(CASSETTE)], ["demo"], ["trace", "sesn_x"]])
@pytest.mark.parametrize("endpoint", ["foo", "localhost:4318", "ftp://collector:4318", "http://", "http://h:99999"])
def test_a_bad_endpoint_fails_before_anything_runs(
    capsys: pytest.CaptureFixture[str], command: list[str], endpoint: str
) -> None:
    status, out, err = _run(capsys, *command, "--otlp-endpoint", endpoint)
    assert status == 2 and out == ""
    line = _one_line(err)
    assert "--otlp-endpoint" in line and repr(endpoint) in line


def test_a_bad_endpoint_in_the_environment_names_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")
    status, out, err = _run(capsys, "replay", str(CASSETTE))
    assert status == 2 and out == ""
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in _one_line(err) and "http:// or https://" in err[0]


@pytest.mark.parametrize("timeout", ["0", "-1", "nan"])
def test_a_bad_timeout_fails_before_anything_runs(capsys: pytest.CaptureFixture[str], timeout: str) -> None:
    status, out, err = _run(capsys, "replay", str(CASSETTE), "--otlp-endpoint", "http://h", "--otlp-timeout", timeout)
    assert status == 2 and out == "" and "--otlp-timeout" in _one_line(err)


def test_an_export_that_succeeds_reports_the_spans_the_receiver_took(capsys: pytest.CaptureFixture[str]) -> None:
    with running_receiver() as receiver:
        status, out, err = _run(capsys, "replay", str(CASSETTE), "--otlp-endpoint", receiver.url)
        received = receiver.spans()
    assert status == 0 and err == []
    assert len(received) == 4 and {s.name for s in received} >= {"execute_tool get_weather"}
    assert f"exported 4 spans to {receiver.url}/v1/traces" in out


def test_an_export_over_the_batch_size_is_counted_whole(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from cma_tracing.demo import exporting

    from datetime import datetime, timedelta

    path = tmp_path / "many.json"

    def later(line: str, minutes: int) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(line.replace('"sevt_', f'"sevt_{minutes}_'))  # ids and references to them
        at = datetime.fromisoformat(event["processed_at"].replace("Z", "+00:00")) + timedelta(minutes=minutes)
        return {**event, "processed_at": at.isoformat()}

    many = [later(line, n) for n in range(150) for line in _real_lines()]  # 150 turns a minute apart, 600 spans
    path.write_text(json.dumps(many))
    with running_receiver() as receiver:
        status, out, err = _run(capsys, "replay", str(path), "--otlp-endpoint", receiver.url)
        received = len(receiver.spans())
        requests = len(receiver.received("/v1/traces"))
    assert status == 0 and err == []
    assert received == 600 and requests == -(-600 // exporting.BATCH_SIZE)
    assert "exported 600 spans" in out


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def failing_receiver() -> Iterator[OTLPReceiver]:
    with running_receiver() as receiver:
        receiver.fail_with(503)
        yield receiver


TIMEOUT = 1.5
#: Start-up, the replay itself and a loaded machine, on top of the timeout (the exporter's own default is 10 s).
MARGIN = 5.0


@pytest.mark.parametrize("where", ["503", "unreachable"])
def test_a_failed_export_is_one_summary_line_exit_1_within_the_timeout(
    capsys: pytest.CaptureFixture[str], failing_receiver: OTLPReceiver, where: str
) -> None:
    import opentelemetry.exporter.otlp.proto.http.trace_exporter  # noqa: F401  # imported before the clock starts

    url = failing_receiver.url if where == "503" else f"http://127.0.0.1:{_unused_port()}"
    started = time.monotonic()
    status, out, err = _run(capsys, "replay", str(CASSETTE), "--otlp-endpoint", url, "--otlp-timeout", str(TIMEOUT))
    elapsed = time.monotonic() - started
    assert status == 1
    line = _one_line(err)  # no "Transient error ..." per retry
    assert line.startswith(f"cma-tracing: OTLP export to {url}/v1/traces failed") and "0 of 4 spans exported" in line
    assert ("Service Unavailable" if where == "503" else "refused") in line, line
    assert "1 turn from 1 session, 4 spans" in out  # the traces were still built and shown
    assert elapsed < TIMEOUT + MARGIN, elapsed
    if where == "503":
        assert failing_receiver.received("/v1/traces")  # it was asked, and said no


def test_a_failed_export_in_a_subprocess_prints_no_exporter_logs(failing_receiver: OTLPReceiver) -> None:
    done = _cli("replay", str(CASSETTE), "--otlp-endpoint", failing_receiver.url, "--otlp-timeout", str(TIMEOUT))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr and "Transient" not in done.stderr, done.stderr
    assert "failed (the receiver answered Service Unavailable)" in lines[0]


def test_the_trace_command_exports_and_reports_too(
    capsys: pytest.CaptureFixture[str], server: FakeCMAServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.set_session("sesn_cli_export")
    server.set_history("sesn_cli_export", synthetic("workflow_run_completed"), page_size=10)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    with running_receiver() as receiver:
        status, out, err = _run(capsys, "trace", "sesn_cli_export", "--otlp-endpoint", receiver.url)
        received = len(receiver.spans())
    assert status == 0 and err == []
    assert "1 turn, 11 spans" in out and received == 11 and "exported 11 spans" in out
    receiver = OTLPReceiver().start()
    receiver.fail_with(503)
    try:
        status, out, err = _run(
            capsys, "trace", "sesn_cli_export", "--otlp-endpoint", receiver.url, "--otlp-timeout", str(TIMEOUT)
        )
    finally:
        receiver.stop()
    assert status == 1 and "0 of 11 spans exported" in _one_line(err)


def test_the_trace_command_with_content_puts_it_on_the_spans(
    capsys: pytest.CaptureFixture[str], server: FakeCMAServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.set_session("sesn_cli_content")
    server.set_history("sesn_cli_content", synthetic("workflow_run_completed"), page_size=10)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    found = {}
    for content in (False, True):
        with running_receiver() as receiver:
            extra = ["--content"] if content else []
            status, _, err = _run(capsys, "trace", "sesn_cli_content", *extra, "--otlp-endpoint", receiver.url)
            assert status == 0 and err == []
            (turn,) = [s for s in receiver.spans() if s.parent_span_id is None]
            found[content] = turn.attributes
    assert "gen_ai.input.messages" not in found[False] and "gen_ai.output.messages" not in found[False]
    (message,) = json.loads(found[True]["gen_ai.input.messages"])
    assert message["role"] == "user" and message["parts"][0]["type"] == "text" and message["parts"][0]["content"]
    assert json.loads(found[True]["gen_ai.output.messages"])[0]["role"] == "assistant"


def test_the_trace_command_says_when_a_threads_listing_was_cut(
    capsys: pytest.CaptureFixture[str], server: FakeCMAServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cma_tracing.after

    monkeypatch.setattr(cma_tracing.after, "MAX_THREAD_PAGES", 1)
    events = synthetic("workflow_run_completed")
    server.set_session("sesn_cli_cut")
    server.set_history("sesn_cli_cut", events, page_size=10)
    thread = next(e for e in events if e.get("workflow_run_id") and e["type"] == "session.thread_created")
    server.set_history("sesn_cli_cut", [thread, thread], page_size=1, thread_id=thread["session_thread_id"])
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    status, out, _ = _run(capsys, "trace", "sesn_cli_cut")
    assert status == 0 and "1 turn, 11 spans, 1 thread cut at 1 page\n" in out


@pytest.mark.parametrize("status_code", [500, 503])
def test_the_trace_command_on_an_error_answer_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, status_code: int
) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    class Failing(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"type": "error", "error": {"type": "api_error", "message": "Internal server error"}})
            self.send_response(status_code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Retry-After", "0")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, format: str, *args: Any) -> None:
            pass

    api = ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    Thread(target=api.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://127.0.0.1:{api.server_address[1]}")
        status, out, err = _run(capsys, "trace", "sesn_cli_failing")
    finally:
        api.shutdown()
        api.server_close()
    assert status == 2 and out == ""
    line = _one_line(err)
    assert line.startswith(f"cma-tracing: the API answered {status_code} for session sesn_cli_failing"), line


# --- entry points --------------------------------------------------------------------------------------------------


def _cli(*args: str, module: str = "cma_tracing") -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ANTHROPIC_"))}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, "COLUMNS": "200"},
    )


@pytest.mark.parametrize("module", ["cma_tracing", "cma_tracing.cli"])
def test_python_dash_m_runs_the_command(module: str) -> None:
    done = _cli("replay", str(CASSETTE), module=module)
    assert done.returncode == 0, done.stderr
    assert "execute_tool get_weather" in done.stdout and "1 turn from 1 session" in done.stdout


def test_version_prints_the_packages_version() -> None:
    done = _cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"cma-tracing {__version__}"


def test_a_bad_file_through_python_dash_m_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "cassette.yaml"
    path.write_text("interactions: [\n")
    done = _cli("replay", str(path))
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert f"{path}: not valid YAML" in done.stderr
