"""One turn and everything about its span: opening it, the counters it keeps, ending it with its end attributes,
status, content and metrics.

No event is kept: a turn is counters, a few bounded sets, and capped content. The `SessionTracker` decides when a
turn opens and ends; this module decides what that records.
"""

from __future__ import annotations

from datetime import datetime
from operator import attrgetter
from typing import Any, Final, Mapping, Optional

from opentelemetry.trace import NonRecordingSpan, Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from . import attributes as A
from .attributes import STOP_REASONS, UNKNOWN_STOP
from .children import ChildTemplates, Subagent, TurnChildren
from .content import TurnContent
from .fields import fields_of, get, ns_between, timestamp
from .metrics import MetricAttributes, metric_attributes
from .outcomes import Outcome
from .safety import log_swallowed
from .telemetry import Telemetry

#: Event ids kept per turn for deduplication, in two generations of this size each. The stream never replays and list
#: pages feed only the open turn's events, so duplicates (echoes, overlapping pages) fall within the open turn; the
#: turn that ended last is kept too, for a late echo. A turn's set is as small as the turn, and stays in cache.
DEDUPE_GENERATION: Final = 1024
#: Distinct tool names kept per turn.
MAX_TOOL_NAMES: Final = 64
#: Client replies sent by this process whose echo has not been seen yet, kept per turn.
MAX_PENDING_REPLIES: Final = 256
#: Model requests whose end has not been seen yet, kept per turn.
MAX_OPEN_REQUESTS: Final = 256

_NO_IDS: Final[frozenset[str]] = frozenset()
_NO_ATTRIBUTES: Final[dict[str, AttributeValue]] = {}
_STATUS_OK: Final = Status(StatusCode.OK)


class AgentTemplates:
    """What every turn of every session with the same agent and client attributes shares: the span's name, the
    metric attributes, the children's templates. Made once per distinct attributes, not once per session."""

    __slots__ = ("turn_name", "turn_metric_attributes", "evaluation_metric_attributes", "children")

    def __init__(self, start: Mapping[str, AttributeValue]) -> None:
        agent_name = start.get(A.GEN_AI_AGENT_NAME)
        self.turn_name = f"{A.OP_INVOKE_AGENT} {agent_name}" if agent_name else A.OP_INVOKE_AGENT
        self.turn_metric_attributes = metric_attributes(A.OP_INVOKE_AGENT, start)
        # The grader's model is not the agent's: an evaluation's metrics name the agent only.
        self.evaluation_metric_attributes = MetricAttributes(
            metric_attributes(A.OP_EVALUATION, {A.GEN_AI_AGENT_NAME: agent_name} if agent_name else {})
        )
        self.children = ChildTemplates(start)


#: Distinct agent and client attributes whose templates are kept; past that the cache starts again.
MAX_AGENT_TEMPLATES: Final = 256
_AGENT_TEMPLATES: dict[tuple[Any, ...], AgentTemplates] = {}


def agent_templates(start: Mapping[str, AttributeValue]) -> AgentTemplates:
    """The templates for these start attributes, shared by every session that has them (a session's tracker is
    made anew each time the session comes back from idle, as with a stream per turn)."""
    try:
        key = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in start.items())
        found = _AGENT_TEMPLATES.get(key)
    except TypeError:  # an unhashable value: not shared
        return AgentTemplates(start)
    if found is None:
        if len(_AGENT_TEMPLATES) >= MAX_AGENT_TEMPLATES:
            _AGENT_TEMPLATES.clear()
        found = _AGENT_TEMPLATES[key] = AgentTemplates(start)
    return found


class TurnTemplates:
    """What every turn of a session shares for the current agent attributes: the span's name and start attributes,
    the turn's metric attributes, and its children's templates. Each turn holds the one it opened with, so agent
    attributes learnt mid-turn change the next turn, never the one running."""

    __slots__ = ("turn_name", "turn_attributes", "turn_metric_attributes", "evaluation_metric_attributes", "children")

    def __init__(self, base: Mapping[str, AttributeValue], start: Mapping[str, AttributeValue]) -> None:
        self.turn_attributes = {**base, **start}
        shared = agent_templates(start)
        self.turn_name = shared.turn_name
        self.turn_metric_attributes = shared.turn_metric_attributes
        self.evaluation_metric_attributes = shared.evaluation_metric_attributes
        self.children = shared.children


