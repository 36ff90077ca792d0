"""SPEC §3.5, workflow runs: tracked per session, `invoke_workflow` under the turn open at `workflow_run.created`,
phases as `workflow_phase` spans, the run's threads under their phase, ending at `status_ended` even after the turn.

The event orders are the synthetic files in `cassettes/` (reconstructed from SDK docstrings and Anthropic's docs)."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from cma_tracing.demo.loopback import Event, FakeCMAServer
from cma_tracing.instrumentation.protocol import StreamEnd
from cma_tracing.instrumentation.registry import SessionRegistry
from cma_tracing.instrumentation.workflows import MAX_RUNS, MAX_THREADS_PER_RUN
from tests.support.spans import Spans
from tests.support import events as ev
from tests.support.core import Session, synthetic
from tests.support.drive import Drive
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


def _run_open_after_its_turn() -> list[dict[str, Any]]:
    """A run created in turn 1 and still in its first phase when a budget pause ends that turn; one more of its
    threads idles after."""
    events = synthetic("workflow_run_completed")
    first_idle = next(i for i, e in enumerate(events) if e["type"] == "session.thread_status_idle")
    return [*events[:first_idle], ev.idle("budget_reached"), events[first_idle + 1]]


def _assert_ended_incomplete_at(s: Session, end_ns: int) -> None:
    """The run, its open phase and its threads still running all ended incomplete at `end_ns`."""
    (run,) = s.named("invoke_workflow")
    (phase,) = s.named("workflow_phase Read the contracts")
    readers = s.named("invoke_agent contract-reader")
    assert len(readers) == 3
    open_then = [r for r in readers if "anthropic.span.incomplete" in attrs(r)]
    assert len(open_then) == 2  # the third had idled: it ended complete, before
    assert all(attrs(x)["anthropic.span.incomplete"] is True for x in (run, phase, *open_then))
    assert all(x.end_time == end_ns for x in (run, phase, *open_then))
    assert "anthropic.workflow_run.result" not in attrs(run)
    assert attrs(run)["anthropic.workflow_run.threads"] == 3


@pytest.mark.parametrize(
    ("gone", "stop"), [("session.status_terminated", "terminated"), ("session.deleted", "deleted")]
)
def test_a_run_still_open_when_its_session_goes_away_during_a_turn_ends_incomplete(gone: str, stop: str) -> None:
    s = Session()
    events = synthetic("workflow_run_completed")
    created = next(i for i, e in enumerate(events) if e["type"] == "workflow_run.phase_started")
    s.feed([*events[: created + 2], ev.event(gone)])
    (run,) = s.named("invoke_workflow")
    (phase,) = s.named("workflow_phase Read the contracts")
    (reader,) = s.named("invoke_agent contract-reader")
    assert all(attrs(x)["anthropic.span.incomplete"] is True for x in (run, phase, reader))
    assert attrs(s.turn())["anthropic.turn.stop_reason"] == stop


@pytest.mark.parametrize("gone", ["session.status_terminated", "session.deleted"])
def test_a_run_that_outlived_its_turn_ends_incomplete_when_the_session_goes_away_with_no_turn_open(gone: str) -> None:
    """The terminated and deleted rows do not resume a turn: with none open they must still end the session's runs."""
    s = Session()
    s.feed(_run_open_after_its_turn())
    assert s.named("invoke_workflow") == []  # still open after its turn ended
    s.feed([ev.event(gone)])
    _assert_ended_incomplete_at(s, s.now)
    assert len(s.turns()) == 1  # nothing opened a turn
    assert s.tracker.workflows is None


