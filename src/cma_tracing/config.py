"""The options of `instrument()`, checked once: invalid values warn and fall back to the default, never raise."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

logger = logging.getLogger("cma_tracing")

DEFAULT_ORPHAN_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Options:
    child_spans: bool = True
    orphan_timeout_s: float = DEFAULT_ORPHAN_TIMEOUT_S
    capture_content: Any = None
    max_content_bytes: Optional[int] = None
    redact: Optional[Callable[[Any], Any]] = None
    fetch_subthreads: bool = False


def options_from(kwargs: Mapping[str, Any]) -> Options:
    """Options from `instrument()`'s keyword arguments."""
    return Options(
        child_spans=_bool(kwargs, "child_spans", True),
        orphan_timeout_s=_positive(kwargs, "orphan_timeout_s", DEFAULT_ORPHAN_TIMEOUT_S),
        capture_content=kwargs.get("capture_content"),
        max_content_bytes=kwargs.get("max_content_bytes"),
        redact=kwargs.get("redact") if callable(kwargs.get("redact")) else None,
        fetch_subthreads=_bool(kwargs, "fetch_subthreads", False),
    )


def _bool(kwargs: Mapping[str, Any], name: str, default: bool) -> bool:
    value = kwargs.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    logger.warning("cma_tracing: %s=%r is not a bool; using %r", name, value, default)
    return default


def _positive(kwargs: Mapping[str, Any], name: str, default: float) -> float:
    value = kwargs.get(name)
    if value is None:
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    logger.warning("cma_tracing: %s=%r is not a positive number; using %r", name, value, default)
    return default
