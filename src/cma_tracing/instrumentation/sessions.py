"""Where per-session state lives: active trackers, what is remembered of idle sessions, and the orphan watch.

State is dropped when a session goes idle (no turn, no stream, no call in progress); what survives is a turn
count and the agent's attributes, in bounded LRU maps. A process that runs 100,000 turns holds no more than one
that ran a few thousand.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import weakref
from collections import OrderedDict
from typing import Callable, Final, Generic, Mapping, Optional, TypeVar

from opentelemetry.util.types import AttributeValue

from .safety import log_swallowed
from .telemetry import Telemetry
from .turns import SessionTracker

#: Sessions whose turn count and agent attributes are remembered after they go idle.
MAX_REMEMBERED_SESSIONS: Final = 4096
#: Sessions with something open at once; past this the least recently used is ended as `unobserved`.
MAX_ACTIVE_SESSIONS: Final = 10_000

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    """A dict that keeps its `capacity` most recently written keys. Not thread-safe: callers lock."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> Optional[V]:
        return self._items.get(key)

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class SessionRegistry:
    """Finds the tracker of a session, creating it on first use; ends what is left at shutdown."""

    def __init__(self, telemetry: Telemetry, orphan_timeout_s: float, max_active: int = MAX_ACTIVE_SESSIONS) -> None:
        self._telemetry = telemetry
        self._lock = threading.Lock()
        self._active: OrderedDict[str, SessionTracker] = OrderedDict()
        self._max_active = max_active
        self._turn_counts: LRU[str, int] = LRU(MAX_REMEMBERED_SESSIONS)
        self._agents: LRU[str, Mapping[str, AttributeValue]] = LRU(MAX_REMEMBERED_SESSIONS)
        self._watch = OrphanWatch(int(orphan_timeout_s * 1e9))

    @property
    def telemetry(self) -> Telemetry:
        return self._telemetry

    def acquire(self, session_id: str, stream: bool = False) -> SessionTracker:
        """The session's tracker, claimed for one send, list or stream (the caller must release or finish it)."""
        while True:
            tracker = self._tracker(session_id)
            if tracker.claim(stream):
                return tracker

    def _tracker(self, session_id: str) -> SessionTracker:
        evicted: Optional[SessionTracker] = None
        with self._lock:
            tracker = self._active.get(session_id)
            if tracker is not None and not tracker.retired:
                self._active.move_to_end(session_id)
                return tracker
            tracker = SessionTracker(session_id, self._telemetry, self, self._agents.get(session_id))
            tracker.turn_count = self._turn_counts.get(session_id) or 0
            self._active[session_id] = tracker
            if len(self._active) > self._max_active:
                _, evicted = self._active.popitem(last=False)
        if evicted is not None:
            evicted.shutdown(time.time_ns(), reason="unobserved")
        return tracker

    def remember_agent(self, session_id: str, attributes: Mapping[str, AttributeValue]) -> None:
        """Agent attributes from a `sessions.create`/`retrieve` response, for this session's next turns."""
        with self._lock:
            self._agents.put(session_id, attributes)
            tracker = self._active.get(session_id)
        if tracker is not None:
            tracker.update_start_attributes(attributes)

    def session_idle(self, tracker: SessionTracker) -> None:
        """Called by a tracker (its lock held) that has nothing open: drop it, keep its turn count."""
        with self._lock:
            if self._active.get(tracker.session_id) is tracker:
                del self._active[tracker.session_id]
            self._turn_counts.put(tracker.session_id, tracker.turn_count)

    def watch_orphan(self, tracker: SessionTracker) -> None:
        """The tracker has a turn and no stream: end it if none opens in time."""
        self._watch.watch(tracker)

    def active_count(self) -> int:
        return len(self._active)

    def remembered_count(self) -> int:
        return len(self._turn_counts)

    def orphan_watch_entries(self) -> int:
        return self._watch.pending()

    def shutdown(self) -> None:
        """End every open turn (`shutdown`) and stop the watch. Never raises."""
        try:
            with self._lock:
                trackers = list(self._active.values())
                self._active.clear()
            now = time.time_ns()
            for tracker in trackers:
                tracker.shutdown(now)
            self._watch.stop()
        except Exception:
            log_swallowed("SessionRegistry.shutdown")


class OrphanWatch:
    """One daemon thread that ends turns left with no stream for the orphan timeout.

    It earns its place: a turn must end on time even when the process is otherwise idle, so nothing on the app's
    own path could do it. Started on first need. It holds trackers weakly (a session the registry dropped has nothing
    left to end), wakes only when the earliest deadline moves earlier, and sheds entries of dropped sessions, so
    neither its heap nor a busy process's sends keep it working or growing.
    """

    def __init__(self, timeout_ns: int, clock: Callable[[], int] = time.time_ns) -> None:
        self.timeout_ns = timeout_ns
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
        if len(heap) >= _COMPACT_AT and len(heap) > 2 * len(self._watched):
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
                again = tracker.check_orphan(self._clock(), self.timeout_ns)
            except Exception:
                log_swallowed("OrphanWatch")
                again = None
            if again is not None:
                with self._cond:
                    if not self._stopped and tracker not in self._watched:
                        self._push(again, tracker)
            del tracker


#: Heap size past which entries of dropped sessions are shed (when they are at least half of it).
_COMPACT_AT: Final = 1024
