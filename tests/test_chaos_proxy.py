"""Proxy faults measured with real parts: a real HTTP service, the real proxy subprocess, a real client.

The service is ``tests/proxy_upstream.py`` (stdlib threaded HTTP/1.1, keep-alive) on loopback;
the explicit-mode proxy is ``python -m harness.chaos.proxy_server`` started once per module.
Transparent mode runs against a namespace this module creates (veth pair on 10.213.79.0/24,
the service inside it), reached both from the host (nat prerouting) and from inside the
namespace (nat output). Every fixture stops what it started by PID and deletes what it made,
also when a test fails; every request loop is bounded in count and time.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from pydantic import TypeAdapter

from harness.chaos.families import proxy
from harness.chaos.families.proxy import transparent
from harness.chaos.journal import FaultState, Journal
from harness.chaos.recover import revert_record
from harness.errors import ConfigError, FaultError
from harness.scenario import Fault

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM = str(ROOT / "tests" / "proxy_upstream.py")
FAULT: TypeAdapter[Any] = TypeAdapter(Fault)

NS = f"hprx{os.getpid()}"
VETH_HOST, VETH_NS = f"hph{os.getpid() % 100000}", f"hpn{os.getpid() % 100000}"
ADDR_HOST, ADDR_NS, NS_PORT = "10.213.79.1", "10.213.79.2", 8080
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and nftables")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(child: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> int | None:
    """Stop a child we started, by its PID: ``sig``, then SIGKILL after 5 s; its exit status."""
    if child.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(sig)
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=5)
    return child.returncode


def _start_upstream(address: str, netns: str | None = None) -> subprocess.Popen[str]:
    cmd = [sys.executable, UPSTREAM, address, "600"]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    return child


def _start_proxy(upstream: str, log_path: Path, workers: int | None = None) -> tuple[subprocess.Popen[str], str, str]:
    """A proxy subprocess on free loopback ports (``workers`` processes, default its own);
    (child, listen, control) from its ready line."""
    with log_path.open("ab") as log:
        child = subprocess.Popen(
            [
                *(sys.executable, "-m", "harness.chaos.proxy_server"),
                *(("--workers", str(workers)) if workers is not None else ()),
                *("--listen", "127.0.0.1:0", "--upstream", upstream, "--control", "127.0.0.1:0"),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=ROOT,
        )
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line:
        _stop(child)
        pytest.fail(f"proxy did not start: {log_path.read_text()[-500:]}")
    ready = json.loads(line)
    return child, ready["listen"], ready["control"]


def _control(control: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    host, port = control.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body))
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
    finally:
        conn.close()


class Client:
    """One kept-alive HTTP/1.1 connection, reopened after the server (or a fault) closed it."""

    def __init__(self, address: str, timeout: float = 10.0) -> None:
        host, port = address.rsplit(":", 1)
        self.host, self.port, self.timeout = host, int(port), timeout
        self.conn: http.client.HTTPConnection | None = None

    def get(self, path: str = "/ok", body: bytes | None = None) -> tuple[int, bytes, float]:
        """(status, body, seconds from send to the last byte)."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self.conn.connect()
            self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        began = time.perf_counter()
        try:
            self.conn.request("POST" if body is not None else "GET", path, body=body)
            response = self.conn.getresponse()
            data = response.read()
        except BaseException:
            self.close()
            raise
        seconds = time.perf_counter() - began
        if response.will_close:
            self.close()
        return response.status, data, seconds

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    address = f"127.0.0.1:{_free_port()}"
    child = _start_upstream(address)
    try:
        yield address
    finally:
        _stop(child)


