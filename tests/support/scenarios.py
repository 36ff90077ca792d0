"""Scripted sessions for the loopback server, shaped like the real recording."""

from __future__ import annotations

from typing import Any

from tests.support import events as ev
from cma_tracing.demo.loopback import Event, FakeCMAServer, Step


def turn_events(
    user_id: str, input_tokens: int = 100, output_tokens: int = 10, tool: bool = True
) -> list[dict[str, Any]]:
    """One whole turn, as the real stream orders it, ending in `session.status_idle(end_turn)`."""
    first = ev.request_start()
    body: list[dict[str, Any]] = [ev.running(), ev.user_message(user_id), first, ev.event("agent.thinking")]
    if tool:
        use = ev.tool_use()
        body += [use, ev.request_end(first["id"], input_tokens, output_tokens), ev.tool_result(use["id"])]
        second = ev.request_start()
        body += [second, ev.agent_message(), ev.request_end(second["id"], input_tokens, output_tokens)]
    else:
        body += [ev.agent_message(), ev.request_end(first["id"], input_tokens, output_tokens)]
    return body + [ev.idle()]


def steps(events: list[dict[str, Any]], delay: float = 0.0) -> list[Step]:
    return [Event(e, delay) for e in events]


def queue_turn(server: FakeCMAServer, session_id: str, user_id: str, **shape: Any) -> list[dict[str, Any]]:
    """Queue a send echo and a stream for one whole turn; returns the streamed events."""
    events = turn_events(user_id, **shape)
    server.queue_send(session_id, [user_id])
    server.queue_stream(session_id, steps(events))
    return events


def message(text: str = "hi") -> dict[str, Any]:
    return {"type": "user.message", "content": [{"type": "text", "text": text}]}
