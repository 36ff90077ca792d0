"""Reading event fields the same way from SDK models and plain dicts, with defaults, never raising.

The beta drifts: a field may be missing, renamed or of another type, and an unknown event type parses into some
other model class. Every read goes through `get` (or `fields_of`), and every number through `as_int`.
"""

from __future__ import annotations

from typing import Any


_MISSING: Any = object()


def get(obj: Any, name: str, default: Any = None) -> Any:
    """`obj.name` for models, `obj[name]` for dicts; `default` when absent or unreadable.

    Pydantic models keep their fields in `__dict__` and unknown fields in `__pydantic_extra__`; reading those
    directly skips the exception a missing attribute costs through `getattr` (microseconds, on the hot path).
    """
    if obj.__class__ is dict:
        return obj.get(name, default)
    try:
        value = obj.__dict__.get(name, _MISSING)
        if value is not _MISSING:
            return value
        extra = obj.__pydantic_extra__
        return extra.get(name, default) if extra else default
    except AttributeError:
        pass
    except Exception:
        return default
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
        return value
    if isinstance(value, float) and value == value and abs(value) < 1e18:
        return int(value)
    return 0


def fields_of(obj: Any) -> dict[Any, Any]:
    """Every field of a dict or a pydantic model (its unknown ones included) as one dict, to read several fields
    of one object with a single call. Not a copy unless the model has unknown fields; do not modify it."""
    if obj.__class__ is dict:
        return obj
    fields = getattr(obj, "__dict__", None)
    if not isinstance(fields, dict):
        return {}
    extra = getattr(obj, "__pydantic_extra__", None)
    return {**fields, **extra} if isinstance(extra, dict) and extra else fields


def as_list(value: Any) -> list[Any]:
    """`value` if it is a list, else an empty one (a missing or malformed array field)."""
    return value if isinstance(value, list) else []
