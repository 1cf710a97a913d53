"""The example scenarios under ``scenarios/`` run against the demo and do what their SLOs say.

Each scenario's SLOs describe the expected behaviour under its fault (checkouts fail during a
partition, slow down under loss, recover afterwards, ...), so a passing verdict (exit 0) is
the check; the measured values are printed (``-s``). After each run nothing of harness may be
left on the node (the sweep finds no tagged object). ``demo-netem.yaml`` needs a kernel with
netem: where it is missing (these VMs) the run must be refused with exit 2 before anything
starts. The demo runs at its default ports (the scenarios name them), with payments in its
network namespace and under harness's clock shim (demo-time skews its clock).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.chaos import sweep
from harness.demo.breaker import BreakerSettings
from harness.demo.control import DEFAULT_BASE_PORT, DemoInfo, down, up

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.geteuid() != 0, reason="the demo's namespace needs root")]

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
RUN = [
    "demo-partition",
    "demo-loss",
    "demo-bandwidth",
    "demo-link-down",
    "demo-proxy",
    "demo-stress",
    "demo-time",
    "demo-time-running",
    "demo-io",
    "demo-dns",
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoInfo]:
    directory = tmp_path_factory.mktemp("demo")
    try:
        # payments under the clock shim (at rest, +0) for demo-time's time.skew, as
        # `harness demo up --clock-shim payments` starts it
        info = up(directory=directory, base_port=DEFAULT_BASE_PORT, restart_delay=3.0, clock_shims=("payments",))
        assert info.payments_netns is not None, info.note
        yield info
    finally:
        down(directory=directory)


def _run(name: str, tmp: Path, influx_url: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    env = {**os.environ, "HARNESS_RUNS_DIR": str(tmp / "runs")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "run",
            str(SCENARIOS / f"{name}.yaml"),
            "--run-id",
            name,
            "--results-url",
            influx_url,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    path = tmp / "runs" / name / "summary.json"
    return done, json.loads(path.read_text()) if path.exists() else {}


@pytest.mark.parametrize("name", RUN)
def test_example_scenario_behaves_as_its_slos_say(name: str, demo: DemoInfo, influxd: Any, tmp_path: Path) -> None:
    influxd.create_database("harness")
    done, summary = _run(name, tmp_path, influxd.url)
    for slo in summary.get("slos", []):
        print(f"{name}: {slo.get('name')} {slo.get('window')} measured {slo.get('measured')} ({slo.get('passed')})")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert summary["verdict"] == "passed"
    left = [item.describe() for item in sweep.find()]
    assert left == [], f"left behind after {name}: {left}"


def test_netem_scenario_is_refused_where_the_kernel_has_no_netem(demo: DemoInfo, influxd: Any, tmp_path: Path) -> None:
    from harness.chaos import netem_probe as netem

    influxd.create_database("harness")
    has_netem, why = netem.available()
    done, summary = _run("demo-netem", tmp_path, influxd.url)
    if has_netem:  # a kernel with netem runs it like the others
        assert done.returncode == 0, done.stdout[-4000:]
        return
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "needs netem" in done.stdout + done.stderr, why
    assert summary == {}  # refused before the run existed


def test_http_rules_act_on_their_routes_only(demo: DemoInfo, influxd: Any, tmp_path: Path) -> None:
    """``demo-http.yaml``: route-matched HTTP faults, by what Locust saw.

    A 50% 503 rule on ``POST /api/checkout/*`` (transparent, on the gateway's port): the 503
    count among the n checkouts of the phase is Binomial(n, 0.5); it must lie within 4 standard
    deviations (sqrt(n)/2 each; a false failure about once in 16,000 runs), while product pages
    and cart additions in the same phase fail not once. A 200 ms delay rule on
    ``GET /api/products/*`` moves the product pages' p50 by 200 ms +/- 20 ms against the phase
    before any fault (the transparent proxy's own cost is well under 1 ms here), while the product
    list and search (other routes, same service) move by less than 20 ms. The scenario's own SLOs
    say the same more loosely; the sweep finds nothing left."""
    influxd.create_database("harness")
    done, summary = _run("demo-http", tmp_path, influxd.url)
    slos = {slo["name"]: slo for slo in summary.get("slos", [])}
    for slo in slos.values():
        print(f"demo-http: {slo['name']} {slo['window']} n={slo['requests']} measured {slo['measured']}")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert sweep.find() == []

    checkouts = slos["checkouts-fail-at-about-half"]
    n, k = checkouts["requests"], round(checkouts["measured"] * checkouts["requests"])
    assert n >= 40, f"too few checkouts ({n}) for the share to mean anything"
    assert abs(k - n / 2) <= 4 * math.sqrt(n) / 2, f"{k} 503s among {n} checkouts"
    assert slos["checkouts-not-all-fail"]["measured"] * n == pytest.approx(k, abs=0.5), "failures other than 503s"
    for name in ("product-pages-untouched-by-checkout-503s", "cart-untouched-by-checkout-503s"):
        assert slos[name]["requests"] > 100 and slos[name]["measured"] == 0, slos[name]

    before = slos["product-pages-before"]["measured"]
    held = slos["product-pages-held-200ms"]["measured"]
    assert abs(held - before - 200) <= 20, f"product pages p50 {before:.1f} ms -> {held:.1f} ms"
    for before, during in (("product-list-before", "product-list-not-held"), ("search-before", "search-not-held")):
        moved = slos[during]["measured"] - slos[before]["measured"]
        assert abs(moved) < 20, f"{during}: p50 moved {moved:+.1f} ms"


def _breaker_metrics(base_url: str) -> dict[str, float]:
    """The gateway's breaker series from its /metrics: state, rejected, and each transition
    as ``from->to``."""
    from prometheus_client.parser import text_string_to_metric_families

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{base_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("breaker") != "payments":
                continue
            if sample.name == "demo_circuit_breaker_transitions_total":
                out[f"{sample.labels['from_state']}->{sample.labels['to_state']}"] = sample.value
            elif sample.name in ("demo_circuit_breaker_state", "demo_circuit_breaker_rejected_total"):
                out[sample.name] = sample.value
    return out


@contextlib.contextmanager
def _demo_with_breaker(demo: DemoInfo, directory: Path) -> Iterator[DemoInfo]:
    """The module's demo swapped for one with the breaker on (``harness demo up --breaker-failures 5``,
    as demo-breaker.yaml says), on the same ports; the module's demo is started again after."""
    down(directory=Path(demo.directory))
    try:
        yield up(directory=directory, base_port=DEFAULT_BASE_PORT, restart_delay=3.0, breaker=BreakerSettings(5, 2.0))
    finally:
        down(directory=directory)
        up(directory=Path(demo.directory), base_port=DEFAULT_BASE_PORT, restart_delay=3.0, clock_shims=("payments",))


def test_breaker_opens_fails_fast_and_closes(demo: DemoInfo, influxd: Any, tmp_path: Path) -> None:
    """``demo-breaker.yaml``: under a payments partition the gateway's breaker opens, failed
    checkouts take under 50 ms at p99 once it is open (they take 2.1 s without it), and it closes
    after the cut; the gateway's own /metrics says the same: it went closed -> open, tried
    (open -> half-open), closed again (half-open -> closed) and failed calls fast."""
    influxd.create_database("harness")
    with _demo_with_breaker(demo, tmp_path / "breaker-demo") as breaker_demo:
        before = _breaker_metrics(breaker_demo.base_url)
        done, summary = _run("demo-breaker", tmp_path, influxd.url)
        after = _breaker_metrics(breaker_demo.base_url)
    slos = {slo["name"]: slo for slo in summary.get("slos", [])}
    for slo in slos.values():
        print(f"demo-breaker: {slo['name']} {slo['window']} n={slo['requests']} measured {slo['measured']}")
    print(f"demo-breaker: breaker metrics before {before} after {after}")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert summary["verdict"] == "passed"
    assert slos["checkouts-fail-fast"]["requests"] > 100  # enough failed checkouts for a p99
    for transition in ("closed->open", "open->half-open", "half-open->closed"):
        assert after.get(transition, 0) > before.get(transition, 0), (transition, before, after)
    assert after["demo_circuit_breaker_rejected_total"] > before["demo_circuit_breaker_rejected_total"] + 100
    assert after["demo_circuit_breaker_state"] == 0  # closed at the end
    assert sweep.find() == []
