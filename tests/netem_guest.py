"""The guest side of tests/test_chaos_netem.py: runs inside a UML guest (tests/uml.py), never on the host.

``python -m tests.netem_guest measure`` builds two network namespaces joined by a veth pair
on 10.77.0.0/24 -- the client ``nc`` (10.77.0.1, interface ``vc``) and the server ``ns``
(10.77.0.2 and 10.77.0.3 on ``vs``) -- starts a small HTTP/1.1 keep-alive server and a UDP
echo server in ``ns`` (``python -m tests.netem_guest serve``), moves itself into ``nc`` and
measures each fault of :mod:`harness.chaos.families.network.netem` with real traffic: per-request HTTP
latency on one kept-alive connection (one round trip per request), UDP probes echoed back
for loss and duplicates. Every scenario reverts what it injected, also when it fails; what
was measured, and any error, goes to ``$UML_OUT/netem.json`` for the host to assert on.

Everything here is bounded: request and probe counts are fixed, every socket has a timeout,
and the guest itself is killed by the host after a timeout.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.netem_probes import SO_RCVBUFFORCE, paced_probe

CLIENT_NS, SERVER_NS = "nc", "ns"
CLIENT_IF, SERVER_IF = "vc", "vs"
CLIENT_ADDR, SERVER_ADDR, OTHER_ADDR = "10.77.0.1", "10.77.0.2", "10.77.0.3"
HTTP_PORT, UDP_PORT = 8080, 9090
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
RUN_ID = "netem-guest.1"


# ---------------------------------------------------------------- server side (in ns)


def serve(seconds: float) -> None:
    """HTTP keep-alive on 8080 (whole response in one segment, no Nagle) and UDP echo on 9090."""
    deadline = time.monotonic() + seconds

    def udp() -> None:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)  # a burst of probes never overflows
        u.bind(("0.0.0.0", UDP_PORT))
        u.settimeout(0.5)
        while time.monotonic() < deadline:
            try:
                data, peer = u.recvfrom(2048)
            except OSError:
                continue
            u.sendto(data, peer)

    def conn(c: socket.socket) -> None:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.settimeout(30)
        buf = b""
        try:
            while True:
                chunk = c.recv(4096)
                if not chunk:
                    return
                buf += chunk
                while b"\r\n\r\n" in buf:
                    _, buf = buf.split(b"\r\n\r\n", 1)
                    c.sendall(RESPONSE)
        except OSError:
            pass
        finally:
            c.close()

    threading.Thread(target=udp, daemon=True).start()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", HTTP_PORT))
    s.listen(16)
    s.settimeout(0.5)
    print("ready", flush=True)
    while time.monotonic() < deadline:
        try:
            c, _ = s.accept()
        except OSError:
            continue
        threading.Thread(target=conn, args=(c,), daemon=True).start()


# ---------------------------------------------------------------- client side (in nc)


def latency_ms(host: str, n: int = 25) -> dict[str, Any]:
    """Median (and spread) of ``n`` GETs on one kept-alive connection, after two warm-up requests."""
    conn = http.client.HTTPConnection(host, HTTP_PORT, timeout=5)
    try:
        conn.connect()
        assert conn.sock is not None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        samples = []
        for i in range(n + 2):
            t0 = time.perf_counter()
            conn.request("GET", "/")
            resp = conn.getresponse()
            body = resp.read()
            elapsed = (time.perf_counter() - t0) * 1000
            if resp.status != 200 or body != b"ok":
                raise RuntimeError(f"bad response {resp.status} {body!r}")
            if i >= 2:
                samples.append(elapsed)
    finally:
        conn.close()
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "n": len(samples),
    }


def runner_latency_ms(host: str, seconds: float = 5.0) -> dict[str, Any]:
    """Median latency as harness's own load path measures it: a real ``harness.load.runner``
    Locust process (FastHttpUser ``Ping``, one user, no think time) in this namespace, its
    per-second windows merged; the first window (connection set-up) is left out."""
    import select

    from harness.load.protocol import SetUsers, encode_command
    from harness.measure.windows import new_histogram, parse_window

    locustfile = Path(__file__).resolve().parent / "locustfiles" / "ping.py"
    read_fd, write_fd = os.pipe()
    argv = [sys.executable, "-m", "harness.load.runner", "--process-id", "g0.0", "--locustfile", str(locustfile)]
    argv += ["--classes", "Ping", "--host", f"http://{host}:{HTTP_PORT}", "--report-fd", str(write_fd)]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, pass_fds=(write_fd,))
    os.close(write_fd)
    windows = []
    buffer = b""
    try:
        assert proc.stdin is not None
        proc.stdin.write(encode_command(SetUsers(users=1, spawn_rate=1)))
        proc.stdin.flush()
        deadline = time.monotonic() + seconds + 15.0  # Locust's import is slow in the guest
        while time.monotonic() < deadline and len(windows) < seconds + 1:
            ready, _, _ = select.select([read_fd], [], [], 1.0)
            if not ready:
                continue
            chunk = os.read(read_fd, 1 << 20)
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                window = parse_window(line) if line.strip() else None
                if window is not None and window.endpoints:
                    windows.append(window)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        os.close(read_fd)
    merged = new_histogram()
    count = 0
    for window in windows[1:]:
        for stats in window.endpoints.values():
            merged.add(stats.hist)
            count += stats.count - stats.failed
    if not count:
        raise RuntimeError(f"the runner reported no successful request in {len(windows)} windows")
    return {"median": merged.get_value_at_percentile(50) / 1000.0, "n": count, "windows": len(windows)}


def udp_probe(host: str, n: int, batch: int = 50) -> dict[str, int]:
    """Send ``n`` numbered datagrams in batches, each batch answered (or given up on) before the next.

    ``unique`` counts probes echoed at least once, ``received`` every echo (duplicates included).
    """
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
    u.settimeout(0.05)
    counts: dict[int, int] = {}
    try:
        for start in range(0, n, batch):
            wanted = set(range(start, min(n, start + batch)))
            for i in sorted(wanted):
                u.sendto(str(i).encode(), (host, UDP_PORT))
            give_up = time.monotonic() + 1.0
            quiet_until = time.monotonic() + 0.3
            while time.monotonic() < give_up:
                if not wanted and time.monotonic() > quiet_until:
                    break  # every probe answered; a little longer for late duplicates
                try:
                    data = u.recv(64)
                except TimeoutError:
                    if time.monotonic() > quiet_until:
                        break
                    continue
                seq = int(data)
                counts[seq] = counts.get(seq, 0) + 1
                wanted.discard(seq)
                quiet_until = time.monotonic() + 0.08
    finally:
        u.close()
    return {"sent": n, "unique": len(counts), "received": sum(counts.values())}


# ---------------------------------------------------------------- kernel state, read with pyroute2


def tc_state(netns: str = CLIENT_NS, interface: str = CLIENT_IF) -> dict[str, Any]:
    """Qdiscs of the interface, its ingress filters, and every ifb in the namespace."""
    from pyroute2 import IPRoute

    with IPRoute(netns=netns, flags=0) as ipr:
        index = ipr.link_lookup(ifname=interface)[0]
        qdiscs = [
            {"kind": m.get_attr("TCA_KIND"), "handle": f"{m['handle'] >> 16:x}:", "parent": f"{m['parent']:x}"}
            for m in ipr.get_qdiscs(index=index)
        ]
        filters = sorted({m["info"] >> 16 for m in ipr.get_filters(index=index, parent=0xFFFFFFF2)})
        ifbs = []
        for link in ipr.get_links():
            info = link.get_attr("IFLA_LINKINFO")
            if info is not None and info.get_attr("IFLA_INFO_KIND") == "ifb":
                name = link.get_attr("IFLA_IFNAME")
                ifb_qdiscs = [m.get_attr("TCA_KIND") for m in ipr.get_qdiscs(index=link["index"])]
                ifbs.append({"name": name, "qdiscs": ifb_qdiscs})
        root = next((q for q in qdiscs if q["parent"] == "ffffffff"), None)
    return {"qdiscs": qdiscs, "root": root, "ingress_filters": filters, "ifbs": ifbs}


def netem_readback(netns: str = CLIENT_NS, interface: str = CLIENT_IF) -> dict[str, Any]:
    """What the kernel holds for the interface's root netem: times in us, probabilities in percent."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.rtnl.tcmsg.common import tick_in_usec

    def pct(raw: int) -> float:
        return round(100 * raw / 0xFFFFFFFF, 3)

    with IPRoute(netns=netns, flags=0) as ipr:
        index = ipr.link_lookup(ifname=interface)[0]
        msg = next(m for m in ipr.get_qdiscs(index=index) if m.get_attr("TCA_KIND") == "netem")
    opts = msg.get_attr("TCA_OPTIONS")
    out: dict[str, Any] = {
        "delay_us": round(opts["delay"] / tick_in_usec),
        "jitter_us": round(opts["jitter"] / tick_in_usec),
        "gap": opts["gap"],
        "limit": opts["limit"],
    }
    for nla, fields in (
        ("TCA_NETEM_CORR", ("delay_corr", "loss_corr", "dup_corr")),
        ("TCA_NETEM_REORDER", ("prob_reorder", "corr_reorder")),
        ("TCA_NETEM_CORRUPT", ("prob_corrupt", "corr_corrupt")),
    ):
        attr = opts.get_attr(nla)
        for field in fields:
            out[field] = pct(attr[field]) if attr is not None else 0.0
    return out


