"""Issue 5's faults: a blocking exporter, a provider shut down mid-turn, interpreter exit with turns open."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Sequence

import anthropic
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import cma_tracing
from cma_tracing.demo.loopback import FakeCMAServer
from tests.support.scenarios import message, queue_turn, steps, turn_events

ROOT = Path(__file__).resolve().parent.parent


class BlockingExporter(SpanExporter):
    def __init__(self) -> None:
        self.release = threading.Event()
        self.exported: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(30)
        self.exported.extend(spans)
        return SpanExportResult.SUCCESS


def test_a_blocking_exporter_behind_a_batch_processor_never_holds_up_the_app(
    server: FakeCMAServer, loop_client: anthropic.Anthropic
) -> None:
    exporter = BlockingExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=10))
    cma_tracing.instrument(tracer_provider=provider)
    try:
        for i in range(5):
            queue_turn(server, f"sesn_block_{i}", f"sevt_u{i}")
            loop_client.beta.sessions.events.send(f"sesn_block_{i}", events=[message()])
            assert len(list(loop_client.beta.sessions.events.stream(f"sesn_block_{i}"))) == 11
        # All five turns ran while the exporter was stuck: had the app waited on an export, it could only have gone
        # on once that export gave up (30 s), and the spans would be exported by now. Order, not a stopwatch.
        assert exporter.exported == []
    finally:
        cma_tracing.uninstrument()
        exporter.release.set()
        provider.shutdown()
    turns = [s for s in exporter.exported if s.name.startswith("invoke_agent") and s.kind.name == "CLIENT"]
    assert len(turns) == 5


def test_a_tracer_provider_shut_down_mid_turn_changes_nothing_for_the_app(
    server: FakeCMAServer, loop_client: anthropic.Anthropic
) -> None:
    provider = TracerProvider()
    cma_tracing.instrument(tracer_provider=provider)
    try:
        server.queue_send("sesn_down", ["sevt_u"])
        server.queue_stream("sesn_down", steps(turn_events("sevt_u")))
        loop_client.beta.sessions.events.send("sesn_down", events=[message()])
        seen = []
        for event in loop_client.beta.sessions.events.stream("sesn_down"):
            seen.append(event.type)
            if len(seen) == 4:
                provider.shutdown()
        assert len(seen) == 11 and seen[-1] == "session.status_idle"
    finally:
        cma_tracing.uninstrument()


EXIT_APP = textwrap.dedent(
    """
    import json, sys
    import anthropic, httpx2
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    import cma_tracing

    class FileExporter(SpanExporter):
        def export(self, spans):
            with open(sys.argv[1], "a") as out:
                for span in spans:
                    out.write(json.dumps({"name": span.name, "attributes": dict(span.attributes or {})}) + "\\n")
            return SpanExportResult.SUCCESS

    provider = TracerProvider()  # made first, so its exit hook runs after ours
    provider.add_span_processor(BatchSpanProcessor(FileExporter(), schedule_delay_millis=60000))
    cma_tracing.instrument(tracer_provider=provider)

    def handle(request):
        if request.method == "POST":
            return httpx2.Response(200, json={"data": [{"type": "user.message", "id": "sevt_u", "content": []}]})
        body = b'event: message\\ndata: {"type":"session.status_running","id":"sevt_r"}\\n\\n'
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    client = anthropic.Anthropic(api_key="k", base_url="http://app.invalid", max_retries=0, open_telemetry=False,
                                 http_client=httpx2.Client(transport=httpx2.MockTransport(handle)))
    hello = {"type": "user.message", "content": [{"type": "text", "text": "hi"}]}
    client.beta.sessions.events.send("sesn_exit", events=[hello])
    for _ in client.beta.sessions.events.stream("sesn_exit"):
        pass
    print("EXITING WITH A TURN OPEN")
    """
)


def test_interpreter_exit_ends_open_turns_as_shutdown_and_a_batch_processor_exports_them(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(EXIT_APP)
    out = tmp_path / "spans.jsonl"
    done = subprocess.run([sys.executable, str(app), str(out)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "EXITING WITH A TURN OPEN" in done.stdout
    spans = [json.loads(line) for line in out.read_text().splitlines()]
    turns = [s for s in spans if s["name"] == "invoke_agent"]
    assert len(turns) == 1
    assert turns[0]["attributes"]["anthropic.turn.stop_reason"] == "shutdown"
