"""Before and after in one process: a change's cost, paired slice by slice against the code it replaces.

`python -m benchmarks.ab --before REV` extracts the package as it is at git revision REV into a temporary folder,
imports it under another name beside the working tree's, and replays the benchmark's slices through both (and the
bare SDK), the same slice of each back to back in a rotating order, per mode and app pattern. It prints the median
over slices of (after - before) in µs per event and of after / before: a change is kept when it measures better.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import io
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any, Optional, Sequence

from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NoOpTracerProvider

import cma_tracing

from .replay import Drop, RecordingNoOpTracer, clock
from .workload import (
    EVENTS_PER_TURN,
    LONG_LIVED,
    PATTERNS,
    PLAIN_TURNS,
    SLICE_EVENTS,
    SLICE_TAG,
    Replay,
    slice_bodies,
    slice_turns,
)

ROOT = Path(__file__).resolve().parent.parent
BEFORE = "cma_tracing_before"


def extract(rev: str, into: Path) -> Path:
    """The package at `rev`, as `into/src/cma_tracing`; returns `into/src`."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "src/cma_tracing"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def load_before(rev: str, into: Path) -> ModuleType:
    """The package at `rev`, importable as `cma_tracing_before` (its own imports are relative)."""
    (extract(rev, into) / "cma_tracing").rename(into / BEFORE)
    sys.path.insert(0, str(into))
    return importlib.import_module(BEFORE)


def seconds(
    module: Optional[ModuleType], options: dict[str, Any], pattern: str, session_id: str, plain_only: bool = False
) -> float:
    if module is not None:
        module.instrument(**options)
    replay = Replay()
    replay.load(slice_bodies(SLICE_TAG, pattern, plain_only))
    started = clock()
    for _ in replay.events(session_id):
        pass
    elapsed = clock() - started
    if module is not None:
        module.uninstrument()
    return elapsed


def parsed_turns(plain_only: bool = False) -> list[list[Any]]:
    """One slice's turns as the SDK parses them."""
    import pydantic
    from anthropic.types.beta.sessions import BetaManagedAgentsStreamSessionEvents

    adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(BetaManagedAgentsStreamSessionEvents)
    return [[adapter.validate_python(e) for e in turn] for turn in slice_turns(SLICE_TAG, plain_only)]


def isolated_seconds(module: ModuleType, mode: str, pattern: str, turns: list[list[Any]], session_id: str) -> float:
    """Our code alone on parsed events (the proxy, the registry and the tracker): `module`'s, in `mode` with spans
    that record and do nothing (or no-op ones), read in `pattern`."""
    telemetry_module = importlib.import_module(module.__name__ + ".instrumentation.telemetry")
    try:
        registry_module = importlib.import_module(module.__name__ + ".instrumentation.registry")
    except ImportError:  # revisions before the core's split called it `sessions`
        registry_module = importlib.import_module(module.__name__ + ".instrumentation.sessions")
    streams_module = importlib.import_module(module.__name__ + ".patchers.streams")
    if mode == "no-op":
        telemetry = telemetry_module.Telemetry(NoOpTracerProvider().get_tracer("ab"))
    else:
        telemetry = telemetry_module.Telemetry(RecordingNoOpTracer(), child_spans=mode == "everything")
    registry = registry_module.SessionRegistry(telemetry, orphan_timeout_s=300)
    streams = [[e for turn in turns for e in turn]] if pattern == LONG_LIVED else turns
    traced = streams_module.TracedStream
    started = clock()
    for events in streams:
        tracker = registry.acquire(session_id, stream=True)
        # Before the split the tracker itself was told how its stream ended.
        finished = (
            registry.stream_finished(tracker) if hasattr(registry, "stream_finished") else tracker.stream_finished
        )
        for _ in traced(iter(events), tracker.on_event, finished):
            pass
    elapsed = clock() - started
    registry.shutdown()
    return elapsed