@pytest.fixture(scope="module")
def running_proxy(upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(listen, control) of one proxy for the module; it must stop cleanly (exit 0) on SIGTERM."""
    child, listen, control = _start_proxy(upstream, tmp_path_factory.mktemp("proxy") / "proxy.log")
    try:
        yield listen, control
    finally:
        assert _stop(child) == 0, "the proxy did not exit cleanly on SIGTERM"


@pytest.fixture
def journal(tmp_path: Path, running_proxy: tuple[str, str]) -> Iterator[Journal]:
    """A fresh journal; whatever a test left journaled is reverted, and the proxy must hold no fault."""
    j = Journal(f"proxy-test.{os.getpid()}", tmp_path / "journal")
    try:
        yield j
    finally:
        for record in j.outstanding():
            with contextlib.suppress(Exception):
                revert_record(record, j)
        _control(running_proxy[1], "DELETE", "/faults")


def _fault(kind: str, params: dict[str, Any], name: str | None = None, **target: Any) -> Any:
    return FAULT.validate_python(
        {
            "name": name or kind.split(".")[1],
            "kind": kind,
            "at": 0,
            "duration": 30,
            "target": target,
            "params": params,
        }
    )


def _faults(control: str) -> dict[str, Any]:
    status, answer = _control(control, "GET", "/faults")
    assert status == 200
    return dict(answer["faults"])


def _median_seconds(client: Client, count: int, budget: float = 20.0) -> float:
    times: list[float] = []
    deadline = time.monotonic() + budget
    for _ in range(count):
        assert time.monotonic() < deadline, "request loop ran out of time"
        status, _, seconds = client.get()
        assert status == 200
        times.append(seconds)
    return statistics.median(times)


# ---------------------------------------------------------------- the control API


def test_control_api_is_idempotent_and_validates(running_proxy: tuple[str, str]) -> None:
    _, control = running_proxy
    spec = {"kind": "proxy.abort", "status": 503, "percent": 10}
    assert _control(control, "PUT", "/faults/a", spec)[0] == 201
    assert _control(control, "PUT", "/faults/a", spec)[0] == 200  # PUT twice = one fault
    assert _faults(control) == {"a": {"kind": "proxy.abort", "status": 503, "percent": 10.0}}
    assert _control(control, "PUT", "/faults/b", {"kind": "latency", "latency": 0.01})[0] == 201  # short kind
    assert _faults(control)["b"] == {"kind": "proxy.latency", "latency": 0.01, "jitter": 0.0}
    for bad in (
        {"kind": "proxy.nope"},
        {"kind": "proxy.abort", "status": 700, "percent": 5},
        {"kind": "proxy.reset", "percent": 0},
        {"kind": "proxy.latency"},
        {"kind": "proxy.bandwidth", "rate": 1000, "burst": 3},
    ):
        status, answer = _control(control, "PUT", "/faults/c", bad)
        assert status == 400 and answer["error"], bad
    assert _control(control, "DELETE", "/faults/a")[0] == 204
    assert _control(control, "DELETE", "/faults/a")[0] == 404
    assert _control(control, "DELETE", "/faults")[0] == 204
    assert _faults(control) == {}
    status, health = _control(control, "GET", "/health")
    assert status == 200 and health["status"] == "ok" and health["faults"] == 0
    assert {"requests", "aborted", "reset", "bytes", "connections"} <= set(health)


def test_forwards_plain_tcp_and_http_bodies(running_proxy: tuple[str, str]) -> None:
    listen, _ = running_proxy
    client = Client(listen)
    try:
        for size in (0, 1, 70_000, 300_000):  # bodies split across reads, larger than one recv
            status, data, _ = client.get("/echo", body=b"y" * size)
            assert (status, data) == (200, str(size).encode())
        status, data, _ = client.get("/bytes/200000")
        assert status == 200 and len(data) == 200_000
    finally:
        client.close()


def test_non_http_bytes_are_forwarded_as_plain_tcp(running_proxy: tuple[str, str]) -> None:
    """Not a request line: forwarded untouched (the service's own 400 page comes back); a reset still acts."""
    listen, control = running_proxy
    host, port = listen.rsplit(":", 1)

    def exchange() -> bytes:
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)

    assert b"Error code explanation: 400" in exchange()  # the stdlib answers a non-request HTTP/0.9-style
    assert _control(control, "PUT", "/faults/r", {"kind": "reset"})[0] == 201
    try:
        with pytest.raises(ConnectionResetError):
            exchange()
    finally:
        _control(control, "DELETE", "/faults/r")


# ---------------------------------------------------------------- explicit mode, measured


def test_latency_adds_50ms_within_10_percent(running_proxy: tuple[str, str], journal: Journal) -> None:
    listen, control = running_proxy
    client = Client(listen)
    try:
        _median_seconds(client, 10)  # warm up
        baseline = _median_seconds(client, 40)
        fault = _fault("proxy.latency", {"latency": "50ms"}, control=control)
        record = proxy.inject(fault, journal.run_id, journal)
        assert record.state is FaultState.INJECTED
        assert proxy.proxy_fault_name(journal.run_id, fault.name) in _faults(control)
        with_fault = _median_seconds(client, 40)
        proxy.revert(record, journal)
        after = _median_seconds(client, 20)
    finally:
        client.close()
    added = with_fault - baseline
    print(f"baseline {baseline * 1000:.2f} ms, with fault {with_fault * 1000:.2f} ms, added {added * 1000:.2f} ms")
    assert abs(added - 0.050) <= 0.005, f"added {added * 1000:.2f} ms, want 50 ms +/- 10%"
    assert after < baseline + 0.005
    assert _faults(control) == {}
    assert journal.latest(fault.name).state is FaultState.REVERTED  # type: ignore[union-attr]


def test_abort_20_percent_with_503(running_proxy: tuple[str, str], journal: Journal) -> None:
    """1000 requests, each aborted with p = 0.2: the count is Binomial(1000, 0.2), sd = sqrt(1000 *
    0.2 * 0.8) = 12.6 requests = 1.26%. The issue's +/- 5% is about 4 sd (a false failure about
    once in 16,000 runs); the 3-sd band (20% +/- 3.8%) is checked too, as the tighter claim."""
    listen, control = running_proxy
    fault = _fault("proxy.abort", {"status": 503, "percent": 20}, control=control)
    record = proxy.inject(fault, journal.run_id, journal)
    n0 = _control(control, "GET", "/health")[1]
    client = Client(listen)
    statuses: list[int] = []
    deadline = time.monotonic() + 60
    try:
        for _ in range(1000):
            assert time.monotonic() < deadline
            status, data, _ = client.get()
            statuses.append(status)
            assert data == b"ok\n" if status == 200 else b"aborted with 503" in data
        proxy.revert(record, journal)
        assert {client.get()[0] for _ in range(50)} == {200}
    finally:
        client.close()
    health = _control(control, "GET", "/health")[1]
    share = statuses.count(503) / len(statuses)
    print(f"503 share {share:.3f} over {len(statuses)} requests")
    assert set(statuses) <= {200, 503}
    assert abs(share - 0.20) <= 0.05
    assert abs(share - 0.20) <= 3 * math.sqrt(0.2 * 0.8 / 1000)
    assert health["aborted"] - n0["aborted"] == statuses.count(503)
    assert health["connections"] - n0["connections"] == 1, "an abort must keep the connection usable"


def test_reset_closes_connections_and_revert_restores(running_proxy: tuple[str, str], journal: Journal) -> None:
    listen, control = running_proxy
    fault = _fault("proxy.reset", {}, control=control)
    record = proxy.inject(fault, journal.run_id, journal)
    client = Client(listen)
    try:
        for _ in range(3):
            with pytest.raises(ConnectionResetError):
                client.get()
        proxy.revert(record, journal)
        assert [client.get()[0] for _ in range(20)] == [200] * 20
    finally:
        client.close()
    assert _control(control, "GET", "/health")[1]["reset"] >= 3


def test_reset_share(running_proxy: tuple[str, str], journal: Journal) -> None:
    """30% of 300 requests reset: sd = sqrt(300 * 0.3 * 0.7) = 7.9 requests; +/- 4 sd accepted."""
    listen, control = running_proxy
    record = proxy.inject(_fault("proxy.reset", {"percent": 30}, control=control), journal.run_id, journal)
    client = Client(listen)
    resets = 0
    try:
        for _ in range(300):
            try:
                client.get()
            except ConnectionResetError:
                resets += 1
    finally:
        client.close()
        proxy.revert(record, journal)
    assert abs(resets - 90) <= 4 * math.sqrt(300 * 0.3 * 0.7)


def test_bandwidth_within_20_percent(running_proxy: tuple[str, str], journal: Journal) -> None:
    """1 MiB down and 512 KiB up at 8 mbit/s (1 MB/s): about 1.05 s and 0.52 s."""
    listen, control = running_proxy
    client = Client(listen, timeout=30)
    try:
        _, _, direct = client.get("/bytes/1048576")
        record = proxy.inject(_fault("proxy.bandwidth", {"rate": "8mbit"}, control=control), journal.run_id, journal)
        status, data, down = client.get("/bytes/1048576")
        assert status == 200 and len(data) == 1048576
        status, data, up = client.get("/echo", body=b"z" * 524288)
        assert (status, data) == (200, b"524288")
        proxy.revert(record, journal)
        _, _, after = client.get("/bytes/1048576")
    finally:
        client.close()
    rate_down, rate_up = 1048576 * 8 / down, 524288 * 8 / up
    print(f"direct {direct:.3f} s; limited: down {rate_down / 1e6:.2f} mbit/s, up {rate_up / 1e6:.2f} mbit/s")
    assert direct < 0.25 and after < 0.25
    assert abs(rate_down - 8e6) <= 0.2 * 8e6
    assert abs(rate_up - 8e6) <= 0.2 * 8e6


def test_explicit_inject_twice_revert_once_leaves_nothing(running_proxy: tuple[str, str], journal: Journal) -> None:
    _, control = running_proxy
    fault = _fault("proxy.abort", {"status": 500, "percent": 50}, control=control)
    first = proxy.inject(fault, journal.run_id, journal)
    second = proxy.inject(fault, journal.run_id, journal)
    assert second == first and len(_faults(control)) == 1
    proxy.revert(second, journal)
    proxy.revert(second, journal)
    assert _faults(control) == {}
    assert [r.state for r in journal.records()] == [FaultState.INJECTING, FaultState.INJECTED, FaultState.REVERTED]


def test_explicit_revert_from_the_journal_alone_and_after_the_proxy_died(upstream: str, tmp_path: Path) -> None:
    child, _, control = _start_proxy(upstream, tmp_path / "proxy.log")
    try:
        j = Journal("proxy-died.1", tmp_path / "journal")
        for name in ("one", "two"):
            proxy.inject(_fault("proxy.latency", {"latency": 0.01}, name=name, control=control), j.run_id, j)
        # "one" reverted by recover's code with nothing but the journal on disk:
        fresh = Journal("proxy-died.1", tmp_path / "journal")
        revert_record(fresh.latest("one"), fresh)  # type: ignore[arg-type]
        assert list(_faults(control)) == ["proxy-died.1:two"]
        _stop(child, signal.SIGKILL)
        revert_record(fresh.latest("two"), fresh)  # type: ignore[arg-type]
        latest = fresh.latest("two")
        assert latest is not None and latest.state is FaultState.REVERTED
        assert "no proxy listens" in str(latest.details["reverted"])
        assert fresh.outstanding() == []
    finally:
        _stop(child)


def test_inject_fails_cleanly_when_no_proxy_answers(tmp_path: Path) -> None:
    j = Journal("proxy-none.1", tmp_path / "journal")
    fault = _fault("proxy.abort", {"status": 503, "percent": 5}, control=f"127.0.0.1:{_free_port()}")
    with pytest.raises(FaultError, match="no fault proxy answers"):
        proxy.inject(fault, j.run_id, j)
    assert j.outstanding() == []
    with pytest.raises(ConfigError, match="no fault proxy answers"):
        proxy.check(fault)


def test_check_and_describe(running_proxy: tuple[str, str]) -> None:
    _, control = running_proxy
    fault = _fault("proxy.latency", {"latency": "50ms", "jitter": "5ms"}, control=control)
    proxy.check(fault)
    assert proxy.describe(fault) == (
        f"add 50ms +/- 5ms latency to each response through the fault proxy controlled at {control} for 30s"
    )
    transparent = _fault("proxy.abort", {"status": 503, "percent": 20}, service="10.1.2.3:80", netns="nope-ns-x")
    assert proxy.describe(transparent) == (
        "answer 20% of HTTP requests with 503 for 10.1.2.3:80 in netns nope-ns-x, "
        "through a proxy started for the fault (nftables redirect) for 30s"
    )
    with pytest.raises(ConfigError, match="network namespace 'nope-ns-x' does not exist"):
        proxy.check(transparent)


# ---------------------------------------------------------------- transparent mode


def _sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=10)


