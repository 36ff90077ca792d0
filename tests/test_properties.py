"""Property tests on the core: for any sequence of events and calls, nothing raises and every span ends once."""

from __future__ import annotations

import importlib
from typing import Any, Final

import pydantic
from anthropic._models import construct_type
from anthropic.types.beta.sessions import BetaManagedAgentsStreamSessionEvents
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind

from cma_tracing.instrumentation.event_table import EVENT_ROLES
from cma_tracing.instrumentation.protocol import Origin, StreamEnd
from cma_tracing.instrumentation.registry import SessionRegistry
from cma_tracing.instrumentation.telemetry import Telemetry
from tests.support import events as ev

_ADAPTER: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(BetaManagedAgentsStreamSessionEvents)


class CountingSpan:
    """Delegates to a real span and counts `end` calls, keeping its name, kind and start time."""

    def __init__(self, span: Any, name: str, kind: Any, start_time: Any) -> None:
        self._span = span
        self.name = name
        self.kind = kind
        self.ends = 0
        self.start_time = start_time

    def end(self, end_time: Any = None) -> None:
        self.ends += 1
        self._span.end(end_time=end_time)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._span, name)


class CountingTracer:
    def __init__(self, provider: TracerProvider | None = None) -> None:
        self._tracer = (provider or TracerProvider()).get_tracer("property")
        self.spans: list[CountingSpan] = []

    def start_span(self, *args: Any, **kwargs: Any) -> CountingSpan:
        span = CountingSpan(
            self._tracer.start_span(*args, **kwargs), args[0], kwargs.get("kind"), kwargs.get("start_time")
        )
        self.spans.append(span)
        return span


IDS = st.sampled_from([f"sevt_p{i}" for i in range(12)] + [None])
TYPES = st.sampled_from(sorted(EVENT_ROLES) + ["session.brand_new", "", "agent.x"])
STOPS = st.sampled_from(["end_turn", "requires_action", "retries_exhausted", "refusal", "odd", None])
JUNK = st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2), st.booleans())


#: What decides a turn's life, weighted so that sequences like idle(requires_action) -> running -> close come up.
LIFECYCLE_TYPES = st.sampled_from(
    ["user.message"] * 3
    + ["user.define_outcome", "span.outcome_evaluation_start", "span.outcome_evaluation_end"] * 2
    + ["session.status_idle"] * 3
    + ["session.status_running"] * 2
    + [
        "agent.thinking",
        "agent.message",
        "agent.tool_use",
        "agent.tool_result",
        "span.model_request_start",
        "span.model_request_end",
        "session.status_terminated",
        "session.deleted",
        "session.error",
        "user.custom_tool_result",
        "session.thread_status_idle",
        "agent.x",
    ]
)


@st.composite
def wire_event(draw: Any) -> Any:
    event_type = draw(st.one_of(TYPES, JUNK))
    body: dict[str, Any] = {"type": event_type}
    event_id = draw(st.one_of(IDS, JUNK))
    if event_id is not None:
        body["id"] = event_id
    if draw(st.booleans()):
        body["session_thread_id"] = draw(st.one_of(st.sampled_from(["sthr_a", "sthr_b", "sthr_c"]), JUNK))
        body["agent_name"] = draw(st.one_of(st.sampled_from(["coordinator", "helper"]), JUNK))
    if draw(st.booleans()):
        body["processed_at"] = draw(
            st.sampled_from(["2026-08-17T16:21:33.262700Z", "2026-08-17T16:21:34Z", "bad", None])
        )
    if event_type == "session.status_idle" and draw(st.booleans()):
        stop = draw(STOPS)
        body["stop_reason"] = {"type": stop, "event_ids": []} if stop else draw(JUNK)
    if event_type == "span.model_request_end":
        body["model_request_start_id"] = draw(st.one_of(IDS, JUNK))
        body["model_usage"] = draw(
            st.one_of(JUNK, st.fixed_dictionaries({"input_tokens": st.one_of(st.integers(0, 10**6), JUNK)}))
        )
    for key in ("name", "usage", "error", "content", "tool_use_id", "mcp_tool_use_id", "custom_tool_use_id", "result"):
        if draw(st.booleans()):
            body[key] = draw(JUNK)
    if draw(st.booleans()):  # workflow runs, their phases and their threads
        body["workflow_run_id"] = draw(st.one_of(st.sampled_from(["wrun_a", "wrun_b"]), JUNK))
        body["phase_started_id"] = draw(st.one_of(IDS, JUNK))
        body["workflow_run_phase_id"] = draw(st.one_of(st.sampled_from(["wphs_a"]), JUNK))
    if event_type == "span.outcome_evaluation_end":
        body["outcome_evaluation_start_id"] = draw(st.one_of(IDS, JUNK))
    if draw(st.booleans()):
        try:  # the same event as the SDK would parse it, when it can
            return _ADAPTER.validate_python(body)
        except Exception:
            return body
    return body


