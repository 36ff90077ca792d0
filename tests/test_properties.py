"""Property tests on the core: for any sequence of events and calls, nothing raises and every span ends once."""

from __future__ import annotations

from typing import Any

import pydantic
from anthropic.types.beta.sessions import BetaManagedAgentsStreamSessionEvents
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider

from cma_tracing.instrumentation.event_table import EVENT_ROLES
from cma_tracing.instrumentation.sessions import SessionRegistry
from cma_tracing.instrumentation.telemetry import Telemetry
from cma_tracing.instrumentation.turns import StreamEnd
from tests.support import events as ev

_ADAPTER: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(BetaManagedAgentsStreamSessionEvents)


class CountingSpan:
    """Delegates to a real span and counts `end` calls."""

    def __init__(self, span: Any) -> None:
        self._span = span
        self.ends = 0

    def end(self, end_time: Any = None) -> None:
        self.ends += 1
        self._span.end(end_time=end_time)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._span, name)


class CountingTracer:
    def __init__(self) -> None:
        self._tracer = TracerProvider().get_tracer("property")
        self.spans: list[CountingSpan] = []

    def start_span(self, *args: Any, **kwargs: Any) -> CountingSpan:
        span = CountingSpan(self._tracer.start_span(*args, **kwargs))
        self.spans.append(span)
        return span


IDS = st.sampled_from([f"sevt_p{i}" for i in range(12)] + [None])
TYPES = st.sampled_from(sorted(EVENT_ROLES) + ["session.brand_new", "", "agent.x"])
STOPS = st.sampled_from(["end_turn", "requires_action", "retries_exhausted", "refusal", "odd", None])
JUNK = st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2), st.booleans())


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
        body["processed_at"] = draw(st.sampled_from(["2026-08-17T16:21:33.262700Z", "2026-08-17T16:21:34Z", "bad", None]))
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
    if draw(st.booleans()):
        try:  # the same event as the SDK would parse it, when it can
            return _ADAPTER.validate_python(body)
        except Exception:
            return body
    return body


STEP = st.one_of(
    st.tuples(st.just("event"), wire_event()),
    st.tuples(st.just("send"), st.lists(st.one_of(wire_event(), st.just(ev.user_message(id=None))), max_size=3)),
    st.tuples(st.just("send_ok"), st.lists(wire_event(), max_size=2)),
    st.tuples(st.just("send_fail"), st.none()),
    st.tuples(st.just("open"), st.none()),
    st.tuples(st.just("finish"), st.sampled_from([StreamEnd.ENDED, StreamEnd.TRANSPORT, StreamEnd.FATAL, StreamEnd.CLOSED])),
    st.tuples(st.just("list"), st.lists(wire_event(), max_size=4)),
    st.tuples(st.just("orphan"), st.integers(0, 10**12)),
    st.tuples(st.just("thread"), st.tuples(st.sampled_from(["sthr_a", "sthr_b"]), wire_event())),
    st.tuples(st.just("thread_list"), st.tuples(st.sampled_from(["sthr_a", "sthr_b"]), st.lists(wire_event(), max_size=3))),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(STEP, max_size=40))
def test_any_sequence_never_raises_and_every_span_ends_exactly_once(steps: list[tuple[str, Any]]) -> None:
    tracer = CountingTracer()
    registry = SessionRegistry(Telemetry(tracer), orphan_timeout_s=1)  # type: ignore[arg-type]
    now = 10**18
    pending: list[Any] = []
    for kind, arg in steps:
        now += 1_000_000
        tracker = registry.acquire("sesn_prop")
        if kind == "event":
            tracker.on_event(arg, now)
        elif kind == "send":
            pending.append(tracker.begin_send(arg, now))
        elif kind == "send_ok" and pending:
            tracker.send_succeeded(pending.pop(), {"data": arg})
        elif kind == "send_fail" and pending:
            tracker.send_failed(pending.pop(), True, RuntimeError("x"), "x")
        elif kind == "open":
            tracker.claim(stream=True)
        elif kind == "finish":
            tracker.stream_finished(arg, now, RuntimeError("x"), "x")
        elif kind == "list":
            tracker.on_listed(arg, now)
        elif kind == "orphan":
            tracker.check_orphan(now + arg, 10**9)
        elif kind == "thread":
            tracker.on_thread_event(arg[0], arg[1], now)
        elif kind == "thread_list":
            tracker.on_listed(arg[1], now, arg[0])
        tracker.release()
    registry.shutdown()
    assert all(span.ends == 1 for span in tracer.spans), [span.ends for span in tracer.spans]
