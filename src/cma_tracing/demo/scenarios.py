"""The demo's sessions: each one queues what the loopback server will say, then drives the real SDK through it.

Event shapes come from the real recording of 2026-08-17 (`data/real_stream_2026-08-17_bash_tool.events.jsonl`);
the other turn shapes follow the wire documentation. Delays are real sleeps, so durations in the trace are real.
"""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import anthropic

from .loopback import SESSION_TEMPLATE, Event, FakeCMAServer, Step

DATA = Path(__file__).resolve().parent / "data"
REAL_EVENTS = DATA / "real_stream_2026-08-17_bash_tool.events.jsonl"
#: The real recording took 5.2 s; the demo plays it at this speed.
REAL_SPEED = 3.0
#: The session of the real recording.
REAL_SESSION = "sesn_01GuGWpFoC5zy8bwPaUPogbX"

_ids = itertools.count(1)


def _id() -> str:
    return f"sevt_demo{next(_ids):04d}"


def _event(type: str, **fields: Any) -> dict[str, Any]:
    return {"type": type, "id": _id(), "processed_at": datetime.now().isoformat() + "Z", **fields}


def _start() -> dict[str, Any]:
    return _event("span.model_request_start")


def _end(start: dict[str, Any], input_tokens: int, output_tokens: int, is_error: bool = False) -> dict[str, Any]:
    usage = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
    }
    return _event("span.model_request_end", model_request_start_id=start["id"], is_error=is_error, model_usage=usage)


def _text(text: str) -> Any:
    """Text content blocks, as the SDK's params and the API's events both spell them."""
    return [{"type": "text", "text": text}]


def _usage(input_tokens: int, output_tokens: int, cents: str) -> dict[str, Any]:
    return _event(
        "session.usage",
        usage={
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_read_input_tokens": 0,
            "list_cost": {"amount": cents, "currency": "USD"},
        },
    )


def _session(
    server: FakeCMAServer, session_id: str, name: str, tools: list[str], model: str = "claude-haiku-4-5"
) -> None:
    body = copy.deepcopy(SESSION_TEMPLATE)
    body["id"] = session_id
    body["agent"]["name"] = name
    body["agent"]["model"] = {"id": model, "speed": "standard"}
    body["agent"]["tools"] = [
        {"type": "agent_toolset_20260401", "configs": [{"name": t, "enabled": True} for t in tools]}
    ]
    server.set_session(session_id, body)


def _read_until_idle(client: anthropic.Anthropic, session_id: str) -> Any:
    with client.beta.sessions.events.stream(session_id) as stream:
        for event in stream:
            if event.type == "session.status_idle":
                return event
    return None


def _message(text: str) -> Any:
    """A `user.message` to send (the SDK types its params as TypedDicts; this plain dict is one)."""
    return {"type": "user.message", "content": _text(text)}


@dataclass(frozen=True)
class Scenario:
    title: str
    run: Callable[[anthropic.Anthropic, FakeCMAServer], None]


def real_events() -> list[dict[str, Any]]:
    """The events of the real recording, in the order the API sent them."""
    return [
        json.loads(line) for line in REAL_EVENTS.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]


def real_turn() -> list[Step]:
    """The real recording's turn as a stream script, its gaps played at REAL_SPEED."""
    steps: list[Step] = []
    previous = None
    for event in real_events():
        at = datetime.fromisoformat(event["processed_at"].replace("Z", "+00:00"))
        steps.append(Event(event, (at - previous).total_seconds() / REAL_SPEED if previous else 0.0))
        previous = at
    return steps


def real_recording(client: anthropic.Anthropic, server: FakeCMAServer) -> None:
    """The real recorded session (bash tool), its gaps replayed at REAL_SPEED."""
    events, steps = real_events(), real_turn()
    session_id = REAL_SESSION
    _session(server, session_id, "braintrust-sdk-managed-agent-bash", ["bash"])
    client.beta.sessions.create(agent="agent_0178EAqEXzAVgoiucYPVscc6", environment_id="env_012W55H8BqqsSgp2XJ3uQmBK")
    server.queue_send(session_id, [events[2]["id"]])
    server.queue_stream(session_id, steps)
    client.beta.sessions.events.send(session_id, events=[_message(events[2]["content"][0]["text"])])
    _read_until_idle(client, session_id)


