#!/usr/bin/env python
"""Write the synthetic CMA scenario cassettes into ``cassettes/``.

Each cassette is a vcrpy (format version 1) YAML file, written with vcrpy's own
serializer, so it has the same structure as the real recording in
``cassettes/real_bash_tool.yaml``::

    interactions:
    - request: {body, headers, method, uri}
      response: {body: {string}, headers, status: {code, message}}
    version: 1

Event shapes and field names are copied from the real recording of 2026-08-17
(braintrustdata/braintrust-sdk-python, commit 2e14b44c) and checked against the
event models of ``anthropic`` 2.12.0. Where the order of events goes beyond what
that recording shows, it follows the wire documentation.

Run from the repository root (or anywhere)::

    .venv/bin/python scripts/build_cassettes.py

It rewrites every scenario file and prints, per scenario, the ids used and the
expected totals (tokens, tool calls, model requests).
"""

from __future__ import annotations

import copy
import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from vcr.request import Request
from vcr.serialize import serialize
from vcr.serializers import yamlserializer

from cma_tracing.demo.loopback import SESSION_TEMPLATE

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "cassettes"

BASE_URL = "https://api.anthropic.com"
BETA = "managed-agents-2026-04-01"

# The real session object of 2026-08-17, keys in the order the API sent them: the loopback server's template with
# the agent name and title the recording had. Only its ``id`` is replaced per scenario.
REAL_SESSION: Dict[str, Any] = copy.deepcopy(SESSION_TEMPLATE)
REAL_SESSION["agent"]["name"] = "braintrust-sdk-managed-agent-bash"
REAL_SESSION["title"] = "Issue 259 event stream"
AGENT_ID = REAL_SESSION["agent"]["id"]
AGENT_NAME = REAL_SESSION["agent"]["name"]
ENVIRONMENT_ID = REAL_SESSION["environment_id"]

HEADER_LINE = (
    "# SYNTHETIC, built by scripts/build_cassettes.py: {description}. Event shapes and field names "
    "copied from the real recording of 2026-08-17; the order of events beyond it follows the wire documentation.\n"
)


# --------------------------------------------------------------------------- helpers


def dumps(obj: Any) -> str:
    """Compact JSON with sorted keys, as the real API sends it."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


class Clock:
    """Increasing ``processed_at`` values in the API's format (microseconds, ``Z``)."""

    def __init__(self, start: str) -> None:
        self.now = datetime.strptime(start, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)

    def at(self, seconds: float = 0.0) -> str:
        """Advance by ``seconds`` (at least one microsecond) and return the new time."""
        self.now += max(timedelta(seconds=seconds), timedelta(microseconds=1))
        return self.now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Ids:
    """Readable, distinct event ids: ``sevt_01<S><nn><Label>``."""

    def __init__(self, letter: str) -> None:
        self.letter = letter
        self.n = 0

    def __call__(self, label: str) -> str:
        self.n += 1
        return f"sevt_01{self.letter}{self.n:02d}{label}"


def text(s: str) -> List[Dict[str, str]]:
    return [{"text": s, "type": "text"}]


# Event constructors: one per type, fields exactly as the real recording has them.


def ev_running(id_: str, t: str) -> Dict[str, Any]:
    return {"id": id_, "processed_at": t, "type": "session.status_running"}


def ev_thread_running(id_: str, t: str, thread: str) -> Dict[str, Any]:
    return {
        "agent_name": AGENT_NAME,
        "id": id_,
        "processed_at": t,
        "session_thread_id": thread,
        "type": "session.thread_status_running",
    }


def ev_user_message(id_: str, t: Optional[str], s: str) -> Dict[str, Any]:
    return {"content": text(s), "id": id_, "processed_at": t, "type": "user.message"}


def ev_request_start(id_: str, t: str) -> Dict[str, Any]:
    return {"id": id_, "processed_at": t, "type": "span.model_request_start"}


def ev_thinking(id_: str, t: str) -> Dict[str, Any]:
    return {"id": id_, "processed_at": t, "type": "agent.thinking"}


