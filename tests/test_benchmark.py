"""The benchmark measures what it says: every variant replays the whole slice (an outcome and a workflow run among
its turns), and each "OpenTelemetry alone" floor makes the very spans and metric records cma-tracing makes for the
same events in both app patterns, with none of its code running."""

from __future__ import annotations

import statistics
import subprocess
import sys
from collections import Counter, defaultdict
from typing import Any

import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import cma_tracing
from cma_tracing import ClaudeManagedAgentsInstrumentor
from benchmarks import instructions, profile
from benchmarks.floor import record_calls
from benchmarks.replay import (
    BARE,
    EVERYTHING,
    FLOOR_BARE,
    MODES,
    NO_OP,
    TURN_SPANS,
    Drop,
    Figures,
    interval,
    slice_seconds,
    variants,
    verdict,
)
from benchmarks.workload import PATTERNS, SLICE_EVENTS, SLICE_TAG, Replay, slice_bodies, slice_turns


def _telemetry() -> tuple[TracerProvider, InMemorySpanExporter, MeterProvider, InMemoryMetricReader]:
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracer_provider, exporter, MeterProvider(metric_readers=[reader]), reader


def _shape(exporter: InMemorySpanExporter) -> Counter[Any]:
    """Each span's name, kind, parent's name, attribute names and status, counted."""
    spans = exporter.get_finished_spans()
    names = {s.context.span_id: s.name for s in spans}
    return Counter(
        (
            s.name,
            s.kind,
            names.get(s.parent.span_id) if s.parent else None,
            tuple(sorted(s.attributes or {})),
            s.status.status_code,
        )
        for s in spans
    )


def _record_counts(reader: InMemoryMetricReader) -> dict[str, int]:
    data = reader.get_metrics_data()
    if data is None:
        return {}
    return {
        metric.name: sum(int(getattr(point, "count", 0)) for point in metric.data.data_points)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        if scope.scope.name != "opentelemetry-sdk"  # sdk 1.41 records its own collection duration, 1.42+ does not
        for metric in scope.metrics
    }


def test_a_slice_has_fifty_plain_turns_an_outcome_and_a_workflow_run() -> None:
    turns = slice_turns("count")
    firsts = Counter(turn[0]["type"] for turn in turns)
    assert firsts == Counter({"session.status_running": 50, "user.define_outcome": 1, "user.message": 1})
    types = {event["type"] for turn in turns for event in turn}
    assert {"span.outcome_evaluation_end", "workflow_run.phase_started", "workflow_run.status_ended"} <= types
    assert sum(len(turn) for turn in turns) == SLICE_EVENTS
    ids = [event["id"] for turn in turns for event in turn]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("child_spans", [True, False], ids=["everything on", "turn spans only"])
def test_the_floor_makes_the_same_spans_and_records_as_cma_tracing(pattern: str, child_spans: bool) -> None:
    traced_provider, traced_spans, traced_meter, traced_reader = _telemetry()
    cma_tracing.instrument(
        tracer_provider=traced_provider,
        meter_provider=traced_meter if child_spans else NoOpMeterProvider(),
        child_spans=child_spans,
    )
    try:
        assert sum(1 for _ in _replay(pattern).events("sesn_traced")) == SLICE_EVENTS
    finally:
        cma_tracing.uninstrument()

    floor_provider, floor_spans, floor_meter, floor_reader = _telemetry()
    floor = record_calls(child_spans=child_spans, metrics=child_spans, pattern=pattern)
    floor.bind(floor_provider, floor_meter if child_spans else None)
    assert sum(1 for _ in floor.events(_replay(pattern), "sesn_floor")) == SLICE_EVENTS

    assert _shape(floor_spans) == _shape(traced_spans)
    names = Counter(span.name.split(" ")[0] for span in traced_spans.get_finished_spans())
    if child_spans:
        # 52 turns; the 50 plain ones have 3 model requests and 2 tool calls each; an outcome's cycles are
        # evaluation spans; the workflow run has its two phases and four agents.
        assert names["invoke_agent"] == 52 + 4
        assert names["execute_tool"] >= 100 and names["chat"] >= 150
        assert names["evaluation"] == 2 and names["invoke_workflow"] == 1 and names["workflow_phase"] == 2
    else:
        assert names == Counter({"invoke_agent": 52})
    assert _record_counts(floor_reader) == _record_counts(traced_reader)
    assert sum(_record_counts(floor_reader).values()) == (688 if child_spans else 0)


def test_the_turn_spans_only_floor_makes_one_span_per_turn() -> None:
    """The plain turns are read as a watching process reads them: `session.status_running` opens a `resume` turn,
    which adopts the user.message that follows (one `set_attribute`: its trigger)."""
    floor = record_calls(child_spans=False, metrics=False)
    calls = Counter(what for per_event in floor.calls.values() for what, _, _ in per_event)
    assert calls["start"] == calls["end"] == calls["set_status"] == 52
    assert calls["set_attribute"] == 50


