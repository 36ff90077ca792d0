"""End to end with a real backend: our spans, over OTLP/HTTP through the standard exporter, into Arize Phoenix.

Phoenix is installed by `scripts/phoenix_env.py` into `.phoenix-venv/` (its own venv: it pins an older `anthropic`)
and started once per session on 127.0.0.1, on a free port, with a temporary working directory (SQLite inside).
A real turn goes through the SDK against the loopback CMA server; the spans are read back through Phoenix's REST API
(`GET /v1/projects/{project}/spans`) and checked: the tree, the attributes, and Phoenix's span kinds
(AGENT / LLM / TOOL). If Phoenix cannot be installed or started, the tests fail with the reason; they never skip.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import anthropic
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import cma_tracing
from cma_tracing.demo.loopback import running_server
from tests.support.scenarios import message, queue_turn

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "phoenix_env.py"
PROJECT = "cma-tracing-e2e"  # Phoenix files spans under the resource's `openinference.project.name`
INSTALL_TIMEOUT_S = 1200.0
STARTUP_TIMEOUT_S = 120.0
SPANS_TIMEOUT_S = 30.0
LOG_TAIL_LINES = 40

pytestmark = pytest.mark.network  # scripts/phoenix_env.py installs Phoenix from PyPI (about 80 s the first time)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


class Phoenix:
    """A `phoenix serve` subprocess on 127.0.0.1."""

    def __init__(self, executable: str, workdir: Path) -> None:
        self.executable = executable
        self.workdir = workdir
        self.log_path = workdir / "phoenix.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        try:
            return tail(self.log_path.read_text(errors="replace"))
        except OSError:
            return "(no log)"

    def start(self, attempts: int = 3) -> None:
        """Start and wait for `/readyz`; a lost race for the free port is retried on another one."""
        for _ in range(attempts):
            self.port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "OTEL_"))}
            env.update(
                PHOENIX_WORKING_DIR=str(self.workdir),  # SQLite database and exports: the temp dir, nothing else
                PHOENIX_HOST="127.0.0.1",
                PHOENIX_PORT=str(self.port),
                # gRPC cannot be switched off on its own (only with --read-only, which also refuses OTLP/HTTP), so
                # port 0: the OS picks a free one and parallel runs never clash. Phoenix binds it on [::].
                PHOENIX_GRPC_PORT="0",
                PHOENIX_TELEMETRY_ENABLED="false",
                PHOENIX_ALLOW_EXTERNAL_RESOURCES="false",
                PHOENIX_DISABLE_AGENT_ASSISTANT="true",
                PHOENIX_ENABLE_MCP_SERVER="false",
            )
            with self.log_path.open("ab") as log:
                self.process = subprocess.Popen(
                    [self.executable, "serve"],
                    cwd=self.workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, so stop() reaches any child it spawns
                )
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:
                        if response.status == 200:
                            return
                except (urllib.error.URLError, OSError):
                    pass
                time.sleep(0.2)
            if self.process.poll() is None:
                self.stop()
                pytest.fail(f"Phoenix was not ready within {STARTUP_TIMEOUT_S:.0f} s on {self.url}; log:\n{self.log()}")
            if "address already in use" not in self.log().lower():
                break
        pytest.fail(f"Phoenix exited with code {self.process.returncode if self.process else '?'}; log:\n{self.log()}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)

    def spans(self, project: str) -> list[dict[str, Any]]:
        """Every span of `project` (REST, paged); [] while the project does not exist yet (404)."""
        found: list[dict[str, Any]] = []
        cursor = ""
        while True:
            url = f"{self.url}/v1/projects/{project}/spans?limit=1000" + (f"&cursor={cursor}" if cursor else "")
            try:
                body = get_json(url)
            except urllib.error.HTTPError as error:
                if error.code == 404:
                    return []
                raise
            found += body["data"]
            cursor = body.get("next_cursor") or ""
            if not cursor:
                return found


def ensure_phoenix() -> str:
    """Run the install script; the path of the `phoenix` executable, or the test fails with pip's reason."""
    try:
        done = subprocess.run(
            [sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, cwd=REPO
        )
    except subprocess.TimeoutExpired as timeout:
        output = str(timeout.stderr or "")
        pytest.fail(f"{SCRIPT.name} did not finish within {INSTALL_TIMEOUT_S:.0f} s:\n{tail(output)}")
    if done.returncode != 0 or not done.stdout.strip():
        reason = tail(done.stderr + done.stdout)
        pytest.fail(f"Phoenix could not be installed ({SCRIPT.name} exit {done.returncode}):\n{reason}")
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def phoenix() -> Iterator[Phoenix]:
    executable = ensure_phoenix()
    with tempfile.TemporaryDirectory(prefix="cma-phoenix-") as workdir:
        server = Phoenix(executable, Path(workdir))
        try:
            server.start()
            yield server
        finally:
            server.stop()


def otlp_exporter(endpoint: str) -> Any:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as error:
        pytest.fail(f"the end-to-end test needs opentelemetry-exporter-otlp-proto-http in the test venv: {error}")
    return OTLPSpanExporter(endpoint=endpoint)


class Exported:
    """One real turn's spans: as this process exported them, and as Phoenix stored them."""

    def __init__(self, ours: list[ReadableSpan], theirs: list[dict[str, Any]]) -> None:
        self.ours = ours
        self.theirs = theirs

    def named(self, prefix: str) -> list[dict[str, Any]]:
        return [s for s in self.theirs if s["name"].startswith(prefix)]

    def turn(self) -> dict[str, Any]:
        (turn,) = self.named("invoke_agent")
        return turn


def export_through(phoenix: Phoenix, drive: Callable[[anthropic.Anthropic, Any], None]) -> Exported:
    """Run `drive(client, loopback)` instrumented, export its spans over OTLP to Phoenix, read them back."""
    mirror = InMemorySpanExporter()
    resource = Resource.create({"service.name": "cma-tracing-e2e", "openinference.project.name": PROJECT})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(otlp_exporter(f"{phoenix.url}/v1/traces")))
    provider.add_span_processor(SimpleSpanProcessor(mirror))
    cma_tracing.instrument(tracer_provider=provider)
    try:
        with running_server() as loopback:
            client = anthropic.Anthropic(
                base_url=loopback.base_url, api_key="test-key", max_retries=0, open_telemetry=False
            )
            drive(client, loopback)
    finally:
        cma_tracing.uninstrument()
    assert provider.force_flush(10_000), "the OTLP exporter did not flush within 10 s"
    provider.shutdown()
    ours = list(mirror.get_finished_spans())
    ids = {format(s.context.span_id, "016x") for s in ours}
    deadline = time.monotonic() + SPANS_TIMEOUT_S
    theirs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        theirs = [s for s in phoenix.spans(PROJECT) if s["context"]["span_id"] in ids]
        if len(theirs) == len(ids):
            return Exported(ours, theirs)
        time.sleep(0.2)
    pytest.fail(f"Phoenix had {len(theirs)} of our {len(ids)} spans after {SPANS_TIMEOUT_S:.0f} s:\n{phoenix.log()}")