def ev_tool_use(id_: str, t: str, name: str, input_: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "evaluated_permission": "allow",
        "evaluation": None,
        "id": id_,
        "input": input_,
        "name": name,
        "processed_at": t,
        "type": "agent.tool_use",
    }


def ev_request_end(
    id_: str,
    t: str,
    start_id: str,
    input_tokens: int,
    output_tokens: int,
    cache_read: int = 0,
    cache_creation: int = 0,
) -> Dict[str, Any]:
    return {
        "id": id_,
        "is_error": False,
        "model_request_start_id": start_id,
        "model_usage": {
            "cache_creation_input_tokens": cache_creation,
            "cache_read_input_tokens": cache_read,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
        },
        "processed_at": t,
        "type": "span.model_request_end",
    }


def ev_tool_result(id_: str, t: str, tool_use_id: str, s: str) -> Dict[str, Any]:
    return {
        "content": text(s),
        "id": id_,
        "is_error": False,
        "processed_at": t,
        "tool_use_id": tool_use_id,
        "type": "agent.tool_result",
    }


def ev_agent_message(id_: str, t: str, s: str) -> Dict[str, Any]:
    return {"content": text(s), "id": id_, "processed_at": t, "type": "agent.message"}


def ev_thread_idle(id_: str, t: str, thread: str, stop_reason: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "agent_name": AGENT_NAME,
        "id": id_,
        "processed_at": t,
        "session_thread_id": thread,
        "stop_reason": stop_reason,
        "type": "session.thread_status_idle",
    }


def ev_idle(id_: str, t: str, stop_reason: Dict[str, Any]) -> Dict[str, Any]:
    return {"id": id_, "processed_at": t, "stop_reason": stop_reason, "type": "session.status_idle"}


def ev_session_usage(
    id_: str, t: str, input_tokens: int, output_tokens: int, active_seconds: float, cost_cents: str
) -> Dict[str, Any]:
    return {
        "id": id_,
        "processed_at": t,
        "type": "session.usage",
        "usage": {
            "active_seconds": active_seconds,
            "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
            "cache_read_input_tokens": 0,
            "input_tokens": input_tokens,
            "list_cost": {"amount": cost_cents, "currency": "USD"},
            "output_tokens": output_tokens,
            "server_tool_use": {"web_fetch_requests": 0, "web_search_requests": 0},
        },
    }


def ev_custom_tool_use(id_: str, t: str, name: str, input_: Dict[str, Any]) -> Dict[str, Any]:
    return {"id": id_, "input": input_, "name": name, "processed_at": t, "type": "agent.custom_tool_use"}


def ev_custom_tool_result(id_: str, t: Optional[str], use_id: str, s: str) -> Dict[str, Any]:
    return {
        "content": text(s),
        "custom_tool_use_id": use_id,
        "id": id_,
        "processed_at": t,
        "type": "user.custom_tool_result",
    }


def ev_session_error(id_: str, t: str, error_type: str, message: str, retry: str) -> Dict[str, Any]:
    return {
        "error": {"message": message, "retry_status": {"type": retry}, "type": error_type},
        "id": id_,
        "processed_at": t,
        "type": "session.error",
    }


def ev_terminated(id_: str, t: str) -> Dict[str, Any]:
    return {"id": id_, "processed_at": t, "type": "session.status_terminated"}


END_TURN = {"type": "end_turn"}


def requires_action(*event_ids: str) -> Dict[str, Any]:
    return {"event_ids": list(event_ids), "type": "requires_action"}


def echo(event: Dict[str, Any]) -> Dict[str, Any]:
    """The send response's echo of a client event: as sent, plus its id.

    The real send response (2026-08-17) carries no ``processed_at`` key at all;
    the SDK reads the missing key as ``None``.
    """
    return {k: v for k, v in event.items() if k != "processed_at"}


def as_sent(event: Dict[str, Any]) -> Dict[str, Any]:
    """What the client posts: the event without the server-side id/processed_at."""
    # Key order as the SDK serialises the params the app passes (type first).
    out: Dict[str, Any] = {"type": event["type"]}
    if "custom_tool_use_id" in event:
        out["custom_tool_use_id"] = event["custom_tool_use_id"]
    out["content"] = [{"type": b["type"], "text": b["text"]} for b in event["content"]]
    return out


