"""SPEC §6.4 / §7: resident memory over 100,000 short turns through the instrumented client, spans dropped.

Turns are spread over many sessions so per-session state is created, dropped when the session goes idle, and
remembered only in bounded LRU maps. Prints one JSON line: RSS after the warm-up turns and at the end, in MB.
Run: `python -m benchmarks.memory --turns 100000`.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
from typing import Optional, Sequence

from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.trace import TracerProvider

import cma_tracing

from .replay import Drop
from .workload import Replay

TURNS_PER_STREAM = 10


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def short_turns(stream_index: int) -> bytes:
    """Ten 4-event turns (user.message, request start and end, idle), ids unique to this stream."""
    frames: list[bytes] = []
    for t in range(TURNS_PER_STREAM):
        tag = f"{stream_index}_{t}"
        events = [
            {
                "type": "user.message",
                "id": f"sevt_u{tag}",
                "processed_at": "2026-08-17T16:21:33.422973Z",
                "content": [{"type": "text", "text": "hi"}],
            },
            {"type": "span.model_request_start", "id": f"sevt_s{tag}", "processed_at": "2026-08-17T16:21:33.422974Z"},
            {
                "type": "span.model_request_end",
                "id": f"sevt_e{tag}",
                "processed_at": "2026-08-17T16:21:34.588658Z",
                "model_request_start_id": f"sevt_s{tag}",
                "is_error": False,
                "model_usage": {
                    "input_tokens": 10,
                    "output_tokens": 2,
                    "cache_read_input_tokens": 0,
                    "cache_creation_input_tokens": 0,
                },
            },
            {
                "type": "session.status_idle",
                "id": f"sevt_i{tag}",
                "processed_at": "2026-08-17T16:21:38.426503Z",
                "stop_reason": {"type": "end_turn"},
            },
        ]
        frames.extend(b"event: message\ndata: " + json.dumps(e).encode() + b"\n\n" for e in events)
    return b"".join(frames)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=100_000)
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--sessions", type=int, default=5_000, help="distinct session ids the turns rotate over")
    args = parser.parse_args(argv)

    provider = TracerProvider()
    provider.add_span_processor(Drop())
    instrumentor = cma_tracing.instrument(tracer_provider=provider, meter_provider=NoOpMeterProvider())
    replay = Replay()
    streams = args.turns // TURNS_PER_STREAM
    warm_streams = args.warmup // TURNS_PER_STREAM
    after_warmup = 0.0
    for i in range(streams):
        session_id = f"sesn_mem_{i % args.sessions}"
        replay.load(short_turns(i))
        # The first turn of each stream is sent first, as apps do: the send opens it, with no stream open yet, so
        # the orphan watch has the session in view too.
        replay.echo_ids = [f"sevt_u{i}_0"]
        replay.client.beta.sessions.events.send(
            session_id, events=[{"type": "user.message", "content": [{"type": "text", "text": "hi"}]}]
        )
        for _ in replay.events(session_id):
            pass
        if i + 1 == warm_streams:
            gc.collect()
            after_warmup = rss_mb()
    gc.collect()
    registry = instrumentor.registry
    result = {
        "turns": streams * TURNS_PER_STREAM,
        "rss_after_warmup_mb": round(after_warmup, 2),
        "rss_at_end_mb": round(rss_mb(), 2),
        "active_sessions": registry.active_count() if registry else -1,
        "remembered_sessions": registry.remembered_count() if registry else -1,
        "orphan_watch_entries": registry.orphan_watch_entries() if registry else -1,
    }
    result["growth_mb"] = round(result["rss_at_end_mb"] - result["rss_after_warmup_mb"], 2)
    print(json.dumps(result))
    cma_tracing.uninstrument()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
