"""Proxies for the SDK's event streams: the app keeps its `Stream` / `AsyncStream`, and each event reaches a tracker.

A proxy is still an `anthropic.Stream` (`isinstance` sees through it), yields the very same event objects, and
lets every SDK exception through unchanged. It reports how the stream stopped exactly once: the server ended it,
the connection failed, an SSE `error` frame arrived, or the consumer stopped reading (break then `close()`, `with`
exit, garbage collection, an interrupt or a cancelled task).
"""

from __future__ import annotations

import time
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator, Optional

import wrapt
from anthropic import APIStatusError, AsyncStream, Stream

from ..instrumentation.safety import log_swallowed
from ..instrumentation.protocol import StreamEnd
from .errors import error_type

_time_ns = time.time_ns

#: Receives each event with the time the client saw it.
OnEvent = Callable[[Any, int], None]
#: Told once how the stream stopped: (StreamEnd, time, error, error.type).
OnFinish = Callable[[str, int, "BaseException | None", str], None]
#: Called with each event and its time before the tracker sees it (`fetch_subthreads`): it may fetch what the
#: event's turn still needs. Never raises.
Fetch = Callable[[Any, int], None]
AsyncFetch = Callable[[Any, int], Awaitable[None]]


_SDK_ITER = Stream.__iter__
_SDK_AITER = AsyncStream.__aiter__


def _source(stream: Any) -> Any:
    """What a proxy's loop reads: the SDK stream's own event generator when the stream's `__iter__` would only pass
    each event on (the SDK's, with no observer of its own tracing on this stream), else the stream itself. The app's
    loop then resumes one generator per event, ours, where it resumed the SDK's: the proxy costs a call, not a layer."""
    try:
        if type(stream).__iter__ is _SDK_ITER and getattr(stream, "_observer", None) is None:
            return stream._iterator
    except Exception:
        pass  # not the SDK's stream as this release makes it: read it as any iterable
    return stream


def _async_source(stream: Any) -> Any:
    """`_source` for an `AsyncStream`."""
    try:
        if type(stream).__aiter__ is _SDK_AITER and getattr(stream, "_observer", None) is None:
            return stream._iterator
    except Exception:
        pass
    return stream


class _StreamWatch:
    """The part both proxies share: whether the stream's end was reported, and to whom."""

    __slots__ = ("on_finish", "done")

    def __init__(self, on_finish: OnFinish) -> None:
        self.on_finish = on_finish
        self.done = False

    def finish(self, how: str, error: BaseException | None = None) -> None:
        if self.done:
            return
        self.done = True
        try:
            if error is not None and isinstance(error, APIStatusError):
                how = StreamEnd.FATAL
            self.on_finish(how, _time_ns(), error, error_type(error) if error is not None else "")
        except Exception:
            log_swallowed("stream finish")

    def __enter__(self) -> _StreamWatch:
        return self

    def __exit__(self, kind: Any, error: Any, tb: Any) -> None:
        """Around a proxy's event loop: how the loop ended says how the stream did. The exception, if any, goes on."""
        self.stopped(error if kind is not None else None)

    def stopped(self, error: Optional[BaseException]) -> None:
        """The one place that says how reading a stream stopped, for the generators and `__next__` / `__anext__`
        alike: `error` is what ended the read (None: the body ended)."""
        if error is None or isinstance(error, (StopIteration, StopAsyncIteration)):
            self.finish(StreamEnd.ENDED)
        elif isinstance(error, GeneratorExit):
            # The loop that held the generator went away (a `break`): the stream itself may still be read on, so
            # only `close()`, `with` exit or the proxy's collection say the consumer stopped.
            pass
        elif isinstance(error, Exception):
            self.finish(StreamEnd.TRANSPORT, error)  # an SSE `error` frame is told apart by `finish`
        else:
            self.finish(StreamEnd.CLOSED)  # KeyboardInterrupt, task cancellation


class TracedStream(wrapt.ObjectProxy[Any]):
    """An `anthropic.Stream` of session or thread events, observed."""

    def __init__(self, stream: Any, on_event: OnEvent, on_finish: OnFinish, fetch: Optional[Fetch] = None) -> None:
        super().__init__(stream)
        self._self_watch = _StreamWatch(on_finish)
        self._self_on_event = on_event
        self._self_fetch = fetch

    def __iter__(self) -> Iterator[Any]:
        """`for event in stream`: a generator, as the SDK's own `Stream.__iter__` is. Resuming a generator costs
        less than a `__next__` call per event, and this is the path nearly every app takes."""
        return self._self_events()

    def _self_events(self) -> Iterator[Any]:
        on_event = self._self_on_event
        watch = self._self_watch
        fetch = self._self_fetch
        with watch:
            for event in _source(self.__wrapped__):
                now = _time_ns()
                if fetch is not None:
                    fetch(event, now)
                on_event(event, now)
                yield event

    def __next__(self) -> Any:
        try:
            event = self.__wrapped__.__next__()
        except BaseException as error:
            self._self_watch.stopped(error)
            raise
        now = _time_ns()
        if self._self_fetch is not None:
            self._self_fetch(event, now)
        self._self_on_event(event, now)
        return event

    def __enter__(self) -> TracedStream:
        self.__wrapped__.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        self._self_watch.finish(StreamEnd.CLOSED)
        return self.__wrapped__.__exit__(*exc_info)

    def close(self) -> None:
        self._self_watch.finish(StreamEnd.CLOSED)
        self.__wrapped__.close()

    def __del__(self) -> None:
        watch = getattr(self, "_self_watch", None)
        if watch is not None:
            watch.finish(StreamEnd.CLOSED)


class TracedAsyncStream(wrapt.ObjectProxy[Any]):
    """An `anthropic.AsyncStream` of session or thread events, observed."""

    def __init__(self, stream: Any, on_event: OnEvent, on_finish: OnFinish, fetch: Optional[AsyncFetch] = None) -> None:
        super().__init__(stream)
        self._self_watch = _StreamWatch(on_finish)
        self._self_on_event = on_event
        self._self_fetch = fetch

    def __aiter__(self) -> AsyncIterator[Any]:
        """`async for event in stream`: an async generator, as the SDK's own `AsyncStream.__aiter__` is."""
        return self._self_events()

    async def _self_events(self) -> AsyncIterator[Any]:
        on_event = self._self_on_event
        watch = self._self_watch
        fetch = self._self_fetch
        with watch:
            async for event in _async_source(self.__wrapped__):
                now = _time_ns()
                if fetch is not None:
                    await fetch(event, now)
                on_event(event, now)
                yield event

    async def __anext__(self) -> Any:
        try:
            event = await self.__wrapped__.__anext__()
        except BaseException as error:
            self._self_watch.stopped(error)
            raise
        now = _time_ns()
        if self._self_fetch is not None:
            await self._self_fetch(event, now)
        self._self_on_event(event, now)
        return event

    async def __aenter__(self) -> TracedAsyncStream:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        self._self_watch.finish(StreamEnd.CLOSED)
        return await self.__wrapped__.__aexit__(*exc_info)

    async def close(self) -> None:
        self._self_watch.finish(StreamEnd.CLOSED)
        await self.__wrapped__.close()

    def __del__(self) -> None:
        watch = getattr(self, "_self_watch", None)
        if watch is not None:
            watch.finish(StreamEnd.CLOSED)
