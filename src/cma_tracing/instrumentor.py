"""`ClaudeManagedAgentsInstrumentor`: patches on `_instrument`, unpatches on `_uninstrument`, nothing else."""

from __future__ import annotations

import atexit
from typing import Any, Collection, Mapping, Optional

from opentelemetry import metrics, trace
from opentelemetry.metrics import NoOpMeter
from opentelemetry._logs import get_logger
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from .config import Options, options_from
from .instrumentation.metrics import Metrics
from .instrumentation.registry import SessionRegistry
from .instrumentation.safety import logger
from .instrumentation.telemetry import Telemetry
from .patchers import SessionEventsPatcher, SessionsPatcher, SessionThreadEventsPatcher
from .version import __version__

_INSTRUMENTS = ("anthropic >= 2.0, < 3",)
_SCHEMA_URL = "https://opentelemetry.io/schemas/1.37.0"


class ClaudeManagedAgentsInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Traces each Claude Managed Agents turn as an `invoke_agent` span. A singleton, as every instrumentor."""

    _registry: Optional[SessionRegistry] = None
    _patchers: tuple[Any, ...] = ()
    options: Options = Options()

    def instrumentation_dependencies(self) -> Collection[str]:
        return _INSTRUMENTS

    def _instrument(self, **kwargs: Any) -> None:
        self.options = options_from(kwargs)
        self._registry = SessionRegistry(telemetry_from(self.options, kwargs), self.options.orphan_timeout_s)
        self._patchers = (
            SessionEventsPatcher(self._registry),
            SessionsPatcher(self._registry),
            SessionThreadEventsPatcher(self._registry),
        )
        for patcher in self._patchers:
            patcher.patch()
        # Registered after the tracer provider's own exit hook in the usual order, so it runs first (atexit is LIFO):
        # open turns end as `shutdown` while the provider can still export them.
        atexit.register(self._end_open_turns)

    def _uninstrument(self, **kwargs: Any) -> None:
        atexit.unregister(self._end_open_turns)
        self._end_open_turns()
        for patcher in self._patchers:
            patcher.unpatch()
        self._patchers = ()
        self._registry = None

    def _end_open_turns(self) -> None:
        if self._registry is not None:
            self._registry.shutdown()

    @property
    def registry(self) -> Optional[SessionRegistry]:
        """The live session registry (for tests and diagnostics)."""
        return self._registry


def telemetry_from(options: Options, kwargs: Mapping[str, Any]) -> Telemetry:
    """The tracer, meter, content policy and log emitter, from the providers given (or the global ones).

    Never raises: a provider that fails to give its tracer, meter or logger turns that signal off, and the others
    work (a warning says which).
    """
    tracer = _signal("tracer", trace.get_tracer, kwargs.get("tracer_provider"))
    meter = _signal("meter", metrics.get_meter, kwargs.get("meter_provider"))
    policy = options.content
    on_span, as_logs = options.evaluation_events
    needs_logger = policy.on_events or as_logs
    log_emitter = _signal("logger", get_logger, kwargs.get("logger_provider")) if needs_logger else None
    # A no-op meter records nothing: skip the calls (and, with a non-recording turn, the child bookkeeping).
    recorder = None
    if meter is not None and not isinstance(meter, NoOpMeter):
        try:
            recorder = Metrics(meter)
        except Exception:
            logger.warning("the meter failed to make the histograms; metrics are off", exc_info=True)
    return Telemetry(
        tracer if tracer is not None else trace.NoOpTracer(),
        options.child_spans,
        policy,
        recorder,
        log_emitter,
        options.fetch_subthreads and options.child_spans,
        on_span,
        as_logs and log_emitter is not None,
    )


def _signal(name: str, get: Any, provider: Any) -> Any:
    """`get(...)` for cma_tracing's scope from `provider` (None: the global one), or None if it raises."""
    try:
        return get("cma_tracing", __version__, provider, schema_url=_SCHEMA_URL)
    except Exception:
        logger.warning("the %s provider failed to give a %s; that signal is off", name, name, exc_info=True)
        return None
