"""`cma-tracing`: `demo` (see it work, no account, no network), `replay FILE` (trace recorded sessions),
`trace SESSION_ID` (trace a session after the fact from the API) and `serve` (the demo's loopback server).

Exit status: 0 when everything asked for was done, 1 when the work ran but fell short (an export failed, a
recording had no turn), 2 when it could not start (bad input, a bad option, an unreachable API). Every failure is
one line on stderr; `--debug` adds the traceback.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import TYPE_CHECKING, Optional, Sequence

from .version import __version__

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from rich.console import Console

#: Exit statuses.
DONE, FELL_SHORT, CANNOT_START = 0, 1, 2


class CommandError(Exception):
    """A failure the command reports in one line (its message) and exits with `status`."""

    def __init__(self, message: str, status: int = CANNOT_START) -> None:
        super().__init__(message)
        self.status = status


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    try:
        return _run(args, debug)
    except CommandError as error:
        return _fail(str(error), error.status, debug)
    except KeyboardInterrupt:
        return _fail("interrupted", 130, debug)
    except Exception as error:  # a bug of ours is still one line, with the traceback a --debug away
        return _fail(f"unexpected error: {type(error).__name__}: {error} (--debug shows where)", FELL_SHORT, debug)


def _fail(message: str, status: int, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"cma-tracing: {message}", file=sys.stderr)
    return status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cma-tracing", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    # On each command too (`cma-tracing replay FILE --debug`); SUPPRESS keeps a command from resetting the flag.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    exporting = argparse.ArgumentParser(add_help=False)
    exporting.add_argument(
        "--otlp-endpoint",
        help="export over OTLP/HTTP, e.g. http://localhost:4318 (default: OTEL_EXPORTER_OTLP_* if set)",
    )
    exporting.add_argument(
        "--otlp-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="give up on the export after this long, retries included (default: 5)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        parents=[common, exporting],
        help="drive the real SDK through recorded sessions on a loopback server, show the traces",
    )
    demo.add_argument("--no-content", action="store_true", help="do not capture message content")
    replay = commands.add_parser(
        "replay",
        parents=[common, exporting],
        help="build the traces of a recorded session (JSON, JSONL or vcrpy cassette)",
    )
    replay.add_argument("file")
    replay.add_argument(
        "--session-id", help="the session id to record (default: from the recording, else the file name)"
    )
    replay.add_argument("--content", action="store_true", help="capture message content (off by default)")
    serve = commands.add_parser(
        "serve", parents=[common], help="run the demo's loopback CMA server, with sessions to trace, until Ctrl-C"
    )
    serve.add_argument("--port", type=int, default=0, help="the port on 127.0.0.1 (default: a free one)")
    trace = commands.add_parser(
        "trace",
        parents=[common, exporting],
        help="trace a session after the fact from the API (ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL)",
    )
    trace.add_argument("session_id")
    trace.add_argument("--last", type=int, metavar="N", help="trace only the session's last N turns")
    trace.add_argument("--content", action="store_true", help="capture message content (off by default)")
    return parser


def _run(args: argparse.Namespace, debug: bool) -> int:
    try:
        from rich.console import Console
    except ImportError:
        raise CommandError("the command line needs the 'cli' extra: pip install 'cma-tracing[cli]'") from None
    endpoint = _endpoint(args) if args.command != "serve" else None
    console = Console()
    if args.command == "demo":
        from .demo.run import run_demo

        turns, spans = run_demo(console, capture_content=not args.no_content)
        exported = _export(console, spans, endpoint, args.otlp_timeout, debug)
        return DONE if turns and exported else FELL_SHORT
    if args.command == "serve":
        from .demo.serve import serve as serve_forever

        try:
            serve_forever(console, args.port)
        except OSError as error:
            raise CommandError(f"cannot serve on 127.0.0.1:{args.port}: {error.strerror or error}") from error
        return DONE
    if args.command == "trace":
        return _trace(console, args, endpoint, debug)
    return _replay(console, args, endpoint, debug)


def _endpoint(args: argparse.Namespace) -> Optional[str]:
    """The OTLP endpoint, checked before anything runs (None: no export asked for)."""
    from .demo.exporting import EndpointError, check_timeout, resolve_endpoint

    try:
        check_timeout(args.otlp_timeout)
        return resolve_endpoint(args.otlp_endpoint)
    except (EndpointError, ValueError) as error:
        raise CommandError(str(error)) from error


def _export(
    console: Console, spans: Sequence[ReadableSpan], endpoint: Optional[str], timeout: float, debug: bool
) -> bool:
    """Export `spans` when an endpoint is set and say how it went; True unless the export fell short."""
    if endpoint is None:
        return True
    from .demo.exporting import export_spans

    result = export_spans(spans, endpoint, timeout, verbose=debug)
    if result.ok:
        console.print(result.describe())
        return True
    print(f"cma-tracing: {result.describe()}", file=sys.stderr)
    return False


def _provider(service: str) -> tuple[TracerProvider, InMemorySpanExporter]:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


def _trace(console: Console, args: argparse.Namespace, endpoint: Optional[str], debug: bool) -> int:
    import os

    import anthropic

    from .after import MAX_THREAD_PAGES, trace_session
    from .demo.exporting import plural
    from .demo.render import render

    session_id, last = args.session_id, args.last
    if not os.environ.get("ANTHROPIC_API_KEY"):
        raise CommandError("ANTHROPIC_API_KEY is not set (the API key trace reads the session with)")
    if last is not None and last < 1:
        raise CommandError(f"--last {last}: give a number of turns, 1 or more")
    provider, memory = _provider("cma-tracing-trace")
    client = anthropic.Anthropic(max_retries=2)
    try:
        summary = trace_session(
            client, session_id, tracer_provider=provider, capture_content=args.content or None, last_turns=last
        )
    except anthropic.NotFoundError:
        raise CommandError(f"session {session_id} not found at {client.base_url}") from None
    except anthropic.APIStatusError as error:
        raise CommandError(f"the API answered {error.status_code} for session {session_id}: {error.message}") from error
    except anthropic.APIConnectionError as error:
        raise CommandError(f"cannot reach the API at {client.base_url}: {error}") from error
    spans = memory.get_finished_spans()
    render(spans, console, title=f"Turns of {session_id}")
    provider.shutdown()
    cut = (
        f", {plural(summary.threads_cut, 'thread')} cut at {plural(MAX_THREAD_PAGES, 'page')}"
        if summary.threads_cut
        else ""
    )
    console.print(f"\n{plural(summary.turns, 'turn')}, {plural(summary.spans, 'span')}{cut}")
    return DONE if _export(console, spans, endpoint, args.otlp_timeout, debug) else FELL_SHORT


def _replay(console: Console, args: argparse.Namespace, endpoint: Optional[str], debug: bool) -> int:
    from .demo.exporting import plural
    from .demo.render import render
    from .replay import RecordingError, load, replay

    try:
        sessions = load(args.file, args.session_id)
    except RecordingError as error:
        raise CommandError(str(error)) from error
    provider, memory = _provider("cma-tracing-replay")
    turns = replay(sessions, tracer_provider=provider, capture_content=args.content or None)
    spans = memory.get_finished_spans()
    render(spans, console, title=f"Turns in {args.file}")
    provider.shutdown()
    console.print(f"\n{plural(turns, 'turn')} from {plural(len(sessions), 'session')}, {plural(len(spans), 'span')}")
    if not turns:
        raise CommandError(f"{args.file}: its events open no turn (nothing to trace)", FELL_SHORT)
    return DONE if _export(console, spans, endpoint, args.otlp_timeout, debug) else FELL_SHORT


if __name__ == "__main__":
    sys.exit(main())
