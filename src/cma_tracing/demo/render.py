"""A terminal view of finished spans: each turn as a tree of its model requests, tools and subagents.

Lines fit the console's width (80 columns when the output is not a terminal and COLUMNS is unset, as in CI logs):
a line's fields, " · "-separated, move whole to continuation lines under its name instead of breaking mid-phrase.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Mapping, Optional, Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode
from rich.cells import cell_len
from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from ..instrumentation.attributes import EVENT_STREAM_ERROR
from ..instrumentation.event_table import SESSION_ERROR

#: Columns when the output is not a terminal: what a CI log or a pager shows without wrapping.
PIPE_WIDTH = 80
#: Columns each level of the tree takes for its guides ("├── ", "│   ").
GUIDE_WIDTH = 4
#: Where a line's fields go on when they do not fit after its name.
CONTINUATION = "  "
SEPARATOR = " · "

_STYLES = {
    "invoke_agent": "bold cyan",
    "chat": "magenta",
    "execute_tool": "yellow",
    "evaluation": "bold green",
    "invoke_workflow": "bold blue",
    "workflow_phase": "blue",
}


def fit_width(console: Console) -> int:
    """The width to lay lines out in: the terminal's, or PIPE_WIDTH when writing to a pipe or file and COLUMNS does
    not say otherwise (rich would otherwise measure whatever terminal stdin happens to be)."""
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = PIPE_WIDTH
    return console.width


def _seconds(nanoseconds: int) -> str:
    return f"{nanoseconds / 1e9:.2f} s"


def _tokens(attrs: Mapping[str, Any]) -> str:
    if "gen_ai.usage.input_tokens" not in attrs:
        return ""
    return f"{attrs['gen_ai.usage.input_tokens']:,} in / {attrs.get('gen_ai.usage.output_tokens', 0):,} out tokens"


def name_of(span: ReadableSpan) -> str:
    """The span's name, with the model on a chat line whose span name lacks it but whose attributes say it."""
    attrs = span.attributes or {}
    model = attrs.get("gen_ai.request.model")
    if attrs.get("gen_ai.operation.name") == "chat" and span.name == "chat" and isinstance(model, str) and model:
        return f"chat {model}"
    return span.name


def fields_of(span: ReadableSpan, parent: Optional[ReadableSpan]) -> list[str]:
    """What a span's line says after its name, one phrase per field."""
    attrs = dict(span.attributes or {})
    operation = attrs.get("gen_ai.operation.name")
    parts = []
    if parent is not None:
        parts.append(f"at {((span.start_time or 0) - (parent.start_time or 0)) / 1e9:+.2f} s")
    parts.append(_seconds((span.end_time or 0) - (span.start_time or 0)))
    if operation == "invoke_agent" and parent is None:
        parts.append(_tokens(attrs))
        if "anthropic.session.cost_usd" in attrs:
            parts.append(f"${attrs['anthropic.session.cost_usd']:.2f} session cost")
        if "gen_ai.response.time_to_first_chunk" in attrs:
            parts.append(f"first output after {attrs['gen_ai.response.time_to_first_chunk']:.2f} s")
        parts.append(f"tool calls: {attrs.get('anthropic.turn.tool_calls', 0)}")
        if "anthropic.outcome.result" in attrs:
            parts.append(
                f"outcome {attrs['anthropic.outcome.result']} after {attrs.get('anthropic.outcome.iterations', 0)}"
            )
    elif operation == "chat":
        parts.append(_tokens(attrs))
    elif operation == "evaluation":
        parts.append(f"verdict {attrs.get('gen_ai.evaluation.score.label', '?')}")
        parts.append(_tokens(attrs))
    elif operation == "invoke_workflow":
        parts.append(str(attrs.get("anthropic.workflow_run.name", "")))
        parts.append(f"threads: {attrs.get('anthropic.workflow_run.threads', 0)}")
        parts.append(str(attrs.get("anthropic.workflow_run.result", "")))
    elif operation == "execute_tool":
        parts.append(str(attrs.get("gen_ai.tool.type", "")))
        for key in ("anthropic.mcp.server_name", "anthropic.tool.permission", "anthropic.tool.confirmation"):
            if key in attrs:
                parts.append(f"{key.rsplit('.', 1)[1]}={attrs[key]}")
    reason = attrs.get("anthropic.turn.stop_reason")
    if reason:
        parts.append(str(reason))
    if span.status.status_code is StatusCode.ERROR:
        parts.append(f"ERROR {attrs.get('error.type', '')}".rstrip())
    if attrs.get("anthropic.span.incomplete"):
        parts.append("(incomplete)")
    return [p for p in parts if p]


