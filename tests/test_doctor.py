"""``harness doctor``'s capability probes, run for real on this host.

What TESTBED.md says this machine can and cannot do is the expected answer: nftables, tbf,
ifb, network namespaces, cgroups and stress-ng work; netem does not (the host kernel has no
sch_netem); PID 1 is not systemd. Every probe must leave no network namespace behind.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from harness.chaos import network_probes
from harness.chaos.capabilities import PROBE_TIMEOUT, PROBES, Capability, missing, probe, render, requirements
from harness.errors import CapabilityMissing
from harness.scenario import Scenario, load_scenario

IP = shutil.which("ip") or "ip"  # absolute: some tests run probes with a PATH that lacks it
pytestmark = pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 is not installed")


def _netns_list() -> list[str]:
    done = subprocess.run([IP, "netns", "list"], capture_output=True, text=True, timeout=10, check=True)
    return sorted(line.split()[0] for line in done.stdout.splitlines() if line.strip())


@pytest.fixture
def no_netns_left() -> object:
    """Fails the test if it leaves a network namespace behind (compares ``ip netns list``)."""
    before = _netns_list()
    yield None
    leftover = [ns for ns in _netns_list() if ns not in before and ns.startswith("harness-probe-")]
    for ns in leftover:  # ours by name: clean up, then fail
        subprocess.run([IP, "netns", "delete", ns], timeout=10, check=False)
    assert leftover == []


def test_this_host(no_netns_left: object) -> None:
    timings: dict[str, float] = {}
    found: dict[str, Capability] = {}
    for name in PROBES:
        start = time.monotonic()
        [cap] = probe([name])
        timings[name] = time.monotonic() - start
        found[name] = cap
    print("probe seconds:", {name: round(t, 3) for name, t in timings.items()})
    print("\n".join(render(found.values())))

    assert found["nftables"].ok, found["nftables"].detail
    assert "created and deleted a table in a throwaway netns" in found["nftables"].detail
    assert found["tbf"].ok, found["tbf"].detail
    assert found["ifb"].ok, found["ifb"].detail
    assert found["netns"].ok and found["iproute"].ok
    assert found["stress-ng"].ok and "version" in found["stress-ng"].detail
    assert found["cgroups"].ok and "memory" in found["cgroups"].detail
    assert found["cgroup2"].ok and "nft takes socket cgroupv2 rules" in found["cgroup2"].detail
    assert found["libfaketime"].ok and "moves a child's wall clock" in found["libfaketime"].detail
    assert found["ptrace-vdso"].ok and "patches a running child's vDSO" in found["ptrace-vdso"].detail
    netem = found["netem"]
    assert not netem.ok
    # Why, and what a user does about it: the module and the packages that ship it. No advice
    # meant for this project's own test machines (a UML guest) reaches users.
    assert "sch_netem" in netem.detail and "modprobe sch_netem" in netem.detail
    assert "linux-image-" in netem.detail and "linux-modules-extra" in netem.detail
    assert "UML" not in netem.detail
    assert not found["systemd"].ok and "not systemd" in found["systemd"].detail
    # Each probe is bounded: the netem probe starts a fresh interpreter, the rest are quicker.
    assert max(timings.values()) < 5 * PROBE_TIMEOUT
    assert all(t < 2 * PROBE_TIMEOUT for name, t in timings.items() if name != "netem")


def test_own_netem_probe_when_netem_module_lacks_available(
    monkeypatch: pytest.MonkeyPatch, no_netns_left: object
) -> None:
    """Without ``netem_probe.available()`` the doctor asks the kernel itself, the same way."""
    from harness.chaos import netem_probe as netem

    monkeypatch.delattr(netem, "available", raising=False)
    [cap] = probe(["netem"])
    assert not cap.ok
    assert cap.detail.startswith("the kernel refused a netem qdisc:") and "modprobe sch_netem" in cap.detail


def test_a_refused_qdisc_leaves_no_namespace(no_netns_left: object) -> None:
    with pytest.raises(CapabilityMissing, match="the kernel refused a nosuchqdisc qdisc"):
        network_probes.qdisc_probe("nosuchqdisc")


@pytest.mark.parametrize(
    ("name", "binary", "hint"),
    [
        ("stress-ng", "stress-ng", "apt-get install stress-ng"),
        ("nftables", "nft", "apt-get install nftables"),
        ("netns", "ip", "apt-get install iproute2"),
        ("uml", "linux.uml", "apt-get install user-mode-linux kmod"),
        ("nginx", "nginx", "apt-get install nginx"),
    ],
)
def test_missing_binary_says_how_to_install_it(
    name: str, binary: str, hint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_netns_left: object
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without the binary
    [cap] = probe([name])
    assert not cap.ok
    assert cap.detail == f"{binary} is not installed ({hint})"


def test_kube_contexts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    [cap] = probe(["kube-contexts"])
    assert not cap.ok and "does not exist" in cap.detail and "KUBECONFIG" in cap.detail

    config = tmp_path / "kubeconfig"
    config.write_text(
        """
