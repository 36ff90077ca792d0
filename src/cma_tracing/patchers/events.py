"""`SessionEventsPatcher`: wraps `events.send`, `events.stream` and `events.list` of the sync and async SDK.

The wrappers only adapt calls to the session's `SessionTracker`; every rule about turns lives there.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable, Final, Mapping, Optional

import wrapt
from anthropic import AsyncStream, Stream
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled, suppress_instrumentation, unwrap
from opentelemetry.util.types import AttributeValue

from ..instrumentation.agents import client_attributes
from ..instrumentation.event_table import SESSION_STATUS_IDLE
from ..instrumentation.fields import as_list, get
from ..instrumentation.registry import SessionRegistry
from ..instrumentation.safety import log_swallowed, never_raises
from ..instrumentation.protocol import Send, StreamEnd
from ..instrumentation.session import SessionTracker
from .errors import error_type
from .streams import AsyncFetch, Fetch, TracedAsyncStream, TracedStream

EVENTS_MODULE: Final = "anthropic.resources.beta.sessions.events"
PAGINATION_MODULE: Final = "anthropic.pagination"
DEFAULT_BETA: Final = "managed-agents-2026-04-01"
#: `fetch_subthreads`: the timeout of each list call, and the pages read per thread at most.
FETCH_TIMEOUT_S: Final = 10.0
MAX_FETCH_PAGES: Final = 20
#: The paths of `events.list` and `threads.events.list` pages (first and later ones); stream paths do not match.
_LIST_PATH: Final = re.compile(r"/v1/sessions/([^/?#]+)/(?:threads/([^/?#]+)/)?events/?(?:[?#]|$)")


class _SendCall:
    """What a wrapped send needs to finish its bookkeeping."""

    __slots__ = ("tracker", "send", "token")

    def __init__(self, tracker: SessionTracker, send: Optional[Send], token: Any) -> None:
        self.tracker = tracker
        self.send = send
        self.token = token


class SessionEventsPatcher:
    """Patches the SDK's `Events` / `AsyncEvents` classes, so clients made before or after are covered."""

    def __init__(self, registry: SessionRegistry) -> None:
        self._registry = registry
        self._fetch_subthreads = registry.telemetry.fetch_subthreads
        # The client attributes of the last call that named no betas and no headers, with the base URL they came
        # from: an app that opens a stream per turn would otherwise make the same few values at every stream.
        self._plain_client: Optional[tuple[Any, Mapping[str, AttributeValue]]] = None

    def patch(self) -> None:
        wrap = wrapt.wrap_function_wrapper
        wrap(EVENTS_MODULE, "Events.send", self._send)
        wrap(EVENTS_MODULE, "Events.stream", self._stream)
        wrap(EVENTS_MODULE, "AsyncEvents.send", self._async_send)
        wrap(EVENTS_MODULE, "AsyncEvents.stream", self._async_stream)
        wrap(PAGINATION_MODULE, "SyncPageCursor._set_private_attributes", self._page)
        wrap(PAGINATION_MODULE, "AsyncPageCursor._set_private_attributes", self._page)

    def unpatch(self) -> None:
        from anthropic import pagination
        from anthropic.resources.beta.sessions import events

        for cls in (events.Events, events.AsyncEvents):
            unwrap(cls, "send")
            unwrap(cls, "stream")
        for page_cls in (pagination.SyncPageCursor, pagination.AsyncPageCursor):
            if isinstance(page_cls.__dict__.get("_set_private_attributes"), wrapt.ObjectProxy):
                delattr(page_cls, "_set_private_attributes")

    # -- send ----------------------------------------------------------------------------------------------------

    def _send(self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        if not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        call = self._begin_send(instance, args, kwargs)
        try:
            response = wrapped(*args, **kwargs)
        except BaseException as error:
            self._end_send(call, None, error)
            raise
        self._end_send(call, response, None)
        return response

    async def _async_send(self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        if not is_instrumentation_enabled():
            return await wrapped(*args, **kwargs)
        call = self._begin_send(instance, args, kwargs)
        try:
            response = await wrapped(*args, **kwargs)
        except BaseException as error:
            self._end_send(call, None, error)
            raise
        self._end_send(call, response, None)
        return response

    @never_raises
    def _begin_send(self, instance: Any, args: Any, kwargs: Mapping[str, Any]) -> Optional[_SendCall]:
        """Open or join the turn before the HTTP request, and make it current so the SDK's span nests in it."""
        session_id = _session_id(args, kwargs)
        if session_id is None:
            return None
        tracker = self._registry.acquire(session_id)
        tracker.update_start_attributes(self._client_attributes(instance, kwargs))
        send = tracker.begin_send(kwargs.get("events"), time.time_ns())
        token = otel_context.attach(trace.set_span_in_context(send.turn.span)) if send is not None else None
        return _SendCall(tracker, send, token)

    @never_raises
    def _end_send(self, call: Optional[_SendCall], response: Any, error: Optional[BaseException]) -> None:
        if call is None:
            return
        if call.token is not None:
            otel_context.detach(call.token)
        if error is None:
            call.tracker.send_succeeded(call.send, response)
        elif isinstance(error, Exception):
            call.tracker.send_failed(call.send, error, error_type(error))
        self._registry.release(call.tracker)

    # -- stream --------------------------------------------------------------------------------------------------

    def _stream(self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        stream = wrapped(*args, **kwargs)
        if not is_instrumentation_enabled() or not isinstance(stream, Stream):
            return stream
        return self._traced(stream, instance, args, kwargs, TracedStream, _fetcher)

    async def _async_stream(self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        stream = await wrapped(*args, **kwargs)
        if not is_instrumentation_enabled() or not isinstance(stream, AsyncStream):
            return stream
        return self._traced(stream, instance, args, kwargs, TracedAsyncStream, _async_fetcher)

    def _traced(
        self,
        stream: Any,
        instance: Any,
        args: Any,
        kwargs: Mapping[str, Any],
        proxy: Callable[..., Any],
        fetcher: Callable[[Any, SessionTracker], Any],
    ) -> Any:
        """`stream` in `proxy`, fed to its session's tracker, claimed for it (the stream itself if the call names no
        session). Never raises: the guard covers the proxy's making too, so nothing of ours between the SDK's call
        and the app can, and a stream whose proxy could not be made hands its claim back."""
        tracker = None
        try:
            session_id = _session_id(args, kwargs)
            if session_id is None:
                return stream
            tracker = self._registry.acquire(session_id, stream=True)
            tracker.update_start_attributes(self._client_attributes(instance, kwargs))
            fetch = fetcher(instance, tracker) if self._fetch_subthreads else None
            return proxy(stream, tracker.on_event, self._registry.stream_finished(tracker), fetch)
        except Exception:
            log_swallowed("SessionEventsPatcher stream set-up")
            self._unclaim(tracker)
            return stream

    @never_raises
    def _unclaim(self, tracker: Optional[SessionTracker]) -> None:
        """A stream whose proxy could not be made is not watched: hand its claim back as if it had ended, so the
        session is not held open by it (an open turn is then ended by the orphan watch, as `unobserved`)."""
        if tracker is not None:
            self._registry.apply(tracker, tracker.stream_finished(StreamEnd.ENDED, time.time_ns()))

    def _client_attributes(self, resource: Any, kwargs: Mapping[str, Any]) -> Mapping[str, AttributeValue]:
        """`server.*` and `anthropic.beta` for a call of `resource`'s client (the mapping is shared: read only)."""
        base_url = getattr(getattr(resource, "_client", None), "base_url", None)
        if kwargs.get("betas") is not None or kwargs.get("extra_headers") is not None:
            return client_attributes(base_url, _betas(kwargs))
        plain = self._plain_client
        if plain is not None and plain[0] is base_url:
            return plain[1]
        attributes = client_attributes(base_url, _betas(kwargs))
        self._plain_client = (base_url, attributes)
        return attributes

    # -- list ----------------------------------------------------------------------------------------------------

    def _page(self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        result = wrapped(*args, **kwargs)
        if is_instrumentation_enabled():
            self._feed_page(instance, kwargs.get("options"))
        return result

    @never_raises
    def _feed_page(self, page: Any, options: Any) -> None:
        """Every `events.list` page, first or later, sync or async, passes here once as the SDK builds it."""
        match = _LIST_PATH.search(getattr(options, "url", "") or "")
        if match is None:
            return
        data = getattr(page, "data", None)
        if not isinstance(data, list) or not data:
            return
        tracker = self._registry.acquire(match.group(1))
        try:
            tracker.on_listed(data, time.time_ns(), match.group(2))
        finally:
            self._registry.release(tracker)


def _fetcher(resource: Any, tracker: SessionTracker) -> Optional[Fetch]:
    """`fetch_subthreads`: before a coordinator turn's ending idle reaches the tracker, list each of its subagent
    threads' own events with the same client and add them under the subagent's span."""
    threads_api = _thread_events(resource)
    if threads_api is None:
        return None

    def fetch(event: Any, now_ns: int) -> None:
        if get(event, "type") != SESSION_STATUS_IDLE:
            return
        try:
            for thread_id in tracker.threads_to_fetch(event) or ():
                with suppress_instrumentation():  # our own calls: neither traced nor fed back by the page hook
                    first = threads_api.list(thread_id, session_id=tracker.session_id, timeout=FETCH_TIMEOUT_S)
                    for number, page in enumerate(first.iter_pages()):
                        tracker.on_fetched(thread_id, as_list(getattr(page, "data", None)), now_ns)
                        if number + 1 >= MAX_FETCH_PAGES:
                            break
        except Exception:
            log_swallowed("fetch_subthreads")

    return fetch


def _async_fetcher(resource: Any, tracker: SessionTracker) -> Optional[AsyncFetch]:
    """`_fetcher` for the async client."""
    threads_api = _thread_events(resource)
    if threads_api is None:
        return None

    async def fetch(event: Any, now_ns: int) -> None:
        if get(event, "type") != SESSION_STATUS_IDLE:
            return
        try:
            for thread_id in tracker.threads_to_fetch(event) or ():
                with suppress_instrumentation():
                    first = await threads_api.list(thread_id, session_id=tracker.session_id, timeout=FETCH_TIMEOUT_S)
                    number = 0
                    async for page in first.iter_pages():
                        tracker.on_fetched(thread_id, as_list(getattr(page, "data", None)), now_ns)
                        number += 1
                        if number >= MAX_FETCH_PAGES:
                            break
        except Exception:
            log_swallowed("fetch_subthreads")

    return fetch


def _thread_events(resource: Any) -> Any:
    """`client.beta.sessions.threads.events` of the client that made `resource`, or None."""
    api = getattr(resource, "_client", None)
    for name in ("beta", "sessions", "threads", "events"):
        api = getattr(api, name, None)
    return api


def _session_id(args: Any, kwargs: Mapping[str, Any]) -> Optional[str]:
    session_id = args[0] if args else kwargs.get("session_id")
    return session_id if isinstance(session_id, str) and session_id else None


def _betas(kwargs: Mapping[str, Any]) -> list[str]:
    """The `anthropic-beta` values the SDK will send, as it builds them: `betas=`, then its own, unless overridden."""
    extra = kwargs.get("extra_headers")
    if isinstance(extra, Mapping):
        for key, value in extra.items():
            if isinstance(key, str) and key.lower() == "anthropic-beta" and isinstance(value, str):
                return [v.strip() for v in value.split(",") if v.strip()]
    betas = kwargs.get("betas")
    values = [str(b) for b in betas] if isinstance(betas, (list, tuple)) else []
    return values + [DEFAULT_BETA] if DEFAULT_BETA not in values else values