def isolated(before: ModuleType, slices: int, modes: Sequence[str], plain_only: bool = False) -> None:
    turns = parsed_turns(plain_only)
    events = sum(len(turn) for turn in turns)
    print(f"isolated (parsed events, spans that record and do nothing): {slices} paired runs of {events} events")
    for pattern in PATTERNS:
        for mode in modes:
            runs: dict[str, list[float]] = {"before": [], "after": []}
            contenders = [("before", before), ("after", cma_tracing)]
            for n in range(slices + 1):
                for name, module in contenders[n % 2 :] + contenders[: n % 2]:
                    runs[name].append(isolated_seconds(module, mode, pattern, turns, f"sesn_iso_{n}"))
            runs = {name: times[1:] for name, times in runs.items()}
            per = 1e6 / events
            print(
                f"{pattern:<22} {mode:<11} before {statistics.median(runs['before']) * per:5.2f}, "
                f"after {statistics.median(runs['after']) * per:5.2f} µs/event; after - before "
                f"{statistics.median(a - b for a, b in zip(runs['after'], runs['before'])) * per:+6.3f} µs/event, "
                f"after / before {statistics.median(a / b for a, b in zip(runs['after'], runs['before'])):.4f}",
                flush=True,
            )


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", default="HEAD", help="the git revision to compare the working tree against")
    parser.add_argument("--slices", type=int, default=60, help="paired slices per mode and pattern")
    parser.add_argument("--mode", action="append", help="only these modes (everything, turn-spans, no-op)")
    parser.add_argument(
        "--isolated", action="store_true", help="our code alone, on parsed events, instead of the replays"
    )
    parser.add_argument(
        "--plain", action="store_true", help="plain turns only (no outcome, no workflow run): for older revisions"
    )
    args = parser.parse_args(argv)
    events = PLAIN_TURNS * EVENTS_PER_TURN if args.plain else SLICE_EVENTS
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(Drop())
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    modes: dict[str, dict[str, Any]] = {
        "everything": {"tracer_provider": tracer_provider, "meter_provider": meter_provider},
        "turn-spans": {"tracer_provider": tracer_provider, "meter_provider": NoOpMeterProvider(), "child_spans": False},
        "no-op": {"tracer_provider": NoOpTracerProvider(), "meter_provider": NoOpMeterProvider()},
    }
    chosen = {name: options for name, options in modes.items() if not args.mode or name in args.mode}
    with tempfile.TemporaryDirectory() as tmp:
        before = load_before(args.before, Path(tmp))
        if args.isolated:
            isolated(before, args.slices * 2, list(chosen), args.plain)
            return 0
        print(f"after (working tree) vs before ({args.before}), {args.slices} paired slices of {events} events")
        for pattern in PATTERNS:
            for mode, options in chosen.items():
                runs: dict[str, list[float]] = {"bare": [], "before": [], "after": []}
                contenders = [("bare", None), ("before", before), ("after", cma_tracing)]
                for n in range(args.slices + 1):
                    if n % 10 == 0:
                        gc.collect()
                    order = contenders[n % 3 :] + contenders[: n % 3]
                    for name, module in order:
                        runs[name].append(seconds(module, options, pattern, f"sesn_ab_{mode}_{n}", args.plain))
                runs = {name: times[1:] for name, times in runs.items()}  # the first was a warm-up
                per = 1e6 / events
                diff = statistics.median(a - b for a, b in zip(runs["after"], runs["before"])) * per
                ratio = statistics.median(a / b for a, b in zip(runs["after"], runs["before"]))
                before_over = statistics.median(b - z for b, z in zip(runs["before"], runs["bare"])) * per
                after_over = statistics.median(a - z for a, z in zip(runs["after"], runs["bare"])) * per
                print(
                    f"{pattern:<22} {mode:<11} over bare: before {before_over:+6.2f}, after {after_over:+6.2f}"
                    f" µs/event; after - before {diff:+6.2f} µs/event, after / before {ratio:.4f}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
