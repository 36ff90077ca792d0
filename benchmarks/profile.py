"""One benchmark variant's slices, over and over, for a sampling profiler to look inside the replay (where the
cache effects of pydantic's parsing are part of our cost) rather than at our code in isolation.

    py-spy record --format speedscope -o profile.json -- \
        .venv/bin/python -m benchmarks.profile --variant "no-op providers"
    .venv/bin/python -m benchmarks.profile --variant "everything on" --pyinstrument

Variants and patterns are named as `benchmarks.replay` prints them.
"""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

from .replay import Drop, slice_seconds, variants
from .workload import LONG_LIVED, PATTERNS


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="everything on")
    parser.add_argument("--pattern", default=LONG_LIVED, choices=PATTERNS)
    parser.add_argument("--slices", type=int, default=60)
    parser.add_argument("--pyinstrument", action="store_true", help="profile with pyinstrument and print its tree")
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
