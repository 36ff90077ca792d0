"""`cma-tracing`: `demo` (see it work, no account, no network), `replay FILE` (trace recorded sessions) and
`trace SESSION_ID` (trace a session after the fact from the API)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Optional, Sequence

if TYPE_CHECKING:
    from rich.console import Console


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="cma-tracing", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="drive the real SDK through recorded sessions on a loopback server, show the traces"
    )
    demo.add_argument(
        "--otlp-endpoint",
        help="also export over OTLP/HTTP, e.g. http://localhost:4318 (default: OTEL_EXPORTER_OTLP_* if set)",
    )
    demo.add_argument("--no-content", action="store_true", help="do not capture message content")
    replay = commands.add_parser(
        "replay", help="build the traces of a recorded session (JSON, JSONL or vcrpy cassette)"
    )
    replay.add_argument("file")
    replay.add_argument(
        "--session-id", help="the session id to record (default: from the cassette, else the file name)"
    )
    replay.add_argument("--otlp-endpoint", help="export over OTLP/HTTP (default: OTEL_EXPORTER_OTLP_* if set)")
    replay.add_argument("--content", action="store_true", help="capture message content (off by default)")
    serve = commands.add_parser(
        "serve", help="run the demo's loopback CMA server, with sessions to trace, until Ctrl-C"
    )
    serve.add_argument("--port", type=int, default=0, help="the port on 127.0.0.1 (default: a free one)")
    trace = commands.add_parser(
        "trace", help="trace a session after the fact from the API (ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL)"
    )
    trace.add_argument("session_id")
    trace.add_argument("--last", type=int, metavar="N", help="trace only the session's last N turns")
    trace.add_argument("--otlp-endpoint", help="export over OTLP/HTTP (default: OTEL_EXPORTER_OTLP_* if set)")
    trace.add_argument("--content", action="store_true", help="capture message content (off by default)")
    args = parser.parse_args(argv)

    try:
        from rich.console import Console
    except ImportError:
        print("cma-tracing: the command line needs the 'cli' extra: pip install 'cma-tracing[cli]'", file=sys.stderr)
        return 2
    console = Console()
    if args.command == "demo":
        from .demo.run import run_demo

        return 0 if run_demo(console, args.otlp_endpoint, capture_content=not args.no_content) else 1
    if args.command == "serve":
        from .demo.serve import serve as serve_forever

        try:
            serve_forever(console, args.port)
        except OSError as error:
            print(f"cma-tracing: cannot serve on 127.0.0.1:{args.port}: {error.strerror or error}", file=sys.stderr)
            return 2
        return 0
    if args.command == "trace":
        return _trace(console, args.session_id, args.last, args.otlp_endpoint, args.content)
    return _replay(console, args.file, args.session_id, args.otlp_endpoint, args.content)


def _trace(console: Console, session_id: str, last: Optional[int], endpoint: Optional[str], content: bool) -> int:
    import os

    import anthropic
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from .after import trace_session
    from .demo.exporting import add_otlp
    from .demo.render import render

    if not os.environ.get("ANTHROPIC_API_KEY"):
        print("cma-tracing: ANTHROPIC_API_KEY is not set (the API key trace reads the session with)", file=sys.stderr)
        return 2
    if last is not None and last < 1:
        print(f"cma-tracing: --last {last}: give a number of turns, 1 or more", file=sys.stderr)
        return 2
    provider = TracerProvider(resource=Resource.create({"service.name": "cma-tracing-trace"}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    destination = add_otlp(provider, endpoint)
    client = anthropic.Anthropic(max_retries=2)
    try:
        summary = trace_session(
            client, session_id, tracer_provider=provider, capture_content=content or None, last_turns=last
        )
    except anthropic.NotFoundError:
        print(f"cma-tracing: session {session_id} not found at {client.base_url}", file=sys.stderr)
        return 2
    except anthropic.APIStatusError as error:
        print(
            f"cma-tracing: the API answered {error.status_code} for session {session_id}: {error.message}",
            file=sys.stderr,
        )
        return 2
    except anthropic.APIConnectionError as error:
        print(f"cma-tracing: cannot reach the API at {client.base_url}: {error}", file=sys.stderr)
        return 2
    render(memory.get_finished_spans(), console, title=f"Turns of {session_id}")
    provider.shutdown()
    turns = f"{summary.turns} turn" + ("" if summary.turns == 1 else "s")
    console.print(f"\n{turns}, {summary.spans} spans" + (f", exported to {destination}" if destination else ""))
    return 0


def _replay(console: Console, path: str, session_id: Optional[str], endpoint: Optional[str], content: bool) -> int:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from .demo.exporting import add_otlp
    from .demo.render import render
    from .replay import load, replay

    provider = TracerProvider(resource=Resource.create({"service.name": "cma-tracing-replay"}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    destination = add_otlp(provider, endpoint)
    sessions = load(path, session_id)
    turns = replay(sessions, tracer_provider=provider, capture_content=content or None)
    render(memory.get_finished_spans(), console, title=f"Turns in {path}")
    provider.shutdown()
    console.print(
        f"\n{turns} turns from {len(sessions)} sessions" + (f", exported to {destination}" if destination else "")
    )
    return 0 if turns else 1
