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
from .instrumentation import feeds
from .instrumentation.agents import agent_attributes
from .instrumentation.attributes import StopReason
from .instrumentation.event_table import THREAD_CREATED, THREAD_STATUSES
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


class RecordingError(ValueError):
    """A recording that cannot be replayed: unreadable, not JSON, JSON Lines or a cassette, or with no events.
    Its message names the file and what is wrong, in one line."""


def load(path: Union[str, Path], session_id: Optional[str] = None) -> list[RecordedSession]:
    """Read a recording: `.yaml`/`.yml` as a vcrpy cassette, `.jsonl`/`.ndjson` as one event a line, `.json` as JSON
    (suffixes in any case); with another suffix or none, the content decides. Raises `RecordingError`.

    JSON and JSON Lines events are put in `processed_at` order (an export may list them newest first) when every
    event has a stamp. The session id is `session_id`, else the events' own `session_id`, else that of a session
    object in the file, else the file's name; the agent is the session object's, else the primary thread's
    `agent_name`.
    """
    path = Path(path)
    text = _read(path)
    known = _FORMATS.get(path.suffix.lower())
    kind = known or _sniff(text)
    if kind == "cassette":
        found = _from_cassette(
            text, session_id, path, "a vcrpy cassette" if known else "JSON, JSON Lines or a cassette"
        )
    else:
        items = _json_lines(text, path) if kind == "jsonl" else _json_items(text, path)
        found = _from_items(items, session_id, path)
    if not any(step.events for recorded in found for step in recorded.steps):
        raise RecordingError(f"no events in {path}")
    return found


_FORMATS = {".yaml": "cassette", ".yml": "cassette", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}


def _read(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError as error:
        raise RecordingError(f"{path}: no such file") from error
    except IsADirectoryError as error:
        raise RecordingError(f"{path}: is a directory, not a recording") from error
    except OSError as error:
        raise RecordingError(f"{path}: cannot read it: {error.strerror or error}") from error
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise RecordingError(
            f"{path}: not UTF-8 text (byte {data[error.start]:#04x} at offset {error.start})"
        ) from error


def _sniff(text: str) -> str:
    """A recording's format from its content: JSON (one value), JSON Lines (one value a line), else a cassette."""
    body = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not body or body[0].lstrip()[:1] not in ("{", "["):
        return "cassette"
    try:
        json.loads(text)
    except ValueError:
        return "jsonl" if len(body) > 1 else "json"
    return "json"


def _json_items(text: str, path: Path) -> list[Any]:
    if not text.strip():
        return []
    try:
        data = json.loads(text)
    except ValueError as error:
        raise RecordingError(f"{path}: not valid JSON ({error})") from error
    if isinstance(data, dict):
        data = data.get("data") if "data" in data else [data]
    return data if isinstance(data, list) else []


def _json_lines(text: str, path: Path) -> list[Any]:
    items = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            items.append(json.loads(line))
        except ValueError as error:
            raise RecordingError(f"{path}: line {number} is not valid JSON ({error})") from error
    return items


def _from_items(items: list[Any], session_id: Optional[str], path: Path) -> list[RecordedSession]:
    """Events (mappings with a string `type`) grouped by their `session_id`; a session object names its session."""
    session_objects: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("type"), str):
            (session_objects if item["type"] == "session" else events).append(item)
    fallback = (
        session_id
        or next((s["id"] for s in session_objects if isinstance(s.get("id"), str) and s["id"]), None)
        or path.stem
    )
    grouped: dict[str, list[Any]] = {}
    for event in events:
        own = event.get("session_id")
        grouped.setdefault(session_id or (own if isinstance(own, str) and own else fallback), []).append(event)
    found = []
    for sid, session_events in grouped.items():
        session = next((s for s in session_objects if s.get("id") == sid), None)
        if session is None and len(grouped) == 1 and session_objects:
            session = session_objects[0]
        if session is None and (agent_name := _primary_agent_name(session_events)):
            session = {"type": "session", "id": sid, "agent": {"name": agent_name}}
        found.append(RecordedSession(sid, [Step("read", _in_time_order(session_events))], session))
    return found


def _primary_agent_name(events: list[Any]) -> Optional[str]:
    """The agent of the session's primary thread: its `session.thread_status_*` events name it, and no
    `session.thread_created` announces that thread (those are subagents' and workflow runs' threads)."""
    created = {e.get("session_thread_id") for e in events if e.get("type") == THREAD_CREATED}
    for event in events:
        name = event.get("agent_name")
        if (
            str(event.get("type")) in THREAD_STATUSES
            and event.get("session_thread_id") not in created
            and isinstance(name, str)
            and name
        ):
            return name
    return None


def _in_time_order(events: list[Any]) -> list[Any]:
    """Events in `processed_at` order, ties in the file's order (reversed first for a newest-first file), when
    every event has a stamp; otherwise as they are."""
    stamps = [timestamp_ns(e.get("processed_at")) for e in events]
    if not events or any(stamp is None for stamp in stamps):
        return events
    pairs = list(zip(stamps, events))
    if pairs[0][0] > pairs[-1][0]:  # type: ignore[operator]  # none is None (checked above)
        pairs.reverse()
    return [event for _, event in sorted(pairs, key=lambda pair: pair[0])]  # type: ignore[arg-type, return-value]


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

    def next_at(self, event: Any) -> int:
        """When `event` will be placed once read (nothing changes meanwhile)."""
        return _time_ns(event, self.last_ns)

    def read(self, event: Any) -> None:
        tracker = self.tracker
        turns = tracker.turn_count
        at_ns = self.at(event)
        tracker.on_event(event, at_ns)
        if tracker.turn_count != turns:  # it opened a turn: one with no user event has its anchor from this event
            feeds.anchor_opened(tracker, event, at_ns)

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


def _from_cassette(
    text: str, session_id: Optional[str], path: Path, expected: str = "a vcrpy cassette"
) -> list[RecordedSession]:
    import yaml  # type: ignore[import-untyped]  # vcrpy's own dependency (no stubs); only cassettes need it

    try:
        cassette = yaml.safe_load(text)
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise RecordingError(f"{path}: not valid YAML ({problem}{at})") from error
    if cassette is None:
        return []
    interactions = cassette.get("interactions") if isinstance(cassette, dict) else None
    if not isinstance(interactions, list):
        raise RecordingError(f"{path}: not {expected} (no list of interactions)")
    sessions: dict[str, RecordedSession] = {}

    def session(sid: str) -> RecordedSession:
        return sessions.setdefault(sid, RecordedSession(sid))

    for interaction in interactions:
        if not isinstance(interaction, dict):
            continue
        request, response = interaction.get("request"), interaction.get("response")
        if not isinstance(request, dict) or not isinstance(response, dict):
            continue
        method, uri = str(request.get("method", "")).upper(), str(request.get("uri", ""))
        body = response.get("body")
        body = body.get("string", "") if isinstance(body, dict) else ""
        if (match := _STREAM.search(uri)) and method == "GET":
            session(match.group(1)).steps.append(Step("read", list(_sse_events(body))))
        elif (match := _EVENTS.search(uri)) and method == "GET":
            session(match.group(1)).steps.append(Step("read", _dicts(_json(body).get("data"))))
        elif (match := _EVENTS.search(uri)) and method == "POST":
            sent = _dicts(_json(request.get("body") or "{}").get("events"))
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


def _dicts(value: Any) -> list[Any]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


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
