"""Scripted sessions for the loopback server, shaped like the real recording."""

from __future__ import annotations

import time
from typing import Any

import anthropic

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


class Reads:
    """When the app got each event of a stream, on the clock spans are stamped with (`time.time_ns()`).

    The instrumentation handles each event before the app gets it, and reads the next one only when the app asks
    for it. So whatever it does on an event happens after the app got the event before, and by the time the app
    gets this one, however late either arrives: order, not duration, and it holds on a loaded machine."""

    def __init__(self) -> None:
        self.times: list[tuple[str, int]] = []

    def add(self, event: Any) -> None:
        self.times.append((event.type, time.time_ns()))

    def window(self, event_type: str, nth: int = 0) -> tuple[int, int]:
        """(when the app got the event before the `nth` of type `event_type`, when it got that one)."""
        indices = [i for i, (t, _) in enumerate(self.times) if t == event_type]
        assert len(indices) > nth, (event_type, [t for t, _ in self.times])
        i = indices[nth]
        assert i > 0, f"{event_type} came first: nothing before it"
        return self.times[i - 1][1], self.times[i][1]

    def at(self, event_type: str, nth: int = 0) -> int:
        """When the app got the `nth` event of type `event_type`."""
        return self.window(event_type, nth)[1]


def run_turn(client: anthropic.Anthropic, session_id: str, text: str = "go", **stream_options: Any) -> Reads:
    """Send a user.message and read the stream to its end (an idle that needs no action): when each event came."""
    reads = Reads()
    client.beta.sessions.events.send(session_id, events=[message(text)])
    for event in client.beta.sessions.events.stream(session_id, **stream_options):
        reads.add(event)
        if event.type == "session.status_idle" and event.stop_reason.type != "requires_action":
            break
    return reads
