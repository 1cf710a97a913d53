"""Faults inside Kubernetes pods, against pods laid out on this machine as a kubelet lays them out.

Three "pods" of a service (tests/kubelet_pods.py: a cgroup per pod UID with the app's process in
its container scope, a CNI-named network namespace per pod with a real HTTP server in it) and
the API double (tests/k8s_api.py) serving pods whose UIDs, nodeName and containerStatuses match,
reached through the official client with $KUBECONFIG. The pods are chosen as a run chooses
them (:mod:`harness.chaos.kube`), each member fault made on the node
(:mod:`harness.chaos.pods`) and applied through its family's journal steps; traffic is measured by
requests from the host to each pod. The end-to-end test runs ``harness run`` on the local Ray,
whose node carries the hostname label the double's pods name as their node.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.chaos import pods as pod_faults
from harness.chaos.family import family_of
from harness.chaos.journal import FaultRecord, Journal
from harness.chaos.kube import choose_pods
from harness.chaos.kubelet import PodRef, locate
from harness.chaos.steps import InjectContext
from harness.errors import ConfigError
from harness.run.nodes import HOST_LABEL, Node, place_faults
from harness.scenario.faults import FaultBase, fault_kinds
from tests import kubelet_pods
from tests.k8s_api import FakeApiServer
from tests.kubelet_pods import HOST_ADDR, Pod, get

ROOT = Path(__file__).resolve().parents[1]
CONTEXT = "pods-test"
NAMESPACE = "shop"
SELECTOR = "app=payments"
NODE = socket.gethostname()  # the node the double's pods are on: the local Ray node's host label
RUN = "pods-test.1"
PODS = {"namespace": NAMESPACE, "selector": SELECTOR, "mode": "one"}


@pytest.fixture(scope="module")
def node() -> Iterator[list[Pod]]:
    with kubelet_pods.kubelet_pods(3) as pods:
        yield pods


@pytest.fixture(scope="module")
def server(node: list[Pod]) -> Iterator[FakeApiServer]:
    double = FakeApiServer()
    double.cluster.add_namespace(NAMESPACE, {"harness.io/chaos": "enabled"})
    for pod in node:
        containers = {"app": pod.container_id}
        labels = {"app": "payments"}
        double.cluster.add_pod(
            NAMESPACE, pod.name, labels, uid=pod.uid, node_name=NODE, containers=containers, pod_ip=pod.ip
        )
    double.cluster.add_pod(NAMESPACE, "orders-0", {"app": "orders"}, node_name="node-9", containers={"app": "f" * 64})
    yield double
    double.close()


@pytest.fixture
def kubeconfig(server: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = server.write_kubeconfig(tmp_path / "kubeconfig", [CONTEXT], CONTEXT)
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


def _fault(kind: str, **keys: Any) -> FaultBase:
    data = {"name": kind.replace(".", "-"), "kind": kind, "at": 0, "duration": 10, "pods": PODS, **keys}
    return fault_kinds()[kind].model_validate(data)


def _chosen(fault: FaultBase, node: list[Pod]) -> tuple[list[PodRef], Pod, list[Pod]]:
    refs = list(choose_pods([fault], [CONTEXT])[fault.name].pods)
    [ref] = refs
    [pod] = [p for p in node if p.name == ref.name]
    return refs, pod, [p for p in node if p is not pod]


def _inject(fault: FaultBase, refs: list[PodRef], journal: Journal) -> list[FaultRecord]:
    members = pod_faults.member_faults(fault, refs)
    return [family_of(m.kind).inject(m, InjectContext(RUN, journal)) for m in members]


def _revert(records: list[FaultRecord], journal: Journal) -> None:
    for record in records:
        family_of(record.kind).revert(record, journal)


def _median(ip: str, n: int = 5) -> tuple[set[str], float]:
    answers = [get(ip, timeout=1.5) for _ in range(n)]
    return {a for a, _ in answers}, statistics.median(t for _, t in answers)


# ---------------------------------------------------------------- finding a pod on its node


def test_each_pod_is_found_by_its_uid_in_the_kubelets_layout(node: list[Pod]) -> None:
    for pod in node:
        site = locate(PodRef(NAMESPACE, pod.name, pod.uid, NODE, pod.ip, (("app", pod.container_id),)))
        assert site.pids == (pod.app.pid,) if pod.app else False  # the app only, never the sandbox
        assert site.netns == pod.netns and not site.host_network
        assert site.pod_dirs == (str(pod.pod_dirs[0]),)
    with pytest.raises(Exception, match="no container sidecar"):
        locate(PodRef(NAMESPACE, node[0].name, node[0].uid, NODE, "", (("app", node[0].container_id),)), ["sidecar"])


def test_a_cgroup_v1_cgroupfs_pod_is_found_and_frozen_too() -> None:
    with kubelet_pods.kubelet_pods(1, "v1-cgroupfs", prefix="legacy", slot=1) as [pod]:
        ref = PodRef(NAMESPACE, pod.name, pod.uid, NODE, pod.ip, (("app", pod.container_id),))
        site = locate(ref)
        assert pod.app is not None and site.pids == (pod.app.pid,)
        assert "/kubepods/besteffort/pod" in site.pod_dirs[0] and site.netns == pod.netns
        fault = _fault("kubernetes.pod_failure").model_copy(update={"name": "freeze-v1"})
        journal = Journal(RUN)
        records = _inject(fault, [ref], journal)
        state = Path("/sys/fs/cgroup/freezer/kubepods/besteffort", f"pod{pod.uid}", "freezer.state")
        try:
            assert state.read_text().strip() in ("FROZEN", "FREEZING")
            assert get(pod.ip, timeout=1.0)[0] in ("TimeoutError", "timeout")
        finally:
            _revert(records, journal)
        assert state.read_text().strip() == "THAWED" and get(pod.ip)[0] == pod.name


# ---------------------------------------------------------------- faults on one pod of three


def test_a_partition_on_one_pod_cuts_only_its_traffic(node: list[Pod], kubeconfig: Path) -> None:
    fault = _fault("network.partition", params={"peers": [f"{HOST_ADDR}/32"]})
    refs, pod, others = _chosen(fault, node)
    journal = Journal(RUN)
    records = _inject(fault, refs, journal)
    try:
        assert [r.fault_name for r in records] == [f"network-partition.{NAMESPACE}.{pod.name}"]
        assert get(pod.ip, timeout=1.0)[0] in ("TimeoutError", "timeout")
        for other in others:
            assert get(other.ip)[0] == other.name
    finally:
        _revert(records, journal)
    assert get(pod.ip)[0] == pod.name


def test_a_delay_on_one_pod_slows_only_its_traffic(node: list[Pod], kubeconfig: Path) -> None:
    """The host kernel has no netem (TESTBED.md): the delay is a transparent proxy's, in the pod's netns."""
    fault = _fault("proxy.latency", target={"service": "0.0.0.0:8080"}, params={"latency": "300ms"})
    refs, pod, others = _chosen(fault, node)
    journal = Journal(RUN)
    records = _inject(fault, refs, journal)
    try:
        answers, slow = _median(pod.ip)
        assert answers == {pod.name} and slow >= 0.29, slow
        for other in others:
            answers, fast = _median(other.ip)
            assert answers == {other.name} and fast < 0.1, (other.name, fast)
    finally:
        _revert(records, journal)
    answers, after = _median(pod.ip)
    assert answers == {pod.name} and after < 0.1, after


def test_kill_and_pause_act_only_on_that_pods_processes(node: list[Pod], kubeconfig: Path) -> None:
    pause = _fault("process.pause")
    refs, pod, others = _chosen(pause, node)
    sandbox = pod.sandbox.pid if pod.sandbox else 0
    journal = Journal(RUN)
    records = _inject(pause, refs, journal)
    try:
        assert pod.app is not None and psutil.Process(pod.app.pid).status() == psutil.STATUS_STOPPED
        assert get(pod.ip, timeout=1.0)[0] in ("TimeoutError", "timeout")
        assert psutil.Process(sandbox).status() != psutil.STATUS_STOPPED
        assert all(get(o.ip)[0] == o.name for o in others)
    finally:
        _revert(records, journal)
    assert get(pod.ip)[0] == pod.name

    kill = _fault("process.kill").model_copy(update={"name": "kill-in-pod"})
    records = _inject(kill, refs, journal)
    try:
        assert pod.app is not None and pod.app.wait(timeout=5) == -9
        assert psutil.pid_exists(sandbox) and all(get(o.ip)[0] == o.name for o in others)
        assert all(o.app is not None and o.app.poll() is None for o in others)
    finally:
        _revert(records, journal)
        kubelet_pods.restart_app(pod)


def test_container_kill_kills_only_the_named_containers_processes(node: list[Pod], kubeconfig: Path) -> None:
    fault = _fault("kubernetes.container_kill", pods={**PODS, "containers": ["app"]})
    refs, pod, others = _chosen(fault, node)
    journal = Journal(RUN)
    records = _inject(fault, refs, journal)
    try:
        assert [r.kind for r in records] == ["process.kill"]  # applied, journaled and recovered as one
        assert pod.app is not None and pod.app.wait(timeout=5) == -9
        assert pod.sandbox is not None and pod.sandbox.poll() is None
        assert all(o.app is not None and o.app.poll() is None and get(o.ip)[0] == o.name for o in others)
    finally:
        _revert(records, journal)
        kubelet_pods.restart_app(pod)


def test_pod_failure_freezes_one_pod_and_thaws_it(node: list[Pod], kubeconfig: Path) -> None:
    fault = _fault("kubernetes.pod_failure")
    refs, pod, others = _chosen(fault, node)
    freeze = Path(pod.pod_dirs[0], "cgroup.freeze")
    journal = Journal(RUN)
    records = _inject(fault, refs, journal)
    try:
        assert freeze.read_text().strip() == "1"
        assert get(pod.ip, timeout=1.0)[0] in ("TimeoutError", "timeout")
        assert all(get(o.ip)[0] == o.name for o in others)
    finally:
        _revert(records, journal)
    assert freeze.read_text().strip() == "0" and get(pod.ip)[0] == pod.name


def test_a_frozen_pod_is_thawed_by_the_watchdog_and_by_recover(node: list[Pod], kubeconfig: Path) -> None:
    """A lapsed lease (the watchdog's pass over the journal) and ``harness recover`` thaw it from the record alone."""
    from harness.chaos.watchdog import Watchdog

    fault = _fault("kubernetes.pod_failure").model_copy(update={"name": "freeze-leased"})
    refs, pod, _others = _chosen(fault, node)
    freeze = Path(pod.pod_dirs[0], "cgroup.freeze")
    journal = Journal("pods-lease.1")
    [member] = pod_faults.member_faults(fault, refs)
    family_of(member.kind).inject(member, InjectContext("pods-lease.1", journal, lease_until=time.time() + 0.3))
    assert freeze.read_text().strip() == "1"
    time.sleep(0.5)
    Watchdog(journal.directory).scan()
    assert freeze.read_text().strip() == "0" and get(pod.ip)[0] == pod.name

    lost = fault.model_copy(update={"name": "freeze-lost"})
    [member] = pod_faults.member_faults(lost, refs)
    family_of(member.kind).inject(
        member, InjectContext("pods-lost.1", Journal("pods-lost.1"))
    )  # no lease: the run died
    assert freeze.read_text().strip() == "1"
    done = _harness("recover")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"thawed {freeze}" in done.stdout, done.stdout
    assert freeze.read_text().strip() == "0" and get(pod.ip)[0] == pod.name


def test_stress_lands_in_that_pods_cgroup(node: list[Pod], kubeconfig: Path) -> None:
    fault = _fault("stress.cpu", params={"workers": 1, "load": 10})
    refs, pod, others = _chosen(fault, node)
    before = {p.name: p.procs() for p in node}
    journal = Journal(RUN)
    records = _inject(fault, refs, journal)
    try:
        stress = {pid for pid in pod.procs() - before[pod.name] if psutil.Process(pid).name().startswith("stress-ng")}
        assert stress, f"no stress-ng process in {pod.pod_dirs[0]}"
        assert all(o.procs() == before[o.name] for o in others)
    finally:
        _revert(records, journal)
    deadline = time.monotonic() + 5
    while pod.procs() != before[pod.name] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pod.procs() == before[pod.name]


def test_sweep_removes_what_a_lost_journal_left_in_a_pod(node: list[Pod], kubeconfig: Path) -> None:
    fault = _fault("network.partition", params={"peers": [f"{HOST_ADDR}/32"]}).model_copy(update={"name": "lost"})
    refs, pod, _others = _chosen(fault, node)
    journal = Journal(RUN)
    _inject(fault, refs, journal)
    journal.path.unlink()  # the journal is lost: only the tag on the nft table says whose it is
    assert get(pod.ip, timeout=1.0)[0] in ("TimeoutError", "timeout")
    swept = subprocess.run(
        [sys.executable, "-m", "harness.cli", "recover", "--sweep"], capture_output=True, text=True, timeout=60
    )
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert f"netns {pod.netns}" in swept.stdout, swept.stdout
    assert get(pod.ip)[0] == pod.name


# ---------------------------------------------------------------- refusals


def test_a_pod_on_a_node_without_an_agent_is_an_error_naming_it(server: FakeApiServer, kubeconfig: Path) -> None:
    from harness.scenario import load_scenario

    path = _scenario(Path(os.environ["HARNESS_RUNS_DIR"]).parent / "orders.yaml", "app=orders", "network.partition")
    scenario = load_scenario(path)
    chosen = {name: c.pods for name, c in choose_pods(scenario.faults, [CONTEXT]).items()}
    here = Node("n1", "127.0.0.1", labels={HOST_LABEL: NODE})
    with pytest.raises(ConfigError, match=r"pod shop/orders-0 is on Kubernetes node node-9, which has no Ray node"):
        place_faults(scenario, [here], here, chosen)


def test_a_kind_that_cannot_act_in_a_pod_is_a_located_error(tmp_path: Path) -> None:
    path = _scenario(tmp_path / "bad.yaml", SELECTOR, "time.skew", extra="target: {pattern: app}")
    done = _harness("validate", str(path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "faults[0].pods: faults of kind time.skew cannot act inside a pod; remove pods" in done.stderr
    assert "Traceback" not in done.stderr


def test_pod_mistakes_are_each_located_at_once(tmp_path: Path) -> None:
    path = tmp_path / "mistakes.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name: mistakes
            target: {{base_url: "http://127.0.0.1:9"}}
            load:
              locustfile: {ROOT / "tests" / "locustfiles" / "ping.py"}
              user_classes: [{{class: Idler}}]
              stages: [{{duration: 10s, users: 1, spawn_rate: 1}}]
            faults:
              - name: both
                kind: process.pause
                at: 1s
                duration: 2s
                node: {{labels: {{harness.io/host: a}}}}
                pods: {{namespace: shop, selector: app=x, mode: fixed}}
              - name: targeted
                kind: process.kill
                at: 1s
                duration: 2s
                target: {{pattern: app}}
                pods: {{namespace: shop, selector: app=x}}
              - name: unnamed
                kind: kubernetes.container_kill
                at: 1s
                duration: 2s
                pods: {{namespace: shop, selector: app=x}}
            slos: [{{name: ok, objective: error_rate < 1%, window: run}}]
            """
        )
    )
    done = _harness("validate", str(path))
    assert done.returncode == 2, done.stdout + done.stderr
    for line in (
        "faults[0].pods: give node or pods, not both: the chosen pods decide the nodes",
        "faults[0].pods.mode: mode 'fixed' needs count",
        "faults[0].pods: pods need safety.allowed_contexts",
        "faults[1].target: with pods, the target is the pods' containers",
        "faults[2].pods.containers: name the containers to kill",
    ):
        assert line in done.stderr, (line, done.stderr)
    assert "Traceback" not in done.stderr


# ---------------------------------------------------------------- plan and a real run


def _scenario(path: Path, selector: str, kind: str, extra: str = "", base_url: str = "http://127.0.0.1:9") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    params = extra or f"params: {{peers: ['{HOST_ADDR}/32']}}"
    path.write_text(
        textwrap.dedent(
            f"""\
            name: {path.stem}
            target: {{base_url: "{base_url}"}}
            load:
              locustfile: {ROOT / "tests" / "locustfiles" / "ping.py"}
              user_classes: [{{class: Idler}}]
              processes: 1
              stages:
                - {{name: steady, duration: 12s, users: 4, spawn_rate: 4}}
            faults:
              - name: cut
                kind: {kind}
                at: 3s
                duration: 4s
                pods: {{namespace: {NAMESPACE}, selector: '{selector}', mode: one}}
                {params}
            slos:
              - {{name: during, objective: error_rate < 5%, window: 'during:cut'}}
              - {{name: healed, objective: error_rate < 1%, window: 'after:cut'}}
            safety: {{allowed_contexts: [{CONTEXT}], allowed_networks: ['10.231.7.0/24']}}
            results: {{url: 'http://127.0.0.1:9', database: pods}}
            """
        )
    )
    return path


def _harness(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=timeout, env=os.environ
    )


def test_plan_shows_the_pods_their_nodes_and_namespaces(node: list[Pod], kubeconfig: Path, tmp_path: Path) -> None:
    path = _scenario(tmp_path / "plan.yaml", SELECTOR, "network.partition")
    done = _harness("plan", str(path), "--json")  # the table cuts long cells short
    assert done.returncode == 0, done.stdout + done.stderr
    flat = json.dumps(json.loads(done.stdout))
    cut = _fault("network.partition", params={"peers": [f"{HOST_ADDR}/32"]}).model_copy(update={"name": "cut"})
    [ref] = choose_pods([cut], [CONTEXT])["cut"].pods  # what the plan chose: the seed is the fault name
    assert f"inside one pod matching '{SELECTOR}' in namespace {NAMESPACE}" in flat, flat
    assert f"1 of 3 matching pods (context {CONTEXT})" in flat and f"on {NODE}" in flat, flat
    assert f"{ref.name} on {NODE}" in flat, flat
    [pod] = [p for p in node if p.name == ref.name]
    assert f"netns {pod.netns}" in flat and f"pod{pod.uid.replace('-', '_')}.slice" in flat, flat


@pytest.mark.slow
def test_a_run_cuts_one_pod_through_its_nodes_agent_and_heals(
    node: list[Pod], server: FakeApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    cut = _fault("network.partition", params={"peers": [f"{HOST_ADDR}/32"]}).model_copy(update={"name": "cut"})
    [ref] = choose_pods([cut], [CONTEXT])["cut"].pods
    [pod] = [p for p in node if p.name == ref.name]
    path = _scenario(tmp_path / "run.yaml", SELECTOR, "network.partition", base_url=f"http://{pod.ip}:8080")
    done = _harness("run", str(path), "--run-id", "pods-run", timeout=180)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]  # 'during' breaks, 'healed' holds
    summary = json.loads((Path(os.environ["HARNESS_RUNS_DIR"]) / "pods-run" / "summary.json").read_text())
    slos = {s["name"]: s for s in summary["slos"]}
    assert not slos["during"]["passed"] and slos["healed"]["passed"], slos
    [start] = [e for e in summary["events"] if e["kind"] == "fault" and e["name"] == "cut" and e["state"] == "start"]
    assert f"{NAMESPACE}/{pod.name}" in start["text"] and f"(on {NODE})" in start["text"], start
    assert get(pod.ip)[0] == pod.name and server.mutating() == []


@pytest.mark.slow
def test_a_run_with_a_pod_on_a_node_without_an_agent_exits_2_and_applies_nothing(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    path = _scenario(tmp_path / "orphan.yaml", "app=orders", "network.partition")
    done = _harness("run", str(path), "--run-id", "pods-orphan", timeout=120)
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert "pod shop/orders-0 is on Kubernetes node node-9, which has no Ray node" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr and server.mutating() == []
    assert not (Path(os.environ["HARNESS_RUNS_DIR"]) / "pods-orphan" / "summary.json").exists()
