"""What each CMA event type means for a turn: the names of the types, and the one table the tracker dispatches on.

A new event type in the beta is a constant and one row here. Types absent from the table are counted as unknown and
otherwise ignored; they never raise and never end a turn. No other module writes an event type as a string.
"""

from __future__ import annotations

from typing import Final, NamedTuple, Optional

from . import attributes as A

# The client's own events, echoed back on the stream.
USER_MESSAGE: Final = "user.message"
USER_INTERRUPT: Final = "user.interrupt"
USER_TOOL_CONFIRMATION: Final = "user.tool_confirmation"
USER_CUSTOM_TOOL_RESULT: Final = "user.custom_tool_result"
USER_TOOL_RESULT: Final = "user.tool_result"
USER_DEFINE_OUTCOME: Final = "user.define_outcome"
SYSTEM_MESSAGE: Final = "system.message"
# What the agent does.
AGENT_MESSAGE: Final = "agent.message"
AGENT_THINKING: Final = "agent.thinking"
AGENT_TOOL_USE: Final = "agent.tool_use"
AGENT_MCP_TOOL_USE: Final = "agent.mcp_tool_use"
AGENT_CUSTOM_TOOL_USE: Final = "agent.custom_tool_use"
AGENT_TOOL_RESULT: Final = "agent.tool_result"
AGENT_MCP_TOOL_RESULT: Final = "agent.mcp_tool_result"
AGENT_THREAD_MESSAGE_SENT: Final = "agent.thread_message_sent"
AGENT_THREAD_MESSAGE_RECEIVED: Final = "agent.thread_message_received"
AGENT_THREAD_CONTEXT_COMPACTED: Final = "agent.thread_context_compacted"
# Model requests and evaluations.
MODEL_REQUEST_START: Final = "span.model_request_start"
MODEL_REQUEST_END: Final = "span.model_request_end"
OUTCOME_EVALUATION_START: Final = "span.outcome_evaluation_start"
OUTCOME_EVALUATION_ONGOING: Final = "span.outcome_evaluation_ongoing"
OUTCOME_EVALUATION_END: Final = "span.outcome_evaluation_end"
# Session status.
SESSION_STATUS_RUNNING: Final = "session.status_running"
SESSION_STATUS_IDLE: Final = "session.status_idle"
SESSION_STATUS_RESCHEDULED: Final = "session.status_rescheduled"
SESSION_STATUS_TERMINATED: Final = "session.status_terminated"
SESSION_DELETED: Final = "session.deleted"
SESSION_ERROR: Final = "session.error"
SESSION_USAGE: Final = "session.usage"
SESSION_UPDATED: Final = "session.updated"
# Threads (subagents); the primary thread reports these too.
THREAD_CREATED: Final = "session.thread_created"
THREAD_STATUS_RUNNING: Final = "session.thread_status_running"
THREAD_STATUS_IDLE: Final = "session.thread_status_idle"
THREAD_STATUS_RESCHEDULED: Final = "session.thread_status_rescheduled"
THREAD_STATUS_TERMINATED: Final = "session.thread_status_terminated"
#: Every status a thread reports (its agent is named on each).
THREAD_STATUSES: Final = frozenset(
    (THREAD_STATUS_RUNNING, THREAD_STATUS_IDLE, THREAD_STATUS_RESCHEDULED, THREAD_STATUS_TERMINATED)
)
# Workflow runs.
WORKFLOW_RUN_CREATED: Final = "workflow_run.created"
WORKFLOW_RUN_STATUS_RUNNING: Final = "workflow_run.status_running"
WORKFLOW_RUN_STATUS_IDLE: Final = "workflow_run.status_idle"
WORKFLOW_RUN_STATUS_ENDED: Final = "workflow_run.status_ended"
WORKFLOW_RUN_ERROR: Final = "workflow_run.error"
WORKFLOW_RUN_PHASE_STARTED: Final = "workflow_run.phase_started"
WORKFLOW_RUN_PHASE_ENDED: Final = "workflow_run.phase_ended"
# Previews (only with `event_deltas`).
EVENT_START: Final = "event_start"
EVENT_DELTA: Final = "event_delta"


class Role(NamedTuple):
    """How the tracker treats one event type.

    `handler` names a lifecycle method of `SessionTracker` (when `lifecycle`) or a function of `handlers` (None: the
    event is only counted). `opens`: the event may open or supersede a turn. `output` marks agent output: it sets
    time to first chunk and ends a `requires_action` wait. `span_event` records the event on the turn span.
    `session_level` events speak for the whole session (they open, end or describe the turn); on a subagent thread's
    own feed they are only counted. A `lifecycle` handler opens, ends or holds the turn open: it runs even for a turn
    nobody records (a sampled-out or no-op span, no meter, no content capture), where the other handlers, which only
    feed attributes, metrics, content and child spans, do not; `lifecycle_handler` names the `SessionTracker` method
    such a turn runs instead of a recording `handler`, for what the turn's lifecycle needs of that event. `resumes`:
    agent work that opens a `resume` turn when it arrives on the session's stream with none open. `tool_type` is a
    tool use's `gen_ai.tool.type`.
    """

    handler: Optional[str] = None
    output: bool = False
    span_event: bool = False
    session_level: bool = False
    lifecycle: bool = False
    opens: bool = False
    resumes: bool = False
    lifecycle_handler: Optional[str] = None
    tool_type: Optional[str] = None


