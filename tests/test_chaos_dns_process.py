"""dns faults on processes chosen by pattern: only the chosen process (and the children it starts)
sees the fault, its neighbour in the same namespace resolves as before.

Two long-lived Python processes run in the test namespace of :mod:`tests.test_chaos_dns` (whose
only DNS server is a dnsmasq inside it, named by ``/etc/netns/<ns>/resolv.conf``: no query
leaves the namespace, the machine's resolver is never asked). Each answers ``getaddrinfo`` for
the names written to its stdin. The fault's pattern names one of them by a word on its command
line; the agent moves it into a cgroup v2 of the fault's own and redirects that cgroup's port 53
in the namespace. Its original cgroup is one the test made, so "moved back" is checked for real.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from pydantic import TypeAdapter

from harness.chaos import cgroups, sweep
from harness.chaos.families.dns import cgroup
from harness.chaos.family import family_of
from harness.chaos.journal import FaultState, Journal, all_outstanding
from harness.chaos.steps import InjectContext
from harness.errors import FaultError
from harness.scenario import Fault
from tests.test_chaos_dns import CATALOG, NS, PAYMENTS, _cli, _nothing_left, _responders, _tables, _wait, netns
from tests.test_chaos_dns import pytestmark as _dns_marks

__all__ = ["netns"]  # the fixture, shared with test_chaos_dns

pytestmark = [
    *_dns_marks,
    pytest.mark.skipif(cgroups.cgroup_mounts()[1] is None, reason="needs a cgroup2 (unified) hierarchy"),
]

_LOOKUP = """
import json, socket, sys
def lookup(names):
    out = {}
    for name in names:
        try:
            out[name] = sorted({a[4][0] for a in socket.getaddrinfo(name, 80, socket.AF_INET, socket.SOCK_STREAM)})
        except socket.gaierror as exc:
            out[name] = {-2: "NONAME", -3: "AGAIN", -5: "NODATA"}.get(exc.errno, str(exc.errno))
    return out
"""
_RESIDENT = (
    _LOOKUP
    + """
import subprocess
for line in sys.stdin:
    words = line.split()
    if words[0] == "child":  # a process started now: born in its parent's cgroup
        code = sys.argv[1] + "\\nprint(json.dumps(lookup(sys.argv[1:])))"
        done = subprocess.run([sys.executable, "-c", code, *words[1:]], capture_output=True, text=True)
        print(done.stdout.strip(), flush=True)
    else:
        print(json.dumps(lookup(words)), flush=True)
