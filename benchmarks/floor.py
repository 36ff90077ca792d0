"""The OpenTelemetry SDK's own share of a traced replay, measured instead of estimated.

`record_calls` runs one instrumented turn of the workload against recording stand-ins for the tracer and meter,
and notes every OpenTelemetry call cma-tracing makes (span starts with their attributes, attribute sets, statuses,
ends, histogram records) and the event during which it made it. `Floor` then replays exactly those calls against
the real SDK providers while the bare SDK streams the same events, with none of cma-tracing's code running: that
is what the OpenTelemetry SDK alone costs for the same telemetry, and the difference to a cma-tracing variant is
cma-tracing's own cost.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

from opentelemetry.context import Context
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import INVALID_SPAN_CONTEXT, NonRecordingSpan, Span, get_current_span, set_span_in_context

import cma_tracing

from .workload import LONG_LIVED, SLICE_TAG, Replay, slice_bodies

#: (what, span number, arguments): what is a span method name, "start", or "record".
Call = tuple[str, int, tuple[Any, ...]]


class _SpanRecorder(NonRecordingSpan):
    """Stands in for a span: notes each call with the number of the span it was made on."""

    def __init__(self, log: _Log, number: int) -> None:
        super().__init__(INVALID_SPAN_CONTEXT)
        self._log, self.number = log, number

    def _note(self, what: str, *args: Any, **kwargs: Any) -> None:
        self._log.note(what, self.number, args + tuple(sorted(kwargs.items())))

    def set_attributes(self, *args: Any, **kwargs: Any) -> None:
        self._note("set_attributes", *args, **kwargs)

    def set_attribute(self, *args: Any, **kwargs: Any) -> None:
        self._note("set_attribute", *args, **kwargs)

    def set_status(self, *args: Any, **kwargs: Any) -> None:
        self._note("set_status", *args, **kwargs)

    def add_event(self, *args: Any, **kwargs: Any) -> None:
        self._note("add_event", *args, **kwargs)

    def update_name(self, *args: Any, **kwargs: Any) -> None:
        self._note("update_name", *args, **kwargs)

    def end(self, *args: Any, **kwargs: Any) -> None:
        self._note("end", *args, **kwargs)

    def is_recording(self) -> bool:
        return True


class _Log:
    def __init__(self) -> None:
        self.position = 0
        self.calls: dict[int, list[Call]] = {}
        self.spans = 0

    def note(self, what: str, number: int, args: tuple[Any, ...]) -> None:
        self.calls.setdefault(self.position, []).append((what, number, args))

    def start_span(self, name: str, context: Optional[Context] = None, **kwargs: Any) -> _SpanRecorder:
        parent = get_current_span(context)
        parent_number = parent.number if isinstance(parent, _SpanRecorder) else -1
        span = _SpanRecorder(self, self.spans)
        self.spans += 1
        self.note("start", span.number, (name, parent_number, tuple(sorted(kwargs.items()))))
        return span


class _TracerProviderRecorder:
    def __init__(self, log: _Log) -> None:
        self._log = log

    def get_tracer(self, *args: Any, **kwargs: Any) -> _Log:
        return self._log


class _MeterRecorder:
    def __init__(self, log: _Log) -> None:
        self._log = log
        self.histograms: dict[str, dict[str, Any]] = {}

    def create_histogram(self, name: str, **kwargs: Any) -> Any:
        self.histograms[name] = kwargs
        log = self._log

        class _Histogram:
            def record(self, amount: Any, attributes: Any = None, context: Any = None) -> None:
                log.note("record", -1, (name, amount, dict(attributes or {})))

        return _Histogram()

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)


class _MeterProviderRecorder:
    def __init__(self, meter: _MeterRecorder) -> None:
        self._meter = meter

    def get_meter(self, *args: Any, **kwargs: Any) -> _MeterRecorder:
        return self._meter


class Floor:
    """The OpenTelemetry calls of one slice of the workload, per event position, replayable against real providers."""

    def __init__(self, calls: dict[int, list[Call]], histograms: dict[str, dict[str, Any]]) -> None:
        self.calls = calls
        self.histogram_options = histograms
        self.tracer: Any = None
        self.histograms: dict[str, Any] = {}

    def bind(self, tracer_provider: TracerProvider, meter_provider: Optional[MeterProvider]) -> Floor:
        """Make the calls on these providers' tracer and histograms from now on."""
        self.tracer = tracer_provider.get_tracer("floor")
        meter = meter_provider.get_meter("floor") if meter_provider is not None else None
        self.histograms = (
            {name: meter.create_histogram(name, **kw) for name, kw in self.histogram_options.items()} if meter else {}
        )
        return self

    def events(self, replay: Replay, session_id: str) -> Iterator[Any]:
        """The bare SDK's stream of `replay`, making at each event the calls cma-tracing made at it (and, when the
        last stream ends, those it made then)."""
        tracer, histograms, calls = self.tracer, self.histograms, self.calls
        spans: dict[int, Span] = {}
        contexts: dict[int, Context] = {}
        position = 0

        def make(at: list[Call]) -> None:
            for what, number, args in at:
                if what == "start":
                    name, parent, kwargs = args
                    spans[number] = span = tracer.start_span(
                        name, context=contexts.get(parent) or Context(), **dict(kwargs)
                    )
                    contexts[number] = set_span_in_context(span)
                elif what == "record":
                    histograms[args[0]].record(args[1], args[2])
                else:
                    method = getattr(spans[number], what)
                    plain = [a for a in args if not isinstance(a, tuple)]
                    method(*plain, **dict(a for a in args if isinstance(a, tuple)))

        for event in replay.events(session_id):
            at = calls.get(position)
            if at:
                make(at)
            position += 1
            yield event
        for later in sorted(p for p in calls if p >= position):
            make(calls[later])


def record_calls(child_spans: bool, metrics: bool, pattern: str = LONG_LIVED) -> Floor:
    """The calls cma-tracing makes for one slice of the workload read in `pattern`: every slice is a new session
    with the same events, so these are exactly the calls it makes for each slice the benchmark times."""
    log = _Log()
    meter = _MeterRecorder(log)
    cma_tracing.instrument(
        tracer_provider=_TracerProviderRecorder(log),
        meter_provider=_MeterProviderRecorder(meter) if metrics else NoOpMeterProvider(),
        child_spans=child_spans,
    )
    try:
        replay = Replay()
        replay.load(slice_bodies(SLICE_TAG, pattern))
        # A call's position is the event being handled when it was made; a stream's end, the next event's.
        log.position = 0
        for _ in replay.events("sesn_floor"):
            log.position += 1
    finally:
        cma_tracing.uninstrument()
    return Floor(log.calls, meter.histograms if metrics else {})