class Turn:
    """One unit of the agent's work: its span, and counters (no event is kept)."""

    __slots__ = (
        "span",
        "templates",
        "recorded",
        "trigger",
        "adoptable",
        "outcome",
        "compactions",
        "plan",
        "index",
        "start_ns",
        "last_ns",
        "adopting",
        "owned_ids",
        "anchor",
        "anchor_ns",
        "pending_replies",
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
        "rotations",
        "unknown_events",
        "usage",
        "error_type",
        "last_stream_failed",
        "children",
        "content",
        "ended",
        "seen",
        "seen_old",
    )

    def __init__(
        self,
        span: Span,
        templates: TurnTemplates,
        index: int,
        start_ns: int,
        adopting: bool,
        recorded: bool,
        trigger: str = A.Trigger.USER_MESSAGE,
    ) -> None:
        self.span = span
        self.templates = templates
        self.recorded = recorded  # False: nobody records it, so it follows only its lifecycle
        self.trigger = trigger
        # A `resume` turn opened by `session.status_running` takes a user event that comes before its first model
        # request as its own, rather than being superseded by it.
        self.adoptable = False
        self.outcome: Optional[Outcome] = None  # only for a turn a user.define_outcome opened
        self.compactions = 0
        self.plan: Any = None  # how the session routes each event type to this turn (set by the tracker)
        self.index = index
        self.start_ns = start_ns
        self.last_ns = start_ns
        self.adopting = adopting  # opened by a send whose response has not named its user.message ids yet
        self.owned_ids: set[str] = set()
        self.anchor: Optional[datetime] = None  # processed_at of the turn's own user.message
        self.anchor_ns = 0  # when the client saw that processed echo on a stream (0: not seen there)
        self.pending_replies: dict[tuple[str, str], int] = {}  # replies sent, keyed by what they answer
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
        self.rotations = 0  # generations of `seen` set aside: `events` is counted from the sets' sizes
        self.unknown_events = 0
        self.usage: Any = None  # the latest session.usage payload (cumulative, so one is enough)
        self.error_type: Optional[str] = None  # of the latest session.error
        self.last_stream_failed = False
        self.children: Optional[TurnChildren] = None  # None with child_spans=False, or for a turn nobody records
        self.content: Optional[TurnContent] = None  # None unless content capture is on
        self.ended = False
        # Ids of the events routed to this turn, for deduplication, in two generations (the older one frozen).
        self.seen: set[str] = set()
        self.seen_old: frozenset[str] | set[str] = _NO_IDS

    @property
    def events(self) -> int:
        """Distinct event ids routed to the turn: each is remembered once, so the dedupe sets count them."""
        return len(self.seen) + self.rotations * DEDUPE_GENERATION

    def has_seen(self, event_id: str) -> bool:
        return event_id in self.seen or event_id in self.seen_old

    def remember(self, event_id: str) -> None:
        seen = self.seen
        seen.add(event_id)
        if len(seen) >= DEDUPE_GENERATION:
            self.seen_old = seen
            self.seen = set()
            self.rotations += 1

    def place(self, subagent: Subagent, stamp: Any, now_ns: int) -> Optional[int]:
        """Where an event of `subagent`'s thread that nobody saw arrive lies on the client's clock, or None if it
        came before this turn.

        Its `processed_at` is mapped by the turn's own user.message (the moment its processed echo was seen on the
        stream when it was, else the turn's start), and moved as a block with the rest of its thread so the first
        lies within the subagent's span: durations are the server's. Nothing is placed past the subagent's end
        (`now_ns` while it is open).
        """
        at = timestamp(stamp)
        anchor = self.anchor
        if at is None or anchor is None or at <= anchor:
            return None
        mapped = (self.anchor_ns or self.start_ns) + ns_between(anchor, at)
        if subagent.shift_ns is None:
            subagent.shift_ns = max(0, subagent.start_ns - mapped)
        high = max(subagent.end_ns or now_ns, subagent.start_ns)
        return min(max(mapped + subagent.shift_ns, subagent.start_ns), high)


