"""Where per-session state lives: active trackers, what is remembered of idle sessions, and the orphan watch.

State is dropped when a session goes idle (no turn, no stream, no call in progress); what survives is a turn
count, the agent's attributes and the last turn's subagents (for their threads' later events), in a bounded LRU. A
process that runs 100,000 turns holds no more than one that ran a few thousand. The few sessions that went idle last
keep their whole tracker where it was, as *warm*: an app that opens a stream per turn takes it up again at the next
stream as it would an active one, and only a session pushed out of the warm few is reduced to what survives.

Lock order: the registry's lock, then a tracker's, never the other way: a tracker never calls its registry. What a
tracker's call means for the registry comes back as a `Next`, applied here after the tracker's lock is released.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import weakref
from collections import OrderedDict
from typing import Any, Callable, Final, Generic, Mapping, Optional, TypeVar

from opentelemetry.util.types import AttributeValue

from .attributes import StopReason
from .safety import log_swallowed
from .protocol import Next
from .session import SessionTracker
from .telemetry import Telemetry
from .turn import Turn

#: Sessions whose turn count, agent attributes and last subagents are remembered after they go idle.
MAX_REMEMBERED_SESSIONS: Final = 4096
#: Sessions whose agent's system prompt and tool definitions are kept (content capture on only).
MAX_AGENT_CONTENT_SESSIONS: Final = 64
#: Sessions with something open at once; past this the least recently used is ended as `unobserved`.
MAX_ACTIVE_SESSIONS: Final = 10_000
#: Idle sessions whose tracker is kept whole, for an app that opens a stream per turn: the session goes idle
#: between two streams, and a kept tracker (its templates, its last turn's ids) costs nothing to take up again.
MAX_WARM_SESSIONS: Final = 64

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    """A dict that keeps its `capacity` most recently written keys. Not thread-safe: callers lock."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> Optional[V]:
        return self._items.get(key)

    def put(self, key: K, value: V) -> list[V]:
        """Store `value`; returns the values evicted to make room."""
        self._items[key] = value
        self._items.move_to_end(key)
        evicted: list[V] = []
        while len(self._items) > self.capacity:
            evicted.append(self._items.popitem(last=False)[1])
        return evicted

    def values(self) -> list[V]:
        return list(self._items.values())

    def __len__(self) -> int:
        return len(self._items)


class Remembered:
    """What outlives a session's tracker."""

    __slots__ = ("turn_count", "agent", "late")

    def __init__(self) -> None:
        self.turn_count = 0
        self.agent: Optional[Mapping[str, AttributeValue]] = None
        self.late: Optional[Turn] = None


