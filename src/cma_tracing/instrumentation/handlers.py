"""The handlers that only record: tools, model requests, usage, errors, threads, messages and client replies.

Each is a plain function `(session, turn, event, event_id, now_ns, origin)`, called by `SessionTracker` with the
session's lock held, for a turn someone records (a turn nobody records runs only the tracker's lifecycle handlers).
`origin` says where the event came from: the session's stream, a list page, a subagent thread's own feed, or a feed
fetched after the fact. None of them opens or ends a turn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Optional

from opentelemetry.util.types import AttributeValue

from . import attributes as A
from .attributes import StopReason
from .event_table import (
    AGENT_THREAD_CONTEXT_COMPACTED,
    THREAD_CREATED,
    SESSION_ERROR,
    SYSTEM_MESSAGE,
    THREAD_STATUS_IDLE,
    THREAD_STATUS_RESCHEDULED,
    THREAD_STATUS_TERMINATED,
    USER_CUSTOM_TOOL_RESULT,
    USER_INTERRUPT,
    USER_TOOL_CONFIRMATION,
    USER_TOOL_RESULT,
)
from .content import text_parts, tool_call_part
from .fields import as_int, fields_of, get, get_str
from .outcomes import Outcome
from .turn import MAX_OPEN_REQUESTS, MAX_PENDING_REPLIES, MAX_TOOL_NAMES, Turn

if TYPE_CHECKING:
    from .protocol import Origin
    from .session import SessionTracker

#: (input incl. cache, output, cache read, cache write) of a request that reported no usage.
_NO_TOKENS: Final = (0, 0, 0, 0)


# -- messages and replies ------------------------------------------------------------------------------------------


def on_agent_message(
    session: SessionTracker, turn: Turn, event: Any, event_id: Optional[str], now_ns: int, origin: Origin
) -> None:
    """The coordinator's own messages are the turn's output; a subagent's stay with its thread. Each is also the
    output of the model request that made it."""
    if turn.content is None:
        return
    if origin.thread_id is None:
        thread_id = get(event, "session_thread_id")
        if thread_id is None or thread_id == session.primary_thread:
            turn.content.add_output_text(event)
    if turn.children is not None:
        thread = thread_of(session, turn, event, now_ns, origin)
        for part in text_parts(get(event, "content")):
            turn.children.request_output(thread, part)


def on_user_reply(
    session: SessionTracker, turn: Turn, event: Any, event_id: Optional[str], now_ns: int, origin: Origin
) -> None:
    """The echo of a client reply: recorded unless this process sent it (its send recorded it already)."""
    event_type = get(event, "type")
    if not was_sent(turn, event, event_type):
        record_reply(turn, event, event_type, now_ns)


def was_sent(turn: Turn, event: Any, event_type: Any) -> bool:
    """Whether this process sent the reply an echo repeats (and its send recorded it): then the echo is not news."""
    key = reply_key(event, event_type)
    pending = turn.pending_replies
    count = pending.get(key)
    if not count:
        return False
    if count == 1:
        del pending[key]
    else:
        pending[key] = count - 1
    return True


def reply_sent(turn: Turn, event: Any, event_type: str, now_ns: int) -> None:
    """A client reply sent by this process, before its request: recorded now, and its echo will not be again,
    whether it arrives before or after the send's response."""
    pending = turn.pending_replies
    key = reply_key(event, event_type)
    if key in pending or len(pending) < MAX_PENDING_REPLIES:
        pending[key] = pending.get(key, 0) + 1
    record_reply(turn, event, event_type, now_ns)


def reply_key(event: Any, event_type: Any) -> tuple[str, str]:
    """What a reply answers, known to its send and to its echo alike (the echo's id is not known to the send)."""
    target = (
        get_str(event, "tool_use_id") or get_str(event, "custom_tool_use_id") or get_str(event, "session_thread_id")
    )
    return (event_type if isinstance(event_type, str) else "", target or "")


