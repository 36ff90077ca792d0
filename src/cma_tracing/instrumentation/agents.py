"""What a session's `create` / `retrieve` response says about its agent, as turn-start attributes."""

from __future__ import annotations

from typing import Any, Final, Mapping, Optional, Sequence

from opentelemetry.util.types import AttributeValue

from . import attributes as A
from .content import plain
from .fields import as_list, get, get_str

#: Tool definitions kept per agent.
MAX_TOOL_DEFINITIONS: Final = 128


def agent_attributes(session: Any) -> dict[str, AttributeValue]:
    """Turn-start attributes from a session object (model or dict). Missing fields are left out. Never raises."""
    attrs: dict[str, AttributeValue] = {}
    agent = get(session, "agent")
    if agent is not None:
        _put_str(attrs, A.GEN_AI_AGENT_ID, get_str(agent, "id"))
        _put_str(attrs, A.GEN_AI_AGENT_NAME, get_str(agent, "name"))
        version = get(agent, "version")
        if isinstance(version, (int, str)) and not isinstance(version, bool):
            attrs[A.GEN_AI_AGENT_VERSION] = str(version)
        model = get(agent, "model")
        _put_str(attrs, A.GEN_AI_REQUEST_MODEL, model if isinstance(model, str) else get_str(model, "id"))
        tools = tool_names(agent)
        if tools:
            attrs[A.ANTHROPIC_AGENT_TOOLS] = tools
    _put_str(attrs, A.ANTHROPIC_ENVIRONMENT_ID, get_str(session, "environment_id"))
    return attrs


def tool_names(agent: Any) -> list[str]:
    """Names of the configured tools: custom and MCP tools by name, toolsets by their enabled tools or type."""
    names: list[str] = []
    for tool in as_list(get(agent, "tools")):
        configs = [c for c in as_list(get(tool, "configs")) if get(c, "enabled", True) is not False]
        named = [n for n in (get_str(c, "name") for c in configs) if n]
        if named:
            names.extend(named)
            continue
        name = get_str(tool, "name") or get_str(tool, "mcp_server_name") or get_str(tool, "type")
        if name:
            names.append(name)
    for server in as_list(get(agent, "mcp_servers")):
        name = get_str(server, "name")
        if name and name not in names:
            names.append(name)
    return names


def _put_str(attrs: dict[str, AttributeValue], key: str, value: str | None) -> None:
    if value:
        attrs[key] = value


def client_attributes(base_url: Any, betas: Sequence[str]) -> Mapping[str, AttributeValue]:
    """`server.*` from the client's base URL and `anthropic.beta` from the request's beta header values."""
    attrs: dict[str, AttributeValue] = {}
    host = getattr(base_url, "host", None)
    if isinstance(host, str) and host:
        attrs[A.SERVER_ADDRESS] = host
        port = getattr(base_url, "port", None)
        if not isinstance(port, int):
            port = 443 if getattr(base_url, "scheme", "https") == "https" else 80
        attrs[A.SERVER_PORT] = port
    if betas:
        attrs[A.ANTHROPIC_BETA] = tuple(betas)  # immutable: one mapping may serve many calls
    return attrs


def agent_content(session: Any) -> Optional[dict[str, Any]]:
    """What a session's agent says that is content (recorded only with content capture on): its system prompt as
    `gen_ai.system_instructions` parts, its tools as `gen_ai.tool.definitions`. None if it has neither."""
    agent = get(session, "agent")
    if agent is None:
        return None
    found: dict[str, Any] = {}
    system = get_str(agent, "system")
    if system:
        found[A.GEN_AI_SYSTEM_INSTRUCTIONS] = [{"type": "text", "content": system}]
    tools = [_tool_definition(tool) for tool in as_list(get(agent, "tools"))[:MAX_TOOL_DEFINITIONS]]
    if tools:
        found[A.GEN_AI_TOOL_DEFINITIONS] = tools
    return found or None


def _tool_definition(tool: Any) -> dict[str, Any]:
    """A configured tool as the conventions describe one: a custom tool is a `function` with its `parameters`;
    a toolset or MCP tool keeps its own type and fields."""
    body = plain(tool)
    if not isinstance(body, dict):
        return {"type": "unknown"}
    if body.get("type") == "custom":
        definition = {"type": "function", "name": body.get("name"), "description": body.get("description")}
        definition["parameters"] = body.get("input_schema")
        return {k: v for k, v in definition.items() if v is not None}
    return body
