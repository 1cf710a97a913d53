"""End-to-end tests of the demo shop with its real processes: services, supervisor, control.

Each demo runs in a temporary directory on free ports away from 8700, so a user's own
``harness demo up`` is never touched, and every demo is stopped in a ``finally``.
HTTP goes through urllib (no gevent in the pytest process) with proxies disabled.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.demo import control
from harness.demo.control import DEMO_PROCESS_PATTERN, DemoInfo, process_pattern
from harness.demo.supervisor import PORT_OFFSETS
from harness.errors import ConfigError

pytestmark = pytest.mark.timeout(180)

RESTART_DELAY = 2.0
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base_port() -> int:
    """A base port with the demo's ports free, well away from the default 8700."""
    from harness.demo.supervisor import PORTS_USED

    for base in range(18900, 19900, 10):
        if all(_port_free(base + offset) for offset in range(PORTS_USED)):
            return base
    raise RuntimeError(f"no free block of {PORTS_USED} ports in 18900-19900")


def call(method: str, url: str, body: dict[str, Any] | None = None, timeout: float = 10.0) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with _HTTP.open(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def checkout(base_url: str) -> tuple[int, Any, float]:
    """Add an item to a fresh cart and check out: (status, body, seconds the checkout took)."""
    session = f"t{uuid.uuid4().hex[:12]}"
    status, _ = call("POST", f"{base_url}/api/cart/{session}/items", {"product_id": 7, "qty": 2})
    assert status == 200
    started = time.monotonic()
    status, body = call("POST", f"{base_url}/api/checkout/{session}")
    return status, body, time.monotonic() - started


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def pid_from_file(directory: Path, name: str) -> int | None:
    try:
        return int((directory / f"{name}.pid").read_text())
    except (OSError, ValueError):
        return None


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoInfo]:
    directory = tmp_path_factory.mktemp("demo")
    try:
        yield control.up(directory, base_port=free_base_port(), restart_delay=RESTART_DELAY, timeout=30)
    finally:
        control.down(directory)


# ---------------------------------------------------------------------------------------------
# the shop
# ---------------------------------------------------------------------------------------------


def test_gateway_serves_the_shop(demo: DemoInfo) -> None:
    base = demo.base_url
    status, health = call("GET", f"{base}/health")
    assert status == 200
    assert health["downstreams"] == {"catalog": "ok", "cart": "ok", "payments": "ok"}

    status, home = call("GET", f"{base}/")
    assert status == 200 and len(home["featured"]) == 8

    status, products = call("GET", f"{base}/api/products")
    assert status == 200 and products["count"] == len(products["products"]) == 50

    status, product = call("GET", f"{base}/api/products/12")
    assert status == 200 and product["id"] == 12
    assert call("GET", f"{base}/api/products/999")[0] == 404

    status, found = call("GET", f"{base}/api/search?q=lamp")
    assert status == 200 and found["count"] > 0
    assert all("lamp" in hit["name"].lower() for hit in found["results"])


def test_cart_and_checkout(demo: DemoInfo) -> None:
    base, session = demo.base_url, "cart-test"
    status, cart = call("POST", f"{base}/api/cart/{session}/items", {"product_id": 3, "qty": 2})
    assert status == 200 and cart["count"] == 2 and cart["total"] > 0
    status, cart = call("GET", f"{base}/api/cart/{session}")
    assert status == 200 and cart["items"][0]["product_id"] == 3

    status, order = call("POST", f"{base}/api/checkout/{session}")
    assert status == 200, order
    assert order["status"] == "confirmed" and order["charge_id"].startswith("ch_")
    # payments journaled the charge (fsynced) before approving it
    port = int(demo.base_url.rsplit(":", 1)[1]) + 3
    journal = Path(f"/tmp/harness-demo-payments-{port}/charges.jsonl").read_text().splitlines()
    assert any(json.loads(line)["id"] == order["charge_id"] for line in journal), journal[-3:]
    assert call("GET", f"{base}/api/cart/{session}")[1]["items"] == []
    assert call("POST", f"{base}/api/checkout/{session}")[0] == 409  # nothing left to buy

    assert call("POST", f"{base}/api/cart/{session}/items", {"product_id": 3})[0] == 400
    assert call("POST", f"{base}/api/cart/{session}/items", {"product_id": 999, "qty": 1})[0] == 404


