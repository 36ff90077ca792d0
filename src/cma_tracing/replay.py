"""Trace sessions after the fact: build the traces of recorded events and export them like live ones.

For sessions that ran before tracing was on. Events come from a JSON list or object (`events.list`'s `data`),
JSON Lines, or a vcrpy cassette. With no arrival times on record, each event's own `processed_at` stands in for the
moment the client saw it. A cassette's sends are replayed as sends (so a turn opens where the app opened it) and
its `sessions.create` / `retrieve` responses name the agent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional, Union

from .config import options_from
from .instrumentation.agents import agent_attributes
from .instrumentation.attributes import StopReason
from .instrumentation.fields import as_list, get, timestamp_ns
from .instrumentation.session import SessionTracker
from .instrumentation.telemetry import Telemetry
from .instrumentor import telemetry_from

_STREAM = re.compile(r"/v1/sessions/([^/?#]+)/events/stream")
_EVENTS = re.compile(r"/v1/sessions/([^/?#]+)/events/?(?:[?#]|$)")
_SESSION = re.compile(r"/v1/sessions(?:/([^/?#]+))?/?(?:[?#]|$)")


@dataclass
class Step:
    """One thing the recording shows the app doing: sending events (with the API's echo), or reading events."""

    kind: str  # "send" or "read"
    events: list[Any]
    response: Any = None


@dataclass
class RecordedSession:
    session_id: str
    steps: list[Step] = field(default_factory=list)
    session: Any = None  # a `sessions.create`/`retrieve` response, for the agent's attributes


def load(path: Union[str, Path], session_id: Optional[str] = None) -> list[RecordedSession]:
    """Read a recording: `.yaml`/`.yml` as a vcrpy cassette, `.jsonl` as one event a line, anything else as JSON."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        return _from_cassette(text, session_id)
    if path.suffix == ".jsonl":
        events = [json.loads(line) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    else:
        data = json.loads(text)
        events = data.get("data", []) if isinstance(data, dict) else data
    return [RecordedSession(session_id or path.stem, [Step("read", list(events))])]


class SessionFeed:
    """One session's events fed to the core after the fact, each at its own `processed_at` (never before the event
    fed before it), since nobody saw them arrive. `replay` and `trace_session` both build traces through it."""

    def __init__(self, session_id: str, telemetry: Telemetry, session: Any = None) -> None:
        self.tracker = SessionTracker(session_id, telemetry, agent_attributes(session) if session is not None else None)
        self.last_ns = 0

    def at(self, event: Any) -> int:
        """When to place `event`: its stamp, or the previous event's time when it has none or an earlier one."""
        self.last_ns = _time_ns(event, self.last_ns)
        return self.last_ns

    def read(self, event: Any) -> None:
        self.tracker.on_event(event, self.at(event))

    def send(self, events: list[Any], response: Any, at_ns: int) -> None:
        """A send the recording shows (its sent events and the API's echo), unless its events were already read."""
        echoed = [get(e, "id") for e in as_list(get(response, "data"))]
        if any(self.tracker.has_seen(i) for i in echoed if isinstance(i, str)):
            return  # its events were already read on a stream recorded before the send's own response
        send = self.tracker.begin_send(events, at_ns)
        self.tracker.send_succeeded(send, response)

    def finish(self) -> int:
        """End what the events leave open (a turn ends `unobserved` at its last event); returns the turns traced."""
        self.tracker.end_all(StopReason.UNOBSERVED)
        return self.tracker.turn_count


def replay(
    sessions: Iterable[RecordedSession],
    *,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    logger_provider: Any = None,
    **options: Any,
) -> int:
    """Build and end the traces of recorded sessions through the given providers (default: the global ones).

    Takes `instrument()`'s other options (`capture_content`, `child_spans`, ...). Returns the number of turns.
    A turn still open when its recording ends ends there, `unobserved`, at its last event.
    """
    kwargs = {"tracer_provider": tracer_provider, "meter_provider": meter_provider, "logger_provider": logger_provider}
    telemetry = telemetry_from(options_from(options), {**kwargs, **options})
    turns = 0
    for recorded in sessions:
        feed = SessionFeed(recorded.session_id, telemetry, recorded.session)
        for index, step in enumerate(recorded.steps):
            if step.kind == "send":
                feed.send(step.events, step.response, _next_time(recorded.steps[index + 1 :], feed.last_ns))
                continue
            for event in step.events:
                feed.read(event)
        turns += feed.finish()
    return turns


def _time_ns(event: Any, fallback: int) -> int:
    stamp = event.get("processed_at") if isinstance(event, Mapping) else getattr(event, "processed_at", None)
    at = timestamp_ns(stamp)
    return fallback if at is None else max(at, fallback)


def _next_time(steps: list[Step], fallback: int) -> int:
    """When a send happened: just before the first event read after it (a cassette records no clock)."""
    for step in steps:
        if step.kind == "read":
            for event in step.events:
                at = _time_ns(event, 0)
                if at:
                    return max(at - 1, fallback)
    return fallback


def _from_cassette(text: str, session_id: Optional[str]) -> list[RecordedSession]:
    import yaml  # type: ignore[import-untyped]  # vcrpy's own dependency (no stubs); only cassettes need it

    cassette = yaml.safe_load(text) or {}
    sessions: dict[str, RecordedSession] = {}

    def session(sid: str) -> RecordedSession:
        return sessions.setdefault(sid, RecordedSession(sid))

    for interaction in cassette.get("interactions", []):
        request, response = interaction.get("request", {}), interaction.get("response", {})
        method, uri = str(request.get("method", "")).upper(), str(request.get("uri", ""))
        body = (response.get("body") or {}).get("string", "")
        if (match := _STREAM.search(uri)) and method == "GET":
            session(match.group(1)).steps.append(Step("read", list(_sse_events(body))))
        elif (match := _EVENTS.search(uri)) and method == "GET":
            session(match.group(1)).steps.append(Step("read", _json(body).get("data", [])))
        elif (match := _EVENTS.search(uri)) and method == "POST":
            sent = _json(request.get("body") or "{}").get("events", [])
            session(match.group(1)).steps.append(Step("send", sent, _json(body)))
        elif (match := _SESSION.search(uri)) and method in ("GET", "POST"):
            obj = _json(body)
            sid = obj.get("id") if isinstance(obj.get("id"), str) else match.group(1)
            if sid and obj.get("type") == "session":
                session(sid).session = obj
    found = [s for s in sessions.values() if s.steps]
    if session_id is not None:
        for recorded in found:
            recorded.session_id = session_id
    return found


def _json(text: Any) -> dict[str, Any]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    try:
        value = json.loads(text) if text else {}
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _sse_events(body: str) -> Iterator[dict[str, Any]]:
    """The `event: message` frames of an SSE body, as the SDK would yield them (an `error` frame ends it)."""
    for frame in body.replace("\r\n", "\n").split("\n\n"):
        kind, data = None, []
        for line in frame.split("\n"):
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        if kind == "error":
            return
        if kind and data:
            try:
                event = json.loads("\n".join(data))
            except ValueError:
                continue
            if isinstance(event, dict):
                yield event
