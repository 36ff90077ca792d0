"""One test body for both SDK clients: the app's calls the loopback tests make, awaitable whether the client is
`anthropic.Anthropic` or `anthropic.AsyncAnthropic`, so a sync test and its async twin share every assertion.

The sync driver calls the client inline from the test's event loop: the loopback server has threads of its own, so
blocking there blocks nothing the call waits on."""

from __future__ import annotations

from typing import Any, Union

import anthropic


class SyncDrive:
    """The calls on `anthropic.Anthropic`."""

    mode = "sync"

    def __init__(self, client: anthropic.Anthropic) -> None:
        self.client = client

    async def send(self, session_id: str, *events: Any) -> Any:
        return self.client.beta.sessions.events.send(session_id, events=list(events))

    async def stream(self, session_id: str) -> list[str]:
        """Open the session's stream and read it to its end: the types the app got, in order."""
        with self.client.beta.sessions.events.stream(session_id) as stream:
            return [event.type for event in stream]

    async def create(self, **params: Any) -> Any:
        return self.client.beta.sessions.create(**params)


class AsyncDrive:
    """The same calls on `anthropic.AsyncAnthropic`."""

    mode = "async"

    def __init__(self, client: anthropic.AsyncAnthropic) -> None:
        self.client = client

    async def send(self, session_id: str, *events: Any) -> Any:
        return await self.client.beta.sessions.events.send(session_id, events=list(events))

    async def stream(self, session_id: str) -> list[str]:
        async with await self.client.beta.sessions.events.stream(session_id) as stream:
            return [event.type async for event in stream]

    async def create(self, **params: Any) -> Any:
        return await self.client.beta.sessions.create(**params)


Drive = Union[SyncDrive, AsyncDrive]
