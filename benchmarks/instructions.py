"""Instructions per event under valgrind's cachegrind: the replay's figures without the machine's noise.

    .venv/bin/python -m benchmarks.instructions                  # bare, no-op and both modes, both patterns
    .venv/bin/python -m benchmarks.instructions --before HEAD    # and the same for the package at HEAD
    .venv/bin/python -m benchmarks.instructions --after REV --before REV~1   # two commits, the tree left free to edit

On a shared machine the replay's CPU time moves by several µs/event from slice to slice, so a change worth less than
a µs/event needs hundreds of paired slices to show (`benchmarks.ab`), and may not show at all. Instructions executed
hardly move: each variant runs `--slices` slices in its own process under `valgrind --tool=cachegrind` (hash seed
fixed, address space randomization off), once more with none, and the difference is divided by the events. Three
runs of the same code differ by under 0.01% of the replay's instructions (about 100 per event; with randomization
on, ten times as much). The package at another revision is imported from another folder, which moves things about:
there, code that did not change has differed by up to 500 instructions per event (0.07%).

Where objects land moves a count too, and not only between revisions: CPython's method cache is indexed by an
attribute name's address, so which hot (type, name) pairs collide in it changes with everything allocated before
them, and a change that runs fewer bytecodes has counted 2,000 instructions per event more. `--layouts K` runs each
process K times, each started from code of a different size (which moves where the modules' names land), and
prints the median over the K layouts (with `--before`, of the K paired differences, and their range): a change is a
finding only where the range stays on one side of zero.

What it cannot say is time: valgrind hides CPU features, so the SDK's parsing (Rust, SIMD) runs other code paths
there than on the machine, and an instruction of our Python costs more time than one of pydantic's. Read our
instructions over bare as our own work, and the before/after difference as a change's; the µs figures and the
ratios to the floor are `make bench`'s, except that ours and OpenTelemetry's are both Python: *ours on top* of the
floor against *OpenTelemetry's own* compares like with like.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Sequence

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

import cma_tracing

from .ab import ROOT, extract
from .replay import BARE, EVERYTHING, FLOOR_BARE, MODES, NO_OP, TURN_SPANS, Drop, slice_events, variants
from .workload import PATTERNS, SLICE_EVENTS

VARIANTS = (BARE, NO_OP, TURN_SPANS, EVERYTHING)
FLOORS = dict(MODES)  # each mode's floor: the OpenTelemetry calls it makes, made with none of our code
_SUMMARY = re.compile(r"^summary:\s+(\d+)", re.MULTILINE)


def child(variant: str, pattern: str, slices: int) -> None:
    """In the process valgrind runs: one variant's warm-up slice, then `slices` more."""
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(Drop())
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    chosen = {v.key: v for v in variants(tracer_provider, meter_provider)}[(variant, pattern)]
    # Instrumented once for all the slices, unlike the replay (which does it per slice, outside its timing): so the
    # process without slices subtracts it, and the count is what the events cost.
    if chosen.instrument is not None:
        cma_tracing.instrument(**chosen.instrument)
    for n in range(slices + 1):
        count = sum(1 for _ in slice_events(chosen, f"sesn_instructions_{n}"))
        assert count == SLICE_EVENTS, count


def _padded(layout: int) -> str:
    """What a process runs for layout `layout` > 0: the child, started from code that carries `layout` x 40 string
    constants of its own. Compiling them moves where the modules' names land (objects kept alive at run time do not:
    the interned names' addresses did not move for any of those tried)."""
    constants = ", ".join(repr(f"_layout_{i}") for i in range(layout * 40))
    return f"_layout = ({constants},)\nimport runpy\nrunpy.run_module('benchmarks.instructions', run_name='__main__')"


