"""Trace a session after the fact from the API (SPEC §3.6): `trace_session(client, session_id)`.

For sessions nobody streamed: a deployment's runs, a webhook-driven app, a worker that crashed. The session's events
are listed page by page (`events.list`) and fed to the same core a live stream feeds, each at its `processed_at`;
before the idle that ends a coordinator turn, each of its subagent threads is listed (`threads.events.list`) and
placed under its span, as `fetch_subthreads` does; each workflow run's thread is listed before the event that ends its
span (its idle, its phase's or run's end; at the end of the events for a run still going) and placed under it, so a
run that outlives its turn is traced too. Every call is made with instrumentation suppressed, memory holds
one page and the open turn, and a failing call raises to the caller once what was traced is ended.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, AsyncIterator, Iterator, Optional

from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import NoOpTracerProvider, Span, Tracer

from .config import logger, options_from
from .instrumentation import feeds
from .instrumentation.fields import as_list, get, get_str
from .instrumentation.session import SessionTracker
from .instrumentation.telemetry import Telemetry
from .instrumentor import telemetry_from
from .replay import SessionFeed

#: Events asked for per page (the API's own limit may be lower).
PAGE_SIZE = 100
#: Pages of one thread's events (a subagent's or a workflow run's) read at most.
MAX_THREAD_PAGES = 100


@dataclass(frozen=True)
class TraceSummary:
    """What `trace_session` traced."""

    turns: int  # turns traced
    spans: int  # spans started (and ended)
    last_event_id: Optional[str]  # the last event read, or None for a session with none
    threads_cut: int = 0  # threads whose listing stopped at MAX_THREAD_PAGES with more pages left (each logged)


def trace_session(
    client: Any,
    session_id: str,
    *,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    logger_provider: Any = None,
    capture_content: Any = None,
    last_turns: Optional[int] = None,
    **options: Any,
) -> TraceSummary:
    """Trace the session `session_id` from the API with `client` (an `anthropic.Anthropic`), through the given
    providers (default: the global ones); `last_turns=N` traces only the session's last N turns. Takes
    `instrument()`'s other options. A failing API call raises (it is the caller's own call)."""
    run = _Run(session_id, tracer_provider, meter_provider, logger_provider, capture_content, options)
    sessions = _untraced(client).beta.sessions
    with suppress_instrumentation():
        run.begin(sessions.retrieve(session_id))
        if last_turns is not None:
            boundary = _Boundaries(session_id, last_turns)
            for event in _events(sessions.events.list(session_id, limit=PAGE_SIZE)):
                boundary.read(event)
            run.start_from(boundary)
        try:
            for event in _events(sessions.events.list(session_id, limit=PAGE_SIZE)):
                for thread_id, workflow in run.threads_before(event):
                    _fetch(sessions, run, session_id, thread_id, workflow)
                run.read(event)
            for thread_id in run.threads_at_end():
                _fetch(sessions, run, session_id, thread_id, True)
        except BaseException:
            run.finish()
            raise
    return run.finish()


async def async_trace_session(
    client: Any,
    session_id: str,
    *,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    logger_provider: Any = None,
    capture_content: Any = None,
    last_turns: Optional[int] = None,
    **options: Any,
) -> TraceSummary:
    """`trace_session` with an `anthropic.AsyncAnthropic`."""
    run = _Run(session_id, tracer_provider, meter_provider, logger_provider, capture_content, options)
    sessions = _untraced(client).beta.sessions
    with suppress_instrumentation():
        run.begin(await sessions.retrieve(session_id))
        if last_turns is not None:
            boundary = _Boundaries(session_id, last_turns)
            async for event in _async_events(await sessions.events.list(session_id, limit=PAGE_SIZE)):
                boundary.read(event)
            run.start_from(boundary)
        try:
            async for event in _async_events(await sessions.events.list(session_id, limit=PAGE_SIZE)):
                for thread_id, workflow in run.threads_before(event):
                    await _async_fetch(sessions, run, session_id, thread_id, workflow)
                run.read(event)
            for thread_id in run.threads_at_end():
                await _async_fetch(sessions, run, session_id, thread_id, True)
        except BaseException:
            run.finish()
            raise
    return run.finish()


def _fetch(sessions: Any, run: _Run, session_id: str, thread_id: str, workflow: bool) -> None:
    """List one thread's events, page by page (at most MAX_THREAD_PAGES), into the run."""
    first = sessions.threads.events.list(thread_id, session_id=session_id, limit=PAGE_SIZE)
    for number, page in enumerate(first.iter_pages()):
        run.fetched(thread_id, page, workflow)
        if number + 1 >= MAX_THREAD_PAGES:
            run.stopped(thread_id, page)
            break
    run.fetched_all(workflow)


