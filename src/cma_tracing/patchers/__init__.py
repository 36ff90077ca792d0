"""Where the SDK is touched: wrapt patches on its classes, adapting calls and streams to the trackers."""

from .events import SessionEventsPatcher
from .sessions import SessionsPatcher
from .threads import SessionThreadEventsPatcher

__all__ = ["SessionEventsPatcher", "SessionThreadEventsPatcher", "SessionsPatcher"]
