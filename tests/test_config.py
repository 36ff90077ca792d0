"""SPEC §2 and issue 4: every option has an argument and, where it makes sense, an environment variable;
invalid values warn and fall back to the default, never raise."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from cma_tracing.config import DEFAULT_ORPHAN_TIMEOUT_S, options_from


@pytest.mark.parametrize(
    ("kwargs", "env", "expected"),
    [
        ({}, {}, (True, DEFAULT_ORPHAN_TIMEOUT_S, False)),
        ({"child_spans": False, "orphan_timeout_s": 5, "fetch_subthreads": True}, {}, (False, 5.0, True)),
        ({}, {"CMA_TRACING_CHILD_SPANS": "false", "CMA_TRACING_ORPHAN_TIMEOUT_S": "12.5"}, (False, 12.5, False)),
        ({"child_spans": True}, {"CMA_TRACING_CHILD_SPANS": "false"}, (True, DEFAULT_ORPHAN_TIMEOUT_S, False)),
    ],
)
def test_arguments_win_then_the_environment_then_defaults(
    monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, Any], env: dict[str, str], expected: tuple[Any, ...]
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    options = options_from(kwargs)
    assert (options.child_spans, options.orphan_timeout_s, options.fetch_subthreads) == expected


@pytest.mark.parametrize(
    ("kwargs", "env", "needle"),
    [
        ({"child_spans": "yes please"}, {}, "child_spans"),
        ({"orphan_timeout_s": -3}, {}, "orphan_timeout_s"),
        ({"orphan_timeout_s": "soon"}, {}, "orphan_timeout_s"),
        ({}, {"CMA_TRACING_ORPHAN_TIMEOUT_S": "nan"}, "CMA_TRACING_ORPHAN_TIMEOUT_S"),
        ({}, {"CMA_TRACING_CHILD_SPANS": "sometimes"}, "CMA_TRACING_CHILD_SPANS"),
        ({"redact": "not a function"}, {}, "redact"),
    ],
)
def test_invalid_values_warn_and_fall_back(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    kwargs: dict[str, Any],
    env: dict[str, str],
    needle: str,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with caplog.at_level(logging.WARNING, logger="cma_tracing"):
        options = options_from(kwargs)
    assert options.child_spans is True and options.orphan_timeout_s == DEFAULT_ORPHAN_TIMEOUT_S
    assert options.content.redact is None
    assert any(needle in r.getMessage() for r in caplog.records)


def test_instrument_with_invalid_options_still_instruments(instrument: Any) -> None:
    instrumentor = instrument(child_spans="maybe", orphan_timeout_s=0, capture_content="loud", max_content_bytes="big")
    assert instrumentor.is_instrumented_by_opentelemetry
    assert instrumentor.options.child_spans is True
