"""Message content, off by default: what was asked, what the agent said, tool arguments and results (SPEC §4).

Content is kept as GenAI semantic-convention parts (`text`, `tool_call`, `tool_call_response`) while a turn runs,
within a byte budget, so a turn streaming megabytes of agent text holds at most `max_content_bytes` of it. Each
recorded value is a compact JSON string cut at `max_content_bytes` on a UTF-8 boundary, with
`anthropic.content.truncated`=true when cut. Headers, keys and tokens are never content.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Callable, Final, Optional

from . import attributes as A
from .fields import get, get_str

logger = logging.getLogger("cma_tracing")

DEFAULT_MAX_BYTES: Final = 65536


@dataclass(frozen=True)
class ContentPolicy:
    """Where content goes (spans, log records, both) and how it is bounded and scrubbed."""

    on_spans: bool
    on_events: bool
    max_bytes: int = DEFAULT_MAX_BYTES
    redact: Optional[Callable[[Any], Any]] = None

    @property
    def enabled(self) -> bool:
        return self.on_spans or self.on_events

    def scrub(self, value: Any) -> Any:
        """The value after the `redact` hook; `_DROPPED` when the hook raises or returns None."""
        if self.redact is None:
            return value
        try:
            scrubbed = self.redact(value)
        except Exception:
            logger.debug("redact raised; the value is dropped", exc_info=True)
            return _DROPPED
        return _DROPPED if scrubbed is None else scrubbed

    def encode(self, value: Any) -> tuple[str, bool]:
        """A compact JSON string of `value`, cut to `max_bytes` on a UTF-8 boundary; and whether it was cut."""
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
        return cut(text, self.max_bytes)


_DROPPED: Final = object()
#: What each kept part costs the budget beyond its text, so many empty parts are bounded too.
_PART_COST: Final = 16
OFF: Final = ContentPolicy(False, False)


def cut(text: str, max_bytes: int) -> tuple[str, bool]:
    """`text` cut to at most `max_bytes` UTF-8 bytes without splitting a character."""
    if len(text) * 4 <= max_bytes:
        return text, False
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text, False
    return data[:max_bytes].decode("utf-8", errors="ignore"), True


def text_parts(blocks: Any) -> list[dict[str, Any]]:
    """Semconv parts from content blocks: text as text, anything else (image, document) by its type only."""
    parts: list[dict[str, Any]] = []
    if not isinstance(blocks, list):
        return parts
    for block in blocks:
        kind = get_str(block, "type") or "unknown"
        if kind == "text":
            parts.append({"type": "text", "content": get_str(block, "text") or ""})
        else:
            parts.append({"type": kind})
    return parts


def plain(value: Any) -> Any:
    """A JSON-ready copy of an event field (models become dicts)."""
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        try:
            return dump(mode="json", exclude_none=True, warnings=False)
        except Exception:
            return str(value)
    # New containers all the way down: the app's own objects are never handed to `redact`.
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


class TurnContent:
    """The turn's input messages and output parts, kept within the byte budget as they arrive, and the few other
    content attributes of a turn (an outcome's rubric, the agent's system prompt and tool definitions)."""

    __slots__ = ("policy", "input", "output", "extra", "_budget", "truncated")

    def __init__(self, policy: ContentPolicy) -> None:
        self.policy = policy
        self.input: list[dict[str, Any]] = []  # semconv messages: {"role", "parts"}
        self.output: list[dict[str, Any]] = []
        self.extra: dict[str, str] = {}  # attribute -> recorded value
        self._budget = policy.max_bytes  # a rough bound on what is held (characters of text and arguments)
        self.truncated = False

    def add_agent(self, agent: Any) -> None:
        """The agent's system prompt and tool definitions, scrubbed and cut like every value."""
        for key, value in agent.items():
            encoded = tool_value(self.policy, value)
            if encoded is not None:
                self.extra[key] = encoded[0]
                self.truncated = self.truncated or encoded[1]

    def add_input(self, event: Any, role: str = "user") -> None:
        self.add_input_parts(text_parts(get(event, "content")), role)

    def add_input_parts(self, parts: list[dict[str, Any]], role: str = "user") -> None:
        if not parts:
            return
        if not self.input or self.input[-1]["role"] != role:
            self.input.append({"role": role, "parts": []})
        for part in parts:
            self._keep(self.input[-1]["parts"], part)

    def add_output_text(self, event: Any) -> None:
        for part in text_parts(get(event, "content")):
            self._keep(self.output, part)

    def add_tool_call(self, event: Any) -> None:
        self._keep(self.output, tool_call_part(event))

    def _keep(self, into: list[dict[str, Any]], part: dict[str, Any]) -> None:
        if self._budget <= 0:
            self.truncated = True
            return
        key = "content" if "content" in part else "arguments"
        if key in part:
            value = self.policy.scrub(part[key])
            if value is _DROPPED:
                return
            if isinstance(value, str) and len(value) > self._budget:
                value = value[: self._budget]
                self.truncated = True
            part[key] = value
            self._budget -= len(value) if isinstance(value, str) else len(str(value))
        self._budget -= _PART_COST
        into.append(part)

    def messages(self, finish_reason: Optional[str]) -> dict[str, Any]:
        """`gen_ai.input.messages` / `gen_ai.output.messages` as compact JSON, the other content attributes, and the
        truncation mark."""
        attrs: dict[str, Any] = dict(self.extra)
        truncated = self.truncated
        inputs = [message for message in self.input if message["parts"]]
        if inputs:
            attrs[A.GEN_AI_INPUT_MESSAGES], cut_in = self.policy.encode(inputs)
            truncated = truncated or cut_in
        if self.output:
            attrs[A.GEN_AI_OUTPUT_MESSAGES], cut_out = output_messages(self.policy, self.output, finish_reason)
            truncated = truncated or cut_out
        if truncated:
            attrs[A.CONTENT_TRUNCATED] = True
        return attrs


def scrubbed_part(policy: ContentPolicy, part: dict[str, Any]) -> Optional[dict[str, Any]]:
    """A part after the `redact` hook, its text cut to `max_bytes` characters; None when the hook drops it."""
    key = "content" if "content" in part else "arguments"
    if key not in part:
        return part
    value = policy.scrub(part[key])
    if value is _DROPPED:
        return None
    if isinstance(value, str) and len(value) > policy.max_bytes:
        value = value[: policy.max_bytes]
    return {**part, key: value}


def tool_call_part(event: Any) -> dict[str, Any]:
    return {
        "type": "tool_call",
        "id": get_str(event, "id"),
        "name": get_str(event, "name"),
        "arguments": plain(get(event, "input")),
    }


def output_messages(
    policy: ContentPolicy, parts: list[dict[str, Any]], finish_reason: Optional[str]
) -> tuple[str, bool]:
    """One assistant message of `parts`, encoded and cut."""
    message: dict[str, Any] = {"role": "assistant", "parts": parts}
    if finish_reason:
        message["finish_reason"] = finish_reason
    return policy.encode([message])


def tool_value(policy: ContentPolicy, value: Any) -> Optional[tuple[str, bool]]:
    """A tool's arguments or result as a recorded string (scrubbed, encoded, cut), or None when dropped."""
    scrubbed = policy.scrub(plain(value))
    if scrubbed is _DROPPED:
        return None
    return policy.encode(scrubbed)