@pytest.fixture(scope="module")
def exported(phoenix: Phoenix) -> Exported:
    """Drive a turn with a tool call and two model requests through the SDK, export it, read it back from Phoenix."""

    def drive(client: anthropic.Anthropic, loopback: Any) -> None:
        loopback.set_session("sesn_e2e")
        client.beta.sessions.retrieve("sesn_e2e")  # learns the agent: name and model
        queue_turn(loopback, "sesn_e2e", "sevt_e2e_user")
        client.beta.sessions.events.send("sesn_e2e", events=[message("what is 2+2?")])
        for event in client.beta.sessions.events.stream("sesn_e2e"):
            if event.type == "session.status_idle" and event.stop_reason.type != "requires_action":
                break

    found = export_through(phoenix, drive)
    assert len(found.ours) == 4, [s.name for s in found.ours]  # invoke_agent, chat, execute_tool, chat
    return found


def test_phoenix_stores_every_span_with_its_ids_and_names(exported: Exported) -> None:
    ours = {
        format(s.context.span_id, "016x"): (
            s.name,
            format(s.context.trace_id, "032x"),
            format(s.parent.span_id, "016x") if s.parent else None,
        )
        for s in exported.ours
    }
    theirs = {s["context"]["span_id"]: (s["name"], s["context"]["trace_id"], s["parent_id"]) for s in exported.theirs}
    assert theirs == ours


def test_the_turn_is_the_root_with_chat_and_execute_tool_children(exported: Exported) -> None:
    turn = exported.turn()
    assert turn["name"] == "invoke_agent loopback-agent-bash"
    assert turn["parent_id"] is None
    trace_id, turn_id = turn["context"]["trace_id"], turn["context"]["span_id"]
    chats, tools = exported.named("chat "), exported.named("execute_tool ")
    assert [c["name"] for c in chats] == ["chat claude-haiku-4-5"] * 2
    assert [t["name"] for t in tools] == ["execute_tool bash"]
    for child in chats + tools:
        assert child["parent_id"] == turn_id, child["name"]
        assert child["context"]["trace_id"] == trace_id, child["name"]
    assert turn["status_code"] == "OK"


