"""An in-process OTLP/HTTP receiver on 127.0.0.1, for end-to-end tests of the standard OTLP exporters.

It accepts `POST /v1/traces`, `/v1/metrics` and `/v1/logs` (protobuf, optionally gzip or deflate encoded), keeps every
request as it arrived, decodes it with the `opentelemetry-proto` messages and answers the matching empty
`Export*ServiceResponse`. `fail_with(status)` makes it answer an error instead, to see what a broken collector does to
an app (nothing, it should be).
"""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Optional

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from cma_tracing.demo.loopback import serve_in_thread, stop_serving

__all__ = ["OTLPReceiver", "ReceivedMetric", "ReceivedRequest", "ReceivedSpan", "running_receiver"]

_SIGNALS: dict[str, tuple[type[Message], type[Message]]] = {
    "/v1/traces": (ExportTraceServiceRequest, ExportTraceServiceResponse),
    "/v1/metrics": (ExportMetricsServiceRequest, ExportMetricsServiceResponse),
    "/v1/logs": (ExportLogsServiceRequest, ExportLogsServiceResponse),
}


@dataclass(frozen=True)
class ReceivedRequest:
    """One POST as it arrived: `body` is the raw (still encoded) bytes; `message` the decoded request, or None."""

    path: str
    headers: dict[str, str]
    body: bytes
    message: Optional[Message]
    error: Optional[str]
    answered: int


@dataclass(frozen=True)
class ReceivedSpan:
    """A span as decoded from the wire. Ids are lowercase hex; `parent_span_id` is None for a root.

    `kind` and `status_code` are the proto enum names without their prefix (`"CLIENT"`, `"INTERNAL"`; `"OK"`,
    `"ERROR"`, `"UNSET"`); attribute values are python values (`str`, `int`, `float`, `bool`, `bytes`, `list`, `dict`).
    """

    name: str
    trace_id: str
    span_id: str
    parent_span_id: Optional[str]
    kind: str
    attributes: dict[str, Any]
    status_code: str
    status_message: str
    start_ns: int
    end_ns: int
    events: list[tuple[str, dict[str, Any]]]
    resource: dict[str, Any]
    scope_name: str
    scope_version: str
    dropped_attributes: int = 0


@dataclass(frozen=True)
class ReceivedMetric:
    """A metric's name, unit and data kind (`"histogram"`, `"sum"`, ...) with the attributes of each data point."""

    name: str
    unit: str
    data: str
    points: list[dict[str, Any]]
    resource: dict[str, Any]
    scope_name: str