apiVersion: v1
kind: Config
clusters:
  - {name: local, cluster: {server: "http://127.0.0.1:1"}}
users:
  - {name: me, user: {token: t}}
contexts:
  - {name: dev, context: {cluster: local, user: me}}
  - {name: staging, context: {cluster: local, user: me}}
current-context: staging
"""
    )
    monkeypatch.setenv("KUBECONFIG", str(config))
    [cap] = probe(["kube-contexts"])
    assert cap.ok
    assert cap.detail == f"{config}: contexts dev, staging (current: staging)"

    config.write_text("{not: [yaml")
    [cap] = probe(["kube-contexts"])
    assert not cap.ok and "cannot be read" in cap.detail


SCENARIO = """
name: doctor-test
target: {base_url: "http://127.0.0.1:1", allowed_hosts: [127.0.0.1]}
load:
  locustfile: shop.py
  user_classes: [{class: Shopper}]
  stages: [{duration: 60s, users: 1}]
safety: {allowed_contexts: [dev], allowed_networks: [10.0.0.0/24], allowed_interfaces: [eth0]}
faults:
  - {name: slow-db, kind: network.netem, at: 1s, duration: 5s,
     target: {netns: db, interface: eth0}, params: {delay: 100ms}}
  - {name: cut, kind: network.partition, at: 1s, duration: 5s, target: {netns: db}, params: {peers: [10.0.0.0/24]}}
  - {name: thin, kind: network.bandwidth, at: 1s, duration: 5s, target: {interface: eth0}, params: {rate: 1mbit}}
  - {name: drop, kind: network.loss, at: 1s, duration: 5s, params: {percent: 10, peers: [10.0.0.0/24]}}
  - {name: burn, kind: stress.cpu, at: 1s, duration: 5s, target: {pattern: api}, params: {workers: 1}}
  - {name: fill, kind: stress.disk_fill, at: 1s, duration: 5s, params: {bytes: 1M, path: /tmp}}
  - {name: unit, kind: process.kill, at: 1s, duration: 5s, target: {systemd_unit: api.service}}
  - {name: plain, kind: process.kill, at: 1s, duration: 5s, target: {pattern: api}}
  - {name: pods, kind: kubernetes.pod_kill, at: 1s, duration: 5s, target: {namespace: shop, selector: app=api}}
