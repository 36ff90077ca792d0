"""`error.type` for an exception, as SPEC §3.2 defines it."""

from __future__ import annotations

from typing import Any


def error_type(error: BaseException) -> str:
    """The API's own `error.type` from an `APIStatusError` body when it has one, else `module.Class`."""
    body: Any = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error")
        kind = inner.get("type") if isinstance(inner, dict) else None
        if isinstance(kind, str) and kind:
            return kind
    cls = type(error)
    return f"{cls.__module__}.{cls.__qualname__}"
