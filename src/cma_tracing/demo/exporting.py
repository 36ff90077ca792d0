"""OTLP/HTTP export for the command line: to `--otlp-endpoint`, else where the standard variables point.

The spans are exported once the command has built them, in batches, and the command waits for the result: it says
how many spans the receiver took, or why it took none, in one line. The exporter's own retry warnings stay off the
console (they would be one line per attempt); the last of them gives the reason.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence
from urllib.parse import urlsplit

from opentelemetry.sdk.trace import ReadableSpan

#: Where the standard variables point, most specific first; the generic one gets `/v1/traces` added, as the
#: exporter itself does.
_ENV = (("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""), ("OTEL_EXPORTER_OTLP_ENDPOINT", "/v1/traces"))
#: The loggers of the OTLP exporters (the HTTP client's retries and the trace exporter's errors live under it).
EXPORTER_LOGGERS = "opentelemetry.exporter.otlp"
#: Spans per request, as the SDK's `BatchSpanProcessor` sends them.
BATCH_SIZE = 512
#: The default bound on the whole export, in seconds: a receiver that is down fails in about this long.
DEFAULT_TIMEOUT = 5.0


class EndpointError(ValueError):
    """An endpoint that is not an http(s) URL with a host; the message names where it came from."""


@dataclass(frozen=True)
class ExportResult:
    """What one export did: `exported` of `spans` spans taken by the receiver at `endpoint`; `problem` says why not."""

    endpoint: str
    spans: int
    exported: int
    problem: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.problem is None and self.exported == self.spans

    def describe(self) -> str:
        """One line: `exported N spans to URL`, or what failed."""
        if self.ok:
            return f"exported {plural(self.exported, 'span')} to {self.endpoint}"
        return (
            f"OTLP export to {self.endpoint} failed ({self.problem or 'unknown reason'}): "
            f"{self.exported} of {plural(self.spans, 'span')} exported"
        )


def plural(count: int, noun: str) -> str:
    """`1 turn`, `2 turns`, `0 turns`."""
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def resolve_endpoint(endpoint: Optional[str]) -> Optional[str]:
    """The traces URL to export to (`/v1/traces` added to `endpoint` when missing), from the option or the standard
    variables; None when neither gives one. Raises `EndpointError` for anything but an http(s) URL with a host."""
    if endpoint is not None:
        source, url = "--otlp-endpoint", endpoint.strip().rstrip("/")
        if not url.endswith("/v1/traces"):
            url += "/v1/traces"
    else:
        found = next(((name, suffix) for name, suffix in _ENV if os.environ.get(name, "").strip()), None)
        if found is None:
            return None
        source, url = found[0], os.environ[found[0]].strip()
        if found[1]:
            url = url.rstrip("/") + found[1]
    shown = endpoint if endpoint is not None else os.environ[source]
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises for a port that is not a number in range
    except ValueError as error:
        raise EndpointError(f"{source} {shown!r}: not a URL ({error})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointError(
            f"{source} {shown!r}: a URL needs http:// or https:// and a host, e.g. http://localhost:4318"
        )
    return url


def check_timeout(seconds: float) -> float:
    """`seconds` if it is a usable bound on an export; raises `ValueError` otherwise."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"--otlp-timeout {seconds:g}: give a number of seconds above 0")
    return seconds


def export_spans(
    spans: Sequence[ReadableSpan], endpoint: str, timeout: float = DEFAULT_TIMEOUT, verbose: bool = False
) -> ExportResult:
    """Export `spans` over OTLP/HTTP within about `timeout` seconds, in batches, stopping at the first that fails.
    The exporter's log lines are kept off the console unless `verbose`. Never raises."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SpanExportResult

    exporter = OTLPSpanExporter(endpoint=endpoint, timeout=timeout)
    deadline = time.monotonic() + timeout
    done = threading.Event()
    exported = 0
    failure: list[str] = []

    def run() -> None:
        nonlocal exported
        try:
            for start in range(0, len(spans), BATCH_SIZE):
                if time.monotonic() >= deadline:
                    failure.append(f"no answer within {timeout:g} s")
                    return
                batch = spans[start : start + BATCH_SIZE]
                if exporter.export(batch) is not SpanExportResult.SUCCESS:
                    failure.append("")
                    return
                exported += len(batch)
        except Exception as error:  # an exporter that raises is a failed export, not a crashed command
            failure.append(f"{type(error).__name__}: {error}")
        finally:
            done.set()

    with _exporter_logs(verbose) as heard:
        threading.Thread(target=run, name="cma-tracing-otlp-export", daemon=True).start()
        # The exporter bounds each request and its retries by `timeout`; the wait bounds the whole export, and
        # shutting the exporter down ends a retry's back-off sleep.
        finished = done.wait(timeout + 1.0)
        exporter.shutdown()  # type: ignore[no-untyped-call]  # untyped in the exporter
    if not finished:
        return ExportResult(endpoint, len(spans), exported, f"no answer within {timeout:g} s")
    if failure:
        return ExportResult(endpoint, len(spans), exported, failure[0] or _reason(heard) or "the receiver refused")
    return ExportResult(endpoint, len(spans), exported)


@contextmanager
def _exporter_logs(verbose: bool) -> Iterator[list[str]]:
    """Collect the exporter's log messages, and keep them off the console unless `verbose`."""
    logger = logging.getLogger(EXPORTER_LOGGERS)
    heard: list[str] = []
    handler = _Collect(heard)
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logger.propagate = verbose
    try:
        yield heard
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


class _Collect(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.into.append(record.getMessage())
        except Exception:  # a record that cannot be formatted says nothing useful
            pass


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")
_TRANSIENT = re.compile(r"Transient error (.+?) encountered")
_CODE = re.compile(r"code: (\d+), reason: (.*)")


def _reason(messages: list[str]) -> Optional[str]:
    """Why the export failed, from the exporter's last informative log message."""
    for message in reversed(messages):
        if match := _ERRNO.search(message):
            return match.group(1).strip().rstrip(".")
        if match := _CODE.search(message):
            return f"the receiver answered {match.group(1)} {match.group(2).strip()}".rstrip()
        if match := _TRANSIENT.search(message):
            reason = match.group(1).strip()
            return "the receiver timed out" if "timed out" in reason.lower() else f"the receiver answered {reason}"
    return None
