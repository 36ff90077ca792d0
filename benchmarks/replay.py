"""SPEC §7's benchmark: 10,000 CMA events (500 turns shaped like the real recording) through the real SDK `Stream`.

Runs of every variant are interleaved round by round and reported as medians and as ratios to the bare SDK measured
in the same run, because the machine is shared and noisy. Run it with `make bench` (or
`python -m benchmarks.replay --rounds 15`).
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import pydantic
from anthropic.types.beta.sessions import BetaManagedAgentsStreamSessionEvents
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.trace import NoOpTracerProvider

import cma_tracing
from cma_tracing.instrumentation.sessions import SessionRegistry
from cma_tracing.instrumentation.telemetry import Telemetry
from cma_tracing.patchers.streams import TracedStream

from .workload import EVENTS_PER_TURN, Replay, sse_body, turn_events

TURNS = 500
EVENTS = TURNS * EVENTS_PER_TURN


class Drop(SpanProcessor):
    """Spans are built and ended by the real SDK, then dropped: the exporter's cost is not ours to measure."""

    def on_end(self, span: ReadableSpan) -> None:
        pass


@dataclass
class Variant:
    name: str
    sdk_tracing: bool
    instrument: Optional[dict[str, Any]]  # None: not instrumented


def variants(tracer_provider: TracerProvider, meter_provider: MeterProvider) -> list[Variant]:
    return [
        Variant("bare SDK (its tracing off)", False, None),
        Variant("bare SDK (its tracing on)", True, None),
        Variant("cma-tracing, everything on (SDK tracing on)", True, {"tracer_provider": tracer_provider, "meter_provider": meter_provider}),
        Variant("cma-tracing, everything on (SDK tracing off)", False, {"tracer_provider": tracer_provider, "meter_provider": meter_provider}),
        Variant("cma-tracing, no-op providers (own work)", False, {"tracer_provider": NoOpTracerProvider(), "meter_provider": NoOpMeterProvider()}),
        Variant("cma-tracing, turn spans only", False, {"tracer_provider": tracer_provider, "meter_provider": NoOpMeterProvider(), "child_spans": False}),
    ]


def replay_seconds(variant: Variant, tracer_provider: TracerProvider, body: bytes, run: int) -> float:
    """One replay of the whole workload; returns seconds. Instrumentation is set up and torn down outside the timing."""
    if variant.instrument is not None:
        cma_tracing.instrument(**variant.instrument)
    replay = Replay(open_telemetry={"tracer_provider": tracer_provider} if variant.sdk_tracing else False)
    replay.load(body)
    gc.collect()
    started = time.perf_counter()
    count = 0
    for _ in replay.events(f"sesn_bench_{run}"):
        count += 1
    elapsed = time.perf_counter() - started
    if variant.instrument is not None:
        cma_tracing.uninstrument()
    assert count == EVENTS, count
    return elapsed


def own_work_per_event_us(parsed: Sequence[Any], rounds: int) -> tuple[float, float]:
    """Our code alone, precisely: the stream proxy and tracker over already-parsed events, no-op providers, minus a
    bare iteration of the same list. Returns (µs per event, core-only events per second)."""
    noop = Telemetry(NoOpTracerProvider().get_tracer("bench"))
    proxied, bare, core = [], [], []
    for r in range(rounds):
        registry = SessionRegistry(noop, orphan_timeout_s=300)
        tracker = registry.acquire(f"sesn_own_{r}", stream=True)
        stream = TracedStream(iter(parsed), tracker.on_event, tracker.stream_finished)
        started = time.perf_counter()
        for _ in stream:
            pass
        proxied.append(time.perf_counter() - started)
        started = time.perf_counter()
        for _ in iter(parsed):
            pass
        bare.append(time.perf_counter() - started)
        registry = SessionRegistry(noop, orphan_timeout_s=300)
        tracker = registry.acquire(f"sesn_core_{r}", stream=True)
        on_event, now = tracker.on_event, time.time_ns
        started = time.perf_counter()
        for event in parsed:
            on_event(event, now())
        core.append(time.perf_counter() - started)
        registry.shutdown()
    per_event = (statistics.median(proxied) - statistics.median(bare)) / len(parsed) * 1e6
    return per_event, len(parsed) / statistics.median(core)