def open_turn(
    telemetry: Telemetry,
    templates: TurnTemplates,
    index: int,
    now_ns: int,
    adopting: bool,
    trigger: str,
    outcome: Optional[Outcome] = None,
) -> Turn:
    """Start a turn's span in the current context (its parent is whatever span the app has current)."""
    attributes = dict(templates.turn_attributes)
    attributes[A.TURN_INDEX] = index
    attributes[A.TURN_TRIGGER] = trigger
    if outcome is not None:
        attributes.update(outcome.start_attributes())
    span = telemetry.tracer.start_span(
        templates.turn_name, context=None, kind=SpanKind.CLIENT, attributes=attributes, start_time=now_ns
    )
    metrics = telemetry.metrics
    recorded = span.is_recording() or (metrics is not None and metrics.live())
    content = telemetry.content
    turn = Turn(span, templates, index, now_ns, adopting, recorded or content.enabled, trigger)
    turn.outcome = outcome
    if telemetry.child_spans and (recorded or content.on_events):
        # Children of a turn nobody records (and no log records) would record nothing either: not tracked at all.
        turn.children = TurnChildren(telemetry, span, templates.children)
    if content.enabled:
        turn.content = TurnContent(content)
    return turn


def late_turn(telemetry: Telemetry, ended: Turn, subagents: Mapping[str, Subagent]) -> Turn:
    """A stand-in for a turn that ended with subagents: the events of their threads read after it ended land under
    their spans as late children. It records no span of its own and holds no SDK span, only contexts."""
    context = ended.span.get_span_context()
    stand_in = NonRecordingSpan(context)
    kept: dict[str, Subagent] = {}
    for thread_id, subagent in subagents.items():
        late = Subagent(NonRecordingSpan(subagent.span.get_span_context()), subagent.start_ns)
        late.end_ns = subagent.end_ns or subagent.start_ns
        kept[thread_id] = late
    turn = Turn(stand_in, ended.templates, ended.index, ended.start_ns, False, True, ended.trigger)
    turn.anchor, turn.anchor_ns = ended.anchor, ended.anchor_ns
    turn.children = TurnChildren(telemetry, stand_in, ended.templates.children, kept)
    turn.ended = True
    return turn


def end_turn(
    telemetry: Telemetry,
    turn: Turn,
    reason: str,
    end_ns: int,
    error_type: Optional[str] = None,
    error: Optional[BaseException] = None,
) -> Optional[dict[str, Subagent]]:
    """End `turn`'s span exactly once with what the stop-reason table says of `reason`, its children still open
    first. Whatever goes wrong while recording, the span is ended. Returns its subagents (None without any)."""
    if turn.ended:
        return None
    turn.ended = True
    end_ns = max(end_ns, turn.start_ns)
    subagents: Optional[dict[str, Subagent]] = None
    outcome_attributes: Optional[dict[str, AttributeValue]] = None
    try:
        if turn.outcome is not None:
            outcome_attributes = turn.outcome.end(end_ns)
        if turn.children is not None:
            subagents = turn.children.end_all(end_ns) or None
    except Exception:
        log_swallowed("end_turn children")
    span = turn.span
    stop = STOP_REASONS.get(reason, UNKNOWN_STOP)
    if stop.status == A.Status.ERROR:
        error_type = error_type or turn.error_type or A.ERROR_TYPE_OTHER
    elif stop.status == A.Status.ERROR_AFTER_SESSION_ERROR:
        error_type = turn.error_type
    else:
        error_type = None
    content: Mapping[str, Any] = _NO_ATTRIBUTES
    try:
        recording = span.is_recording()
        if recording or turn.content is not None:
            attributes = end_attributes(turn, reason, stop.finish_reason)
            if outcome_attributes:
                attributes.update(outcome_attributes)
            if recording:
                span.set_attributes(attributes)
            if turn.content is not None:
                content = turn.content.messages(stop.finish_reason)
                if turn.content.policy.on_spans:
                    span.set_attributes(content)
        if error_type is not None:
            span.set_attribute(A.ERROR_TYPE, error_type)
            description = str(error) if error is not None else error_type
            span.set_status(Status(StatusCode.ERROR, description[:1024]))
        elif stop.status == A.Status.OK and recording:
            span.set_status(_STATUS_OK)
    except Exception:
        log_swallowed("end_turn")
    finally:
        span.end(end_time=end_ns)
    try:
        if content and telemetry.content.on_events:
            telemetry.emit_content(span, content, end_ns)
        if telemetry.metrics is not None:
            attrs = turn.templates.turn_metric_attributes
            if error_type:
                attrs = {**attrs, A.ERROR_TYPE: error_type}
            ttfc = (turn.first_output_ns - turn.start_ns) / 1e9 if turn.first_output_ns else None
            telemetry.metrics.turn((end_ns - turn.start_ns) / 1e9, ttfc, attrs)
    except Exception:
        log_swallowed("end_turn metrics")
    return subagents