def instructions(src: Optional[str], variant: str, pattern: str, slices: int, layout: int = 0) -> int:
    """Instructions valgrind counted for a process that replays `slices` slices (after its imports and warm-up),
    started in layout `layout` (0: as `python -m` starts it)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cachegrind.out"
        command = ["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}"]
        if shutil.which("setarch"):
            command = ["setarch", platform.machine(), "-R", *command]  # the same addresses, so the same hashing
        start = ["-c", _padded(layout)] if layout else ["-m", "benchmarks.instructions"]
        command += [sys.executable, *start, "--child", variant, pattern, str(slices)]
        # The package at the revision asked for goes ahead of the working tree's.
        path = os.pathsep.join([src, str(ROOT)] if src else [str(ROOT)])
        env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": path}
        subprocess.run(command, check=True, cwd=ROOT, env=env, capture_output=True)
        found = _SUMMARY.search(out.read_text())
        if found is None:
            raise RuntimeError(f"no summary in cachegrind's output for {variant!r}, {pattern!r}")
        return int(found.group(1))


def per_event(
    src: Optional[str], variant: str, pattern: str, slices: int, pool: ThreadPoolExecutor, layouts: int = 1
) -> list[float]:
    """Instructions per event the slices add, one figure per layout."""
    runs = [
        (
            pool.submit(instructions, src, variant, pattern, slices, n),
            pool.submit(instructions, src, variant, pattern, 0, n),
        )
        for n in range(layouts)
    ]
    return [(with_slices.result() - without.result()) / (slices * SLICE_EVENTS) for with_slices, without in runs]


def _range(values: Sequence[float]) -> str:
    """`median (min to max)` of paired differences, or just the one."""
    if len(values) == 1:
        return f"{values[0]:+.0f}"
    return f"{statistics.median(values):+.0f} ({min(values):+.0f} to {max(values):+.0f})"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", help="also count the package at this git revision, and print the difference")
    parser.add_argument("--after", help="count the package at this git revision instead of the working tree's")
    parser.add_argument("--slices", type=int, default=4, help="slices per process (default 4)")
    parser.add_argument("--variant", action="append", choices=VARIANTS, help="only these (bare SDK is always run)")
    parser.add_argument("--pattern", action="append", choices=PATTERNS, help="only these app patterns")
    parser.add_argument(
        "--floors", action="store_true", help="also count each mode's floor, and print ours on top of OpenTelemetry"
    )
    parser.add_argument(
        "--layouts", type=int, default=1, help="run each process in this many layouts, and print medians"
    )
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "PATTERN", "SLICES"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return 0
    if shutil.which("valgrind") is None:
        print("benchmarks.instructions: valgrind is not installed (apt install valgrind)", file=sys.stderr)
        return 2
    chosen = [v for v in VARIANTS[1:] if not args.variant or v in args.variant]
    patterns = args.pattern or list(PATTERNS)
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        before = str(extract(args.before, Path(tmp) / "before")) if args.before else None
        now = str(extract(args.after, Path(tmp) / "after")) if args.after else None
        layouts = max(1, args.layouts)
        median = statistics.median

        def count(src: Optional[str], variant: str, pattern: str) -> list[float]:
            return per_event(src, variant, pattern, args.slices, pool, layouts)

        print(
            f"instructions per event, {args.slices} slices per process, counted by cachegrind"
            + (f"; medians over {layouts} layouts" if layouts > 1 else "")
        )
        header = "| pattern                | variant          |   after | over bare |"
        header += "  before | after - before |" if before else ""
        print(header)
        print(re.sub(r"[^|]", "-", header))
        loops: dict[str, list[float]] = {}  # the floor's loop making no call, per pattern
        for pattern in patterns:
            bare = count(now, BARE, pattern)
            blank = f"{'':9}|{'':16}|" if before else ""
            print(f"| {pattern:<22} | {BARE:<16} | {median(bare):7.0f} | {'':9} |{blank}", flush=True)
            for variant in chosen:
                after = count(now, variant, pattern)
                over = [a - b for a, b in zip(after, bare)]
                row = f"| {pattern:<22} | {variant:<16} | {median(after):7.0f} | {median(over):+9.0f} |"
                if before:
                    earlier = count(before, variant, pattern)
                    row += f" {median(earlier):7.0f} | {_range([a - e for a, e in zip(after, earlier)]):>14} |"
                print(row, flush=True)
                if args.floors and variant in FLOORS:
                    floor = count(now, FLOORS[variant], pattern)
                    if pattern not in loops:
                        loops[pattern] = count(now, FLOOR_BARE, pattern)
                    own = [f - loop for f, loop in zip(floor, loops[pattern])]
                    on_top = [o - w for o, w in zip(over, own)]
                    ratio = [a / (b + w) for a, b, w in zip(after, bare, own)]
                    print(
                        f"|   its floor: OpenTelemetry's own {median(own):+.0f}; ours on top {median(on_top):+.0f} per "
                        f"event, {median(ratio):.4f}x the floor",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
