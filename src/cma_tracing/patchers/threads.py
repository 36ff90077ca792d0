"""`SessionThreadEventsPatcher`: a subagent thread's own stream (`threads.events.stream`) feeds its subagent span.

Its model requests and messages live only there. Thread streams never open, end or abandon a turn: they hold the
session's state alive while open, and that is all. (`threads.events.list` pages are seen by the page hook of
`SessionEventsPatcher`.)
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Final, Mapping, Optional

import wrapt
from anthropic import AsyncStream, Stream
from opentelemetry.instrumentation.utils import is_instrumentation_enabled, unwrap

from ..instrumentation.registry import SessionRegistry
from ..instrumentation.safety import never_raises
from ..instrumentation.protocol import Origin
from .streams import OnEvent, OnFinish, TracedAsyncStream, TracedStream

THREAD_EVENTS_MODULE: Final = "anthropic.resources.beta.sessions.threads.events"


class SessionThreadEventsPatcher:
    """Patches `threads.Events.stream` / `threads.AsyncEvents.stream`."""

    def __init__(self, registry: SessionRegistry) -> None:
        self._registry = registry

    def patch(self) -> None:
        wrapt.wrap_function_wrapper(THREAD_EVENTS_MODULE, "Events.stream", self._stream)
        wrapt.wrap_function_wrapper(THREAD_EVENTS_MODULE, "AsyncEvents.stream", self._async_stream)

    def unpatch(self) -> None:
        from anthropic.resources.beta.sessions.threads import events

        unwrap(events.Events, "stream")
        unwrap(events.AsyncEvents, "stream")

    def _stream(self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        stream = wrapped(*args, **kwargs)
        if not is_instrumentation_enabled() or not isinstance(stream, Stream):
            return stream
        hooks = self._hooks(args, kwargs)
        return TracedStream(stream, *hooks) if hooks is not None else stream

    async def _async_stream(self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        stream = await wrapped(*args, **kwargs)
        if not is_instrumentation_enabled() or not isinstance(stream, AsyncStream):
            return stream
        hooks = self._hooks(args, kwargs)
        return TracedAsyncStream(stream, *hooks) if hooks is not None else stream

    @never_raises
    def _hooks(self, args: Any, kwargs: Mapping[str, Any]) -> Optional[tuple[OnEvent, OnFinish]]:
        thread_id = args[0] if args else kwargs.get("thread_id")
        session_id = kwargs.get("session_id")
        if not (isinstance(thread_id, str) and thread_id and isinstance(session_id, str) and session_id):
            return None
        registry = self._registry
        tracker = registry.acquire(session_id)

        def finished(how: str, now_ns: int, error: Optional[BaseException], error_type: str) -> None:
            registry.release(tracker)

        return functools.partial(tracker.on_event, origin=Origin.thread(thread_id)), finished
