"""What the loopback server speaks: the steps of a stream script, a request as it was received, and a real session
object to answer with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Drop", "ErrorFrame", "Event", "Hold", "Keepalive", "RecordedRequest", "SESSION_TEMPLATE", "Step"]


@dataclass(frozen=True)
class Event:
    """Send one `event: message` frame carrying `data`, after sleeping `delay` seconds."""

    data: dict[str, Any]
    delay: float = 0.0


@dataclass(frozen=True)
class ErrorFrame:
    """Send an `event: error` frame, after sleeping `delay`: the SDK raises `APIStatusError` mid-iteration."""

    data: dict[str, Any]
    delay: float = 0.0


@dataclass(frozen=True)
class Keepalive:
    """Send a `:keepalive` comment after sleeping `delay`: bytes on the wire that the SDK yields nothing for."""

    delay: float = 0.0


@dataclass(frozen=True)
class Drop:
    """After sleeping `delay`, close the TCP connection mid-body: the client's iteration fails with a transport
    error."""

    delay: float = 0.0


@dataclass(frozen=True)
class Hold:
    """Send keepalives every 0.2 s until the client disconnects or `seconds` pass, then go on with the next step."""

    seconds: float = 30.0


Step = Event | ErrorFrame | Keepalive | Drop | Hold
"""One step of a stream script; a script that ends after its last step ends the stream normally."""


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it; `json` is the parsed body, or None when there was none."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    json: Any


# A real session object as the API returned it (recorded 2026-08-17), with a neutral agent name and title. It does not
# pass the SDK's strict response validation, which is what clients meet in practice.
SESSION_TEMPLATE: dict[str, Any] = {
    "agent": {
        "description": "Uses bash for a single arithmetic command",
        "id": "agent_0178EAqEXzAVgoiucYPVscc6",
        "mcp_servers": [],
        "model": {"id": "claude-haiku-4-5", "speed": "standard"},
        "multiagent": None,
        "name": "loopback-agent-bash",
        "skills": [],
        "system": "For arithmetic requests, use exactly one bash command and then answer with only the numeric result.",
        "tools": [
            {
                "configs": [{"enabled": True, "name": "bash", "permission_policy": {"type": "always_allow"}}],
                "default_config": {"enabled": False, "permission_policy": {"type": "always_allow"}},
                "type": "agent_toolset_20260401",
            }
        ],
        "type": "agent",
        "version": 1,
    },
    "archived_at": None,
    "budget": None,
    "created_at": "2026-08-17T16:21:32.363295Z",
    "environment_id": "env_012W55H8BqqsSgp2XJ3uQmBK",
    "id": "sesn_01GuGWpFoC5zy8bwPaUPogbX",
    "metadata": {"purpose": "test"},
    "outcome_evaluations": [],
    "resources": [],
    "stats": {"active_seconds": 0, "duration_seconds": 0},
    "status": "idle",
    "title": "Loopback session",
    "type": "session",
    "updated_at": "2026-08-17T16:21:32.363295Z",
    "usage": {
        "active_seconds": 0,
        "cache_creation": None,
        "cache_read_input_tokens": 0,
        "input_tokens": 0,
        "list_cost": {"amount": "0", "currency": "USD"},
        "output_tokens": 0,
        "server_tool_use": {"web_fetch_requests": 0, "web_search_requests": 0},
    },
    "vault_ids": [],
}
