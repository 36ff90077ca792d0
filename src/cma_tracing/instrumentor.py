"""`ClaudeManagedAgentsInstrumentor`: patches on `_instrument`, unpatches on `_uninstrument`, nothing else."""

from __future__ import annotations

import atexit
from typing import Any, Collection, Optional

from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from .config import Options, options_from
from .instrumentation.sessions import SessionRegistry
from .patchers import SessionEventsPatcher, SessionsPatcher, SessionThreadEventsPatcher
from .version import __version__

_INSTRUMENTS = ("anthropic >= 2.0, < 3",)


class ClaudeManagedAgentsInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Traces each Claude Managed Agents turn as an `invoke_agent` span. A singleton, as every instrumentor."""

    _registry: Optional[SessionRegistry] = None
    _patchers: tuple[Any, ...] = ()
    options: Options = Options()

    def instrumentation_dependencies(self) -> Collection[str]:
        return _INSTRUMENTS

    def _instrument(self, **kwargs: Any) -> None:
        self.options = options_from(kwargs)
        tracer = trace.get_tracer(
            "cma_tracing",
            __version__,
            tracer_provider=kwargs.get("tracer_provider"),
            schema_url="https://opentelemetry.io/schemas/1.37.0",
        )
        self._registry = SessionRegistry(
            tracer, self.options.orphan_timeout_s, child_spans=self.options.child_spans
        )
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