async def _async_fetch(sessions: Any, run: _Run, session_id: str, thread_id: str, workflow: bool) -> None:
    first = await sessions.threads.events.list(thread_id, session_id=session_id, limit=PAGE_SIZE)
    number = 0
    async for page in first.iter_pages():
        run.fetched(thread_id, page, workflow)
        number += 1
        if number >= MAX_THREAD_PAGES:
            run.stopped(thread_id, page)
            break
    run.fetched_all(workflow)


def _untraced(client: Any) -> Any:
    """The client with the SDK's own tracing off (`suppress_instrumentation` does not reach it): a copy with
    `open_telemetry=False`, or the client itself on an SDK release that has no such option."""
    copy = getattr(client, "with_options", None)
    if copy is None:
        return client
    try:
        return copy(open_telemetry=False)
    except TypeError:  # no `open_telemetry` option: that SDK makes no spans of its own
        return client


class _Run:
    """One `trace_session` call: its telemetry, its feed, where to start, what it has read."""

    def __init__(
        self,
        session_id: str,
        tracer_provider: Any,
        meter_provider: Any,
        logger_provider: Any,
        capture_content: Any,
        options: dict[str, Any],
    ) -> None:
        providers = {"tracer_provider": tracer_provider, "meter_provider": meter_provider}
        providers["logger_provider"] = logger_provider
        telemetry = telemetry_from(options_from({**options, "capture_content": capture_content}), providers)
        self.tracer = _CountingTracer(telemetry.tracer)
        self.telemetry = Telemetry(
            self.tracer,
            telemetry.child_spans,
            telemetry.content,
            telemetry.metrics,
            telemetry.logger,
            telemetry.fetch_subthreads,
            telemetry.evaluation_events_on_span,
            telemetry.evaluation_events_as_logs,
        )
        self.session_id = session_id
        self.feed: Optional[SessionFeed] = None
        self.start_at: Optional[str] = None  # with `last_turns`: the id of the event that opened the first of them
        self.skipped_turns = 0  # the session's turns before those traced (turn indexes go on from there)
        self.last_event_id: Optional[str] = None
        self.threads_cut = 0
        self.fetch_ns = 0  # the time of the event the threads being fetched are listed before

    def begin(self, session: Any) -> None:
        self.feed = SessionFeed(self.session_id, self.telemetry, session)

    def start_from(self, boundary: _Boundaries) -> None:
        self.start_at, self.skipped_turns = boundary.start()
        if self.feed is not None:
            self.feed.tracker.turn_count = self.skipped_turns

    def threads_before(self, event: Any) -> list[tuple[str, bool]]:
        """The threads to list before this event reaches the core, each with whether it is a workflow run's: the
        subagent threads of the turn an idle is about to end, the run threads whose span it is about to end."""
        if self.feed is None or not self._in_range(event):
            return []
        self.fetch_ns = self.feed.next_at(event)  # the threads are still open until this event: placed up to it
        tracker = self.feed.tracker
        found = [(thread_id, False) for thread_id in tracker.threads_to_fetch(event) or []]
        found += [(thread_id, True) for thread_id in feeds.workflow_threads_to_fetch(tracker, event) or []]
        return found

    def threads_at_end(self) -> list[str]:
        """The workflow runs' threads still open when the session's events end (a run still going)."""
        if self.feed is None:
            return []
        self.fetch_ns = self.feed.last_ns
        return feeds.open_workflow_threads(self.feed.tracker) or []

    def fetched(self, thread_id: str, page: Any, workflow: bool = False) -> None:
        if self.feed is None:
            return
        events = as_list(getattr(page, "data", None))
        if workflow:
            feeds.on_fetched_workflow_thread(self.feed.tracker, thread_id, events, self.fetch_ns)
        else:
            self.feed.tracker.on_fetched(thread_id, events, self.fetch_ns)

    def stopped(self, thread_id: str, page: Any) -> None:
        """The thread's listing stopped at MAX_THREAD_PAGES: counted and logged if pages were left."""
        try:
            more = bool(page.has_next_page())
        except Exception:
            more = False
        if more:
            self.threads_cut += 1
            logger.warning(
                "cma-tracing: session %s: thread %s has more than %d pages of events; the rest were not read",
                self.session_id,
                thread_id,
                MAX_THREAD_PAGES,
            )

    def fetched_all(self, workflow: bool) -> None:
        if self.feed is not None and workflow:
            feeds.fetched_workflow_thread(self.feed.tracker, self.fetch_ns)

    def read(self, event: Any) -> None:
        if self.feed is None or not self._in_range(event):
            return
        self.feed.read(event)
        self.last_event_id = get_str(event, "id") or self.last_event_id

    def _in_range(self, event: Any) -> bool:
        if self.start_at is None:
            return True
        if get(event, "id") == self.start_at:
            self.start_at = None
            return True
        return False

    def finish(self) -> TraceSummary:
        turns = 0
        if self.feed is not None:
            skipped = self.skipped_turns
            turns = self.feed.finish() - skipped
        return TraceSummary(turns, self.tracer.started, self.last_event_id, self.threads_cut)


