"""`cma-tracing demo`: the real SDK against the loopback CMA server, traced, shown as a tree, optionally exported."""

from __future__ import annotations

import time
from typing import Optional, Sequence

import anthropic
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rich.console import Console

import cma_tracing

from .exporting import plural
from .loopback import running_server
from .render import fit_width, render
from .scenarios import REAL_SPEED, SCENARIOS

TITLE = "Turns traced (a child's line: its start after its parent's, its duration)"
SPEED_NOTE = (
    "Durations are real, from scripted delays on real HTTP; the real recording plays\n"
    f"at {REAL_SPEED:g}× its speed, so its durations are 1/{REAL_SPEED:g} of what the API took."
)


def run_demo(
    console: Console, capture_content: bool = True, memory: Optional[InMemorySpanExporter] = None
) -> tuple[int, Sequence[ReadableSpan]]:
    """Run every scenario, print the traces; returns the number of turns traced and the spans (to export). The
    finished spans are kept in `memory` (a fresh exporter unless one is given)."""
    provider = TracerProvider(resource=Resource.create({"service.name": "cma-tracing-demo"}))
    memory = memory if memory is not None else InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    cma_tracing.instrument(tracer_provider=provider, capture_content=capture_content)
    started = time.monotonic()
    try:
        with running_server() as server:
            client = anthropic.Anthropic(
                base_url=server.base_url, api_key="demo-key", max_retries=0, open_telemetry=False
            )
            fit_width(console)
            console.print("[bold]cma-tracing demo[/]: the real anthropic SDK against a loopback CMA server at")
            console.print(f"  {server.base_url}", soft_wrap=True, highlight=False)  # a URL is never broken
            for number, scenario in enumerate(SCENARIOS, 1):
                with console.status(f"[{number}/{len(SCENARIOS)}] {scenario.title} ..."):
                    began = time.monotonic()
                    scenario.run(client, server)
                console.print(
                    f"  [green]done[/] [{number}/{len(SCENARIOS)}] {scenario.title} ({time.monotonic() - began:.1f} s)"
                )
    finally:
        cma_tracing.uninstrument()
    console.print()
    turns = render(memory.get_finished_spans(), console, title=TITLE)
    spans = memory.get_finished_spans()
    provider.shutdown()
    console.print(f"\n{plural(turns, 'turn')}, {plural(len(spans), 'span')} in {time.monotonic() - started:.1f} s")
    console.print(SPEED_NOTE)
    return turns, spans
