"""Scale-out on a real multi-node Ray cluster on this machine (``ray.cluster_utils.Cluster``).

The cluster is a head node with no CPUs (so no generator may land on it) and two worker
nodes with one CPU each; ``harness run --ray-address`` joins it as a separate process, the
way a user runs against a cluster. What is checked:

* the two generators are placed on the two different worker nodes (summary.json, cross-checked
  against which raylet really parents each Locust process);
* the exact merge still holds across nodes: per-second and whole-run p50, p90, p99, p99.9 and
  max equal the nearest-rank ground truth from every raw latency (within HDR's 3 significant
  digits), and the counts are equal;
* losing a worker node mid-run is detected within 5 s, recorded as an event naming the lost
  generator, and makes the run invalid (exit 5).

The cluster's processes carry this session's HARNESS_DATA_DIR (conftest's leftover check
sees them), its session files and its ``ray_current_cluster`` address file live in a private
RAY_TMPDIR, so a later ``ray.init()`` elsewhere in the session can never join it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.demo.control import DemoInfo, down, up
from tests.ground_truth import PERCENTILES, hdr_close, nearest_rank

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BASE_PORT = 18900
WORKERS = 2


# --------------------------------------------------------------------------- the cluster


@contextlib.contextmanager
def ray_cluster(workers: int, env: dict[str, str]) -> Iterator[Any]:
    """Head (0 CPUs, no dashboard) plus ``workers`` one-CPU nodes; every process stopped on exit.

    ``env`` is given to every node process (and so to the actors and Locust processes they
    start): a real cluster's nodes do not inherit the driver's environment either.
    """
    from ray.cluster_utils import Cluster

    tmpdir = tempfile.mkdtemp(prefix="hs-ray-", dir="/tmp")  # short: Ray's unix socket paths
    overrides = {"RAY_TMPDIR": tmpdir, **env}
    saved = {key: os.environ.get(key) for key in overrides}
    os.environ.update(overrides)
    cluster = None
    try:
        cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 0, "include_dashboard": False},
            shutdown_at_exit=True,
        )
        for _ in range(workers):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes(timeout=60)
        # The address file a bare ``ray.init()`` reads is under our RAY_TMPDIR, not /tmp/ray.
        shared = Path("/tmp/ray/ray_current_cluster")
        assert not shared.exists() or shared.read_text().strip() != cluster.address
        yield cluster
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if cluster is not None:
            _shutdown(cluster)
        shutil.rmtree(tmpdir, ignore_errors=True)


def _node_processes(node: Any) -> list[psutil.Process]:
    """Every process of one node: those Ray tracks, plus everything its raylet started.

    Ray 2.60's raylet starts the dashboard and runtime-env agents and the workers itself,
    and the node object does not track them; an agent orphaned by a killed raylet can live
    on, so teardown kills whatever of this list survives, by PID.
    """
    found: list[psutil.Process] = []
    for infos in node.all_processes.values():
        for info in infos:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(info.process.pid)
                found += [proc, *proc.children(recursive=True)]
    return found


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def _shutdown(cluster: Any) -> None:
    """Stop every node (workers first, gracefully, so raylets stop their agents), then reap stragglers."""
    processes = [p for node in cluster.list_all_nodes() for p in _node_processes(node)]
    for node in [*cluster.worker_nodes, cluster.head_node]:
        if node is not None:
            with contextlib.suppress(Exception):
                cluster.remove_node(node, allow_graceful=True)
    _kill(processes)


def _kill(processes: list[psutil.Process]) -> None:
    """SIGKILL the ones still running (create time checked by psutil: never a recycled PID)."""
    alive = [p for p in processes if p.is_running()]
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=10)


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("raw")


@pytest.fixture(scope="module")
def cluster(raw_dir: Path) -> Iterator[Any]:
    with ray_cluster(WORKERS, {"HARNESS_RAW_LATENCY_DIR": str(raw_dir)}) as started:
        yield started


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoInfo]:
    directory = tmp_path_factory.mktemp("demo")
    try:
        yield up(directory=directory, base_port=BASE_PORT, restart_delay=3.0)
    finally:
        down(directory=directory)


def _raylet_pid(node: Any) -> int:
    from ray._private import ray_constants

    return int(node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid)


def _locust_processes_by_node(cluster: Any, run_id: str) -> dict[str, list[str]]:
    """Node id -> Locust process ids of this run whose actor that node's raylet started."""
    raylets = {_raylet_pid(n): n.node_id for n in cluster.list_all_nodes()}
    found: dict[str, list[str]] = defaultdict(list)
    for proc in psutil.process_iter(["pid", "cmdline", "environ"]):
        with contextlib.suppress(psutil.Error):
            cmdline = proc.info["cmdline"] or []
            if "harness.load.runner" not in cmdline or (proc.info["environ"] or {}).get("HARNESS_RUN_ID") != run_id:
                continue
            actor = proc.parent()
            raylet = actor.parent() if actor is not None else None
            if raylet is not None and raylet.pid in raylets:
                found[raylets[raylet.pid]].append(cmdline[cmdline.index("--process-id") + 1])
    return dict(found)


