"""`cma-tracing`: `demo` (see it work, no account, no network) and `replay FILE` (trace recorded sessions)."""

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
    return _replay(console, args.file, args.session_id, args.otlp_endpoint, args.content)


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
