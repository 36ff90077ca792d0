"""The options of `instrument()`, read once: an argument wins, then the environment, then the default.

Invalid values log a warning and mean the default; configuration never raises.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Final, Mapping, Optional

from .instrumentation.content import DEFAULT_MAX_BYTES, OFF, ContentPolicy

logger = logging.getLogger("cma_tracing")

DEFAULT_ORPHAN_TIMEOUT_S: Final = 300.0
ENV_CHILD_SPANS: Final = "CMA_TRACING_CHILD_SPANS"
ENV_ORPHAN_TIMEOUT: Final = "CMA_TRACING_ORPHAN_TIMEOUT_S"
ENV_FETCH_SUBTHREADS: Final = "CMA_TRACING_FETCH_SUBTHREADS"
ENV_CAPTURE: Final = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
ENV_MAX_BYTES: Final = "CMA_TRACING_MAX_CONTENT_BYTES"
ENV_EVALUATION_EVENTS: Final = "CMA_TRACING_EVALUATION_EVENTS"
#: Where each outcome verdict goes: (a span event, a log record).
_EVALUATION_EVENTS: Final = {"span": (True, False), "log": (False, True), "both": (True, True)}
_TRUE: Final = frozenset({"true", "1", "yes", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "off"})
#: Content capture modes: (on spans, in log records).
_MODES: Final = {
    "no_content": (False, False),
    "false": (False, False),
    "span_only": (True, False),
    "true": (True, False),
    "event_only": (False, True),
    "span_and_event": (True, True),
}


@dataclass(frozen=True)
class Options:
    child_spans: bool = True
    orphan_timeout_s: float = DEFAULT_ORPHAN_TIMEOUT_S
    content: ContentPolicy = field(default=OFF)
    fetch_subthreads: bool = False
    evaluation_events: tuple[bool, bool] = (True, False)  # (as span events, as log records)


def options_from(kwargs: Mapping[str, Any]) -> Options:
    """Options from `instrument()`'s keyword arguments and the environment."""
    redact = kwargs.get("redact")
    if redact is not None and not callable(redact):
        logger.warning("redact=%r is not callable; ignored", redact)
        redact = None
    return Options(
        child_spans=_bool(kwargs.get("child_spans"), ENV_CHILD_SPANS, "child_spans", True),
        orphan_timeout_s=_seconds(kwargs.get("orphan_timeout_s"), ENV_ORPHAN_TIMEOUT, "orphan_timeout_s"),
        content=content_policy(kwargs.get("capture_content"), kwargs.get("max_content_bytes"), redact),
        fetch_subthreads=_bool(kwargs.get("fetch_subthreads"), ENV_FETCH_SUBTHREADS, "fetch_subthreads", False),
        evaluation_events=_evaluation_events(kwargs.get("evaluation_events")),
    )


def _evaluation_events(value: Any) -> tuple[bool, bool]:
    source = "evaluation_events"
    if value is None:
        value = os.environ.get(ENV_EVALUATION_EVENTS)
        source = ENV_EVALUATION_EVENTS
        if value is None or not value.strip():
            return _EVALUATION_EVENTS["span"]
    if isinstance(value, str) and value.strip().lower() in _EVALUATION_EVENTS:
        return _EVALUATION_EVENTS[value.strip().lower()]
    logger.warning("%s=%r is not one of span, log, both; using span", source, value)
    return _EVALUATION_EVENTS["span"]


def content_policy(
    capture: Any = None, max_bytes: Any = None, redact: Optional[Callable[[Any], Any]] = None
) -> ContentPolicy:
    """The content policy from `instrument()`'s arguments, else the environment."""
    if capture is None:
        capture = os.environ.get(ENV_CAPTURE)
    on_spans, on_events = _mode(capture)
    if max_bytes is None:
        max_bytes = os.environ.get(ENV_MAX_BYTES)
    return ContentPolicy(on_spans, on_events, _max_bytes(max_bytes), redact)


def _mode(capture: Any) -> tuple[bool, bool]:
    if capture is None:
        return False, False
    if isinstance(capture, bool):
        return capture, False
    if isinstance(capture, str) and capture.strip().lower() in _MODES:
        return _MODES[capture.strip().lower()]
    _warn_once(
        f"content capture {capture!r} is not one of NO_CONTENT, SPAN_ONLY, EVENT_ONLY, SPAN_AND_EVENT, true, false; "
        "content stays off"
    )
    return False, False


def _max_bytes(value: Any) -> int:
    if value is None:
        return DEFAULT_MAX_BYTES
    try:
        number = int(value) if not isinstance(value, bool) else -1
    except (TypeError, ValueError):
        number = -1
    if number >= 1:
        return number
    _warn_once(f"max_content_bytes {value!r} is not a positive integer; using {DEFAULT_MAX_BYTES}")
    return DEFAULT_MAX_BYTES


def _bool(value: Any, env: str, name: str, default: bool) -> bool:
    if value is None:
        raw = os.environ.get(env)
        if raw is None or not raw.strip():
            return default
        lowered = raw.strip().lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE
        logger.warning("%s=%r is not true or false; using %r", env, raw, default)
        return default
    if isinstance(value, bool):
        return value
    logger.warning("%s=%r is not a bool; using %r", name, value, default)
    return default


def _seconds(value: Any, env: str, name: str) -> float:
    source = name
    if value is None:
        value = os.environ.get(env)
        source = env
        if value is None or not str(value).strip():
            return DEFAULT_ORPHAN_TIMEOUT_S
    try:
        seconds = float(value) if not isinstance(value, bool) else -1.0
    except (TypeError, ValueError):
        seconds = -1.0
    if seconds > 0 and seconds == seconds and seconds != float("inf"):
        return seconds
    logger.warning("%s=%r is not a positive number of seconds; using %r", source, value, DEFAULT_ORPHAN_TIMEOUT_S)
    return DEFAULT_ORPHAN_TIMEOUT_S


#: Content warnings already given, so an environment read at each `instrument()` warns once (bounded).
_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned and len(_warned) < 64:
        _warned.add(message)
        logger.warning(message)