_NONE: Final = Role()
_REPLY: Final = Role("on_user_reply")
#: A run outlives turns: its events go to the session's runs, even during a turn nobody records.
#: A thread's status feeds a subagent's or a run's span; the first thread to report one on the session's feed is the
#: coordinator's own, which a turn nobody records must learn too (its cross-posted work may resume a turn).
_THREAD_STATUS: Final = Role("on_thread_status", lifecycle_handler="on_thread_seen")
_WORKFLOW: Final = Role("on_workflow_event", session_level=True, lifecycle_handler="on_workflow_event")

EVENT_ROLES: Final[dict[str, Role]] = {
    USER_MESSAGE: Role("on_user_message", session_level=True, lifecycle=True, opens=True),
    USER_INTERRUPT: _REPLY,
    USER_TOOL_CONFIRMATION: _REPLY,
    USER_CUSTOM_TOOL_RESULT: _REPLY,
    USER_TOOL_RESULT: _REPLY,  # a self-hosted worker's answer to an agent.tool_use
    USER_DEFINE_OUTCOME: Role("on_user_message", session_level=True, lifecycle=True, opens=True),
    SYSTEM_MESSAGE: _REPLY,  # sent after the user event it accompanies
    AGENT_MESSAGE: Role("on_agent_message", output=True, resumes=True),
    AGENT_THINKING: Role(output=True, resumes=True),
    AGENT_TOOL_USE: Role("on_tool_use", output=True, resumes=True, tool_type=A.TOOL_TYPE_EXTENSION),
    AGENT_MCP_TOOL_USE: Role("on_tool_use", output=True, resumes=True, tool_type=A.TOOL_TYPE_EXTENSION),
    AGENT_CUSTOM_TOOL_USE: Role("on_tool_use", output=True, resumes=True, tool_type=A.TOOL_TYPE_FUNCTION),
    AGENT_TOOL_RESULT: Role("on_tool_result"),
    AGENT_MCP_TOOL_RESULT: Role("on_tool_result"),
    AGENT_THREAD_MESSAGE_SENT: Role(span_event=True),
    AGENT_THREAD_MESSAGE_RECEIVED: Role(span_event=True),
    AGENT_THREAD_CONTEXT_COMPACTED: Role("on_compacted"),
    MODEL_REQUEST_START: Role("on_model_request_start", resumes=True, lifecycle_handler="on_work"),
    MODEL_REQUEST_END: Role("on_model_request_end"),
    OUTCOME_EVALUATION_START: Role("on_evaluation_start", session_level=True),
    OUTCOME_EVALUATION_ONGOING: Role("on_evaluation_ongoing", session_level=True),
    OUTCOME_EVALUATION_END: Role("on_evaluation_end", session_level=True, lifecycle_handler="on_verdict"),
    SESSION_STATUS_RUNNING: Role("on_running", session_level=True, lifecycle=True, resumes=True),
    SESSION_STATUS_IDLE: Role("on_idle", session_level=True, lifecycle=True),
    SESSION_STATUS_RESCHEDULED: Role(span_event=True, session_level=True),
    SESSION_STATUS_TERMINATED: Role("on_terminated", session_level=True, lifecycle=True),
    SESSION_DELETED: Role("on_deleted", session_level=True, lifecycle=True),
    SESSION_ERROR: Role("on_session_error", session_level=True),
    SESSION_USAGE: Role("on_usage", session_level=True),
    SESSION_UPDATED: _NONE,
    THREAD_CREATED: Role("on_thread_created"),
    THREAD_STATUS_RUNNING: _THREAD_STATUS,
    THREAD_STATUS_IDLE: _THREAD_STATUS,
    THREAD_STATUS_RESCHEDULED: _THREAD_STATUS,
    THREAD_STATUS_TERMINATED: _THREAD_STATUS,
    WORKFLOW_RUN_CREATED: _WORKFLOW,
    WORKFLOW_RUN_STATUS_RUNNING: _WORKFLOW,
    WORKFLOW_RUN_STATUS_IDLE: _WORKFLOW,
    WORKFLOW_RUN_STATUS_ENDED: _WORKFLOW,
    WORKFLOW_RUN_ERROR: _WORKFLOW,
    WORKFLOW_RUN_PHASE_STARTED: _WORKFLOW,
    WORKFLOW_RUN_PHASE_ENDED: _WORKFLOW,
    # Previews have no id of their own, so they are never counted or deduplicated.
    EVENT_START: Role(output=True),
    EVENT_DELTA: Role(output=True),
}

#: The client events that join the open turn when sent (and ride along with the user event that opens one).
REPLY_TYPES: Final = frozenset(t for t, role in EVENT_ROLES.items() if role.handler == _REPLY.handler)
#: The types that open a turn when sent or seen.
OPENING_TYPES: Final = frozenset(t for t, role in EVENT_ROLES.items() if role.opens)
#: A tool use's `gen_ai.tool.type`, per tool-use type.
TOOL_TYPES: Final = {t: role.tool_type for t, role in EVENT_ROLES.items() if role.tool_type is not None}