def custom_tool(client: anthropic.Anthropic, server: FakeCMAServer) -> None:
    """The agent asks the app to run its own `get_weather` tool; the app answers on a second stream."""
    session_id = "sesn_demo_weather"
    _session(server, session_id, "travel-assistant", ["get_weather"], model="claude-sonnet-4-5")
    client.beta.sessions.create(agent="agent_travel", environment_id="env_demo")
    user, use, first = _id(), _event("agent.custom_tool_use", name="get_weather", input={"city": "Paris"}), _start()
    server.queue_send(session_id, [user])
    server.queue_stream(
        session_id,
        [
            Event(_event("session.status_running")),
            Event({**_event("user.message", content=_text("Should I pack an umbrella for Paris?")), "id": user}),
            Event(first),
            Event(_event("agent.thinking"), 0.35),
            Event(use, 0.2),
            Event(_end(first, 1840, 96)),
            Event(_event("session.status_idle", stop_reason={"type": "requires_action", "event_ids": [use["id"]]})),
        ],
    )
    client.beta.sessions.events.send(session_id, events=[_message("Should I pack an umbrella for Paris?")])
    idle = _read_until_idle(client, session_id)
    tool_use_id = idle.stop_reason.event_ids[0]
    import time

    time.sleep(0.4)  # the app runs its tool
    answer, second = _id(), _start()
    server.queue_send(session_id, [answer])
    server.queue_stream(
        session_id,
        [
            Event(_event("session.status_running")),
            Event(_event("user.custom_tool_result", custom_tool_use_id=tool_use_id, content=_text("light rain, 14°C"))),
            Event(second),
            Event(_event("agent.message", content=_text("Yes: light rain and 14°C in Paris. Pack an umbrella.")), 0.5),
            Event(_end(second, 1990, 41)),
            Event(_usage(3830, 137, "2")),
            Event(_event("session.status_idle", stop_reason={"type": "end_turn"})),
        ],
    )
    client.beta.sessions.events.send(
        session_id,
        events=[
            {"type": "user.custom_tool_result", "custom_tool_use_id": tool_use_id, "content": _text("light rain, 14°C")}
        ],
    )
    _read_until_idle(client, session_id)


def multi_agent(client: anthropic.Anthropic, server: FakeCMAServer) -> None:
    """A coordinator hands work to two subagents. The researcher's blocking web search is cross-posted on the
    session's stream; each subagent's model requests are only on its own thread feed, which the app reads too."""
    from concurrent.futures import ThreadPoolExecutor

    session_id, primary, research, writer = "sesn_demo_team", "sthr_coordinator", "sthr_researcher", "sthr_writer"
    _session(server, session_id, "launch-coordinator", ["researcher", "writer", "web_search"], model="claude-opus-4-1")
    client.beta.sessions.create(agent="agent_team", environment_id="env_demo")
    user, first, final = _id(), _start(), _start()
    search = _event(
        "agent.tool_use",
        name="web_search",
        input={"query": "launch checklist"},
        evaluated_permission="allow",
        session_thread_id=research,
    )

    def thread(kind: str, tid: str, name: str, **fields: Any) -> dict[str, Any]:
        return _event(kind, session_thread_id=tid, agent_name=name, **fields)

    def feed(tid: str, name: str, input_tokens: int, output_tokens: int, think: float) -> list[Step]:
        start = _start()
        return [
            Event(thread("session.thread_status_running", tid, name)),
            Event(start, 0.05),
            Event(_event("agent.message", content=_text(f"{name} done")), think),
            Event(_end(start, input_tokens, output_tokens)),
        ]

    server.queue_stream(session_id, feed(research, "researcher", 5200, 320, 0.5), thread_id=research)
    server.queue_stream(session_id, feed(writer, "writer", 3100, 640, 1.0), thread_id=writer)
    server.queue_send(session_id, [user])
    server.queue_stream(
        session_id,
        [
            Event(_event("session.status_running")),
            Event(thread("session.thread_status_running", primary, "launch-coordinator")),
            Event({**_event("user.message", content=_text("Draft our launch announcement.")), "id": user}),
            Event(first),
            Event(_end(first, 2400, 180), 0.3),
            Event(thread("session.thread_created", research, "researcher")),
            Event(thread("session.thread_created", writer, "writer")),
            Event(_event("agent.thread_message_sent", to_session_thread_id=research, content=_text("find the facts"))),
            Event(search, 0.2),
            Event(
                _event(
                    "agent.tool_result",
                    tool_use_id=search["id"],
                    is_error=False,
                    content=_text("3 results"),
                    session_thread_id=research,
                ),
                0.5,
            ),
            Event(thread("session.thread_status_idle", research, "researcher", stop_reason={"type": "end_turn"}), 0.1),
            Event(_event("agent.thread_message_received", from_session_thread_id=research, content=_text("facts"))),
            Event(thread("session.thread_status_idle", writer, "writer", stop_reason={"type": "end_turn"}), 0.5),
            Event(final),
            Event(_event("agent.message", content=_text("Here is the announcement draft: ...")), 0.4),
            Event(_end(final, 4100, 410)),
            Event(
                thread("session.thread_status_idle", primary, "launch-coordinator", stop_reason={"type": "end_turn"})
            ),
            Event(_usage(14800, 1550, "31")),
            Event(_event("session.status_idle", stop_reason={"type": "end_turn"})),
        ],
    )

    def read_feed(tid: str) -> None:
        for _ in client.beta.sessions.threads.events.stream(tid, session_id=session_id):
            pass

    client.beta.sessions.events.send(session_id, events=[_message("Draft our launch announcement.")])
    with ThreadPoolExecutor(max_workers=2) as feeds, client.beta.sessions.events.stream(session_id) as stream:
        for event in stream:
            if event.type == "session.thread_created":
                feeds.submit(read_feed, event.session_thread_id)
            if event.type == "session.status_idle":
                break