def steps_of(event: Any) -> Any:
    """One step of an app's life with a session: an event read, a send, a stream opened or ended, a list..."""
    return st.one_of(
        st.tuples(st.just("event"), event),
        st.tuples(
            st.just("send"),
            st.lists(
                st.one_of(event, st.just(ev.user_message(id=None)), st.just({"type": "user.define_outcome"})),
                max_size=3,
            ),
        ),
        st.tuples(st.just("initial"), st.lists(st.one_of(event, st.just(ev.user_message(id=None))), max_size=2)),
        st.tuples(st.just("send_ok"), st.lists(event, max_size=2)),
        st.tuples(st.just("send_fail"), st.none()),
        st.tuples(st.just("open"), st.none()),
        st.tuples(
            st.just("finish"),
            st.sampled_from([StreamEnd.ENDED, StreamEnd.TRANSPORT, StreamEnd.FATAL, StreamEnd.CLOSED]),
        ),
        st.tuples(st.just("list"), st.lists(event, max_size=4)),
        st.tuples(st.just("orphan"), st.integers(0, 10**12)),
        st.tuples(st.just("thread"), st.tuples(st.sampled_from(["sthr_a", "sthr_b"]), event)),
        st.tuples(
            st.just("thread_list"), st.tuples(st.sampled_from(["sthr_a", "sthr_b"]), st.lists(event, max_size=3))
        ),
    )


STEP = steps_of(wire_event())


@st.composite
def lifecycle_event(draw: Any) -> Any:
    """A well-formed event of a type that matters to a turn's life, or one that does not (no junk: the first
    property covers that). An id names one event, as on the wire: the same id again is the same event delivered
    twice, never another type."""
    event_type = draw(LIFECYCLE_TYPES)
    body: dict[str, Any] = {"type": event_type, "id": f"sevt_{event_type}_{draw(st.integers(0, 20))}"}
    if event_type == "session.status_idle":
        stop = draw(
            st.sampled_from(["requires_action", "requires_action", "end_turn", "retries_exhausted", "odd", None])
        )
        body["stop_reason"] = {"type": stop, "event_ids": []} if stop else None
    if event_type == "span.outcome_evaluation_end":
        body["result"] = draw(st.sampled_from(["needs_revision", "needs_revision", "satisfied", "failed", "new"]))
    if draw(st.integers(0, 3)) == 0:
        body["session_thread_id"] = draw(st.sampled_from(["sthr_a", "sthr_b"]))
    if draw(st.booleans()):
        body["processed_at"] = "2026-08-17T16:21:33.262700Z"
    return body


#: A session's life as the lifecycle property sees it: it starts with a user.message, and events dominate.
LIFECYCLE_STEPS = st.tuples(
    st.just(("event", {"type": "user.message", "id": "sevt_first"})),
    st.lists(
        st.integers(0, 3).flatmap(  # three steps in four are events read from the stream
            lambda k: st.tuples(st.just("event"), lifecycle_event()) if k else steps_of(lifecycle_event())
        ),
        min_size=5,
        max_size=40,
    ),
).map(lambda first_and_rest: [first_and_rest[0], *first_and_rest[1]])


