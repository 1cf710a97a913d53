# harness: `make demo` runs the demo scenario, `make test` the test suite.
# Both install what they need first (apt packages, a virtualenv, the package) and are safe to run twice.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
HARNESS := $(VENV)/bin/harness
APT_PACKAGES := python3 python3-venv python3-dev gcc influxdb nginx-light wrk stress-ng nftables iproute2 user-mode-linux kmod \
	victoria-metrics procps psmisc curl chromium faketime
PYTEST_ARGS ?=

.PHONY: setup apt venv demo test test-fast lint bench soak stop clean

setup: apt venv

apt:
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

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

demo: setup
	$(HARNESS) demo up
	@rc=0; $(HARNESS) run scenarios/demo.yaml || rc=$$?; \
	$(HARNESS) demo down; \
	echo "results: embedded InfluxDB at http://127.0.0.1:8086 (database harness); stop it with 'make stop'"; \
	exit $$rc

test: setup
	@rc=0; $(PY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest ran no tests: treating as failure"; exit 1; fi; \
	exit $$rc

test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/throughput.py $(BENCH_ARGS)

soak: setup
	$(PY) benchmarks/soak.py $(SOAK_ARGS)

lint: venv
	$(VENV)/bin/ruff check harness tests locustfiles benchmarks
	$(VENV)/bin/ruff format --check harness tests locustfiles benchmarks
	$(VENV)/bin/mypy

stop: venv
	-$(HARNESS) demo down
	-$(HARNESS) influx stop

clean: stop
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