def failing(client: anthropic.Anthropic, server: FakeCMAServer) -> None:
    """The model is overloaded: one retry, then the retries run out and the turn fails."""
    session_id = "sesn_demo_overloaded"
    _session(server, session_id, "support-bot", ["web_fetch"], model="claude-sonnet-4-5")
    client.beta.sessions.create(agent="agent_support", environment_id="env_demo")
    user, first, second = _id(), _start(), _start()

    def error(retry: str) -> dict[str, Any]:
        return _event(
            "session.error",
            error={"type": "model_overloaded_error", "message": "Overloaded", "retry_status": {"type": retry}},
        )

    server.queue_send(session_id, [user])
    server.queue_stream(
        session_id,
        [
            Event(_event("session.status_running")),
            Event({**_event("user.message", content=_text("Summarise ticket #4521.")), "id": user}),
            Event(first),
            Event(_end(first, 900, 0, is_error=True), 0.3),
            Event(error("retrying")),
            Event(_event("session.status_rescheduled"), 0.2),
            Event(_event("session.status_running"), 0.3),
            Event(second),
            Event(_end(second, 900, 0, is_error=True), 0.3),
            Event(error("exhausted")),
            Event(_event("session.status_idle", stop_reason={"type": "retries_exhausted"})),
        ],
    )
    client.beta.sessions.events.send(session_id, events=[_message("Summarise ticket #4521.")])
    _read_until_idle(client, session_id)


def outcome(client: anthropic.Anthropic, server: FakeCMAServer) -> None:
    """An outcome: the agent writes a report, the grader asks for a revision, the revised report satisfies it."""
    session_id = "sesn_demo_outcome"
    _session(server, session_id, "report-writer", ["web_search", "write"], model="claude-sonnet-4-5")
    client.beta.sessions.create(agent="agent_reports", environment_id="env_demo")
    outcome_id, define = "outc_demo_pricing", _id()
    steps: list[Step] = [Event(_event("session.status_running"))]
    for iteration, (verdict, why) in enumerate(
        (("needs_revision", "Criterion 3 failed: no summary table."), ("satisfied", "All 3 criteria met."))
    ):
        start, use = _start(), _event("agent.tool_use", name="write", input={"file_path": "report.md"})
        steps += [
            Event(start),
            Event(
                _event("agent.message", content=_text("Writing the report." if not iteration else "Adding the table."))
            ),
            Event(use, 0.3),
            Event(_end(start, 1200, 150), 0.05),
            Event(_event("agent.tool_result", tool_use_id=use["id"], content=_text("written"), is_error=False), 0.2),
        ]
        evaluation = _event("span.outcome_evaluation_start", iteration=iteration, outcome_id=outcome_id)
        usage = {"input_tokens": 2400, "output_tokens": 350, "cache_read_input_tokens": 0}
        steps += [
            Event(evaluation, 0.05),
            Event(_event("span.outcome_evaluation_ongoing", iteration=iteration, outcome_id=outcome_id), 0.2),
            Event(
                _event(
                    "span.outcome_evaluation_end",
                    iteration=iteration,
                    outcome_id=outcome_id,
                    outcome_evaluation_start_id=evaluation["id"],
                    result=verdict,
                    explanation=why,
                    usage=usage,
                ),
                0.2,
            ),
        ]
    steps.append(Event(_event("session.status_idle", stop_reason={"type": "end_turn"})))
    request = {
        "type": "user.define_outcome",
        "description": "Write a competitor-pricing report as report.md",
        "rubric": {"type": "text", "content": "- cites every claim\n- has a summary table"},
        "max_iterations": 3,
    }
    echo = {**request, "id": define, "outcome_id": outcome_id, "processed_at": datetime.now().isoformat() + "Z"}
    server.queue_send(session_id, [define])
    server.queue_stream(session_id, [Event(echo), *steps])
    client.beta.sessions.events.send(session_id, events=[request])  # type: ignore[list-item]
    _read_until_idle(client, session_id)


