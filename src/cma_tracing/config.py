"""The options of `instrument()`, read once: an argument wins, then the environment, then the default.

Invalid values log a warning and mean the default; configuration never raises.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Final, Mapping, Optional

logger = logging.getLogger("cma_tracing")

DEFAULT_ORPHAN_TIMEOUT_S: Final = 300.0
ENV_CHILD_SPANS: Final = "CMA_TRACING_CHILD_SPANS"
ENV_ORPHAN_TIMEOUT: Final = "CMA_TRACING_ORPHAN_TIMEOUT_S"
ENV_FETCH_SUBTHREADS: Final = "CMA_TRACING_FETCH_SUBTHREADS"
_TRUE: Final = frozenset({"true", "1", "yes", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "off"})


@dataclass(frozen=True)
class Options:
    child_spans: bool = True
    orphan_timeout_s: float = DEFAULT_ORPHAN_TIMEOUT_S
    capture_content: Any = None  # resolved with the environment by `content.content_policy`
    max_content_bytes: Any = None
    redact: Optional[Callable[[Any], Any]] = None
    fetch_subthreads: bool = False


def options_from(kwargs: Mapping[str, Any]) -> Options:
    """Options from `instrument()`'s keyword arguments and the environment."""
    redact = kwargs.get("redact")
    if redact is not None and not callable(redact):
        logger.warning("cma_tracing: redact=%r is not callable; ignored", redact)
        redact = None
    return Options(
        child_spans=_bool(kwargs.get("child_spans"), ENV_CHILD_SPANS, "child_spans", True),
        orphan_timeout_s=_seconds(kwargs.get("orphan_timeout_s"), ENV_ORPHAN_TIMEOUT, "orphan_timeout_s"),
        capture_content=kwargs.get("capture_content"),
        max_content_bytes=kwargs.get("max_content_bytes"),
        redact=redact,
        fetch_subthreads=_bool(kwargs.get("fetch_subthreads"), ENV_FETCH_SUBTHREADS, "fetch_subthreads", False),
    )


def _bool(value: Any, env: str, name: str, default: bool) -> bool:
    if value is None:
        raw = os.environ.get(env)
        if raw is None or not raw.strip():
            return default
        lowered = raw.strip().lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE
        logger.warning("cma_tracing: %s=%r is not true or false; using %r", env, raw, default)
        return default
    if isinstance(value, bool):
        return value
    logger.warning("cma_tracing: %s=%r is not a bool; using %r", name, value, default)
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
    logger.warning(
        "cma_tracing: %s=%r is not a positive number of seconds; using %r", source, value, DEFAULT_ORPHAN_TIMEOUT_S
    )
    return DEFAULT_ORPHAN_TIMEOUT_S
