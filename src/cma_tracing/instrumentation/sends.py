"""What a session's tracker does with the app's own calls: a send (before its request, and its response or
failure) and a `sessions.create` with initial events. Functions of the tracker; split from `session` to keep each
module to one concern."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Optional

from . import handlers
from .attributes import StopReason, Trigger
from .event_table import OPENING_TYPES, REPLY_TYPES, USER_DEFINE_OUTCOME, USER_MESSAGE
from .fields import as_list, get, get_str
from .outcomes import Outcome, outcome_content
from .protocol import Send
from .safety import never_raises
from .turn import Turn

if TYPE_CHECKING:
    from .session import SessionTracker


@never_raises
def begin_send(tracker: SessionTracker, events: Any, now_ns: int) -> Optional[Send]:
    """Before a send's HTTP request: open a turn for a user.message or user.define_outcome, steer an outcome, or
    join the open turn. Returns the send's turn (to make current while it runs, so its HTTP span nests under the
    turn) and whether it opened it."""
    events = list(events) if isinstance(events, (list, tuple)) else []
    types = [get_str(e, "type") for e in events]
    with tracker._lock:
        if tracker.detached:
            return None
        turn = tracker.turn
        if any(t in OPENING_TYPES for t in types) and not (
            turn is not None and steering(turn) and USER_DEFINE_OUTCOME not in types
        ):
            if turn is not None:
                tracker._end(turn, StopReason.SUPERSEDED, now_ns)
            opened = open_with(tracker, events, types, now_ns, Trigger.USER_MESSAGE)
            for event, event_type in zip(events, types):
                if event_type in REPLY_TYPES:  # a system.message riding along, say
                    handlers.reply_sent(opened, event, event_type, now_ns)
            return Send(opened, True)
        if turn is None:
            return None
        turn.last_ns = now_ns
        for event, event_type in zip(events, types):
            if event_type in REPLY_TYPES or event_type == USER_MESSAGE:  # a steering user.message is one too
                handlers.reply_sent(turn, event, event_type, now_ns)
                add_input(tracker, turn, event)
        return Send(turn, False)


@never_raises
def begin_initial(tracker: SessionTracker, events: Any, now_ns: int) -> None:
    """A `sessions.create(initial_events=...)` that succeeded: its user.message or user.define_outcome opens the
    new session's first turn (trigger `initial_events`), which owns the first such echo it sees."""
    events = list(events) if isinstance(events, (list, tuple)) else []
    types = [get_str(e, "type") for e in events]
    if not any(t in OPENING_TYPES for t in types):
        return
    with tracker._lock:
        if tracker.detached:
            return
        if tracker.turn is not None:
            tracker._end(tracker.turn, StopReason.SUPERSEDED, now_ns)
        opened = open_with(tracker, events, types, now_ns, Trigger.INITIAL_EVENTS)
        for event, event_type in zip(events, types):
            if event_type in REPLY_TYPES:
                handlers.reply_sent(opened, event, event_type, now_ns)


@never_raises
def send_succeeded(tracker: SessionTracker, send: Optional[Send], response: Any) -> None:
    """The send's response echoes each event with its id: the turn it opened owns its user events' ids."""
    if send is None or not send.opened:
        return
    with tracker._lock:
        turn = send.turn
        for echo in as_list(get(response, "data")):
            event_id = get_str(echo, "id")
            event_type = get(echo, "type")
            if event_id is not None and event_type in OPENING_TYPES:
                turn.owned_ids.add(event_id)
                if turn.outcome is not None and event_type == USER_DEFINE_OUTCOME:
                    turn.outcome.learn_id(turn, echo)
        turn.adopting = False


@never_raises
def send_failed(tracker: SessionTracker, send: Optional[Send], error: BaseException, error_type: str) -> None:
    """The send that opened its turn failed: the turn ends with it (its exception still reaches the app)."""
    if send is None or not send.opened:
        return
    with tracker._lock:
        tracker._end(send.turn, StopReason.SEND_ERROR, time.time_ns(), error_type, error)


def open_with(
    tracker: SessionTracker,
    events: list[Any],
    types: list[Optional[str]],
    now_ns: int,
    trigger: str,
    adopting: bool = True,
) -> Turn:
    """Open a turn for the user events that start it (sent, created with the session, or seen): an outcome's
    turn when one is a user.define_outcome. Its content input is theirs."""
    outcome: Optional[Outcome] = None
    for event, event_type in zip(events, types):
        if event_type == USER_DEFINE_OUTCOME:
            outcome = Outcome(event)
            break
    if trigger == Trigger.USER_MESSAGE and outcome is not None:
        trigger = Trigger.DEFINE_OUTCOME
    turn = tracker._open(now_ns, adopting, trigger, outcome)
    for event in events:
        add_input(tracker, turn, event)
    return turn


def add_input(tracker: SessionTracker, turn: Turn, event: Any) -> None:
    if turn.content is None:
        return
    event_type = get(event, "type")
    if event_type == USER_MESSAGE:
        turn.content.add_input(event)
    elif event_type == USER_DEFINE_OUTCOME:
        outcome_content(turn, event)


def steering(turn: Turn) -> bool:
    """Whether a user.message now steers the turn's outcome (one with no terminal verdict yet) rather than starting
    a new turn."""
    outcome = turn.outcome
    return outcome is not None and outcome.steerable and not outcome.terminal