# --------------------------------------------------------------------------- interactions


class Cassette:
    def __init__(self, name: str, description: str, session_id: str) -> None:
        self.name = name
        self.description = description
        self.session_id = session_id
        self.requests: List[Request] = []
        self.responses: List[Dict[str, Any]] = []
        self.n_req = 0
        # Everything the server emitted, for the expected totals.
        self.server_events: List[Dict[str, Any]] = []
        # Ids the tests assert on, and expected totals per turn where a cassette holds several turns.
        self.meta: Dict[str, Any] = {}
        self.per_turn: Dict[str, Dict[str, int]] = {}

    # -- low level

    def _request_headers(self, with_body: bool) -> Dict[str, str]:
        h = {"accept": "application/json", "anthropic-beta": BETA, "anthropic-version": "2023-06-01"}
        if with_body:
            h["content-type"] = "application/json"
        return h

    def _response_headers(self, content_type: str) -> Dict[str, List[str]]:
        self.n_req += 1
        h = {"content-type": [content_type], "request-id": [f"req_01Syn{self.name_key}{self.n_req:02d}"]}
        if content_type.startswith("text/event-stream"):
            h["cache-control"] = ["no-cache, no-transform"]
        return h

    @property
    def name_key(self) -> str:
        return "".join(p.capitalize() for p in self.name.split("_"))

    def _add(self, method: str, path: str, body: str, status: int, message: str, ctype: str, resp: str) -> None:
        self.requests.append(Request(method, BASE_URL + path, body, self._request_headers(bool(body))))
        self.responses.append(
            {
                "body": {"string": resp},
                "headers": self._response_headers(ctype),
                "status": {"code": status, "message": message},
            }
        )

    # -- API calls

    def create_session(self) -> None:
        session = copy.deepcopy(REAL_SESSION)
        session["id"] = self.session_id
        body = dumps({"agent": AGENT_ID, "environment_id": ENVIRONMENT_ID})
        self._add("POST", "/v1/sessions", body, 200, "OK", "application/json", dumps(session))

    def send(self, *events: Dict[str, Any]) -> None:
        body = json.dumps({"events": [as_sent(e) for e in events]}, separators=(",", ":"))
        resp = dumps({"data": [echo(e) for e in events]})
        self._add("POST", f"/v1/sessions/{self.session_id}/events", body, 200, "OK", "application/json", resp)

    def send_error(self, event: Dict[str, Any], status: int, message: str, error: Dict[str, Any]) -> None:
        body = json.dumps({"events": [as_sent(event)]}, separators=(",", ":"))
        resp = json.dumps({"type": "error", "error": error}, separators=(",", ":"))  # key order as the API sends errors
        self._add("POST", f"/v1/sessions/{self.session_id}/events", body, status, message, "application/json", resp)

    def stream(self, events: List[Dict[str, Any]], keepalives: int = 2, tail: str = "") -> None:
        frames = [": connected\n\n"]
        frames += [f"event: message\ndata: {dumps(e)}\n\n" for e in events]
        frames += [tail] if tail else []
        frames += [":keepalive\n\n"] * keepalives
        self.server_events += events
        self._add(
            "GET",
            f"/v1/sessions/{self.session_id}/events/stream",
            "",
            200,
            "OK",
            "text/event-stream; charset=utf-8",
            "".join(frames),
        )

    def list_events(self, events: List[Dict[str, Any]]) -> None:
        self.server_events += events
        resp = dumps({"data": events, "next_page": None})
        self._add("GET", f"/v1/sessions/{self.session_id}/events", "", 200, "OK", "application/json", resp)

    # -- output

    def write(self) -> Path:
        text_ = serialize({"requests": self.requests, "responses": self.responses}, yamlserializer)
        path = OUT_DIR / f"{self.name}.yaml"
        path.write_text(HEADER_LINE.format(description=self.description) + text_, encoding="utf-8")
        return path

    def totals(self) -> Dict[str, Any]:
        """Expected totals over every distinct event the server sent (stream + list)."""
        seen: Dict[str, Dict[str, Any]] = {}
        for e in self.server_events:
            seen.setdefault(e["id"], e)
        ends = [e for e in seen.values() if e["type"] == "span.model_request_end"]
        usage = {
            k: sum(e["model_usage"][k] for e in ends)
            for k in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
        }
        return {
            **usage,
            "tool_calls": sum(
                1
                for e in seen.values()
                if e["type"] in ("agent.tool_use", "agent.custom_tool_use", "agent.mcp_tool_use")
            ),
            "model_requests_started": sum(1 for e in seen.values() if e["type"] == "span.model_request_start"),
            "model_requests_ended": len(ends),
        }


