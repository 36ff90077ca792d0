"""A fake of the Claude Managed Agents HTTP API on 127.0.0.1, for driving the real `anthropic` SDK over real HTTP.

Cassettes replay a stream all at once, so they cannot test timing; this server sends each scripted SSE frame after a
real sleep and flushes it at once, so a client sees every event at (about) its scripted time.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import select
import socket
import socketserver
import sys
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..instrumentation.event_table import USER_MESSAGE
from .script import SESSION_TEMPLATE, Drop, ErrorFrame, Event, Hold, Keepalive, RecordedRequest, Step

__all__ = [
    "Drop",
    "ErrorFrame",
    "Event",
    "FakeCMAServer",
    "Hold",
    "Keepalive",
    "RecordedRequest",
    "SESSION_TEMPLATE",
    "Step",
    "running_server",
]


_KEEPALIVE_INTERVAL = 0.2
_DEFAULT_HOLD = 30.0

_Key = tuple[str, str | None]

_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"/v1/sessions"), "create"),
    ("GET", re.compile(r"/v1/sessions/(?P<sid>[^/]+)"), "retrieve"),
    ("POST", re.compile(r"/v1/sessions/(?P<sid>[^/]+)/events"), "send"),
    ("GET", re.compile(r"/v1/sessions/(?P<sid>[^/]+)/events"), "list"),
    ("GET", re.compile(r"/v1/sessions/(?P<sid>[^/]+)/events/stream"), "stream"),
    ("GET", re.compile(r"/v1/sessions/(?P<sid>[^/]+)/threads/(?P<tid>[^/]+)/events"), "list"),
    ("GET", re.compile(r"/v1/sessions/(?P<sid>[^/]+)/threads/(?P<tid>[^/]+)/stream"), "stream"),
]


@dataclass
class _SendPlan:
    ids: list[str]
    status: int
    error: dict[str, Any] | None


@dataclass
class _Page:
    events: list[dict[str, Any]]
    next_page: str | None


class _ClientGone(Exception):
    """The client closed its end (or the server is stopping): stop writing to this connection."""


class FakeCMAServer:
    """The fake API: queue scripts and replies per session, `start()`, point a client at `base_url`, read `requests`."""

    def __init__(self) -> None:
        self.base_url: str = ""
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._closed_cond = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._counter = itertools.count(1)
        self._sessions: dict[str, dict[str, Any]] = {}
        self._create_ids: deque[str] = deque()
        self._streams: dict[_Key, deque[list[Step]]] = defaultdict(deque)
        self._sends: dict[str, deque[_SendPlan]] = defaultdict(deque)
        self._pages: dict[_Key, deque[_Page]] = defaultdict(deque)
        self._histories: dict[_Key, tuple[list[dict[str, Any]], int]] = {}
        self._missing: set[str] = set()
        self._turns: dict[str, list[Step]] = {}
        self._turn_plays = itertools.count(1)
        self._stream_closes: dict[_Key, int] = defaultdict(int)
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self, port: int = 0) -> FakeCMAServer:
        """Bind `port` (0: a free one) on 127.0.0.1 and serve from a daemon thread."""
        if self._httpd is not None:
            raise RuntimeError("server already started")
        self._stopping.clear()
        httpd = _HTTPServer(("127.0.0.1", port), _Handler, self)
        self._httpd = httpd
        self.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
        self._thread = serve_in_thread(httpd, "fake-cma-server")
        return self

    def stop(self) -> None:
        """Stop serving and cut open connections, so held streams cannot make this hang."""
        httpd = self._httpd
        if httpd is None:
            return
        self._stopping.set()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        stop_serving(httpd, self._thread)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> FakeCMAServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def queue_stream(self, session_id: str, steps: Sequence[Step], thread_id: str | None = None) -> None:
        """Script the next stream GET of the session (or of its thread `thread_id`); each GET takes one script."""
        for step in steps:
            if not isinstance(step, Step):
                raise TypeError(f"not a stream step: {step!r}")
        with self._lock:
            self._streams[(session_id, thread_id)].append(list(steps))

    def queue_send(
        self, session_id: str, ids: Sequence[str], status: int = 200, error: dict[str, Any] | None = None
    ) -> None:
        """Make the next send to the session echo with these ids, or fail with `status` and `error` as the body.

        `error` may be the whole body or just its inner `{"type", "message"}`, which then gets the API's envelope.
        """
        with self._lock:
            self._sends[session_id].append(_SendPlan(list(ids), status, error))

    def queue_list_page(
        self,
        session_id: str,
        events: Sequence[dict[str, Any]],
        next_page: str | None = None,
        thread_id: str | None = None,
    ) -> None:
        """Queue the next page that an events list of the session (or thread) returns; `next_page` is its cursor."""
        with self._lock:
            self._pages[(session_id, thread_id)].append(_Page([dict(e) for e in events], next_page))

    def set_history(
        self, session_id: str, events: Sequence[dict[str, Any]], page_size: int = 100, thread_id: str | None = None
    ) -> None:
        """What the session's (or thread's) events list answers from now on, every time, as the API pages it: oldest
        first, `page_size` at a time, a cursor in `next_page`. Queued pages, if any, are answered first."""
        with self._lock:
            self._histories[(session_id, thread_id)] = ([dict(e) for e in events], max(1, page_size))

    def answer_sends_with(self, session_id: str, steps: Sequence[Step]) -> None:
        """Answer every send of a `user.message` to the session that has nothing queued with a recorded turn: the
        send's echo takes the id of the turn's `user.message`, and the next stream GET plays `steps`.

        Each play is fresh: its event ids get a suffix of their own (so a process that sends twice sees two turns,
        not one deduplicated), `processed_at` is stamped from the time of the send, and the streamed `user.message`
        carries what was sent."""
        for step in steps:
            if not isinstance(step, Step):
                raise TypeError(f"not a stream step: {step!r}")
        with self._lock:
            self._turns[session_id] = list(steps)

    def _play_turn(self, session_id: str, sent: dict[str, Any]) -> str | None:
        """Queue a fresh play of the session's recorded turn for `sent` (a user.message); the id to echo it with."""
        with self._lock:
            steps = self._turns.get(session_id)
            if steps is None:
                return None
            play = next(self._turn_plays)
        ids = {step.data["id"] for step in steps if isinstance(step, Event) and isinstance(step.data.get("id"), str)}

        def fresh(value: Any) -> Any:
            if isinstance(value, str) and value in ids:
                return f"{value}_{play}"
            if isinstance(value, dict):
                return {k: fresh(v) for k, v in value.items()}
            if isinstance(value, list):
                return [fresh(v) for v in value]
            return value

        at, echo_id = time.time(), None
        script: list[Step] = []
        for step in steps:
            if not isinstance(step, Event):
                script.append(step)
                continue
            at += step.delay
            data = fresh(step.data)
            data["processed_at"] = _stamp(at)
            if data.get("type") == USER_MESSAGE and echo_id is None:
                echo_id = data["id"]
                data["content"] = copy.deepcopy(sent.get("content", data.get("content")))
            script.append(Event(data, step.delay))
        self.queue_stream(session_id, script)
        return echo_id

    def forget_session(self, session_id: str) -> None:
        """Retrieving the session, or listing its events, answers 404 from now on."""
        with self._lock:
            self._missing.add(session_id)

    def set_session(self, session_id: str, obj: dict[str, Any] | None = None) -> None:
        """Set what retrieve returns for `session_id` (default: the template) and queue the id for the next create."""
        body = copy.deepcopy(obj) if obj is not None else _session_object(session_id)
        with self._lock:
            self._sessions[session_id] = body
            self._create_ids.append(session_id)

    def wait_for_stream_close(
        self, session_id: str, timeout: float, thread_id: str | None = None, count: int = 1
    ) -> bool:
        """True once `count` streams of the session (or thread) have ended or been closed by the client."""
        key = (session_id, thread_id)
        with self._closed_cond:
            return self._closed_cond.wait_for(lambda: self._stream_closes[key] >= count, timeout=timeout)

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}_loop_{next(self._counter)}"

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _create_session(self) -> dict[str, Any]:
        with self._lock:
            session_id = self._create_ids.popleft() if self._create_ids else self._next_id("sesn")
            body = self._sessions.setdefault(session_id, _session_object(session_id))
            return copy.deepcopy(body)

    def _retrieve_session(self, session_id: str) -> dict[str, Any]:
        with self._lock:
            body = self._sessions.get(session_id)
            return copy.deepcopy(body) if body is not None else _session_object(session_id)

    def _take_send(self, session_id: str) -> _SendPlan | None:
        with self._lock:
            plans = self._sends[session_id]
            return plans.popleft() if plans else None

    def _take_page(self, key: _Key, cursor: str | None = None) -> _Page:
        with self._lock:
            pages = self._pages[key]
            if pages:
                return pages.popleft()
            history = self._histories.get(key)
            if history is None:
                return _Page([], None)
            events, size = history
            start = int(cursor[2:]) if cursor and cursor.startswith("o_") and cursor[2:].isdigit() else 0
            end = start + size
            return _Page(copy.deepcopy(events[start:end]), f"o_{end}" if end < len(events) else None)

    def _take_stream(self, key: _Key) -> list[Step] | None:
        with self._lock:
            scripts = self._streams[key]
            return scripts.popleft() if scripts else None

    def _stream_closed(self, key: _Key) -> None:
        with self._closed_cond:
            self._stream_closes[key] += 1
            self._closed_cond.notify_all()

    def _track(self, conn: socket.socket, alive: bool) -> None:
        with self._lock:
            if alive:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)


