"""Attribute, span and event names, grouped as SPEC §3 groups them.

Semantic-convention names where the GenAI conventions have one; `anthropic.*` for what only CMA has.
"""

from __future__ import annotations

from typing import Final

# Span names and operations.
OP_INVOKE_AGENT: Final = "invoke_agent"
OP_CHAT: Final = "chat"
OP_EXECUTE_TOOL: Final = "execute_tool"
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
ERROR_TYPE: Final = "error.type"
ERROR_TYPE_OTHER: Final = "_OTHER"

# Span events on the turn.
EVENT_STREAM_ERROR: Final = "stream.error"
EXCEPTION_TYPE: Final = "exception.type"
EXCEPTION_MESSAGE: Final = "exception.message"


class StopReason:
    """The local stop reasons; the API's own (`end_turn`, `refusal`, ...) are recorded as sent."""

    END_TURN: Final = "end_turn"
    REQUIRES_ACTION: Final = "requires_action"
    RETRIES_EXHAUSTED: Final = "retries_exhausted"
    TERMINATED: Final = "terminated"
    DELETED: Final = "deleted"
    SUPERSEDED: Final = "superseded"
    ABANDONED: Final = "abandoned"
    STREAM_ERROR: Final = "stream_error"
    SEND_ERROR: Final = "send_error"
    UNOBSERVED: Final = "unobserved"
    SHUTDOWN: Final = "shutdown"


# API stop reason -> gen_ai.response.finish_reasons value; anything unknown maps to "error".
FINISH_REASONS: Final = {
    "end_turn": "stop",
    "refusal": "content_filter",
    "budget_reached": "length",
    "retries_exhausted": "error",
}

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
SESSION_THREAD_ID: Final = "anthropic.session.thread_id"
SPAN_INCOMPLETE: Final = "anthropic.span.incomplete"
ERROR_TYPE_TOOL: Final = "tool_error"
ERROR_TYPE_MODEL_REQUEST: Final = "model_request_error"