# --------------------------------------------------------------------------- scenarios

START = "2026-08-17T16:21:33.100000Z"  # just after the real session object's created_at


def scenario_a() -> Cassette:
    c = Cassette(
        "two_turns_one_stream",
        "two turns read from ONE stream; the app sends turn 2 after reading turn 1's status_idle",
        "sesn_01SynTwoTurnsOneStream",
    )
    ids, t = Ids("A"), Clock(START)
    thread = "sthr_01SynPrimaryThreadA"
    c.create_session()
    u1 = ev_user_message(ids("UserU1"), None, "Say hello.")
    c.send(u1)
    ev: List[Dict[str, Any]] = []
    ev.append(ev_running(ids("Running"), t.at(0.16)))
    ev.append(ev_thread_running(ids("ThreadRunning"), t.at(), thread))
    ev.append({**u1, "processed_at": t.at(0.16)})
    ev.append(s1 := ev_request_start(ids("ReqStart1"), t.at()))
    ev.append(ev_agent_message(ids("AgentMsg1"), t.at(0.8), "Hello!"))
    ev.append(ev_request_end(ids("ReqEnd1"), t.at(), s1["id"], 100, 10))
    ev.append(ev_thread_idle(ids("ThreadIdle"), t.at(0.44), thread, END_TURN))
    ev.append(ev_idle(ids("IdleEndTurn1"), t.at(), END_TURN))
    # turn 2: the app sends U2 after reading the idle above, on the same connection
    u2 = ev_user_message(ids("UserU2"), None, "Use bash once to print 2+2, then reply with only the number.")
    ev.append(ev_running(ids("Running"), t.at(2.0)))
    ev.append({**u2, "processed_at": t.at(0.16)})
    ev.append(s2 := ev_request_start(ids("ReqStart2"), t.at()))
    ev.append(tu := ev_tool_use(ids("ToolUseT1"), t.at(1.17), "bash", {"command": "echo $((2+2))"}))
    ev.append(ev_request_end(ids("ReqEnd2"), t.at(), s2["id"], 200, 20))
    ev.append(ev_tool_result(ids("ToolResult"), t.at(2.72), tu["id"], "4\n"))
    ev.append(s3 := ev_request_start(ids("ReqStart3"), t.at(0.15)))
    ev.append(ev_agent_message(ids("AgentMsg2"), t.at(0.53), "4"))
    ev.append(ev_request_end(ids("ReqEnd3"), t.at(), s3["id"], 300, 30, cache_read=50, cache_creation=5))
    ev.append(ev_idle(ids("IdleEndTurn2"), t.at(0.44), END_TURN))
    c.stream(ev)
    c.send(u2)  # recorded after the GET: the app sends turn 2 while reading the stream
    c.meta = {"user_messages": [u1["id"], u2["id"]], "tool_use": [tu["id"]], "thread": thread}
    c.per_turn = {
        u1["id"]: _totals(100, 10, 0, 0, tools=0, started=1, ended=1),
        u2["id"]: _totals(500, 50, 50, 5, tools=1, started=2, ended=2),
    }
    return c


