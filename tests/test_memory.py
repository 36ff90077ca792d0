"""SPEC §6.4 and §7: 100,000 turns (each stream's first one sent, as apps do) hold no more memory than 1,000 did;
idle sessions leave bounded state."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TURNS = 100_000
STREAMS = TURNS // 10  # the benchmark's streams have ten turns each, and here each has a session of its own

pytestmark = pytest.mark.slow  # about a minute, and more on a loaded machine


def test_a_hundred_thousand_turns_grow_resident_memory_by_less_than_10_mb() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", "--turns", str(TURNS), "--warmup", "1000", "--sessions", "20000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["turns"] == TURNS
    assert result["growth_mb"] < 10, result
    assert result["active_sessions"] == 0  # every session went idle and was dropped
    assert result["remembered_sessions"] <= 4096  # what is remembered of idle sessions is capped (LRU)
    # Each stream's first turn is sent first, so every one of the 10,000 sessions passes through the orphan watch
    # (some entries are there: the run did reach it), and none of them is still open: a watch that kept their
    # entries would hold all 10,000; it sheds them, to a small fraction however often it chooses to compact.
    assert 0 < result["orphan_watch_entries"] <= STREAMS // 4