def test_our_attributes_come_through(exported: Exported) -> None:
    turn = exported.turn()["attributes"]
    assert turn["gen_ai.operation.name"] == "invoke_agent"
    assert turn["gen_ai.agent.name"] == "loopback-agent-bash"
    assert turn["gen_ai.request.model"] == "claude-haiku-4-5"
    assert turn["gen_ai.usage.input_tokens"] == 200  # two model requests of 100
    assert turn["gen_ai.usage.output_tokens"] == 20
    assert turn["anthropic.turn.stop_reason"] == "end_turn"
    assert turn["anthropic.turn.tool_calls"] == 1
    assert turn["anthropic.turn.tool_names"] == ["bash"]
    assert turn["anthropic.session.id"] == turn["gen_ai.conversation.id"] == "sesn_e2e"
    for chat in exported.named("chat "):
        assert chat["attributes"]["gen_ai.usage.input_tokens"] == 100
        assert chat["attributes"]["gen_ai.usage.output_tokens"] == 10
    (tool,) = exported.named("execute_tool ")
    assert tool["attributes"]["gen_ai.tool.name"] == "bash"
    assert tool["attributes"]["gen_ai.tool.type"] == "extension"


def test_phoenix_classifies_the_spans_as_agent_llm_and_tool(exported: Exported) -> None:
    kinds = {s["name"]: s["span_kind"] for s in exported.theirs}
    assert kinds == {
        "invoke_agent loopback-agent-bash": "AGENT",
        "chat claude-haiku-4-5": "LLM",
        "execute_tool bash": "TOOL",
    }


def test_phoenix_reads_model_tokens_and_session_from_the_gen_ai_attributes(exported: Exported) -> None:
    """What Phoenix's UI shows: its OpenInference attributes, derived from our gen_ai.* ones."""
    for chat in exported.named("chat "):
        assert chat["attributes"]["llm.model_name"] == "claude-haiku-4-5"
        assert chat["attributes"]["llm.provider"] == "anthropic"
        assert chat["attributes"]["llm.token_count.prompt"] == 100
        assert chat["attributes"]["llm.token_count.completion"] == 10
    (tool,) = exported.named("execute_tool ")
    assert tool["attributes"]["tool.name"] == "bash"
    assert exported.turn()["attributes"]["session.id"] == "sesn_e2e"


@pytest.fixture(scope="module")
def units_of_work(phoenix: Phoenix) -> Exported:
    """An outcome (two evaluation cycles) and a workflow run (two phases) through the SDK, read back from Phoenix."""
    from cma_tracing.demo.loopback import Event
    from tests.support.core import synthetic

    def drive(client: anthropic.Anthropic, loopback: Any) -> None:
        for session_id, name in (
            ("sesn_e2e_outcome", "outcome_revise_then_satisfied"),
            ("sesn_e2e_run", "workflow_run_completed"),
        ):
            events = synthetic(name)
            loopback.queue_send(session_id, [events[0]["id"]])
            loopback.queue_stream(session_id, [Event(e) for e in events])
            first = {k: v for k, v in events[0].items() if k not in ("id", "processed_at", "outcome_id")}
            client.beta.sessions.events.send(session_id, events=[first])  # type: ignore[list-item]
            with client.beta.sessions.events.stream(session_id) as stream:
                list(stream)

    return export_through(phoenix, drive)


def test_phoenix_stores_evaluation_workflow_and_phase_spans_in_their_trees(units_of_work: Exported) -> None:
    by_id = {s["context"]["span_id"]: s for s in units_of_work.theirs}
    evaluations = units_of_work.named("evaluation outcome")
    labels = sorted(e["attributes"]["gen_ai.evaluation.score.label"] for e in evaluations)
    assert labels == ["needs_revision", "satisfied"]
    assert all(by_id[e["parent_id"]]["name"].startswith("invoke_agent") for e in evaluations)
    (run,) = units_of_work.named("invoke_workflow")
    assert run["attributes"]["anthropic.workflow_run.result"] == "completed"
    phases = units_of_work.named("workflow_phase ")
    assert sorted(p["name"] for p in phases) == [
        "workflow_phase Read the contracts",
        "workflow_phase Reconcile the findings",
    ]
    assert all(p["parent_id"] == run["context"]["span_id"] for p in phases)
    readers = units_of_work.named("invoke_agent contract-reader")
    assert len(readers) == 3 and all(
        by_id[r["parent_id"]]["name"] == "workflow_phase Read the contracts" for r in readers
    )


def test_how_phoenix_classifies_evaluation_and_workflow_spans(units_of_work: Exported) -> None:
    """Phoenix derives its span kind from `gen_ai.operation.name`; the README's table says what it makes of ours."""
    kinds = {s["name"].split(" ")[0]: s["span_kind"] for s in units_of_work.theirs}
    assert kinds == PHOENIX_KINDS, kinds


#: What Phoenix shows for each of our operations (measured with the Phoenix `scripts/phoenix_env.py` installs).
PHOENIX_KINDS = {
    "invoke_agent": "AGENT",
    "chat": "LLM",
    "execute_tool": "TOOL",
    "evaluation": "UNKNOWN",  # no OpenInference kind is derived from these operations (yet)
    "invoke_workflow": "UNKNOWN",
    "workflow_phase": "UNKNOWN",
}