def scenario_b() -> Cassette:
    c = Cassette(
        "custom_tool_two_streams",
        "a custom tool round trip over two streams (idle requires_action, then user.custom_tool_result)",
        "sesn_01SynCustomToolTwoStreams",
    )
    ids, t = Ids("B"), Clock(START)
    c.create_session()
    u1 = ev_user_message(ids("UserU1"), None, "What is the weather in Paris?")
    c.send(u1)
    ev: List[Dict[str, Any]] = []
    ev.append(ev_running(ids("Running"), t.at(0.16)))
    ev.append({**u1, "processed_at": t.at(0.16)})
    ev.append(s1 := ev_request_start(ids("ReqStart1"), t.at()))
    ev.append(c1 := ev_custom_tool_use(ids("CustomToolUseC1"), t.at(1.17), "get_weather", {"city": "Paris"}))
    ev.append(ev_request_end(ids("ReqEnd1"), t.at(), s1["id"], 400, 40))
    ev.append(ev_idle(ids("IdleRequiresAction"), t.at(0.2), requires_action(c1["id"])))
    c.stream(ev, keepalives=1)  # then the server closes the connection
    r1 = ev_custom_tool_result(ids("CustomToolResultR1"), None, c1["id"], "18C")
    t.at(1.5)
    c.send(r1)
    ev = []
    ev.append(ev_running(ids("Running"), t.at(0.1)))
    ev.append({**r1, "processed_at": t.at(0.05)})
    ev.append(s2 := ev_request_start(ids("ReqStart2"), t.at()))
    ev.append(ev_agent_message(ids("AgentMsg"), t.at(0.9), "It is 18C in Paris."))
    ev.append(ev_request_end(ids("ReqEnd2"), t.at(), s2["id"], 600, 60))
    ev.append(ev_idle(ids("IdleEndTurn"), t.at(0.44), END_TURN))
    c.stream(ev)
    c.meta = {"user_messages": [u1["id"]], "custom_tool_use": [c1["id"]], "custom_tool_result": [r1["id"]]}
    return c


def scenario_c() -> Cassette:
    c = Cassette(
        "observer_only",
        "the app only reads the stream, it sends nothing (the turn was started elsewhere)",
        "sesn_01SynObserverOnly",
    )
    ids, t = Ids("C"), Clock(START)
    c.create_session()
    ev: List[Dict[str, Any]] = []
    ev.append(ev_running(ids("Running"), t.at(0.16)))
    ev.append(u1 := ev_user_message(ids("UserU1"), t.at(0.16), "Summarise the repository in one sentence."))
    ev.append(s1 := ev_request_start(ids("ReqStart1"), t.at()))
    ev.append(ev_agent_message(ids("AgentMsg"), t.at(1.3), "It is a tracing library."))
    ev.append(ev_request_end(ids("ReqEnd1"), t.at(), s1["id"], 120, 12))
    ev.append(ev_idle(ids("IdleEndTurn"), t.at(0.44), END_TURN))
    c.stream(ev)
    c.meta = {"user_messages": [u1["id"]]}
    return c


def scenario_d() -> Cassette:
    c = Cassette(
        "reconnect_list_overlap",
        "stream 1 drops mid-turn, the app pages events.list, then stream 2 repeats the list's last two events",
        "sesn_01SynReconnectListOverlap",
    )
    ids, t = Ids("D"), Clock(START)
    c.create_session()
    u1 = ev_user_message(ids("UserU1"), None, "Use bash once to print 2+2, then reply with only the number.")
    c.send(u1)
    ev: List[Dict[str, Any]] = []
    ev.append(ev_running(ids("Running"), t.at(0.16)))
    ev.append({**u1, "processed_at": t.at(0.16)})
    ev.append(s1 := ev_request_start(ids("ReqStart1"), t.at()))
    ev.append(ev_thinking(ids("Thinking"), t.at(0.99)))
    ev.append(t1 := ev_tool_use(ids("ToolUseT1"), t.at(0.17), "bash", {"command": "echo $((2+2))"}))
    c.stream(ev, keepalives=0)  # the connection drops here, mid-turn
    e1 = ev_request_end(ids("ReqEnd1"), t.at(), s1["id"], 1000, 100)
    r1 = ev_tool_result(ids("ToolResult"), t.at(2.72), t1["id"], "4\n")
    c.list_events(ev + [e1, r1])
    ev = [e1, r1]
    ev.append(s2 := ev_request_start(ids("ReqStart2"), t.at(0.15)))
    ev.append(ev_agent_message(ids("AgentMsg"), t.at(0.53), "4"))
    ev.append(ev_request_end(ids("ReqEnd2"), t.at(), s2["id"], 500, 50))
    ev.append(ev_idle(ids("IdleEndTurn"), t.at(0.44), END_TURN))
    c.stream(ev)
    c.meta = {"user_messages": [u1["id"]], "tool_use": [t1["id"]], "overlap_ids": [e1["id"], r1["id"]]}
    return c