def clean(state: dict[str, Any]) -> bool:
    """No harness object: the default root qdisc, no ingress qdisc, no ifb."""
    return (
        (state["root"] is None or state["root"]["handle"] == "0:")
        and not any(q["kind"] in ("ingress", "netem", "prio") for q in state["qdiscs"])
        and not state["ifbs"]
    )


# ---------------------------------------------------------------- scenarios


def _fault(kind: str, name: str, params: dict[str, Any], netns: str = CLIENT_NS, interface: str = CLIENT_IF) -> Any:
    from pydantic import TypeAdapter

    from harness.scenario import Fault

    return TypeAdapter(Fault).validate_python(
        {
            "name": name,
            "kind": kind,
            "at": 0,
            "duration": 30,
            "target": {"netns": netns, "interface": interface},
            "params": params,
        }
    )


class Scenarios:
    """One method per acceptance check; each returns its figures and reverts what it injected."""

    def __init__(self, journal_dir: Path) -> None:
        from harness.chaos.journal import Journal

        self.journal_dir = journal_dir
        self.journal = Journal(RUN_ID, journal_dir)

    def revert_all(self) -> None:
        from harness.chaos.families.network import netem

        for record in self.journal.outstanding():
            try:
                netem.revert(record, self.journal)
            except Exception:
                traceback.print_exc()

    def _with_fault(self, fault: Any, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        from harness.chaos.families.network import netem

        record = netem.inject(fault, RUN_ID, self.journal)
        try:
            out = {"during_tc": tc_state(), "details": record.details, **measure()}
        finally:
            netem.revert(record, self.journal)
        out["after_tc"] = tc_state()
        out["after_clean"] = clean(out["after_tc"])
        out["journal_state"] = self.journal.latest(fault.name).state.value  # type: ignore[union-attr]
        return out

    def available(self) -> dict[str, Any]:
        from harness.chaos.families.network import netem
        from harness.errors import ConfigError

        ok, reason = netem.available()
        out: dict[str, Any] = {"ok": ok, "reason": reason}
        netem.check(_fault("network.netem", "chk", {"delay": "10ms", "direction": "both", "peers": ["10.77.0.0/24"]}))
        out["check_ok"] = True
        try:
            netem.check(_fault("network.netem", "chk2", {"delay": "10ms"}, interface="nope0"))
            out["missing_interface"] = None
        except ConfigError as exc:
            out["missing_interface"] = str(exc)
        return out

    def baseline(self) -> dict[str, Any]:
        return {"server": latency_ms(SERVER_ADDR), "other": latency_ms(OTHER_ADDR), "tc": tc_state()}

    def delay_egress(self) -> dict[str, Any]:
        fault = _fault("network.netem", "delay-egress", {"delay": "100ms"})
        out = self._with_fault(fault, lambda: {"latency": latency_ms(SERVER_ADDR)})
        out["latency_after"] = latency_ms(SERVER_ADDR)
        return out

    def runner_delay(self) -> dict[str, Any]:
        """The same delays as harness's load generator measures them (its own HTTP client)."""
        out: dict[str, Any] = {"baseline": runner_latency_ms(SERVER_ADDR)}
        egress = _fault("network.netem", "runner-egress", {"delay": "100ms"})
        out["egress"] = self._with_fault(egress, lambda: runner_latency_ms(SERVER_ADDR))
        both = _fault("network.netem", "runner-both", {"delay": "100ms", "direction": "both"})
        out["both"] = self._with_fault(both, lambda: runner_latency_ms(SERVER_ADDR))
        return out

    def delay_ingress(self) -> dict[str, Any]:
        fault = _fault("network.netem", "delay-ingress", {"delay": "100ms", "direction": "ingress"})
        return self._with_fault(fault, lambda: {"latency": latency_ms(SERVER_ADDR)})

    def delay_both(self) -> dict[str, Any]:
        fault = _fault("network.netem", "delay-both", {"delay": "100ms", "direction": "both"})
        out = self._with_fault(fault, lambda: {"latency": latency_ms(SERVER_ADDR)})
        out["latency_after"] = latency_ms(SERVER_ADDR)
        return out

    def peers(self) -> dict[str, Any]:
        fault = _fault(
            "network.netem", "peers", {"delay": "100ms", "direction": "both", "peers": [f"{SERVER_ADDR}/32"]}
        )
        return self._with_fault(
            fault, lambda: {"latency_peer": latency_ms(SERVER_ADDR), "latency_other": latency_ms(OTHER_ADDR)}
        )

    def loss(self) -> dict[str, Any]:
        fault = _fault("network.netem", "loss", {"loss": 30})
        return self._with_fault(fault, lambda: {"probe": udp_probe(SERVER_ADDR, 2000)})

    def duplicate(self) -> dict[str, Any]:
        fault = _fault("network.netem", "duplicate", {"duplicate": 50})
        return self._with_fault(fault, lambda: {"probe": udp_probe(SERVER_ADDR, 2000)})

    def loss_via_netem(self) -> dict[str, Any]:
        """network.loss with method netem: a prio + netem(loss) tree, and loss only towards the peers."""
        fault = _fault("network.loss", "loss-netem", {"percent": 30, "peers": [f"{SERVER_ADDR}/32"], "method": "netem"})
        return self._with_fault(
            fault, lambda: {"probe": udp_probe(SERVER_ADDR, 1000), "probe_other": udp_probe(OTHER_ADDR, 300)}
        )

    def udp_baseline(self) -> dict[str, Any]:
        """Round trips of paced UDP probes with no fault: what the jitter and reorder runs subtract."""
        return {"probe": paced_probe(SERVER_ADDR, UDP_PORT, 100, 0.005, tail=0.3)}

    def jitter(self) -> dict[str, Any]:
        """delay 100ms jitter 20ms: 300 probes 10 ms apart, each round trip one netem draw."""
        fault = _fault("network.netem", "jitter", {"delay": "100ms", "jitter": "20ms"})
        return self._with_fault(
            fault, lambda: {"probe": paced_probe(SERVER_ADDR, UDP_PORT, 300, 0.010), "options": netem_readback()}
        )

    def jitter_correlated(self) -> dict[str, Any]:
        """The same with correlation 50%: what netem's correlation does to consecutive delays."""
        fault = _fault("network.netem", "jitter-corr", {"delay": "100ms", "jitter": "20ms", "correlation": 50})
        return self._with_fault(
            fault, lambda: {"probe": paced_probe(SERVER_ADDR, UDP_PORT, 300, 0.010), "options": netem_readback()}
        )

    def reorder(self) -> dict[str, Any]:
        """delay 50ms reorder 25%: 1,000 probes 3 ms apart; the immediate ones overtake the delayed."""
        fault = _fault("network.netem", "reorder", {"delay": "50ms", "reorder": 25})
        return self._with_fault(
            fault, lambda: {"probe": paced_probe(SERVER_ADDR, UDP_PORT, 1000, 0.003), "options": netem_readback()}
        )

    def corrupt(self) -> dict[str, Any]:
        """corrupt 20%: 1,500 probes of 1,000 bytes 2 ms apart, and the server's UDP checksum errors."""
        fault = _fault("network.netem", "corrupt", {"corrupt": 20})

        def measure() -> dict[str, Any]:
            before = snmp(SERVER_NS)
            probe = paced_probe(SERVER_ADDR, UDP_PORT, 1500, 0.002, size=1000)
            after = snmp(SERVER_NS)
            return {
                "probe": probe,
                "snmp": {k: after[k] - before.get(k, 0) for k in after},
                "options": netem_readback(),
            }

        return self._with_fault(fault, measure)

    def idempotency(self) -> dict[str, Any]:
        from harness.chaos.families.network import netem
        from harness.chaos.journal import FaultState, Journal

        out: dict[str, Any] = {}
        fault = _fault("network.netem", "twice", {"delay": "20ms", "direction": "both", "peers": ["10.77.0.0/24"]})
        first = netem.inject(fault, RUN_ID, self.journal)
        second = netem.inject(fault, RUN_ID, self.journal)
        out["same_record"] = first == second
        out["during_tc"] = tc_state()
        netem.revert(second, self.journal)
        out["after_tc"] = tc_state()
        out["after_clean"] = clean(out["after_tc"])
        netem.revert(second, self.journal)  # again: nothing to do, no error
        out["reverted_twice_state"] = self.journal.latest(fault.name).state.value  # type: ignore[union-attr]

        # A crash between "injecting" and "injected": a journal holding only the first line.
        crashed = Journal("netem-crash.1", self.journal_dir)
        crash_fault = _fault("network.netem", "crash", {"delay": "20ms", "direction": "both"})
        full = netem.inject(crash_fault, crashed.run_id, Journal(crashed.run_id, self.journal_dir / "full"))
        crashed.append(full.advance(FaultState.INJECTING))
        resumed = netem.inject(crash_fault, crashed.run_id, crashed)
        out["resumed_state"] = resumed.state.value
        out["resumed_tc"] = tc_state()
        netem.revert(resumed, crashed)
        out["resumed_after_clean"] = clean(tc_state())
        return out

    def refusal(self) -> dict[str, Any]:
        """Someone else's root qdisc is neither replaced by inject nor removed by any revert."""
        from pyroute2 import IPRoute

        from harness.chaos.families.network import netem
        from harness.errors import FaultError

        out: dict[str, Any] = {}
        with IPRoute(netns=CLIENT_NS, flags=0) as ipr:
            index = ipr.link_lookup(ifname=CLIENT_IF)[0]
            ipr.tc("add", "pfifo", index=index, handle=0x10000, parent=0xFFFFFFFF, limit=500)
        try:
            fault = _fault("network.netem", "refused", {"delay": "10ms"})
            try:
                netem.inject(fault, RUN_ID, self.journal)
                out["refused"] = None
            except FaultError as exc:
                out["refused"] = str(exc)
            latest = self.journal.latest(fault.name)
            out["journal_state"] = latest.state.value if latest else None
            netem.revert(latest, self.journal)  # type: ignore[arg-type]
            out["root_after"] = tc_state()["root"]
        finally:
            with IPRoute(netns=CLIENT_NS, flags=0) as ipr:
                ipr.tc("del", index=index, handle=0x10000, parent=0xFFFFFFFF)
        out["after_clean"] = clean(tc_state())
        return out

    def netns_gone(self) -> dict[str, Any]:
        """Revert after the namespace was deleted (taking its qdiscs and ifb along) is fine."""
        from pyroute2 import IPRoute

        from harness.chaos.families.network import netem

        subprocess.run(["ip", "netns", "add", "nx"], check=True, timeout=10)
        try:
            with IPRoute(netns="nx", flags=0) as ipr:
                ipr.link("add", ifname="dx", kind="dummy")
                ipr.link("set", index=ipr.link_lookup(ifname="dx")[0], state="up")
            fault = _fault("network.netem", "gone", {"delay": "10ms", "direction": "both"}, netns="nx", interface="dx")
            record = netem.inject(fault, RUN_ID, self.journal)
            injected_tc = tc_state("nx", "dx")
        finally:
            subprocess.run(["ip", "netns", "delete", "nx"], check=True, timeout=10)
        netem.revert(record, self.journal)
        latest = self.journal.latest(fault.name)
        assert latest is not None
        return {
            "injected_tc": injected_tc,
            "state": latest.state.value,
            "reverted": latest.details.get("reverted"),
        }


def snmp(netns: str) -> dict[str, int]:
    """The namespace's IP and UDP counters from /proc/net/snmp, keyed ``Udp.InCsumErrors`` etc."""
    text = subprocess.run(
        ["ip", "netns", "exec", netns, "cat", "/proc/net/snmp"], check=True, capture_output=True, text=True, timeout=10
    ).stdout.splitlines()
    out: dict[str, int] = {}
    for names, values in zip(text[::2], text[1::2], strict=True):
        proto, _, keys = names.partition(": ")
        for key, value in zip(keys.split(), values.partition(": ")[2].split(), strict=True):
            if proto in ("Ip", "Udp"):
                out[f"{proto}.{key}"] = int(value)
    return out


def _sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=10)


