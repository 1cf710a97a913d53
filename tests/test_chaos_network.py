"""Network faults measured with real traffic between two network namespaces this module creates.

Namespace A (10.213.77.1) is the fault's target; B (10.213.77.2) runs a small TCP sink and
UDP echo server. Every probe runs inside A through ``ip netns exec`` and is bounded in count
and time. The fixture deletes both namespaces (which takes the veth pair, any qdisc and any
nft table inside them along) also when a test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import TypeAdapter

from harness.chaos.families import network
from harness.chaos.journal import FaultState, Journal
from harness.chaos.recover import revert_record
from harness.scenario import Fault

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")

NS_A = f"hnetA{os.getpid()}"
NS_B = f"hnetB{os.getpid()}"
VETH_A = f"hva{os.getpid() % 100000}"
VETH_B = f"hvb{os.getpid() % 100000}"
ADDR_A, ADDR_B = "10.213.77.1", "10.213.77.2"
TCP_PORT, UDP_PORT = 7000, 7001

SERVER = r"""
import socket, threading, time, sys
deadline = time.monotonic() + float(sys.argv[1])
def tcp():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", __TCP__)); s.listen(64); s.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            c, _ = s.accept()
        except OSError:
            continue
        def serve(c=c):
            c.settimeout(30); n = 0
            try:
                while True:
                    b = c.recv(65536)
                    if not b:
                        break
                    n += len(b)
                c.sendall(str(n).encode())
            except OSError:
                pass
            c.close()
        threading.Thread(target=serve, daemon=True).start()
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", __UDP__)); u.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            b, a = u.recvfrom(2048)
        except OSError:
            continue
        u.sendto(b, a)
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
tcp()
""".replace("__TCP__", str(TCP_PORT)).replace("__UDP__", str(UDP_PORT))

# Client modes, run inside A: connect (one TCP exchange), send N bytes (time it), udp N probes.
CLIENT = r"""
import json, socket, sys, time
mode, host = sys.argv[1], sys.argv[2]
if mode == "connect":
    try:
        c = socket.create_connection((host, __TCP__), timeout=float(sys.argv[3]))
        c.settimeout(float(sys.argv[3])); c.sendall(b"x"); c.shutdown(socket.SHUT_WR)
        ok = c.recv(64) == b"1"
    except OSError:
        ok = False
    print(json.dumps({"ok": ok}))
elif mode == "send":
    n = int(sys.argv[3]); data = b"\0" * n
    t0 = time.monotonic()
    c = socket.create_connection((host, __TCP__), timeout=30); c.settimeout(60)
    c.sendall(data); c.shutdown(socket.SHUT_WR)
    got = int(c.recv(64) or b"0")
    print(json.dumps({"bytes": got, "seconds": time.monotonic() - t0}))
else:
    n = int(sys.argv[3])
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.setblocking(False)
    seen = set()
    def drain():
        while True:
            try:
                seen.add(int(u.recv(64)))
            except BlockingIOError:
                return
    for i in range(n):
        try:  # a packet nft drops on output fails sendto with EPERM: lost all the same
            u.sendto(str(i).encode(), (host, __UDP__))
        except OSError:
            pass
        time.sleep(0.002); drain()
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        drain(); time.sleep(0.01)
    print(json.dumps({"sent": n, "received": len(seen)}))