def is_turn(span: CountingSpan) -> bool:
    """A turn's span (a subagent's `invoke_agent` span is internal; a model request's is `chat`)."""
    return span.kind == SpanKind.CLIENT and span.name.startswith("invoke_agent")


def run_steps(tracer: CountingTracer, steps: list[tuple[str, Any]]) -> list[Any]:
    """Feed `steps` to one session; returns the session's open turn (index, waiting) after each step. The turn still
    open ends at the registry's shutdown."""
    registry = SessionRegistry(Telemetry(tracer), orphan_timeout_s=1)  # type: ignore[arg-type]
    now = 10**18
    pending: list[Any] = []
    states: list[Any] = []
    for kind, arg in steps:
        now += 1_000_000
        tracker = registry.acquire("sesn_prop")
        if kind == "event":
            tracker.on_event(arg, now)
        elif kind == "send":
            pending.append(tracker.begin_send(arg, now))
        elif kind == "initial":
            tracker.begin_initial(arg, now)
        elif kind == "send_ok" and pending:
            tracker.send_succeeded(pending.pop(), {"data": arg})
        elif kind == "send_fail" and pending:
            tracker.send_failed(pending.pop(), RuntimeError("x"), "x")
        elif kind == "open":
            registry.acquire("sesn_prop", stream=True)
        elif kind == "finish":
            registry.apply(tracker, tracker.stream_finished(arg, now, RuntimeError("x"), "x"))
        elif kind == "list":
            tracker.on_listed(arg, now)
        elif kind == "orphan":
            registry.apply(tracker, tracker.check_orphan(now + arg, 10**9)[1])
        elif kind == "thread":
            tracker.on_event(arg[1], now, Origin.thread(arg[0]))
        elif kind == "thread_list":
            tracker.on_listed(arg[1], now, arg[0])
        registry.release(tracker)
        turn = tracker.turn
        states.append(None if turn is None else (turn.index, turn.waiting))
    registry.shutdown()
    return states


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(STEP, max_size=40))
def test_any_sequence_never_raises_and_every_span_ends_exactly_once(steps: list[tuple[str, Any]]) -> None:
    tracer = CountingTracer()
    run_steps(tracer, steps)
    assert all(span.ends == 1 for span in tracer.spans), [span.ends for span in tracer.spans]


#: Found by the generator: a late duplicate of a model request start, after its turn ended, is deduplicated in a
#: recorded session; a turn nobody records skipped that start before the lock and did not remember its id, so the
#: duplicate opened a `resume` turn.
_LATE_DUPLICATE_START: Final = [
    ("event", {"type": "user.message", "id": "sevt_first"}),
    ("event", {"type": "span.model_request_start", "id": "sevt_start"}),
    ("event", {"type": "session.status_idle", "id": "sevt_idle", "stop_reason": {"type": "end_turn"}}),
    ("event", {"type": "span.model_request_start", "id": "sevt_start"}),
]


#: Found by the generator: the coordinator's thread, learnt from its first thread status, decides whether its
#: later work on the session's stream resumes a turn; a turn nobody records skipped thread statuses and never learnt it.
_PRIMARY_THREAD_LEARNT: Final = [
    ("event", {"type": "user.message", "id": "sevt_first"}),
    ("event", {"type": "session.thread_status_idle", "id": "sevt_thread_idle", "session_thread_id": "sthr_a"}),
    ("event", {"type": "session.status_terminated", "id": "sevt_terminated"}),
    ("event", {"type": "session.status_running", "id": "sevt_running", "session_thread_id": "sthr_a"}),
]


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(LIFECYCLE_STEPS)
@example(_LATE_DUPLICATE_START)
@example(_PRIMARY_THREAD_LEARNT)
def test_a_turn_nobody_records_has_the_same_lifecycle_as_a_recorded_one(steps: list[tuple[str, Any]]) -> None:
    """A sampled-out turn (no meter, no content) runs only the lifecycle handlers: it must open, wait and end at the
    same steps as the same turn recorded in full, and start at the same times. (Its end time is not compared: a span
    that does not record has none anyone can see, and an orphaned one ends at its last event the tracker routed.)"""
    recorded, sampled_out = CountingTracer(), CountingTracer(TracerProvider(sampler=ALWAYS_OFF))
    assert run_steps(recorded, steps) == run_steps(sampled_out, steps)
    assert not any(span.is_recording() for span in sampled_out.spans)
    assert all(is_turn(span) for span in sampled_out.spans)  # nothing but turns is tracked
    turns = [
        [(span.start_time, span.ends) for span in tracer.spans if is_turn(span)] for tracer in (recorded, sampled_out)
    ]
    assert turns[0] == turns[1]