def serve_in_thread(httpd: socketserver.BaseServer, name: str) -> threading.Thread:
    """Serve `httpd` from a daemon thread (for the loopback server here and the tests' OTLP receiver)."""
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True)
    thread.start()
    return thread


def stop_serving(httpd: socketserver.BaseServer, thread: threading.Thread | None) -> None:
    """Stop what `serve_in_thread` started and close its socket."""
    httpd.shutdown()
    httpd.server_close()
    if thread is not None:
        thread.join(timeout=5)


@contextmanager
def running_server() -> Iterator[FakeCMAServer]:
    """A started `FakeCMAServer` that is stopped on exit, for use in fixtures."""
    server = FakeCMAServer().start()
    try:
        yield server
    finally:
        server.stop()


def _session_object(session_id: str) -> dict[str, Any]:
    body = copy.deepcopy(SESSION_TEMPLATE)
    body["id"] = session_id
    return body


def _stamp(seconds: float) -> str:
    """A `processed_at` as the API writes it (UTC, microseconds, `Z`)."""
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class _HTTPServer(ThreadingHTTPServer):
    """Carries the fake's state to handlers and keeps connection errors out of stderr."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024  # tests open a thousand connections at once

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], fake: FakeCMAServer) -> None:
        self.fake = fake
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connections cut by a client or by `stop()` are expected; anything else is a bug worth a traceback."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError) or self.fake._stopping.is_set():
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Routes one request to the fake; streams use chunked transfer-encoding written by hand and flushed per frame."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate small writes; with Nagle on, each waits ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.fake._track(self.connection, alive=True)

    def finish(self) -> None:
        self.server.fake._track(self.connection, alive=False)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    @property
    def _fake(self) -> FakeCMAServer:
        return self.server.fake

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self._fake._record(
            RecordedRequest(
                method=self.command,
                path=split.path,
                query=parse_qs(split.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in self.headers.items()},
                json=body,
            )
        )
        path = split.path.rstrip("/")
        for method, pattern, action in _ROUTES:
            match = pattern.fullmatch(path)
            if match is None or method != self.command:
                continue
            sid = unquote(match.group("sid")) if "sid" in pattern.groupindex else ""
            tid = unquote(match.group("tid")) if "tid" in pattern.groupindex else None
            try:
                if action == "create":
                    self._send_json(200, self._fake._create_session())
                elif sid in self._fake._missing:
                    self._send_json(404, _error_body("not_found_error", f"session {sid} not found"))
                elif action == "retrieve":
                    self._send_json(200, self._fake._retrieve_session(sid))
                elif action == "send":
                    self._events_send(sid, body)
                elif action == "list":
                    cursor = parse_qs(split.query).get("page", [None])[0]
                    page = self._fake._take_page((sid, tid), cursor)
                    self._send_json(200, {"data": page.events, "next_page": page.next_page})
                else:
                    self._stream((sid, tid))
            except (_ClientGone, ConnectionError):
                self.close_connection = True
            return
        self._send_json(404, _error_body("not_found_error", f"{self.command} {split.path} is not a route of this fake"))

    def _events_send(self, session_id: str, body: Any) -> None:
        plan = self._fake._take_send(session_id)
        if plan is not None and plan.status != 200:
            error = plan.error if plan.error is not None else {"type": "api_error", "message": "scripted failure"}
            if error.get("type") != "error":
                error = {"type": "error", "error": error}
            self._send_json(plan.status, error)
            return
        events = body.get("events", []) if isinstance(body, dict) else []
        ids = deque(plan.ids if plan is not None else [])
        if plan is None:
            messages = [e for e in events if isinstance(e, dict) and e.get("type") == USER_MESSAGE]
            echo_id = self._fake._play_turn(session_id, messages[0]) if messages else None
            if echo_id is not None:
                ids = deque(self._fake._next_id("sevt") for _ in range(events.index(messages[0])))
                ids.append(echo_id)
        echoed = [
            {**event, "id": ids.popleft() if ids else self._fake._next_id("sevt"), "processed_at": None}
            for event in events
        ]
        self._send_json(200, {"data": echoed})

    def _send_json(self, status: int, body: Any) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.send_header("request-id", self._fake._next_id("req"))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def _stream(self, key: _Key) -> None:
        script = self._fake._take_stream(key)
        steps: list[Step] = script if script is not None else [Hold(_DEFAULT_HOLD)]
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("request-id", self._fake._next_id("req"))
        self.end_headers()
        try:
            self._chunk(b": connected\n\n")
            for step in steps:
                if isinstance(step, Hold):
                    self._hold(step.seconds)
                    continue
                self._pause(step.delay)
                if isinstance(step, Event):
                    self._chunk(_sse("message", step.data))
                elif isinstance(step, ErrorFrame):
                    self._chunk(_sse("error", step.data))
                elif isinstance(step, Keepalive):
                    self._chunk(b":keepalive\n\n")
                else:
                    self._drop()
                    return
            self._write(b"0\r\n\r\n")
        except (_ClientGone, ConnectionError):
            self.close_connection = True
        finally:
            self._fake._stream_closed(key)

    def _chunk(self, data: bytes) -> None:
        self._write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def _write(self, data: bytes) -> None:
        if self._fake._stopping.is_set():
            raise _ClientGone
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except (OSError, ValueError) as exc:
            raise _ClientGone from exc

    def _pause(self, seconds: float) -> None:
        """Sleep for real, but notice at once when the client hangs up or the server stops."""
        deadline = time.monotonic() + seconds
        while True:
            if self._fake._stopping.is_set():
                raise _ClientGone
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if self._client_hung_up(min(remaining, _KEEPALIVE_INTERVAL)):
                raise _ClientGone

    def _hold(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._pause(min(remaining, _KEEPALIVE_INTERVAL))
            if deadline - time.monotonic() > 0:
                self._chunk(b":keepalive\n\n")

    def _client_hung_up(self, timeout: float) -> bool:
        """While a response streams the client sends nothing, so a readable socket means it closed (EOF or reset)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], timeout)
            if not readable:
                return False
            if self.connection.recv(1, socket.MSG_PEEK) == b"":
                return True
        except (OSError, ValueError):
            return True
        time.sleep(timeout)
        return False

    def _drop(self) -> None:
        """Cut the connection mid-body: no terminating chunk, so the client's HTTP parser sees a truncated body."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