@pytest.fixture(scope="module")
def service_ns() -> Iterator[str]:
    """A namespace with the service on 10.213.79.2:8080, reachable from the host over a veth pair."""
    server: subprocess.Popen[str] | None = None
    try:
        _sh("ip", "netns", "add", NS)
        _sh("ip", "link", "add", VETH_HOST, "type", "veth", "peer", "name", VETH_NS, "netns", NS)
        _sh("ip", "addr", "add", f"{ADDR_HOST}/24", "dev", VETH_HOST)
        _sh("ip", "link", "set", VETH_HOST, "up")
        _sh("ip", "-n", NS, "addr", "add", f"{ADDR_NS}/24", "dev", VETH_NS)
        _sh("ip", "-n", NS, "link", "set", VETH_NS, "up")
        _sh("ip", "-n", NS, "link", "set", "lo", "up")
        server = _start_upstream(f"{ADDR_NS}:{NS_PORT}", NS)
        yield f"{ADDR_NS}:{NS_PORT}"
    finally:
        if server is not None:
            _stop(server)
        subprocess.run(["ip", "link", "delete", VETH_HOST], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "delete", NS], capture_output=True, timeout=10)


@pytest.fixture
def ns_journal(tmp_path: Path, service_ns: str) -> Iterator[Journal]:
    """A fresh journal; on the way out every fault is reverted and no proxy or table may be left."""
    j = Journal(f"proxy-ns.{os.getpid()}", tmp_path / "journal")
    try:
        yield j
    finally:
        for record in j.outstanding():
            with contextlib.suppress(Exception):
                revert_record(record, j)
        for pid in _proxies_of(j.run_id):  # a leftover is ours (tagged with this run): stop it, then fail
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()
        subprocess.run(
            ["ip", "netns", "exec", NS, "nft", "delete", "table", "ip", proxy.table_name(j.run_id)],
            capture_output=True,
            timeout=10,
        )


