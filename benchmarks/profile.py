"""One benchmark variant's slices, over and over, for a sampling profiler to look inside the replay (where the
cache effects of pydantic's parsing are part of our cost) rather than at our code in isolation.

    py-spy record --format speedscope -o profile.json -- \
        .venv/bin/python -m benchmarks.profile --variant "no-op providers"
    .venv/bin/python -m benchmarks.profile --variant "everything on" --pyinstrument
    .venv/bin/python -m benchmarks.profile --variant "turn spans only" --opcodes

`--opcodes` counts instead of sampling: the bytecodes each function runs per event (every opcode traced, so slow,
but the same on every run and every machine, where samples of a change worth a µs/event drown in the noise). It
says which of our functions the rest goes to, next to OpenTelemetry's for the same spans; an opcode is not a unit
of time (a call into C costs many), so `benchmarks.instructions` remains the judge of a change.

Variants and patterns are named as `benchmarks.replay` prints them.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path
from types import FrameType
from typing import Any, Optional, Sequence

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

import cma_tracing

from .replay import Drop, Variant, slice_events, slice_seconds, variants
from .workload import LONG_LIVED, PATTERNS, SLICE_EVENTS

#: Where a function's code lives, by the first of these its file's path holds.
PARTS = (("cma_tracing", "ours"), ("opentelemetry", "OpenTelemetry"), ("anthropic", "SDK"), ("pydantic", "SDK"))


def part(filename: str) -> str:
    return next((name for marker, name in PARTS if marker in filename), "other")


def opcodes(variant: Variant, slices: int) -> dict[tuple[str, str], float]:
    """Bytecodes run per event by each function, as (`part:file`, qualified name), over `slices` slices after one
    to warm up; the instrumentation is set up once, outside the count."""
    if variant.instrument is not None:
        cma_tracing.instrument(**variant.instrument)
    try:
        sum(1 for _ in slice_events(variant, "sesn_opcodes_warm"))
        counts: Counter[Any] = Counter()

        def trace(frame: FrameType, event: str, arg: Any) -> Any:
            frame.f_trace_opcodes = True
            code = frame.f_code

            def count(frame: FrameType, event: str, arg: Any) -> Any:
                if event == "opcode":
                    counts[code] += 1
                return count

            return count

        sys.settrace(trace)
        try:
            events = sum(sum(1 for _ in slice_events(variant, f"sesn_opcodes_{n}")) for n in range(slices))
        finally:
            sys.settrace(None)
    finally:
        if variant.instrument is not None:
            cma_tracing.uninstrument()
    assert events == slices * SLICE_EVENTS, events
    out: dict[tuple[str, str], float] = defaultdict(float)
    for code, n in counts.items():
        where = f"{part(code.co_filename)}:{Path(code.co_filename).name}"
        out[(where, getattr(code, "co_qualname", code.co_name))] += n / events
    return out


def print_opcodes(variant: Variant, slices: int, top: int) -> None:
    per_function = opcodes(variant, slices)
    parts: dict[str, float] = defaultdict(float)
    for (where, _), n in per_function.items():
        parts[where.split(":")[0]] += n
    print(f"{variant.name} ({variant.pattern}): bytecodes per event, {slices} slices")
    print("  " + ", ".join(f"{name} {n:.1f}" for name, n in sorted(parts.items(), key=lambda kv: -kv[1])))
    ranked = sorted(per_function.items(), key=lambda kv: -kv[1])
    shown = [(k, n) for k, n in ranked if k[0].startswith(("ours", "OpenTelemetry"))][:top]
    for (where, name), n in shown:
        print(f"  {n:7.1f}  {where}:{name}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="everything on")
    parser.add_argument("--pattern", default=LONG_LIVED, choices=PATTERNS)
    parser.add_argument("--slices", type=int, default=60)
    parser.add_argument("--pyinstrument", action="store_true", help="profile with pyinstrument and print its tree")
    parser.add_argument("--opcodes", action="store_true", help="count each function's bytecodes per event instead")
    parser.add_argument("--top", type=int, default=30, help="functions shown with --opcodes (ours and OpenTelemetry's)")
    args = parser.parse_args(argv)
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(Drop())
    chosen = [
        v
        for v in variants(tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()]))
        if v.name == args.variant and v.pattern == args.pattern
    ]
    if not chosen:
        parser.error(f"no variant {args.variant!r} in {args.pattern!r}")
    variant = chosen[0]
    if args.opcodes:
        print_opcodes(variant, min(args.slices, 4), args.top)
        return 0
    profiler = None
    if args.pyinstrument:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0002)
        profiler.start()
    seconds = sum(slice_seconds(variant, f"sesn_profile_{n}") for n in range(args.slices))
    if profiler is not None:
        profiler.stop()
        print(profiler.output_text(unicode=True, show_all=False))
    print(f"{variant.name} ({variant.pattern}): {args.slices} slices in {seconds:.2f} s CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
