"""dns faults by their real effect: a process in a namespace resolving names with getaddrinfo.

Each test makes a network namespace whose only DNS server is a dnsmasq inside it (on its
loopback, answering two names of a made-up zone and nothing else: it forwards nowhere), with
``/etc/netns/<ns>/resolv.conf`` naming it, as ``ip netns exec`` shows it to the processes in
there. No query leaves the namespace; the machine's own resolver is never asked. A client is
``ip netns exec NS python3 -c 'socket.getaddrinfo(...)'``: what glibc's resolver sees.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.chaos import sweep, watchdog
from harness.chaos.family import family_of
from harness.chaos.journal import FaultState, Journal, all_outstanding
from harness.chaos.steps import InjectContext
from harness.scenario import Fault

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(shutil.which("dnsmasq") is None, reason="needs dnsmasq (apt-get install dnsmasq-base)"),
]

NS = f"hdns{os.getpid()}"
PAYMENTS, CATALOG = "10.215.0.3", "10.215.0.4"
_CLIENT = """
import json, socket, sys, time
out = {}
for name in sys.argv[1:]:
    start = time.monotonic()
    try:
        out[name] = sorted({a[4][0] for a in socket.getaddrinfo(name, 80, socket.AF_INET, socket.SOCK_STREAM)})
    except socket.gaierror as exc:
        out[name] = {-2: "NONAME", -3: "AGAIN", -5: "NODATA"}.get(exc.errno, str(exc.errno))
    out[name + "/s"] = round(time.monotonic() - start, 3)
print(json.dumps(out))
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def netns(tmp_path: Path) -> Iterator[str]:
    """A namespace with dnsmasq on 127.0.0.1:53 as its DNS (timeout 1 s, one attempt)."""
    etc = Path("/etc/netns") / NS
    dnsmasq: subprocess.Popen[bytes] | None = None
    try:
        _ip("netns", "add", NS)
        _ip("-n", NS, "link", "set", "lo", "up")
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        dnsmasq = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                NS,
                "dnsmasq",
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--port=53",
                f"--pid-file={tmp_path}/dnsmasq.pid",
                f"--address=/payments.shop.test/{PAYMENTS}",
                f"--address=/catalog.shop.test/{CATALOG}",
                "--address=/#/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while resolve("catalog.shop.test")["catalog.shop.test"] != [CATALOG]:
            assert time.monotonic() < deadline and dnsmasq.poll() is None, "dnsmasq did not start"
            time.sleep(0.1)
        yield NS
    finally:
        if dnsmasq is not None:
            dnsmasq.terminate()
            dnsmasq.wait(10)
        subprocess.run(["ip", "netns", "delete", NS], capture_output=True, timeout=10)
        shutil.rmtree(etc, ignore_errors=True)