def scenario_e() -> Cassette:
    c = Cassette(
        "list_history",
        "events.list returns one page holding a complete earlier turn (the real turn's full event order)",
        "sesn_01SynListHistory",
    )
    ids, t = Ids("E"), Clock(START)
    thread = "sthr_01SynPrimaryThreadE"
    c.create_session()
    ev: List[Dict[str, Any]] = []
    ev.append(ev_running(ids("Running"), t.at(0.16)))
    ev.append(ev_thread_running(ids("ThreadRunning"), t.at(), thread))
    ev.append(u1 := ev_user_message(ids("UserU1"), t.at(0.16), "List the files, then say how many there are."))
    ev.append(s1 := ev_request_start(ids("ReqStart1"), t.at()))
    ev.append(ev_thinking(ids("Thinking"), t.at(0.99)))
    ev.append(tu := ev_tool_use(ids("ToolUseT1"), t.at(0.17), "bash", {"command": "ls"}))
    ev.append(ev_request_end(ids("ReqEnd1"), t.at(), s1["id"], 800, 80))
    ev.append(ev_tool_result(ids("ToolResult"), t.at(2.72), tu["id"], "README.md\nsetup.py\n"))
    ev.append(s2 := ev_request_start(ids("ReqStart2"), t.at(0.15)))
    ev.append(ev_agent_message(ids("AgentMsg"), t.at(0.53), "2"))
    ev.append(ev_request_end(ids("ReqEnd2"), t.at(), s2["id"], 900, 9))
    ev.append(ev_thread_idle(ids("ThreadIdle"), t.at(0.44), thread, END_TURN))
    ev.append(ev_session_usage(ids("SessionUsage"), t.at(), 1700, 89, 5.2, "1"))
    ev.append(ev_idle(ids("IdleEndTurn"), t.at(), END_TURN))
    c.list_events(ev)
    c.meta = {"user_messages": [u1["id"]], "tool_use": [tu["id"]], "thread": thread}
    return c


def scenario_f() -> Cassette:
    c = Cassette(
        "supersede",
        "a second user.message arrives while the first turn runs and supersedes it",
        "sesn_01SynSupersede",
    )
    ids, t = Ids("F"), Clock(START)
    c.create_session()
    u1 = ev_user_message(ids("UserU1"), None, "Write a long poem about the sea.")
    c.send(u1)
    ev: List[Dict[str, Any]] = []
    ev.append(ev_running(ids("Running"), t.at(0.16)))
    ev.append({**u1, "processed_at": t.at(0.16)})
    ev.append(s1 := ev_request_start(ids("ReqStart1"), t.at()))
    ev.append(ev_thinking(ids("Thinking"), t.at(0.99)))
    u2 = ev_user_message(ids("UserU2"), None, "Actually, just say hi.")
    ev.append({**u2, "processed_at": t.at(1.2)})
    ev.append(s2 := ev_request_start(ids("ReqStart2"), t.at()))
    ev.append(ev_agent_message(ids("AgentMsg"), t.at(0.6), "Hi!"))
    ev.append(ev_request_end(ids("ReqEnd2"), t.at(), s2["id"], 700, 70))
    ev.append(ev_idle(ids("IdleEndTurn"), t.at(0.44), END_TURN))
    c.stream(ev)
    c.send(u2)  # recorded after the GET: the app sends U2 while reading the stream
    c.meta = {"user_messages": [u1["id"], u2["id"]], "unended_request_start": [s1["id"]]}
    return c


