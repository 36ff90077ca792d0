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
            return dump(mode="json", exclude_none=True)
        except Exception:
            return str(value)
    # New containers all the way down: the app's own objects are never handed to `redact`.
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


class TurnContent:
    """The turn's input and output parts, kept within the byte budget as they arrive."""

    __slots__ = ("policy", "input", "output", "_budget", "truncated")

    def __init__(self, policy: ContentPolicy) -> None:
        self.policy = policy
        self.input: list[dict[str, Any]] = []
        self.output: list[dict[str, Any]] = []
        self._budget = policy.max_bytes  # a rough bound on what is held (characters of text and arguments)
        self.truncated = False

    def add_input(self, event: Any) -> None:
        for part in text_parts(get(event, "content")):
            self._keep(self.input, part)

    def add_output_text(self, event: Any) -> None:
        for part in text_parts(get(event, "content")):
            self._keep(self.output, part)

    def add_tool_call(self, event: Any) -> None:
        part = {
            "type": "tool_call",
            "id": get_str(event, "id"),
            "name": get_str(event, "name"),
            "arguments": plain(get(event, "input")),
        }
        self._keep(self.output, part)

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
        """`gen_ai.input.messages` / `gen_ai.output.messages` as compact JSON, and the truncation mark."""
        attrs: dict[str, Any] = {}
        truncated = self.truncated
        if self.input:
            attrs[A.GEN_AI_INPUT_MESSAGES], cut_in = self.policy.encode([{"role": "user", "parts": self.input}])
            truncated = truncated or cut_in
        if self.output:
            message: dict[str, Any] = {"role": "assistant", "parts": self.output}
            if finish_reason:
                message["finish_reason"] = finish_reason
            attrs[A.GEN_AI_OUTPUT_MESSAGES], cut_out = self.policy.encode([message])
            truncated = truncated or cut_out
        if truncated:
            attrs[A.CONTENT_TRUNCATED] = True
        return attrs


def tool_value(policy: ContentPolicy, value: Any) -> Optional[tuple[str, bool]]:
    """A tool's arguments or result as a recorded string (scrubbed, encoded, cut), or None when dropped."""
    scrubbed = policy.scrub(plain(value))
    if scrubbed is _DROPPED:
        return None
    return policy.encode(scrubbed)