""".replace("__TCP__", str(TCP_PORT)).replace("__UDP__", str(UDP_PORT))

FAULT = TypeAdapter(Fault)


def _sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=10)


def _client(*args: str, timeout: float = 30.0) -> dict[str, object]:
    done = subprocess.run(
        ["ip", "netns", "exec", NS_A, sys.executable, "-c", CLIENT, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def _connects(timeout: float = 0.5) -> bool:
    return bool(_client("connect", ADDR_B, str(timeout))["ok"])


def _nft_tables(ns: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "exec", ns, "nft", "-j", "list", "tables"], capture_output=True, text=True)
    data = json.loads(out.stdout or "{}")
    return [i["table"]["name"] for i in data.get("nftables", []) if "table" in i]


def _root_qdisc(ns: str, ifname: str) -> str:
    from pyroute2 import IPRoute

    with IPRoute(netns=ns) as ipr:
        index = ipr.link_lookup(ifname=ifname)[0]
        kinds = [m.get_attr("TCA_KIND") for m in ipr.get_qdiscs(index=index) if m.get("parent") == 0xFFFFFFFF]
    return kinds[0] if kinds else ""


@pytest.fixture(scope="module")
def netns_pair() -> Iterator[None]:
    """A and B joined by a veth pair on 10.213.77.0/24, a server in B; all removed at the end."""
    server: subprocess.Popen[str] | None = None
    try:
        _sh("ip", "netns", "add", NS_A)
        _sh("ip", "netns", "add", NS_B)
        _sh("ip", "link", "add", VETH_A, "netns", NS_A, "type", "veth", "peer", "name", VETH_B, "netns", NS_B)
        for ns, dev, addr in ((NS_A, VETH_A, ADDR_A), (NS_B, VETH_B, ADDR_B)):
            _sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _sh("ip", "-n", ns, "link", "set", dev, "up")
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
        server = subprocess.Popen(
            ["ip", "netns", "exec", NS_B, sys.executable, "-c", SERVER, "300"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        yield
    finally:
        if server is not None:
            server.kill()
            server.wait(timeout=10)
        for ns in (NS_A, NS_B):  # deleting a namespace deletes its links, qdiscs and nft tables
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=10)


@pytest.fixture
def journal(tmp_path: Path, netns_pair: None) -> Iterator[Journal]:
    """A fresh journal; whatever a test left journaled is reverted even when it failed."""
    j = Journal("net-test.1", tmp_path / "journal")
    try:
        yield j
    finally:
        for record in j.outstanding():
            with contextlib.suppress(Exception):
                revert_record(record, j)


def _fault(kind: str, params: dict[str, object], **target: str) -> Fault:
    return FAULT.validate_python(
        {
            "name": kind.split(".")[1],
            "kind": kind,
            "at": 0,
            "duration": 10,
            "target": {"netns": NS_A, **target},
            "params": params,
        }
    )


def test_partition_cuts_connections_and_revert_restores_within_2s(journal: Journal) -> None:
    assert _connects()
    fault = _fault("network.partition", {"peers": [f"{ADDR_B}/32"]})
    network.inject(fault, journal.run_id, journal)
    assert [_connects(0.3) for _ in range(3)] == [False, False, False]
    revert_record(journal.latest(fault.name), journal)  # type: ignore[arg-type]
    start = time.monotonic()
    while not _connects(0.3):
        assert time.monotonic() - start < 2.0, "no connection within 2 s after revert"
    assert time.monotonic() - start < 2.0
    assert not [t for t in _nft_tables(NS_A) if t.startswith("harness_")]


def _routes(ns: str) -> list[str]:
    out = subprocess.run(["ip", "-n", ns, "route", "show", "type", "blackhole"], capture_output=True, text=True)
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def test_blackhole_partition_cuts_and_revert_removes_only_our_route(journal: Journal) -> None:
    """The operator's own blackhole to another network (same type, no metric) survives the revert."""
    _sh("ip", "-n", NS_A, "route", "add", "blackhole", "192.0.2.0/24")
    try:
        fault = _fault("network.partition", {"peers": [f"{ADDR_B}/32"], "method": "blackhole"})
        network.inject(fault, journal.run_id, journal)
        network.inject(fault, journal.run_id, journal)  # idempotent
        routes = _routes(NS_A)
        assert any(r.startswith(f"blackhole {ADDR_B}") and "metric 4852" in r for r in routes), routes
        assert [_connects(0.3) for _ in range(3)] == [False, False, False]
        revert_record(journal.latest(fault.name), journal)  # type: ignore[arg-type]
        start = time.monotonic()
        while not _connects(0.3):
            assert time.monotonic() - start < 2.0, "no connection within 2 s after revert"
        assert _routes(NS_A) == ["blackhole 192.0.2.0/24"]
        revert_record(journal.latest(fault.name), journal)  # type: ignore[arg-type]  # twice: no error
    finally:
        subprocess.run(["ip", "-n", NS_A, "route", "del", "blackhole", "192.0.2.0/24"], capture_output=True)


