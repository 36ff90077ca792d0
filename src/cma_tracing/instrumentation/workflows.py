"""A session's workflow runs (SPEC §3.5): programs the agent starts that run many agents in phases, in the
background, and may outlive the turn that started them.

Runs are tracked per session, not per turn: `invoke_workflow` starts as a child of the turn open at
`workflow_run.created` and ends at its `workflow_run.status_ended`, whenever that comes. Its phases are
`workflow_phase` spans; the run's threads are `invoke_agent` spans under the run's one open phase. A session holds a
`WorkflowRuns` only once it has seen a run, so other sessions pay nothing for this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Optional

from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context
from opentelemetry.util.types import AttributeValue

from . import attributes as A
from .attributes import StopReason
from .event_table import (
    THREAD_CREATED,
    THREAD_STATUS_IDLE,
    THREAD_STATUS_RESCHEDULED,
    THREAD_STATUS_RUNNING,
    THREAD_STATUS_TERMINATED,
    WORKFLOW_RUN_CREATED,
    WORKFLOW_RUN_ERROR,
    WORKFLOW_RUN_PHASE_ENDED,
    WORKFLOW_RUN_PHASE_STARTED,
    WORKFLOW_RUN_STATUS_ENDED,
)
from .fields import as_list, get, get_str, timestamp_ns
from .children import start_agent_span
from .metrics import metric_attributes

if TYPE_CHECKING:
    from .telemetry import Telemetry
    from .turn import Turn

#: Runs tracked per session at once; past this a new run gets no span.
MAX_RUNS: Final = 16
#: Thread spans per run; `anthropic.workflow_run.threads` counts all.
MAX_THREADS_PER_RUN: Final = 256
#: Phases open at once per run.
MAX_OPEN_PHASES: Final = 32
#: Planned phases whose names are kept per run.
MAX_PLANNED_PHASES: Final = 64


class _Span:
    __slots__ = ("span", "context", "start_ns", "phase", "shift_ns")

    def __init__(self, span: Span, start_ns: int, phase: Optional[str] = None) -> None:
        self.span = span
        self.context = set_span_in_context(span)
        self.start_ns = start_ns
        self.phase = phase  # a thread's: the phase it runs under (its phase_started id), None: the run itself
        self.shift_ns: Optional[int] = None  # a thread's fetched events: how far they move to start within it


class _Run(_Span):
    __slots__ = ("run_id", "phases", "phase_names", "threads", "thread_count")

    def __init__(self, span: Span, start_ns: int, run_id: str) -> None:
        super().__init__(span, start_ns)
        self.run_id = run_id
        self.phases: dict[str, _Span] = {}  # open phases, by the id of the phase_started event that opened each
        self.phase_names: dict[str, str] = {}  # the planned phases' names, by phase id
        self.threads: dict[str, _Span] = {}  # open thread spans, by thread id
        self.thread_count = 0


class WorkflowRuns:
    """The runs of one session, open across its turns. Called by its `SessionTracker` with the session's lock held."""

    __slots__ = ("_telemetry", "_runs", "_thread_runs", "stand_in")

    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry
        self._runs: dict[str, _Run] = {}
        self._thread_runs: dict[str, str] = {}  # thread id -> run id, for the run's open threads
        # After the fact, while a run's thread is fetched with no turn open: the turn its work is routed through.
        self.stand_in: Optional[Turn] = None

    def has_thread(self, thread_id: str) -> bool:
        return thread_id in self._thread_runs

    def thread_context(self, thread_id: str) -> Optional[Context]:
        """The span context of a run's open thread (its cross-posted tool calls go under it)."""
        run = self._runs.get(self._thread_runs.get(thread_id, ""))
        thread = run.threads.get(thread_id) if run is not None else None
        return thread.context if thread is not None else None

    def open_runs(self) -> int:
        return len(self._runs)

    def open_threads(self) -> list[str]:
        """The runs' open threads (at most MAX_RUNS x MAX_THREADS_PER_RUN)."""
        return list(self._thread_runs)

    def threads_ending(self, event: Any, event_type: str) -> list[str]:
        """The open threads whose span this event is about to end: the thread's own idle (any stop reason but
        `requires_action`) or termination, the end of the phase it runs under, the end of its run."""
        if event_type == THREAD_STATUS_TERMINATED or (
            event_type == THREAD_STATUS_IDLE and _stop_type(event) != StopReason.REQUIRES_ACTION
        ):
            thread_id = get_str(event, "session_thread_id")
            return [thread_id] if thread_id is not None and thread_id in self._thread_runs else []
        if event_type not in (WORKFLOW_RUN_PHASE_ENDED, WORKFLOW_RUN_STATUS_ENDED):
            return []
        run = self._runs.get(get_str(event, "workflow_run_id") or "")
        if run is None:
            return []
        if event_type == WORKFLOW_RUN_STATUS_ENDED:
            return list(run.threads)
        started_id = get_str(event, "phase_started_id") or ""
        if started_id not in run.phases and len(run.phases) == 1:
            started_id = next(iter(run.phases))
        return [thread_id for thread_id, thread in run.threads.items() if thread.phase == started_id]

    def place(self, thread_id: str, stamp: Any, now_ns: int) -> Optional[int]:
        """Where an event of the run's open thread, fetched after the fact (the clock is the events' own stamps),
        lies: at its stamp, moved as a block with the rest of its thread so the first lies within the thread's span,
        and never past `now_ns` (the thread is still open). None: not an open thread's, or no stamp."""
        run = self._runs.get(self._thread_runs.get(thread_id, ""))
        thread = run.threads.get(thread_id) if run is not None else None
        at = timestamp_ns(stamp)
        if thread is None or at is None:
            return None
        if thread.shift_ns is None:
            thread.shift_ns = max(0, thread.start_ns - at)
        return min(max(at + thread.shift_ns, thread.start_ns), max(now_ns, thread.start_ns))

    def on_event(self, turn: Optional[Turn], event: Any, event_type: str, session_id: str, now_ns: int) -> bool:
        """A `workflow_run.*` event, or a thread event that may be a run's. Returns whether it was the runs'."""
        if event_type.startswith("workflow_run."):
            self._on_run_event(turn, event, event_type, session_id, now_ns)
            return True
        thread_id = get_str(event, "session_thread_id")
        if thread_id is None:
            return False
        if event_type == THREAD_CREATED:
            run_id = get_str(event, "workflow_run_id")
            if run_id is None:
                return False
            run = self._runs.get(run_id) or self._unseen(turn, run_id, session_id, now_ns)
            if run is not None:
                self._thread_started(run, thread_id, get_str(event, "agent_name"), now_ns)
            return True
        run = self._runs.get(self._thread_runs.get(thread_id, ""))
        if run is None:
            return False
        thread = run.threads.get(thread_id)
        if event_type == THREAD_STATUS_TERMINATED or (
            event_type == THREAD_STATUS_IDLE and _stop_type(event) != StopReason.REQUIRES_ACTION
        ):
            if thread is not None:
                stop = StopReason.TERMINATED if event_type == THREAD_STATUS_TERMINATED else _stop_type(event)
                if stop:
                    thread.span.set_attribute(A.TURN_STOP_REASON, stop)
                self._end_thread(run, thread_id, now_ns, incomplete=False)
        elif event_type == THREAD_STATUS_RESCHEDULED and thread is not None:
            thread.span.add_event(event_type, {}, now_ns)
        elif event_type == THREAD_STATUS_RUNNING and thread is None:
            pass  # a thread of the run whose span ended (idle, then running again): nothing new to start
        return True

    def _on_run_event(self, turn: Optional[Turn], event: Any, event_type: str, session_id: str, now_ns: int) -> None:
        run_id = get_str(event, "workflow_run_id")
        if run_id is None:
            if event_type == WORKFLOW_RUN_ERROR and turn is not None:  # the run was refused: it never started
                turn.span.add_event(event_type, _error_attributes(get(event, "error")), now_ns)
            return
        run = self._runs.get(run_id)
        if event_type == WORKFLOW_RUN_CREATED:
            if run is None:
                run = self._start(turn, run_id, session_id, now_ns, incomplete=False)
            if run is not None:
                phases = as_list(get(event, "phases"))
                for phase in phases[:MAX_PLANNED_PHASES]:
                    phase_id, phase_name = get_str(phase, "id"), get_str(phase, "name")
                    if phase_id and phase_name:
                        run.phase_names[phase_id] = phase_name
                attrs: dict[str, AttributeValue] = {A.WORKFLOW_RUN_PHASES: len(phases)}
                name = get_str(event, "name")
                if name:
                    attrs[A.WORKFLOW_RUN_NAME] = name
                run.span.set_attributes(attrs)
            return
        if run is None:
            run = self._unseen(turn, run_id, session_id, now_ns)
            if run is None:
                return
        if event_type == WORKFLOW_RUN_PHASE_STARTED:
            self._phase_started(run, event, now_ns)
        elif event_type == WORKFLOW_RUN_PHASE_ENDED:
            started_id = get_str(event, "phase_started_id") or ""
            if started_id not in run.phases and len(run.phases) == 1:  # no id to match, but only one could end
                started_id = next(iter(run.phases))
            phase = run.phases.pop(started_id, None)
            if phase is not None:
                self._end_phase(run, started_id, phase, now_ns, incomplete=False)
        elif event_type == WORKFLOW_RUN_STATUS_ENDED:
            self._end_run(run, get(event, "result"), now_ns, incomplete=False)
        elif event_type == WORKFLOW_RUN_ERROR:
            run.span.add_event(event_type, _error_attributes(get(event, "error")), now_ns)
        else:  # status_idle, status_running, and what a later beta adds
            run.span.add_event(event_type, {}, now_ns)

    # -- spans ---------------------------------------------------------------------------------------------------

    def _start(
        self, turn: Optional[Turn], run_id: str, session_id: str, now_ns: int, incomplete: bool
    ) -> Optional[_Run]:
        if len(self._runs) >= MAX_RUNS:
            return None
        attrs: dict[str, AttributeValue] = {
            A.GEN_AI_OPERATION_NAME: A.OP_INVOKE_WORKFLOW,
            A.GEN_AI_PROVIDER_NAME: A.PROVIDER,
            A.GEN_AI_CONVERSATION_ID: session_id,
            A.WORKFLOW_RUN_ID: run_id,
        }
        if incomplete:
            attrs[A.SPAN_INCOMPLETE] = True  # its created event came before this process looked
        span = self._telemetry.tracer.start_span(
            A.OP_INVOKE_WORKFLOW,
            context=set_span_in_context(turn.span) if turn is not None else None,
            kind=SpanKind.INTERNAL,
            attributes=attrs,
            start_time=now_ns,
        )
        run = _Run(span, now_ns, run_id)
        self._runs[run_id] = run
        return run

    def _unseen(self, turn: Optional[Turn], run_id: str, session_id: str, now_ns: int) -> Optional[_Run]:
        """The first event of a run this process never saw created."""
        return self._start(turn, run_id, session_id, now_ns, incomplete=True)

    def _phase_started(self, run: _Run, event: Any, now_ns: int) -> None:
        started_id = get_str(event, "id")
        if started_id is None or started_id in run.phases or len(run.phases) >= MAX_OPEN_PHASES:
            return
        phase_id = get_str(event, "workflow_run_phase_id")
        name = run.phase_names.get(phase_id) if phase_id else None
        attrs: dict[str, AttributeValue] = {
            A.GEN_AI_OPERATION_NAME: A.SPAN_WORKFLOW_PHASE,
            A.WORKFLOW_RUN_ID: run.run_id,
        }
        if phase_id:
            attrs[A.WORKFLOW_RUN_PHASE_ID] = phase_id
        span = self._telemetry.tracer.start_span(
            f"{A.SPAN_WORKFLOW_PHASE} {name}" if name else A.SPAN_WORKFLOW_PHASE,
            context=run.context,
            kind=SpanKind.INTERNAL,
            attributes=attrs,
            start_time=now_ns,
        )
        run.phases[started_id] = _Span(span, now_ns)

    def _thread_started(self, run: _Run, thread_id: str, agent_name: Optional[str], now_ns: int) -> None:
        if thread_id in run.threads:
            return
        run.thread_count += 1
        if len(run.threads) >= MAX_THREADS_PER_RUN or run.thread_count > MAX_THREADS_PER_RUN:
            return
        phase = next(iter(run.phases)) if len(run.phases) == 1 else None
        parent = run.phases[phase] if phase is not None else run
        extra = {A.WORKFLOW_RUN_ID: run.run_id}
        span = start_agent_span(self._telemetry, parent.context, thread_id, agent_name, now_ns, **extra)
        run.threads[thread_id] = _Span(span, now_ns, phase)
        self._thread_runs[thread_id] = run.run_id

    def _end_thread(self, run: _Run, thread_id: str, now_ns: int, incomplete: bool) -> None:
        thread = run.threads.pop(thread_id, None)
        self._thread_runs.pop(thread_id, None)
        if thread is None:
            return
        if incomplete:
            thread.span.set_attribute(A.SPAN_INCOMPLETE, True)
        thread.span.end(end_time=max(now_ns, thread.start_ns))

    def _end_phase(self, run: _Run, started_id: str, phase: _Span, now_ns: int, incomplete: bool) -> None:
        """A phase ends with the threads under it still open, marked incomplete."""
        for thread_id, thread in list(run.threads.items()):
            if thread.phase == started_id:
                self._end_thread(run, thread_id, now_ns, incomplete=True)
        if incomplete:
            phase.span.set_attribute(A.SPAN_INCOMPLETE, True)
        phase.span.end(end_time=max(now_ns, phase.start_ns))

    def _end_run(self, run: _Run, result: Any, now_ns: int, incomplete: bool) -> None:
        """The run ends, its phases and threads still open with it (marked incomplete)."""
        self._runs.pop(run.run_id, None)
        for started_id, phase in list(run.phases.items()):
            self._end_phase(run, started_id, phase, now_ns, incomplete=True)
        run.phases.clear()
        for thread_id in list(run.threads):
            self._end_thread(run, thread_id, now_ns, incomplete=True)
        span = run.span
        span.set_attribute(A.WORKFLOW_RUN_THREADS, run.thread_count)
        result_type = get_str(result, "type") if result is not None else None
        error_type: Optional[str] = None
        if result_type:
            span.set_attribute(A.WORKFLOW_RUN_RESULT, result_type)
        if result_type == A.WORKFLOW_RESULT_ERROR:
            error = get(result, "error")
            error_type = (get_str(error, "type") if error is not None else None) or A.ERROR_TYPE_OTHER
            span.set_attribute(A.ERROR_TYPE, error_type)
            message = get_str(error, "message") if error is not None else None
            span.set_status(Status(StatusCode.ERROR, (message or error_type)[:1024]))
        if incomplete:
            span.set_attribute(A.SPAN_INCOMPLETE, True)
        end_ns = max(now_ns, run.start_ns)
        span.end(end_time=end_ns)
        metrics = self._telemetry.metrics
        if metrics is not None and not incomplete:
            attrs = metric_attributes(A.OP_INVOKE_WORKFLOW, {})
            if error_type:
                attrs[A.ERROR_TYPE] = error_type
            metrics.workflow((end_ns - run.start_ns) / 1e9, attrs)

    def end_all(self, now_ns: int) -> None:
        """The session is terminated, deleted, dropped or shut down: every open run ends, marked incomplete."""
        for run in list(self._runs.values()):
            self._end_run(run, None, now_ns, incomplete=True)


def _stop_type(event: Any) -> Optional[str]:
    stop = get(event, "stop_reason")
    return get_str(stop, "type") if stop is not None else None


def _error_attributes(error: Any) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {
        A.ERROR_EVENT_TYPE: (get_str(error, "type") if error is not None else None) or A.ERROR_TYPE_OTHER
    }
    message = get_str(error, "message") if error is not None else None
    if message:
        attrs[A.ERROR_EVENT_MESSAGE] = message
    return attrs
