"""The loopback fake must behave like the CMA API as the real `anthropic` SDK sees it, timing included."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import pytest

from cma_tracing.demo.loopback import (
    Drop,
    ErrorFrame,
    Event,
    FakeCMAServer,
    Hold,
    Keepalive,
    running_server,
)
from tests.support.spans import at_least

SID = "sesn_loop_test"
TID = "sthr_loop_test"


def _event(event_id: str, type_: str = "agent.thinking", **fields: Any) -> dict[str, Any]:
    return {"id": event_id, "processed_at": "2026-08-17T16:21:34.417913Z", "type": type_, **fields}


@pytest.fixture
def server() -> Iterator[FakeCMAServer]:
    with running_server() as fake:
        yield fake


@pytest.fixture
def client(server: FakeCMAServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=server.base_url, api_key="test-key", max_retries=0) as sdk:
        yield sdk


def test_create_and_retrieve_return_the_configured_session(server: FakeCMAServer, client: anthropic.Anthropic) -> None:
    server.set_session(SID)
    created = client.beta.sessions.create(agent="agent_0178EAqEXzAVgoiucYPVscc6", environment_id="env_x")
    assert created.id == SID
    assert created.agent.model.id == "claude-haiku-4-5"
    assert client.beta.sessions.retrieve(SID).id == SID
    generated = client.beta.sessions.create(agent="agent_x", environment_id="env_x")
    assert generated.id.startswith("sesn_loop_")

    create_request = server.requests[0]
    assert (create_request.method, create_request.path) == ("POST", "/v1/sessions")
    assert create_request.json["environment_id"] == "env_x"
    assert create_request.headers["anthropic-beta"] == "managed-agents-2026-04-01"
    assert create_request.headers["authorization"] == "Bearer test-key"


def test_send_echoes_events_with_queued_ids(server: FakeCMAServer, client: anthropic.Anthropic) -> None:
    server.queue_send(SID, ["sevt_queued_1"])
    message = {"type": "user.message", "content": [{"type": "text", "text": "hi"}]}
    sent = client.beta.sessions.events.send(SID, events=[message, message])
    assert [e.id for e in sent.data][0] == "sevt_queued_1"
    assert sent.data[1].id.startswith("sevt_loop_")
    assert sent.data[0].processed_at is None
    assert server.requests[-1].json == {"events": [message, message]}


def test_send_can_fail_with_a_status(server: FakeCMAServer, client: anthropic.Anthropic) -> None:
    server.queue_send(SID, [], status=529, error={"type": "overloaded_error", "message": "Overloaded"})
    with pytest.raises(anthropic.APIStatusError) as info:
        client.beta.sessions.events.send(SID, events=[{"type": "user.interrupt"}])
    assert info.value.status_code == 529
    assert info.value.body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def test_stream_delivers_each_event_at_its_scripted_time(server: FakeCMAServer, client: anthropic.Anthropic) -> None:
    server.queue_stream(
        SID,
        [
            Event(_event("sevt_1", "session.status_running")),
            Keepalive(0.1),
            Event(_event("sevt_2"), delay=0.2),
            Event(_event("sevt_3", "session.status_idle", stop_reason={"type": "end_turn"}), delay=0.3),
        ],
    )
    opened = time.monotonic()
    seen: list[tuple[str, float]] = []
    streaming: list[bool] = []
    with client.beta.sessions.events.stream(SID, event_deltas=["agent.message"]) as stream:
        for event in stream:
            seen.append((event.id, time.monotonic() - opened))
            streaming.append(not server.wait_for_stream_close(SID, timeout=0))
    assert [event_id for event_id, _ in seen] == ["sevt_1", "sevt_2", "sevt_3"]
    # The first event reaches the app while the server still holds the others back (0.6 s of delays), not once the
    # body is whole: this holds however late the app gets to it, short of 0.6 s.
    assert streaming[0], "the first event must not wait for later ones"
    # Each later event waited out its delays, counted from the stream's start, which `opened` precedes. (The gaps
    # between arrivals are not bounded: on a loaded machine the app may read one event late and the next at once.)
    arrivals = [at for _, at in seen]
    assert arrivals[1] >= at_least(0.1 + 0.2)
    assert arrivals[2] >= at_least(0.1 + 0.2 + 0.3)
    assert server.wait_for_stream_close(SID, timeout=5)
    request = server.requests[-1]
    assert request.path == f"/v1/sessions/{SID}/events/stream"
    assert request.query["event_deltas[]"] == ["agent.message"]


def test_error_frame_raises_api_status_error_mid_iteration(server: FakeCMAServer, client: anthropic.Anthropic) -> None:
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    server.queue_stream(SID, [Event(_event("sevt_1")), ErrorFrame(overloaded, delay=0.05), Hold(5)])
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as info:
        for event in client.beta.sessions.events.stream(SID):
            seen.append(event.id)
    assert seen == ["sevt_1"]
    assert info.value.status_code == 200
    assert info.value.body == overloaded
    assert server.wait_for_stream_close(SID, timeout=5), "the SDK closes the response, ending the held stream"


def test_drop_reaches_the_caller_as_a_transport_error(server: FakeCMAServer, client: anthropic.Anthropic) -> None:
    server.queue_stream(SID, [Event(_event("sevt_1")), Drop(0.05)])
    seen: list[str] = []
    # Through anthropic 2.16 the raw httpx2.RemoteProtocolError ("incomplete chunked read"): the SDK wrapped transport
    # errors in APIConnectionError only while sending the request. From 2.17 it wraps a failed body read too.
    with pytest.raises((httpx2.RemoteProtocolError, anthropic.APIConnectionError)) as info:
        for event in client.beta.sessions.events.stream(SID):
            seen.append(event.id)
    assert seen == ["sevt_1"]
    error = info.value
    assert isinstance(
        error if isinstance(error, httpx2.RemoteProtocolError) else error.__cause__, httpx2.RemoteProtocolError
    )
    assert server.wait_for_stream_close(SID, timeout=5)


def test_unscripted_stream_is_held_until_the_client_closes(server: FakeCMAServer, client: anthropic.Anthropic) -> None:
    stream = client.beta.sessions.events.stream(SID)
    assert not server.wait_for_stream_close(SID, timeout=0.3)
    stream.close()
    assert server.wait_for_stream_close(SID, timeout=5)


def test_list_pages_through_the_cursor(server: FakeCMAServer, client: anthropic.Anthropic) -> None:
    server.queue_list_page(SID, [_event("sevt_1"), _event("sevt_2")], next_page="page_cursor_2")
    server.queue_list_page(SID, [_event("sevt_3")])
    assert [event.id for event in client.beta.sessions.events.list(SID)] == ["sevt_1", "sevt_2", "sevt_3"]
    first, second = server.requests[-2:]
    assert "page" not in first.query
    assert second.query["page"] == ["page_cursor_2"]
    assert list(client.beta.sessions.events.list(SID)) == []


def test_thread_stream_and_list_are_keyed_by_thread(server: FakeCMAServer, client: anthropic.Anthropic) -> None:
    server.queue_stream(SID, [Event(_event("sevt_thread_1"))], thread_id=TID)
    server.queue_list_page(SID, [_event("sevt_thread_2")], thread_id=TID)
    streamed = [event.id for event in client.beta.sessions.threads.events.stream(TID, session_id=SID)]
    listed = [event.id for event in client.beta.sessions.threads.events.list(TID, session_id=SID)]
    assert (streamed, listed) == (["sevt_thread_1"], ["sevt_thread_2"])
    assert server.requests[0].path == f"/v1/sessions/{SID}/threads/{TID}/stream"
    assert server.wait_for_stream_close(SID, timeout=5, thread_id=TID)
    assert list(client.beta.sessions.events.list(SID)) == [], "the session's own pages are separate"


def test_unknown_path_is_a_404_json_error(server: FakeCMAServer) -> None:
    response = httpx2.get(f"{server.base_url}/v1/agents")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.headers["request-id"]
    assert response.json()["error"]["type"] == "not_found_error"


@pytest.mark.asyncio
async def test_async_client_streams_incrementally(server: FakeCMAServer) -> None:
    server.queue_stream(SID, [Event(_event("sevt_1")), Event(_event("sevt_2"), delay=0.3)])
    async with anthropic.AsyncAnthropic(base_url=server.base_url, api_key="test-key", max_retries=0) as sdk:
        opened = time.monotonic()
        stream = await sdk.beta.sessions.events.stream(SID)
        arrivals: list[float] = []
        streaming: list[bool] = []
        async for _ in stream:
            arrivals.append(time.monotonic() - opened)
            streaming.append(not server.wait_for_stream_close(SID, timeout=0))
    assert len(arrivals) == 2
    assert streaming[0], "the first event must not wait for the second"
    assert arrivals[1] >= at_least(0.3)


def test_stop_does_not_hang_on_held_streams() -> None:
    fake = FakeCMAServer().start()
    sdk = anthropic.Anthropic(base_url=fake.base_url, api_key="test-key", max_retries=0)
    stream = sdk.beta.sessions.events.stream(SID)
    started = time.monotonic()
    fake.stop()
    assert time.monotonic() - started < 10  # the unscripted stream is held for 30 s: stop does not wait for that
    with pytest.raises((httpx2.TransportError, anthropic.APIConnectionError)):  # wrapped from anthropic 2.17
        list(stream)
    sdk.close()


def test_async_run_inside_a_sync_test(server: FakeCMAServer) -> None:
    server.queue_send(SID, ["sevt_async"])

    async def send() -> str:
        async with anthropic.AsyncAnthropic(base_url=server.base_url, api_key="test-key", max_retries=0) as sdk:
            sent = await sdk.beta.sessions.events.send(SID, events=[{"type": "user.interrupt"}])
            return sent.data[0].id

    assert asyncio.run(send()) == "sevt_async"
