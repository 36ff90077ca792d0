"""What a session's tracker does with events nobody saw arrive on its stream: list pages (which never open a turn),
subagent threads' and workflow runs' threads' feeds fetched after the fact, and a thread's events read after its
turn ended. Functions of the tracker, called with its lock held or taking it; split from `session` to keep each module
to one concern."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Optional

from .attributes import StopReason
from opentelemetry.trace import INVALID_SPAN_CONTEXT, NonRecordingSpan

from .attributes import Trigger
from .event_table import SESSION_STATUS_IDLE, USER_DEFINE_OUTCOME, USER_MESSAGE
from .fields import get, get_str, timestamp, type_and_id
from .protocol import LIST, Origin
from .safety import never_raises
from .turn import Turn

if TYPE_CHECKING:
    from .session import SessionTracker


@never_raises
def on_listed(tracker: SessionTracker, events: Iterable[Any], now_ns: int, thread_id: Optional[str] = None) -> None:
    """A page of `events.list` (or of a thread's `threads.events.list` with `thread_id`): feeds the open turn
    with the events listed after its own user.message, no others; a thread's page read after its turn ended
    feeds that turn's subagent as late children.

    Listing a session's history must neither open turns nor fold earlier turns into the open one.
    """
    with tracker._lock:
        if tracker.detached:
            return
        origin = LIST if thread_id is None else Origin.thread(thread_id)
        turn = tracker.turn
        if turn is None or turn.adopting:
            if thread_id is not None and tracker.late is not None:
                for event in events:
                    tracker.on_event(event, now_ns, origin)  # each goes under its ended subagent, or nowhere
            return
        for event in events:
            fields, event_type, event_id = type_and_id(event)
            at = timestamp(fields.get("processed_at"))
            if at is None:
                continue
            if turn.anchor is None:
                if event_type == USER_MESSAGE and event_id in turn.owned_ids:
                    turn.anchor = at
                    tracker.on_event(event, now_ns, origin)
                continue
            if at > turn.anchor:
                tracker.on_event(event, now_ns, origin)
            if tracker.turn is not turn:
                break


@never_raises
def threads_to_fetch(tracker: SessionTracker, event: Any) -> list[str]:
    """With `fetch_subthreads`, for a `session.status_idle` about to end the open turn: the subagent threads
    whose own feeds to fetch first (the turn's, open or ended). Empty otherwise."""
    with tracker._lock:
        turn = tracker.turn
        if turn is None or turn.children is None or turn.anchor is None or get(event, "type") != SESSION_STATUS_IDLE:
            return []
        stop = get(event, "stop_reason")
        if (get_str(stop, "type") if stop is not None else None) == StopReason.REQUIRES_ACTION:
            return []
        return turn.children.thread_ids()


@never_raises
def on_fetched(tracker: SessionTracker, thread_id: str, events: Iterable[Any], now_ns: int) -> None:
    """A page of a subagent thread's events fetched after the fact (`fetch_subthreads`): those after the turn's
    own user.message go under the thread's subagent span, placed by their stamps (nobody saw them arrive)."""
    with tracker._lock:
        turn = tracker.turn
        if turn is None or turn.children is None or turn.anchor is None:
            return
        subagent = turn.children.subagent(thread_id)
        if subagent is None:
            return
        origin = Origin.fetched_thread(thread_id)
        for event in events:
            at_ns = turn.place(subagent, get(event, "processed_at"), now_ns)
            if at_ns is not None:
                tracker.on_event(event, at_ns, origin)


@never_raises
def workflow_threads_to_fetch(tracker: SessionTracker, event: Any) -> list[str]:
    """After the fact: the workflow runs' threads whose span this event is about to end (their idle or
    termination, their phase's end, their run's end), whose own feeds to fetch first. Empty otherwise."""
    with tracker._lock:
        workflows = tracker.workflows
        event_type = get(event, "type")
        if workflows is None or not isinstance(event_type, str):
            return []
        return workflows.threads_ending(event, event_type)


@never_raises
def open_workflow_threads(tracker: SessionTracker) -> list[str]:
    """After the fact, at the end of the session's events: the runs' threads still open, to fetch before they end."""
    with tracker._lock:
        return tracker.workflows.open_threads() if tracker.workflows is not None else []


@never_raises
def on_fetched_workflow_thread(tracker: SessionTracker, thread_id: str, events: Iterable[Any], now_ns: int) -> None:
    """A page of a workflow run's open thread's events fetched after the fact: each goes under the thread's span,
    placed by its stamp within it, through the open turn (its tokens count there, as a live thread feed's do) or,
    for a run that outlived its turn, through a stand-in that records no span of its own."""
    with tracker._lock:
        workflows = tracker.workflows
        if workflows is None or not workflows.has_thread(thread_id):
            return
        turn = tracker.turn
        if (turn is None or turn.children is None) and workflows.stand_in is None:
            workflows.stand_in = _stand_in(tracker, workflows)
        origin = Origin.fetched_thread(thread_id)
        for event in events:
            fields, event_type, _ = type_and_id(event)
            if event_type in (USER_MESSAGE, USER_DEFINE_OUTCOME):
                continue  # the agent's instructions in its thread: they open no turn
            at_ns = workflows.place(thread_id, fields.get("processed_at"), now_ns)
            if at_ns is not None:
                tracker.on_event(event, at_ns, origin)


@never_raises
def fetched_workflow_thread(tracker: SessionTracker, now_ns: int) -> None:
    """A workflow thread's feed was fetched to its end: what its stand-in turn still has open ends there."""
    with tracker._lock:
        workflows = tracker.workflows
        stand_in = workflows.stand_in if workflows is not None else None
        if workflows is not None and stand_in is not None:
            if stand_in.children is not None:
                stand_in.children.end_open(now_ns)
            workflows.stand_in = None


def _stand_in(tracker: SessionTracker, workflows: Any) -> Turn:
    from .session import recording_plan
    from .children import TurnChildren
    from .turn import TurnTemplates

    templates = tracker._templates or TurnTemplates(tracker._base_attributes, tracker._start_attributes)
    span = NonRecordingSpan(INVALID_SPAN_CONTEXT)
    turn = Turn(span, templates, tracker.turn_count, 0, False, True, Trigger.RESUME)
    turn.children = TurnChildren(tracker.telemetry, span, templates.children)
    turn.children.workflows = workflows
    turn.plan = recording_plan(True, False, True)
    return turn


@never_raises
def anchor_opened(tracker: SessionTracker, event: Any, now_ns: int) -> None:
    """After the fact (nobody saw the events arrive): the turn `event` just opened with no user event of its own
    (trigger `resume`: a budget raise, a deployment's run, a run that ended) takes the event's `processed_at` as its
    anchor, so its subagents' threads can be placed and fetched as a user.message's turn's are."""
    with tracker._lock:
        turn = tracker.turn
        if turn is None or turn.anchor is not None:
            return
        at = timestamp(get(event, "processed_at"))
        if at is not None:
            turn.anchor, turn.anchor_ns = at, now_ns


def thread_turn(
    tracker: SessionTracker, turn: Optional[Turn], thread_id: str, fields: Any, now_ns: int
) -> tuple[Optional[Turn], int]:
    """The turn a thread feed's event goes to: the open turn, or the last ended one if the thread was its subagent
    and the event came after that turn's start and before the open one's (then timed by its stamp)."""
    late = tracker.late
    if turn is None or turn.children is None:
        workflows = tracker.workflows
        if workflows is not None and workflows.stand_in is not None and workflows.has_thread(thread_id):
            return workflows.stand_in, now_ns  # a run's thread fetched after the fact, with no turn open
    if late is None or late.children is None:
        return turn, now_ns
    if turn is not None and turn.children is not None and turn.children.knows_thread(thread_id):
        return turn, now_ns
    subagent = late.children.subagent(thread_id)
    if subagent is None:
        return turn, now_ns
    stamp = fields.get("processed_at") if isinstance(fields, dict) else None
    at = timestamp(stamp)
    if at is None or late.anchor is None or at <= late.anchor:
        return turn, now_ns
    if turn is not None and turn.anchor is not None and at > turn.anchor:
        return turn, now_ns
    at_ns = late.place(subagent, stamp, subagent.end_ns)
    return (late, at_ns) if at_ns is not None else (turn, now_ns)