def record_reply(turn: Turn, event: Any, event_type: str, now_ns: int) -> None:
    """A reply is a span event on the turn; a custom tool's result ends its span, a confirmation is noted on its
    span and a denial ends it."""
    turn.span.add_event(event_type, _reply_attributes(event), now_ns)
    if event_type == USER_INTERRUPT and turn.outcome is not None:
        turn.outcome.interrupt()
    elif event_type == SYSTEM_MESSAGE and turn.content is not None:
        turn.content.add_input(event, "system")
    children = turn.children
    if children is None:
        return
    if event_type == USER_CUSTOM_TOOL_RESULT:
        children.tool_finished(get(event, "custom_tool_use_id"), get(event, "is_error"), now_ns, get(event, "content"))
    elif event_type == USER_TOOL_RESULT:  # a self-hosted worker ran the tool: its answer ends the span
        children.tool_finished(get(event, "tool_use_id"), get(event, "is_error"), now_ns, get(event, "content"))
    elif event_type == USER_TOOL_CONFIRMATION:
        children.tool_confirmed(get(event, "tool_use_id"), get(event, "result"), now_ns)


# -- tools ---------------------------------------------------------------------------------------------------------


def on_tool_use(
    session: SessionTracker, turn: Turn, event: Any, event_id: Optional[str], now_ns: int, origin: Origin
) -> None:
    turn.tool_calls += 1
    name = get_str(event, "name")
    if name and name not in turn.tool_names and len(turn.tool_names) < MAX_TOOL_NAMES:
        turn.tool_names.append(name)
    children = turn.children
    thread_id = thread_of(session, turn, event, now_ns, origin) if children is not None else None
    if turn.content is not None:
        turn.content.add_tool_call(event)
        if children is not None:
            children.request_output(thread_id, tool_call_part(event))
    if children is not None:
        children.tool_used(event, get(event, "type"), event_id, thread_id, now_ns)


def on_tool_result(
    session: SessionTracker, turn: Turn, event: Any, event_id: Optional[str], now_ns: int, origin: Origin
) -> None:
    children = turn.children
    if children is not None:
        use_id = get(event, "tool_use_id") or get(event, "mcp_tool_use_id")
        children.tool_finished(use_id, get(event, "is_error"), now_ns, get(event, "content"))


# -- model requests ------------------------------------------------------------------------------------------------


def on_model_request_start(
    session: SessionTracker, turn: Turn, event: Any, event_id: Optional[str], now_ns: int, origin: Origin
) -> None:
    turn.adoptable = False
    turn.model_requests += 1
    if event_id is not None and len(turn.open_requests) < MAX_OPEN_REQUESTS:
        turn.open_requests.add(event_id)
    children = turn.children
    if children is not None:
        children.request_started(event_id, thread_of(session, turn, event, now_ns, origin), now_ns)


def on_model_request_end(
    session: SessionTracker, turn: Turn, event: Any, event_id: Optional[str], now_ns: int, origin: Origin
) -> None:
    fields = fields_of(event)
    start_id = fields.get("model_request_start_id")
    open_requests = turn.open_requests
    if start_id in open_requests:
        open_requests.discard(start_id)
    else:
        turn.model_requests += 1  # its start was before this process looked, or lost
    usage = fields.get("model_usage")
    tokens = _NO_TOKENS
    counts = None
    if usage is not None:
        counts = fields_of(usage)
        # Token counts are ints: `as_int` only for what is not one.
        read = counts.get("cache_read_input_tokens")
        if read.__class__ is not int:
            read = as_int(read)
        write = counts.get("cache_creation_input_tokens")
        if write.__class__ is not int:
            write = as_int(write)
        given = counts.get("input_tokens")
        if given.__class__ is not int:
            given = as_int(given)
        output = counts.get("output_tokens")
        if output.__class__ is not int:
            output = as_int(output)
        tokens = (given + read + write, output, read, write)
        turn.input_tokens += tokens[0]
        turn.output_tokens += output
        turn.cache_read_tokens += read
        turn.cache_write_tokens += write
    children = turn.children
    if children is not None:
        thread_id = thread_of(session, turn, event, now_ns, origin)
        children.request_ended(start_id, counts, tokens, fields.get("is_error") is True, thread_id, now_ns)


