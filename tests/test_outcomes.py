"""SPEC §3.4, outcomes, on the pure core: `user.define_outcome` opens one turn; each grader cycle is an `evaluation
outcome` span and a `gen_ai.evaluation.result` event; steering messages join the outcome; a verdict is no failure.

The event orders are the synthetic files in `cassettes/` (reconstructed from SDK docstrings and Anthropic's docs)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from cma_tracing.config import options_from
from cma_tracing.instrumentation.fields import timestamp_ns
from tests.support import events as ev
from tests.support.core import Session, synthetic
from tests.support.drive import Drive


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def verdicts(span: ReadableSpan) -> list[dict[str, Any]]:
    return [dict(e.attributes or {}) for e in span.events if e.name == "gen_ai.evaluation.result"]


def test_an_outcome_revised_then_satisfied_is_one_turn_with_a_span_per_evaluation_cycle() -> None:
    s = Session()
    s.feed(synthetic("outcome_revise_then_satisfied"))
    turn = s.turn()
    a = attrs(turn)
    assert a["anthropic.turn.trigger"] == "user.define_outcome"
    assert a["anthropic.outcome.id"] == "outc_011REVISE000000000000"
    assert a["anthropic.outcome.max_iterations"] == 3
    assert (a["anthropic.outcome.result"], a["anthropic.outcome.iterations"]) == ("satisfied", 2)
    assert a["anthropic.turn.stop_reason"] == "end_turn" and turn.status.status_code is StatusCode.OK
    first, second = sorted(s.evaluations(), key=lambda e: e.start_time or 0)
    for span, label, iteration in ((first, "needs_revision", 0), (second, "satisfied", 1)):
        e = attrs(span)
        assert span.parent is not None and span.parent.span_id == turn.context.span_id
        assert span.kind is SpanKind.INTERNAL and span.status.status_code is StatusCode.UNSET  # a verdict, no failure
        assert (e["gen_ai.operation.name"], e["gen_ai.evaluation.name"]) == ("evaluation", "outcome")
        assert (e["gen_ai.evaluation.score.label"], e["anthropic.outcome.iteration"]) == (label, iteration)
        assert e["anthropic.outcome.id"] == "outc_011REVISE000000000000"
        assert e["anthropic.outcome.heartbeats"] == 2
        assert e["gen_ai.usage.input_tokens"] > 0 and e["gen_ai.usage.output_tokens"] == 350
        assert (span.end_time or 0) - (span.start_time or 0) == 12 * 10**9  # start → end stamps of the cycle
    grader = sum(attrs(e)["gen_ai.usage.input_tokens"] for e in (first, second))
    agent = sum(attrs(c)["gen_ai.usage.input_tokens"] for c in s.spans.get_finished_spans() if c.name == "chat")
    assert a["gen_ai.usage.input_tokens"] == grader + agent  # the grader's tokens count in the turn's totals
    assert [(v["gen_ai.evaluation.score.label"], v["anthropic.outcome.iteration"]) for v in verdicts(turn)] == [
        ("needs_revision", 0),
        ("satisfied", 1),
    ]
    assert "gen_ai.evaluation.explanation" not in verdicts(turn)[0]  # content is off


def test_max_iterations_reached_keeps_the_final_reply_after_the_last_verdict_in_the_turn() -> None:
    s = Session()
    events = synthetic("outcome_max_iterations_reached")
    s.feed(events)
    a = attrs(s.turn())
    assert (a["anthropic.outcome.result"], a["anthropic.outcome.iterations"]) == ("max_iterations_reached", 2)
    chats = sorted((c for c in s.spans.get_finished_spans() if c.name == "chat"), key=lambda c: c.start_time or 0)
    assert chats[-1].start_time == timestamp_ns(events[-4]["processed_at"])  # the reply after the last verdict


def test_an_outcome_interrupted_during_evaluation_has_that_verdict() -> None:
    s = Session()
    s.feed(synthetic("outcome_interrupted_during_evaluation"))
    a = attrs(s.turn())
    assert (a["anthropic.outcome.result"], a["anthropic.outcome.iterations"]) == ("interrupted", 1)
    assert [v["gen_ai.evaluation.score.label"] for v in verdicts(s.turn())] == ["interrupted"]


def test_an_outcome_interrupted_before_any_evaluation_ends_interrupted_with_no_cycle() -> None:
    s = Session()
    outcome = ev.event("user.define_outcome", description="d", outcome_id="outc_1", max_iterations=5)
    start = ev.request_start()
    s.feed([outcome, ev.running(), start, ev.request_end(start["id"], 10, 1), ev.event("user.interrupt"), ev.idle()])
    a = attrs(s.turn())
    assert (a["anthropic.outcome.result"], a["anthropic.outcome.iterations"]) == ("interrupted", 0)
    assert a["anthropic.outcome.max_iterations"] == 5
    assert s.evaluations() == []


def test_a_steering_message_joins_the_outcome_and_one_after_a_terminal_verdict_does_not() -> None:
    s = Session(capture_content=True)
    events = synthetic("outcome_revise_then_satisfied")
    satisfied = next(i for i, e in enumerate(events) if e.get("result") == "satisfied")
    steer = ev.user_message(text="Use euros, please.")
    s.feed(events[:10])
    s.feed([{**steer, "processed_at": events[9]["processed_at"]}])
    s.feed(events[10 : satisfied + 1])
    late = ev.user_message(text="Now the next report.")
    s.feed([{**late, "processed_at": events[satisfied]["processed_at"]}, ev.idle()])
    first, second = s.turns()
    assert attrs(first)["anthropic.turn.stop_reason"] == "superseded"
    assert attrs(first)["anthropic.outcome.result"] == "satisfied"
    assert [e.name for e in first.events if e.name == "user.message"] == ["user.message"]
    inputs = json.loads(attrs(first)["gen_ai.input.messages"])
    assert [p["content"] for m in inputs for p in m["parts"]] == [
        "Write a competitor-pricing report as report.md",
        "Use euros, please.",
    ]
    assert "Every claim cites a URL" in attrs(first)["anthropic.outcome.rubric"]
    assert attrs(second)["anthropic.turn.trigger"] == "user.message"


def test_a_steering_message_sent_by_this_process_is_recorded_once() -> None:
    s = Session()
    outcome = ev.event("user.define_outcome", id=None, description="d")
    s.send(outcome, echo=[{**outcome, "id": "sevt_o", "outcome_id": "outc_sent"}])
    s.feed([{**outcome, "id": "sevt_o", "outcome_id": "outc_sent"}, ev.running()])
    steer = ev.user_message(id=None, text="shorter")
    joined = s.send(steer, echo=[{**steer, "id": "sevt_steer"}])
    assert joined is not None and not joined.opened
    s.feed([{**steer, "id": "sevt_steer", "processed_at": None}, {**steer, "id": "sevt_steer"}, ev.idle()])
    turn = s.turn()
    assert attrs(turn)["anthropic.outcome.id"] == "outc_sent"
    assert [e.name for e in turn.events] == ["user.message"]


def test_two_outcomes_chained_on_one_session_are_two_turns() -> None:
    s = Session()
    events = synthetic("outcome_revise_then_satisfied")
    s.feed(events)
    s.feed([{**e, "id": e["id"] + "_2", **({"outcome_id": "outc_2"} if "outcome_id" in e else {})} for e in events])
    first, second = s.turns()
    assert [attrs(t)["anthropic.turn.index"] for t in (first, second)] == [1, 2]
    assert [attrs(t)["anthropic.outcome.id"] for t in (first, second)] == ["outc_011REVISE000000000000", "outc_2"]
    assert len(s.evaluations()) == 4


@pytest.mark.parametrize(
    ("mode", "on_span", "as_log"), [("span", True, False), ("log", False, True), ("both", True, True)]
)
def test_verdicts_go_to_span_events_log_records_or_both(mode: str, on_span: bool, as_log: bool) -> None:
    s = Session(evaluation_events=mode, capture_content=True)
    s.feed(synthetic("outcome_revise_then_satisfied"))
    turn = s.turn()
    assert bool(verdicts(turn)) is on_span
    records = [r for r in s.logs.get_finished_logs() if r.log_record.event_name == "gen_ai.evaluation.result"]
    assert len(records) == (2 if as_log else 0)
    for record in records:
        assert record.log_record.span_id == turn.context.span_id  # in the turn span's context
        assert record.log_record.attributes is not None
        assert "gen_ai.evaluation.explanation" in record.log_record.attributes  # content is on
    if on_span:
        assert verdicts(turn)[0]["gen_ai.evaluation.explanation"] == "Criterion 3 failed: no summary table."


def test_the_evaluation_events_environment_variable_and_a_bad_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CMA_TRACING_EVALUATION_EVENTS", "LOG")
    assert options_from({}).evaluation_events == (False, True)
    monkeypatch.setenv("CMA_TRACING_EVALUATION_EVENTS", "sometimes")
    assert options_from({}).evaluation_events == (True, False)


def test_each_evaluation_cycle_records_its_duration_and_the_graders_tokens() -> None:
    s = Session()
    s.feed(synthetic("outcome_revise_then_satisfied"))
    data = s.metrics.get_metrics_data()
    assert data is not None
    found = {
        (metric.name, dict(point.attributes or {}).get("gen_ai.token.type")): point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.data.data_points
        if dict(point.attributes or {}).get("gen_ai.operation.name") == "evaluation"
    }
    duration = found[("gen_ai.client.operation.duration", None)]
    assert duration.count == 2 and duration.sum == pytest.approx(24.0)
    assert found[("gen_ai.client.token.usage", "output")].sum == 700
    assert dict(duration.attributes)["gen_ai.agent.name"] == "reporter"


# -- through the real SDK over the loopback server ------------------------------------------------------------------


def _queue_outcome(server: Any, session_id: str) -> list[dict[str, Any]]:
    """The synthetic revise-then-satisfied outcome, its echo id answering the send, a few ms between events."""
    from cma_tracing.demo.loopback import Event

    events = synthetic("outcome_revise_then_satisfied")
    server.queue_send(session_id, [events[0]["id"]])
    server.queue_stream(session_id, [Event(e, 0.002) for e in events])
    return events


def _outcome_request(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {k: events[0][k] for k in ("type", "description", "rubric", "max_iterations")}


def _assert_outcome_trace(spans: Any) -> None:
    turn = spans.turn()
    a = attrs(turn)
    assert a["anthropic.turn.trigger"] == "user.define_outcome"
    assert (a["anthropic.outcome.result"], a["anthropic.outcome.iterations"]) == ("satisfied", 2)
    assert a["anthropic.outcome.id"] == "outc_011REVISE000000000000"  # from the echo: the send could not know it
    cycles = [s for s in spans.children(turn) if s.name == "evaluation outcome"]
    assert [attrs(c)["gen_ai.evaluation.score.label"] for c in cycles] == ["needs_revision", "satisfied"]
    for cycle in cycles:  # timed by when the client saw its events, inside the turn
        assert (turn.start_time or 0) <= (cycle.start_time or 0) < (cycle.end_time or 0) <= (turn.end_time or 0)
    assert len(verdicts(turn)) == 2


@pytest.mark.asyncio
async def test_an_outcome_sent_through_the_sdk_is_traced_with_its_evaluation_cycles(
    instrumented: Any, server: Any, sdk: Drive, spans: Any
) -> None:
    sid = f"sesn_outcome_{sdk.mode}"
    events = _queue_outcome(server, sid)
    await sdk.send(sid, _outcome_request(events))
    assert await sdk.stream(sid) == [e["type"] for e in events]  # the app sees every event, unchanged
    _assert_outcome_trace(spans)


@pytest.mark.asyncio
async def test_through_the_sdk_a_steering_message_joins_and_a_second_outcome_is_the_next_turn(
    instrumented: Any, server: Any, sdk: Drive, spans: Any
) -> None:
    """Steering mid-outcome, two outcomes chained on one session, the second interrupted before any evaluation."""
    from cma_tracing.demo.loopback import Event

    sid = "sesn_outcome_chain"
    events = synthetic("outcome_revise_then_satisfied")
    first, rest = events[0], events[1:]
    steer_at = next(i for i, e in enumerate(rest) if e["type"] == "span.outcome_evaluation_start")
    steer = {"type": "user.message", "content": [{"type": "text", "text": "Use euros."}]}
    server.queue_send(sid, [first["id"]])
    server.queue_stream(sid, [Event(e) for e in [first, *rest[:steer_at]]])
    server.queue_send(sid, ["sevt_steer"])
    server.queue_stream(sid, [Event(e) for e in [{**steer, "id": "sevt_steer"}, *rest[steer_at:]]])
    second = {**first, "id": "sevt_second_outcome", "outcome_id": "outc_second"}
    server.queue_send(sid, [second["id"]])
    server.queue_stream(sid, [Event(second), Event(ev.event("user.interrupt")), Event(ev.idle())])
    await sdk.send(sid, _outcome_request(events))
    assert await sdk.stream(sid) == [e["type"] for e in [first, *rest[:steer_at]]]
    await sdk.send(sid, steer)
    assert await sdk.stream(sid) == ["user.message", *(e["type"] for e in rest[steer_at:])]
    await sdk.send(sid, _outcome_request(events))
    assert await sdk.stream(sid) == ["user.define_outcome", "user.interrupt", "session.status_idle"]
    steered, interrupted = sorted(spans.turns(), key=lambda t: t.start_time or 0)
    assert (attrs(steered)["anthropic.outcome.result"], attrs(steered)["anthropic.turn.stop_reason"]) == (
        "satisfied",
        "end_turn",
    )
    assert [e.name for e in steered.events if e.name == "user.message"] == ["user.message"]  # once, at its send
    i = attrs(interrupted)
    assert (i["anthropic.turn.index"], i["anthropic.outcome.id"]) == (2, "outc_second")
    assert (i["anthropic.outcome.result"], i["anthropic.outcome.iterations"]) == ("interrupted", 0)  # before any cycle
