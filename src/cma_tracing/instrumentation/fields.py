"""Reading event fields the same way from SDK models and plain dicts, with defaults, never raising.

The beta drifts: a field may be missing, renamed or of another type, and an unknown event type parses into some
other model class. Every read goes through `get`, and every number through `as_int`.
"""

from __future__ import annotations

from typing import Any


def get(obj: Any, name: str, default: Any = None) -> Any:
    """`obj.name` for models, `obj[name]` for dicts; `default` when absent or unreadable."""
    if obj.__class__ is dict:
        return obj.get(name, default)
    try:
        return getattr(obj, name, default)
    except Exception:
        return default


def get_str(obj: Any, name: str) -> str | None:
    value = get(obj, name)
    return value if isinstance(value, str) else None


def as_int(value: Any) -> int:
    """A token count: ints as they are, anything else (None, str, bool, float NaN) as 0."""
    if value.__class__ is int:
        return value  # type: ignore[no-any-return]
    if isinstance(value, float) and value == value and abs(value) < 1e18:
        return int(value)
    return 0


def as_dict(obj: Any) -> dict[str, Any] | None:
    """A plain dict view of a model or dict (for rarely read, nested payloads such as `session.usage`)."""
    if obj.__class__ is dict:
        return obj  # type: ignore[no-any-return]
    to_dict = getattr(obj, "model_dump", None)
    if to_dict is None:
        return None
    try:
        dumped = to_dict()
    except Exception:
        return None
    return dumped if isinstance(dumped, dict) else None
