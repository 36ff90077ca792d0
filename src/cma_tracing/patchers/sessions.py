"""`SessionsPatcher`: reads agent metadata from `sessions.create` / `retrieve` responses the app already gets, and
opens the first turn of a session created with `initial_events`.

The instrumentation never makes an API call of its own for it.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Final, Mapping

import wrapt
from opentelemetry.instrumentation.utils import is_instrumentation_enabled, unwrap

from ..instrumentation.agents import agent_attributes, agent_content
from ..instrumentation.fields import get_str
from ..instrumentation.registry import SessionRegistry
from ..instrumentation.safety import never_raises

SESSIONS_MODULE: Final = "anthropic.resources.beta.sessions.sessions"
_METHODS: Final = ("create", "retrieve")


class SessionsPatcher:
    """Patches `Sessions` / `AsyncSessions` `create` and `retrieve`."""

    def __init__(self, registry: SessionRegistry) -> None:
        self._registry = registry

    def patch(self) -> None:
        for method in _METHODS:
            wrapt.wrap_function_wrapper(SESSIONS_MODULE, f"Sessions.{method}", self._sync)
            wrapt.wrap_function_wrapper(SESSIONS_MODULE, f"AsyncSessions.{method}", self._async)

    def unpatch(self) -> None:
        from anthropic.resources.beta.sessions import sessions

        for method in _METHODS:
            unwrap(sessions.Sessions, method)
            unwrap(sessions.AsyncSessions, method)

    def _sync(self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        session = wrapped(*args, **kwargs)
        self._remember(session, kwargs)
        return session

    async def _async(self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        session = await wrapped(*args, **kwargs)
        self._remember(session, kwargs)
        return session

    @never_raises
    def _remember(self, session: Any, kwargs: Mapping[str, Any]) -> None:
        session_id = get_str(session, "id")
        if not session_id:
            return
        content = agent_content(session) if self._registry.telemetry.content.enabled else None
        self._registry.remember_agent(session_id, agent_attributes(session), content)
        initial = kwargs.get("initial_events")
        if initial and is_instrumentation_enabled():
            tracker = self._registry.acquire(session_id)
            try:
                tracker.begin_initial(initial, time.time_ns())
            finally:
                self._registry.release(tracker)
