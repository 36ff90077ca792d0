"""The words the patchers, the session tracker and the registry speak: where an event came from, how a stream
stopped, what a send opened, and what the registry must do next."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Optional

if TYPE_CHECKING:
    from .turn import Turn


class Origin:
    """Where an event came from: the session's stream, an `events.list` page, a subagent thread's own feed (its
    stream or its list pages), or that feed fetched after the fact (`fetch_subthreads`)."""

    __slots__ = ("thread_id", "fetched")

    def __init__(self, thread_id: Optional[str] = None, fetched: bool = False) -> None:
        self.thread_id = thread_id
        self.fetched = fetched

    @staticmethod
    def thread(thread_id: str) -> Origin:
        return Origin(thread_id)

    @staticmethod
    def fetched_thread(thread_id: str) -> Origin:
        return Origin(thread_id, fetched=True)


STREAM: Final = Origin()
LIST: Final = Origin()


class Next:
    """What the registry must do for a session after a call: nothing, watch its open turn for an orphan, or drop
    its state (nothing open, nothing in progress)."""

    NOTHING: Final = 0
    WATCH: Final = 1
    DROP: Final = 2


class StreamEnd:
    """How a stream of the session stopped, as the patchers classify it."""

    ENDED: Final = "ended"  # the server ended the body
    TRANSPORT: Final = "transport"  # the connection failed: the turn may be resumed by a reconnect
    FATAL: Final = "fatal"  # an SSE `error` frame: the API says the stream failed
    CLOSED: Final = "closed"  # the consumer stopped reading before the end


class Send:
    """A send in progress: the turn it opened or joined (made current while it runs), and whether it opened it."""

    __slots__ = ("turn", "opened")

    def __init__(self, turn: Turn, opened: bool) -> None:
        self.turn = turn
        self.opened = opened