@pytest.mark.parametrize("how", ["shutdown", "drop"])
def test_a_run_still_open_when_the_sessions_state_goes_ends_incomplete(how: str) -> None:
    """At shutdown (what `uninstrument()` and interpreter exit do), or when the stream closed after the turn ended
    and nothing else holds the session (its state goes, and its runs with it: nothing would ever end them)."""
    s = Session()
    registry = SessionRegistry(s.tracker.telemetry, orphan_timeout_s=300)
    tracker = registry.acquire("sesn_outcome", stream=True)
    for event in _run_open_after_its_turn():
        s.now += 10**6
        tracker.on_event(event, s.now)
    assert s.named("invoke_workflow") == []
    if how == "shutdown":
        registry.shutdown()
    else:
        registry.apply(tracker, tracker.stream_finished(StreamEnd.ENDED, s.now))
        assert registry.active_count() == 0
    (run,) = s.named("invoke_workflow")
    assert attrs(run)["anthropic.span.incomplete"] is True
    phases = s.named("workflow_phase Read the contracts")
    assert phases and all(attrs(p)["anthropic.span.incomplete"] is True for p in phases)


def test_a_phase_entered_twice_is_two_spans() -> None:
    s = Session()
    phases = [{"id": "wphs_draft", "name": "Draft"}, {"id": "wphs_check", "name": "Check"}]
    entries = [
        ev.event("workflow_run.phase_started", workflow_run_id="wrun_r", workflow_run_phase_id=p)
        for p in ("wphs_draft", "wphs_check", "wphs_draft")
    ]
    body = [ev.user_message(), ev.event("workflow_run.created", workflow_run_id="wrun_r", name="Loop", phases=phases)]
    for entry in entries:
        ended = ev.event(
            "workflow_run.phase_ended",
            workflow_run_id="wrun_r",
            workflow_run_phase_id=entry["workflow_run_phase_id"],
            phase_started_id=entry["id"],
        )
        body += [entry, ended]
    body += [ev.event("workflow_run.status_ended", workflow_run_id="wrun_r", result={"type": "completed"}), ev.idle()]
    s.feed(body)
    (run,) = s.named("invoke_workflow")
    spans = list(s.spans.get_finished_spans())
    assert [p.name for p in children_of(spans, run)] == [
        "workflow_phase Draft",
        "workflow_phase Check",
        "workflow_phase Draft",
    ]
    first, _, again = children_of(spans, run)
    assert (first.end_time or 0) < (again.start_time or 0)
    assert all("anthropic.span.incomplete" not in attrs(p) for p in children_of(spans, run))


def test_runs_past_the_per_session_bound_make_no_span_and_raise_nothing() -> None:
    s = Session()
    ids = [f"wrun_{i:03d}" for i in range(MAX_RUNS + 3)]
    body = [ev.user_message()]
    body += [ev.event("workflow_run.created", workflow_run_id=r, name=r, phases=[]) for r in ids]
    body += [ev.event("workflow_run.status_running", workflow_run_id=r) for r in ids]
    body += [
        ev.event("session.thread_created", session_thread_id=f"sthr_{r}", agent_name="a", workflow_run_id=r)
        for r in ids
    ]
    s.feed(body)
    assert s.tracker.workflows is not None and s.tracker.workflows.open_runs() == MAX_RUNS
    ended = [ev.event("workflow_run.status_ended", workflow_run_id=r, result={"type": "completed"}) for r in ids]
    s.feed([*ended[MAX_RUNS:], *ended[:MAX_RUNS], ev.idle()])  # the untraced ones end while the bound is full
    runs = s.named("invoke_workflow")
    assert sorted(attrs(r)["anthropic.workflow_run.id"] for r in runs) == ids[:MAX_RUNS]
    assert all("anthropic.span.incomplete" not in attrs(r) for r in runs)  # the later ones never made one
    assert len(s.named("invoke_agent a")) == MAX_RUNS
    assert attrs(s.turn())["anthropic.turn.stop_reason"] == "end_turn"
    # The bound holds open runs, not runs ever: once those ended, a new run is traced.
    s.feed([ev.user_message(), ev.event("workflow_run.created", workflow_run_id="wrun_later", phases=[])])
    s.feed([ev.event("workflow_run.status_ended", workflow_run_id="wrun_later", result={"type": "completed"})])
    assert len(s.named("invoke_workflow")) == MAX_RUNS + 1