# --------------------------------------------------------------------------- running harness


def _scenario(path: Path, demo: DemoInfo, influx_url: str, database: str, load: str) -> Path:
    path.write_text(
        f"""
name: scaleout
target:
  base_url: {demo.base_url}
load:
  locustfile: {ROOT / "locustfiles" / "shop.py"}
  user_classes:
    - class: Shopper
  generators: 2
{load}
results:
  url: {influx_url}
  database: {database}
""".lstrip()
    )
    return path


def _start(scenario: Path, tmp: Path, run_id: str, address: str) -> subprocess.Popen[str]:
    env = {**os.environ, "HARNESS_RUNS_DIR": str(tmp / "runs")}
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", str(scenario), "--run-id", run_id, "--ray-address", address],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen[str], timeout: float) -> str:
    try:
        output, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return output


def _summary(tmp: Path, run_id: str) -> dict[str, Any]:
    path = tmp / "runs" / run_id / "summary.json"
    return json.loads(path.read_text()) if path.exists() else {}


# --------------------------------------------------------------------------- ground truth


SPREAD_LOAD = """  processes: 2
  stages:
    - {name: ramp, duration: 3s, users: 40, spawn_rate: 40}
    - {name: steady, duration: 17s, users: 40}
slos:
  - {name: run-p99, objective: p99 < 5s, window: run}
"""