def _proxies_of(run_id: str) -> list[int]:
    """Live proxy processes whose environment tag names ``run_id``."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            ours = "harness.chaos.proxy_server" in (proc.info["cmdline"] or []) and proc.status() != "zombie"
            if ours and proc.environ().get(proxy.TAG, "").startswith(f"{run_id}/"):
                found.append(proc.pid)
    return sorted(found)


def _ns_tables() -> list[str]:
    out = subprocess.run(["ip", "netns", "exec", NS, "nft", "-j", "list", "tables"], capture_output=True, text=True)
    return [i["table"]["name"] for i in json.loads(out.stdout or "{}").get("nftables", []) if "table" in i]


NS_CLIENT = r"""
import http.client, json, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
statuses = []
for _ in range(n):
    c = http.client.HTTPConnection(host, port, timeout=5)
    try:
        c.request("GET", "/ok"); statuses.append(c.getresponse().status)
    except OSError as e:
        statuses.append(type(e).__name__)
    finally:
        c.close()
print(json.dumps(statuses))
"""


def _statuses_inside(n: int = 5) -> list[Any]:
    """Statuses of ``n`` fresh connections from inside the namespace to the service (nat output path)."""
    done = subprocess.run(
        ["ip", "netns", "exec", NS, sys.executable, "-c", NS_CLIENT, ADDR_NS, str(NS_PORT), str(n)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return list(json.loads(done.stdout))


def _statuses_from_host(n: int = 5) -> list[Any]:
    """Statuses of ``n`` fresh connections from the host into the namespace (nat prerouting path)."""
    out: list[Any] = []
    for _ in range(n):
        client = Client(f"{ADDR_NS}:{NS_PORT}", timeout=5)
        try:
            out.append(client.get()[0])
        except OSError as exc:
            out.append(type(exc).__name__)
        finally:
            client.close()
    return out


@ROOT_ONLY
def test_transparent_abort_applies_while_injected_and_not_after(service_ns: str, ns_journal: Journal) -> None:
    assert _statuses_inside() == [200] * 5 and _statuses_from_host() == [200] * 5
    fault = _fault("proxy.abort", {"status": 503, "percent": 100}, service=service_ns, netns=NS)
    proxy.check(fault)
    record = proxy.inject(fault, ns_journal.run_id, ns_journal)
    d = record.details
    assert record.state is FaultState.INJECTED and d["mode"] == "transparent"
    assert proxy.table_name(ns_journal.run_id) in _ns_tables()
    pid = int(d["proxy_pid"])
    # the proxy and its workers (one process per usable core, forked by it, tagged alike)
    workers = sorted(p.pid for p in psutil.Process(pid).children())
    assert len(workers) == len(os.sched_getaffinity(0)) - 1
    assert _proxies_of(ns_journal.run_id) == sorted([pid, *workers])
    assert _statuses_inside() == [503] * 5
    assert _statuses_from_host() == [503] * 5
    proxy.revert(record, ns_journal)
    assert _statuses_inside() == [200] * 5 and _statuses_from_host() == [200] * 5
    assert _ns_tables() == [] and _proxies_of(ns_journal.run_id) == []
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    assert not os.path.exists(str(d["workdir"]))
    assert ns_journal.outstanding() == []


@ROOT_ONLY
def test_transparent_latency(service_ns: str, ns_journal: Journal) -> None:
    """Host client, kept-alive connection opened while the redirect is in place: +100 ms."""
    fault = _fault("proxy.latency", {"latency": "100ms"}, service=service_ns, netns=NS)
    baseline_client = Client(service_ns)
    try:
        baseline = _median_seconds(baseline_client, 20)
    finally:
        baseline_client.close()
    record = proxy.inject(fault, ns_journal.run_id, ns_journal)
    client = Client(service_ns)
    try:
        added = _median_seconds(client, 20) - baseline
    finally:
        client.close()
        proxy.revert(record, ns_journal)
    assert abs(added - 0.100) <= 0.010, f"added {added * 1000:.1f} ms"


@ROOT_ONLY
def test_transparent_inject_twice_revert_once_leaves_nothing(service_ns: str, ns_journal: Journal) -> None:
    fault = _fault("proxy.reset", {"percent": 100}, service=service_ns, netns=NS)
    first = proxy.inject(fault, ns_journal.run_id, ns_journal)
    assert proxy.inject(fault, ns_journal.run_id, ns_journal) == first
    assert len(_proxies_of(ns_journal.run_id)) == len(os.sched_getaffinity(0))  # one proxy: its processes
    assert _statuses_inside(3) == ["ConnectionResetError"] * 3
    proxy.revert(first, ns_journal)
    assert _ns_tables() == [] and _proxies_of(ns_journal.run_id) == []
    assert _statuses_inside(3) == [200] * 3


@ROOT_ONLY
def test_transparent_revert_from_the_journal_alone_in_another_process(service_ns: str, ns_journal: Journal) -> None:
    fault = _fault("proxy.abort", {"status": 502, "percent": 100}, service=service_ns, netns=NS)
    proxy.inject(fault, ns_journal.run_id, ns_journal)
    assert _statuses_from_host(2) == [502, 502]
    script = (
        "import sys; from harness.chaos.journal import Journal; from harness.chaos.recover import revert_record\n"
        "j = Journal(sys.argv[1], sys.argv[2]); revert_record(j.latest(sys.argv[3]), j)\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, ns_journal.run_id, str(ns_journal.directory), fault.name],
        check=True,
        timeout=60,
        cwd=ROOT,
    )
    latest = ns_journal.latest(fault.name)
    assert latest is not None and latest.state is FaultState.REVERTED
    assert _ns_tables() == [] and _proxies_of(ns_journal.run_id) == []
    assert _statuses_from_host(2) == [200, 200]


@ROOT_ONLY
def test_transparent_revert_after_the_proxy_died(service_ns: str, ns_journal: Journal) -> None:
    fault = _fault("proxy.abort", {"status": 503, "percent": 100}, service=service_ns, netns=NS)
    record = proxy.inject(fault, ns_journal.run_id, ns_journal)
    os.kill(int(record.details["proxy_pid"]), signal.SIGKILL)
    proxy.revert(record, ns_journal)
    assert ns_journal.latest(fault.name).state is FaultState.REVERTED  # type: ignore[union-attr]
    assert _ns_tables() == [] and _statuses_inside(2) == [200, 200]


@ROOT_ONLY
def test_transparent_crash_before_the_pid_was_journaled(
    service_ns: str, ns_journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent killed right after starting the proxy: revert finds it by its environment tag."""
    real_start = transparent.start_proxy

    def start_then_die(d: dict[str, str | int]) -> tuple[int, int, int]:
        real_start(d)
        raise SystemExit("agent killed")  # not caught by inject: the journal says only "injecting"

    monkeypatch.setattr(transparent, "start_proxy", start_then_die)
    fault = _fault("proxy.abort", {"status": 503, "percent": 100}, service=service_ns, netns=NS)
    with pytest.raises(SystemExit):
        proxy.inject(fault, ns_journal.run_id, ns_journal)
    left = ns_journal.latest(fault.name)
    assert left is not None and left.state is FaultState.INJECTING and "proxy_pid" not in left.details
    assert len(_proxies_of(ns_journal.run_id)) == len(os.sched_getaffinity(0))  # one proxy: its processes
    revert_record(left, ns_journal)
    assert _proxies_of(ns_journal.run_id) == [] and _ns_tables() == []
    assert ns_journal.outstanding() == []


@ROOT_ONLY
def test_transparent_fault_reaches_a_kept_alive_connection(service_ns: str, ns_journal: Journal) -> None:
    """A pooled connection opened before inject is aborted once and comes back through the proxy."""
    client = Client(service_ns, timeout=5)
    try:
        assert client.get()[0] == 200  # connection established, kept alive
        fault = _fault("proxy.abort", {"status": 503, "percent": 100}, service=service_ns, netns=NS)
        record = proxy.inject(fault, ns_journal.run_id, ns_journal)
        assert int(record.details["aborted_connections"]) >= 1
        with pytest.raises(OSError):  # the old connection was aborted under the client
            client.get()
        assert [client.get()[0] for _ in range(3)] == [503] * 3  # reconnected: through the proxy
        proxy.revert(record, ns_journal)
        statuses = []
        for _ in range(3):  # the proxied connection closed with the proxy: reconnect, directly
            try:
                statuses.append(client.get()[0])
            except OSError:
                statuses.append(0)
        assert statuses[-2:] == [200, 200], statuses
    finally:
        client.close()