def test_threads_past_the_per_run_bound_make_no_span_but_are_counted() -> None:
    s = Session()
    body = [ev.user_message(), ev.event("workflow_run.created", workflow_run_id="wrun_big", phases=[])]
    body += [
        ev.event("session.thread_created", session_thread_id=f"sthr_{i}", agent_name="w", workflow_run_id="wrun_big")
        for i in range(MAX_THREADS_PER_RUN + 5)
    ]
    body += [
        ev.event("session.thread_status_idle", session_thread_id=f"sthr_{i}", stop_reason={"type": "end_turn"})
        for i in range(MAX_THREADS_PER_RUN + 5)
    ]
    body += [ev.event("workflow_run.status_ended", workflow_run_id="wrun_big", result={"type": "completed"}), ev.idle()]
    s.feed(body)
    (run,) = s.named("invoke_workflow")
    assert attrs(run)["anthropic.workflow_run.threads"] == MAX_THREADS_PER_RUN + 5  # counts all
    threads = s.named("invoke_agent w")
    assert len(threads) == MAX_THREADS_PER_RUN
    assert all("anthropic.span.incomplete" not in attrs(t) for t in threads)
    assert attrs(s.turn())["anthropic.turn.stop_reason"] == "end_turn"


def test_a_run_whose_created_was_never_seen_starts_at_its_first_event_marked_incomplete() -> None:
    """A process that attached mid-run: the run's span starts at the first of its events seen, under the turn
    open then, and still ends at its status_ended with its result."""
    s = Session()
    s.feed(
        [
            ev.user_message(),
            ev.event("workflow_run.phase_started", workflow_run_id="wrun_unseen", workflow_run_phase_id="wphs_x"),
            ev.event(
                "session.thread_created", session_thread_id="sthr_u", agent_name="u", workflow_run_id="wrun_unseen"
            ),
            ev.event("session.thread_status_idle", session_thread_id="sthr_u", stop_reason={"type": "end_turn"}),
            ev.event("workflow_run.status_ended", workflow_run_id="wrun_unseen", result={"type": "completed"}),
            ev.idle(),
        ]
    )
    (run,) = s.named("invoke_workflow")
    turn = s.turn()
    assert run.parent is not None and run.parent.span_id == turn.context.span_id
    r = attrs(run)
    assert (r["anthropic.workflow_run.id"], r["anthropic.span.incomplete"]) == ("wrun_unseen", True)
    assert r["anthropic.workflow_run.result"] == "completed" and r["anthropic.workflow_run.threads"] == 1
    assert "anthropic.workflow_run.name" not in r and "anthropic.workflow_run.phases" not in r  # only created says
    (phase,) = s.named("workflow_phase")  # no planned name to show
    assert attrs(phase)["anthropic.workflow_run.phase.id"] == "wphs_x"
    (thread,) = s.named("invoke_agent u")
    assert thread.parent is not None and thread.parent.span_id == phase.context.span_id


class _Blocked:
    """A run whose thread asks to use a tool: the run and the session idle (`requires_action`); the app confirms;
    the run goes on and ends, and so does the turn."""

    def __init__(self) -> None:
        self.use = ev.tool_use("deploy", session_thread_id="sthr_worker", evaluated_permission="ask")
        self.before = [
            ev.user_message(),
            ev.running(),
            ev.event("workflow_run.created", workflow_run_id="wrun_b", name="Deploy", phases=[]),
            ev.event(
                "session.thread_created",
                session_thread_id="sthr_worker",
                agent_name="deployer",
                workflow_run_id="wrun_b",
            ),
            self.use,
            ev.event("workflow_run.status_idle", workflow_run_id="wrun_b"),
            ev.idle("requires_action", event_ids=[self.use["id"]]),
        ]
        self.confirmation = {"type": "user.tool_confirmation", "tool_use_id": self.use["id"], "result": "allow"}
        self.after = [
            ev.event("workflow_run.status_running", workflow_run_id="wrun_b"),
            ev.tool_result(self.use["id"]),
            ev.event("session.thread_status_idle", session_thread_id="sthr_worker", stop_reason={"type": "end_turn"}),
            ev.event("workflow_run.status_ended", workflow_run_id="wrun_b", result={"type": "completed"}),
            ev.idle(),
        ]


