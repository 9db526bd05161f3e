# Two entry points, each installing what it needs on a fresh machine (see README):
#   make synth   synthesize every stack with the shipped defaults (no AWS account needed)
#   make test    run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
# One isolated venv per ParallelCluster version (aws-parallelcluster pins CDK v1), each from its lock
# requirements-pcluster-<version>.txt. install builds those of the versions cdk.json uses; test builds all.
ALL_PCLUSTER_VERSIONS := $(patsubst requirements-pcluster-%.txt,%,$(wildcard requirements-pcluster-*.txt))
# Used: the top-level parallelcluster_version, or with clusters (several clusters) each one's (settings/cluster.py).
USED_PCLUSTER_VERSIONS := $(shell $(PYTHON) -c 'import json; c = json.load(open("cdk.json"))["context"]; \
	top = c["parallelcluster_version"]; clusters = c.get("clusters") or {}; \
	print(" ".join(sorted({e.get("parallelcluster_version", top) for e in clusters.values()} if isinstance(clusters, dict) and clusters else {top})))')
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
# Offline by construction: no credentials are looked up and botocore never probes instance metadata.
export AWS_EC2_METADATA_DISABLED := true

.PHONY: synth test install pcluster-venv system-deps benchmark clean

install: $(VENV)/.installed $(USED_PCLUSTER_VERSIONS:%=.venv-pcluster-%/.installed) node_modules/.installed

# Re-installs when a requirements file changes; pip check keeps the resolved set honest. The project itself
# goes in editable (no dependencies of its own): the user commands land in .venv/bin as hpc-* console scripts.
# The packages' __init__.py too: the editable install maps a folder without one as a namespace package.
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml $(wildcard */__init__.py)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(VENV)/bin/pip check
	touch $@

# aws-parallelcluster pins CDK v1: isolated so every venv stays consistent under pip check.
.venv-pcluster-%/.installed: requirements-pcluster-%.txt
	test -x .venv-pcluster-$*/bin/python || $(PYTHON) -m venv .venv-pcluster-$*
	.venv-pcluster-$*/bin/pip install --quiet --disable-pip-version-check -r $<
	.venv-pcluster-$*/bin/pip check
	touch $@

# Another version's venv on demand: make pcluster-venv PCLUSTER_VERSION=3.15.1
pcluster-venv:
	@test -n "$(PCLUSTER_VERSION)" || { echo "usage: make pcluster-venv PCLUSTER_VERSION=<one of: $(ALL_PCLUSTER_VERSIONS)>"; exit 2; }
	$(MAKE) .venv-pcluster-$(PCLUSTER_VERSION)/.installed

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

synth: install
	npx cdk synth --quiet
	@echo "Synthesized to cdk.out/: $$(ls cdk.out/*.template.json | xargs -n1 basename | tr '\n' ' ')"

# The job-bridge, accounting and verify integration tests run a real Slurm, slurmdbd, MariaDB and
# libfabric's fi_info (Debian's packages). Installed here when missing and we may: as root with apt-get, or through passwordless
# sudo (GitHub's runners); elsewhere those tests say why they are skipped.
SYSTEM_PACKAGES := slurm-wlm slurmdbd munge mariadb-server libfabric-bin
system-deps:
	@if ! { command -v slurmctld && command -v slurmdbd && command -v mariadbd && command -v fi_info; } >/dev/null 2>&1 \
	    && ! { [ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/slurmdbd ] && [ -x /usr/sbin/mariadbd ] \
	           && [ -x /usr/bin/fi_info ]; }; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi; \
	  if [ "$$SUDO" != none ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing $(SYSTEM_PACKAGES) for the integration tests"; \
	    $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; \
	  else \
	    echo "note: Slurm/MariaDB are not installed (needs root or sudo, and apt-get): the integration tests will be skipped"; \
	  fi; \
	fi

# One file per worker (--dist loadfile): a file's synthesized variants and its local Slurm stay in one process.
# Two workers more than cores: the two job-bridge files (and the other real-Slurm files) spend much of their time
# waiting for jobs and timers.
# --no-loadscope-reorder: files go out in the order tests/conftest.py sorts them (the real-server files first);
# pytest-xdist would otherwise send the files with most tests first, and the job bridge's files started last.
# --durations=15: every run ends with its 15 slowest tests (docs/performance.md).
# PYTHONDONTWRITEBYTECODE emptied: where the shell sets it, every worker and every command a test runs compiled
# this project's modules afresh and pytest rewrote every test file's asserts (__pycache__ is git-ignored).
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 2 )))
test: install $(ALL_PCLUSTER_VERSIONS:%=.venv-pcluster-%/.installed) system-deps
	PYTHONDONTWRITEBYTECODE= $(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15

# Not a test: prints synth time vs a bare CDK app and the validation time, as ratios.
benchmark: install
	$(VENV)/bin/python tools/benchmark_synth.py

clean:
	rm -rf cdk.out $(VENV) .venv-pcluster-* node_modules