def test_link_down_cuts_and_revert_sets_it_up(journal: Journal) -> None:
    fault = _fault("network.link_down", {}, interface=VETH_A)
    record = network.inject(fault, journal.run_id, journal)
    assert record.details["was_up"] == 1
    assert not _connects(0.3)
    revert_record(journal.latest(fault.name), journal)  # type: ignore[arg-type]
    start = time.monotonic()
    while not _connects(0.3):  # veth carrier and neighbour discovery come back within a second or two
        assert time.monotonic() - start < 5.0, "no connection within 5 s after the link came up"
    print(f"connected {time.monotonic() - start:.2f} s after link up")


def test_link_down_of_a_link_already_down_leaves_it_down(journal: Journal) -> None:
    _sh("ip", "-n", NS_A, "link", "set", "lo", "down")
    try:
        fault = _fault("network.link_down", {}, interface="lo")
        record = network.inject(fault, journal.run_id, journal)
        assert record.details["was_up"] == 0
        network.revert(journal.latest(fault.name), journal)  # type: ignore[arg-type]
        reverted = journal.latest(fault.name)
        assert reverted is not None and "left down" in str(reverted.details["reverted"])
        out = subprocess.run(["ip", "-n", NS_A, "-j", "link", "show", "lo"], capture_output=True, text=True)
        assert "UP" not in json.loads(out.stdout)[0]["flags"]
    finally:
        _sh("ip", "-n", NS_A, "link", "set", "lo", "up")


def test_partition_with_ports_drops_only_those(journal: Journal) -> None:
    fault = _fault("network.partition", {"peers": [ADDR_B], "ports": [TCP_PORT]})
    network.inject(fault, journal.run_id, journal)
    assert not _connects(0.3)
    udp = _client("udp", ADDR_B, "50")
    assert udp["received"] == 50  # UDP_PORT is not cut
    network.revert(journal.latest(fault.name), journal)  # type: ignore[arg-type]
    assert _connects()


def test_loss_30_percent_measured(journal: Journal) -> None:
    """400 UDP probes; only A's egress is hit, so round-trip loss is the asked 30%.

    The loss count is binomial(400, 0.3): sigma = sqrt(0.3*0.7/400) = 2.3 points, so
    +/- 7 points is 3 sigma (a false failure about 3 times in 1000 runs).
    """
    baseline = _client("udp", ADDR_B, "100")
    assert baseline["received"] == 100
    fault = _fault("network.loss", {"percent": 30, "peers": [f"{ADDR_B}/32"]})
    network.inject(fault, journal.run_id, journal)
    result = _client("udp", ADDR_B, "400")
    network.revert(journal.latest(fault.name), journal)  # type: ignore[arg-type]
    loss = 1 - int(result["received"]) / 400  # type: ignore[call-overload]
    print(f"measured loss {loss:.1%} over 400 probes (asked 30%)")
    assert abs(loss - 0.30) <= 0.07
    assert _client("udp", ADDR_B, "100")["received"] == 100


def test_loss_limited_to_ports_spares_other_traffic(journal: Journal) -> None:
    fault = _fault("network.loss", {"percent": 100, "peers": [ADDR_B], "ports": [UDP_PORT]})
    network.inject(fault, journal.run_id, journal)
    assert _client("udp", ADDR_B, "50")["received"] == 0
    assert _connects()  # TCP_PORT is not hit
    network.revert(journal.latest(fault.name), journal)  # type: ignore[arg-type]
    assert _client("udp", ADDR_B, "50")["received"] == 50


def test_bandwidth_1mbit_measured_within_20_percent(journal: Journal) -> None:
    fault = _fault("network.bandwidth", {"rate": "1mbit"}, interface=VETH_A)
    network.inject(fault, journal.run_id, journal)
    assert _root_qdisc(NS_A, VETH_A) == "tbf"
    result = _client("send", ADDR_B, str(500_000), timeout=60)
    network.revert(journal.latest(fault.name), journal)  # type: ignore[arg-type]
    assert result["bytes"] == 500_000
    mbit = 500_000 * 8 / float(result["seconds"]) / 1e6  # type: ignore[arg-type]
    print(f"measured {mbit:.3f} mbit/s through tbf 1mbit ({result['seconds']:.2f} s for 500 KB)")
    assert 0.8 <= mbit <= 1.2
    assert _root_qdisc(NS_A, VETH_A) == "noqueue"


