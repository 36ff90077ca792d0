"""Every span, attribute, metric and event-attribute name cma-tracing writes, grouped as SPEC §3 to §5 group them,
and the one table of stop reasons.

Semantic-convention names where the GenAI conventions have one; `anthropic.*` for what only CMA has.
"""

from __future__ import annotations

from typing import Final, NamedTuple, Optional

# Span names and operations.
OP_INVOKE_AGENT: Final = "invoke_agent"
OP_CHAT: Final = "chat"
OP_EXECUTE_TOOL: Final = "execute_tool"
OP_EVALUATION: Final = "evaluation"
OP_INVOKE_WORKFLOW: Final = "invoke_workflow"
SPAN_WORKFLOW_PHASE: Final = "workflow_phase"
PROVIDER: Final = "anthropic"
HTTP_ROUTE_EVENTS: Final = "/v1/sessions/{session_id}/events"

# Known when a turn starts (samplers read these).
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_AGENT_ID: Final = "gen_ai.agent.id"
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_AGENT_VERSION: Final = "gen_ai.agent.version"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
ANTHROPIC_SESSION_ID: Final = "anthropic.session.id"
ANTHROPIC_AGENT_TOOLS: Final = "anthropic.agent.tools"
ANTHROPIC_ENVIRONMENT_ID: Final = "anthropic.environment.id"
ANTHROPIC_BETA: Final = "anthropic.beta"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
HTTP_ROUTE: Final = "http.route"

TURN_TRIGGER: Final = "anthropic.turn.trigger"

# Known when a turn ends.
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: Final = "gen_ai.usage.cache_write.input_tokens"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
TURN_STOP_REASON: Final = "anthropic.turn.stop_reason"
TURN_INDEX: Final = "anthropic.turn.index"
TURN_TOOL_CALLS: Final = "anthropic.turn.tool_calls"
TURN_TOOL_NAMES: Final = "anthropic.turn.tool_names"
TURN_MODEL_REQUESTS: Final = "anthropic.turn.model_requests"
TURN_EVENTS: Final = "anthropic.turn.events"
TURN_UNKNOWN_EVENTS: Final = "anthropic.turn.unknown_events"
SESSION_COST_USD: Final = "anthropic.session.cost_usd"
SESSION_USAGE_PREFIX: Final = "anthropic.session.usage."
TURN_COMPACTIONS: Final = "anthropic.turn.compactions"
ERROR_TYPE: Final = "error.type"
ERROR_TYPE_OTHER: Final = "_OTHER"


class Trigger:
    """What opened a turn (`anthropic.turn.trigger`)."""

    USER_MESSAGE: Final = "user.message"
    DEFINE_OUTCOME: Final = "user.define_outcome"
    INITIAL_EVENTS: Final = "initial_events"
    RESUME: Final = "resume"


# Outcomes (SPEC §3.4).
OUTCOME_ID: Final = "anthropic.outcome.id"
OUTCOME_MAX_ITERATIONS: Final = "anthropic.outcome.max_iterations"
OUTCOME_RESULT: Final = "anthropic.outcome.result"
OUTCOME_ITERATIONS: Final = "anthropic.outcome.iterations"
OUTCOME_ITERATION: Final = "anthropic.outcome.iteration"
OUTCOME_HEARTBEATS: Final = "anthropic.outcome.heartbeats"
OUTCOME_RUBRIC: Final = "anthropic.outcome.rubric"
GEN_AI_EVALUATION_NAME: Final = "gen_ai.evaluation.name"
GEN_AI_EVALUATION_SCORE_LABEL: Final = "gen_ai.evaluation.score.label"
GEN_AI_EVALUATION_EXPLANATION: Final = "gen_ai.evaluation.explanation"
EVENT_EVALUATION_RESULT: Final = "gen_ai.evaluation.result"
EVALUATION_NAME_OUTCOME: Final = "outcome"
SPAN_EVALUATION_OUTCOME: Final = "evaluation outcome"
#: The default of `user.define_outcome`'s `max_iterations`.
DEFAULT_MAX_ITERATIONS: Final = 3
#: Verdicts after which the outcome takes no more steering (`needs_revision` is the one that goes on).
TERMINAL_VERDICTS: Final = frozenset({"satisfied", "max_iterations_reached", "failed", "interrupted"})
VERDICT_INTERRUPTED: Final = "interrupted"

# Span events on the turn, and their attributes.
EVENT_STREAM_ERROR: Final = "stream.error"
EXCEPTION_TYPE: Final = "exception.type"
EXCEPTION_MESSAGE: Final = "exception.message"
#: What a `session.error` span event carries.
ERROR_EVENT_TYPE: Final = "type"
ERROR_EVENT_MESSAGE: Final = "message"
ERROR_EVENT_RETRY_STATUS: Final = "retry_status"
#: Fields of a client reply (`user.tool_confirmation`, ...) copied onto its span event: which tool it answers, how.
REPLY_EVENT_FIELDS: Final = ("tool_use_id", "custom_tool_use_id", "result", "session_thread_id")
REPLY_EVENT_IS_ERROR: Final = "is_error"
#: Fields of a thread message or a rescheduled session copied onto its span event.
SPAN_EVENT_FIELDS: Final = ("id", "session_thread_id", "to_session_thread_id", "from_session_thread_id", "agent_name")