# -- the session usage flattened by shape ---------------------------------------------------------------------------

#: A usage field's value as the SDK may parse it: a number of either class, or what is skipped.
USAGE_VALUE = st.one_of(st.integers(0, 10**6), st.floats(0, 1e6), st.none(), st.booleans(), st.text(max_size=3))
USAGE_NESTED_KEYS = st.sampled_from(["ephemeral_1h_input_tokens", "web_search_requests", "x_new"])
USAGE_NESTED = st.one_of(st.none(), st.dictionaries(USAGE_NESTED_KEYS, USAGE_VALUE))
USAGE_FIELDS: Final = {
    "input_tokens": USAGE_VALUE,
    "output_tokens": USAGE_VALUE,
    "active_seconds": USAGE_VALUE,
    "cache_creation": USAGE_NESTED,
    "server_tool_use": USAGE_NESTED,
    "list_cost": st.one_of(st.none(), st.fixed_dictionaries({"amount": USAGE_VALUE, "currency": st.just("USD")})),
    "a_field_this_sdk_lacks": USAGE_VALUE,
}


@st.composite
def usage_turns(draw: Any) -> list[dict[str, Any]]:
    """A session's usage at each turn's end: mostly the same shape as the turn before, with a field or two changed
    (of another class, gone, unknown), as the cached shape meets it."""
    usages = [draw(st.fixed_dictionaries({}, optional=USAGE_FIELDS))]
    for _ in range(draw(st.integers(0, 5))):
        usage = dict(usages[-1])
        for key in draw(st.lists(st.sampled_from(sorted(USAGE_FIELDS)), max_size=2)):
            if draw(st.booleans()):
                usage[key] = draw(USAGE_FIELDS[key])
            else:
                usage.pop(key, None)
        usages.append(usage)
    return usages


@settings(max_examples=300, deadline=None, derandomize=True)
@given(usage_turns())
@example([{"input_tokens": 1}, {"input_tokens": 2, "a_field_this_sdk_lacks": 3}])
@example([{"cache_creation": {"web_search_requests": 1}}, {"cache_creation": {"web_search_requests": 1, "x_new": 2}}])
def test_flattening_usage_by_its_shape_gives_what_reading_every_field_gives(usages: list[dict[str, Any]]) -> None:
    """Turn after turn, the SDK's usage models (with fields missing, None, of the other number class, nested or
    not, unknown) flatten by the cached shape of their class to the very attributes the field-by-field walk gives."""
    turn = importlib.import_module("cma_tracing.instrumentation.turn")
    # Parsed as the SDK parses a stream's events: constructed, not validated, so odd values stay as they came.
    events = [
        construct_type(type_=BetaManagedAgentsStreamSessionEvents, value={"type": "session.usage", "usage": u})
        for u in usages
    ]
    turn._SHAPES.clear()
    cached = [turn.usage_attributes(event.usage) for event in events]
    walked = []
    for event in events:
        turn._SHAPES.clear()  # the first payload of a class is always walked
        walked.append(turn.usage_attributes(event.usage))
    assert cached == walked
    assert all(all(v.__class__ in (int, float) for v in attrs.values()) for attrs in cached)
