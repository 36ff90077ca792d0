"""The benchmark's workload: turns shaped like the real recording, an outcome and a workflow run among them, replayed
through the real SDK `Stream`.

The bytes are real SSE framing; the transport is in-process (`httpx2.MockTransport`), so what is measured is the
SDK's parsing plus whatever instrumentation adds, not a network. An app reads a session in one of two ways, and both
are measured: one long-lived stream across turns, or a stream per turn (opened, read to the idle, ended).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Iterator, Sequence

import anthropic
import httpx2

CASSETTES = Path(__file__).resolve().parent.parent / "cassettes"
REAL = CASSETTES / "real_stream_2026-08-17_bash_tool.events.jsonl"
OUTCOME = CASSETTES / "synthetic_outcome_revise_then_satisfied.jsonl"
WORKFLOW = CASSETTES / "synthetic_workflow_run_completed.jsonl"
EVENTS_PER_TURN = 20
#: Plain turns per slice; each slice also has one outcome turn and one workflow-run turn.
PLAIN_TURNS = 50

#: The tag of the benchmark's slices' ids: every slice is a new session with the very same events.
SLICE_TAG = "bench"

#: The two app patterns: how the slice's turns reach the app.
LONG_LIVED = "one long-lived stream"
PER_TURN = "a stream per turn"
PATTERNS = (LONG_LIVED, PER_TURN)


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def real_turn() -> list[dict[str, Any]]:
    return _read(REAL)


def turn_events(tag: str) -> list[dict[str, Any]]:
    """One turn of 20 events: the real 14, with a second tool round (thinking, use, request end, result, start,
    thinking) spliced in before the final answer, every id made unique with `tag`."""
    real = real_turn()
    extra = [real[4], real[5], real[6], real[7], real[8], real[4]]  # thinking, use, end, result, start, thinking
    events = real[:9] + extra + real[9:]
    assert len(events) == EVENTS_PER_TURN
    out = []
    for n, event in enumerate(copy.deepcopy(e) for e in events):  # one copy each: real[4] is there twice
        event["id"] = f"{event['id']}_{tag}_{n}"
        out.append(event)
    for end, start in _LINKS.items():
        key = "model_request_start_id" if out[end]["type"] == "span.model_request_end" else "tool_use_id"
        out[end][key] = out[start]["id"]
    return out


#: Which event each result or request end refers to, by position in the 20-event turn.
_LINKS = {6: 3, 7: 5, 11: 8, 12: 10, 16: 13}


#: The coordinator's own thread in the real recording; the synthetic turns' is renamed to it, as they are turns of
#: the same session.
PRIMARY_THREAD = "sthr_01Lw9Lx9CW2mkVWSZvzb9aNa"
_SYNTHETIC_PRIMARY = "sthr_011PRIMARY00000000000000"


def _retagged(events: list[dict[str, Any]], tag: str) -> list[dict[str, Any]]:
    """`events` with every event id (and every field that names one: a request end's start, a result's use) made
    unique with `tag`, and the coordinator's thread the real recording's."""
    ids = {event["id"]: f"{event['id']}_{tag}" for event in events}
    ids[_SYNTHETIC_PRIMARY] = PRIMARY_THREAD
    out = []
    for event in copy.deepcopy(events):
        for key, value in event.items():
            if isinstance(value, str) and value in ids:
                event[key] = ids[value]
        out.append(event)
    return out


def outcome_turn(tag: str) -> list[dict[str, Any]]:
    """An outcome worked towards in one turn: revised once, then satisfied (31 events)."""
    return _retagged(_read(OUTCOME), tag)


def workflow_turn(tag: str) -> list[dict[str, Any]]:
    """A turn that runs a workflow in two phases with four agents (39 events)."""
    return _retagged(_read(WORKFLOW), tag)


def slice_turns(tag: str, plain_only: bool = False) -> list[list[dict[str, Any]]]:
    """A slice's turns: `PLAIN_TURNS` plain ones, with the outcome turn after the first half and the workflow-run
    turn at the end (`plain_only`: the plain ones alone, to compare with code that traced neither)."""
    plain = [turn_events(f"{tag}{t}") for t in range(PLAIN_TURNS)]
    if plain_only:
        return plain
    half = PLAIN_TURNS // 2
    return [*plain[:half], outcome_turn(f"{tag}o"), *plain[half:], workflow_turn(f"{tag}w")]


SLICE_EVENTS = sum(len(turn) for turn in slice_turns("count"))


def sse(events: Sequence[dict[str, Any]]) -> bytes:
    frames = [b": connected\n\n"]
    for event in events:
        frames.append(b"event: message\ndata: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n")
    return b"".join(frames)


def sse_body(turns: int, tag: str) -> bytes:
    """`turns` plain turns in one stream."""
    return sse([event for t in range(turns) for event in turn_events(f"{tag}{t}")])


def slice_bodies(tag: str, pattern: str, plain_only: bool = False) -> list[bytes]:
    """The slice as the stream bodies the app reads, one after the other: one body, or one per turn."""
    turns = slice_turns(tag, plain_only)
    if pattern == PER_TURN:
        return [sse(turn) for turn in turns]
    return [sse([event for turn in turns for event in turn])]


class Replay:
    """A client whose `events.stream` calls return the bodies set with `load` in turn (all of them, one stream
    after the other, from `events`), and whose `events.send` echoes the sent events with the ids set in `echo_ids`
    (as the API does)."""

    def __init__(self, open_telemetry: Any = False) -> None:
        self._bodies: list[bytes] = [b""]
        self._next = 0
        self.echo_ids: list[str] = []
        transport = httpx2.MockTransport(self._handle)
        self.client = anthropic.Anthropic(
            api_key="bench",
            base_url="http://replay.invalid",
            max_retries=0,
            http_client=httpx2.Client(transport=transport),
            open_telemetry=open_telemetry,
        )

    def load(self, body: bytes | list[bytes]) -> None:
        self._bodies = [body] if isinstance(body, bytes) else list(body)
        self._next = 0

    def _handle(self, request: httpx2.Request) -> httpx2.Response:
        if request.method == "POST":
            sent = json.loads(request.content or b"{}").get("events", [])
            echoed = [{**event, "id": event_id, "processed_at": None} for event, event_id in zip(sent, self.echo_ids)]
            return httpx2.Response(200, json={"data": echoed})
        body = self._bodies[self._next % len(self._bodies)]
        self._next += 1
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    def events(self, session_id: str) -> Iterator[Any]:
        """Every loaded body, each as one `events.stream` call read to its end."""
        stream = self.client.beta.sessions.events.stream
        for _ in range(len(self._bodies)):
            yield from stream(session_id)