class SessionRegistry:
    """Finds the tracker of a session, creating it on first use; drops it when idle; ends what is left at shutdown."""

    def __init__(self, telemetry: Telemetry, orphan_timeout_s: float, max_active: int = MAX_ACTIVE_SESSIONS) -> None:
        self._telemetry = telemetry
        self._lock = threading.Lock()
        self._active: OrderedDict[str, SessionTracker] = OrderedDict()
        self._max_active = max_active
        self._remembered: LRU[str, Remembered] = LRU(MAX_REMEMBERED_SESSIONS)
        self._warm: OrderedDict[str, SessionTracker] = OrderedDict()
        # Content is large: the agents' system prompts and tools are kept for fewer sessions.
        self._agent_content: LRU[str, Mapping[str, Any]] = LRU(MAX_AGENT_CONTENT_SESSIONS)
        self._watch = OrphanWatch(int(orphan_timeout_s * 1e9), self._check_orphan)

    @property
    def telemetry(self) -> Telemetry:
        return self._telemetry

    def acquire(self, session_id: str, stream: bool = False) -> SessionTracker:
        """The session's tracker, claimed for one send, list or stream: the caller hands it back with `release` (or,
        for a stream, `stream_finished`)."""
        evicted: list[SessionTracker] = []
        forgotten: list[Remembered] = []
        with self._lock:
            active = self._active
            tracker = active.get(session_id)
            if tracker is None:
                memory = self._remembered.get(session_id)
                if memory is None:
                    tracker = SessionTracker(session_id, self._telemetry)
                else:
                    tracker = SessionTracker(session_id, self._telemetry, memory.agent, memory.turn_count, memory.late)
                    memory.late = None  # the tracker has it now, and hands it back when dropped
                tracker.agent_content = self._agent_content.get(session_id)
                active[session_id] = tracker
                warm = self._warm
                while len(active) - len(warm) > self._max_active:
                    _, oldest = active.popitem(last=False)
                    if warm.pop(oldest.session_id, None) is not None:
                        forgotten += self._forget(oldest)
                    else:
                        self._keep(oldest.session_id).turn_count = oldest.detach()
                        evicted.append(oldest)
            else:
                active.move_to_end(session_id)
                if self._warm:
                    self._warm.pop(session_id, None)  # warm no more: taken up as it was left
            tracker.claim(stream)
        _end_late(forgotten)
        for oldest in evicted:
            oldest.end_all(StopReason.UNOBSERVED, time.time_ns())
        return tracker

    def release(self, tracker: SessionTracker) -> None:
        """A send or list page that `acquire`d the tracker is done."""
        self.apply(tracker, tracker.release())

    def stream_finished(self, tracker: SessionTracker) -> Callable[[str, int, Optional[BaseException], str], None]:
        """What a stream proxy calls, once, when its stream stops."""

        def finished(how: str, now_ns: int, error: Optional[BaseException], error_type: str) -> None:
            self.apply(tracker, tracker.stream_finished(how, now_ns, error, error_type))

        return finished

    def apply(self, tracker: SessionTracker, step: int) -> None:
        """Do what a tracker's call said the session needs. Never raises."""
        try:
            if step == Next.WATCH:
                self._watch.watch(tracker)
            elif step == Next.DROP:
                forgotten: list[Remembered] = []
                dropped = False
                with self._lock:
                    warm = self._warm
                    session_id = tracker.session_id
                    if session_id not in warm and self._active.get(session_id) is tracker and tracker.idle():
                        dropped = True
                        warm[session_id] = tracker  # it stays where it is, no longer counted as active
                        if len(warm) > MAX_WARM_SESSIONS:
                            _, oldest = warm.popitem(last=False)
                            del self._active[oldest.session_id]
                            forgotten = self._forget(oldest)
                _end_late(forgotten)
                if dropped and tracker.workflows is not None:
                    tracker.end_runs(time.time_ns())  # nothing streams the session any more: its runs end here
        except Exception:
            log_swallowed("SessionRegistry.apply")

    def remember_agent(
        self, session_id: str, attributes: Mapping[str, AttributeValue], content: Optional[Mapping[str, Any]] = None
    ) -> None:
        """Agent attributes (and, with content on, its system prompt and tools) from a `sessions.create`/`retrieve`
        response, for this session's next turns."""
        with self._lock:
            self._keep(session_id).agent = attributes
            if content is not None:
                self._agent_content.put(session_id, content)
            tracker = self._active.get(session_id)
        if tracker is not None:
            tracker.update_start_attributes(attributes)
            if content is not None:
                tracker.agent_content = content

    def _forget(self, tracker: SessionTracker) -> list[Remembered]:
        """An idle tracker is let go of (lock held): what survives of its session is remembered. Returns the sessions
        pushed out of memory to make room, whose late children the caller ends once the lock is released."""
        memory = self._remembered.get(tracker.session_id) or Remembered()
        memory.turn_count = tracker.turn_count
        memory.late = tracker.late
        if memory.agent is None:
            memory.agent = tracker.start_attributes()
        return self._remembered.put(tracker.session_id, memory)

    def _keep(self, session_id: str) -> Remembered:
        """The session's remembered state, made if need be (lock held). Sessions pushed out end their late children."""
        memory = self._remembered.get(session_id)
        if memory is None:
            memory = Remembered()
        _end_late(self._remembered.put(session_id, memory))
        return memory

    def _check_orphan(self, tracker: SessionTracker, now_ns: int) -> Optional[int]:
        again, step = tracker.check_orphan(now_ns, self._watch.timeout_ns)
        self.apply(tracker, step)
        return again

    def active_count(self) -> int:
        """Sessions with something open or in progress (warm ones are idle)."""
        return len(self._active) - len(self._warm)

    def remembered_count(self) -> int:
        return len(self._remembered)

    def warm_count(self) -> int:
        return len(self._warm)

    def orphan_watch_entries(self) -> int:
        return self._watch.pending()

    def shutdown(self) -> None:
        """End every open turn (`shutdown`) and every late child, and stop the watch. Never raises."""
        try:
            with self._lock:
                trackers = list(self._active.values())
                self._active.clear()
                self._warm.clear()
                remembered = self._remembered.values()
            now = time.time_ns()
            for tracker in trackers:
                tracker.end_all(StopReason.SHUTDOWN, now)
            _end_late(remembered)
            self._watch.stop()
        except Exception:
            log_swallowed("SessionRegistry.shutdown")


