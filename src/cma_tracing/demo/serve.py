"""`cma-tracing serve`: the demo's loopback CMA server, left running with sessions whose history the API's events
list pages, so `cma-tracing trace`, `trace_session()` and the README's examples can be tried by hand."""

from __future__ import annotations

import copy
import json
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console

from .loopback import SESSION_TEMPLATE, FakeCMAServer
from .scenarios import REAL_SESSION, real_turn

DATA = Path(__file__).resolve().parent / "data"
#: session id -> (agent name, the events file its history is)
SESSIONS = {
    REAL_SESSION: (
        "braintrust-sdk-managed-agent-bash",
        "real_stream_2026-08-17_bash_tool.events.jsonl",
    ),
    "sesn_demo_outcome": ("report-writer", "synthetic_outcome_revise_then_satisfied.jsonl"),
    "sesn_demo_workflow": ("contract-lead", "synthetic_workflow_run_completed.jsonl"),
}


#: The session a live send + stream turn goes to (the README's first example).
LIVE_SESSION = REAL_SESSION


def start(port: int = 0) -> FakeCMAServer:
    """The loopback server with the demo's sessions set up; a `user.message` sent to LIVE_SESSION is answered, each
    time, by the real recording's turn on its next stream."""
    server = FakeCMAServer().start(port)
    for session_id, (agent, name) in SESSIONS.items():
        body: dict[str, Any] = copy.deepcopy(SESSION_TEMPLATE)
        body["id"] = session_id
        body["agent"]["name"] = agent
        server.set_session(session_id, body)
        lines = (DATA / name).read_text().splitlines()
        events = [json.loads(line) for line in lines if line.strip() and not line.startswith("#")]
        server.set_history(session_id, events)
        for thread_id, thread_events in run_threads(events).items():
            server.set_history(session_id, thread_events, thread_id=thread_id)
    server.answer_sends_with(LIVE_SESSION, real_turn())
    return server


def run_threads(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each workflow run's thread's own events, as its `threads.events.list` answers them: one model request from
    the thread's start to just before its idle (the synthetic session's feed carries only their statuses)."""
    created = {
        e["session_thread_id"] for e in events if e["type"] == "session.thread_created" and e.get("workflow_run_id")
    }
    started: dict[str, str] = {}
    threads: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        thread_id = event.get("session_thread_id")
        if not isinstance(thread_id, str) or thread_id not in created:
            continue
        if event["type"] == "session.thread_status_running":
            started.setdefault(thread_id, event["processed_at"])
        elif event["type"] == "session.thread_status_idle" and thread_id in started and thread_id not in threads:
            start_id, end_at = f"sevt_{thread_id}_request", _before(event["processed_at"], 0.05)
            usage = {"input_tokens": 800, "output_tokens": 60, "cache_read_input_tokens": 0}
            threads[thread_id] = [
                {"type": "span.model_request_start", "id": start_id, "processed_at": started[thread_id]},
                {
                    "type": "span.model_request_end",
                    "id": f"{start_id}_end",
                    "processed_at": end_at,
                    "model_request_start_id": start_id,
                    "is_error": False,
                    "model_usage": {**usage, "cache_creation_input_tokens": 0},
                },
            ]
    return threads


def _before(stamp: str, seconds: float) -> str:
    at = datetime.fromisoformat(stamp.replace("Z", "+00:00")) - timedelta(seconds=seconds)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def exports(server: FakeCMAServer) -> dict[str, str]:
    """The variables that point the SDK (and the README's first example) at the server."""
    return {"ANTHROPIC_BASE_URL": server.base_url, "ANTHROPIC_API_KEY": "any", "CMA_SESSION_ID": LIVE_SESSION}


def serve(console: Console, port: int = 0, stop: threading.Event | None = None) -> None:
    """Run until Ctrl-C (or `stop` is set), after printing how to point the SDK at the server."""
    server = start(port)
    console.print(f"[bold]loopback CMA server[/] at {server.base_url} (Ctrl-C stops it); sessions:")
    for session_id in SESSIONS:
        console.print(f"  {session_id}")
    console.print(f"a user.message sent to {LIVE_SESSION} streams the real recording's turn, each time")
    line = " ".join(f"{name}={value}" for name, value in exports(server).items())
    console.print(f"export {line}", soft_wrap=True, highlight=False)
    console.file.flush()  # read at once by whoever started it, also when stdout is a pipe or a file
    try:
        (stop or threading.Event()).wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
