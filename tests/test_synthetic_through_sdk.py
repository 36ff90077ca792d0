"""Every synthetic unit of work (outcomes, workflow runs, compaction and system messages, a self-hosted worker's
view, a rescheduled thread, a deployment's session) through the real SDK over the loopback server, sync and async:
the app sees every event unchanged, and the trace is the tree the pure core builds from the same events (names,
parents, attributes; timing aside, since here the client's clock times them)."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from cma_tracing.demo.loopback import Event, FakeCMAServer
from tests.support.spans import Spans
from tests.support.core import Session, synthetic
from tests.support.spans import tree_shape

NAMES = [
    "outcome_revise_then_satisfied",
    "outcome_max_iterations_reached",
    "outcome_interrupted_during_evaluation",
    "workflow_run_completed",
    "workflow_run_errors",
    "compaction_and_system_message",
    "self_hosted_worker_view",
    "thread_rescheduled",
    "deployment_fired_session",
]


def _first_user_event(events: list[dict[str, Any]]) -> dict[str, Any]:
    first = events[0]
    return {k: v for k, v in first.items() if k not in ("id", "processed_at", "outcome_id")}


@pytest.mark.parametrize("name", NAMES)
def test_sync(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans, name: str
) -> None:
    events = synthetic(name)
    sid = "sesn_outcome"  # the core harness's session id, so the two traces can be compared whole
    server.queue_send(sid, [events[0]["id"]])
    server.queue_stream(sid, [Event(e) for e in events])
    loop_client.beta.sessions.events.send(sid, events=[_first_user_event(events)])  # type: ignore[list-item]
    with loop_client.beta.sessions.events.stream(sid) as stream:
        assert [e.type for e in stream] == [e["type"] for e in events]
    _assert_same_tree_as_the_core(spans, events)


@pytest.mark.asyncio
@pytest.mark.parametrize("name", NAMES)
async def test_async(
    instrumented: Any, server: FakeCMAServer, loop_async_client: anthropic.AsyncAnthropic, spans: Spans, name: str
) -> None:
    events = synthetic(name)
    sid = "sesn_outcome"
    server.queue_send(sid, [events[0]["id"]])
    server.queue_stream(sid, [Event(e) for e in events])
    await loop_async_client.beta.sessions.events.send(sid, events=[_first_user_event(events)])  # type: ignore[list-item]
    async with await loop_async_client.beta.sessions.events.stream(sid) as stream:
        assert [e.type async for e in stream] == [e["type"] for e in events]
    _assert_same_tree_as_the_core(spans, events)


def _assert_same_tree_as_the_core(spans: Spans, events: list[dict[str, Any]]) -> None:
    core = Session(agent={})
    send = core.tracker.begin_send([_first_user_event(events)], core.now)
    core.tracker.send_succeeded(send, {"data": [events[0]]})
    core.feed(events)
    ours = [s for s in spans.all() if s.instrumentation_scope is None or s.instrumentation_scope.name == "cma_tracing"]
    theirs = [s for s in core.spans.get_finished_spans()]
    assert tree_shape(ours, details=True) == tree_shape(theirs, details=True)
