"""SPEC §3.5, workflow runs: tracked per session, `invoke_workflow` under the turn open at `workflow_run.created`,
phases as `workflow_phase` spans, the run's threads under their phase, ending at `status_ended` even after the turn.

The event orders are the synthetic files in `cassettes/` (reconstructed from SDK docstrings and Anthropic's docs)."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from cma_tracing.demo.loopback import Event, FakeCMAServer
from tests.support.spans import Spans
from tests.support import events as ev
from tests.support.core import Session, synthetic
from tests.support.scenarios import message
from tests.support.spans import attrs

RUN = "wrun_011FIXTURE00000000000"


def children_of(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    found = [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]
    return sorted(found, key=lambda s: s.start_time or 0)


def test_a_completed_run_with_two_phases_and_its_threads() -> None:
    s = Session()
    s.feed(synthetic("workflow_run_completed"))
    spans = list(s.spans.get_finished_spans())
    turn = s.turn()
    (run,) = s.named("invoke_workflow")
    assert run.parent is not None and run.parent.span_id == turn.context.span_id
    r = attrs(run)
    assert (r["gen_ai.operation.name"], r["gen_ai.provider.name"]) == ("invoke_workflow", "anthropic")
    assert (r["anthropic.workflow_run.id"], r["anthropic.workflow_run.name"]) == (RUN, "Review the contracts")
    assert (r["anthropic.workflow_run.phases"], r["anthropic.workflow_run.threads"]) == (2, 4)
    assert r["anthropic.workflow_run.result"] == "completed" and run.status.status_code is StatusCode.UNSET
    assert r["gen_ai.conversation.id"] == "sesn_outcome"
    assert "gen_ai.workflow.name" not in r  # reserved by the conventions for low-cardinality names
    read, reconcile = children_of(spans, run)
    assert (read.name, reconcile.name) == ("workflow_phase Read the contracts", "workflow_phase Reconcile the findings")
    assert attrs(read)["anthropic.workflow_run.phase.id"] == "wphs_011READ0000000000"
    readers = children_of(spans, read)
    assert [t.name for t in readers] == ["invoke_agent contract-reader"] * 3
    assert all(attrs(t)["anthropic.workflow_run.id"] == RUN for t in readers)
    assert all("anthropic.span.incomplete" not in attrs(t) for t in readers)
    assert [t.name for t in children_of(spans, reconcile)] == ["invoke_agent reconciler"]
    # The run's agents are not the coordinator's subagents, and the primary thread is neither.
    assert [c.name for c in children_of(spans, turn) if c.name.startswith("invoke")] == ["invoke_workflow"]
    for span in spans:  # every run span lies inside its parent (the run ended within its turn here)
        for child in children_of(spans, span):
            assert (span.start_time or 0) <= (child.start_time or 0) <= (child.end_time or 0) <= (span.end_time or 0)


def test_a_failing_run_a_refused_run_and_a_stopped_run() -> None:
    s = Session()
    s.feed(synthetic("workflow_run_errors"))
    turn = s.turn()
    refused = [e for e in turn.events if e.name == "workflow_run.error"]
    assert [dict(e.attributes or {})["type"] for e in refused] == ["max_workflow_runs_error"]
    failed, stopped = sorted(s.named("invoke_workflow"), key=lambda r: r.start_time or 0)
    assert attrs(failed)["anthropic.workflow_run.result"] == "error"
    assert failed.status.status_code is StatusCode.ERROR and attrs(failed)["error.type"] == "program_error"
    assert [e.name for e in failed.events] == ["workflow_run.status_running", "workflow_run.error"]
    (migrator,) = s.named("invoke_agent migrator")
    assert attrs(migrator)["anthropic.span.incomplete"] is True  # still open when its phase ended
    (phase,) = s.named("workflow_phase Migrate")
    assert migrator.end_time == phase.end_time
    assert attrs(stopped)["anthropic.workflow_run.result"] == "stopped"
    assert stopped.status.status_code is StatusCode.UNSET
    assert [e.name for e in stopped.events] == ["workflow_run.status_idle"]


def _run_outliving_its_turn() -> list[dict[str, Any]]:
    """A run created in turn 1, still open when a budget pause idles the session; it ends with no turn open; the
    agent then resumes on its own (turn 2)."""
    events = synthetic("workflow_run_completed")
    first_idle = next(i for i, e in enumerate(events) if e["type"] == "session.thread_status_idle")
    before, after = events[:first_idle], events[first_idle:-1]
    return [*before, ev.idle("budget_reached"), *after[:-1], ev.running(), *after[-1:], ev.idle()]


def test_a_run_that_outlives_its_turn_ends_at_its_status_ended() -> None:
    s = Session()
    s.feed(_run_outliving_its_turn())
    paused, resumed = s.turns()
    assert attrs(paused)["anthropic.turn.stop_reason"] == "budget_reached"
    (run,) = s.named("invoke_workflow")
    assert run.parent is not None and run.parent.span_id == paused.context.span_id
    assert (paused.end_time or 0) < (run.end_time or 0)  # the one child that may outlive its turn
    assert attrs(run)["anthropic.workflow_run.result"] == "completed" and "anthropic.span.incomplete" not in attrs(run)
    assert attrs(resumed)["anthropic.turn.trigger"] == "resume"


def test_a_run_still_open_when_its_session_is_terminated_ends_incomplete() -> None:
    s = Session()
    events = synthetic("workflow_run_completed")
    created = next(i for i, e in enumerate(events) if e["type"] == "workflow_run.phase_started")
    s.feed([*events[: created + 2], ev.event("session.status_terminated")])
    (run,) = s.named("invoke_workflow")
    (phase,) = s.named("workflow_phase Read the contracts")
    (reader,) = s.named("invoke_agent contract-reader")
    assert all(attrs(x)["anthropic.span.incomplete"] is True for x in (run, phase, reader))


def test_a_run_blocked_on_a_confirmation_is_idle_then_runs_on() -> None:
    s = Session()
    use = ev.tool_use("deploy", session_thread_id="sthr_worker", evaluated_permission="ask")
    s.feed(
        [
            ev.user_message(),
            ev.event("workflow_run.created", workflow_run_id="wrun_b", name="Deploy", phases=[]),
            ev.event(
                "session.thread_created",
                session_thread_id="sthr_worker",
                agent_name="deployer",
                workflow_run_id="wrun_b",
            ),
            use,
            ev.event("workflow_run.status_idle", workflow_run_id="wrun_b"),
            ev.idle("requires_action", event_ids=[use["id"]]),
        ]
    )
    s.send(ev.event("user.tool_confirmation", id=None, tool_use_id=use["id"], result="allow"))
    s.feed(
        [
            ev.event("workflow_run.status_running", workflow_run_id="wrun_b"),
            ev.tool_result(use["id"]),
            ev.event("session.thread_status_idle", session_thread_id="sthr_worker", stop_reason={"type": "end_turn"}),
            ev.event("workflow_run.status_ended", workflow_run_id="wrun_b", result={"type": "completed"}),
            ev.idle(),
        ]
    )
    (run,) = s.named("invoke_workflow")
    assert [e.name for e in run.events] == ["workflow_run.status_idle", "workflow_run.status_running"]
    (deployer,) = s.named("invoke_agent deployer")
    (tool,) = s.named("execute_tool deploy")
    assert tool.parent is not None and tool.parent.span_id == deployer.context.span_id  # under the run's agent
    assert attrs(tool)["anthropic.tool.confirmation"] == "allow"


def test_the_workflow_duration_metric_is_recorded_per_run_that_ended() -> None:
    s = Session()
    s.feed(synthetic("workflow_run_completed"))
    data = s.metrics.get_metrics_data()
    assert data is not None
    (metric,) = [
        m
        for r in data.resource_metrics
        for sc in r.scope_metrics
        for m in sc.metrics
        if m.name == "gen_ai.invoke_workflow.duration"
    ]
    (point,) = metric.data.data_points
    assert point.count == 1 and point.sum == pytest.approx(3.23)
    assert list(point.explicit_bounds) == [1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200]
    assert dict(point.attributes)["gen_ai.operation.name"] == "invoke_workflow"


def test_a_run_through_the_sdk_on_one_long_lived_stream(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Spans
) -> None:
    events = _run_outliving_its_turn()
    server.queue_send("sesn_workflow", [events[0]["id"]])
    server.queue_stream("sesn_workflow", [Event(e, 0.002) for e in events])
    loop_client.beta.sessions.events.send("sesn_workflow", events=[message()])
    with loop_client.beta.sessions.events.stream("sesn_workflow") as stream:
        seen = [e.type for e in stream]
    assert seen == [e["type"] for e in events]
    paused, resumed = sorted(spans.turns(), key=lambda t: t.start_time or 0)
    (run,) = spans.named("invoke_workflow")
    assert run.parent is not None and run.parent.span_id == paused.context.span_id
    assert attrs(run)["anthropic.workflow_run.result"] == "completed"
    assert len(spans.named("workflow_phase Read the contracts")) == 1
    assert attrs(resumed)["anthropic.turn.trigger"] == "resume"


def test_child_spans_off_makes_no_run_or_evaluation_spans_or_their_metrics() -> None:
    s = Session(child_spans=False)
    s.feed(synthetic("workflow_run_completed"))
    t = Session(child_spans=False)
    t.feed(synthetic("outcome_revise_then_satisfied"))
    for session in (s, t):
        assert [sp.name.split(" ")[0] for sp in session.spans.get_finished_spans()] == ["invoke_agent"]
        data = session.metrics.get_metrics_data()
        operations = {
            dict(p.attributes or {}).get("gen_ai.operation.name")
            for r in (data.resource_metrics if data else [])
            for sc in r.scope_metrics
            for m in sc.metrics
            for p in m.data.data_points
        }
        assert operations == {"invoke_agent"}
    assert attrs(t.turn())["anthropic.outcome.result"] == "satisfied"  # the turn still says how the outcome went
