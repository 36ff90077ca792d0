"""The child spans of one turn: `chat` per model request, `execute_tool` per tool call, `invoke_agent` per subagent.

Each child is timed by when the client saw its events (`processed_at` is a storage stamp) and parented explicitly to
the turn or to its subagent, never through whatever is current while the app iterates. Open children are held in
small bounded maps keyed by the event id that will end them; whatever is still open when the turn ends ends with it,
marked incomplete. Ending a child also records its metric (SPEC §5) and, when content capture is on, its content.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Mapping, Optional

from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context
from opentelemetry.util.types import AttributeValue

from . import attributes as A
from .content import output_messages, scrubbed_part, tool_value
from .event_table import TOOL_TYPES
from .fields import get, get_str
from .metrics import MetricAttributes, metric_attributes
from .telemetry import Telemetry

if TYPE_CHECKING:
    from .workflows import WorkflowRuns

#: Open children of each kind kept per turn; past this, new ones are counted on the turn but get no span.
MAX_OPEN_CHILDREN: Final = 256
#: Text and tool call parts kept per model request for its `gen_ai.output.messages`.
MAX_OUTPUT_PARTS: Final = 64
#: Tool names whose metric attributes are kept per agent; others get theirs made per call.
MAX_TOOL_METRIC_SETS: Final = 64


class _Child:
    """An open child span, when it started, the subagent thread it belongs to (None: the turn), and (event modes
    only) the content to emit when it ends."""

    __slots__ = ("span", "start_ns", "name", "thread_id", "content", "output")

    def __init__(self, span: Span, start_ns: int, thread_id: Optional[str], name: str = "") -> None:
        self.span = span
        self.start_ns = start_ns
        self.name = name
        self.thread_id = thread_id
        self.content: Optional[dict[str, Any]] = None
        self.output: Optional[list[dict[str, Any]]] = None  # a model request's text and tool calls (content on)


class Subagent:
    """A subagent's span (or, after its turn, only its context) and its time range."""

    __slots__ = ("span", "context", "start_ns", "end_ns", "shift_ns")

    def __init__(self, span: Span, start_ns: int) -> None:
        self.span = span
        self.context = set_span_in_context(span)
        self.start_ns = start_ns
        self.end_ns = 0  # set when it ends
        self.shift_ns: Optional[int] = None  # how its fetched or late events are moved onto the client's clock


class ChildTemplates:
    """What every child of a session's turns shares, computed once per change of the agent's attributes."""

    __slots__ = (
        "chat_name",
        "chat_attributes",
        "chat_metric_attributes",
        "chat_metrics",
        "tool_metric_base",
        "_tool_metrics",
    )

    def __init__(self, start: Mapping[str, Any]) -> None:
        model = start.get(A.GEN_AI_REQUEST_MODEL)
        model = model if isinstance(model, str) and model else None
        self.chat_name = f"{A.OP_CHAT} {model}" if model else A.OP_CHAT
        self.chat_attributes: dict[str, AttributeValue] = {
            A.GEN_AI_OPERATION_NAME: A.OP_CHAT,
            A.GEN_AI_PROVIDER_NAME: A.PROVIDER,
        }
        if model:
            self.chat_attributes[A.GEN_AI_REQUEST_MODEL] = model
        self.chat_metric_attributes = metric_attributes(A.OP_CHAT, start)
        self.chat_metrics = MetricAttributes(self.chat_metric_attributes)
        self.tool_metric_base = metric_attributes(A.OP_EXECUTE_TOOL, start)
        self._tool_metrics: dict[str, dict[str, AttributeValue]] = {}

    def tool_metric_attributes(self, name: str) -> dict[str, AttributeValue]:
        """A successful call's metric attributes for the tool `name`, made once per tool (at most 64 kept)."""
        attrs = self._tool_metrics.get(name)
        if attrs is None:
            attrs = {**self.tool_metric_base, A.GEN_AI_TOOL_NAME: name}
            if len(self._tool_metrics) < MAX_TOOL_METRIC_SETS:
                self._tool_metrics[name] = attrs
        return attrs


