#!/usr/bin/env python3
"""Install Arize Phoenix into its own virtual environment, `.phoenix-venv/` at the repo root, for the end-to-end test.

Phoenix lives apart from the project's `.venv` because it pins its own dependencies (an older `anthropic`, among
others). Idempotent: a venv that already has this exact Phoenix version is reused at once. Concurrent runs wait on
a lock inside the venv folder. On success the last line on stdout is the path of the `phoenix` executable; on
failure the exit code is 1 and stderr ends with the reason (the tail of pip's output).

    python3 scripts/phoenix_env.py            # install or reuse; prints .../.phoenix-venv/bin/phoenix
    python3 scripts/phoenix_env.py --check    # exit 0 if installed, 1 if not; installs nothing

Needs Python >= 3.11 (Phoenix's own requirement): the interpreter running this script if it is new enough, else
the first of python3.14 ... python3.11 on PATH that runs and says it is 3.11-3.14 (a pyenv shim of a version that
is not installed is on PATH but fails to run: it is skipped, with a note on stderr). Measured on a 2-core machine:
about 80 s and 855 MB.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
import time
from pathlib import Path

PHOENIX_VERSION = "20.26.1"
REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".phoenix-venv"
BIN = VENV / "bin"
LOG = VENV / "pip-install.log"
TAIL_LINES = 40


def installed_version() -> str | None:
    """The arize-phoenix version in the venv, or None when the venv or Phoenix is missing or broken."""
    python, phoenix = BIN / "python", BIN / "phoenix"
    if not python.exists() or not phoenix.exists():
        return None
    probe = "import importlib.metadata as m; print(m.version('arize-phoenix'))"
    try:
        done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def version_of(python: str) -> tuple[tuple[int, int] | None, str]:
    """The (major, minor) version `python` reports when run, or None and why it could not be run or read."""
    probe = "import sys; print('%d.%d' % sys.version_info[:2])"
    try:
        done = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return None, str(error)
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no output"])[0]
        return None, f"exit {done.returncode}: {why}"
    try:
        major, minor = (int(part) for part in done.stdout.strip().split("."))
    except ValueError:
        return None, f"unreadable version {done.stdout.strip()!r}"
    return (major, minor), ""


def base_python() -> str | None:
    """An interpreter that Phoenix supports (3.11 to 3.14) and that runs: the one running this script if it is one,
    else the first candidate on PATH that runs and reports a supported version."""
    if (3, 11) <= sys.version_info[:2] <= (3, 14):
        return sys.executable
    for minor in (14, 13, 12, 11):
        found = shutil.which(f"python3.{minor}")
        if not found:
            continue
        version, why = version_of(found)
        if version is None:
            print(f"phoenix_env: skipping {found}, which does not run ({why})", file=sys.stderr)
        elif not (3, 11) <= version <= (3, 14):
            print(f"phoenix_env: skipping {found}, which is Python {version[0]}.{version[1]}", file=sys.stderr)
        else:
            return found
    return None


def fail(reason: str) -> int:
    print(f"phoenix_env: {reason}", file=sys.stderr)
    return 1


def tail(path: Path) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-TAIL_LINES:])
    except OSError:
        return "(no pip output)"


def install() -> int:
    python = base_python()
    if python is None:
        running = sys.version.split()[0]
        return fail(f"arize-phoenix=={PHOENIX_VERSION} needs Python 3.11-3.14; none found (running {running})")
    started = time.monotonic()
    if not (BIN / "python").exists():
        done = subprocess.run([python, "-m", "venv", str(VENV)], capture_output=True, text=True)
        if done.returncode != 0:
            return fail(f"`{python} -m venv {VENV}` failed:\n{done.stdout}{done.stderr}")
    requirement = f"arize-phoenix=={PHOENIX_VERSION}"
    command = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", requirement]
    print(f"phoenix_env: installing {requirement} into {VENV} (about 80 s) ...", file=sys.stderr)
    with LOG.open("w") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        return fail(f"pip install {requirement} failed (exit {done.returncode}); last lines of {LOG}:\n{tail(LOG)}")
    if installed_version() != PHOENIX_VERSION:
        missing = f"pip finished but {BIN / 'phoenix'} is missing or not {requirement}"
        return fail(f"{missing}; last lines of {LOG}:\n{tail(LOG)}")
    print(f"phoenix_env: installed {requirement} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


def main(argv: list[str]) -> int:
    if "--check" in argv:
        return 0 if installed_version() == PHOENIX_VERSION else 1
    VENV.mkdir(exist_ok=True)
    with open(VENV / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a parallel run installs first; this one then finds it installed
        if installed_version() != PHOENIX_VERSION:
            code = install()
            if code:
                return code
    print(BIN / "phoenix")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
