"""The pure core: a per-session state machine fed `(event, arrival time)` that opens, updates and ends turns.

No SDK and no I/O here: the patchers adapt the SDK's calls and streams to the methods of `SessionTracker`, and the
tests drive it with plain lists of events. Every public method is safe to call from the app's thread: it never
raises, and it holds the session's lock only while it touches the session's state.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING, AbstractSet, Any, Callable, Final, Iterable, Mapping, Optional

from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from . import attributes as A
from .attributes import StopReason
from .children import ChildTemplates, TurnChildren
from .content import TurnContent
from .metrics import metric_attributes
from .telemetry import Telemetry
from .event_table import EVENT_ROLES, USER_MESSAGE
from .fields import as_int, as_list, fields_of, get, get_str
from .safety import log_swallowed, never_raises

if TYPE_CHECKING:
    from .sessions import SessionRegistry

#: Event ids kept per turn for deduplication, in two generations of this size each. The stream never replays and list
#: pages feed only the open turn's events, so duplicates (echoes, overlapping pages) fall within the open turn; the
#: turn that ended last is kept too, for a late echo. A turn's set is as small as the turn, and stays in cache.
DEDUPE_GENERATION: Final = 1024
#: Distinct tool names kept per turn.
MAX_TOOL_NAMES: Final = 64
#: Ids of events this process sent, kept per turn (their echoes are not recorded twice).
MAX_SENT_IDS: Final = 256
#: Model requests whose end has not been seen yet, kept per turn.
MAX_OPEN_REQUESTS: Final = 256

_NO_FIELDS: Final[dict[str, Any]] = {}
_NO_IDS: Final[AbstractSet[str]] = frozenset()


#: Where an event came from: the session's stream, an `events.list` page, or a subagent thread's own feed.
FROM_STREAM: Final = 0
FROM_LIST: Final = 1
FROM_THREAD: Final = 2


class StreamEnd:
    """How a stream of the session stopped, as the patchers classify it."""

    ENDED: Final = "ended"  # the server ended the body
    TRANSPORT: Final = "transport"  # the connection failed: the turn may be resumed by a reconnect
    FATAL: Final = "fatal"  # an SSE `error` frame: the API says the stream failed
    CLOSED: Final = "closed"  # the consumer stopped reading before the end


class Turn:
    """One user turn: its span, and counters (no event is kept)."""

    __slots__ = (
        "span",
        "index",
        "start_ns",
        "last_ns",
        "adopting",
        "owned_ids",
        "anchor",
        "sent_ids",
        "waiting",
        "first_output_ns",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "model_requests",
        "open_requests",
        "tool_calls",
        "tool_names",
        "events",
        "unknown_events",
        "usage",
        "error_type",
        "last_stream_failed",
        "children",
        "content",
        "ended",
        "seen",
        "seen_old",
        "plan",
    )

    def __init__(self, span: Span, index: int, start_ns: int, adopting: bool, plan: Plan) -> None:
        self.span = span
        self.plan = plan  # how each event type is handled: in full, or only the lifecycle if nobody records the turn
        self.index = index
        self.start_ns = start_ns
        self.last_ns = start_ns
        self.adopting = adopting  # opened by a send whose response has not named its user.message ids yet
        self.owned_ids: set[str] = set()
        self.anchor: Optional[datetime] = None  # processed_at of the turn's own user.message
        self.sent_ids: set[str] = set()
        self.waiting = False  # idle with requires_action: the client has to answer
        self.first_output_ns = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cache_read_tokens = 0
        self.cache_write_tokens = 0
        self.model_requests = 0
        self.open_requests: set[str] = set()
        self.tool_calls = 0
        self.tool_names: list[str] = []
        self.events = 0
        self.unknown_events = 0
        self.usage: Any = None  # the latest session.usage payload (cumulative, so one is enough)
        self.error_type: Optional[str] = None  # of the latest session.error
        self.last_stream_failed = False
        self.children: Optional[TurnChildren] = None  # None with child_spans=False
        self.content: Optional[TurnContent] = None  # None unless content capture is on
        self.ended = False
        # Ids of the events routed to this turn, for deduplication, in two generations (the older one frozen).
        self.seen: set[str] = set()
        self.seen_old: AbstractSet[str] = _NO_IDS

    def remember(self, event_id: str) -> None:
        seen = self.seen
        seen.add(event_id)
        if len(seen) >= DEDUPE_GENERATION:
            self.seen_old = seen
            self.seen = set()


Handler = Callable[["SessionTracker", Turn, Any, Optional[str], int], None]
#: type -> (handler, output, span_event, session_level): the table of `event_table`, resolved.
Plan = dict[str, tuple[Optional[Handler], bool, bool, bool]]


class SessionTracker:
    """Turns of one session, following SPEC §3.1. One per session id, shared by every stream and send of it."""

    __slots__ = (
        "session_id",
        "turn",
        "turn_count",
        "streams_open",
        "quiet_since_ns",
        "claims",
        "retired",
        "primary_thread",
        "_telemetry",
        "_registry",
        "_feed_thread",
        "_fetching",
        "_lock",
        "_ended_seen",
        "_ended_seen_old",
        "_base_attributes",
        "_start_attributes",
        "_templates",
        "_skip",
        "__weakref__",  # the orphan watch holds trackers weakly
    )

    def __init__(
        self,
        session_id: str,
        telemetry: Telemetry,
        registry: Optional[SessionRegistry] = None,
        start_attributes: Optional[Mapping[str, AttributeValue]] = None,
    ) -> None:
        self.session_id = session_id
        self.turn: Optional[Turn] = None
        self.turn_count = 0
        self.streams_open = 0
        self.quiet_since_ns = 0  # when the last stream of the session closed
        self.claims = 0  # streams, sends and list pages in progress
        self.retired = False  # dropped from the registry: callers must fetch a fresh tracker
        self.primary_thread: Optional[str] = None  # the coordinator's own thread: not a subagent
        self._telemetry = telemetry
        self._registry = registry
        self._feed_thread: Optional[str] = None  # while routing a thread feed's event: that thread
        self._fetching = False  # while routing events fetched after the fact (`fetch_subthreads`)
        self._lock = threading.RLock()  # re-entered by `on_listed`, which routes each listed event
        # The ids of the turn that ended last (a turn keeps its own): a late echo of its events is not news.
        self._ended_seen: AbstractSet[str] = _NO_IDS
        self._ended_seen_old: AbstractSet[str] = _NO_IDS
        # While a turn nobody records is open: the event types it ignores, skipped before the lock is taken.
        self._skip: AbstractSet[str] = _NO_IDS
        self._base_attributes: dict[str, AttributeValue] = {
            A.GEN_AI_OPERATION_NAME: A.OP_INVOKE_AGENT,
            A.GEN_AI_PROVIDER_NAME: A.PROVIDER,
            A.GEN_AI_CONVERSATION_ID: session_id,
            A.ANTHROPIC_SESSION_ID: session_id,
            A.HTTP_ROUTE: A.HTTP_ROUTE_EVENTS,
        }
        self._start_attributes: dict[str, AttributeValue] = dict(start_attributes or {})
        self._templates: Optional[_Templates] = None  # what every turn of the session shares, made on first use

    # -- what the patchers call ------------------------------------------------------------------------------

    @never_raises
    def update_start_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        """Agent and client attributes for turns opened from now on (they are read at turn start)."""
        current = self._start_attributes
        if any(current.get(key) != value for key, value in attributes.items()):
            current.update(attributes)
            self._templates = None

    def on_event(self, event: Any, now_ns: int, source: int = FROM_STREAM, thread_id: Optional[str] = None) -> None:
        """One event read from a stream, at the time the client saw it (or, with `source`, one of a list page or a
        subagent thread's feed, then `thread_id` is that thread). Never raises.

        The per-event hot path, in one function: a table lookup, a dedupe check and counter updates; only event
        types with a handler make another call. The guard is inline rather than the `never_raises` decorator.
        """
        skip = self._skip
        if skip:
            # A turn nobody records is open, and this event could change nothing about it (not even its end time,
            # which no one sees). Read without the lock: a turn opened meanwhile by another thread's send would only
            # have counted this earlier event as its own.
            try:
                if (event if event.__class__ is dict else event.__dict__).get("type") in skip:
                    return
            except Exception:
                pass  # not a model or a dict, or an unhashable type: the locked path below copes
        try:
            with self._lock:
                # Pydantic models keep their fields in `__dict__`: reading it is twice as fast as `getattr`.
                if event.__class__ is dict:
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
                turn = self.turn
                if event_id is not None:
                    if event_id.__class__ is not str:
                        event_id = None
                    elif turn is not None:
                        if event_id in turn.seen or event_id in turn.seen_old:
                            return
                    elif event_id in self._ended_seen or event_id in self._ended_seen_old:
                        return
                plan = turn.plan if turn is not None else _DISPATCH  # user.message is the same in every plan
                role = plan.get(event_type) if event_type.__class__ is str else None
                if role is None:
                    if turn is not None and event_id is not None:
                        turn.remember(event_id)
                        turn.events += 1
                        turn.unknown_events += 1
                        turn.last_ns = now_ns
                    return
                handler, output, span_event, session_level = role
                if session_level and source == FROM_THREAD:
                    handler = None
                    span_event = False
                elif handler is _on_user_message_fn:
                    if source == FROM_LIST:
                        # A listed user.message counts only as the open turn's own: listing never opens or supersedes.
                        if turn is None or event_id not in turn.owned_ids:
                            return
                    else:
                        handler(self, turn, event, event_id, now_ns)
                        turn = self.turn
                    handler = None
                if turn is None:
                    return
                if event_id is not None:
                    seen = turn.seen  # `turn.remember(event_id)`, inlined on the hot path
                    seen.add(event_id)
                    if len(seen) >= DEDUPE_GENERATION:
                        turn.seen_old = seen
                        turn.seen = set()
                    turn.events += 1
                turn.last_ns = now_ns
                if output:
                    turn.waiting = False
                    if not turn.first_output_ns:
                        turn.first_output_ns = now_ns
                if span_event:
                    turn.span.add_event(event_type, _span_event_attributes(event), now_ns)
                if handler is not None:
                    if thread_id is None:
                        handler(self, turn, event, event_id, now_ns)
                    else:
                        self._feed_thread = thread_id
                        try:
                            handler(self, turn, event, event_id, now_ns)
                        finally:
                            self._feed_thread = None
        except Exception:
            log_swallowed("SessionTracker.on_event")

    def on_thread_event(self, thread_id: str, event: Any, now_ns: int) -> None:
        """One event of a subagent thread's own feed (`threads.events.stream` / `list`): it feeds that subagent.

        A thread's feed carries its model requests and messages, which the session's stream does not. It never
        opens, ends or supersedes a turn.
        """
        self.on_event(event, now_ns, FROM_THREAD, thread_id)

    @never_raises
    def on_listed(self, events: Iterable[Any], now_ns: int, thread_id: Optional[str] = None) -> None:
        """A page of `events.list` (or of a thread's `threads.events.list` with `thread_id`): feeds the open turn
        with the events listed after its own user.message, no others.

        Listing a session's history must neither open turns nor fold earlier turns into the open one.
        """
        with self._lock:
            turn = self.turn
            if turn is None or turn.adopting:
                return
            source = FROM_LIST if thread_id is None else FROM_THREAD
            for event in events:
                at = _timestamp(get(event, "processed_at"))
                if at is None:
                    continue
                if turn.anchor is None:
                    if get(event, "type") == USER_MESSAGE and get(event, "id") in turn.owned_ids:
                        turn.anchor = at
                        self.on_event(event, now_ns, source, thread_id)
                    continue
                if at > turn.anchor:
                    self.on_event(event, now_ns, source, thread_id)
                if self.turn is not turn:
                    break
            self._settle()

    @never_raises
    def threads_to_fetch(self, event: Any) -> list[str]:
        """With `fetch_subthreads`, for a `session.status_idle` about to end the open turn: the subagent threads
        whose own feeds to fetch first (the turn's, open or ended). Empty otherwise."""
        with self._lock:
            turn = self.turn
            if (
                turn is None
                or turn.children is None
                or turn.anchor is None
                or get(event, "type") != "session.status_idle"
            ):
                return []
            stop = get(event, "stop_reason")
            if (get_str(stop, "type") if stop is not None else None) == StopReason.REQUIRES_ACTION:
                return []
            return turn.children.thread_ids()

    @never_raises
    def on_fetched(self, thread_id: str, events: Iterable[Any], now_ns: int) -> None:
        """A page of a subagent thread's events fetched after the fact (`fetch_subthreads`): those after the turn's
        own user.message go under the thread's subagent span.

        Nobody saw them arrive, so each is placed by its `processed_at`, shifted from the server's clock to ours by
        the turn's own user.message, and kept within the subagent span.
        """
        with self._lock:
            turn = self.turn
            if turn is None or turn.children is None or turn.anchor is None:
                return
            anchor = turn.anchor
            low, high = turn.children.thread_range(thread_id, now_ns)
            self._fetching = True
            try:
                for event in events:
                    at = _timestamp(get(event, "processed_at"))
                    try:
                        if at is None or at <= anchor:
                            continue
                        offset = at - anchor
                    except TypeError:  # one stamp with a time zone and one without
                        continue
                    at_ns = (
                        turn.start_ns
                        + (offset.days * 86_400 + offset.seconds) * 1_000_000_000
                        + offset.microseconds * 1000
                    )
                    self.on_event(event, min(max(at_ns, low), high), FROM_THREAD, thread_id)
            finally:
                self._fetching = False

    @never_raises
    def begin_send(self, events: Any, now_ns: int) -> Optional[Turn]:
        """Before a send's HTTP request: open a turn for a user.message, or join the open one.

        Returns the turn to make current while the send runs (its HTTP span then nests under the turn).
        """
        types = [get_str(e, "type") for e in events] if isinstance(events, (list, tuple)) else []
        with self._lock:
            if USER_MESSAGE in types:
                if self.turn is not None:
                    self._end(self.turn, StopReason.SUPERSEDED, now_ns)
                turn = self._open(now_ns, adopting=True)
                if turn is not None and turn.content is not None:
                    for event, event_type in zip(events, types):
                        if event_type == USER_MESSAGE:
                            turn.content.add_input(event)
                self._settle()
                return turn
            turn = self.turn
            if turn is not None:
                turn.last_ns = now_ns
                for event, event_type in zip(events, types):
                    if event_type in _REPLY_TYPES:
                        turn.span.add_event(event_type, _reply_attributes(event), now_ns)
                        self._answer_tool(turn, event, event_type, now_ns)
            return turn

    @never_raises
    def send_succeeded(self, turn: Optional[Turn], response: Any) -> None:
        """The send's response echoes each event with its id: the turn owns its user.message ids."""
        if turn is None:
            return
        with self._lock:
            for echo in as_list(get(response, "data")):
                event_id = get_str(echo, "id")
                if event_id is None:
                    continue
                if get(echo, "type") == USER_MESSAGE:
                    turn.owned_ids.add(event_id)
                elif len(turn.sent_ids) < MAX_SENT_IDS:
                    turn.sent_ids.add(event_id)
            turn.adopting = False

    @never_raises
    def send_failed(self, turn: Optional[Turn], opened: bool, error: BaseException, error_type: str) -> None:
        """The send that opened `turn` failed: the turn ends with it (its exception still reaches the app)."""
        if turn is None or not opened:
            return
        with self._lock:
            if not turn.ended:
                self._end(turn, StopReason.SEND_ERROR, time.time_ns(), error_type=error_type, error=error)
            self._settle()

    def claim(self, stream: bool = False) -> bool:
        """Hold the session open for a send, list or stream. False if it was retired: fetch a fresh tracker."""
        with self._lock:
            if self.retired:
                return False
            self.claims += 1
            if stream:
                self.streams_open += 1
            return True

    @never_raises
    def release(self) -> None:
        """The send or list that `claim`ed the session is done."""
        with self._lock:
            self.claims = max(0, self.claims - 1)
            self._settle()

    @never_raises
    def stream_finished(
        self, how: str, now_ns: int, error: Optional[BaseException] = None, error_type: str = ""
    ) -> None:
        """A stream of this session stopped (`StreamEnd`). Called exactly once per stream by its proxy."""
        with self._lock:
            self.streams_open = max(0, self.streams_open - 1)
            self.claims = max(0, self.claims - 1)
            turn = self.turn
            if turn is not None:
                if how == StreamEnd.FATAL:
                    self._end(turn, StopReason.STREAM_ERROR, now_ns, error_type=error_type, error=error)
                elif how == StreamEnd.TRANSPORT:
                    turn.last_stream_failed = True
                    turn.error_type = error_type or turn.error_type
                    turn.span.add_event(A.EVENT_STREAM_ERROR, _exception_attributes(error, error_type), now_ns)
                elif how == StreamEnd.ENDED:
                    turn.last_stream_failed = False
                elif how == StreamEnd.CLOSED and not turn.waiting and self.streams_open == 0:
                    self._end(turn, StopReason.ABANDONED, now_ns)
            if self.streams_open == 0:
                self.quiet_since_ns = now_ns
            self._settle()

    @never_raises
    def check_orphan(self, now_ns: int, timeout_ns: int) -> Optional[int]:
        """End the open turn if no stream of the session has been open for `timeout_ns`.

        Returns the time to check again (ns), or None when nothing is left to watch.
        """
        with self._lock:
            turn = self.turn
            if turn is None or self.streams_open:
                return None
            due = max(self.quiet_since_ns, turn.start_ns) + timeout_ns
            if now_ns < due:
                return due
            if turn.last_stream_failed:
                self._end(turn, StopReason.STREAM_ERROR, turn.last_ns, error_type=turn.error_type or A.ERROR_TYPE_OTHER)
            else:
                self._end(turn, StopReason.UNOBSERVED, turn.last_ns)
            self._settle()
            return None

    @never_raises
    def shutdown(self, now_ns: int, reason: str = StopReason.SHUTDOWN) -> None:
        """End the open turn: `shutdown` at uninstrument and interpreter exit, `unobserved` when evicted."""
        with self._lock:
            if self.turn is not None:
                self._end(self.turn, reason, now_ns)
            self._settle()

    def has_seen(self, event_id: str) -> bool:
        """Whether this session already routed the event with this id (in its open turn or the one before)."""
        turn = self.turn
        if turn is not None and (event_id in turn.seen or event_id in turn.seen_old):
            return True
        return event_id in self._ended_seen or event_id in self._ended_seen_old

    def idle(self) -> bool:
        """Nothing open or in progress: the session's state can be dropped."""
        return self.turn is None and self.claims == 0

    # -- routing (lock held) -----------------------------------------------------------------------------------

    # -- handlers (lock held; `turn` is None only for user.message) -------------------------------------------

    def _on_user_message(self, turn: Optional[Turn], event: Any, event_id: Optional[str], now_ns: int) -> None:
        if turn is not None:
            if event_id is not None and event_id in turn.owned_ids:
                self._anchor(turn, event)
                return
            if turn.adopting:
                if event_id is not None:
                    turn.owned_ids.add(event_id)
                self._anchor(turn, event)
                return
            self._end(turn, StopReason.SUPERSEDED, now_ns)
        new = self._open(now_ns, adopting=False)
        if new is not None:
            if event_id is not None:
                new.owned_ids.add(event_id)
            self._anchor(new, event)
            if new.content is not None:
                new.content.add_input(event)

    def _on_agent_message(self, turn: Turn, event: Any, event_id: Optional[str], now_ns: int) -> None:
        """The coordinator's own messages are the turn's output; a subagent's stay with its thread."""
        if turn.content is not None and self._feed_thread is None:
            thread_id = get(event, "session_thread_id")
            if thread_id is None or thread_id == self.primary_thread:
                turn.content.add_output_text(event)

    def _on_user_reply(self, turn: Turn, event: Any, event_id: Optional[str], now_ns: int) -> None:
        if event_id not in turn.sent_ids:
            event_type = get(event, "type")
            turn.span.add_event(event_type, _reply_attributes(event), now_ns)
            self._answer_tool(turn, event, event_type, now_ns)

    def _answer_tool(self, turn: Turn, event: Any, event_type: str, now_ns: int) -> None:
        """A custom tool's span ends when the app answers it; a confirmation is recorded, and a denial ends it."""
        children = turn.children
        if children is None:
            return
        if event_type == "user.custom_tool_result":
            children.tool_finished(
                get(event, "custom_tool_use_id"), get(event, "is_error"), now_ns, get(event, "content")
            )
        elif event_type == "user.tool_confirmation":
            children.tool_confirmed(get(event, "tool_use_id"), get(event, "result"), now_ns)

    def _on_tool_use(self, turn: Turn, event: Any, event_id: Optional[str], now_ns: int) -> None:
        turn.tool_calls += 1
        name = get_str(event, "name")
        if name and name not in turn.tool_names and len(turn.tool_names) < MAX_TOOL_NAMES:
            turn.tool_names.append(name)
        if turn.content is not None:
            turn.content.add_tool_call(event)
        children = turn.children
        if children is not None:
            children.tool_used(event, get(event, "type"), event_id, self._thread_of(turn, event, now_ns), now_ns)

    def _on_tool_result(self, turn: Turn, event: Any, event_id: Optional[str], now_ns: int) -> None:
        children = turn.children
        if children is not None:
            use_id = get(event, "tool_use_id") or get(event, "mcp_tool_use_id")
            children.tool_finished(use_id, get(event, "is_error"), now_ns, get(event, "content"))

    def _on_model_request_start(self, turn: Turn, event: Any, event_id: Optional[str], now_ns: int) -> None:
        turn.model_requests += 1
        if event_id is not None and len(turn.open_requests) < MAX_OPEN_REQUESTS:
            turn.open_requests.add(event_id)
        children = turn.children
        if children is not None:
            children.request_started(event_id, self._thread_of(turn, event, now_ns), now_ns)

    def _on_model_request_end(self, turn: Turn, event: Any, event_id: Optional[str], now_ns: int) -> None:
        start_id = get(event, "model_request_start_id")
        if start_id in turn.open_requests:
            turn.open_requests.discard(start_id)
        else:
            turn.model_requests += 1  # its start was before this process looked, or lost
        usage = get(event, "model_usage")
        tokens = _NO_TOKENS
        counts = None
        if usage is not None:
            counts = fields_of(usage)
            read = as_int(counts.get("cache_read_input_tokens"))
            write = as_int(counts.get("cache_creation_input_tokens"))
            tokens = (
                as_int(counts.get("input_tokens")) + read + write,
                as_int(counts.get("output_tokens")),
                read,
                write,
            )
            turn.input_tokens += tokens[0]
            turn.output_tokens += tokens[1]
            turn.cache_read_tokens += read
            turn.cache_write_tokens += write
        children = turn.children
        if children is not None:
            children.request_ended(
                start_id, counts, tokens, get(event, "is_error") is True, self._thread_of(turn, event, now_ns), now_ns
            )

    def _on_running(self, turn: Turn, event: Any, event_id: Optional[str], now_ns: int) -> None:
        turn.waiting = False

    def _on_idle(self, turn: Turn, event: Any, event_id: Optional[str], now_ns: int) -> None:
        stop = get(event, "stop_reason")
        reason = get_str(stop, "type") if stop is not None else None
        if reason == StopReason.REQUIRES_ACTION:
            turn.waiting = True
            return
        reason = reason or "unknown"
        if reason == StopReason.END_TURN:
            self._end(turn, reason, now_ns, ok=True)
        elif reason == StopReason.RETRIES_EXHAUSTED:
            self._end(turn, reason, now_ns, error_type=turn.error_type or A.ERROR_TYPE_OTHER)
        else:
            self._end(turn, reason, now_ns)

    def _on_terminated(self, turn: Turn, event: Any, event_id: Optional[str], now_ns: int) -> None:
        self._end(turn, StopReason.TERMINATED, now_ns, error_type=turn.error_type)

    def _on_deleted(self, turn: Turn, event: Any, event_id: Optional[str], now_ns: int) -> None:
        self._end(turn, StopReason.DELETED, now_ns)

    def _on_session_error(self, turn: Turn, event: Any, event_id: Optional[str], now_ns: int) -> None:
        error = get(event, "error")
        error_type = get_str(error, "type") if error is not None else None
        turn.error_type = error_type or A.ERROR_TYPE_OTHER
        attrs: dict[str, AttributeValue] = {"type": turn.error_type}
        message = get_str(error, "message") if error is not None else None
        if message:
            attrs["message"] = message
        retry = get(error, "retry_status") if error is not None else None
        retry_type = retry if isinstance(retry, str) else (get_str(retry, "type") if retry is not None else None)
        if retry_type:
            attrs["retry_status"] = retry_type
        turn.span.add_event("session.error", attrs, now_ns)

    def _on_usage(self, turn: Turn, event: Any, event_id: Optional[str], now_ns: int) -> None:
        turn.usage = get(event, "usage")

    def _on_thread_created(self, turn: Turn, event: Any, event_id: Optional[str], now_ns: int) -> None:
        children = turn.children
        if children is None or self._fetching:
            return
        thread_id = get_str(event, "session_thread_id")
        if thread_id is None or thread_id == self.primary_thread:
            return
        if children.has_thread(thread_id):
            children.thread_named(thread_id, get_str(event, "agent_name"))
        else:
            children.thread_started(thread_id, get_str(event, "agent_name"), now_ns)

    def _on_thread_status(self, turn: Turn, event: Any, event_id: Optional[str], now_ns: int) -> None:
        children = turn.children
        if children is None or self._fetching:  # a fetched feed's own statuses: its span's life is already known
            return
        thread_id = get_str(event, "session_thread_id") or self._feed_thread
        if thread_id is None:
            return
        if not children.has_thread(thread_id) and self._is_primary(thread_id):
            return
        event_type = get(event, "type")
        if event_type == "session.thread_status_terminated":
            children.thread_ended(thread_id, StopReason.TERMINATED, now_ns)
        elif event_type == "session.thread_status_idle":
            stop = get(event, "stop_reason")
            reason = get_str(stop, "type") if stop is not None else None
            if reason != StopReason.REQUIRES_ACTION:
                children.thread_ended(thread_id, reason, now_ns)
        else:
            children.thread_started(thread_id, get_str(event, "agent_name"), now_ns)

    def _is_primary(self, thread_id: str) -> bool:
        """The coordinator's own thread reports `thread_status_*` too, first thing in every turn: the first thread
        seen that no `session.thread_created` announced is the primary one."""
        if self.primary_thread is None and self._feed_thread is None:
            self.primary_thread = thread_id
        return thread_id == self.primary_thread

    def _thread_of(self, turn: Turn, event: Any, now_ns: int) -> Optional[str]:
        """The subagent thread an event belongs to (its span started if need be), or None for the coordinator."""
        thread_id = self._feed_thread or get(event, "session_thread_id")
        if thread_id is None or thread_id == self.primary_thread or turn.children is None:
            return None
        if not isinstance(thread_id, str):
            return None
        if not turn.children.knows_thread(thread_id):
            # Only a subagent's events carry a thread id on the session's stream (cross-posted blocking calls).
            turn.children.thread_started(thread_id, get_str(event, "agent_name"), now_ns)
        return thread_id

    # -- opening and ending (lock held) ------------------------------------------------------------------------

    def _anchor(self, turn: Turn, event: Any) -> None:
        at = _timestamp(get(event, "processed_at"))
        if at is not None and turn.anchor is None:
            turn.anchor = at

    def _open(self, now_ns: int, adopting: bool) -> Optional[Turn]:
        templates = self._templates
        if templates is None:
            templates = self._templates = _Templates(self._base_attributes, self._start_attributes)
        attributes = dict(templates.turn_attributes)
        self.turn_count += 1
        attributes[A.TURN_INDEX] = self.turn_count
        telemetry = self._telemetry
        span = telemetry.tracer.start_span(
            templates.turn_name,
            context=None,  # the current context: the turn's parent is whatever span the app has current
            kind=SpanKind.CLIENT,
            attributes=attributes,
            start_time=now_ns,
        )
        metrics = telemetry.metrics
        recorded = span.is_recording() or (metrics is not None and metrics.live())
        # A turn nobody records (a no-op tracer or a sampled-out turn, no meter provider, no content capture) follows
        # only its lifecycle: its tokens, tools, children and span events would go nowhere.
        lifecycle_only = not (recorded or telemetry.content.enabled)
        turn = Turn(span, self.turn_count, now_ns, adopting, _LIFECYCLE if lifecycle_only else _DISPATCH)
        self._skip = _LIFECYCLE_SKIPS if lifecycle_only else _NO_IDS
        if telemetry.child_spans and (recorded or telemetry.content.on_events):
            # Children of a turn nobody records (and no log records) would record nothing either: not tracked at all.
            turn.children = TurnChildren(telemetry, span, templates.children)
        if telemetry.content.enabled:
            turn.content = TurnContent(telemetry.content)
        self.turn = turn
        return turn

    def _end(
        self,
        turn: Turn,
        reason: str,
        end_ns: int,
        *,
        ok: bool = False,
        error_type: Optional[str] = None,
        error: Optional[BaseException] = None,
    ) -> None:
        """End `turn` exactly once. Whatever goes wrong while recording, the turn is closed and the span ended."""
        if turn.ended:
            return
        turn.ended = True
        if self.turn is turn:
            self.turn = None
            self._skip = _NO_IDS
        self._ended_seen, self._ended_seen_old = turn.seen, turn.seen_old
        span = turn.span
        try:
            if turn.children is not None:
                turn.children.end_all(max(end_ns, turn.start_ns))
        except Exception:
            log_swallowed("TurnChildren.end_all")
        end_ns = max(end_ns, turn.start_ns)
        content: Mapping[str, Any] = {}
        try:
            recording = span.is_recording()
            end_attributes = _end_attributes(turn, reason) if turn.content is not None or recording else _NO_FIELDS
            if recording:
                span.set_attributes(end_attributes)
            if error_type is not None:
                span.set_attribute(A.ERROR_TYPE, error_type)
                description = str(error) if error is not None else error_type
                span.set_status(Status(StatusCode.ERROR, description[:1024]))
            elif ok and recording:
                span.set_status(_STATUS_OK)
            if turn.content is not None:
                finish = end_attributes.get(A.GEN_AI_RESPONSE_FINISH_REASONS)
                content = turn.content.messages(finish[0] if isinstance(finish, list) else None)
                if turn.content.policy.on_spans:
                    span.set_attributes(content)
        except Exception:
            log_swallowed("SessionTracker._end")
        finally:
            span.end(end_time=end_ns)
        try:
            self._record_turn(turn, end_ns, error_type, content)
        except Exception:
            log_swallowed("SessionTracker._record_turn")

    def _record_turn(self, turn: Turn, end_ns: int, error_type: Optional[str], content: Mapping[str, Any]) -> None:
        """The turn's metrics and, in event modes, its content as a log record."""
        telemetry = self._telemetry
        if content and telemetry.content.on_events:
            telemetry.emit_content(turn.span, content, end_ns)
        if telemetry.metrics is not None:
            attrs = self._templates.turn_metric_attributes if self._templates is not None else {}
            if error_type:
                attrs = {**attrs, A.ERROR_TYPE: error_type}
            ttfc = (turn.first_output_ns - turn.start_ns) / 1e9 if turn.first_output_ns else None
            telemetry.metrics.turn((end_ns - turn.start_ns) / 1e9, ttfc, attrs)

    def _settle(self) -> None:
        """Tell the registry what the session needs now: an orphan watch, or nothing at all."""
        if self._registry is None:
            return
        if self.turn is not None and self.streams_open == 0:
            self._registry.watch_orphan(self)
        elif self.idle():
            self.retired = True
            self._registry.session_idle(self)


class _Templates:
    """The turn span's name and start attributes, and its children's templates, for the current agent attributes."""

    __slots__ = ("turn_name", "turn_attributes", "turn_metric_attributes", "children")

    def __init__(self, base: Mapping[str, AttributeValue], start: Mapping[str, AttributeValue]) -> None:
        self.turn_attributes = {**base, **start}
        agent_name = self.turn_attributes.get(A.GEN_AI_AGENT_NAME)
        self.turn_name = f"{A.OP_INVOKE_AGENT} {agent_name}" if agent_name else A.OP_INVOKE_AGENT
        self.turn_metric_attributes = metric_attributes(A.OP_INVOKE_AGENT, start)
        self.children = ChildTemplates(start)


_STATUS_OK: Final = Status(StatusCode.OK)

#: (input incl. cache, output, cache read, cache write) of a request that reported no usage.
_NO_TOKENS: Final = (0, 0, 0, 0)

_REPLY_TYPES: Final = frozenset(t for t, role in EVENT_ROLES.items() if role.handler == "_on_user_reply")
_on_user_message_fn: Final = SessionTracker._on_user_message

#: The table of `event_table`, resolved once.
_DISPATCH: Final[Plan] = {
    event_type: (
        getattr(SessionTracker, role.handler) if role.handler else None,
        role.output,
        role.span_event,
        role.session_level,
    )
    for event_type, role in EVENT_ROLES.items()
}
#: The same for a turn nobody records: only what opens, ends or holds the turn open.
_LIFECYCLE: Final[Plan] = {
    event_type: (
        getattr(SessionTracker, role.handler) if role.handler and role.lifecycle else None,
        role.output,
        False,
        role.session_level,
    )
    for event_type, role in EVENT_ROLES.items()
}
#: The types such a turn does nothing with: no lifecycle handler, not agent output.
_LIFECYCLE_SKIPS: Final = frozenset(
    t for t, (handler, output, _, _) in _LIFECYCLE.items() if not handler and not output
)


def _end_attributes(turn: Turn, reason: str) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {
        A.GEN_AI_USAGE_INPUT_TOKENS: turn.input_tokens,
        A.GEN_AI_USAGE_OUTPUT_TOKENS: turn.output_tokens,
        A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: turn.cache_read_tokens,
        A.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: turn.cache_write_tokens,
        A.TURN_STOP_REASON: reason,
        A.TURN_TOOL_CALLS: turn.tool_calls,
        A.TURN_MODEL_REQUESTS: turn.model_requests,
        A.TURN_EVENTS: turn.events,
        A.TURN_UNKNOWN_EVENTS: turn.unknown_events,
    }
    if turn.tool_names:
        attrs[A.TURN_TOOL_NAMES] = turn.tool_names  # the turn is over: the list no longer changes
    if turn.first_output_ns:
        attrs[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = (turn.first_output_ns - turn.start_ns) / 1e9
    if reason not in _LOCAL_REASONS:
        attrs[A.GEN_AI_RESPONSE_FINISH_REASONS] = [A.FINISH_REASONS.get(reason, "error")]
    if turn.usage is not None:
        attrs.update(usage_attributes(turn.usage))
    return attrs


_LOCAL_REASONS: Final = frozenset(
    {
        StopReason.TERMINATED,
        StopReason.DELETED,
        StopReason.SUPERSEDED,
        StopReason.ABANDONED,
        StopReason.STREAM_ERROR,
        StopReason.SEND_ERROR,
        StopReason.UNOBSERVED,
        StopReason.SHUTDOWN,
    }
)


def usage_attributes(usage: Any) -> dict[str, AttributeValue]:
    """`anthropic.session.usage.<field>` per numeric field (nested joined with dots) and the cost in USD."""
    attrs: dict[str, AttributeValue] = {}
    _flatten(usage, A.SESSION_USAGE_PREFIX, attrs, depth=0)
    cost = get(usage, "list_cost")
    amount = get(cost, "amount") if cost is not None and not isinstance(cost, (str, int, float)) else cost
    try:
        if amount is not None and not isinstance(amount, bool):
            attrs[A.SESSION_COST_USD] = float(amount) / 100
    except (TypeError, ValueError):
        pass
    return attrs


def _flatten(payload: Any, prefix: str, out: dict[str, AttributeValue], depth: int) -> None:
    for key, value in fields_of(payload).items():
        if key.__class__ is not str:
            continue
        kind = value.__class__
        if kind is int or kind is float:
            out[prefix + key] = value
        elif kind is bool or value is None or isinstance(value, (str, bytes, list, tuple)):
            continue
        elif isinstance(value, (int, float)):
            out[prefix + key] = value
        elif depth < 4:
            _flatten(value, f"{prefix}{key}.", out, depth + 1)


def _timestamp(value: Any) -> Optional[datetime]:
    if not isinstance(value, str):
        return value if isinstance(value, datetime) else None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _reply_attributes(event: Any) -> dict[str, AttributeValue]:
    """What a client reply says, without content: which tool it answers and how."""
    attrs: dict[str, AttributeValue] = {}
    for key in ("tool_use_id", "custom_tool_use_id", "result", "session_thread_id"):
        value = get_str(event, key)
        if value:
            attrs[key] = value
    is_error = get(event, "is_error")
    if isinstance(is_error, bool):
        attrs["is_error"] = is_error
    return attrs


def _span_event_attributes(event: Any) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {}
    for key in ("id", "session_thread_id", "to_session_thread_id", "from_session_thread_id", "agent_name"):
        value = get_str(event, key)
        if value:
            attrs[key] = value
    return attrs


def _exception_attributes(error: Optional[BaseException], error_type: str) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {A.EXCEPTION_TYPE: error_type or A.ERROR_TYPE_OTHER}
    if error is not None:
        attrs[A.EXCEPTION_MESSAGE] = str(error)[:1024]
    return attrs
