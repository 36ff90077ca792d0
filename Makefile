# Everything a fresh machine needs: `make demo` and `make test` set up the virtualenv themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup test matrix demo bench check clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,cli]"
	touch $@

setup: $(BIN)/.installed

test: setup
	$(BIN)/python -m pytest -q

# The compatibility matrix (scripts/matrix.sh): other Pythons, the oldest anthropic 2.x, every declared floor; each leg
# in its own venv under .matrix/. `make matrix LEGS="floors py3.13"` runs only those legs.
matrix: setup
	HOST_PYTHON=$(BIN)/python bash scripts/matrix.sh $(LEGS)

demo: setup
	$(BIN)/cma-tracing demo

bench: setup
	$(BIN)/python -m benchmarks.replay --rounds 15

check: setup
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/python -m mypy
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

# Everything make and what it runs leave behind: the venvs (the project's, the matrix's, Phoenix's for the end-to-end
# test), the tools' caches, build output, bytecode.
clean:
	rm -rf $(VENV) .matrix .phoenix-venv .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist
	find . -path ./.git -prune -o \( -name '*.egg-info' -o -name __pycache__ \) -type d -prune -exec rm -rf {} +
