#!/usr/bin/env python3
"""Print a pip constraints file that pins every dependency pyproject.toml declares to its declared floor.

The matrix's floors leg installs the package with it (`pip install -e ".[test,cli]" -c floors.txt`), so the floors
that pyproject.toml states are the versions CI installs and tests: they cannot drift apart. Every requirement of the
runtime dependencies and of the extras named on the command line must have a `>=X` floor (a requirement without one
is an error: an undeclared floor is untested). A package listed in several places gets the highest of its floors.

    python scripts/floors.py test cli > .matrix/floors.txt

Needs Python >= 3.11 (tomllib).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
# name, optional [extras], then comma-separated specifiers; no environment markers or URLs (none are used).
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*?)\s*$")
FLOOR = re.compile(r"^>=\s*([0-9][A-Za-z0-9.+!-]*)$")


def normalized(name: str) -> str:
    """The PEP 503 form of a distribution name, so `typing_extensions` and `typing-extensions` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def release(version: str) -> tuple[int, ...]:
    """The numeric release part, enough to order the floors of one package (`0.62b0` -> (0, 62))."""
    match = re.match(r"[0-9]+(?:\.[0-9]+)*", version)
    assert match is not None, version
    return tuple(int(part) for part in match.group(0).split("."))


def floor_of(requirement: str) -> tuple[str, str]:
    """(normalized name, floor version) of one requirement string; SystemExit if it has no `>=` floor."""
    match = REQUIREMENT.match(requirement)
    if match is None or ";" in requirement or "@" in requirement:
        raise SystemExit(f"floors.py: cannot read requirement {requirement!r}")
    name, specifiers = match.groups()
    floors = [m.group(1) for s in specifiers.split(",") if (m := FLOOR.match(s.strip()))]
    if len(floors) != 1:
        raise SystemExit(f"floors.py: {requirement!r} must declare exactly one '>=' floor")
    return normalized(name), floors[0]


def floors(extras: list[str]) -> dict[str, str]:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    requirements: list[str] = list(project.get("dependencies", []))
    for extra in extras:
        if extra not in optional:
            raise SystemExit(f"floors.py: pyproject.toml has no extra {extra!r}")
        requirements += optional[extra]
    found: dict[str, str] = {}
    for requirement in requirements:
        name, version = floor_of(requirement)
        if name not in found or release(version) > release(found[name]):
            found[name] = version
    return found


def main(argv: list[str]) -> int:
    pinned = floors(argv)
    print(f"# The declared floors of pyproject.toml's dependencies and extras {argv}, made by scripts/floors.py.")
    for name, version in sorted(pinned.items()):
        print(f"{name}=={version}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
