#!/usr/bin/env bash
# The compatibility matrix of SPEC §6.7, next to `make test` (the whole suite on Python 3.11, newest versions):
#   py3.10, py3.12, py3.13   the core tests on that Python, newest versions of everything
#   anthropic-2.0.0          the core tests on Python 3.11 with the oldest anthropic 2.x, the rest newest
#   floors                   the whole suite on Python 3.10 with every declared dependency at its declared floor
#                            (constraints made from pyproject.toml by scripts/floors.py, so they cannot drift apart)
# Each leg gets a fresh venv in .matrix/<leg> and `pip install -e ".[test,cli]"`. Every leg runs even when an earlier
# one failed; the exit status is non-zero if any leg failed (pytest's "no tests ran", exit 5, is a failure too).
#
#   scripts/matrix.sh                 all legs
#   scripts/matrix.sh floors py3.13   only these
#
# Interpreters come from pyenv: $(pyenv root)/versions/3.X*/bin/python3.X (the newest patch release there).
# HOST_PYTHON (default .venv/bin/python, made by `make setup`) is a Python >= 3.11 that runs scripts/floors.py.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

MATRIX=.matrix
HOST_PYTHON=${HOST_PYTHON:-.venv/bin/python}
CORE_TESTS=(tests/test_lifecycle.py tests/test_streams.py tests/test_guarantees.py tests/test_properties.py
    tests/test_turns_through_sdk.py)
ALL_LEGS=(py3.10 py3.12 py3.13 anthropic-2.0.0 floors)

pyenv_python() {  # pyenv_python 3.10 -> path of the newest 3.10.x interpreter pyenv has, or fail saying what's missing
    local minor=$1 root found
    root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
    found=$(printf '%s\n' "$root"/versions/"$minor".*/bin/python"$minor" | sort -V | tail -n 1)
    if [[ -z $found || ! -x $found ]]; then
        echo "matrix: no Python $minor under $root/versions (install it: pyenv install $minor)" >&2
        return 1
    fi
    echo "$found"
}

run_leg() {  # run_leg NAME PYTHON_MINOR CONSTRAINTS_FILE_OR_EMPTY TEST_PATH...
    local name=$1 minor=$2 constraints=$3
    shift 3
    local venv=$MATRIX/$name python
    echo
    echo "================ matrix leg $name: Python $minor, ${constraints:-newest versions}, tests: $* ================"
    python=$(pyenv_python "$minor") || return 1
    "$python" -m venv --clear "$venv" || return 1
    # pip's own output goes to a log; its tail (why it failed: the conflict) is shown only when it fails.
    if ! { "$venv/bin/python" -m pip install --quiet --upgrade pip &&
        "$venv/bin/python" -m pip install -e ".[test,cli]" ${constraints:+-c "$constraints"}; } \
        >"$venv/pip.log" 2>&1; then
        grep -v "is ignored: it is neither a file nor a directory" "$venv/pip.log" | tail -n 30 >&2
        echo "matrix: leg $name: pip install failed (log: $venv/pip.log)" >&2
        return 1
    fi
    "$venv/bin/python" - <<'EOF'
import platform
from importlib.metadata import version
names = ["anthropic", "wrapt", "opentelemetry-api", "opentelemetry-sdk", "opentelemetry-instrumentation",
         "opentelemetry-exporter-otlp-proto-http", "httpx2", "typing-extensions", "pydantic", "vcrpy", "pytest"]
print(f"Python {platform.python_version()}:", ", ".join(f"{n} {version(n)}" for n in names))
EOF
    "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
}

legs=("$@")
[[ ${#legs[@]} -gt 0 ]] || legs=("${ALL_LEGS[@]}")
mkdir -p "$MATRIX"
failed=()
summary=()
for leg in "${legs[@]}"; do
    start=$SECONDS
    case $leg in
        py3.10 | py3.12 | py3.13) run_leg "$leg" "${leg#py}" "" "${CORE_TESTS[@]}" ;;
        anthropic-2.0.0)
            echo "anthropic==2.0.0" >"$MATRIX/anthropic-2.0.0.txt"
            run_leg "$leg" 3.11 "$MATRIX/anthropic-2.0.0.txt" "${CORE_TESTS[@]}"
            ;;
        floors)
            if "$HOST_PYTHON" scripts/floors.py test cli >"$MATRIX/floors.txt"; then
                run_leg "$leg" 3.10 "$MATRIX/floors.txt" tests
            else
                echo "matrix: scripts/floors.py failed (HOST_PYTHON=$HOST_PYTHON)" >&2
                false
            fi
            ;;
        *)
            echo "matrix: unknown leg '$leg' (legs: ${ALL_LEGS[*]})" >&2
            false
            ;;
    esac
    rc=$?
    result=passed
    if [[ $rc -ne 0 ]]; then
        result="FAILED (exit $rc)"
        failed+=("$leg")
    fi
    summary+=("$(printf '%-16s %-18s %4ds' "$leg" "$result" $((SECONDS - start)))")
done

echo
echo "================ matrix summary ================"
printf '%s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "matrix: ${#failed[@]} leg(s) failed: ${failed[*]}"
    exit 1
fi
echo "matrix: all ${#legs[@]} leg(s) passed"