def test_every_variant_replays_the_whole_slice_and_the_figures_pair_slices() -> None:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(Drop())
    all_variants = variants(tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()]))
    assert {v.pattern for v in all_variants} == set(PATTERNS)
    results = {v.key: [slice_seconds(v, f"sesn_{v.name}")] for v in all_variants}  # each asserts the count itself
    assert all(seconds[0] > 0 for seconds in results.values())
    figures = Figures({key: [1.0, 3.0] for key in results})
    for pattern in PATTERNS:
        assert figures.floor_ratio("everything on", "OpenTelemetry alone: everything on's calls", pattern) == 1.0
        assert figures.on_top_us("turn spans only", "OpenTelemetry alone: turn spans only's calls", pattern) == 0.0


def test_a_target_is_met_or_missed_only_when_the_whole_interval_says_so() -> None:
    assert interval([2.0] * 30) == (2.0, 2.0)
    spread = [float(n % 10) for n in range(150)]  # median 4.5, values 0..9
    low, high = interval(spread)
    assert low < statistics.median(spread) < high and 0 <= low and high <= 9
    assert interval(spread) == (low, high)  # seeded: the same run prints the same interval
    assert [verdict(0.2, 0.9, 1.0), verdict(1.1, 2.0, 1.0), verdict(0.5, 1.5, 1.0)] == ["met", "MISSED", "unclear"]
    names = (BARE, EVERYTHING, TURN_SPANS, NO_OP, FLOOR_BARE, *(floor for _, floor in MODES))
    figures = Figures({key: [1.0, 2.0, 3.0] for key in [(name, p) for name in names for p in PATTERNS]})
    for pattern in PATTERNS:
        assert figures.floor_ratio_interval("everything on", "OpenTelemetry alone: everything on's calls", pattern) == (
            1.0,
            1.0,
        )
        assert figures.over_bare_interval_us("no-op providers", pattern) == (0.0, 0.0)


def _replay(pattern: str) -> Replay:
    replay = Replay()
    replay.load(slice_bodies(SLICE_TAG, pattern))
    return replay


def test_the_instruction_count_says_so_in_one_line_when_valgrind_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(instructions.shutil, "which", lambda name: None)
    assert instructions.main([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "valgrind is not installed" in err


@pytest.mark.skipif(instructions.shutil.which("valgrind") is None, reason="needs valgrind (benchmarks.instructions)")
def test_the_instruction_count_finds_our_work_over_the_bare_sdk() -> None:
    # One slice per process, under valgrind: about a minute on two cores.
    def count(variant: str) -> int:
        return instructions.instructions(None, variant, "one long-lived stream", 1)

    bare, instrumented = count("bare SDK"), count("no-op providers")
    # Our code adds instructions (two slices of ours are millions, where three runs of one process differ by under
    # 0.01%), and far fewer than the SDK's own: hundreds of thousands per event, and the process's start-up.
    assert bare * 1.0002 < instrumented < bare * 1.05


def test_each_layout_of_the_instruction_count_starts_the_same_child_from_code_of_another_size() -> None:
    """`--layouts`: the child replays its slice when started from the layout's code as when started with `-m`."""
    sources = [instructions._padded(layout) for layout in (1, 2)]
    assert len(sources[0]) < len(sources[1])
    for source in sources:
        done = subprocess.run(
            [sys.executable, "-c", source, "--child", NO_OP, "one long-lived stream", "0"],
            cwd=instructions.ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr  # the child asserts it replayed the whole slice


def test_the_bytecode_profile_finds_our_handlers_only_where_turns_are_recorded() -> None:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(Drop())
    chosen = {v.key: v for v in variants(tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()]))}

    def per_part(variant: str) -> tuple[dict[str, float], dict[tuple[str, str], float]]:
        # By file and bare function name: Python 3.10's code objects have no qualified name.
        functions: dict[tuple[str, str], float] = defaultdict(float)
        parts: dict[str, float] = defaultdict(float)
        for (where, name), n in profile.opcodes(chosen[(variant, "one long-lived stream")], 1).items():
            functions[(where, name.rsplit(".", 1)[-1])] += n
            parts[where.split(":")[0]] += n
        return parts, functions

    no_op, no_op_functions = per_part(NO_OP)
    recorded, recorded_functions = per_part(TURN_SPANS)
    # Every event goes through the tracker, and the SDK's parsing is most of the work either way.
    assert no_op_functions[("ours:session.py", "on_event")] >= 20
    assert no_op["ours"] < no_op["SDK"] and recorded["ours"] < recorded["SDK"]
    # A turn nobody records runs no handler and makes no real span; a recorded one does both.
    assert ("ours:handlers.py", "on_model_request_end") not in no_op_functions
    assert recorded_functions[("ours:handlers.py", "on_model_request_end")] > 0
    assert recorded["ours"] > no_op["ours"] and recorded["OpenTelemetry"] > 10 * no_op["OpenTelemetry"]
    assert not ClaudeManagedAgentsInstrumentor().is_instrumented_by_opentelemetry  # set up for the count only