def workflow_run(client: anthropic.Anthropic, server: FakeCMAServer) -> None:
    """A workflow run in two phases: three readers, then a reconciler, while the coordinator waits for it."""
    session_id = "sesn_demo_workflow"
    _session(server, session_id, "contract-lead", ["workflow"], model="claude-opus-4-1")
    client.beta.sessions.create(agent="agent_lead", environment_id="env_demo")
    run = "wrun_demo_contracts"
    read, reconcile = "wphs_read", "wphs_reconcile"
    user, first, last = _id(), _start(), _start()
    steps: list[Step] = [
        Event(_event("session.status_running")),
        Event({**_event("user.message", content=_text("Review all 3 contracts.")), "id": user}),
        Event(first),
        Event(_end(first, 1200, 150), 0.2),
        Event(
            _event(
                "workflow_run.created",
                workflow_run_id=run,
                name="Review the contracts",
                phases=[{"id": read, "name": "Read the contracts"}, {"id": reconcile, "name": "Reconcile"}],
            )
        ),
    ]
    for phase, agents in ((read, ["contract-reader"] * 3), (reconcile, ["reconciler"])):
        started = _event("workflow_run.phase_started", workflow_run_id=run, workflow_run_phase_id=phase)
        steps.append(Event(started, 0.05))
        threads = [f"sthr_demo_{phase}_{i}" for i in range(len(agents))]
        for thread, agent in zip(threads, agents):
            steps.append(
                Event(
                    _event("session.thread_created", session_thread_id=thread, agent_name=agent, workflow_run_id=run),
                    0.05,
                )
            )
        for thread, agent in zip(threads, agents):
            idle = _event(
                "session.thread_status_idle",
                session_thread_id=thread,
                agent_name=agent,
                stop_reason={"type": "end_turn"},
            )
            steps.append(Event(idle, 0.25))
        steps.append(
            Event(
                _event(
                    "workflow_run.phase_ended",
                    workflow_run_id=run,
                    workflow_run_phase_id=phase,
                    phase_started_id=started["id"],
                )
            )
        )
    steps += [
        Event(_event("workflow_run.status_ended", workflow_run_id=run, result={"type": "completed"})),
        Event(last, 0.05),
        Event(_event("agent.message", content=_text("Two contracts have uncapped indemnity clauses.")), 0.2),
        Event(_end(last, 2600, 220)),
        Event(_event("session.status_idle", stop_reason={"type": "end_turn"})),
    ]
    server.queue_send(session_id, [user])
    server.queue_stream(session_id, steps)
    client.beta.sessions.events.send(session_id, events=[_message("Review all 3 contracts.")])
    _read_until_idle(client, session_id)


SCENARIOS = [
    Scenario(f"the real recording at {REAL_SPEED:g}× speed: one bash tool call", real_recording),
    Scenario("a custom tool the app runs itself", custom_tool),
    Scenario("a coordinator with two subagents", multi_agent),
    Scenario("a turn that fails: model overloaded", failing),
    Scenario("an outcome: revised once, then satisfied", outcome),
    Scenario("a workflow run in two phases", workflow_run),
]