def end_attributes(turn: Turn, reason: str, finish_reason: Optional[str]) -> dict[str, AttributeValue]:
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
    if turn.compactions:
        attrs[A.TURN_COMPACTIONS] = turn.compactions
    if turn.first_output_ns:
        attrs[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = (turn.first_output_ns - turn.start_ns) / 1e9
    if finish_reason is not None:
        attrs[A.GEN_AI_RESPONSE_FINISH_REASONS] = [finish_reason]
    if turn.usage is not None:
        attrs.update(usage_attributes(turn.usage))
    return attrs


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


_NOT_NESTED: Final = (str, bytes, list, tuple, int, float)


class _Shape:
    """How payloads of one model class flatten: the values read (each of its fields and of its nested models'),
    each one's class, and the numbers among them with their attribute names. A payload whose values have the same
    classes, and whose models have no unknown fields, flattens the same way: three C calls read and check it all."""

    __slots__ = ("values", "kinds", "extras", "numbers", "names")

    def __init__(self, values: tuple[str, ...], extras: tuple[str, ...], numbers: tuple[str, ...], prefix: str):
        self.values = attrgetter(*values, "__class__")  # a tuple even for one field
        self.extras = attrgetter(*extras, "__class__")
        self.numbers = attrgetter(*numbers, "__class__") if numbers else None
        self.names = tuple(prefix + path for path in numbers)  # zip leaves the last value out
        self.kinds: tuple[type, ...] = ()

    def flatten(self, payload: Any, out: dict[str, AttributeValue]) -> bool:
        try:
            if tuple(map(type, self.values(payload))) != self.kinds or any(self.extras(payload)[:-1]):
                return False
            if self.numbers is not None:
                out.update(zip(self.names, self.numbers(payload)))
            return True
        except AttributeError:
            return False


def _shape(payload: Any, prefix: str) -> Optional[_Shape]:
    """The shape of a model payload whose fields flatten in `_flatten`'s way (nested models with their own
    fields, numbers and what is skipped), or None if it has anything else: a dict, unknown fields, odd keys."""
    values: list[str] = []
    extras: list[str] = []
    numbers: list[str] = []

    def walk(model: Any, path: str, depth: int) -> bool:
        fields = getattr(model, "__dict__", None)
        extra = getattr(model, "__pydantic_extra__", _ABSENT)  # pydantic 1 has no such slot
        if fields.__class__ is not dict or not fields or extra is _ABSENT or extra:
            return False
        extras.append(path + "__pydantic_extra__")
        for key, value in fields.items():
            if key.__class__ is not str or not key.isidentifier():
                return False
            values.append(path + key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                numbers.append(path + key)
            elif not (value is None or isinstance(value, _NOT_NESTED)) and depth < 4:
                if value.__class__ is dict or not walk(value, f"{path}{key}.", depth + 1):
                    return False
        return True

    if not walk(payload, "", 0):
        return None
    shape = _Shape(tuple(values), tuple(extras), tuple(numbers), prefix)
    shape.kinds = tuple(map(type, shape.values(payload)))
    return shape


_ABSENT: Final[Any] = object()
#: Shapes by (model class, prefix): a session's usage has one per SDK version, read at every turn's end; None for
#: a class whose first payload could not be cached (unknown fields, a dict inside), walked field by field from then
#: on. The cap only guards against a caller that flattens many classes.
_SHAPES: dict[tuple[type, str], Optional[_Shape]] = {}
_MAX_SHAPES: Final = 16


def _flatten(payload: Any, prefix: str, out: dict[str, AttributeValue], depth: int) -> None:
    kind = type(payload)
    if depth == 0 and kind is not dict:
        cached = (kind, prefix)
        shape = _SHAPES.get(cached, _ABSENT)
        if shape is None:
            pass  # this class's payloads do not flatten by shape
        elif shape is not _ABSENT:
            if shape.flatten(payload, out):
                return
            _SHAPES[cached] = _shape(payload, prefix)  # its values changed class (a field became None, or back)
        elif len(_SHAPES) < _MAX_SHAPES:
            _SHAPES[cached] = _shape(payload, prefix)
    # Numbers first, by exact class: nearly every field is one.
    for key, value in (payload if kind is dict else fields_of(payload)).items():
        kind = value.__class__
        if kind is int or kind is float:
            if key.__class__ is str:
                out[prefix + key] = value
        elif kind is str or kind is bool or value is None or key.__class__ is not str:
            continue
        elif isinstance(value, _NOT_NESTED):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[prefix + key] = value
        elif depth < 4:
            _flatten(value, f"{prefix}{key}.", out, depth + 1)