def any_value(value: AnyValue) -> Any:
    """An OTLP `AnyValue` as the python value it carries."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, which)


def attributes(pairs: Any) -> dict[str, Any]:
    """A repeated `KeyValue` as a dict."""
    out: dict[str, Any] = {}
    pair: KeyValue
    for pair in pairs:
        out[pair.key] = any_value(pair.value)
    return out


def _hex(raw: bytes) -> Optional[str]:
    return raw.hex() if raw else None


def _enum_suffix(name: str, prefix: str) -> str:
    return name[len(prefix) :] if name.startswith(prefix) else name


def spans_of(request: ExportTraceServiceRequest) -> list[ReceivedSpan]:
    out: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                out.append(
                    ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=_hex(span.parent_span_id),
                        kind=_enum_suffix(Span.SpanKind.Name(span.kind), "SPAN_KIND_"),
                        attributes=attributes(span.attributes),
                        status_code=_enum_suffix(Status.StatusCode.Name(span.status.code), "STATUS_CODE_"),
                        status_message=span.status.message,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        events=[(e.name, attributes(e.attributes)) for e in span.events],
                        resource=resource,
                        scope_name=scope_spans.scope.name,
                        scope_version=scope_spans.scope.version,
                        dropped_attributes=span.dropped_attributes_count,
                    )
                )
    return out


def metrics_of(request: ExportMetricsServiceRequest) -> list[ReceivedMetric]:
    out: list[ReceivedMetric] = []
    for resource_metrics in request.resource_metrics:
        resource = attributes(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                data = metric.WhichOneof("data") or ""
                points = getattr(metric, data).data_points if data else []
                out.append(
                    ReceivedMetric(
                        name=metric.name,
                        unit=metric.unit,
                        data=data,
                        points=[attributes(p.attributes) for p in points],
                        resource=resource,
                        scope_name=scope_metrics.scope.name,
                    )
                )
    return out


class OTLPReceiver:
    """The receiver: `start()`, point exporters at `url`, read `spans()` / `metrics()` / `requests`.

    `fail_with(status, retry_after=...)` answers every later request with `status` (and a `Retry-After` header when
    given), still recording and decoding what arrived; `fail_with(None)` goes back to answering 200.
    """

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[ReceivedRequest] = []
        self._cond = threading.Condition()
        self._status: Optional[int] = None
        self._retry_after: Optional[str] = None
        self._httpd: Optional[_HTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    def start(self) -> OTLPReceiver:
        if self._httpd is not None:
            raise RuntimeError("receiver already started")
        httpd = _HTTPServer(("127.0.0.1", 0), _Handler, self)
        self._httpd = httpd
        self.url = f"http://127.0.0.1:{httpd.server_address[1]}"
        self._thread = serve_in_thread(httpd, "otlp-receiver")
        return self

    def stop(self) -> None:
        httpd = self._httpd
        if httpd is None:
            return
        stop_serving(httpd, self._thread)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> OTLPReceiver:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def fail_with(self, status: Optional[int], retry_after: Optional[float] = None) -> None:
        """Answer later requests with `status` (None: 200 again); `retry_after` seconds go in a `Retry-After` header."""
        with self._cond:
            self._status = status
            self._retry_after = None if retry_after is None else f"{retry_after:g}"

    def received(self, path: Optional[str] = None, accepted_only: bool = False) -> list[ReceivedRequest]:
        with self._cond:
            return [
                r
                for r in self.requests
                if (path is None or r.path == path) and (not accepted_only or 200 <= r.answered < 300)
            ]

    def spans(self, accepted_only: bool = True) -> list[ReceivedSpan]:
        """Decoded spans, in arrival order; by default only those of requests answered 2xx (what a collector kept)."""
        out: list[ReceivedSpan] = []
        for request in self.received("/v1/traces", accepted_only):
            if isinstance(request.message, ExportTraceServiceRequest):
                out.extend(spans_of(request.message))
        return out

    def metrics(self, accepted_only: bool = True) -> list[ReceivedMetric]:
        out: list[ReceivedMetric] = []
        for request in self.received("/v1/metrics", accepted_only):
            if isinstance(request.message, ExportMetricsServiceRequest):
                out.extend(metrics_of(request.message))
        return out

    def wait_for(self, path: str, count: int = 1, timeout: float = 5.0) -> bool:
        """True once `count` requests to `path` have arrived (whatever they were answered)."""
        with self._cond:
            return self._cond.wait_for(lambda: sum(r.path == path for r in self.requests) >= count, timeout=timeout)

    def _answer(self) -> tuple[Optional[int], Optional[str]]:
        with self._cond:
            return self._status, self._retry_after

    def _record(self, request: ReceivedRequest) -> None:
        with self._cond:
            self.requests.append(request)
            self._cond.notify_all()


@contextmanager
def running_receiver() -> Iterator[OTLPReceiver]:
    receiver = OTLPReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


def _decode(path: str, headers: dict[str, str], body: bytes) -> tuple[Optional[Message], Optional[str]]:
    if path not in _SIGNALS:
        return None, f"unknown path {path}"
    encoding = headers.get("content-encoding", "").strip().lower()
    try:
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding not in ("", "identity"):
            return None, f"unsupported content-encoding {encoding!r}"
        message = _SIGNALS[path][0]()
        message.ParseFromString(body)
    except Exception as exc:  # a bad body is what the test should see, not a dead handler thread
        return None, f"{type(exc).__name__}: {exc}"
    return message, None


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], receiver: OTLPReceiver) -> None:
        self.receiver = receiver
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connections the exporter drops (timeouts, shutdown) are expected; keep them out of test output."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # the exporter's requests.Session keeps connections alive
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean."""

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        path = self.path.split("?", 1)[0].rstrip("/")
        message, error = _decode(path, headers, body)
        status, retry_after = self.server.receiver._answer()
        if status is None:
            status = 200 if error is None else (404 if path not in _SIGNALS else 400)
        self.server.receiver._record(ReceivedRequest(path, headers, body, message, error, status))
        if 200 <= status < 300 and path in _SIGNALS:
            payload = _SIGNALS[path][1]().SerializeToString()
            content_type = "application/x-protobuf"
        else:
            payload = (error or f"scripted failure {status}").encode()
            content_type = "text/plain"
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(payload)))
        if retry_after is not None and not 200 <= status < 300:
            self.send_header("retry-after", retry_after)
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def do_GET(self) -> None:
        self.send_response(405)
        self.send_header("content-length", "0")
        self.end_headers()
