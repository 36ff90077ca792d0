"""What a tracker does with each event type: the rows of `event_table`, resolved to handlers once, per recording mode.

A plan maps an event type to `(handler, output, span_event, session_level, opens, resumes)`. The full plan records
everything; a recorded turn's plan leaves out the handlers that would record nothing in its mode; a turn nobody
records has the lifecycle plan, and skip sets of the types it can ignore before the tracker's lock is taken.
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


class Everything(frozenset[str]):
    """The skip set of a tracker its registry let go of: every event type is skipped before the lock."""

    def __contains__(self, item: object) -> bool:
        return True

    def __bool__(self) -> bool:
        return True


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
        #: The same while a `resume` turn nobody records may still adopt a user event: it needs its first model
        #: request.
        self.adopting_skips: Final[AbstractSet[str]] = frozenset(
            t for t in self.lifecycle_skips if self.lifecycle[t][0] in (None, on_thread_seen)
        )
        #: The skipped types a tracker that has not learnt its coordinator's thread yet routes: a thread's status.
        self.thread_seen: Final[AbstractSet[str]] = frozenset(
            t for t in self.lifecycle_skips if self.lifecycle[t][0] is on_thread_seen
        )
        #: The types whose only effect on such a turn, while it neither waits for the client (agent output would end
        #: the wait) nor may adopt a user event (a model request start ends that), is that their id is remembered.
        self.remember_only: Final[AbstractSet[str]] = frozenset(
            t
            for t, (handler, _, _, session_level, opens, _) in self.lifecycle.items()
            if t not in self.lifecycle_skips and not session_level and not opens and (not handler or handler is on_work)
        )
        self._recording: dict[tuple[bool, bool, bool], Plan] = {}

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
                event_type: ((None, *rest) if handler in idle else (handler, *rest))  # type: ignore[misc]
                for event_type, (handler, *rest) in self.full.items()
            }
        return plan