def _assert_blocked_then_ran_on(found: Session | Spans) -> None:
    turns = found.turns()
    assert [attrs(t)["anthropic.turn.stop_reason"] for t in turns] == ["end_turn"]  # one turn, waited through
    (turn,) = turns
    assert [e.name for e in turn.events if e.name == "user.tool_confirmation"] == ["user.tool_confirmation"]
    (run,) = found.named("invoke_workflow")
    assert run.parent is not None and run.parent.span_id == turn.context.span_id
    assert [e.name for e in run.events] == ["workflow_run.status_idle", "workflow_run.status_running"]
    r = attrs(run)
    assert r["anthropic.workflow_run.result"] == "completed" and "anthropic.span.incomplete" not in r
    (deployer,) = found.named("invoke_agent deployer")
    assert deployer.parent is not None and deployer.parent.span_id == run.context.span_id
    assert "anthropic.span.incomplete" not in attrs(deployer)
    (tool,) = found.named("execute_tool deploy")
    assert tool.parent is not None and tool.parent.span_id == deployer.context.span_id  # under the run's agent
    assert attrs(tool)["anthropic.tool.confirmation"] == "allow"
    assert "anthropic.span.incomplete" not in attrs(tool)  # it ended at its result, not with the turn
    assert (deployer.start_time or 0) <= (tool.start_time or 0) <= (tool.end_time or 0) <= (deployer.end_time or 0)
    assert (tool.end_time or 0) <= (run.end_time or 0) <= (turn.end_time or 0)


def test_a_run_blocked_on_a_confirmation_is_idle_then_runs_on() -> None:
    s = Session()
    blocked = _Blocked()
    s.feed(blocked.before)
    s.send({**blocked.confirmation, "id": "sevt_confirm"})
    s.feed(blocked.after)
    _assert_blocked_then_ran_on(s)


@pytest.mark.asyncio
async def test_a_run_blocked_on_a_confirmation_through_the_sdk_runs_on_after_the_apps_answer(
    instrumented: Any, server: FakeCMAServer, sdk: Drive, spans: Spans
) -> None:
    """The app reads to the `requires_action` idle (the server ends that stream), confirms, and streams again."""
    sid = "sesn_blocked"
    blocked = _Blocked()
    echo = {**blocked.confirmation, "id": "sevt_confirm", "processed_at": blocked.after[0]["processed_at"]}
    server.queue_send(sid, [blocked.before[0]["id"]])
    server.queue_stream(sid, [Event(e, 0.002) for e in blocked.before])
    server.queue_send(sid, ["sevt_confirm"])
    server.queue_stream(sid, [Event(e, 0.002) for e in [echo, *blocked.after]])
    await sdk.send(sid, message())
    assert await sdk.stream(sid) == [e["type"] for e in blocked.before]
    assert spans.turns() == []  # waiting on the app
    await sdk.send(sid, blocked.confirmation)
    assert await sdk.stream(sid) == ["user.tool_confirmation", *(e["type"] for e in blocked.after)]
    _assert_blocked_then_ran_on(spans)


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


@pytest.mark.asyncio
async def test_a_run_outliving_its_turn_through_the_sdk_on_one_long_lived_stream(
    instrumented: Any, server: FakeCMAServer, sdk: Drive, spans: Spans
) -> None:
    events = _run_outliving_its_turn()
    server.queue_send("sesn_workflow", [events[0]["id"]])
    server.queue_stream("sesn_workflow", [Event(e, 0.002) for e in events])
    await sdk.send("sesn_workflow", message())
    assert await sdk.stream("sesn_workflow") == [e["type"] for e in events]
    paused, resumed = sorted(spans.turns(), key=lambda t: t.start_time or 0)
    (run,) = spans.named("invoke_workflow")
    assert run.parent is not None and run.parent.span_id == paused.context.span_id
    assert (paused.end_time or 0) < (run.end_time or 0)  # the one child that may outlive its turn
    assert attrs(run)["anthropic.workflow_run.result"] == "completed" and "anthropic.span.incomplete" not in attrs(run)
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
