"""`ClaudeManagedAgentsInstrumentor`: patches on `_instrument`, unpatches on `_uninstrument`, nothing else."""

from __future__ import annotations

import atexit
from typing import Any, Collection, Mapping, Optional

from opentelemetry import metrics, trace
from opentelemetry.metrics import NoOpMeter
from opentelemetry._logs import get_logger
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from .config import Options, options_from
from .instrumentation.content import content_policy
from .instrumentation.metrics import Metrics
from .instrumentation.sessions import SessionRegistry
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
    """The tracer, meter, content policy and log emitter, from the providers given (or the global ones)."""
    tracer = trace.get_tracer("cma_tracing", __version__, kwargs.get("tracer_provider"), schema_url=_SCHEMA_URL)
    meter = metrics.get_meter("cma_tracing", __version__, kwargs.get("meter_provider"), schema_url=_SCHEMA_URL)
    policy = content_policy(options.capture_content, options.max_content_bytes, options.redact)
    logger = (
        get_logger("cma_tracing", __version__, kwargs.get("logger_provider"), schema_url=_SCHEMA_URL)
        if policy.on_events
        else None
    )
    # A no-op meter records nothing: skip the calls (and, with a non-recording turn, the child bookkeeping).
    recorder = None if isinstance(meter, NoOpMeter) else Metrics(meter)
    return Telemetry(
        tracer, options.child_spans, policy, recorder, logger, options.fetch_subthreads and options.child_spans
    )