def measure(out_dir: Path) -> None:
    from pyroute2 import netns

    results: dict[str, Any] = {}
    server: subprocess.Popen[str] | None = None
    try:
        _sh("ip", "netns", "add", CLIENT_NS)
        _sh("ip", "netns", "add", SERVER_NS)
        veth = ["type", "veth", "peer", "name", SERVER_IF, "netns", SERVER_NS]
        _sh("ip", "link", "add", CLIENT_IF, "netns", CLIENT_NS, *veth)
        _sh("ip", "-n", CLIENT_NS, "addr", "add", f"{CLIENT_ADDR}/24", "dev", CLIENT_IF)
        _sh("ip", "-n", SERVER_NS, "addr", "add", f"{SERVER_ADDR}/24", "dev", SERVER_IF)
        _sh("ip", "-n", SERVER_NS, "addr", "add", f"{OTHER_ADDR}/24", "dev", SERVER_IF)
        for ns, dev in ((CLIENT_NS, CLIENT_IF), (SERVER_NS, SERVER_IF)):
            _sh("ip", "-n", ns, "link", "set", dev, "up")
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
        server = subprocess.Popen(
            ["ip", "netns", "exec", SERVER_NS, sys.executable, "-m", "tests.netem_guest", "serve", "200"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        netns.setns(CLIENT_NS, flags=0)  # this process's sockets now live in the client namespace
        with tempfile.TemporaryDirectory() as tmp:
            scenarios = Scenarios(Path(tmp) / "journal")
            names = os.environ.get("NETEM_SCENARIOS", "").split(",")
            for name in [n for n in names if n] or [
                "available",
                "baseline",
                "delay_egress",
                "delay_ingress",
                "delay_both",
                "runner_delay",
                "peers",
                "loss",
                "duplicate",
                "udp_baseline",
                "jitter",
                "jitter_correlated",
                "reorder",
                "corrupt",
                "loss_via_netem",
                "idempotency",
                "refusal",
                "netns_gone",
            ]:
                t0 = time.monotonic()
                try:
                    results[name] = getattr(scenarios, name)()
                except Exception:
                    results[name] = {"error": traceback.format_exc()}
                    scenarios.revert_all()
                results[name]["seconds"] = round(time.monotonic() - t0, 2)
                print(f"scenario {name}: {results[name]['seconds']}s", flush=True)
                (out_dir / "netem.json").write_text(json.dumps(results, indent=1, default=str))
    finally:
        if server is not None:
            server.kill()
            server.wait(timeout=10)
        for ns in (CLIENT_NS, SERVER_NS):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=10)
        (out_dir / "netem.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(float(sys.argv[2]))
    else:
        measure(Path(os.environ["UML_OUT"]))