def _label(span: ReadableSpan, parent: Optional[ReadableSpan], width: int) -> Text:
    """The name, then as many fields as fit; the rest on continuation lines, each field whole."""
    operation = str((span.attributes or {}).get("gen_ai.operation.name"))
    text = Text(name_of(span), style=_STYLES.get(operation, "white"))
    used, fresh = cell_len(text.plain), False  # fresh: a continuation line with no field on it yet
    for field in fields_of(span, parent):
        style = "bold red" if field.startswith("ERROR") else "red" if field == "(incomplete)" else "dim"
        if not fresh and used + cell_len(SEPARATOR + field) > width:
            text.append("\n" + CONTINUATION)
            used, fresh = cell_len(CONTINUATION), True
        if not fresh:
            text.append(SEPARATOR, style="dim")
            used += cell_len(SEPARATOR)
        text.append(field, style=style)
        used, fresh = used + cell_len(field), False
    return text


def _clip(line: str, width: int) -> str:
    """One line of what was said, cut to the width with an ellipsis."""
    line = " ".join(line.split())
    if cell_len(line) <= width:
        return line
    while line and cell_len(line) > width - 1:
        line = line[:-1]
    return line.rstrip() + "…"


def _said(attrs: Mapping[str, Any], key: str) -> Optional[str]:
    raw = attrs.get(key)
    if not isinstance(raw, str):
        return None
    try:
        messages = json.loads(raw)
    except ValueError:
        return raw
    texts = [p.get("content", "") for m in messages for p in m.get("parts", []) if p.get("type") == "text"]
    return " ".join(t for t in texts if t) or None


def _add(
    tree: Tree,
    span: ReadableSpan,
    parent: Optional[ReadableSpan],
    children: Mapping[int, Sequence[ReadableSpan]],
    width: int,
    depth: int,
) -> None:
    room = max(20, width - GUIDE_WIDTH * depth)
    node = tree.add(_label(span, parent, room))
    inner = max(20, room - GUIDE_WIDTH)
    attrs = dict(span.attributes or {})
    if span.parent is None or attrs.get("gen_ai.operation.name") == "invoke_agent" and "anthropic.turn.index" in attrs:
        for key, who in (("gen_ai.input.messages", "you"), ("gen_ai.output.messages", "agent")):
            said = _said(attrs, key)
            if said:
                node.add(Text(_clip(f"{who}: {said}", inner), style="green" if who == "agent" else "blue"))
    for event in span.events:
        if event.name in (SESSION_ERROR, EVENT_STREAM_ERROR):
            details = dict(event.attributes or {})
            line = f"! {event.name} {details.get('type', details.get('exception.type', ''))} "
            node.add(Text(_clip(f"{line}{details.get('retry_status', '')}", inner), style="red"))
    for child in children.get(span.context.span_id, ()):
        _add(node, child, span, children, width, depth + 1)


def render(spans: Iterable[ReadableSpan], console: Console, title: str = "Traces") -> int:
    """Print every trace rooted at an `invoke_agent` turn; returns the number of turns shown."""
    spans = sorted(spans, key=lambda s: s.start_time or 0)
    ids = {s.context.span_id for s in spans}
    children: dict[int, list[ReadableSpan]] = {}
    roots = []
    for span in spans:
        if span.parent is not None and span.parent.span_id in ids:
            children.setdefault(span.parent.span_id, []).append(span)
        elif (span.attributes or {}).get("gen_ai.operation.name") == "invoke_agent":
            roots.append(span)
    width = fit_width(console)
    tree = Tree(Text(title, style="bold"))
    for root in roots:
        _add(tree, root, None, children, width, 1)
    console.print(tree)
    return len(roots)