def otel_floor_us(tracer_provider: TracerProvider, meter_provider: MeterProvider, n: int = 20000) -> tuple[float, float]:
    """What the OpenTelemetry SDK itself costs here: one span started and ended, one histogram record (µs)."""
    tracer = tracer_provider.get_tracer("floor")
    histogram = meter_provider.get_meter("floor").create_histogram("floor", unit="s")
    attrs = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic"}
    started = time.perf_counter()
    for _ in range(n):
        tracer.start_span("chat", attributes=attrs).end()
    span_us = (time.perf_counter() - started) / n * 1e6
    started = time.perf_counter()
    for _ in range(n):
        histogram.record(0.5, attrs)
    return span_us, (time.perf_counter() - started) / n * 1e6


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds per variant (medians are reported)")
    args = parser.parse_args(argv)

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(Drop())
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    all_variants = variants(tracer_provider, meter_provider)
    bodies = [sse_body(TURNS, f"r{r}") for r in range(args.rounds)]
    results: dict[str, list[float]] = {v.name: [] for v in all_variants}
    replay_seconds(all_variants[0], tracer_provider, bodies[0], -1)  # warm-up
    for r in range(args.rounds):
        for variant in all_variants:
            results[variant.name].append(replay_seconds(variant, tracer_provider, bodies[r], r))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)

    adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(BetaManagedAgentsStreamSessionEvents)
    parsed = [adapter.validate_python(e) for t in range(TURNS) for e in turn_events(f"own{t}")]
    own_us, core_eps = own_work_per_event_us(parsed, args.rounds)
    span_us, record_us = otel_floor_us(tracer_provider, meter_provider)

    median = {name: statistics.median(times) / EVENTS * 1e6 for name, times in results.items()}
    bare_off = median["bare SDK (its tracing off)"]
    bare_on = median["bare SDK (its tracing on)"]
    print(f"\ncma-tracing benchmark: {EVENTS:,} events ({TURNS} turns x {EVENTS_PER_TURN}), {args.rounds} interleaved rounds, medians")
    print(f"python {platform.python_version()} on {platform.machine()}, {time.strftime('%Y-%m-%d')}\n")
    print(f"| {'variant':<46} | {'µs/event':>8} | {'ratio':>18} |")
    print(f"|{'-' * 48}|{'-' * 10}|{'-' * 20}|")
    for name, us in median.items():
        base, label = (bare_on, "vs bare, SDK on") if "(SDK tracing on)" in name or name == "bare SDK (its tracing on)" else (bare_off, "vs bare")
        print(f"| {name:<46} | {us:8.2f} | {us / base:6.3f}x {label:<10} |")
    print()
    print(f"own work per event (proxy + tracker, no-op providers, parsed events): {own_us:.2f} µs  (target <= 2 µs)")
    print(f"own work per event from the full replays (no-op minus bare):         {median['cma-tracing, no-op providers (own work)'] - bare_off:.2f} µs")
    print(f"core alone (tracker, no SDK, no-op providers): {core_eps:,.0f} events/s")
    print(f"OpenTelemetry SDK floor here: one span start+end {span_us:.1f} µs, one histogram record {record_us:.1f} µs")
    everything = median["cma-tracing, everything on (SDK tracing off)"]
    print(
        f"OpenTelemetry SDK's share of 'everything on': about "
        f"{(6 * span_us + 13 * record_us) / EVENTS_PER_TURN:.1f} µs/event of its {everything - bare_off:.1f} µs/event over bare "
        f"(6 spans and 13 histogram records per {EVENTS_PER_TURN}-event turn)"
    )
    targets = [
        ("own work per event <= 2 µs", own_us <= 2.0),
        ("turn spans only <= 1.05x", median["cma-tracing, turn spans only"] / bare_off <= 1.05),
        ("everything on <= 1.30x", everything / bare_off <= 1.30),
    ]
    print("\n" + "\n".join(f"{'PASS' if ok else 'MISS'}  {label}" for label, ok in targets))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
