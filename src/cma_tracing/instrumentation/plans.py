"""What a tracker does with each event type: the rows of `event_table`, resolved to handlers once, per recording mode.

A plan maps an event type to `(handler, output, span_event, session_level, opens, resumes)`. The full plan records
everything; a recorded turn's plan leaves out the handlers that would record nothing in its mode; a turn nobody
records has the lifecycle plan. Each plan has a quick table: what the tracker does, before its lock is taken, with
the types that plan needs no handler for (skip them, or only count and deduplicate them).
"""

from __future__ import annotations

from typing import AbstractSet, Any, Callable, Final, Optional

from . import handlers
from .event_table import EVENT_ROLES

Handler = Callable[..., None]
#: type -> (handler, output, span_event, session_level, opens, resumes): the table of `event_table`, resolved.
Plan = dict[str, tuple[Optional[Handler], bool, bool, bool, bool, bool]]

#: Handlers that record nothing for a turn without child spans (none of them touches the turn's own counters).
_CHILDREN_ONLY: Final = frozenset((handlers.on_tool_result, handlers.on_thread_created, handlers.on_workflow_event))
#: The same while the session can never have workflow runs (child spans off): a thread status only feeds a run or
#: a subagent span.
_CHILDREN_OR_RUNS_ONLY: Final = _CHILDREN_ONLY | {handlers.on_thread_status}
#: Handlers that record nothing for a turn without content capture.
_CONTENT_ONLY: Final = frozenset((handlers.on_agent_message,))

# What the tracker does with an event before its lock, by the quick table of the open turn's plan (absent: take the
# lock and dispatch on the plan). The counting ones apply to the session's stream only, and only to an event whose id
# is new and fits the turn's current dedupe generation.
#: Nothing: the turn can record nothing of it.
SKIP: Final = 0
#: Nothing, once the session knows its coordinator's thread (a thread's status teaches it).
SKIP_KNOWN: Final = 1
#: Its id is remembered (counted, deduplicated) and the turn's last event time moves.
COUNT: Final = 2
#: As COUNT, and it is agent output: it sets the time to first chunk and ends a wait for the client.
OUTPUT: Final = 3
#: As COUNT, unless the turn may still adopt a user event (a model request start ends that).
WORK: Final = 4
#: As COUNT, once the session knows its coordinator's thread.
COUNT_KNOWN: Final = 5

#: A quick table: event type -> one of the actions above.
Quick = dict[str, int]


class SkipAll(dict[str, int]):
    """The quick table of a tracker its registry let go of: every event is skipped before the lock."""

    def get(self, key: Any, default: Any = None) -> int:
        return SKIP


class Plans:
    """Every plan of one tracker class, whose lifecycle handlers are its methods named `_` + the row's name."""

    def __init__(self, tracker: type[Any]) -> None:
        def resolve(name: Optional[str], lifecycle: bool) -> Optional[Handler]:
            if name is None:
                return None
            handler: Handler = getattr(tracker, "_" + name) if lifecycle else getattr(handlers, name)
            return handler

        self.full: Final[Plan] = {
            event_type: (
                resolve(role.handler, role.lifecycle),
                role.output,
                role.span_event,
                role.session_level,
                role.opens,
                role.resumes,
            )
            for event_type, role in EVENT_ROLES.items()
        }
        #: For a turn nobody records: only what opens, ends or holds the turn open, and what its lifecycle needs.
        self.lifecycle: Final[Plan] = {
            event_type: (
                resolve(role.handler, True) if role.lifecycle else resolve(role.lifecycle_handler, True),
                role.output,
                False,
                role.session_level,
                role.opens,
                role.resumes,
            )
            for event_type, role in EVENT_ROLES.items()
        }
        on_work = resolve("on_work", True)
        on_thread_seen = resolve("on_thread_seen", True)
        #: The types such a turn does nothing with: no lifecycle handler (or only `_on_work`), not agent output, and
        #: not work that resumes a turn: a late duplicate of that, after the turn ended, must be known as one (its
        #: id remembered), or it would open a `resume` turn that a recorded session would not.
        self.lifecycle_skips: Final[AbstractSet[str]] = frozenset(
            t
            for t, (handler, output, _, _, _, resumes) in self.lifecycle.items()
            if not output and not resumes and (not handler or handler is on_work or handler is on_thread_seen)
        )
        #: The skipped types a tracker that has not learnt its coordinator's thread yet routes: a thread's status.
        self.thread_seen: Final[AbstractSet[str]] = frozenset(
            t for t in self.lifecycle_skips if self.lifecycle[t][0] is on_thread_seen
        )
        #: The types whose only effect on such a turn is that their id is remembered, with what agent output does to
        #: a wait and what a model request start does to an adoption.
        self.remember_only: Final[AbstractSet[str]] = frozenset(
            t
            for t, (handler, _, _, session_level, opens, _) in self.lifecycle.items()
            if t not in self.lifecycle_skips and not session_level and not opens and (not handler or handler is on_work)
        )
        self._recording: dict[tuple[bool, bool, bool], Plan] = {}
        self._on_thread_status = resolve("on_thread_status", False)
        self._on_thread_seen = on_thread_seen
        self._quick: dict[int, tuple[Plan, Quick]] = {}
        lifecycle_quick: Quick = {}
        for t, (handler, output, *_) in self.lifecycle.items():
            if t in self.thread_seen:
                lifecycle_quick[t] = SKIP_KNOWN
            elif t in self.lifecycle_skips:
                lifecycle_quick[t] = WORK if handler is on_work else SKIP
            elif t in self.remember_only:
                lifecycle_quick[t] = WORK if handler is on_work else OUTPUT if output else COUNT
        self._quick[id(self.lifecycle)] = (self.lifecycle, lifecycle_quick)

    def quick(self, plan: Plan) -> Quick:
        """The quick table of one of these plans: in a recorded turn's, the types with no handler and no span event
        that open nothing are only counted (agent output among them sets its times); a thread's status whose
        handler is only there to learn the coordinator's thread is counted once that is known."""
        found = self._quick.get(id(plan))
        if found is None:
            table: Quick = {}
            for t, (handler, output, span_event, _, opens, _) in plan.items():
                if span_event or opens:
                    continue
                if handler is None:
                    table[t] = OUTPUT if output else COUNT
                elif handler is self._on_thread_seen:
                    table[t] = COUNT_KNOWN
            found = self._quick[id(plan)] = (plan, table)  # the plan is held, so its id stays its own
        return found[1]

    def _idle_as(self, handler: Optional[Handler]) -> Optional[Handler]:
        """What runs instead of a handler that would record nothing: none, except that a thread's status still
        teaches the session its coordinator's thread, as in a turn nobody records (whether that thread's later work
        resumes a turn depends on it)."""
        return self._on_thread_seen if handler is self._on_thread_status else None

    def recording(self, children: bool, content: bool, child_spans: bool) -> Plan:
        """The full plan without the handlers that would do nothing for a turn with (or without) children and
        content, in a session that may (or may never) follow workflow runs: each such event is still counted and
        deduplicated, with one Python call less."""
        key = (children, content, child_spans)
        plan = self._recording.get(key)
        if plan is None:
            idle: set[Optional[Handler]] = set()
            if not children:
                idle |= _CHILDREN_ONLY if child_spans else _CHILDREN_OR_RUNS_ONLY
            if not content:
                idle |= _CONTENT_ONLY
            plan = self._recording[key] = {
                event_type: (self._idle_as(handler) if handler in idle else handler, *rest)  # type: ignore[misc]
                for event_type, (handler, *rest) in self.full.items()
            }
        return plan