def test_generators_spread_across_nodes_and_merge_is_exact(
    cluster: Any, demo: DemoInfo, influxd: Any, raw_dir: Path, tmp_path: Path
) -> None:
    influxd.create_database("scaleout")
    run_id = "scaleout-spread"
    scenario = _scenario(tmp_path / "spread.yaml", demo, influxd.url, "scaleout", SPREAD_LOAD)
    proc = _start(scenario, tmp_path, run_id, cluster.address)
    placed: dict[str, list[str]] = {}
    deadline = time.monotonic() + 90
    while proc.poll() is None and time.monotonic() < deadline and sum(map(len, placed.values())) < 4:
        time.sleep(0.5)
        placed = _locust_processes_by_node(cluster, run_id)
    output = _finish(proc, timeout=150)
    assert proc.returncode == 0, output[-4000:]
    assert "Traceback" not in output
    summary = _summary(tmp_path, run_id)

    # Placement: one generator per worker node, two Locust processes each, the head has none.
    workers = {n.node_id for n in cluster.worker_nodes}
    generators = summary["generators"]
    assert [g["id"] for g in generators] == ["g0", "g1"]
    nodes = [g["node"] for g in generators]
    assert len(set(nodes)) == 2 and set(nodes) == workers, (nodes, workers)
    assert all(g["node_ip"] for g in generators)
    assert sorted(summary["processes"]) == ["g0.0", "g0.1", "g1.0", "g1.1"]
    # What summary.json says is what the processes really did: each Locust process's actor was
    # started by the raylet of the node the summary names.
    expected = {g["node"]: sorted(g["processes"]) for g in generators}
    assert {node: sorted(ids) for node, ids in placed.items()} == expected

    # Exact merge across nodes: per second (InfluxDB) and per endpoint over the run (summary).
    files = sorted(raw_dir.glob("raw-*.log"))
    assert [f.name for f in files] == ["raw-g0.0.log", "raw-g0.1.log", "raw-g1.0.log", "raw-g1.1.log"]
    per_second: dict[tuple[int, str, str], list[int]] = defaultdict(list)
    per_endpoint: dict[tuple[str, str], list[int]] = defaultdict(list)
    for file in files:
        for line in file.read_text().splitlines():
            second, method, name, latency = line.split("\t")[:4]  # then the service time (open model)
            value = min(max(int(latency), 1), 60_000_000)
            per_second[(int(second), method, name)].append(value)
            per_endpoint[(method, name)].append(value)
    rows = influxd.query(f"SELECT * FROM harness_requests WHERE run_id = '{run_id}' AND \"count\" > 0", "scaleout")
    assert sum(r["count"] for r in rows) == sum(len(v) for v in per_endpoint.values()) == summary["totals"]["requests"]
    checked = 0
    for row in rows:
        key = (int(row["time"]) // 1_000_000_000, row["method"], row["name"])
        values = per_second[key]
        assert len(values) == row["count"], key
        for field, pct in PERCENTILES:
            truth = nearest_rank(values, pct)
            assert hdr_close(row[field], truth), (key, field, row[field], truth)
        assert hdr_close(row["max"], max(values) / 1000.0), (key, "max", row["max"], max(values))
        checked += 1
    assert checked >= 20, checked
    assert {(e["method"], e["name"]) for e in summary["endpoints"]} == set(per_endpoint)
    for endpoint in summary["endpoints"]:
        values = per_endpoint[(endpoint["method"], endpoint["name"])]
        assert len(values) == endpoint["requests"]
        for field, pct in PERCENTILES:
            truth = nearest_rank(values, pct)
            assert hdr_close(endpoint[f"{field}_ms"], truth), (endpoint["name"], field, endpoint[f"{field}_ms"], truth)
        assert hdr_close(endpoint["max_ms"], max(values) / 1000.0), (endpoint["name"], "max")


def test_placement_that_cannot_be_satisfied_fails_fast_with_what_the_cluster_has(cluster: Any) -> None:
    """Three whole-CPU bundles on a cluster with two CPUs: a clear LoadError, not a hang."""
    import ray
    from ray.util import placement_group_table

    from harness.errors import LoadError
    from harness.load.placement import place_generators

    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    try:
        began = time.monotonic()
        with pytest.raises(LoadError) as caught:
            place_generators(3, name="scaleout-impossible", timeout=3, bundle={"CPU": 1})
        assert time.monotonic() - began < 10
        message = str(caught.value)
        assert message.startswith("placement group not ready after 3s: 3 generator(s) need 3 bundle(s) of {CPU: 1}")
        assert f"the cluster has {len(cluster.list_all_nodes())} alive node(s)" in message, message
        # The half-made group was removed, not left reserving resources.
        states = [g["state"] for g in placement_group_table().values() if g["name"] == "scaleout-impossible"]
        assert states == ["REMOVED"], states
        # And a group that fits is placed, one bundle per worker node, and released again.
        placement = place_generators(2, name="scaleout-fits", timeout=30)
        table = placement_group_table(placement.group)
        assert table["state"] == "CREATED"
        assert set(table["bundles_to_node_id"].values()) == {n.node_id for n in cluster.worker_nodes}
        placement.remove()
        placement.remove()  # idempotent
        assert placement_group_table(placement.group)["state"] == "REMOVED"
    finally:
        ray.shutdown()


LOSS_LOAD = """  processes: 1
  stages:
    - {name: steady, duration: 30s, users: 10, spawn_rate: 10}
"""
DETECTION_LIMIT_S = 5.0


def test_node_loss_is_detected_recorded_and_makes_the_run_invalid(
    cluster: Any, demo: DemoInfo, influxd: Any, tmp_path: Path
) -> None:
    while len(cluster.worker_nodes) < WORKERS:  # when run alone after a failed earlier test
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes(timeout=60)
    influxd.create_database("scaleout")
    run_id = "scaleout-loss"
    scenario = _scenario(tmp_path / "loss.yaml", demo, influxd.url, "scaleout", LOSS_LOAD)
    proc = _start(scenario, tmp_path, run_id, cluster.address)
    try:
        placed: dict[str, list[str]] = {}
        deadline = time.monotonic() + 90
        while len(placed) < WORKERS and time.monotonic() < deadline:
            assert proc.poll() is None, _finish(proc, 10)[-4000:]
            time.sleep(0.5)
            placed = _locust_processes_by_node(cluster, run_id)
        assert len(placed) == WORKERS, placed
        time.sleep(5)  # a few seconds of load from both nodes first
        victim = next(n for n in cluster.worker_nodes if n.node_id in placed)
        lost_processes = placed[victim.node_id]
        victim_processes = _node_processes(victim)
        locust = [p for p in victim_processes if "harness.load.runner" in _cmdline(p)]
        raylet = psutil.Process(_raylet_pid(victim))
        removed_at = time.time()
        raylet.kill()  # SIGKILL by PID: the node crashes, it does not drain
        cluster.remove_node(victim, allow_graceful=False)  # and the rest of it goes at once
        removal_s = time.time() - removed_at
    finally:
        output = _finish(proc, timeout=120)
    # The lost node's Locust processes died with their actor: nothing keeps sending load.
    assert len(locust) == len(lost_processes), victim_processes
    still = [p.pid for p in locust if p.is_running()]
    _kill(victim_processes)  # a crashed node's orphans (agents) are ours to clean up
    assert not still, f"Locust processes of the lost node still running: {still}"
    assert proc.returncode == 5, output[-4000:]
    assert "Traceback" not in output
    summary = _summary(tmp_path, run_id)
    assert summary["verdict"] == "invalid"
    by_id = {g["id"]: g for g in summary["generators"]}
    lost = [gid for gid, g in by_id.items() if g["node"] == victim.node_id]
    assert len(lost) == 1 and sorted(by_id[lost[0]]["processes"]) == sorted(lost_processes), (by_id, lost_processes)
    events = [
        e
        for e in summary["events"]
        if e["kind"] == "run" and e["state"] == "end" and lost[0] in e["text"] and "lost" in e["text"]
    ]
    assert events, summary["events"]
    detected_after = events[0]["time"] - removed_at
    print(f"node loss detected {detected_after:.2f}s after its raylet was killed (removal took {removal_s:.2f}s)")
    assert 0 <= detected_after <= DETECTION_LIMIT_S, detected_after
    # The run went on to its planned end on the surviving node.
    survivor = next(gid for gid in by_id if gid != lost[0])
    assert summary["totals"]["requests"] > 0
    assert summary["ended"] - summary["started"] >= 29, (summary["started"], summary["ended"])
    assert survivor not in " ".join(e["text"] for e in events)
