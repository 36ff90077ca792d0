"""What each CMA event type means for a turn: the one table the tracker dispatches on.

A new event type in the beta is one row here. Types absent from the table are counted as unknown and otherwise
ignored; they never raise and never end a turn.
"""

from __future__ import annotations

from typing import Final, NamedTuple


class Role(NamedTuple):
    """How the tracker treats one event type.

    `handler` names a `SessionTracker` method (None: the event is only counted). `output` marks agent output: it
    sets time to first chunk and ends a `requires_action` wait. `span_event` records the event on the turn span.
    `session_level` events speak for the whole session (they open, end or describe the turn); on a subagent
    thread's own feed they are only counted. A `lifecycle` handler opens, ends or holds the turn open: it runs even
    for a turn nobody records (a sampled-out or no-op span, no meter, no content capture), where the other handlers,
    which only feed attributes, metrics, content and child spans, do not.
    """

    handler: str | None = None
    output: bool = False
    span_event: bool = False
    session_level: bool = False
    lifecycle: bool = False


_NONE: Final = Role()

EVENT_ROLES: Final[dict[str, Role]] = {
    # The client's own events, echoed back on the stream.
    "user.message": Role("_on_user_message", session_level=True, lifecycle=True),
    "user.interrupt": Role("_on_user_reply"),
    "user.tool_confirmation": Role("_on_user_reply"),
    "user.custom_tool_result": Role("_on_user_reply"),
    "user.tool_result": _NONE,
    "user.define_outcome": _NONE,
    # What the agent does.
    "agent.message": Role("_on_agent_message", output=True),
    "agent.thinking": Role(output=True),
    "agent.tool_use": Role("_on_tool_use", output=True),
    "agent.mcp_tool_use": Role("_on_tool_use", output=True),
    "agent.custom_tool_use": Role("_on_tool_use", output=True),
    "agent.tool_result": Role("_on_tool_result"),
    "agent.mcp_tool_result": Role("_on_tool_result"),
    "agent.thread_message_sent": Role(span_event=True),
    "agent.thread_message_received": Role(span_event=True),
    "agent.thread_context_compacted": _NONE,
    # Model requests.
    "span.model_request_start": Role("_on_model_request_start"),
    "span.model_request_end": Role("_on_model_request_end"),
    "span.outcome_evaluation_start": _NONE,
    "span.outcome_evaluation_ongoing": _NONE,
    "span.outcome_evaluation_end": _NONE,
    # Session status.
    "session.status_running": Role("_on_running", session_level=True, lifecycle=True),
    "session.status_idle": Role("_on_idle", session_level=True, lifecycle=True),
    "session.status_rescheduled": Role(span_event=True, session_level=True),
    "session.status_terminated": Role("_on_terminated", session_level=True, lifecycle=True),
    "session.deleted": Role("_on_deleted", session_level=True, lifecycle=True),
    "session.error": Role("_on_session_error", session_level=True),
    "session.usage": Role("_on_usage", session_level=True),
    "session.updated": _NONE,
    "system.message": _NONE,
    # Threads (subagents); the primary thread reports these too.
    "session.thread_created": Role("_on_thread_created"),
    "session.thread_status_running": Role("_on_thread_status"),
    "session.thread_status_idle": Role("_on_thread_status"),
    "session.thread_status_rescheduled": Role("_on_thread_status"),
    "session.thread_status_terminated": Role("_on_thread_status"),
    # Workflow runs.
    "workflow_run.created": _NONE,
    "workflow_run.status_running": _NONE,
    "workflow_run.status_idle": _NONE,
    "workflow_run.status_ended": _NONE,
    "workflow_run.error": _NONE,
    "workflow_run.phase_started": _NONE,
    "workflow_run.phase_ended": _NONE,
    # Previews (only with `event_deltas`): no id of their own, so they are never counted or deduplicated.
    "event_start": Role(output=True),
    "event_delta": Role(output=True),
}

USER_MESSAGE: Final = "user.message"