"""
)


class Resident:
    """A process in the test namespace that resolves names on request (``marker`` in its argv)."""

    def __init__(self, marker: str) -> None:
        cmd = ["ip", "netns", "exec", NS, sys.executable, "-c", _RESIDENT, _LOOKUP, marker]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # ip execs python

    def ask(self, *words: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(" ".join(words) + "\n")
        self.proc.stdin.flush()
        return dict(json.loads(self.proc.stdout.readline()))

    def v2_cgroup(self) -> str:
        return cgroup.original_cgroup(self.proc.pid)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def residents(netns: str) -> Iterator[tuple[Resident, Resident, str]]:
    """(chosen, neighbour, the chosen one's original cgroup v2 path), both resolving normally."""
    home = Path(cgroup.v2_mount(), f"hdnscg-home-{os.getpid()}")
    home.mkdir()
    chosen, neighbour = Resident(f"hdnscg-chosen-{os.getpid()}"), Resident(f"hdnscg-neighbour-{os.getpid()}")
    try:
        (home / "cgroup.procs").write_text(str(chosen.proc.pid))
        yield chosen, neighbour, f"/{home.name}"
    finally:
        chosen.stop()
        neighbour.stop()
        _wait(lambda: not (home / "cgroup.procs").read_text().split(), 5)
        home.rmdir()


def _fault(name: str, kind: str, params: dict[str, Any], **target: str) -> Any:
    target = {"pattern": f"hdnscg-chosen-{os.getpid()}", **target}
    return TypeAdapter(Fault).validate_python(
        {"name": name, "kind": kind, "at": 0, "duration": 60, "target": target, "params": params}
    )


def _no_fault_cgroup() -> bool:
    return not cgroup.leftover_cgroups()


def test_only_the_chosen_process_and_its_children_see_the_fault(
    residents: tuple[Resident, Resident, str], tmp_path: Path
) -> None:
    chosen, neighbour, home = residents
    names = ("payments.shop.test", "catalog.shop.test")
    normal = {"payments.shop.test": [PAYMENTS], "catalog.shop.test": [CATALOG]}
    assert chosen.ask(*names) == normal and neighbour.ask(*names) == normal
    journal = Journal("dns-proc", tmp_path)
    nx = _fault("no-payments", "dns.error", {"patterns": ["payments.*"], "error": "nxdomain"})
    record = family_of(nx.kind).inject(nx, InjectContext("dns-proc", journal))
    assert record.state == FaultState.INJECTED
    d = record.details
    assert (d["netns"], d["upstream"], d[f"cgroup.{chosen.proc.pid}"]) == (NS, "127.0.0.1:53", home), d
    assert record.pids == [chosen.proc.pid]
    assert chosen.v2_cgroup() == f"/{d['cgroup']}" and neighbour.v2_cgroup() == "/"

    during = chosen.ask(*names)
    assert during == {"payments.shop.test": "NONAME", "catalog.shop.test": [CATALOG]}, during  # catalog: forwarded
    assert neighbour.ask(*names) == normal
    assert chosen.ask("child", *names) == during  # a process started during the fault inherits it

    family_of(nx.kind).revert(record, journal)
    assert chosen.ask(*names) == normal and neighbour.ask(*names) == normal
    assert chosen.v2_cgroup() == home
    assert _nothing_left() and _no_fault_cgroup(), (_tables(), _responders(), cgroup.leftover_cgroups())
    assert journal.outstanding() == []


def test_recover_and_sweep_move_the_process_back_and_leave_nothing(residents: tuple[Resident, Resident, str]) -> None:
    chosen, neighbour, home = residents
    journal_dir = Path(os.environ["HARNESS_DATA_DIR"]) / "journal"
    for run_id, way in (("dns-proc-recover", "recover"), ("dns-proc-sweep", "sweep")):
        journal = Journal(run_id, journal_dir)
        spoof = _fault(
            "fake", "dns.spoof", {"patterns": ["catalog.*"], "address": "127.0.0.9"}, upstream="127.0.0.1:53"
        )
        family_of(spoof.kind).inject(spoof, InjectContext(run_id, journal))
        assert chosen.ask("catalog.shop.test") == {"catalog.shop.test": ["127.0.0.9"]}, way
        assert neighbour.ask("catalog.shop.test") == {"catalog.shop.test": [CATALOG]}, way
        if way == "recover":
            done = _cli("recover")
            assert done.returncode == 0 and "'fake'" in done.stdout, done.stdout + done.stderr
            assert chosen.v2_cgroup() == home  # back where the journal says it was
        else:
            journal.path.unlink()  # the journal is lost: only the tags are left
            found = {(item.family, item.kind) for item in sweep.find()}
            assert {("dns", "nft table"), ("dns", "cgroup"), ("dns", "process")} <= found, found
            done = _cli("recover", "--sweep")
            assert done.returncode == 0 and "removed cgroup harness-dns-" in done.stdout, done.stdout + done.stderr
            assert chosen.v2_cgroup() == "/"  # no journal: the v2 root
        assert _wait(lambda: _nothing_left() and _no_fault_cgroup(), 10), (way, _tables(), _responders())
        assert chosen.ask("catalog.shop.test") == {"catalog.shop.test": [CATALOG]}, way
    assert all_outstanding(journal_dir) == []


def test_harness_itself_and_pid_1_are_never_moved(tmp_path: Path) -> None:
    """A pattern that matches only this process (harness) or only PID 1 matches nothing: the
    inject fails before anything is journaled, created or moved."""
    mine = re.escape(" ".join(psutil.Process().cmdline()))
    init = re.escape(Path("/proc/1/cmdline").read_bytes().rstrip(b"\0").replace(b"\0", b" ").decode())
    journal = Journal("dns-proc-refused", tmp_path)
    before = cgroup.original_cgroup(os.getpid())
    for pattern in (f"^{mine}$", f"^{init}$"):
        fault = _fault("nx", "dns.error", {"patterns": ["*"], "error": "nxdomain"}, pattern=pattern)
        with pytest.raises(FaultError, match=r"no running process matches .*harness itself, its parents and PID 1"):
            family_of(fault.kind).inject(fault, InjectContext(journal.run_id, journal))
    assert journal.outstanding() == [] and journal.latest("nx") is None and _no_fault_cgroup()
    assert cgroup.original_cgroup(os.getpid()) == before
