"""``harness recover --sweep`` on objects whose journal is gone, in a namespace this test makes.

Each kind of tagged object is made by hand (as a run whose journal was lost would have left
it), beside untagged look-alikes that the sweep must leave alone: an nft table of another
name, a blackhole route without harness's metric, a tbf with another handle, an ifb with
another name, an untagged process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from harness.chaos import cgroups, sweep

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")

NS = f"hsweep{os.getpid()}"
VETH_A, VETH_B = f"hswa{os.getpid() % 100000}", f"hswb{os.getpid() % 100000}"
SKEW_FILE = Path(f"/tmp/hsweep-{os.getpid()}.faketime")  # a clock skew a lost run left (time.skew)
_V2 = cgroups.cgroup_mounts()[1]
#: A dns fault's cgroup a lost run left (its target still in it), and an untagged look-alike.
DNS_CGROUP = Path(_V2[1], f"harness-dns-lostrun{os.getpid()}") if _V2 else None
OTHER_CGROUP = Path(_V2[1], f"hsweep-other{os.getpid()}") if _V2 else None


def _cgroup_of(pid: int) -> str:
    return next(line[3:] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines() if line.startswith("0::"))


def _remove_cgroup(path: Path | None) -> None:
    if path is not None and path.is_dir():
        for pid in (path / "cgroup.procs").read_text().split():
            (path.parent / "cgroup.procs").write_text(pid)
        path.rmdir()


def _sh(*cmd: str, ns: str | None = NS) -> str:
    full = (["ip", "netns", "exec", ns] if ns else []) + list(cmd)
    return subprocess.run(full, check=True, capture_output=True, text=True, timeout=10).stdout


def _nft(script: str) -> None:
    subprocess.run(["ip", "netns", "exec", NS, "nft", "-f", "-"], input=script, text=True, check=True, timeout=10)


def _tables() -> list[str]:
    data = json.loads(_sh("nft", "-j", "list", "tables") or "{}")
    return sorted(f"{i['table']['family']} {i['table']['name']}" for i in data.get("nftables", []) if "table" in i)


@pytest.fixture
def leftovers() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        _sh("ip", "netns", "add", NS, ns=None)
        _sh("ip", "link", "add", VETH_A, "type", "veth", "peer", "name", VETH_B)
        _sh("ip", "link", "set", VETH_A, "up")
        _sh("ip", "link", "set", VETH_B, "up")
        _sh("ip", "addr", "add", "10.213.81.1/24", "dev", VETH_A)
        # tagged, as runs whose journals were lost left them
        _nft("add table inet harness_lost_run\nadd table ip harness_proxy_lost_run\n")
        _nft("add table ip harness_dns_lost_run\n")
        _sh("tc", "qdisc", "add", "dev", VETH_A, "root", "handle", "4852:", "tbf", "rate", "1mbit", "burst", "5000",
            "latency", "50ms")  # fmt: skip
        _sh("ip", "route", "add", "blackhole", "10.213.82.0/24", "metric", "4852")
        _sh("ip", "link", "add", "hb0123456789", "type", "ifb")
        _sh("tc", "qdisc", "add", "dev", VETH_B, "ingress")
        for prio in ("18515", "7"):  # 0x4853: netem's ingress redirect; 7: someone else's
            _sh("tc", "filter", "add", "dev", VETH_B, "parent", "ffff:", "protocol", "ip", "prio", prio, "u32",
                "match", "u32", "0", "0", "flowid", "1:1")  # fmt: skip
        # untagged look-alikes
        _nft("add table inet someone_else\n")
        _sh("tc", "qdisc", "add", "dev", VETH_B, "root", "handle", "1:", "tbf", "rate", "1mbit", "burst", "5000",
            "latency", "50ms")  # fmt: skip
        _sh("ip", "route", "add", "blackhole", "10.213.83.0/24")
        _sh("ip", "link", "add", "ifbmine", "type", "ifb")
        env = dict(os.environ)
        procs.append(subprocess.Popen(["sleep", "60"], env={**env, "HARNESS_STRESS_FAULT": "lost-run/cpu"}))
        procs.append(subprocess.Popen(["sleep", "60"], env={**env, "HARNESS_PROXY_FAULT": "lost-run/abort"}))
        procs.append(subprocess.Popen(["sleep", "60"], env={k: v for k, v in env.items() if "HARNESS_" not in k}))
        SKEW_FILE.write_text("-600.000000 x1.000000\n")
        procs.append(subprocess.Popen(["sleep", "60"], env={**env, "HARNESS_CLOCK_SHIM": str(SKEW_FILE)}))
        procs.append(subprocess.Popen(["sleep", "60"], env={**env, "HARNESS_DNS_FAULT": "lost-run/nx"}))
        if DNS_CGROUP is not None and OTHER_CGROUP is not None:
            procs.append(subprocess.Popen(["sleep", "60"], env={**env}))  # a dns fault's target: not killed
            DNS_CGROUP.mkdir()
            (DNS_CGROUP / "cgroup.procs").write_text(str(procs[-1].pid))
            OTHER_CGROUP.mkdir()
        yield procs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)
        subprocess.run(["ip", "netns", "delete", NS], capture_output=True, timeout=10)
        SKEW_FILE.unlink(missing_ok=True)
        _remove_cgroup(DNS_CGROUP)
        _remove_cgroup(OTHER_CGROUP)


def test_sweep_removes_every_tagged_object_and_nothing_else(leftovers: list[subprocess.Popen[bytes]]) -> None:
    found = {(item.netns, item.kind, item.name) for item in sweep.find()}
    expected = {
        (NS, "nft table", "inet harness_lost_run"),
        (NS, "nft table", "ip harness_proxy_lost_run"),
        (NS, "nft table", "ip harness_dns_lost_run"),
        (NS, "qdisc", f"tbf 4852: on {VETH_A}"),
        (NS, "route", "blackhole 10.213.82.0/24 metric 4852"),
        (NS, "ifb", "hb0123456789"),
        (NS, "filter", f"u32 pref 0x4853 on {VETH_B} ingress"),
        ("", "process", f"pid {leftovers[0].pid} (HARNESS_STRESS_FAULT=lost-run/cpu)"),
        ("", "process", f"pid {leftovers[1].pid} (HARNESS_PROXY_FAULT=lost-run/abort)"),
        ("", "clock skew file", f"{SKEW_FILE} (-600.000000 x1.000000; pid {leftovers[3].pid})"),
        ("", "process", f"pid {leftovers[4].pid} (HARNESS_DNS_FAULT=lost-run/nx)"),
    }
    if DNS_CGROUP is not None:
        expected.add(("", "cgroup", DNS_CGROUP.name))
        assert _cgroup_of(leftovers[5].pid) == f"/{DNS_CGROUP.name}"
    assert expected <= found, found
    assert not [f for f in found if f[1] == "cgroup" and f[2] == getattr(OTHER_CGROUP, "name", None)], found
    assert not [f for f in found if f[0] == NS and ("someone_else" in f[2] or "ifbmine" in f[2])]

    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "recover", "--sweep"], capture_output=True, text=True, timeout=60
    )
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "removed nft table inet harness_lost_run" in done.stdout
    assert _tables() == ["inet someone_else"]
    assert "4852" not in _sh("tc", "qdisc", "show", "dev", VETH_A)
    assert "tbf 1:" in _sh("tc", "qdisc", "show", "dev", VETH_B)
    assert _sh("ip", "route", "show", "type", "blackhole").split() == ["blackhole", "10.213.83.0/24"]
    filters = _sh("tc", "filter", "show", "dev", VETH_B, "parent", "ffff:")
    assert "pref 18515" not in filters and "pref 7 " in filters
    links = _sh("ip", "-o", "link", "show")
    assert "hb0123456789" not in links and "ifbmine" in links
    for proc in (*leftovers[:2], leftovers[4]):
        assert proc.wait(10) is not None
    assert psutil.Process(leftovers[2].pid).status() != psutil.STATUS_ZOMBIE  # untagged: untouched
    assert SKEW_FILE.read_text() == "+0 x1\n"  # the skew is undone, its process left running
    assert psutil.Process(leftovers[3].pid).status() != psutil.STATUS_ZOMBIE
    if DNS_CGROUP is not None and OTHER_CGROUP is not None:  # the target back in the v2 root, alive
        assert not DNS_CGROUP.exists() and OTHER_CGROUP.is_dir()
        assert _cgroup_of(leftovers[5].pid) == "/"
        assert psutil.Process(leftovers[5].pid).status() != psutil.STATUS_ZOMBIE
    again = subprocess.run(
        [sys.executable, "-m", "harness.cli", "recover", "--sweep"], capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0 and "sweep: no harness object left on this node" in again.stdout, again.stdout
