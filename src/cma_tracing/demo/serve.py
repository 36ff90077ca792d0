"""`cma-tracing serve`: the demo's loopback CMA server, left running with sessions whose history the API's events
list pages, so `cma-tracing trace`, `trace_session()` and the README's examples can be tried by hand."""

from __future__ import annotations

import copy
import json
import threading
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
        server.set_history(
            session_id, [json.loads(line) for line in lines if line.strip() and not line.startswith("#")]
        )
    server.answer_sends_with(LIVE_SESSION, real_turn())
    return server


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
