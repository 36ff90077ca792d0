"""Shared fixtures: an in-memory tracer provider, cma-tracing instrumented on it, SDK clients, cassettes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anthropic
import pytest
import vcr
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import cma_tracing
from cma_tracing.demo.loopback import FakeCMAServer, running_server
from tests.support.drive import AsyncDrive, Drive, SyncDrive
from tests.support.spans import Spans

CASSETTES = Path(__file__).resolve().parent.parent / "cassettes"


@pytest.fixture
def provider() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield tracer_provider, exporter
    tracer_provider.shutdown()


@pytest.fixture
def spans(provider: tuple[TracerProvider, InMemorySpanExporter]) -> Spans:
    return Spans(provider[1])


@pytest.fixture
def instrument(provider: tuple[TracerProvider, InMemorySpanExporter]) -> Iterator[Any]:
    """A function that instruments on the test's provider with extra options; uninstrumented after the test."""

    def _instrument(**options: Any) -> cma_tracing.ClaudeManagedAgentsInstrumentor:
        return cma_tracing.instrument(tracer_provider=provider[0], **options)

    yield _instrument
    cma_tracing.uninstrument()


@pytest.fixture
def instrumented(instrument: Any) -> cma_tracing.ClaudeManagedAgentsInstrumentor:
    return instrument()  # type: ignore[no-any-return]


@pytest.fixture
def client() -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="test-key", max_retries=0, open_telemetry=False)


@pytest.fixture
def async_client() -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key="test-key", max_retries=0, open_telemetry=False)


def _without_beta_flag(uri: str) -> str:
    """`uri` with a `beta=true` query parameter removed: anthropic 2.0-2.2 put it on the sessions URLs, later ones
    don't, and the cassettes hold the later form. Every other query parameter still has to match."""
    parts = urlsplit(uri)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if (k, v) != ("beta", "true")]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _same_request_but_beta_flag(r1: Any, r2: Any) -> None:
    """vcrpy matcher: the same method and the same URI once a `beta=true` query parameter is ignored."""
    assert r1.method == r2.method, f"{r1.method} != {r2.method}"
    assert _without_beta_flag(r1.uri) == _without_beta_flag(r2.uri), f"{r1.uri} != {r2.uri} (beta=true ignored)"


@pytest.fixture
def cassette() -> Any:
    """`cassette("name")`: a vcrpy context that replays cassettes/name.yaml and fails on any unrecorded request."""
    recorder = vcr.VCR(cassette_library_dir=str(CASSETTES), record_mode="none", match_on=["request_but_beta_flag"])
    recorder.register_matcher("request_but_beta_flag", _same_request_but_beta_flag)  # looked up at use_cassette

    def _use(name: str) -> Any:
        return recorder.use_cassette(f"{name}.yaml", allow_playback_repeats=False)

    return _use


@pytest.fixture
def server() -> Iterator[FakeCMAServer]:
    with running_server() as fake:
        yield fake


@pytest.fixture
def loop_client(server: FakeCMAServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base_url, api_key="test-key", max_retries=0, open_telemetry=False)


@pytest.fixture
def loop_async_client(server: FakeCMAServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=server.base_url, api_key="test-key", max_retries=0, open_telemetry=False)


@pytest.fixture(params=["sync", "async"])
def sdk(request: pytest.FixtureRequest) -> Drive:
    """The loopback client, sync and then async: a test taking it runs once on each (tests/support/drive.py)."""
    if request.param == "sync":
        return SyncDrive(request.getfixturevalue("loop_client"))
    return AsyncDrive(request.getfixturevalue("loop_async_client"))


os.environ.setdefault("ANTHROPIC_API_KEY", "test-key")


def pytest_configure(config: pytest.Config) -> None:
    """Markers for the long runs: a plain `pytest` (CI) runs them all; `-m "not slow and not network"` is the quick run.
    Registered here, so `--strict-markers` accepts them."""
    config.addinivalue_line("markers", "slow: takes minutes (the 100,000-turn memory run, the 1,000-session scale run)")
    config.addinivalue_line("markers", "network: needs the network (installs Arize Phoenix from PyPI, its own venv)")
