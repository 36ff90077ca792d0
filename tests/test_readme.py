"""The READMEs' python examples run as written: each block, extracted from README.md and README.pypi.md (PyPI's
page), runs in a fresh interpreter against the demo's loopback server (`cma-tracing serve`'s setup), with the
variables `serve` prints exported.

A block preceded by `<!-- not-runnable: why -->` is not run (it needs a real account); one whose marker comment a test
module names is run by that module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
from markdown_it import MarkdownIt

from cma_tracing.demo.loopback import FakeCMAServer
from cma_tracing.demo.serve import exports, start
from tests.support.output import digits_aside

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
NOT_RUNNABLE = "<!-- not-runnable"


@dataclass(frozen=True)
class Block:
    doc: str  # README.md or README.pypi.md
    line: int  # where its fence opens in it, 1-based
    code: str
    marker: Optional[str]  # the HTML comment just before it, if any


def python_blocks(markdown: str, doc: str = "README.md") -> list[Block]:
    """Every ```python fence of `markdown`, as a CommonMark parser sees it, with the comment right before it."""
    blocks, previous = [], None
    for token in MarkdownIt("commonmark").parse(markdown):
        if token.type == "fence" and token.info.strip().split()[:1] == ["python"]:
            marker = previous.content.strip() if previous is not None and previous.type == "html_block" else None
            blocks.append(Block(doc, (token.map or [0])[0] + 1, token.content, marker))
        if token.level == 0 and not token.type.endswith("_close"):
            previous = token
    return blocks


def run_elsewhere(marker: Optional[str]) -> Optional[str]:
    """The test module that extracts the block by its marker comment, if one does."""
    if marker is None or marker.startswith(NOT_RUNNABLE):
        return None
    for module in sorted((REPO / "tests").glob("test_*.py")):
        if module.name != Path(__file__).name and marker in module.read_text():
            return module.name
    return None


DOCS = [README, REPO / "README.pypi.md"]
BLOCKS = [block for doc in DOCS for block in python_blocks(doc.read_text(), doc.name)]
RUNNABLE = [b for b in BLOCKS if not (b.marker or "").startswith(NOT_RUNNABLE) and run_elsewhere(b.marker) is None]
FIRSTS = [next(b for b in BLOCKS if b.doc == doc.name) for doc in DOCS]


def spans_printed(stdout: str) -> list[dict[str, Any]]:
    """The spans ConsoleSpanExporter printed: JSON objects one after another."""
    decoder, spans, at = json.JSONDecoder(), [], 0
    while True:
        while at < len(stdout) and stdout[at].isspace():
            at += 1
        if at >= len(stdout):
            return spans
        span, at = decoder.raw_decode(stdout, at)
        spans.append(span)


@pytest.fixture(scope="module")
def served() -> Iterator[FakeCMAServer]:
    server = start()
    try:
        yield server
    finally:
        server.stop()


def run_block(block: Block, server: FakeCMAServer, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ANTHROPIC_", "CMA_"))}
    env.update(exports(server))
    return subprocess.run(
        [sys.executable, "-c", block.code], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
    )


def test_the_readme_has_python_blocks_and_almost_all_run_here() -> None:
    assert len(BLOCKS) >= 5 and {b.doc for b in BLOCKS} == {d.name for d in DOCS}
    skipped = [b for b in BLOCKS if b not in RUNNABLE]
    assert len(skipped) <= 1, [(b.line, b.marker) for b in skipped]  # kept to a minimum
    for block in skipped:
        assert block.marker is not None and (block.marker.startswith(NOT_RUNNABLE) or run_elsewhere(block.marker))


def test_the_marker_parser_sees_fences_and_the_comment_before_each() -> None:
    text = "intro\n\n<!-- not-runnable: needs an account -->\n```python\nx = 1\n```\n\n```python\ny = 2\n```\n"
    first, second = python_blocks(text)
    assert (first.line, first.code, first.marker) == (4, "x = 1\n", "<!-- not-runnable: needs an account -->")
    assert (second.code, second.marker) == ("y = 2\n", None)
    assert first not in [b for b in python_blocks(text) if not (b.marker or "").startswith(NOT_RUNNABLE)]


@pytest.mark.parametrize("first", FIRSTS, ids=lambda b: b.doc)
def test_the_first_example_prints_the_turn_and_its_children(
    first: Block, served: FakeCMAServer, tmp_path: Path
) -> None:
    assert first in RUNNABLE, "the README's first python example must run as written"
    assert "events.stream" in first.code and "ConsoleSpanExporter" in first.code
    done = run_block(first, served, tmp_path)
    assert done.returncode == 0, done.stderr
    spans = spans_printed(done.stdout)
    turns = [s for s in spans if s["attributes"].get("gen_ai.operation.name") == "invoke_agent"]
    assert [t["name"] for t in turns] == ["invoke_agent braintrust-sdk-managed-agent-bash"]
    turn = turns[0]
    assert turn["parent_id"] is None
    assert turn["attributes"]["anthropic.turn.stop_reason"] == "end_turn"
    assert turn["attributes"]["gen_ai.usage.input_tokens"] == 4525
    assert turn["attributes"]["anthropic.session.id"] == exports(served)["CMA_SESSION_ID"]
    children = sorted(s["name"] for s in spans if s["parent_id"] == turn["context"]["span_id"])
    assert children == ["chat claude-haiku-4-5", "chat claude-haiku-4-5", "execute_tool bash"]
    assert spans[-1] is turn  # the turn ends last, as the README says


@pytest.mark.parametrize("block", [b for b in RUNNABLE if b not in FIRSTS], ids=lambda b: f"{b.doc}:{b.line}")
def test_every_other_runnable_block_runs(block: Block, served: FakeCMAServer, tmp_path: Path) -> None:
    done = run_block(block, served, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


#: The README's transcript of `cma-tracing trace` run by hand against `cma-tracing serve`.
TRACE_PROMPT = "$ .venv/bin/cma-tracing trace sesn_demo_workflow\n"


def test_the_readmes_trace_transcript_is_what_the_command_prints(served: FakeCMAServer, tmp_path: Path) -> None:
    transcript = (DOCS[0].read_text().split(TRACE_PROMPT, 1)[1]).split("\n```", 1)[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ANTHROPIC_", "CMA_", "COLUMNS"))}
    env.update(exports(served))
    done = subprocess.run(
        [sys.executable, "-m", "cma_tracing", "trace", "sesn_demo_workflow"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert digits_aside(transcript) == digits_aside(done.stdout)
