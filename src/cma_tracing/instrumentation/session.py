"""The pure core: a per-session state machine fed `(event, arrival time, origin)` that opens, routes and ends turns.

No SDK and no I/O here: the patchers adapt the SDK's calls and streams to the methods of `SessionTracker`, and the
tests drive it with plain lists of events. Every public method is safe to call from any thread: it never raises, and
holds the session's lock only while it touches the session's state. The tracker never calls its registry: each call
that changes what the session needs returns a `Next`, which the caller hands to the registry once the lock is released.
"""

from __future__ import annotations

import threading
import time
from typing import AbstractSet, Any, Final, Iterable, Mapping, Optional

from opentelemetry.util.types import AttributeValue

from . import attributes as A
from . import feeds, handlers, sends
from .attributes import StopReason
from .attributes import Trigger
from .event_table import (
    SESSION_DELETED,
    SESSION_STATUS_RUNNING,
    SESSION_STATUS_TERMINATED,
    USER_DEFINE_OUTCOME,
    USER_MESSAGE,
)
from .outcomes import Outcome
from .plans import OUTPUT, SKIP, SKIP_KNOWN, WORK, Plans, Quick, SkipAll
from .workflows import WorkflowRuns
from .fields import get, get_str, timestamp
from .safety import log_swallowed, never_raises
from .telemetry import Telemetry
from .protocol import LIST, STREAM, Next, Origin, Send, StreamEnd
from .turn import DEDUPE_GENERATION, Turn, TurnTemplates, end_turn, late_turn, open_turn

_NO_FIELDS: Final[dict[str, Any]] = {}
_NO_IDS: Final[AbstractSet[str]] = frozenset()


_SKIP_ALL: Final = SkipAll()
_NO_QUICK: Final[Quick] = {}
#: The session goes away: its workflow runs end with it, whether a turn is open or not (SPEC §3.5).
_SESSION_GONE: Final = frozenset((SESSION_STATUS_TERMINATED, SESSION_DELETED))