def _end_late(memories: list[Remembered]) -> None:
    """Sessions forgotten (or at shutdown): the late children still open under their last subagents end."""
    for memory in memories:
        late = memory.late
        if late is not None and late.children is not None:
            try:
                late.children.end_open(late.last_ns)
            except Exception:
                log_swallowed("late children")
            memory.late = None


class OrphanWatch:
    """One daemon thread that ends turns left with no stream for the orphan timeout.

    It earns its place: a turn must end on time even when the process is otherwise idle, so nothing on the app's
    own path could do it. Started on first need. It holds trackers weakly (a session the registry dropped has nothing
    left to end), wakes only when the earliest deadline moves earlier, and sheds entries of dropped sessions, so
    neither its heap nor a busy process's sends keep it working or growing.
    """

    def __init__(
        self,
        timeout_ns: int,
        check: Callable[[SessionTracker, int], Optional[int]],
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.timeout_ns = timeout_ns
        self._check = check  # ends the tracker's turn if it is due; returns when to check again, or None
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[int, int, weakref.ref[SessionTracker]]] = []
        self._watched: weakref.WeakSet[SessionTracker] = weakref.WeakSet()
        self._seq = itertools.count()
        self._thread: Optional[threading.Thread] = None
        self._stopped = False

    def watch(self, tracker: SessionTracker) -> None:
        with self._cond:
            if self._stopped or tracker in self._watched:
                return
            self._push(self._clock() + self.timeout_ns, tracker)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="cma-tracing-orphan-watch", daemon=True)
                self._thread.start()

    def pending(self) -> int:
        """Entries in the heap (for tests and the memory benchmark)."""
        return len(self._heap)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._watched.clear()
            self._cond.notify()

    def _push(self, due: int, tracker: SessionTracker) -> None:
        """Lock held. Every deadline is now + timeout, so a new one is rarely the earliest: only then is the
        thread woken to wait less."""
        heap = self._heap
        if len(heap) >= COMPACT_AT and len(heap) > 2 * len(self._watched):
            heap[:] = [entry for entry in heap if entry[2]() in self._watched]
            heapq.heapify(heap)
        self._watched.add(tracker)
        entry = (due, next(self._seq), weakref.ref(tracker))
        heapq.heappush(heap, entry)
        if heap[0] is entry:
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > self._clock()):
                    wait_s = (self._heap[0][0] - self._clock()) / 1e9 if self._heap else None
                    self._cond.wait(wait_s)
                if self._stopped:
                    self._thread = None
                    return
                _, _, ref = heapq.heappop(self._heap)
                tracker = ref()
                if tracker is None or tracker not in self._watched:
                    continue
                self._watched.discard(tracker)
            try:
                again = self._check(tracker, self._clock())
            except Exception:
                log_swallowed("OrphanWatch")
                again = None
            if again is not None:
                with self._cond:
                    if not self._stopped and tracker not in self._watched:
                        self._push(again, tracker)
            del tracker


#: Heap size past which entries of dropped sessions are shed (when they are at least half of it).
COMPACT_AT: Final = 1024