class TurnChildren:
    """Open child spans of one turn. Called by its `SessionTracker` with the session's lock held."""

    __slots__ = (
        "_telemetry",
        "_turn_context",
        "_templates",
        "_requests",
        "_tools",
        "_threads",
        "_ended_threads",
        "_compacted",
        "workflows",
    )

    def __init__(
        self,
        telemetry: Telemetry,
        turn_span: Span,
        templates: ChildTemplates,
        ended_threads: Optional[dict[str, Subagent]] = None,
    ) -> None:
        self._telemetry = telemetry
        self._turn_context = set_span_in_context(turn_span)
        self._templates = templates
        self._requests: dict[str, _Child] = {}
        self._tools: dict[str, _Child] = {}
        self._threads: dict[str, Subagent] = {}
        # Their late or fetched events still go under them.
        self._ended_threads: dict[str, Subagent] = ended_threads if ended_threads is not None else {}
        self._compacted: set[Optional[str]] = set()  # threads (None: the coordinator) whose context was compacted
        self.workflows: Optional[WorkflowRuns] = None  # the session's workflow runs, whose agents' work goes under them

    # -- model requests ------------------------------------------------------------------------------------------

    def request_started(self, event_id: Optional[str], thread_id: Optional[str], now_ns: int) -> None:
        if event_id is None or len(self._requests) >= MAX_OPEN_CHILDREN or event_id in self._requests:
            return
        self._requests[event_id] = _Child(self._start_chat(thread_id, now_ns), now_ns, thread_id)

    def request_ended(
        self,
        start_id: Any,
        usage: Optional[Mapping[str, Any]],
        tokens: tuple[int, int, int, int],
        is_error: bool,
        thread_id: Optional[str],
        now_ns: int,
    ) -> None:
        """`usage` is the request's usage fields (None without any); `tokens` is (input including cache, output,
        cache read, cache write), as the tracker summed them."""
        child = self._requests.pop(start_id, None) if isinstance(start_id, str) else None
        if child is None:
            # Its start was before this process looked (a reconnect): the request still shows, with no duration.
            child = _Child(self._start_chat(thread_id, now_ns), now_ns, thread_id)
        span = child.span
        if usage is not None and span.is_recording():
            attrs: dict[str, AttributeValue] = {
                A.GEN_AI_USAGE_INPUT_TOKENS: tokens[0],
                A.GEN_AI_USAGE_OUTPUT_TOKENS: tokens[1],
                A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: tokens[2],
                A.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: tokens[3],
            }
            speed = usage.get("speed")
            if speed and isinstance(speed, str):
                attrs[A.MODEL_REQUEST_SPEED] = speed
            span.set_attributes(attrs)
        templates = self._templates
        if is_error:
            span.set_attribute(A.ERROR_TYPE, A.ERROR_TYPE_MODEL_REQUEST)
            span.set_status(Status(StatusCode.ERROR))
        if child.output:
            text, truncated = output_messages(self._telemetry.content, child.output, None)
            self._record_value(child, A.GEN_AI_OUTPUT_MESSAGES, text, truncated)
        span.end(end_time=now_ns)
        if child.content:
            self._telemetry.emit_content(span, child.content, now_ns)
        metrics = self._telemetry.metrics
        if metrics is not None:
            if is_error:
                metrics.model_request_failed(
                    (now_ns - child.start_ns) / 1e9, tokens[0], tokens[1], templates.chat_metric_attributes
                )
            else:
                metrics.model_request((now_ns - child.start_ns) / 1e9, tokens[0], tokens[1], templates.chat_metrics)

    def request_output(self, thread_id: Optional[str], part: dict[str, Any]) -> None:
        """With content on: a text or tool call part of the thread's model request still open (the latest)."""
        for child in reversed(self._requests.values()):
            if child.thread_id == thread_id:
                if child.output is None:
                    child.output = []
                if len(child.output) < MAX_OUTPUT_PARTS:
                    kept = scrubbed_part(self._telemetry.content, part)
                    if kept is not None:
                        child.output.append(kept)
                return

    def _start_chat(self, thread_id: Optional[str], now_ns: int) -> Span:
        subagent = thread_id is not None and self.knows_thread(thread_id)
        attributes = _SUBAGENT_CHAT_ATTRIBUTES if subagent else self._templates.chat_attributes
        if self._compacted and (thread_id if subagent else None) in self._compacted:
            attributes = {**attributes, A.GEN_AI_CONVERSATION_COMPACTED: True}
        return self._telemetry.tracer.start_span(
            A.OP_CHAT if subagent else self._templates.chat_name,
            context=self._parent(thread_id),
            kind=SpanKind.CLIENT,
            attributes=attributes,
            start_time=now_ns,
        )

    def compacted(self, thread_id: Optional[str]) -> None:
        """The thread's (None: the coordinator's) later model requests follow a compacted context."""
        if len(self._compacted) < MAX_OPEN_CHILDREN:
            self._compacted.add(thread_id)

    # -- tools ---------------------------------------------------------------------------------------------------

    def tool_used(
        self, event: Any, event_type: str, event_id: Optional[str], thread_id: Optional[str], now_ns: int
    ) -> None:
        if event_id is None or len(self._tools) >= MAX_OPEN_CHILDREN or event_id in self._tools:
            return
        name = get_str(event, "name") or "unknown"
        span_name = f"{A.OP_EXECUTE_TOOL} {name}"
        attrs: dict[str, AttributeValue] = {
            A.GEN_AI_OPERATION_NAME: A.OP_EXECUTE_TOOL,
            A.GEN_AI_PROVIDER_NAME: A.PROVIDER,
            A.GEN_AI_TOOL_NAME: name,
            A.GEN_AI_TOOL_CALL_ID: event_id,
            A.GEN_AI_TOOL_TYPE: TOOL_TYPES.get(event_type, A.TOOL_TYPE_EXTENSION),
        }
        server = get_str(event, "mcp_server_name")
        if server:
            attrs[A.MCP_SERVER_NAME] = server
        permission = get_str(event, "evaluated_permission")
        if permission:
            attrs[A.TOOL_PERMISSION] = permission
        if thread_id is not None and self.knows_thread(thread_id):
            attrs[A.SESSION_THREAD_ID] = thread_id
        else:
            thread_id = None
        child = _Child(
            self._telemetry.tracer.start_span(
                span_name,
                context=self._parent(thread_id),
                kind=SpanKind.INTERNAL,
                attributes=attrs,
                start_time=now_ns,
            ),
            now_ns,
            thread_id,
            name,
        )
        self._tools[event_id] = child
        self._record_content(child, A.GEN_AI_TOOL_CALL_ARGUMENTS, get(event, "input"))

    def tool_finished(self, use_id: Any, is_error: Any, now_ns: int, result: Any = None) -> None:
        child = self._tools.pop(use_id, None) if isinstance(use_id, str) else None
        if child is None:
            return
        if result is not None:
            self._record_content(child, A.GEN_AI_TOOL_CALL_RESULT, result)
        self._end_tool(child, now_ns, A.ERROR_TYPE_TOOL if is_error is True else None)

    def tool_confirmed(self, use_id: Any, result: Any, now_ns: int) -> None:
        """The client's answer to an `ask` tool: recorded on its span; a denial ends it."""
        child = self._tools.get(use_id) if isinstance(use_id, str) else None
        if child is None or not isinstance(result, str):
            return
        child.span.set_attribute(A.TOOL_CONFIRMATION, result)
        if result == "deny":
            del self._tools[use_id]
            self._end_tool(child, now_ns, None)

    def _end_tool(self, child: _Child, now_ns: int, error_type: Optional[str], incomplete: bool = False) -> None:
        span = child.span
        if error_type is not None:
            span.set_attribute(A.ERROR_TYPE, error_type)
            span.set_status(Status(StatusCode.ERROR))
        if incomplete:
            span.set_attribute(A.SPAN_INCOMPLETE, True)
        span.end(end_time=now_ns)
        if child.content:
            self._telemetry.emit_content(span, child.content, now_ns)
        metrics = self._telemetry.metrics
        if metrics is not None:
            attrs = self._templates.tool_metric_attributes(child.name)
            if error_type is not None:
                attrs = {**attrs, A.ERROR_TYPE: error_type}
            metrics.tool((now_ns - child.start_ns) / 1e9, attrs)

    def _record_content(self, child: _Child, key: str, value: Any) -> None:
        policy = self._telemetry.content
        if not policy.enabled or value is None:
            return
        encoded = tool_value(policy, value)
        if encoded is None:
            return
        self._record_value(child, key, *encoded)

    def _record_value(self, child: _Child, key: str, text: str, truncated: bool) -> None:
        """A content value on the child's span, and (event modes) in the log record emitted when it ends."""
        policy = self._telemetry.content
        if policy.on_spans:
            child.span.set_attribute(key, text)
            if truncated:
                child.span.set_attribute(A.CONTENT_TRUNCATED, True)
        if policy.on_events:
            if child.content is None:
                child.content = {A.GEN_AI_TOOL_NAME: child.name} if child.name else {}
            child.content[key] = text
            if truncated:
                child.content[A.CONTENT_TRUNCATED] = True

    # -- subagents -----------------------------------------------------------------------------------------------

    def has_thread(self, thread_id: str) -> bool:
        """Whether the thread's subagent span is open."""
        return thread_id in self._threads

    def knows_thread(self, thread_id: str) -> bool:
        """Whether the thread had a subagent span in this turn, open or ended, or is a workflow run's open agent."""
        if thread_id in self._threads or thread_id in self._ended_threads:
            return True
        return self.workflows is not None and self.workflows.has_thread(thread_id)

    def thread_ids(self) -> list[str]:
        """This turn's subagent threads, open and ended."""
        return [*self._threads, *self._ended_threads]

    def subagent(self, thread_id: str) -> Optional[Subagent]:
        """The thread's subagent, open or ended."""
        return self._threads.get(thread_id) or self._ended_threads.get(thread_id)

    def thread_started(self, thread_id: str, agent_name: Optional[str], now_ns: int) -> None:
        if thread_id in self._threads or len(self._threads) >= MAX_OPEN_CHILDREN:
            return
        span = start_agent_span(self._telemetry, self._turn_context, thread_id, agent_name, now_ns)
        self._threads[thread_id] = Subagent(span, now_ns)

    def thread_event(self, thread_id: str, name: str, attributes: Mapping[str, AttributeValue], now_ns: int) -> None:
        """A span event on the thread's subagent span (open or ended)."""
        subagent = self.subagent(thread_id)
        if subagent is not None:
            subagent.span.add_event(name, attributes, now_ns)

    def thread_named(self, thread_id: str, agent_name: Optional[str]) -> None:
        """A thread whose events came before its `session.thread_created` learns its agent's name."""
        subagent = self._threads.get(thread_id)
        if subagent is not None and agent_name:
            subagent.span.update_name(f"{A.OP_INVOKE_AGENT} {agent_name}")
            subagent.span.set_attribute(A.GEN_AI_AGENT_NAME, agent_name)

    def thread_ended(self, thread_id: str, stop_reason: Optional[str], now_ns: int) -> None:
        """The subagent's span ends, and with it the children it still has open (marked incomplete): a subagent's
        tool results are often only on the thread's own feed."""
        subagent = self._threads.pop(thread_id, None)
        if subagent is None:
            return
        self._end_open(now_ns, thread_id)
        if stop_reason:
            subagent.span.set_attribute(A.TURN_STOP_REASON, stop_reason)
        subagent.span.end(end_time=now_ns)
        subagent.end_ns = now_ns
        if len(self._ended_threads) < MAX_OPEN_CHILDREN:
            self._ended_threads[thread_id] = subagent

    # -- the end of the turn -------------------------------------------------------------------------------------

    def end_all(self, now_ns: int) -> dict[str, Subagent]:
        """End every child still open, marked incomplete: tools and requests first, their subagents last. Returns
        the turn's subagents, for the events of their threads that are read after the turn ended."""
        self._end_open(now_ns, None, every=True)
        for thread_id, subagent in self._threads.items():
            subagent.span.set_attribute(A.SPAN_INCOMPLETE, True)
            subagent.span.end(end_time=now_ns)
            subagent.end_ns = now_ns
            if len(self._ended_threads) < MAX_OPEN_CHILDREN:
                self._ended_threads[thread_id] = subagent
        self._threads.clear()
        return self._ended_threads

    def end_open(self, now_ns: int) -> None:
        """End the model requests and tools still open (of a turn's late feed, which no turn end closes)."""
        self._end_open(now_ns, None, every=True)

    def _end_open(self, now_ns: int, thread_id: Optional[str], every: bool = False) -> None:
        for key in [k for k, c in self._requests.items() if every or c.thread_id == thread_id]:
            child = self._requests.pop(key)
            child.span.set_attribute(A.SPAN_INCOMPLETE, True)
            child.span.end(end_time=max(now_ns, child.start_ns))
        for key in [k for k, c in self._tools.items() if every or c.thread_id == thread_id]:
            child = self._tools.pop(key)
            self._end_tool(child, max(now_ns, child.start_ns), None, incomplete=True)

    def _parent(self, thread_id: Optional[str]) -> Context:
        if thread_id is not None:
            subagent = self._threads.get(thread_id) or self._ended_threads.get(thread_id)
            if subagent is not None:
                return subagent.context
            if self.workflows is not None:
                context = self.workflows.thread_context(thread_id)
                if context is not None:
                    return context
        return self._turn_context


def start_agent_span(
    telemetry: Telemetry,
    parent: Context,
    thread_id: str,
    agent_name: Optional[str],
    now_ns: int,
    **extra: AttributeValue,
) -> Span:
    """The `invoke_agent` span of an agent working in a thread of the session: a subagent, or a workflow run's."""
    attrs: dict[str, AttributeValue] = {
        A.GEN_AI_OPERATION_NAME: A.OP_INVOKE_AGENT,
        A.GEN_AI_PROVIDER_NAME: A.PROVIDER,
        A.SESSION_THREAD_ID: thread_id,
        **extra,
    }
    if agent_name:
        attrs[A.GEN_AI_AGENT_NAME] = agent_name
    return telemetry.tracer.start_span(
        f"{A.OP_INVOKE_AGENT} {agent_name}" if agent_name else A.OP_INVOKE_AGENT,
        context=parent,
        kind=SpanKind.INTERNAL,
        attributes=attrs,
        start_time=now_ns,
    )


_SUBAGENT_CHAT_ATTRIBUTES: Final[dict[str, AttributeValue]] = {
    A.GEN_AI_OPERATION_NAME: A.OP_CHAT,
    A.GEN_AI_PROVIDER_NAME: A.PROVIDER,
}
