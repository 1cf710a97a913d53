# harness: `make demo` runs the demo scenario, `make test` the test suite.
# Each installs what it needs first (apt packages, a virtualenv, the package) and is safe to run twice:
# `make demo` only what the demo needs, `make test` also the tools only the tests use.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
HARNESS := $(VENV)/bin/harness
# What `make demo` needs: Python, the embedded InfluxDB, `ip` for the demo's network namespace, curl for
# the commands harness prints to load results later, VictoriaMetrics for the demo's metrics (scenario
# probes: `harness demo up` runs it). scenarios/demo.yaml's only fault is process.kill.
DEMO_APT := python3 python3-venv influxdb iproute2 curl victoria-metrics
# What the other fault families use on a node (`make setup`: a runner for any scenario, e.g. a CI gate).
# faketime: libfaketime, which time.skew's clock shim preloads; fuse3/libfuse3-3: io faults' FUSE server.
FAULT_APT := nftables stress-ng faketime fuse3 libfuse3-3
# What only the tests (and benchmarks) use: nginx and wrk as targets and load, User-Mode Linux for real
# netem, Chromium for the report, faketime for skewed clocks (VictoriaMetrics, from DEMO_APT, is also the
# InfluxDB v2 write API's test server), dnsmasq as the DNS server of the dns faults' test namespaces.
TEST_APT := $(DEMO_APT) $(FAULT_APT) dnsmasq-base nginx-light wrk user-mode-linux kmod chromium faketime \
	procps psmisc python3-dev gcc golang-go
PYTEST_ARGS ?=

.PHONY: setup apt apt-demo apt-setup apt-test venv venv-dev demo test test-fast lint bench soak stop clean

setup: apt-setup venv

apt: apt-test

apt-demo: APT_PACKAGES = $(DEMO_APT)
apt-setup: APT_PACKAGES = $(DEMO_APT) $(FAULT_APT)
apt-test: APT_PACKAGES = $(TEST_APT)
apt-demo apt-setup apt-test:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi; \
	for s in influxdb nginx; do \
	  if command -v systemctl >/dev/null && systemctl is-active -q $$s 2>/dev/null; then systemctl stop $$s; systemctl disable -q $$s; fi; \
	done; true

# The package alone (what the demo and a gate need) ...
venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# the distribution was called "harness" before it got a name of its own on the package index:
	@# drop that install and its egg-info, whose entry points would otherwise be seen twice
	@$(PY) -m pip uninstall -q -y harness 2>/dev/null || true
	@rm -rf harness.egg-info
	$(PY) -m pip install -q -e .
	@touch $@

# ... and with the test and lint tools.
venv-dev: $(VENV)/.installed-dev

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

demo: apt-demo venv
	$(HARNESS) demo up
	@rc=0; $(HARNESS) run scenarios/demo.yaml || rc=$$?; \
	$(HARNESS) demo down; \
	echo "results: embedded InfluxDB at http://127.0.0.1:8086 (database harness); stop it with 'make stop'"; \
	exit $$rc

test: apt-test venv-dev
	@rc=0; $(PY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest ran no tests: treating as failure"; exit 1; fi; \
	exit $$rc

test-fast: apt-test venv-dev
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

bench: apt-test venv
	$(PY) benchmarks/throughput.py $(BENCH_ARGS)

soak: apt-test venv
	$(PY) benchmarks/soak.py $(SOAK_ARGS)

lint: venv-dev
	$(VENV)/bin/ruff check harness tests locustfiles benchmarks
	$(VENV)/bin/ruff format --check harness tests locustfiles benchmarks
	$(VENV)/bin/mypy

stop: venv
	-$(HARNESS) demo down
	-$(HARNESS) influx stop

clean: stop
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