def scenario_g() -> Cassette:
    c = Cassette(
        "terminated",
        "a terminal session.error (model_request_failed_error) followed by session.status_terminated",
        "sesn_01SynTerminated",
    )
    ids, t = Ids("G"), Clock(START)
    c.create_session()
    u1 = ev_user_message(ids("UserU1"), None, "Say hello.")
    c.send(u1)
    ev: List[Dict[str, Any]] = []
    ev.append(ev_running(ids("Running"), t.at(0.16)))
    ev.append({**u1, "processed_at": t.at(0.16)})
    ev.append(s1 := ev_request_start(ids("ReqStart1"), t.at()))
    ev.append(
        ev_session_error(ids("SessionError"), t.at(1.4), "model_request_failed_error", "upstream failure", "terminal")
    )
    ev.append(ev_terminated(ids("Terminated"), t.at()))
    c.stream(ev)
    c.meta = {"user_messages": [u1["id"]], "unended_request_start": [s1["id"]]}
    return c


def scenario_h() -> Cassette:
    c = Cassette(
        "sse_error_frame",
        "the stream ends in an SSE `event: error` frame (overloaded_error) after model_request_start",
        "sesn_01SynSseErrorFrame",
    )
    ids, t = Ids("H"), Clock(START)
    c.create_session()
    u1 = ev_user_message(ids("UserU1"), None, "Say hello.")
    c.send(u1)
    ev: List[Dict[str, Any]] = []
    ev.append(ev_running(ids("Running"), t.at(0.16)))
    ev.append({**u1, "processed_at": t.at(0.16)})
    ev.append(s1 := ev_request_start(ids("ReqStart1"), t.at()))
    err = json.dumps(
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, separators=(",", ":")
    )
    c.stream(ev, keepalives=0, tail=f"event: error\ndata: {err}\n\n")
    c.meta = {"user_messages": [u1["id"]], "unended_request_start": [s1["id"]]}
    return c


def scenario_i() -> Cassette:
    c = Cassette(
        "send_only", "the app creates a session and sends one user.message, nothing else", "sesn_01SynSendOnly"
    )
    ids = Ids("I")
    c.create_session()
    u1 = ev_user_message(ids("UserU1"), None, "Say hello.")
    c.send(u1)
    c.meta = {"user_messages": [u1["id"]]}
    return c


def scenario_j() -> Cassette:
    c = Cassette("send_error", "events.send is rejected with HTTP 400 invalid_request_error", "sesn_01SynSendError")
    ids = Ids("J")
    c.create_session()
    u1 = ev_user_message(ids("UserU1"), None, "Say hello.")  # never echoed: the send fails
    c.send_error(u1, 400, "Bad Request", {"type": "invalid_request_error", "message": "bad event"})
    c.meta = {"user_messages": []}
    return c


def _totals(
    inp: int, out: int, cache_read: int, cache_creation: int, *, tools: int, started: int, ended: int
) -> Dict[str, int]:
    return {
        "input_tokens": inp,
        "output_tokens": out,
        "cache_read_input_tokens": cache_read,
        "cache_creation_input_tokens": cache_creation,
        "tool_calls": tools,
        "model_requests_started": started,
        "model_requests_ended": ended,
    }


SCENARIOS: List[Callable[[], Cassette]] = [
    scenario_a,
    scenario_b,
    scenario_c,
    scenario_d,
    scenario_e,
    scenario_f,
    scenario_g,
    scenario_h,
    scenario_i,
    scenario_j,
]


def main() -> int:
    OUT_DIR.mkdir(exist_ok=True)
    summary = {}
    for build in SCENARIOS:
        c = build()
        path = c.write()
        summary[path.name] = {
            "session_id": c.session_id,
            **c.meta,
            "totals": c.totals(),
            **({"per_turn": c.per_turn} if c.per_turn else {}),
        }
    json.dump(summary, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
