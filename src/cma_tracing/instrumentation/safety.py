"""The one boundary between instrumentation errors and the app: log them at debug level and go on."""

from __future__ import annotations

import functools
import logging
from typing import Callable, Optional, TypeVar

from typing_extensions import ParamSpec

logger = logging.getLogger("cma_tracing")

P = ParamSpec("P")
R = TypeVar("R")


def never_raises(func: Callable[P, R]) -> Callable[P, Optional[R]]:
    """Run `func`; on any `Exception` log it and return None, so telemetry can never break the app."""

    @functools.wraps(func)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> Optional[R]:
        try:
            return func(*args, **kwargs)
        except Exception:
            log_swallowed(func.__qualname__)
            return None

    return guarded


def log_swallowed(where: str) -> None:
    """Record an instrumentation error that was swallowed. Call only from an `except` block."""
    try:
        logger.debug("cma_tracing: error in %s (ignored)", where, exc_info=True)
    except Exception:  # a broken logging handler must not escape either
        pass
