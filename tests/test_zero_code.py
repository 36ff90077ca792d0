"""SPEC §2, zero-code: `opentelemetry-instrument python app.py` traces a CMA turn of an app that never imports us,
and `OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=cma_tracing` turns that off.

Each test runs tests/apps/cma_turn_app.py (plain `anthropic`, nothing else) in a subprocess under the venv's
`opentelemetry-instrument`, against the loopback server running in this process, with the console exporter, and reads
the spans back from the subprocess's stdout.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cma_tracing.demo.loopback import Event, FakeCMAServer

APP = Path(__file__).resolve().parent / "apps" / "cma_turn_app.py"
OTEL_INSTRUMENT = Path(sys.executable).parent / "opentelemetry-instrument"
SESSION = "sesn_zero_code_01"
USER_MESSAGE_ID = "sevt_zero_code_user_1"
SERVICE = "cma-zero-code-test"
TIMEOUT_S = 60

# Two model requests, so the turn's token counts are sums (input counts include cache reads and writes, SPEC §3.2).
USAGES = [
    {"input_tokens": 1200, "output_tokens": 30, "cache_read_input_tokens": 300, "cache_creation_input_tokens": 50},
    {"input_tokens": 800, "output_tokens": 7, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 0},
]
EXPECTED_INPUT_TOKENS = sum(
    u["input_tokens"] + u["cache_read_input_tokens"] + u["cache_creation_input_tokens"] for u in USAGES
)
EXPECTED_OUTPUT_TOKENS = sum(u["output_tokens"] for u in USAGES)


def _stamp(n: int) -> str:
    return f"2026-08-17T16:21:{33 + n:02d}.000000Z"


def _script_turn(server: FakeCMAServer) -> None:
    """One turn shaped like the real bash-tool recording: running, the echoed user.message, two model requests, idle."""
    server.set_session(SESSION)
    server.queue_send(SESSION, [USER_MESSAGE_ID])
    events: list[dict[str, Any]] = [
        {"id": "sevt_zc_running", "type": "session.status_running"},
        {
            "id": USER_MESSAGE_ID,
            "type": "user.message",
            "content": [{"type": "text", "text": "What is 2+2?"}],
        },
    ]
    for i, usage in enumerate(USAGES, start=1):
        start_id = f"sevt_zc_mreq_start_{i}"
        events.append({"id": start_id, "type": "span.model_request_start"})
        events.append(
            {"id": f"sevt_zc_msg_{i}", "type": "agent.message", "content": [{"type": "text", "text": f"part {i}"}]}
        )
        events.append(
            {
                "id": f"sevt_zc_mreq_end_{i}",
                "type": "span.model_request_end",
                "is_error": False,
                "model_request_start_id": start_id,
                "model_usage": dict(usage),
            }
        )
    events.append({"id": "sevt_zc_idle", "type": "session.status_idle", "stop_reason": {"type": "end_turn"}})
    server.queue_stream(SESSION, [Event({**e, "processed_at": _stamp(n)}) for n, e in enumerate(events)])


def _env(**extra: str) -> dict[str, str]:
    """The test's environment without any OTEL_* / ANTHROPIC_OPEN_TELEMETRY* setting of its own, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("OTEL_") and not k.startswith("ANTHROPIC_OPEN_TELEMETRY")
    }
    env.update(
        OTEL_TRACES_EXPORTER="console",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_SERVICE_NAME=SERVICE,
    )
    env.update(extra)
    return env