# Workflow runs (SPEC §3.5).
WORKFLOW_RUN_ID: Final = "anthropic.workflow_run.id"
WORKFLOW_RUN_NAME: Final = "anthropic.workflow_run.name"
WORKFLOW_RUN_PHASES: Final = "anthropic.workflow_run.phases"
WORKFLOW_RUN_RESULT: Final = "anthropic.workflow_run.result"
WORKFLOW_RUN_THREADS: Final = "anthropic.workflow_run.threads"
WORKFLOW_RUN_PHASE_ID: Final = "anthropic.workflow_run.phase.id"
WORKFLOW_RESULT_ERROR: Final = "error"

# Child spans (SPEC §3.3).
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
GEN_AI_TOOL_TYPE: Final = "gen_ai.tool.type"
TOOL_TYPE_EXTENSION: Final = "extension"
TOOL_TYPE_FUNCTION: Final = "function"
MCP_SERVER_NAME: Final = "anthropic.mcp.server_name"
TOOL_PERMISSION: Final = "anthropic.tool.permission"
TOOL_CONFIRMATION: Final = "anthropic.tool.confirmation"
MODEL_REQUEST_SPEED: Final = "anthropic.model_request.speed"
GEN_AI_CONVERSATION_COMPACTED: Final = "gen_ai.conversation.compacted"
SESSION_THREAD_ID: Final = "anthropic.session.thread_id"
SPAN_INCOMPLETE: Final = "anthropic.span.incomplete"
ERROR_TYPE_TOOL: Final = "tool_error"
ERROR_TYPE_MODEL_REQUEST: Final = "model_request_error"

# Content (SPEC §4).
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT: Final = "gen_ai.tool.call.result"
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
GEN_AI_TOOL_DEFINITIONS: Final = "gen_ai.tool.definitions"
CONTENT_TRUNCATED: Final = "anthropic.content.truncated"
CONTENT_EVENT_NAME: Final = "gen_ai.client.inference.operation.details"

# Metrics (SPEC §5).
METRIC_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
METRIC_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
METRIC_TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.operation.time_to_first_chunk"
METRIC_TOOL_DURATION: Final = "gen_ai.execute_tool.duration"
METRIC_WORKFLOW_DURATION: Final = "gen_ai.invoke_workflow.duration"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
TOKEN_TYPE_INPUT: Final = "input"
TOKEN_TYPE_OUTPUT: Final = "output"


class StopReason:
    """The stop reasons the core acts on: the API's own, and the local ones it gives when the API says nothing."""

    END_TURN: Final = "end_turn"
    REQUIRES_ACTION: Final = "requires_action"
    REFUSAL: Final = "refusal"
    BUDGET_REACHED: Final = "budget_reached"
    RETRIES_EXHAUSTED: Final = "retries_exhausted"
    UNKNOWN: Final = "unknown"  # an idle whose stop reason cannot be read
    TERMINATED: Final = "terminated"
    DELETED: Final = "deleted"
    SUPERSEDED: Final = "superseded"
    ABANDONED: Final = "abandoned"
    STREAM_ERROR: Final = "stream_error"
    SEND_ERROR: Final = "send_error"
    UNOBSERVED: Final = "unobserved"
    SHUTDOWN: Final = "shutdown"


class Status:
    """What a stop reason makes of the turn span's status."""

    UNSET: Final = 0
    OK: Final = 1
    ERROR: Final = 2
    ERROR_AFTER_SESSION_ERROR: Final = 3  # ERROR if a `session.error` came first, else unset


class Stop(NamedTuple):
    """One row of the stop-reason table: the `gen_ai.response.finish_reasons` value (None for a local reason, which
    records none) and the status."""

    finish_reason: Optional[str]
    status: int


STOP_REASONS: Final[dict[str, Stop]] = {
    # From the API.
    StopReason.END_TURN: Stop("stop", Status.OK),
    StopReason.REFUSAL: Stop("content_filter", Status.UNSET),
    StopReason.BUDGET_REACHED: Stop("length", Status.UNSET),
    StopReason.RETRIES_EXHAUSTED: Stop("error", Status.ERROR),
    # Local.
    StopReason.TERMINATED: Stop(None, Status.ERROR_AFTER_SESSION_ERROR),
    StopReason.DELETED: Stop(None, Status.UNSET),
    StopReason.SUPERSEDED: Stop(None, Status.UNSET),
    StopReason.ABANDONED: Stop(None, Status.UNSET),
    StopReason.STREAM_ERROR: Stop(None, Status.ERROR),
    StopReason.SEND_ERROR: Stop(None, Status.ERROR),
    StopReason.UNOBSERVED: Stop(None, Status.UNSET),
    StopReason.SHUTDOWN: Stop(None, Status.UNSET),
}
#: An API stop reason this version does not know (`unknown` included): it ends the turn, and maps to "error".
UNKNOWN_STOP: Final = Stop("error", Status.UNSET)