def _metrics(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    with _HTTP.open(url, timeout=10.0) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_every_service_serves_prometheus_metrics(demo: DemoInfo) -> None:
    """GET /metrics on each service's own port (payments' inside its namespace, where it listens)
    counts what that service answered, per route pattern; the gateway adds its breaker."""
    base_port = int(demo.base_url.rsplit(":", 1)[1])
    assert checkout(demo.base_url)[0] == 200
    payments_host = demo.payments_netns.payments_address if demo.payments_netns else "127.0.0.1"
    where = {"gateway": "127.0.0.1", "catalog": "127.0.0.1", "cart": "127.0.0.1", "payments": payments_host}
    routes = {
        "gateway": ("POST", "/api/checkout/{session}"),
        "catalog": ("GET", "/products/{product_id}"),
        "cart": ("GET", "/cart/{session}"),
        "payments": ("POST", "/charge"),
    }
    for name, host in where.items():
        samples = _metrics(f"http://{host}:{base_port + PORT_OFFSETS[name]}/metrics")
        method, route = routes[name]
        labels = {("service", name), ("method", method), ("route", route)}
        assert samples[("demo_http_requests_total", frozenset({*labels, ("code", "200")}))] >= 1, name
        assert samples[("demo_http_request_duration_seconds_count", frozenset(labels))] >= 1, name
        assert samples[("demo_http_requests_in_flight", frozenset(labels))] == 0, name
        assert ("demo_http_request_errors_total", frozenset(labels)) in samples, name
    gateway = _metrics(f"{demo.base_url}/metrics")
    assert gateway[("demo_circuit_breaker_state", frozenset({("service", "gateway"), ("breaker", "payments")}))] == 0
    assert call("GET", f"{demo.base_url}/health")[1]["breakers"] == {"payments": "closed"}


def test_up_is_idempotent_and_status_matches(demo: DemoInfo) -> None:
    again = control.up(demo.directory, base_port=int(demo.base_url.rsplit(":", 1)[1]))
    assert again.supervisor_pid == demo.supervisor_pid
    assert again.pids == control.up(demo.directory, base_port=int(demo.base_url.rsplit(":", 1)[1])).pids
    current = control.status(demo.directory)
    assert current["supervisor"] == demo.supervisor_pid
    assert {name: current[name] for name in again.pids} == again.pids
    with pytest.raises(ConfigError, match="already runs on base port"):
        control.up(demo.directory, base_port=free_base_port())


def test_process_patterns_match_the_service_command_lines(demo: DemoInfo) -> None:
    base_port = int(demo.base_url.rsplit(":", 1)[1])
    for name, pid in demo.pids.items():
        cmdline = " ".join(psutil.Process(pid).cmdline())
        assert re.search(DEMO_PROCESS_PATTERN[name], cmdline)
        assert re.search(process_pattern(name, base_port), cmdline)
        others = [other for other in DEMO_PROCESS_PATTERN if other != name]
        assert not any(re.search(DEMO_PROCESS_PATTERN[other], cmdline) for other in others)


@pytest.mark.skipif(os.geteuid() != 0, reason="the payments namespace needs root")
def test_payments_runs_in_its_own_namespace_behind_the_proxy(demo: DemoInfo) -> None:
    """Only gateway -> proxy -> payments crosses the veth: a fault on it singles payments out."""
    net = demo.payments_netns
    assert net is not None, demo.note
    assert net.netns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    payments = psutil.Process(demo.pids["payments"])
    assert os.readlink(f"/proc/{payments.pid}/ns/net") != os.readlink("/proc/self/ns/net")
    listening = subprocess.run(["ip", "netns", "exec", net.netns, "ss", "-Hltn"], capture_output=True, text=True)
    assert f"{net.payments_address}:{int(demo.base_url.rsplit(':', 1)[1]) + 3} " in listening.stdout
    # the proxy forwards there: a checkout goes through
    base = demo.base_url
    assert call("POST", f"{base}/api/cart/ns-check/items", {"product_id": 3, "qty": 1})[0] in (200, 201)
    assert call("POST", f"{base}/api/checkout/ns-check")[0] == 200
    proxy_health = call("GET", f"http://127.0.0.1:{int(base.rsplit(':', 1)[1]) + 5}/health")[1]
    assert proxy_health["requests"] >= 1


def test_gateway_finds_payments_by_name_through_the_demo_dns(demo: DemoInfo) -> None:
    """The gateway resolves payments.shop.demo with the demo's DNS for each new connection: while
    that name does not resolve, checkouts fail and product pages do not; after, checkouts work."""
    from harness.chaos.families.dns import control as dns_control
    from harness.demo.supervisor import DNS_CONTROL_OFFSET, PAYMENTS_NAME

    base = demo.base_url
    dns = f"127.0.0.1:{int(base.rsplit(':', 1)[1]) + DNS_CONTROL_OFFSET}"
    assert call("POST", f"{base}/api/cart/dns-check/items", {"product_id": 3, "qty": 1})[0] in (200, 201)
    assert call("POST", f"{base}/api/checkout/dns-check")[0] == 200
    assert dns_control.health(dns)[1]["static"] >= 1  # the gateway asked the demo's DNS
    dns_control.put(dns, "test:nx", {"kind": "error", "patterns": [PAYMENTS_NAME], "error": "nxdomain"})
    try:
        time.sleep(1.2)  # the gateway retires a connection 1 s after opening it, then asks the DNS again
        assert call("POST", f"{base}/api/cart/dns-check/items", {"product_id": 3, "qty": 1})[0] in (200, 201)
        status, body = call("POST", f"{base}/api/checkout/dns-check")
        assert (status, body["error"]) == (503, "payments unavailable"), body
        assert call("GET", f"{base}/api/products/3")[0] == 200
        assert call("GET", f"{base}/health")[1]["downstreams"]["payments"] == "unavailable"
        assert dns_control.health(dns)[1]["by_fault"]["test:nx"] >= 2  # the charge and its retry
    finally:
        dns_control.delete(dns, "test:nx")
    assert call("POST", f"{base}/api/checkout/dns-check")[0] == 200


# ---------------------------------------------------------------------------------------------
# chaos: kill and pause payments
# ---------------------------------------------------------------------------------------------


def test_killed_payments_fails_checkout_then_is_restarted(demo: DemoInfo) -> None:
    assert checkout(demo.base_url)[0] == 200
    old_pid = pid_from_file(demo.directory, "payments")
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    killed_at = time.monotonic()
    assert wait_for(lambda: gone(old_pid), 2.0)

    status, body, took = checkout(demo.base_url)
    assert status == 503 and body == {"error": "payments unavailable"}
    assert took < 2.0 and time.monotonic() - killed_at < 2.0

    assert wait_for(lambda: checkout(demo.base_url)[0] == 200, RESTART_DELAY + 15, interval=0.2)
    assert time.monotonic() - killed_at >= RESTART_DELAY - 0.2  # restarted after the delay, not at once
    new_pid = pid_from_file(demo.directory, "payments")
    assert new_pid is not None and new_pid != old_pid
    assert control.status(demo.directory)["payments"] == new_pid


def test_paused_payments_times_out_and_is_not_restarted(demo: DemoInfo) -> None:
    pid = pid_from_file(demo.directory, "payments")
    assert pid is not None and checkout(demo.base_url)[0] == 200
    os.kill(pid, signal.SIGSTOP)
    try:
        paused_at = time.monotonic()
        status, body, took = checkout(demo.base_url)
        assert status == 503 and body == {"error": "payments unavailable"}
        assert 1.9 <= took < 6.0  # 1 s deadline, a short backoff, 1 s deadline again
        time.sleep(max(0.0, paused_at + RESTART_DELAY + 1.0 - time.monotonic()))
        assert psutil.Process(pid).status() == psutil.STATUS_STOPPED
        assert pid_from_file(demo.directory, "payments") == pid  # not dead, so not restarted
    finally:
        os.kill(pid, signal.SIGCONT)
    status, body, took = checkout(demo.base_url)
    assert status == 200, body
    assert pid_from_file(demo.directory, "payments") == pid


# ---------------------------------------------------------------------------------------------
# start-up and shutdown
# ---------------------------------------------------------------------------------------------


def test_ports_taken_raise_config_error(tmp_path: Path) -> None:
    base = free_base_port()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT from earlier tests
        squatter.bind(("127.0.0.1", base + 3))
        squatter.listen()
        with pytest.raises(ConfigError, match=f"{base + 3} \\(payments\\)"):
            control.up(tmp_path, base_port=base, timeout=10)
    assert control.status(tmp_path) == dict.fromkeys(["supervisor", *DEMO_PROCESS_PATTERN])
    assert not (tmp_path / "supervisor.pid").exists()


def test_down_stops_everything_and_frees_the_ports(tmp_path: Path) -> None:
    base = free_base_port()
    try:
        info = control.up(tmp_path, base_port=base, restart_delay=RESTART_DELAY, timeout=30)
        pids = [info.supervisor_pid, *info.pids.values()]
        os.kill(info.pids["payments"], signal.SIGSTOP)  # a paused service must not block shutdown
        assert control.down(tmp_path) is True
        assert wait_for(lambda: all(gone(pid) for pid in pids), 5.0)
        assert all(_port_free(base + offset) for offset in range(6))
        assert not list(tmp_path.glob("*.pid"))
        namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert f"hdemo-{base}" not in namespaces  # payments' namespace went with it
        assert control.status(tmp_path) == dict.fromkeys(["supervisor", *DEMO_PROCESS_PATTERN])
        assert control.down(tmp_path) is False
    finally:
        control.down(tmp_path)


def test_services_die_with_their_supervisor(tmp_path: Path) -> None:
    base = free_base_port()
    try:
        info = control.up(tmp_path, base_port=base, restart_delay=RESTART_DELAY, timeout=30)
        os.kill(info.supervisor_pid, signal.SIGKILL)
        assert wait_for(lambda: all(gone(pid) for pid in info.pids.values()), 5.0)
        assert control.status(tmp_path) == dict.fromkeys(["supervisor", *DEMO_PROCESS_PATTERN])
        control.down(tmp_path)
        assert not list(tmp_path.glob("*.pid"))
    finally:
        control.down(tmp_path)


def test_up_that_times_out_leaves_nothing_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A demo that never reports healthy: up() gives up at its timeout and stops all it started.

    The gateway's health is made to answer "not yet", so the timeout is certain on any machine
    (a short timeout was not: a demo starts in about 0.9 s here, and a fast machine could beat
    0.3 s). up() asks for health only once every service has a live pid, so the services it
    must stop have really started.
    """
    started: list[dict[str, int | None]] = []

    def never_healthy(base_url: str, all_healthy: bool) -> bool:
        started.append(control.status(tmp_path))
        return False

    monkeypatch.setattr(control, "_healthy", never_healthy)
    with pytest.raises(control.DemoError, match="not healthy within"):
        control.up(tmp_path, base_port=free_base_port(), timeout=3.0)
    assert control.status(tmp_path) == dict.fromkeys(["supervisor", *DEMO_PROCESS_PATTERN])
    assert not list(tmp_path.glob("*.pid"))
    seen = {pid for status in started for pid in status.values() if pid is not None}
    print(f"health asked {len(started)} times; {len(seen)} demo processes seen, all stopped")
    assert wait_for(lambda: all(gone(pid) for pid in seen), 5.0), [p for p in seen if not gone(p)]