def _console_spans(stdout: str) -> list[dict[str, Any]]:
    """Every JSON object in `stdout`: the console exporter prints indented spans back to back, among the app's lines."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    pos = stdout.find("{")
    while pos != -1:
        try:
            obj, end = decoder.raw_decode(stdout, pos)
        except json.JSONDecodeError:
            pos = stdout.find("{", pos + 1)
            continue
        if isinstance(obj, dict) and "name" in obj and "context" in obj:
            found.append(obj)
        pos = stdout.find("{", end)
    return found


def _run_app(server: FakeCMAServer, tmp_path: Path, **extra_env: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    _script_turn(server)
    proc = subprocess.run(
        [str(OTEL_INSTRUMENT), sys.executable, str(APP), server.base_url],
        env=_env(**extra_env),
        cwd=tmp_path,  # opentelemetry-instrument puts the cwd on PYTHONPATH: keep the project's tree off it
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    done = [line for line in proc.stdout.splitlines() if line.startswith("DONE ")]
    assert done == [f"DONE {SESSION} {2 + 3 * len(USAGES) + 1}"], proc.stdout  # every scripted event was read
    assert "Traceback" not in proc.stderr, proc.stderr
    # The app really talked to this process's server: create, send, stream.
    assert [(r.method, r.path) for r in server.requests] == [
        ("POST", "/v1/sessions"),
        ("POST", f"/v1/sessions/{SESSION}/events"),
        ("GET", f"/v1/sessions/{SESSION}/events/stream"),
    ]
    return proc, _console_spans(proc.stdout)


def _turn_spans(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in spans if s["name"].startswith("invoke_agent")]


def test_the_venv_has_the_console_script_and_the_app_has_no_tracing_code() -> None:
    assert OTEL_INSTRUMENT.is_file() and os.access(OTEL_INSTRUMENT, os.X_OK), OTEL_INSTRUMENT
    imported: set[str] = set()
    for node in ast.walk(ast.parse(APP.read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported == {"anthropic", "os", "sys"}


@pytest.mark.parametrize("sdk_tracing", ["default", "false"], ids=["sdk-spans-on", "sdk-spans-off"])
def test_opentelemetry_instrument_traces_a_turn_with_no_code_change(
    server: FakeCMAServer, tmp_path: Path, sdk_tracing: str
) -> None:
    extra = {} if sdk_tracing == "default" else {"ANTHROPIC_OPEN_TELEMETRY": "false"}
    proc, spans = _run_app(server, tmp_path, **extra)

    turns = _turn_spans(spans)
    assert len(turns) == 1, ([s["name"] for s in spans], proc.stdout, proc.stderr)
    turn = turns[0]
    attrs = turn["attributes"]
    assert turn["name"] == "invoke_agent loopback-agent-bash"
    assert turn["kind"] == "SpanKind.CLIENT"
    assert turn["status"]["status_code"] == "OK"
    assert turn["parent_id"] is None
    assert attrs["gen_ai.operation.name"] == "invoke_agent"
    assert attrs["anthropic.turn.stop_reason"] == "end_turn"
    assert attrs["gen_ai.response.finish_reasons"] == ["stop"]
    assert attrs["gen_ai.usage.input_tokens"] == EXPECTED_INPUT_TOKENS
    assert attrs["gen_ai.usage.output_tokens"] == EXPECTED_OUTPUT_TOKENS
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 400
    assert attrs["gen_ai.usage.cache_write.input_tokens"] == 50
    assert attrs["anthropic.turn.model_requests"] == len(USAGES)
    assert attrs["anthropic.turn.tool_calls"] == 0
    assert attrs["anthropic.session.id"] == attrs["gen_ai.conversation.id"] == SESSION
    assert attrs["server.address"] == "127.0.0.1"
    # The provider is the one opentelemetry-instrument configured from the environment.
    assert turn["resource"]["attributes"]["service.name"] == SERVICE
    assert "telemetry.auto.version" in turn["resource"]["attributes"]

    sdk_spans = [s for s in spans if s["name"].startswith("anthropic.")]
    if sdk_tracing == "false":
        assert sdk_spans == [], [s["name"] for s in spans]
        ours = sorted(s["name"] for s in spans)
        assert ours == sorted([turn["name"]] + ["chat claude-haiku-4-5"] * len(USAGES))
        assert all(s["parent_id"] == turn["context"]["span_id"] for s in spans if s is not turn)
    else:
        # The SDK's own send span nests under the turn (SPEC §3): the context works under auto-instrumentation too.
        sends = [s for s in sdk_spans if s["name"] == "anthropic.sessions.events.send"]
        assert len(sends) == 1, [s["name"] for s in spans]
        assert sends[0]["parent_id"] == turn["context"]["span_id"]
        assert sends[0]["context"]["trace_id"] == turn["context"]["trace_id"]


@pytest.mark.parametrize("disabled", ["cma_tracing", "requests, cma_tracing"], ids=["alone", "in-a-list"])
def test_otel_python_disabled_instrumentations_turns_it_off(
    server: FakeCMAServer, tmp_path: Path, disabled: str
) -> None:
    # The SDK's own spans stay on, to prove the exporter pipeline ran and only cma_tracing was left out.
    proc, spans = _run_app(server, tmp_path, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=disabled)

    assert _turn_spans(spans) == [], proc.stdout
    assert not any(s["attributes"].get("gen_ai.operation.name") == "invoke_agent" for s in spans), proc.stdout
    assert "anthropic.turn.stop_reason" not in proc.stdout
    names = {s["name"] for s in spans}
    assert {"anthropic.sessions.create", "anthropic.sessions.events.send"} <= names, names
    assert all(s["resource"]["attributes"]["service.name"] == SERVICE for s in spans)
    # With no turn span current, the SDK's send span is a root.
    send = next(s for s in spans if s["name"] == "anthropic.sessions.events.send")
    assert send["parent_id"] is None