# -- outcome evaluations -------------------------------------------------------------------------------------------


def on_evaluation_start(
    session: SessionTracker, turn: Turn, event: Any, event_id: Optional[str], now_ns: int, origin: Origin
) -> None:
    if turn.outcome is None:  # a turn that attached mid-outcome learns it from the grader
        turn.outcome = Outcome(event, steerable=False)
        turn.span.set_attributes(turn.outcome.start_attributes())
    turn.outcome.evaluation_started(session.telemetry, turn, event, event_id, now_ns)


def on_evaluation_ongoing(
    session: SessionTracker, turn: Turn, event: Any, event_id: Optional[str], now_ns: int, origin: Origin
) -> None:
    if turn.outcome is not None:
        turn.outcome.heartbeat(event)


def on_evaluation_end(
    session: SessionTracker, turn: Turn, event: Any, event_id: Optional[str], now_ns: int, origin: Origin
) -> None:
    if turn.outcome is None:
        turn.outcome = Outcome(event, steerable=False)
        turn.span.set_attributes(turn.outcome.start_attributes())
    turn.outcome.evaluation_ended(session.telemetry, turn, event, now_ns)


# -- the session's errors and usage ------------------------------------------------------------------------------


def on_session_error(
    session: SessionTracker, turn: Turn, event: Any, event_id: Optional[str], now_ns: int, origin: Origin
) -> None:
    error = get(event, "error")
    error_type = get_str(error, "type") if error is not None else None
    turn.error_type = error_type or A.ERROR_TYPE_OTHER
    attrs: dict[str, AttributeValue] = {A.ERROR_EVENT_TYPE: turn.error_type}
    message = get_str(error, "message") if error is not None else None
    if message:
        attrs[A.ERROR_EVENT_MESSAGE] = message
    retry = get(error, "retry_status") if error is not None else None
    retry_type = retry if isinstance(retry, str) else (get_str(retry, "type") if retry is not None else None)
    if retry_type:
        attrs[A.ERROR_EVENT_RETRY_STATUS] = retry_type
    turn.span.add_event(SESSION_ERROR, attrs, now_ns)


def on_usage(
    session: SessionTracker, turn: Turn, event: Any, event_id: Optional[str], now_ns: int, origin: Origin
) -> None:
    turn.usage = get(event, "usage")


# -- threads (subagents) -------------------------------------------------------------------------------------------


def on_workflow_event(
    session: SessionTracker, turn: Turn, event: Any, event_id: Optional[str], now_ns: int, origin: Origin
) -> None:
    if turn.ended or turn.children is None:
        return  # a late feed's, or child spans are off: a run is one
    session.workflow_runs().on_event(turn, event, get(event, "type"), session.session_id, now_ns)


def on_thread_created(
    session: SessionTracker, turn: Turn, event: Any, event_id: Optional[str], now_ns: int, origin: Origin
) -> None:
    if origin.fetched or turn.ended:
        return
    if get(event, "workflow_run_id") is not None:  # one of a workflow run's agents, not a subagent
        if turn.children is not None:
            session.workflow_runs().on_event(turn, event, THREAD_CREATED, session.session_id, now_ns)
        return
    children = turn.children
    if children is None:
        return
    thread_id = get_str(event, "session_thread_id")
    if thread_id is None or thread_id == session.primary_thread:
        return
    if children.has_thread(thread_id):
        children.thread_named(thread_id, get_str(event, "agent_name"))
    else:
        children.thread_started(thread_id, get_str(event, "agent_name"), now_ns)


