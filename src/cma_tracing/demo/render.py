"""A terminal view of finished spans: each turn as a tree of its model requests, tools and subagents."""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping, Optional, Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode
from rich.console import Console
from rich.text import Text
from rich.tree import Tree


def _seconds(span: ReadableSpan) -> str:
    return f"{((span.end_time or 0) - (span.start_time or 0)) / 1e9:.2f} s"


def _tokens(attrs: Mapping[str, Any]) -> str:
    if "gen_ai.usage.input_tokens" not in attrs:
        return ""
    return f"{attrs['gen_ai.usage.input_tokens']:,} in / {attrs.get('gen_ai.usage.output_tokens', 0):,} out tokens"


def _label(span: ReadableSpan) -> Text:
    attrs = dict(span.attributes or {})
    operation = attrs.get("gen_ai.operation.name")
    text = Text()
    style = {
        "invoke_agent": "bold cyan",
        "chat": "magenta",
        "execute_tool": "yellow",
        "evaluation": "bold green",
        "invoke_workflow": "bold blue",
        "workflow_phase": "blue",
    }.get(str(operation), "white")
    text.append(span.name, style=style)
    parts = [_seconds(span)]
    if operation == "invoke_agent" and span.parent is None:
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
        parts.append(f"{attrs.get('anthropic.workflow_run.name', '')}")
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
    text.append("  " + " · ".join(p for p in parts if p), style="dim")
    if span.status.status_code is StatusCode.ERROR:
        text.append(f"  ERROR {attrs.get('error.type', '')}", style="bold red")
    if attrs.get("anthropic.span.incomplete"):
        text.append("  (incomplete)", style="red")
    return text


def _said(attrs: Mapping[str, Any], key: str) -> Optional[str]:
    raw = attrs.get(key)
    if not isinstance(raw, str):
        return None
    try:
        messages = json.loads(raw)
    except ValueError:
        return raw[:120]
    texts = [p.get("content", "") for m in messages for p in m.get("parts", []) if p.get("type") == "text"]
    joined = " ".join(t for t in texts if t)
    return (joined[:117] + "...") if len(joined) > 120 else joined or None


def _add(tree: Tree, span: ReadableSpan, children: Mapping[int, Sequence[ReadableSpan]]) -> None:
    node = tree.add(_label(span))
    attrs = dict(span.attributes or {})
    if span.parent is None or attrs.get("gen_ai.operation.name") == "invoke_agent" and "anthropic.turn.index" in attrs:
        for key, who in (("gen_ai.input.messages", "you"), ("gen_ai.output.messages", "agent")):
            said = _said(attrs, key)
            if said:
                node.add(Text(f"{who}: {said}", style="green" if who == "agent" else "blue"))
    for event in span.events:
        if event.name in ("session.error", "stream.error"):
            details = dict(event.attributes or {})
            node.add(
                Text(
                    f"! {event.name} {details.get('type', details.get('exception.type', ''))} "
                    f"{details.get('retry_status', '')}".rstrip(),
                    style="red",
                )
            )
    for child in children.get(span.context.span_id, ()):
        _add(node, child, children)


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
    tree = Tree(Text(title, style="bold"))
    for root in roots:
        _add(tree, root, children)
    console.print(tree)
    return len(roots)