def resolve(*names: str) -> dict[str, Any]:
    """What getaddrinfo answers for ``names`` in the test namespace (addresses, or the error)."""
    done = subprocess.run(
        ["ip", "netns", "exec", NS, sys.executable, "-c", _CLIENT, *names],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return dict(json.loads(done.stdout))


def _fault(spec: dict[str, Any]) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(Fault).validate_python({"at": 0, "duration": 60, "target": {"netns": NS}, **spec})


def _tables() -> list[str]:
    out = subprocess.run(["ip", "netns", "exec", NS, "nft", "-j", "list", "tables"], capture_output=True, text=True)
    return [f"{t['table']['family']} {t['table']['name']}" for t in json.loads(out.stdout)["nftables"] if "table" in t]


def _responders() -> list[int]:
    return [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if "harness.chaos.dns_server" in (p.info["cmdline"] or []) and p.status() != psutil.STATUS_ZOMBIE
    ]


def _nothing_left() -> bool:
    return not [t for t in _tables() if "harness_dns_" in t] and not _responders()


def test_error_and_spoof_act_on_matching_names_only_and_only_during_the_fault(netns: str, tmp_path: Path) -> None:
    names = ("payments.shop.test", "catalog.shop.test")
    before = resolve(*names)
    assert before["payments.shop.test"] == [PAYMENTS] and before["catalog.shop.test"] == [CATALOG]
    journal = Journal("dns-unit", tmp_path)
    ctx = InjectContext("dns-unit", journal)
    nx = _fault(
        {"name": "no-payments", "kind": "dns.error", "params": {"patterns": ["payments.*"], "error": "nxdomain"}}
    )
    record = family_of(nx.kind).inject(nx, ctx)
    assert record.state == FaultState.INJECTED
    during = resolve(*names)
    assert during["payments.shop.test"] == "NONAME", during
    assert during["catalog.shop.test"] == [CATALOG], during  # not matching: forwarded to dnsmasq
    family_of(nx.kind).revert(record, journal)
    between = resolve(*names)
    assert between["payments.shop.test"] == [PAYMENTS] and between["catalog.shop.test"] == [CATALOG], between
    assert _nothing_left(), (_tables(), _responders())

    spoof = _fault({"name": "fake-catalog", "kind": "dns.spoof",
                    "params": {"patterns": ["CATALOG.shop.test"], "address": "127.0.0.9"}})  # fmt: skip
    family_of(spoof.kind).inject(spoof, ctx)
    spoofed = resolve(*names)
    assert spoofed["payments.shop.test"] == [PAYMENTS] and spoofed["catalog.shop.test"] == ["127.0.0.9"], spoofed
    family_of(spoof.kind).revert(journal.latest("fake-catalog"), journal)  # type: ignore[arg-type]
    after = resolve(*names)
    assert after["payments.shop.test"] == [PAYMENTS] and after["catalog.shop.test"] == [CATALOG], after
    assert _nothing_left(), (_tables(), _responders())
    assert journal.outstanding() == []


@pytest.mark.parametrize(("error", "seen", "least_s"), [("servfail", "AGAIN", 0.0), ("timeout", "AGAIN", 0.9)])
def test_servfail_and_timeout(netns: str, tmp_path: Path, error: str, seen: str, least_s: float) -> None:
    """glibc says EAI_AGAIN for both; a timeout takes the resolver's whole timeout (1 s here)."""
    journal = Journal(f"dns-{error}", tmp_path)
    fault = _fault({"name": error, "kind": "dns.error", "params": {"patterns": ["*.shop.test"], "error": error}})
    family_of(fault.kind).inject(fault, InjectContext(journal.run_id, journal))
    try:
        during = resolve("payments.shop.test")
        assert during["payments.shop.test"] == seen, during
        assert least_s <= during["payments.shop.test/s"] < least_s + 1.0, during
    finally:
        family_of(fault.kind).revert(journal.latest(error), journal)  # type: ignore[arg-type]
    assert resolve("payments.shop.test")["payments.shop.test"] == [PAYMENTS]
    assert _nothing_left()


def test_delay_and_a_share_of_queries(netns: str, tmp_path: Path) -> None:
    """One responder holds both (a control-mode responder, as a running cluster DNS would)."""
    journal = Journal("dns-share", tmp_path)
    ctx = InjectContext(journal.run_id, journal)
    slow = _fault({"name": "slow", "kind": "dns.delay", "params": {"patterns": ["catalog.*"], "delay": "300ms"}})
    family_of(slow.kind).inject(slow, ctx)
    try:
        timed = resolve("catalog.shop.test", "payments.shop.test")
        assert timed["catalog.shop.test"] == [CATALOG] and 0.3 <= timed["catalog.shop.test/s"] < 0.9, timed
        assert timed["payments.shop.test"] == [PAYMENTS] and timed["payments.shop.test/s"] < 0.2, timed
        # A share: 40 fresh processes (no resolver state shared between them) ask once each.
        record = journal.latest("slow")
        assert record is not None
        control = str(record.details["control"])
        from harness.chaos.families.dns import control as api

        api.put(control, "half", {"kind": "error", "patterns": ["payments.*"], "error": "nxdomain", "percent": 50})
        failed = sum(resolve("payments.shop.test")["payments.shop.test"] == "NONAME" for _ in range(40))
        assert 8 <= failed <= 32, failed  # 50% of 40: outside [8, 32] has probability < 1e-4
    finally:
        family_of(slow.kind).revert(journal.latest("slow"), journal)  # type: ignore[arg-type]
    assert _nothing_left()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=60)


def test_recover_reverts_from_the_journal_and_sweep_finds_what_no_journal_knows(netns: str) -> None:
    journal_dir = Path(os.environ["HARNESS_DATA_DIR"]) / "journal"
    for run_id, way in (("dns-recover", "recover"), ("dns-sweep", "sweep")):
        journal = Journal(run_id, journal_dir)
        fault = _fault({"name": "nx", "kind": "dns.error", "params": {"patterns": ["payments.*"], "error": "nxdomain"}})
        family_of(fault.kind).inject(fault, InjectContext(run_id, journal))
        assert resolve("payments.shop.test")["payments.shop.test"] == "NONAME"
        if way == "recover":
            done = _cli("recover")
            assert done.returncode == 0 and "'nx'" in done.stdout, done.stdout + done.stderr
        else:
            journal.path.unlink()  # the journal is lost: only the tags are left
            found = {(item.family, item.kind) for item in sweep.find()}
            assert {("dns", "nft table"), ("dns", "process")} <= found, found
            done = _cli("recover", "--sweep")
            assert done.returncode == 0 and "removed nft table ip harness_dns_dns_sweep" in done.stdout, done.stdout
        assert _wait(_nothing_left, 10), (way, _tables(), _responders())
        assert resolve("payments.shop.test")["payments.shop.test"] == [PAYMENTS], way
    assert all_outstanding(journal_dir) == []


def _wait(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return bool(check())


def test_lapsed_lease_is_reverted_by_the_watchdog(netns: str, tmp_path: Path) -> None:
    journal_dir = tmp_path / "journal"
    pid = watchdog.ensure_running(journal_dir)
    assert pid is not None
    try:
        journal = Journal("dns-lease", journal_dir)
        lease_until = time.time() + 1.5
        fault = _fault({"name": "nx", "kind": "dns.error", "params": {"patterns": ["*"], "error": "refused"}})
        family_of(fault.kind).inject(fault, InjectContext(journal.run_id, journal, lease_until))
        assert resolve("payments.shop.test")["payments.shop.test"] != [PAYMENTS]
        assert _wait(_nothing_left, 1.5 + 2.0 + 5.0), (_tables(), _responders())  # + the responder's SIGTERM
        assert time.time() >= lease_until
        assert resolve("payments.shop.test")["payments.shop.test"] == [PAYMENTS]
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc = psutil.Process(pid)
            proc.terminate()
            proc.wait(10)
