"""SPEC §3.6: a session traced after the fact from the API (`trace_session`), against the loopback server whose
`events.list` and `threads.events.list` page a session's history as the real API does."""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

import anthropic
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import cma_tracing
from cma_tracing.demo.loopback import Event, FakeCMAServer
from tests.support import events as ev
from tests.support.core import synthetic
from tests.support.scenarios import turn_events
from tests.support.spans import attrs, tree_shape


def _provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _turns(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    found = [s for s in exporter.get_finished_spans() if s.name.startswith("invoke_agent") and s.parent is None]
    return sorted(found, key=lambda s: s.start_time or 0)


def test_a_session_nobody_streamed_is_traced_from_its_events(
    server: FakeCMAServer, loop_client: anthropic.Anthropic
) -> None:
    """A deployment-style session: created with initial events, run by the server, never streamed."""
    events = synthetic("deployment_fired_session")
    server.set_session("sesn_deployed")
    server.set_history("sesn_deployed", events, page_size=3)
    provider, exporter = _provider()
    summary = cma_tracing.trace_session(loop_client, "sesn_deployed", tracer_provider=provider)
    (turn,) = _turns(exporter)
    a = attrs(turn)
    assert (a["anthropic.turn.trigger"], a["anthropic.turn.stop_reason"]) == ("user.message", "end_turn")
    assert a["gen_ai.agent.name"] == "loopback-agent-bash"  # from the retrieved session
    assert (a["anthropic.turn.model_requests"], a["anthropic.turn.tool_calls"]) == (2, 1)
    assert summary == cma_tracing.TraceSummary(1, len(exporter.get_finished_spans()), events[-1]["id"])
    list_calls = [r for r in server.requests if r.path.endswith("/events") and r.method == "GET"]
    assert len(list_calls) == 4  # ten events, three a page
    assert (turn.end_time or 0) - (turn.start_time or 0) == 4_620_000_000  # from its events' own stamps


def _coordinator(server: FakeCMAServer, session_id: str) -> list[dict[str, Any]]:
    """A coordinator turn with two subagents, whose threads hold a model request each; returns its session's events."""
    start = ev.request_start()
    stream = [
        ev.user_message("sevt_coord_u"),
        ev.running(),
        start,
        ev.request_end(start["id"], 100, 10),
        ev.event("session.thread_created", session_thread_id="sthr_a", agent_name="researcher"),
        ev.event("session.thread_created", session_thread_id="sthr_b", agent_name="writer"),
        ev.event("session.thread_status_idle", session_thread_id="sthr_a", stop_reason={"type": "end_turn"}),
        ev.event("session.thread_status_idle", session_thread_id="sthr_b", stop_reason={"type": "end_turn"}),
        ev.idle(),
    ]
    server.set_session(session_id)
    server.set_history(session_id, stream, page_size=4)
    for thread, tokens in (("sthr_a", 300), ("sthr_b", 500)):
        own = ev.request_start()
        # Each thread's model request lies between its creation and its idle on the server's clock.
        own["processed_at"] = stream[5]["processed_at"]
        done = ev.request_end(own["id"], tokens, 30)
        done["processed_at"] = stream[6]["processed_at"]
        server.set_history(session_id, [own, done], thread_id=thread)
    return stream


def test_a_coordinator_with_two_subagents_gets_their_model_requests_from_their_threads(
    server: FakeCMAServer, loop_client: anthropic.Anthropic
) -> None:
    _coordinator(server, "sesn_coord")
    provider, exporter = _provider()
    cma_tracing.trace_session(loop_client, "sesn_coord", tracer_provider=provider)
    spans = list(exporter.get_finished_spans())
    (turn,) = _turns(exporter)
    assert attrs(turn)["gen_ai.usage.input_tokens"] == 100 + 300 + 500
    for name, tokens in (("invoke_agent researcher", 300), ("invoke_agent writer", 500)):
        (subagent,) = [s for s in spans if s.name == name]
        (chat,) = [s for s in spans if s.parent is not None and s.parent.span_id == subagent.context.span_id]
        assert attrs(chat)["gen_ai.usage.input_tokens"] == tokens
        assert (subagent.start_time or 0) <= (chat.start_time or 0) <= (chat.end_time or 0) <= (subagent.end_time or 0)


def _thread_requests(server: FakeCMAServer, session_id: str, events: list[dict[str, Any]], tokens: int) -> None:
    """Each workflow-run thread the events create gets a history of one model request of `tokens` input tokens,
    stamped at its creation (so placing must move it into the thread's span, not onto its stamp alone)."""
    for event in events:
        if event["type"] == "session.thread_created" and event.get("workflow_run_id"):
            start = ev.request_start()
            start["processed_at"] = event["processed_at"]
            end = ev.request_end(start["id"], tokens, 1)
            end["processed_at"] = event["processed_at"]
            server.set_history(session_id, [start, end], thread_id=event["session_thread_id"])


def _children_of(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def test_a_workflow_runs_threads_are_listed_and_their_model_requests_go_under_their_agents(
    server: FakeCMAServer, loop_client: anthropic.Anthropic
) -> None:
    events = synthetic("workflow_run_completed")
    server.set_session("sesn_wf_after")
    server.set_history("sesn_wf_after", events, page_size=4)
    _thread_requests(server, "sesn_wf_after", events, 7)
    provider, exporter = _provider()
    cma_tracing.trace_session(loop_client, "sesn_wf_after", tracer_provider=provider)
    spans = list(exporter.get_finished_spans())
    (turn,) = _turns(exporter)
    agents = [s for s in spans if s.name.startswith("invoke_agent ") and attrs(s).get("anthropic.workflow_run.id")]
    assert sorted(s.name for s in agents) == ["invoke_agent contract-reader"] * 3 + ["invoke_agent reconciler"]
    for agent in agents:
        (chat,) = _children_of(spans, agent)
        assert chat.name == "chat" and attrs(chat)["gen_ai.usage.input_tokens"] == 7
        assert (agent.start_time or 0) <= (chat.start_time or 0) <= (chat.end_time or 0) <= (agent.end_time or 0)
    assert attrs(turn)["gen_ai.usage.input_tokens"] == 6000 + 4 * 7  # the run's agents' work, as a live feed counts
    thread_lists = [r.path for r in server.requests if "/threads/" in r.path]
    assert len(thread_lists) == len(set(thread_lists)) == 4  # each thread listed once


def test_a_workflow_run_that_outlives_its_turn_still_gets_its_threads_model_requests(
    server: FakeCMAServer, loop_client: anthropic.Anthropic
) -> None:
    """The turn idles with the run still going: its threads are listed when they end, or at the end of the pass
    for a run still open then, and their work goes under their spans, not into any turn."""
    start = ev.request_start()
    run, other = "wrun_outlives", "wrun_still_open"
    events = [
        ev.user_message("sevt_wf_out_u"),
        ev.running(),
        start,
        ev.request_end(start["id"], 100, 10),
        ev.event("workflow_run.created", workflow_run_id=run, name="Long", phases=[{"id": "p1", "name": "Only"}]),
        ev.event("workflow_run.phase_started", id="sevt_wf_out_p1", workflow_run_id=run, workflow_run_phase_id="p1"),
        ev.event("session.thread_created", session_thread_id="sthr_out1", agent_name="worker", workflow_run_id=run),
        ev.event("workflow_run.created", workflow_run_id=other, name="Endless"),
        ev.event("session.thread_created", session_thread_id="sthr_out2", agent_name="sleeper", workflow_run_id=other),
        ev.idle("budget_reached"),
        ev.event("session.thread_status_idle", session_thread_id="sthr_out1", stop_reason={"type": "end_turn"}),
        ev.event("workflow_run.phase_ended", workflow_run_id=run, phase_started_id="sevt_wf_out_p1"),
        ev.event("workflow_run.status_ended", workflow_run_id=run, result={"type": "completed"}),
    ]
    server.set_session("sesn_wf_out")
    server.set_history("sesn_wf_out", events, page_size=3)
    _thread_requests(server, "sesn_wf_out", events, 9)
    provider, exporter = _provider()
    summary = cma_tracing.trace_session(loop_client, "sesn_wf_out", tracer_provider=provider)
    spans = list(exporter.get_finished_spans())
    (turn,) = _turns(exporter)
    assert summary.turns == 1 and attrs(turn)["gen_ai.usage.input_tokens"] == 100  # the turn ended before
    for name in ("invoke_agent worker", "invoke_agent sleeper"):
        (agent,) = [s for s in spans if s.name == name]
        (chat,) = _children_of(spans, agent)
        assert attrs(chat)["gen_ai.usage.input_tokens"] == 9
        assert (agent.start_time or 0) <= (chat.start_time or 0) <= (chat.end_time or 0) <= (agent.end_time or 0)
    assert sorted(r.path for r in server.requests if "/threads/" in r.path) == [
        "/v1/sessions/sesn_wf_out/threads/sthr_out1/events",
        "/v1/sessions/sesn_wf_out/threads/sthr_out2/events",
    ]
    assert len(spans) == summary.spans


@pytest.mark.parametrize("thread_events", [4, 5])
def test_a_thread_cut_at_the_page_limit_is_logged_and_counted_in_the_summary(
    server: FakeCMAServer,
    loop_client: anthropic.Anthropic,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    thread_events: int,
) -> None:
    """Two pages a thread at most, two events a page: four events fit exactly (nothing cut), five do not."""
    import cma_tracing.after

    monkeypatch.setattr(cma_tracing.after, "MAX_THREAD_PAGES", 2)
    created = _coordinator(server, "sesn_cut")[5]["processed_at"]  # while the subagents run
    requests = []
    for _ in range(thread_events // 2 + 1):
        start = ev.request_start()
        requests += [start, ev.request_end(start["id"], 1, 1)]
    for event in requests:
        event["processed_at"] = created
    server.set_history("sesn_cut", requests[:thread_events], page_size=2, thread_id="sthr_a")
    caplog.set_level("WARNING", logger="cma_tracing")
    summary = cma_tracing.trace_session(loop_client, "sesn_cut", tracer_provider=_provider()[0])
    cut = thread_events > 4
    assert summary.threads_cut == int(cut)
    warnings = [r.getMessage() for r in caplog.records if r.name == "cma_tracing"]
    assert warnings == (
        ["cma-tracing: session sesn_cut: thread sthr_a has more than 2 pages of events; the rest were not read"]
        if cut
        else []
    )


def test_a_resume_turn_with_a_subagent_gets_its_model_requests_and_tokens_from_its_thread(
    server: FakeCMAServer, loop_client: anthropic.Anthropic
) -> None:
    """A turn with no user event of its own (the agent resumed after a budget raise) is anchored by its opening
    event's `processed_at`, so its subagent's thread is listed and placed."""
    start = ev.request_start()
    stream = [
        ev.running(),
        start,
        ev.request_end(start["id"], 100, 10),
        ev.event("session.thread_created", session_thread_id="sthr_r", agent_name="researcher"),
        ev.event("session.thread_status_idle", session_thread_id="sthr_r", stop_reason={"type": "end_turn"}),
        ev.idle(),
    ]
    server.set_session("sesn_resumed")
    server.set_history("sesn_resumed", stream, page_size=4)
    own = ev.request_start()
    own["processed_at"] = stream[3]["processed_at"]
    done = ev.request_end(own["id"], 300, 30)
    done["processed_at"] = stream[4]["processed_at"]
    server.set_history("sesn_resumed", [own, done], thread_id="sthr_r")
    provider, exporter = _provider()
    cma_tracing.trace_session(loop_client, "sesn_resumed", tracer_provider=provider)
    spans = list(exporter.get_finished_spans())
    (turn,) = _turns(exporter)
    assert attrs(turn)["anthropic.turn.trigger"] == "resume"
    assert (attrs(turn)["gen_ai.usage.input_tokens"], attrs(turn)["gen_ai.usage.output_tokens"]) == (400, 40)
    (subagent,) = [s for s in spans if s.name == "invoke_agent researcher"]
    (chat,) = [s for s in spans if s.parent is not None and s.parent.span_id == subagent.context.span_id]
    assert attrs(chat)["gen_ai.usage.input_tokens"] == 300
    assert (subagent.start_time or 0) <= (chat.start_time or 0) <= (chat.end_time or 0) <= (subagent.end_time or 0)
    assert [r.path for r in server.requests if "/threads/" in r.path] == [
        "/v1/sessions/sesn_resumed/threads/sthr_r/events"
    ]


def _live(
    server: FakeCMAServer, client: anthropic.Anthropic, session_id: str, events: list[dict[str, Any]], **options: Any
) -> list[ReadableSpan]:
    """The spans of the same events streamed live to an instrumented client."""
    provider, exporter = _provider()
    cma_tracing.instrument(tracer_provider=provider, **options)
    try:
        client.beta.sessions.retrieve(session_id)
        server.queue_stream(session_id, [Event(e) for e in events])
        with client.beta.sessions.events.stream(session_id) as stream:
            list(stream)
    finally:
        cma_tracing.uninstrument()
    return list(exporter.get_finished_spans())


@pytest.mark.parametrize("scenario", ["outcome", "coordinator", "deployment"])
def test_the_tree_after_the_fact_is_the_tree_a_live_stream_gives(
    server: FakeCMAServer, loop_client: anthropic.Anthropic, scenario: str
) -> None:
    """Names, parents, attributes, statuses and span events, timing aside. The live coordinator fetches its
    subagents' threads (`fetch_subthreads`), as trace_session lists them."""
    session_id = f"sesn_same_{scenario}"
    options: dict[str, Any] = {}
    if scenario == "coordinator":
        events = _coordinator(server, session_id)
        options["fetch_subthreads"] = True
    else:
        events = synthetic("outcome_revise_then_satisfied" if scenario == "outcome" else "deployment_fired_session")
        server.set_session(session_id)
        server.set_history(session_id, events, page_size=7)
    provider, after = _provider()
    cma_tracing.trace_session(loop_client, session_id, tracer_provider=provider)
    traced = list(after.get_finished_spans())
    live = _live(server, loop_client, session_id, events, **options)
    assert tree_shape(traced, details=True) == tree_shape(live, details=True)
    names = [s.name for s in traced]
    if scenario == "outcome":
        assert names.count("evaluation outcome") == 2
    elif scenario == "coordinator":
        assert names.count("chat") == 2 and len(traced) == 6  # the subagents' own requests, from their threads
    else:
        assert sorted(names) == ["chat claude-haiku-4-5", "chat claude-haiku-4-5", "execute_tool bash"] + [
            "invoke_agent loopback-agent-bash"
        ]


def test_last_turns_traces_each_turn_exactly_once_as_a_webhook_handler_would(
    server: FakeCMAServer, loop_client: anthropic.Anthropic
) -> None:
    history: list[dict[str, Any]] = []
    traced: list[tuple[int, str]] = []
    for n in range(1, 4):  # a turn ends; the webhook fires; its handler traces the last turn
        history += turn_events(f"sevt_turn{n}", input_tokens=n)
        server.set_history("sesn_webhook", history, page_size=5)
        provider, exporter = _provider()
        summary = cma_tracing.trace_session(loop_client, "sesn_webhook", tracer_provider=provider, last_turns=1)
        assert summary.turns == 1 and summary.last_event_id == history[-1]["id"]
        (turn,) = _turns(exporter)
        traced.append((attrs(turn)["anthropic.turn.index"], attrs(turn)["gen_ai.usage.input_tokens"]))
    assert traced == [(1, 2), (2, 4), (3, 6)]  # two model requests of n tokens each, once per turn


def test_a_failing_list_call_raises_to_the_caller_and_leaves_nothing_open(
    server: FakeCMAServer, loop_client: anthropic.Anthropic
) -> None:
    server.set_session("sesn_fails")
    first = turn_events("sevt_fails_u")
    server.queue_list_page("sesn_fails", first[:5], next_page="o_5")
    server.forget_session("sesn_fails_other")
    provider, exporter = _provider()
    # The second page's call fails: the loopback server answers an unknown cursor with an empty page, so make the
    # session disappear between the pages instead.
    original = server._take_page

    def disappear(key: Any, cursor: Any = None) -> Any:
        server.forget_session("sesn_fails")
        return original(key, cursor)

    server._take_page = disappear  # type: ignore[method-assign]
    with pytest.raises(anthropic.NotFoundError):
        cma_tracing.trace_session(loop_client, "sesn_fails", tracer_provider=provider)
    (turn,) = _turns(exporter)  # what was traced is ended, not left open
    assert attrs(turn)["anthropic.turn.stop_reason"] == "unobserved"


def test_an_unknown_session_raises_not_found(server: FakeCMAServer, loop_client: anthropic.Anthropic) -> None:
    server.forget_session("sesn_nowhere")
    with pytest.raises(anthropic.NotFoundError):
        cma_tracing.trace_session(loop_client, "sesn_nowhere", tracer_provider=_provider()[0])


def test_the_calls_are_not_traced_even_when_instrumented(
    instrumented: Any, server: FakeCMAServer, loop_client: anthropic.Anthropic, spans: Any
) -> None:
    server.set_session("sesn_quiet")
    server.set_history("sesn_quiet", turn_events("sevt_quiet_u"))
    cma_tracing.trace_session(loop_client, "sesn_quiet", tracer_provider=_provider()[0])
    assert spans.all() == []  # the instrumented client's own spans (and page hook) stayed quiet


@pytest.mark.asyncio
@pytest.mark.parametrize("is_async", [False, True])
async def test_the_sdks_own_spans_are_off_for_the_calls_of_a_client_whose_tracing_is_on(
    server: FakeCMAServer, is_async: bool
) -> None:
    """The SDK's tracing ignores `suppress_instrumentation`: the calls go through a copy of the client with it off,
    however the app's client has it (here on, with its own tracer provider)."""
    server.set_session("sesn_sdk_quiet")
    server.set_history("sesn_sdk_quiet", turn_events("sevt_sdk_quiet_u"), page_size=3)
    sdk_provider, sdk_spans = _provider()
    provider, exporter = _provider()
    options: Any = {"tracer_provider": sdk_provider}
    if is_async:
        async_client = anthropic.AsyncAnthropic(
            base_url=server.base_url, api_key="k", max_retries=0, open_telemetry=options
        )
        await async_client.beta.sessions.retrieve("sesn_sdk_quiet")
        assert [s.name for s in sdk_spans.get_finished_spans()] == ["anthropic.sessions.retrieve"]  # it is on
        sdk_spans.clear()
        summary = await cma_tracing.async_trace_session(async_client, "sesn_sdk_quiet", tracer_provider=provider)
    else:
        client = anthropic.Anthropic(base_url=server.base_url, api_key="k", max_retries=0, open_telemetry=options)
        client.beta.sessions.retrieve("sesn_sdk_quiet")
        assert [s.name for s in sdk_spans.get_finished_spans()] == ["anthropic.sessions.retrieve"]  # it is on
        sdk_spans.clear()
        summary = cma_tracing.trace_session(client, "sesn_sdk_quiet", tracer_provider=provider)
    assert summary.turns == 1 and len(exporter.get_finished_spans()) == summary.spans > 1
    assert sdk_spans.get_finished_spans() == ()


@pytest.mark.asyncio
async def test_the_async_client_traces_the_same(
    server: FakeCMAServer, loop_async_client: anthropic.AsyncAnthropic
) -> None:
    _coordinator(server, "sesn_coord_async")
    provider, exporter = _provider()
    summary = await cma_tracing.async_trace_session(loop_async_client, "sesn_coord_async", tracer_provider=provider)
    (turn,) = _turns(exporter)
    assert attrs(turn)["gen_ai.usage.input_tokens"] == 900 and summary.turns == 1


@pytest.mark.asyncio
async def test_the_async_client_lists_a_workflow_runs_threads_too(
    server: FakeCMAServer, loop_async_client: anthropic.AsyncAnthropic
) -> None:
    events = synthetic("workflow_run_completed")
    server.set_session("sesn_wf_async")
    server.set_history("sesn_wf_async", events, page_size=4)
    _thread_requests(server, "sesn_wf_async", events, 7)
    provider, exporter = _provider()
    await cma_tracing.async_trace_session(loop_async_client, "sesn_wf_async", tracer_provider=provider)
    spans = list(exporter.get_finished_spans())
    agents = [s for s in spans if s.name.startswith("invoke_agent ") and attrs(s).get("anthropic.workflow_run.id")]
    assert [len(_children_of(spans, agent)) for agent in agents] == [1, 1, 1, 1]
    assert attrs(_turns(exporter)[0])["gen_ai.usage.input_tokens"] == 6028


@pytest.mark.slow
def test_a_session_of_a_hundred_thousand_events_traces_in_flat_memory(
    server: FakeCMAServer, loop_client: anthropic.Anthropic
) -> None:
    """Memory holds a page and the open turn: tracing 100,000 events peaks no higher than tracing 10,000."""

    provider = TracerProvider()  # no processor: spans are made and dropped
    peaks = []
    for turns in (800, 8000):  # 10,400 and 104,000 events
        history = [e for n in range(turns) for e in turn_events(f"sevt_big{turns}_{n}")]
        server.set_history(f"sesn_big{turns}", history, page_size=500)
        gc.collect()
        tracemalloc.start()
        summary = cma_tracing.trace_session(loop_client, f"sesn_big{turns}", tracer_provider=provider)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert summary.turns == turns
        server.set_history(f"sesn_big{turns}", [])
        del history
    assert peaks[1] < peaks[0] + 2_000_000, peaks  # ten times the events, not ten times the memory


def _cli(*args: str, env: dict[str, str]) -> Any:
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "cma-tracing"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ANTHROPIC_"))}
    return subprocess.run(
        [str(script), "trace", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, "COLUMNS": "200", **env},
    )


def test_the_trace_command_prints_the_tree_of_a_session(server: FakeCMAServer) -> None:
    server.set_session("sesn_cli")
    server.set_history("sesn_cli", synthetic("workflow_run_completed"), page_size=10)
    done = _cli("sesn_cli", env={"ANTHROPIC_API_KEY": "k", "ANTHROPIC_BASE_URL": server.base_url})
    assert done.returncode == 0, done.stderr
    assert "invoke_workflow" in done.stdout and "workflow_phase Reconcile the findings" in done.stdout
    assert "1 turn," in done.stdout


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (("sesn_x",), {}, "ANTHROPIC_API_KEY is not set"),
        (("sesn_gone",), {"ANTHROPIC_API_KEY": "k"}, "session sesn_gone not found"),
        (("sesn_x",), {"ANTHROPIC_API_KEY": "k", "ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}, "cannot reach the API"),
        (("sesn_x", "--last", "0"), {"ANTHROPIC_API_KEY": "k"}, "--last 0"),
    ],
)
def test_the_trace_command_fails_in_one_clear_line(
    server: FakeCMAServer, args: tuple[str, ...], env: dict[str, str], says: str
) -> None:
    server.forget_session("sesn_gone")
    env = {"ANTHROPIC_BASE_URL": server.base_url, **env}
    done = _cli(*args, env=env)
    assert done.returncode == 2
    assert says in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr


def test_the_readmes_webhook_receiver_traces_the_turn_a_webhook_announces(server: FakeCMAServer, tmp_path: Any) -> None:
    """The README's block itself, extracted (not copied), run against the loopback server."""
    import json
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("<!-- webhook-example -->\n```python\n", 1)[1].split("\n```", 1)[0]
    script = tmp_path / "webhook.py"
    script.write_text(block)
    # The block sends spans to the global tracer provider: a wrapper sets one that writes each span as a JSON line.
    exported = tmp_path / "spans.jsonl"
    wrapper = tmp_path / "with_provider.py"
    wrapper.write_text(
        "import json, runpy, sys\n"
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor\n"
        "def line(span):\n"
        "    parent = span.parent.span_id if span.parent else None\n"
        "    return json.dumps({'name': span.name, 'parent': parent, 'attributes': dict(span.attributes)}) + '\\n'\n"
        "provider = TracerProvider()\n"
        "out = open(sys.argv[2], 'w')\n"
        "provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=out, formatter=line)))\n"
        "trace.set_tracer_provider(provider)\n"
        "runpy.run_path(sys.argv[1], run_name='__main__')\n"
    )
    server.set_session("sesn_hooked")
    server.set_history("sesn_hooked", turn_events("sevt_hooked_u"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "ANTHROPIC_BASE_URL": server.base_url, "ANTHROPIC_API_KEY": "k", "PORT": str(port)}
    receiver = subprocess.Popen(
        [sys.executable, str(wrapper), str(script), str(exported)], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        payload = {
            "type": "event",
            "id": "wevt_1",
            "created_at": "2026-10-20T10:00:00Z",
            "data": {"type": "session.status_idled", "id": "sesn_hooked", "organization_id": "o", "workspace_id": "w"},
        }
        request = urllib.request.Request(f"http://127.0.0.1:{port}/", data=json.dumps(payload).encode(), method="POST")
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    assert response.status == 204
                break
            except OSError:
                assert receiver.poll() is None, receiver.stderr.read() if receiver.stderr else ""
                assert time.monotonic() < deadline, "the receiver did not start"
                time.sleep(0.1)
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)
    lists = [r for r in server.requests if r.method == "GET" and r.path == "/v1/sessions/sesn_hooked/events"]
    assert len(lists) == 2  # the last_turns pass, then the traced one
    spans = [json.loads(line) for line in exported.read_text().splitlines()]
    (turn,) = [s for s in spans if s["parent"] is None]  # the SDK's own spans stay off, though its tracing is on
    assert turn["name"].startswith("invoke_agent") and turn["attributes"]["anthropic.session.id"] == "sesn_hooked"
    assert turn["attributes"]["anthropic.turn.stop_reason"] == "end_turn"
    assert sorted(s["name"] for s in spans if s["parent"] is not None) == sorted(
        ["chat claude-haiku-4-5", "chat claude-haiku-4-5", "execute_tool bash"]
    )


def test_the_serve_commands_sessions_trace_as_the_readme_shows() -> None:
    from cma_tracing.demo.serve import SESSIONS, start

    server = start()
    try:
        client = anthropic.Anthropic(base_url=server.base_url, api_key="any", max_retries=0)
        for session_id in SESSIONS:
            provider, exporter = _provider()
            summary = cma_tracing.trace_session(client, session_id, tracer_provider=provider)
            assert summary.turns == 1 and summary.spans == len(exporter.get_finished_spans()) > 1
            if session_id == "sesn_demo_workflow":  # its run's agents' threads hold a model request each
                spans = list(exporter.get_finished_spans())
                agents = [s for s in spans if attrs(s).get("anthropic.workflow_run.id") and "agent" in s.name]
                chats = [_children_of(spans, agent) for agent in agents]
                assert [[c.name for c in found] for found in chats] == [["chat"]] * 4
                # Placed by their stamps up to the thread's idle (the request ends 50 ms before it), not cut short
                # at the event read before that idle.
                ends = sorted((agent.end_time or 0) - (found[0].end_time or 0) for agent, found in zip(agents, chats))
                assert ends == [50_000_000] * 4
    finally:
        server.stop()


def test_serve_on_a_port_in_use_fails_in_one_line() -> None:
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        script = Path(sys.executable).parent / "cma-tracing"
        done = subprocess.run([str(script), "serve", "--port", str(port)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "cannot serve on 127.0.0.1" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