"""


@pytest.fixture
def scenario(tmp_path: Path) -> Scenario:
    (tmp_path / "shop.py").write_text("from locust import HttpUser\nclass Shopper(HttpUser):\n    pass\n")
    path = tmp_path / "doctor.yaml"
    path.write_text(SCENARIO)
    return load_scenario(path)


def test_requirements(scenario: Scenario) -> None:
    needs = {fault.name: requirements(fault) for fault in scenario.faults}
    assert needs == {
        "slow-db": ["netem", "netns"],
        "cut": ["nftables", "netns"],
        "thin": ["tbf"],
        "drop": ["nftables"],
        "burn": ["stress-ng", "cgroups"],
        "fill": [],
        "unit": ["systemd"],
        "plain": [],
        "pods": ["kube-contexts"],
    }


def test_missing_names_each_fault_that_cannot_work(scenario: Scenario, no_netns_left: object) -> None:
    probed = probe(["nftables", "netem", "tbf", "netns", "stress-ng", "cgroups", "systemd"])
    netem = next(c for c in probed if c.name == "netem")
    systemd = next(c for c in probed if c.name == "systemd")
    assert missing(scenario, probed) == [
        f"fault 'slow-db' (network.netem) needs netem: {netem.detail}",
        f"fault 'unit' (process.kill) needs systemd: {systemd.detail}",
        "fault 'pods' (kubernetes.pod_kill) needs kube-contexts: not probed",
    ]
    everything = [Capability(name, True, "fine") for name in PROBES]
    assert missing(scenario, everything) == []
    two_gaps = [*everything, Capability("netem", False, "no netem"), Capability("netns", False, "no ip")]
    assert missing(scenario, two_gaps)[0] == (
        "fault 'slow-db' (network.netem) needs netem: no netem; needs netns: no ip"
    )


def test_render() -> None:
    lines = render(
        [
            Capability("nftables", True, "nft v1"),
            Capability("netem", False, "no sch_netem"),
            Capability("nginx", False, "nginx is not installed (apt-get install nginx)", optional=True),
        ]
    )
    assert lines == [
        "ok  nftables  nft v1",
        "NO  netem     no sch_netem",
        "--  nginx     nginx is not installed (apt-get install nginx)",
        "1 of 2 capabilities available; optional tools missing: nginx",
    ]


NETEM_SCENARIO = """
name: needs-netem
target: {base_url: "http://127.0.0.1:9"}
load:
  locustfile: LOCUSTFILE
  user_classes: [{class: Ping}]
  stages: [{name: s, duration: 5s, users: 1}]
faults:
  - name: slow-lo
    kind: network.netem
    at: 1s
    duration: 2s
    target: {interface: lo}
    params: {delay: 100ms}
safety: {allowed_interfaces: [lo]}
"""


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    import os
    import sys

    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )


def test_doctor_and_run_refuse_a_scenario_that_needs_netem_here(tmp_path: Path, no_netns_left: object) -> None:
    """The CLI as users call it: doctor lists the gap and exits 2; run refuses before anything starts."""
    locustfile = Path(__file__).parent / "locustfiles" / "ping.py"
    path = tmp_path / "netem.yaml"
    path.write_text(NETEM_SCENARIO.replace("LOCUSTFILE", str(locustfile)))
    doctor = _cli("doctor", str(path))
    print(doctor.stdout, doctor.stderr)
    assert doctor.returncode == 2, doctor.stdout + doctor.stderr
    assert "NO  netem" in doctor.stdout
    assert "fault 'slow-lo' (network.netem) needs netem:" in doctor.stderr + doctor.stdout
    assert "Traceback" not in doctor.stderr
    started = time.monotonic()
    run = _cli("run", str(path), "--run-id", "doctor-refused")
    assert run.returncode == 2, run.stdout + run.stderr
    assert "needs netem" in run.stdout + run.stderr and "Traceback" not in run.stderr
    assert time.monotonic() - started < 30  # refused at once: no Ray, no load, nothing applied
    import os

    assert not (Path(os.environ["HARNESS_RUNS_DIR"]) / "doctor-refused").exists()  # no run was started


def test_doctor_speaks_to_users_not_to_this_projects_test_machines(no_netns_left: object) -> None:
    """`harness doctor` lists what faults may need; each gap says what to install or load.

    The project's own test tools (a UML guest standing in for netem, nginx and wrk for the
    benchmarks) are not a user's concern and are not listed.
    """
    done = _cli("doctor")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    listed = [line.split()[1] for line in lines[:-1]]
    assert listed == list(PROBES) and not {"uml", "nginx", "wrk"} & set(listed)
    assert "UML" not in done.stdout and "uml" not in done.stdout
    netem = next(line for line in lines if line.split()[1] == "netem")
    if netem.startswith("NO"):  # as on these machines: the module to load and where it comes from
        assert "modprobe sch_netem" in netem and "linux-image-" in netem
    assert lines[-1] == f"{sum(line.startswith('ok') for line in lines)} of {len(PROBES)} capabilities available"