def test_inject_twice_revert_once_leaves_nothing(journal: Journal, tmp_path: Path) -> None:
    faults = [
        _fault("network.partition", {"peers": [ADDR_B]}),
        _fault("network.loss", {"percent": 50, "peers": [ADDR_B], "direction": "both"}),
        _fault("network.bandwidth", {"rate": "10mbit"}, interface=VETH_A),
    ]
    for fault in faults:
        network.inject(fault, journal.run_id, journal)
        network.inject(fault, journal.run_id, journal)
    # A second journal (another process after a crash, say) injecting the same faults again
    # re-applies onto the same objects instead of adding new ones.
    other = Journal(journal.run_id, tmp_path / "other")
    for fault in faults:
        network.inject(fault, other.run_id, other)
    assert [t for t in _nft_tables(NS_A) if t.startswith("harness_")] == [network.table_name(journal.run_id)]
    for fault in faults:
        network.revert(journal.latest(fault.name), journal)  # type: ignore[arg-type]
        assert journal.latest(fault.name).state is FaultState.REVERTED  # type: ignore[union-attr]
    assert not [t for t in _nft_tables(NS_A) if t.startswith("harness_")]
    assert _root_qdisc(NS_A, VETH_A) == "noqueue"
    assert _connects()
    for fault in faults:  # the other journal's revert finds nothing left and says so
        network.revert(other.latest(fault.name), other)  # type: ignore[arg-type]
        assert other.latest(fault.name).state is FaultState.REVERTED  # type: ignore[union-attr]


def test_revert_of_interrupted_inject_and_of_a_vanished_namespace(journal: Journal) -> None:
    fault = _fault("network.partition", {"peers": [ADDR_B]})
    record = network.inject(fault, journal.run_id, journal)
    # recover's dispatch by kind reaches this module
    revert_record(record, journal)
    assert journal.latest(fault.name).state is FaultState.REVERTED  # type: ignore[union-attr]
    gone = record.advance(FaultState.INJECTED, netns="hnet-no-such-ns")
    other = Journal(journal.run_id, journal.directory / "other")
    network.revert(gone, other)
    assert "gone" in str(other.latest(fault.name).details["reverted"])  # type: ignore[union-attr]


def test_check_refuses_missing_namespace_and_interface(netns_pair: None) -> None:
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match="does not exist"):
        network.check(
            FAULT.validate_python(
                {
                    "name": "p",
                    "kind": "network.partition",
                    "at": 0,
                    "duration": 1,
                    "target": {"netns": "hnet-missing"},
                    "params": {"peers": [ADDR_B]},
                }
            )
        )
    with pytest.raises(ConfigError, match="no interface"):
        network.check(_fault("network.bandwidth", {"rate": "1mbit"}, interface="nosuchif0"))
    network.check(_fault("network.loss", {"percent": 10, "peers": [ADDR_B]}))


def test_preflight_refuses_a_missing_namespace_before_anything_starts(netns_pair: None) -> None:
    """``harness run`` calls preflight.check first: a missing netns is a ConfigError (exit 2)."""
    from harness.chaos import preflight
    from harness.errors import ConfigError
    from harness.scenario import Safety

    scenario = SimpleNamespace(
        safety=Safety(),
        faults=[
            _fault("network.loss", {"percent": 10, "peers": [ADDR_B]}),
            FAULT.validate_python(
                {
                    "name": "cut",
                    "kind": "network.partition",
                    "at": 0,
                    "duration": 1,
                    "target": {"netns": "hnet-missing"},
                    "params": {"peers": [ADDR_B]},
                }
            ),
        ],
        slos=[],  # a plan line says which faults' heal_time is measured, from the SLOs
    )
    assert "numgen" in preflight.targets(scenario)["loss"]  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="hnet-missing") as caught:
        preflight.check(scenario)  # type: ignore[arg-type]
    assert caught.value.exit_code == 2
    assert not [t for t in _nft_tables(NS_A) if t.startswith("harness_")]
