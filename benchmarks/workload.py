"""The benchmark's workload: turns shaped like the real recording, replayed through the real SDK `Stream`.

The bytes are real SSE framing; the transport is in-process (`httpx2.MockTransport`), so what is measured is the
SDK's parsing plus whatever instrumentation adds, not a network.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Iterator

import anthropic
import httpx2

REAL = Path(__file__).resolve().parent.parent / "cassettes" / "real_stream_2026-08-17_bash_tool.events.jsonl"
EVENTS_PER_TURN = 20


def real_turn() -> list[dict[str, Any]]:
    return [json.loads(line) for line in REAL.read_text().splitlines() if line.strip() and not line.startswith("#")]


def turn_events(tag: str) -> list[dict[str, Any]]:
    """One turn of 20 events: the real 14, with a second tool round (thinking, use, request end, result, start,
    thinking) spliced in before the final answer, every id made unique with `tag`."""
    real = real_turn()
    extra = copy.deepcopy(
        [real[4], real[5], real[6], real[7], real[8], real[4]]
    )  # thinking, use, end, result, start, thinking
    events = real[:9] + extra + real[9:]
    assert len(events) == EVENTS_PER_TURN
    out = []
    for n, event in enumerate(copy.deepcopy(events)):
        event["id"] = f"{event['id']}_{tag}_{n}"
        out.append(event)
    for end, start in _LINKS.items():
        key = "model_request_start_id" if out[end]["type"] == "span.model_request_end" else "tool_use_id"
        out[end][key] = out[start]["id"]
    return out


#: Which event each result or request end refers to, by position in the 20-event turn.
_LINKS = {6: 3, 7: 5, 11: 8, 12: 10, 16: 13}


def sse_body(turns: int, tag: str) -> bytes:
    frames = [b": connected\n\n"]
    for t in range(turns):
        for event in turn_events(f"{tag}{t}"):
            frames.append(b"event: message\ndata: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n")
    return b"".join(frames)


class Replay:
    """A client whose every `events.stream` call returns the body set with `load`, and whose `events.send` echoes
    the sent events with the ids set in `echo_ids` (as the API does)."""

    def __init__(self, open_telemetry: Any = False) -> None:
        self._body = b""
        self.echo_ids: list[str] = []
        transport = httpx2.MockTransport(self._handle)
        self.client = anthropic.Anthropic(
            api_key="bench",
            base_url="http://replay.invalid",
            max_retries=0,
            http_client=httpx2.Client(transport=transport),
            open_telemetry=open_telemetry,
        )

    def load(self, body: bytes) -> None:
        self._body = body

    def _handle(self, request: httpx2.Request) -> httpx2.Response:
        if request.method == "POST":
            sent = json.loads(request.content or b"{}").get("events", [])
            echoed = [{**event, "id": event_id, "processed_at": None} for event, event_id in zip(sent, self.echo_ids)]
            return httpx2.Response(200, json={"data": echoed})
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=self._body)

    def events(self, session_id: str) -> Iterator[Any]:
        yield from self.client.beta.sessions.events.stream(session_id)
