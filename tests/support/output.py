"""Comparing what a command printed with a capture of it in the README."""

from __future__ import annotations

import re


def digits_aside(text: str) -> list[str]:
    """The lines with every number as N, sorted: on a loaded machine a subagent's thread feed can be read later than
    the session's stream, which swaps sibling lines; what each line says is what must not go stale."""
    return sorted(re.sub(r"\d+", "N", line.rstrip()) for line in text.strip("\n").splitlines())