class _Boundaries:
    """The first pass for `last_turns`: the same core rules, with nothing recorded, say where each turn opened."""

    def __init__(self, session_id: str, last_turns: int) -> None:
        telemetry = Telemetry(NoOpTracerProvider().get_tracer("cma_tracing"))
        self.feed = SessionFeed(session_id, telemetry)
        self.openers: deque[Optional[str]] = deque(maxlen=max(1, last_turns))
        self.wanted = last_turns

    def read(self, event: Any) -> None:
        tracker: SessionTracker = self.feed.tracker
        before = tracker.turn_count
        self.feed.read(event)
        if tracker.turn_count != before:
            self.openers.append(get_str(event, "id"))

    def start(self) -> tuple[Optional[str], int]:
        """The id of the event that opened the first of the last N turns (None: from the first event), and how many
        turns came before it."""
        total = self.feed.tracker.turn_count
        if self.wanted <= 0:
            return _NOWHERE, total
        if len(self.openers) < self.wanted or not self.openers:
            return None, 0
        return self.openers[0], total - len(self.openers)


#: An event id no event has: with `last_turns=0` nothing is traced.
_NOWHERE = "\0"


class _CountingTracer(Tracer):
    """The tracer, counting the spans it starts (for the summary)."""

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer
        self.started = 0

    def start_span(self, *args: Any, **kwargs: Any) -> Span:
        self.started += 1
        return self._tracer.start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        return self._tracer.start_as_current_span(*args, **kwargs)


def _events(first: Any) -> Iterator[Any]:
    """Every event of every page, one page held at a time."""
    for page in first.iter_pages():
        yield from as_list(getattr(page, "data", None))


async def _async_events(first: Any) -> AsyncIterator[Any]:
    async for page in first.iter_pages():
        for event in as_list(getattr(page, "data", None)):
            yield event
