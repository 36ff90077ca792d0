"""The distributions: built with the project's build backend from the tracked files, the sdist carries what `pytest`
needs to run from it, both carry the license, and the metadata is written for PyPI's readers."""

from __future__ import annotations

import email
import email.message
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parent.parent
#: What never belongs in a copy to build from (made by make, pytest, the checkers or an earlier build).
LEFT_OUT = {".git", ".venv", ".matrix", ".phoenix-venv", "build", "dist", "__pycache__", ".pytest_cache"}
LEFT_OUT |= {".mypy_cache", ".ruff_cache", ".hypothesis"}


@dataclass(frozen=True)
class Built:
    sdist: Path
    wheel: Path
    unpacked: Path  # the sdist, extracted


def _source_files() -> list[Path]:
    """The files a release is built from: git's tracked and new ones in a checkout, else the tree (an sdist)."""
    if (REPO / ".git").exists() and shutil.which("git"):
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout.decode()
        return [Path(p) for p in listed.split("\0") if p and (REPO / p).is_file()]
    return [
        p.relative_to(REPO)
        for p in REPO.rglob("*")
        if p.is_file() and not LEFT_OUT & set(p.relative_to(REPO).parts) and not p.name.endswith(".egg-info")
    ]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    root = tmp_path_factory.mktemp("packaging")
    source = root / "source"
    for relative in _source_files():
        (source / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / relative, source / relative)
    out = root / "dist"
    script = (
        "import pathlib, sys, setuptools.build_meta as backend\n"
        "out, names = sys.argv[1:]  # read first: the backend rewrites sys.argv\n"
        "built = [backend.build_sdist(out), backend.build_wheel(out)]\n"
        "pathlib.Path(names).write_text('\\n'.join(built))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(out), str(root / "names")],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    sdist_name, wheel_name = (root / "names").read_text().splitlines()
    with tarfile.open(out / sdist_name) as archive:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: refuse paths outside the target
            archive.extractall(root / "unpacked", filter="data")
        else:
            archive.extractall(root / "unpacked")
    (unpacked,) = (root / "unpacked").iterdir()
    yield Built(out / sdist_name, out / wheel_name, unpacked)


def _sdist_names(built: Built) -> set[str]:
    with tarfile.open(built.sdist) as archive:
        return {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}


def _metadata(built: Built) -> email.message.Message:
    with zipfile.ZipFile(built.wheel) as wheel:
        (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(wheel.read(name))


def test_the_license_is_the_apache_2_text() -> None:
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert (
        "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text and "END OF TERMS AND CONDITIONS" in text
    )


def test_both_distributions_carry_the_license(built: Built) -> None:
    assert (built.unpacked / "LICENSE").read_bytes() == (REPO / "LICENSE").read_bytes()
    with zipfile.ZipFile(built.wheel) as wheel:
        (license_file,) = [n for n in wheel.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        assert wheel.read(license_file) == (REPO / "LICENSE").read_bytes()


def test_the_sdist_has_what_pytest_needs(built: Built) -> None:
    names = _sdist_names(built)
    needed = {"tests/conftest.py", "tests/__init__.py", "pyproject.toml", "README.md", "README.pypi.md"}
    needed |= {f"tests/support/{p.name}" for p in (REPO / "tests" / "support").glob("*.py")}
    needed |= {f"tests/{p.name}" for p in (REPO / "tests").glob("test_*.py")}
    needed |= {f"tests/apps/{p.name}" for p in (REPO / "tests" / "apps").glob("*.py")}
    needed |= {f"cassettes/{p.name}" for p in (REPO / "cassettes").iterdir() if p.is_file()}
    needed |= {f"benchmarks/{p.name}" for p in (REPO / "benchmarks").glob("*.py")}
    needed |= {f"scripts/{p.name}" for p in (REPO / "scripts").iterdir() if p.is_file()}
    needed |= {f"src/cma_tracing/demo/data/{p.name}" for p in (REPO / "src/cma_tracing/demo/data").iterdir()}
    assert needed - names == set()
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_the_wheel_has_the_package_and_its_data_but_not_the_tests(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as wheel:
        names = set(wheel.namelist())
    assert {"cma_tracing/__init__.py", "cma_tracing/py.typed", "cma_tracing/demo/render.py"} <= names
    assert {f"cma_tracing/demo/data/{p.name}" for p in (REPO / "src/cma_tracing/demo/data").iterdir()} <= names
    assert not [n for n in names if n.startswith(("tests/", "cassettes/", "benchmarks/"))]


def test_the_metadata_is_written_for_pypi(built: Built) -> None:
    metadata = _metadata(built)
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata["Author"] == "cma-tracing developers"
    classifiers = set(metadata.get_all("Classifier") or [])
    for version in ("3.10", "3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {version}" in classifiers
    assert {"Framework :: OpenTelemetry", "Typing :: Typed"} <= classifiers
    assert any(c.startswith("Development Status :: ") for c in classifiers)
    assert metadata["Description-Content-Type"] == "text/markdown"
    payload = metadata.get_payload(decode=True)
    assert isinstance(payload, bytes)
    description = payload.decode("utf-8")
    assert description.strip() == (REPO / "README.pypi.md").read_text().strip()
    assert "make " not in description and ".venv/" not in description  # a PyPI reader has neither
    assert "pip install cma-tracing" in description and "cma_tracing.instrument(" in description
    assert not metadata.get_all("Project-URL")  # none exist to link to (pyproject.toml says why)


def test_pytest_runs_from_the_unpacked_sdist(built: Built) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = str(built.unpacked / "src")  # the sdist's package, ahead of the editable install
    where = subprocess.run(
        [sys.executable, "-c", "import cma_tracing; print(cma_tracing.__file__)"],
        cwd=built.unpacked,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(built.unpacked)
    tests = [
        "tests/test_replay_and_demo.py::test_replay_uses_the_events_own_timestamps",  # reads cassettes/
        "tests/test_readme.py::test_the_marker_parser_sees_fences_and_the_comment_before_each",
        "tests/test_triggers.py::test_a_create_that_fails_opens_no_turn",  # tests.support, the loopback server
    ]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
        cwd=built.unpacked,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "3 passed" in done.stdout


MADE = [
    ".venv/bin/python",
    ".matrix/py3.10/bin/python",
    ".phoenix-venv/bin/phoenix",  # scripts/phoenix_env.py's venv for the end-to-end test
    ".pytest_cache/v/cache/nodeids",
    ".mypy_cache/3.11/cache.db",
    ".ruff_cache/CACHEDIR.TAG",
    ".hypothesis/examples/x",
    "build/lib/cma_tracing/__init__.py",
    "dist/cma_tracing-0.1.0.tar.gz",
    "src/cma_tracing.egg-info/PKG-INFO",
    "src/cma_tracing/__pycache__/x.cpython-311.pyc",
    "tests/support/__pycache__/x.cpython-311.pyc",
]
KEPT = ["src/cma_tracing/__init__.py", "tests/conftest.py", "cassettes/real_bash_tool.yaml", "README.md", ".git/HEAD"]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_clean_removes_what_make_made_and_nothing_else(tmp_path: Path) -> None:
    shutil.copy2(REPO / "Makefile", tmp_path / "Makefile")
    for relative in MADE + KEPT:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("x")
    done = subprocess.run(["make", "clean"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [m for m in MADE if (tmp_path / m.split("/")[0]).exists() and m.split("/")[0] not in ("src", "tests")] == []
    assert not (tmp_path / "src/cma_tracing.egg-info").exists()
    assert not (tmp_path / "src/cma_tracing/__pycache__").exists()
    assert not (tmp_path / "tests/support/__pycache__").exists()
    assert [k for k in KEPT if not (tmp_path / k).exists()] == []


#: The longest a module of the package may grow: past it, a module holds more than one concern.
MAX_MODULE_LINES = 600


def test_every_module_is_named_in_the_readme_layout_and_none_is_over_600_lines() -> None:
    package = REPO / "src" / "cma_tracing"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    layout = readme.split("\n## Layout", 1)[1].split("\n## ", 1)[0]  # to the next section, if any
    modules = sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts)
    assert len(modules) > 30
    long = {
        str(p.relative_to(package)): n for p in modules if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}
    # The core's modules are each named; the patchers and the demo are described as folders.
    core = [p.name for p in modules if p.parent.name == "instrumentation" and p.name != "__init__.py"]
    assert [name for name in core if name not in layout] == []
    assert [p.name for p in modules if p.parent == package and p.name not in layout] == []