def on_thread_status(
    session: SessionTracker, turn: Turn, event: Any, event_id: Optional[str], now_ns: int, origin: Origin
) -> None:
    if origin.fetched or turn.ended:
        return  # a fetched or late feed's own statuses: its span's life is already known
    workflows = session.workflows
    if workflows is not None and workflows.on_event(turn, event, get(event, "type"), session.session_id, now_ns):
        return
    children = turn.children
    if children is None:
        return
    thread_id = get_str(event, "session_thread_id") or origin.thread_id
    if thread_id is None:
        return
    if not children.has_thread(thread_id) and _is_primary(session, thread_id, origin):
        return
    event_type = get(event, "type")
    if event_type == THREAD_STATUS_TERMINATED:
        children.thread_ended(thread_id, StopReason.TERMINATED, now_ns)
    elif event_type == THREAD_STATUS_IDLE:
        stop = get(event, "stop_reason")
        reason = get_str(stop, "type") if stop is not None else None
        if reason != StopReason.REQUIRES_ACTION:
            children.thread_ended(thread_id, reason, now_ns)
    elif event_type == THREAD_STATUS_RESCHEDULED:  # a transient error the thread retries: no new start
        children.thread_event(thread_id, event_type, span_event_attributes(event), now_ns)
    else:
        children.thread_started(thread_id, get_str(event, "agent_name"), now_ns)


def on_compacted(
    session: SessionTracker, turn: Turn, event: Any, event_id: Optional[str], now_ns: int, origin: Origin
) -> None:
    """A thread's context was summarised: a span event where it happened (the subagent's span, or the turn), and
    that thread's later model requests carry `gen_ai.conversation.compacted`."""
    turn.compactions += 1
    children = turn.children
    thread_id = thread_of(session, turn, event, now_ns, origin)
    if children is not None and thread_id is not None:
        children.thread_event(thread_id, AGENT_THREAD_CONTEXT_COMPACTED, span_event_attributes(event), now_ns)
        children.compacted(thread_id)
        return
    turn.span.add_event(AGENT_THREAD_CONTEXT_COMPACTED, span_event_attributes(event), now_ns)
    if children is not None:
        children.compacted(None)


def _is_primary(session: SessionTracker, thread_id: str, origin: Origin) -> bool:
    """The coordinator's own thread reports `thread_status_*` too, first thing in every turn: the first thread seen
    on the session's feed that no `session.thread_created` announced is the primary one."""
    if session.primary_thread is None and origin.thread_id is None:
        session.primary_thread = thread_id
    return thread_id == session.primary_thread


def thread_of(session: SessionTracker, turn: Turn, event: Any, now_ns: int, origin: Origin) -> Optional[str]:
    """The subagent thread an event belongs to (its span started if need be), or None for the coordinator."""
    thread_id = origin.thread_id or get(event, "session_thread_id")
    if thread_id is None or thread_id == session.primary_thread or turn.children is None:
        return None
    if not isinstance(thread_id, str):
        return None
    if session.workflows is not None and session.workflows.has_thread(thread_id):
        return thread_id  # a workflow run's agent: its work goes under its span in the run
    if not turn.children.knows_thread(thread_id):
        # Only a subagent's events carry a thread id on the session's stream (cross-posted blocking calls).
        turn.children.thread_started(thread_id, get_str(event, "agent_name"), now_ns)
    return thread_id


# -- span event attributes ------------------------------------------------------------------------------------------


def _reply_attributes(event: Any) -> dict[str, AttributeValue]:
    """What a client reply says, without content: which tool it answers and how."""
    attrs = _string_fields(event, A.REPLY_EVENT_FIELDS)
    is_error = get(event, A.REPLY_EVENT_IS_ERROR)
    if isinstance(is_error, bool):
        attrs[A.REPLY_EVENT_IS_ERROR] = is_error
    return attrs


def span_event_attributes(event: Any) -> dict[str, AttributeValue]:
    """What an event recorded as a span event says, without content."""
    return _string_fields(event, A.SPAN_EVENT_FIELDS)


def _string_fields(event: Any, keys: tuple[str, ...]) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {}
    for key in keys:
        value = get_str(event, key)
        if value:
            attrs[key] = value
    return attrs


def exception_attributes(error: Optional[BaseException], error_type: str) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {A.EXCEPTION_TYPE: error_type or A.ERROR_TYPE_OTHER}
    if error is not None:
        attrs[A.EXCEPTION_MESSAGE] = str(error)[:1024]
    return attrs