class SessionTracker:
    """Turns of one session, following SPEC §3.1. One per session id, shared by every stream and send of it."""

    __slots__ = (
        "session_id",
        "turn",
        "turn_count",
        "streams_open",
        "quiet_since_ns",
        "claims",
        "primary_thread",
        "detached",
        "late",
        "workflows",
        "agent_content",
        "_telemetry",
        "_lock",
        "_ended_seen",
        "_ended_seen_old",
        "_base_attributes",
        "_start_attributes",
        "_applied",
        "_templates",
        "_quick",
        "__weakref__",  # the orphan watch holds trackers weakly
    )

    def __init__(
        self,
        session_id: str,
        telemetry: Telemetry,
        start_attributes: Optional[Mapping[str, AttributeValue]] = None,
        turn_count: int = 0,
        late: Optional[Turn] = None,
    ) -> None:
        self.session_id = session_id
        self.turn: Optional[Turn] = None
        self.turn_count = turn_count
        self.streams_open = 0
        self.quiet_since_ns = 0  # when the last stream of the session closed
        self.claims = 0  # streams, sends and list pages in progress
        self.primary_thread: Optional[str] = None  # the coordinator's own thread: not a subagent
        self.detached = False  # its registry let go of it (evicted): it ignores everything from now on
        self.late = late  # the last turn that ended with subagents: its threads' later events go under them
        self.workflows: Optional[WorkflowRuns] = None  # made at the session's first workflow run
        self.agent_content: Optional[Mapping[str, Any]] = None  # the agent's system prompt and tools (content on)
        self._telemetry = telemetry
        self._lock = threading.RLock()  # re-entered by `on_listed` and `on_fetched`, which route each event
        # The ids of the turn that ended last (a turn keeps its own): a late echo of its events is not news.
        self._ended_seen: AbstractSet[str] = _NO_IDS
        self._ended_seen_old: AbstractSet[str] = _NO_IDS
        # The open turn's plan's quick table: the event types handled before the lock is taken (none while no turn
        # is open: what opens or resumes one, and a late echo, need the lock).
        self._quick: Quick = _NO_QUICK
        self._base_attributes: dict[str, AttributeValue] = {
            A.GEN_AI_OPERATION_NAME: A.OP_INVOKE_AGENT,
            A.GEN_AI_PROVIDER_NAME: A.PROVIDER,
            A.GEN_AI_CONVERSATION_ID: session_id,
            A.ANTHROPIC_SESSION_ID: session_id,
            A.HTTP_ROUTE: A.HTTP_ROUTE_EVENTS,
        }
        self._start_attributes: dict[str, AttributeValue] = dict(start_attributes or {})
        self._templates: Optional[TurnTemplates] = None  # for the current start attributes, made on first use
        self._applied: Optional[Mapping[str, AttributeValue]] = None  # the last mapping given to update them

    # -- events --------------------------------------------------------------------------------------------------

    def on_event(self, event: Any, now_ns: int, origin: Origin = STREAM) -> None:
        """One event, at the time the client saw it, from `origin` (by default the session's stream). Never raises.

        The per-event hot path, in one function: a table lookup, a dedupe check and counter updates; only event
        types with a handler make another call. The guard is inline rather than the `never_raises` decorator.
        """
        try:
            # `fields.type_and_id`, inlined once: this is the per-event path.
            if type(event) is dict:
                fields = event
            else:
                try:
                    fields = event.__dict__
                except AttributeError:
                    fields = _NO_FIELDS
            event_type: Any = fields.get("type")
            if event_type is None and fields is not event:
                event_type = getattr(event, "type", None)
            event_id = fields.get("id")
            try:
                action = self._quick.get(event_type)
            except TypeError:  # an unhashable type: the locked path counts it as unknown
                action = None
            if action is not None:
                # The open turn's plan needs no handler for this type: skip it, or count it, without the lock. A turn
                # opened meanwhile by another thread's send would only have counted this earlier event as its own.
                if action <= SKIP_KNOWN:
                    if action == SKIP or self.primary_thread is not None:
                        return
                elif origin is STREAM:
                    turn = self.turn
                    if turn is not None and (
                        action <= OUTPUT or (not turn.adoptable if action == WORK else self.primary_thread is not None)
                    ):
                        quick = True
                        if event_id.__class__ is str:
                            seen = turn.seen
                            if event_id in seen or event_id in turn.seen_old:
                                return
                            quick = len(seen) < DEDUPE_GENERATION - 1  # the locked path starts the next generation
                            if quick:
                                seen.add(event_id)
                        if quick:
                            turn.last_ns = now_ns
                            if action == OUTPUT:
                                turn.waiting = False
                                if not turn.first_output_ns:
                                    turn.first_output_ns = now_ns
                            return
            with self._lock:
                turn = self.turn
                if origin is not STREAM and origin.thread_id is not None:
                    turn, now_ns = feeds.thread_turn(self, turn, origin.thread_id, fields, now_ns)
                if event_id is not None:
                    if event_id.__class__ is not str:
                        event_id = None
                    elif turn is not None:
                        # `Turn.has_seen`, inlined.
                        if event_id in turn.seen or event_id in turn.seen_old:
                            if turn.anchor is None and event_type == USER_MESSAGE and event_id in turn.owned_ids:
                                self._anchor(turn, event, now_ns, origin)  # the processed echo of a queued one
                            return
                    elif event_id in self._ended_seen or event_id in self._ended_seen_old:
                        return
                plan = turn.plan if turn is not None else _DISPATCH  # what opens a turn is the same in every plan
                role = plan.get(event_type) if event_type.__class__ is str else None
                if role is None:
                    if turn is not None and event_id is not None:
                        turn.remember(event_id)
                        turn.unknown_events += 1
                        turn.last_ns = now_ns
                    return
                handler, output, span_event, session_level, opens, resumes = role
                if session_level and origin.thread_id is not None:
                    handler = None
                    span_event = False
                elif opens:
                    if origin is LIST:
                        # A listed opening event counts only as the open turn's own: listing never opens or supersedes.
                        if turn is None or event_id not in turn.owned_ids:
                            return
                    elif handler is not None:
                        handler(self, turn, event, event_id, now_ns, origin)
                        turn = self.turn
                    handler = None
                if turn is None:
                    workflows = self.workflows
                    if workflows is not None and event_type.__class__ is str and origin.thread_id is None:
                        if workflows.on_event(None, event, event_type, self.session_id, now_ns):
                            return  # a run that outlived its turn
                        if event_type in _SESSION_GONE:
                            self.end_runs(now_ns)  # these rows open no turn, so their handlers never run here
                            return
                    if not resumes or origin is not STREAM:
                        return
                    turn = self._resume(event, fields, event_type, now_ns)
                    if turn is None:
                        return
                if event_id is not None:
                    seen = turn.seen  # `Turn.remember`, inlined; it counts the turn's events too
                    seen.add(event_id)
                    if len(seen) >= DEDUPE_GENERATION:
                        turn.seen_old = seen
                        turn.seen = set()
                        turn.rotations += 1
                turn.last_ns = now_ns
                if output:
                    turn.waiting = False
                    if not turn.first_output_ns:
                        turn.first_output_ns = now_ns
                if span_event:
                    turn.span.add_event(event_type, handlers.span_event_attributes(event), now_ns)
                if handler is not None:
                    handler(self, turn, event, event_id, now_ns, origin)
        except Exception:
            log_swallowed("SessionTracker.on_event")

    def on_listed(self, events: Iterable[Any], now_ns: int, thread_id: Optional[str] = None) -> None:
        """A page of `events.list` (or of a thread's `threads.events.list`); see `feeds.on_listed`. Never raises."""
        feeds.on_listed(self, events, now_ns, thread_id)

    def threads_to_fetch(self, event: Any) -> list[str]:
        """With `fetch_subthreads`, the threads to fetch before this idle; see `feeds.threads_to_fetch`."""
        return feeds.threads_to_fetch(self, event) or []

    def on_fetched(self, thread_id: str, events: Iterable[Any], now_ns: int) -> None:
        """A page of a subagent thread's events fetched after the fact; see `feeds.on_fetched`. Never raises."""
        feeds.on_fetched(self, thread_id, events, now_ns)

    # -- sends ---------------------------------------------------------------------------------------------------

    def begin_send(self, events: Any, now_ns: int) -> Optional[Send]:
        """Before a send's HTTP request: open, steer or join a turn; see `sends.begin_send`. Never raises."""
        return sends.begin_send(self, events, now_ns)

    def begin_initial(self, events: Any, now_ns: int) -> None:
        """A `sessions.create(initial_events=...)` that succeeded; see `sends.begin_initial`. Never raises."""
        sends.begin_initial(self, events, now_ns)

    def send_succeeded(self, send: Optional[Send], response: Any) -> None:
        """The send's response names its events' ids; see `sends.send_succeeded`. Never raises."""
        sends.send_succeeded(self, send, response)

    def send_failed(self, send: Optional[Send], error: BaseException, error_type: str) -> None:
        """The send that opened its turn failed: the turn ends `send_error`. Never raises."""
        sends.send_failed(self, send, error, error_type)

    # -- streams, claims and the end of the session's state ---------------------------------------------------------

    def claim(self, stream: bool = False) -> None:
        """Hold the session open for a send, list or stream (the registry calls this)."""
        with self._lock:
            self.claims += 1
            if stream:
                self.streams_open += 1

    def release(self) -> int:
        """The send or list that claimed the session is done. Returns the `Next` step."""
        try:
            with self._lock:
                self.claims = max(0, self.claims - 1)
                return self._next()
        except Exception:
            log_swallowed("SessionTracker.release")
            return Next.NOTHING

    def stream_finished(
        self, how: str, now_ns: int, error: Optional[BaseException] = None, error_type: str = ""
    ) -> int:
        """A stream of this session stopped (`StreamEnd`), reported once per stream by its proxy. Returns `Next`."""
        try:
            with self._lock:
                self.streams_open = max(0, self.streams_open - 1)
                self.claims = max(0, self.claims - 1)
                turn = self.turn
                if turn is not None:
                    if how == StreamEnd.FATAL:
                        self._end(turn, StopReason.STREAM_ERROR, now_ns, error_type, error)
                    elif how == StreamEnd.TRANSPORT:
                        turn.last_stream_failed = True
                        turn.error_type = error_type or turn.error_type
                        turn.span.add_event(
                            A.EVENT_STREAM_ERROR, handlers.exception_attributes(error, error_type), now_ns
                        )
                    elif how == StreamEnd.ENDED:
                        turn.last_stream_failed = False
                    elif how == StreamEnd.CLOSED and not turn.waiting and self.streams_open == 0:
                        self._end(turn, StopReason.ABANDONED, now_ns)
                if self.streams_open == 0:
                    self.quiet_since_ns = now_ns
                return self._next()
        except Exception:
            log_swallowed("SessionTracker.stream_finished")
            return Next.NOTHING

    def check_orphan(self, now_ns: int, timeout_ns: int) -> tuple[Optional[int], int]:
        """End the open turn if no stream of the session has been open for `timeout_ns`, at the last moment anything
        of it was seen. Returns when to check again (None: nothing left to watch) and the `Next` step."""
        try:
            with self._lock:
                turn = self.turn
                if turn is None or self.streams_open:
                    return None, self._next()
                due = max(self.quiet_since_ns, turn.start_ns) + timeout_ns
                if now_ns < due:
                    return due, Next.NOTHING
                reason = StopReason.STREAM_ERROR if turn.last_stream_failed else StopReason.UNOBSERVED
                self._end(turn, reason, turn.last_ns)
                return None, self._next()
        except Exception:
            log_swallowed("SessionTracker.check_orphan")
            return None, Next.NOTHING

    @never_raises
    def end_all(self, reason: str, end_ns: Optional[int] = None) -> None:
        """End the open turn (`shutdown` at uninstrument and exit; `unobserved` when a recording ends or the session
        is evicted) at `end_ns`, or at its last event when None; and the late children still open."""
        with self._lock:
            turn = self.turn
            if turn is not None:
                self._end(turn, reason, turn.last_ns if end_ns is None else end_ns)
            late = self.late
            if late is not None and late.children is not None:
                late.children.end_open(late.last_ns if end_ns is None else end_ns)
            self.end_runs(time.time_ns() if end_ns is None else end_ns)
            if self.detached:
                self._quick = _SKIP_ALL

    def detach(self) -> int:
        """The registry lets go of this tracker (evicted while a stream may still hold it): from now on it opens no
        turn and routes no event. Returns its turn count, for the session's next tracker. Its open turn is ended
        by `end_all`."""
        with self._lock:
            self.detached = True
            self._quick = _SKIP_ALL
            return self.turn_count

    @never_raises
    def end_runs(self, now_ns: int) -> None:
        """The session is terminated, deleted, let go of or shut down: its open workflow runs end, incomplete."""
        with self._lock:
            if self.workflows is not None:
                self.workflows.end_all(now_ns)
                self.workflows = None

    def idle(self) -> bool:
        """Nothing open or in progress: the session's state can be dropped."""
        with self._lock:
            return self.turn is None and self.claims == 0

    def has_seen(self, event_id: str) -> bool:
        """Whether this session already routed the event with this id (in its open turn or the one before)."""
        turn = self.turn
        if turn is not None and turn.has_seen(event_id):
            return True
        return event_id in self._ended_seen or event_id in self._ended_seen_old

    def update_start_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        """Agent and client attributes for turns opened from now on (the open one keeps what it started with).
        `attributes` is read, never kept for writing: the patchers share one mapping between calls. Never raises."""
        if attributes is self._applied:
            return  # as at nearly every call: each stream and send of a session names the same client mapping again
        try:
            with self._lock:
                current = self._start_attributes
                for key, value in attributes.items():
                    if current.get(key) != value:
                        current.update(attributes)
                        self._templates = None
                        break
                self._applied = attributes  # all of it is in the start attributes until the next update
        except Exception:
            log_swallowed("SessionTracker.update_start_attributes")

    @property
    def telemetry(self) -> Telemetry:
        return self._telemetry

    def start_attributes(self) -> dict[str, AttributeValue]:
        with self._lock:
            return dict(self._start_attributes)

    # -- lifecycle handlers (lock held; `turn` is None only for what opens a turn) --------------------------------

    def _on_user_message(
        self, turn: Optional[Turn], event: Any, event_id: Optional[str], now_ns: int, origin: Origin
    ) -> None:
        """A user.message or user.define_outcome on a feed: the open turn's own, one it adopts, an outcome's
        steering, or the start of a new turn."""
        is_outcome = get(event, "type") == USER_DEFINE_OUTCOME
        if turn is not None:
            if event_id is not None and event_id in turn.owned_ids:
                self._anchor(turn, event, now_ns, origin)
                if is_outcome and turn.outcome is not None:
                    turn.outcome.learn_id(turn, event)
                return
            if turn.adopting or turn.adoptable:
                self._adopt(turn, event, event_id, now_ns, origin, is_outcome)
                return
            if not is_outcome and sends.steering(turn):
                if event_id is not None:
                    turn.owned_ids.add(event_id)
                if not handlers.was_sent(turn, event, USER_MESSAGE):
                    handlers.record_reply(turn, event, USER_MESSAGE, now_ns)
                    if turn.content is not None:
                        turn.content.add_input(event)
                return
            self._end(turn, StopReason.SUPERSEDED, now_ns)
        new = sends.open_with(self, [event], [get_str(event, "type")], now_ns, Trigger.USER_MESSAGE, adopting=False)
        if event_id is not None:
            new.owned_ids.add(event_id)
        self._anchor(new, event, now_ns, origin)

    def _adopt(
        self, turn: Turn, event: Any, event_id: Optional[str], now_ns: int, origin: Origin, is_outcome: bool
    ) -> None:
        """A turn opened before its user event was seen takes it as its own: a send's (until the response names its
        ids), an `initial_events` one's (the first it sees), or a `resume` turn's before its first model request."""
        if event_id is not None:
            turn.owned_ids.add(event_id)
        self._anchor(turn, event, now_ns, origin)
        if turn.trigger == Trigger.INITIAL_EVENTS:
            turn.adopting = False
        if turn.adoptable:
            self._adopted(turn)
            turn.trigger = Trigger.DEFINE_OUTCOME if is_outcome else Trigger.USER_MESSAGE
            turn.span.set_attribute(A.TURN_TRIGGER, turn.trigger)
            if is_outcome:
                turn.outcome = Outcome(event)
                turn.span.set_attributes(turn.outcome.start_attributes())
            sends.add_input(self, turn, event)
        elif is_outcome and turn.outcome is not None:
            turn.outcome.learn_id(turn, event)

    def _on_work(self, turn: Turn, event: Any, event_id: Optional[str], now_ns: int, origin: Origin) -> None:
        """A turn nobody records still needs to know its first model request: a `resume` turn adopts no user event
        after it."""
        self._adopted(turn)

    def _adopted(self, turn: Turn) -> None:
        """The turn adopts no user event from now on: a turn nobody records only counts model request starts."""
        turn.adoptable = False

    def _on_thread_seen(self, turn: Turn, event: Any, event_id: Optional[str], now_ns: int, origin: Origin) -> None:
        """A turn nobody records still learns the coordinator's own thread, as `handlers.on_thread_status` does: the
        first thread to report a status on the session's feed. Whether the thread's later work resumes a turn
        depends on it."""
        if self.primary_thread is None and origin.thread_id is None:
            thread_id = get(event, "session_thread_id")
            workflows = self.workflows
            if thread_id.__class__ is str and (workflows is None or not workflows.has_thread(thread_id)):
                self.primary_thread = thread_id

    def _on_verdict(self, turn: Turn, event: Any, event_id: Optional[str], now_ns: int, origin: Origin) -> None:
        """A turn nobody records still needs to know a terminal verdict: steering no longer joins the outcome."""
        if turn.outcome is not None:
            turn.outcome.verdict(event)

    def _on_running(self, turn: Turn, event: Any, event_id: Optional[str], now_ns: int, origin: Origin) -> None:
        turn.waiting = False

    def _on_idle(self, turn: Turn, event: Any, event_id: Optional[str], now_ns: int, origin: Origin) -> None:
        stop = get(event, "stop_reason")
        reason = get_str(stop, "type") if stop is not None else None
        if reason == StopReason.REQUIRES_ACTION:
            turn.waiting = True
            return
        self._end(turn, reason or StopReason.UNKNOWN, now_ns)

    def _on_terminated(self, turn: Turn, event: Any, event_id: Optional[str], now_ns: int, origin: Origin) -> None:
        self._end(turn, StopReason.TERMINATED, now_ns)
        self.end_runs(now_ns)

    def _on_deleted(self, turn: Turn, event: Any, event_id: Optional[str], now_ns: int, origin: Origin) -> None:
        self._end(turn, StopReason.DELETED, now_ns)
        self.end_runs(now_ns)

    def _on_workflow_event(self, turn: Turn, event: Any, event_id: Optional[str], now_ns: int, origin: Origin) -> None:
        """A workflow run's event during a turn nobody records: a run this session already follows goes on."""
        if self.workflows is not None:
            self.workflows.on_event(turn, event, get(event, "type"), self.session_id, now_ns)

    def workflow_runs(self) -> WorkflowRuns:
        """The session's runs, made at its first (lock held)."""
        workflows = self.workflows
        if workflows is None:
            workflows = self.workflows = WorkflowRuns(self._telemetry)
            if self.turn is not None and self.turn.children is not None:
                self.turn.children.workflows = workflows
        return workflows

    # -- opening and ending (lock held) ------------------------------------------------------------------------

    def _anchor(self, turn: Turn, event: Any, now_ns: int, origin: Origin) -> None:
        """The turn's own user.message, processed: its stamp maps the server's clock to ours (for fetched and late
        events), best by the moment its echo was seen on the stream."""
        if turn.anchor is not None:
            return
        at = timestamp(get(event, "processed_at"))
        if at is not None:
            turn.anchor = at
            if origin is STREAM:
                turn.anchor_ns = now_ns

    def _open(self, now_ns: int, adopting: bool, trigger: str, outcome: Optional[Outcome] = None) -> Turn:
        templates = self._templates
        if templates is None:
            templates = self._templates = TurnTemplates(self._base_attributes, self._start_attributes)
        self.turn_count += 1
        turn = open_turn(self._telemetry, templates, self.turn_count, now_ns, adopting, trigger, outcome)
        if turn.content is not None and self.agent_content is not None:
            turn.content.add_agent(self.agent_content)
        if self.workflows is not None and turn.children is not None:
            turn.children.workflows = self.workflows
        # A turn nobody records (a no-op tracer or a sampled-out turn, no meter, no content capture) follows only its
        # lifecycle: its tokens, tools, children and span events would go nowhere.
        # A recorded turn's plan leaves out the handlers that could record nothing in its mode.
        turn.plan = (
            recording_plan(turn.children is not None, turn.content is not None, self._telemetry.child_spans)
            if turn.recorded
            else _LIFECYCLE
        )
        self._quick = _PLANS.quick(turn.plan)
        self.turn = turn
        return turn

    def _resume(self, event: Any, fields: Any, event_type: Any, now_ns: int) -> Optional[Turn]:
        """Agent work on the session's stream with no turn open: the agent resumed on its own (a budget raise, a
        workflow run that ended, a deployment's session, a process that attached mid-turn). A subagent's
        cross-posted work opens nothing."""
        if self.detached:
            return None
        thread_id = fields.get("session_thread_id")
        if thread_id is None and fields is not event:
            # The SDK's models of agent output declare no `session_thread_id`: a cross-posted event's is among its
            # unknown fields. `fields.get` inlined, as at every turn a stream opens.
            extra = getattr(event, "__pydantic_extra__", None)
            if extra:
                thread_id = extra.get("session_thread_id")
        if thread_id is not None and thread_id != self.primary_thread:
            return None
        turn = self._open(now_ns, False, Trigger.RESUME)
        if event_type == SESSION_STATUS_RUNNING:
            turn.adoptable = True  # until its first model request, which the quick table routes while this holds
        return turn

    def _end(
        self,
        turn: Turn,
        reason: str,
        end_ns: int,
        error_type: Optional[str] = None,
        error: Optional[BaseException] = None,
    ) -> None:
        """End `turn` exactly once; a turn that ended with subagents becomes the session's late turn."""
        if turn.ended:
            return
        if self.turn is turn:
            self.turn = None
            self._quick = _SKIP_ALL if self.detached else _NO_QUICK
        self._ended_seen, self._ended_seen_old = turn.seen, turn.seen_old
        subagents = end_turn(self._telemetry, turn, reason, end_ns, error_type, error)
        if subagents:
            try:
                previous, self.late = self.late, late_turn(self._telemetry, turn, subagents)
                self.late.plan = _DISPATCH
                if previous is not None and previous.children is not None:
                    previous.children.end_open(previous.last_ns)
            except Exception:
                log_swallowed("late turn")

    def _next(self) -> int:
        if self.turn is not None:
            return Next.WATCH if self.streams_open == 0 else Next.NOTHING
        return Next.DROP if self.claims == 0 else Next.NOTHING


_PLANS: Final = Plans(SessionTracker)
_DISPATCH: Final = _PLANS.full  # what opens a turn is the same in every plan
_LIFECYCLE: Final = _PLANS.lifecycle
recording_plan: Final = _PLANS.recording
