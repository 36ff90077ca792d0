"""Event builders for core tests, shaped like the real recording (`cassettes/real_bash_tool.yaml`)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, Optional

_ids = itertools.count(1)
_clock = itertools.count(1)
REAL_EVENTS = (
    Path(__file__).resolve().parent.parent.parent / "cassettes" / "real_stream_2026-08-17_bash_tool.events.jsonl"
)


def new_id() -> str:
    return f"sevt_t{next(_ids):06d}"


def _stamp() -> str:
    n = next(_clock)
    return f"2026-08-17T16:{21 + n // 3600 % 30:02d}:{n // 60 % 60:02d}.{n % 60:06d}Z"


def event(type: str, id: Optional[str] = "auto", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type, "processed_at": _stamp(), **fields}
    if id == "auto":
        body["id"] = new_id()
    elif id is not None:
        body["id"] = id
    return body


def user_message(id: Optional[str] = "auto", text: str = "hi") -> dict[str, Any]:
    return event("user.message", id, content=[{"type": "text", "text": text}])


def running() -> dict[str, Any]:
    return event("session.status_running")


def idle(stop: str = "end_turn", **stop_fields: Any) -> dict[str, Any]:
    return event("session.status_idle", stop_reason={"type": stop, **stop_fields})


def request_start(id: Optional[str] = "auto") -> dict[str, Any]:
    return event("span.model_request_start", id)


def request_end(start_id: str, input: int = 0, output: int = 0, read: int = 0, write: int = 0) -> dict[str, Any]:
    usage = {
        "input_tokens": input,
        "output_tokens": output,
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": write,
    }
    return event("span.model_request_end", model_request_start_id=start_id, is_error=False, model_usage=usage)


def tool_use(name: str = "bash", kind: str = "agent.tool_use", **fields: Any) -> dict[str, Any]:
    return event(kind, name=name, input={"command": "echo 4"}, **{"evaluated_permission": "allow", **fields})


def tool_result(use_id: str) -> dict[str, Any]:
    return event("agent.tool_result", tool_use_id=use_id, content=[{"type": "text", "text": "4"}], is_error=False)


def agent_message(text: str = "4") -> dict[str, Any]:
    return event("agent.message", content=[{"type": "text", "text": text}])


def session_error(type: str = "model_overloaded_error", retry: str = "retrying") -> dict[str, Any]:
    return event("session.error", error={"type": type, "message": "boom", "retry_status": {"type": retry}})


def real_events() -> list[dict[str, Any]]:
    """The 14 events of the real 2026-08-17 recording, in the order they arrived."""
    return [
        json.loads(line) for line in REAL_EVENTS.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
