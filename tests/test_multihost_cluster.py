"""Smoke tests of the multi-host fixture (tests/multihost.py): three namespaces, three Ray nodes, one head.

What is checked, each against the kernel or Ray rather than the fixture's own word:

* the head and the three namespace nodes are alive in the GCS with their labels and node
  IPs, the head has no CPU, and the GCS refuses a client with another token;
* an actor placed with ``label_selector={"harness.io/host": X}`` runs inside namespace X:
  its ``/proc/self/ns/net`` is the inode of ``/run/netns/X`` and its interface has X's address;
* from an actor on hmh-a, HTTP requests reach a server inside hmh-c, and the server sees
  hmh-a's address as the client (the request crossed the bridge from hmh-a);
* ``kill_node("hmh-a")``: the GCS marks that node dead (the time it took is printed), every
  process in the namespace is gone, and the other nodes stay alive;
* teardown, also when the body raises (after a node was killed): no process carries the
  cluster's RAY_TMPDIR, no namespace, veth or bridge is left, the directory is gone.

Drivers run in subprocesses; this process never connects to Ray.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.multihost import (
    MultiHostCluster,
    default_labels,
    leftovers,
    multihost_cluster,
)

pytestmark = pytest.mark.slow

START_LIMIT_S = 25.0
DEATH_LIMIT_S = 30.0  # Ray's defaults: a GCS health check every 3 s, 5 failures
SERVER_PORT = 18080  # inside hmh-c: a port space of its own


def _gone(cluster: MultiHostCluster, processes: list[psutil.Process]) -> list[str]:
    """What of ``cluster`` is still there after it exited (empty when nothing is).

    ``processes``: the cluster's processes seen while it ran (psutil checks their start time,
    so a PID reused since is not mistaken for one of them).
    """
    left = [f"process {p.pid}" for p in leftovers(cluster.tmpdir)]
    left += [f"process {p.pid} (seen running)" for p in processes if p.is_running()]
    left += [f"netns {name}" for name in cluster.hosts if Path("/run/netns", name).exists()]
    left += [f"/etc/netns/{name}" for name in cluster.hosts if Path("/etc/netns", name).exists()]
    left += [f"link {name}" for name in [cluster.bridge, *(f"v-{h}" for h in cluster.hosts)] if name in _links()]
    left += [f"dir {cluster.tmpdir}"] if cluster.tmpdir.exists() else []
    return left


def _links() -> set[str]:
    """Names of the links in the root namespace."""
    shown = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, timeout=10, check=True)
    return {link["ifname"] for link in json.loads(shown.stdout)}


@pytest.fixture(scope="module")
def cluster() -> Iterator[MultiHostCluster]:
    with multihost_cluster() as started:
        print(f"multihost cluster up in {started.started_s:.1f}s {started.timings}")
        processes = _processes(started)
        yield started
    print(f"multihost cluster torn down in {started.teardown_s:.1f}s")
    assert not _gone(started, processes), _gone(started, processes)
    ray = sys.modules.get("ray")  # this process never connected (later tests start their own Ray)
    assert ray is None or not ray.is_initialized()


def _processes(cluster: MultiHostCluster) -> list[psutil.Process]:
    """Every process of the cluster now: the `ray start` processes and their descendants."""
    found = []
    for pid in cluster.pids.values():
        root = psutil.Process(pid)
        found += [root, *root.children(recursive=True)]
    assert len(found) >= 3 * len(cluster.pids), found  # at least ray start, raylet and an agent per node
    return found


# Runs first (file order), before the module's cluster exists: both use the same subnet.
def test_teardown_after_the_body_raises_leaves_nothing() -> None:
    hosts = ("hmx-a", "hmx-b")
    labels = {"hmx-b": default_labels("hmx-b", role=None)}  # a host without the generator role
    seen: MultiHostCluster | None = None
    processes: list[psutil.Process] = []
    with (
        pytest.raises(RuntimeError, match="the test body failed"),
        multihost_cluster(hosts, bridge="hmx-br0", labels=labels, env={"HMH_PROBE": "1"}) as made,
    ):
        seen = made
        print(f"start {made.started_s:.1f}s {made.timings}")
        assert made.started_s < START_LIMIT_S, made.timings
        by_ip = {n["NodeManagerAddress"]: n for n in made.nodes() if n["Alive"]}
        assert by_ip[made.hosts["hmx-b"]]["Labels"].get("harness.io/role") is None
        assert by_ip[made.hosts["hmx-a"]]["Labels"]["harness.io/role"] == "generator"
        # The caller's environment (and env=) reached the node processes.
        raylet = next(p for p in psutil.Process(made.pids["hmx-a"]).children(recursive=True) if p.name() == "raylet")
        environ = raylet.environ()
        assert environ.get("HMH_PROBE") == "1" and environ.get("HARNESS_DATA_DIR") == os.environ["HARNESS_DATA_DIR"]
        assert environ.get("RAY_AUTH_MODE") == "token" and environ.get("RAY_TMPDIR") == str(made.tmpdir)
        assert leftovers(made.tmpdir), "the node processes should carry the private RAY_TMPDIR"
        processes = _processes(made)
        made.kill_node("hmx-b")  # orphans of a lost node must be cleaned up too
        raise RuntimeError("the test body failed")
    assert seen is not None
    print(f"teardown {seen.teardown_s:.1f}s")
    assert not _gone(seen, processes), _gone(seen, processes)


def test_a_start_that_times_out_leaves_nothing() -> None:
    """Nodes that are not all alive by the deadline: RuntimeError with their logs, and all of it removed."""
    began = time.time()
    before = {p for p in os.listdir("/tmp") if p.startswith("hmh-")}
    with (
        pytest.raises(RuntimeError, match=r"nodes not alive|did not answer"),
        multihost_cluster(("hmx-a",), bridge="hmx-br0", start_timeout=2.0),
    ):
        pytest.fail("the cluster should not have started in 2 s")
    born = []
    for proc in psutil.process_iter(["create_time"]):
        try:
            environ = proc.environ() if proc.info["create_time"] >= began - 1 else {}
        except psutil.Error:
            continue
        if environ.get("RAY_TMPDIR", "").startswith("/tmp/hmh-") and environ.get("HARNESS_DATA_DIR") == os.environ.get(
            "HARNESS_DATA_DIR"
        ):
            born.append(proc.pid)
    assert not born, f"processes of the failed start still running: {born}"
    assert not Path("/run/netns/hmx-a").exists() and not Path("/etc/netns/hmx-a").exists()
    assert not {"hmx-br0", "v-hmx-a"} & _links()
    assert {p for p in os.listdir("/tmp") if p.startswith("hmh-")} <= before


def test_refuses_a_subnet_in_use_and_leaves_it_alone(cluster: MultiHostCluster) -> None:
    before = set(os.listdir("/tmp"))
    with pytest.raises(RuntimeError, match="already on interface"), multihost_cluster(("hmy-a",), bridge="hmy-br0"):
        pass
    assert not Path("/run/netns/hmy-a").exists()
    assert not [name for name in set(os.listdir("/tmp")) - before if name.startswith("hmh-")]
    assert all(n["Alive"] for n in cluster.nodes()), "the running cluster was disturbed"


def test_four_nodes_alive_with_labels_and_ips(cluster: MultiHostCluster) -> None:
    assert cluster.address.startswith("10.214.230.1:")
    assert cluster.hosts == {"hmh-a": "10.214.230.11", "hmh-b": "10.214.230.12", "hmh-c": "10.214.230.13"}
    table = cluster.nodes()
    alive = {n["NodeManagerAddress"]: n for n in table if n["Alive"]}
    assert len(table) == 4 and set(alive) == {"10.214.230.1", *cluster.hosts.values()}, table
    head = alive["10.214.230.1"]
    assert head["NodeID"] == cluster.head_node_id
    assert {k: v for k, v in head["Labels"].items() if k.startswith("harness.io/")} == {
        "harness.io/host": "driver",
        "harness.io/role": "head",
    }
    assert head["Resources"].get("CPU", 0) == 0
    for host, ip in cluster.hosts.items():
        node = alive[ip]
        assert node["NodeID"] == cluster.node_ids[host]
        assert {k: v for k, v in node["Labels"].items() if k.startswith("harness.io/")} == default_labels(host)
        assert node["Resources"]["CPU"] == 1
    # Token authentication is on: the same query with another token is refused by the GCS.
    refused = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("multihost.py")), "nodes", cluster.address],
        env={**cluster.env, "RAY_AUTH_TOKEN": "0" * 64},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.stdout.strip() == "[]" and "Unauthenticated" in refused.stderr, refused.stderr[-2000:]


PLACE = """
import os, psutil

@ray.remote(num_cpus=0)
class Where:
    def ask(self):
        addresses = sorted(
            a.address for addrs in psutil.net_if_addrs().values() for a in addrs if a.family == 2
        )
        return {
            "netns": os.stat("/proc/self/ns/net").st_ino,
            "addresses": addresses,
            "node": ray.get_runtime_context().get_node_id(),
        }

result = {}
for host in HOSTS:
    actor = Where.options(label_selector={"harness.io/host": host}).remote()
    result[host] = ray.get(actor.ask.remote(), timeout=60)
    ray.kill(actor)
"""


def test_actor_placed_by_label_runs_inside_that_namespace(cluster: MultiHostCluster) -> None:
    found = cluster.run_driver(f"HOSTS = {list(cluster.hosts)!r}\n" + PLACE)
    root_netns = os.stat("/proc/self/ns/net").st_ino
    for host, ip in cluster.hosts.items():
        where = found[host]
        assert where["netns"] == os.stat(f"/run/netns/{host}").st_ino != root_netns, (host, where)
        assert where["addresses"] == sorted(["127.0.0.1", ip]), (host, where)
        assert where["node"] == cluster.node_ids[host], (host, where)


SERVER = """
import http.server, sys

class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = self.client_address[0].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), Echo).serve_forever()
"""

FETCH = """
import urllib.request

@ray.remote(num_cpus=0)
def fetch(url):
    answers = []
    for _ in range(3):  # bounded: three requests, 5 s each
        with urllib.request.urlopen(url, timeout=5) as response:
            answers.append([response.status, response.read().decode()])
    return answers

result = ray.get(fetch.options(label_selector={"harness.io/host": "hmh-a"}).remote(URL), timeout=60)
"""


def test_a_host_reaches_another_over_the_bridge(cluster: MultiHostCluster) -> None:
    server_ip = cluster.hosts["hmh-c"]
    server = subprocess.Popen(
        ["ip", "netns", "exec", "hmh-c", sys.executable, "-c", SERVER, server_ip, str(SERVER_PORT)],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 15
        while f"{server_ip}:{SERVER_PORT}" not in _listening("hmh-c") and time.monotonic() < deadline:
            assert server.poll() is None, "the server in hmh-c exited"
            time.sleep(0.1)
        answers = cluster.run_driver(f"URL = 'http://{server_ip}:{SERVER_PORT}/'\n" + FETCH)
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)
    # The server saw hmh-a's address: the request left hmh-a and crossed the bridge.
    assert answers == [[200, cluster.hosts["hmh-a"]]] * 3, answers


def _listening(netns: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", netns, "ss", "-ltnH"], capture_output=True, text=True, timeout=10
    ).stdout


# Last (file order): the module's cluster has lost hmh-a afterwards.
def test_kill_node_is_seen_dead_and_the_others_stay_alive(cluster: MultiHostCluster) -> None:
    assert all(n["Alive"] for n in cluster.nodes())
    killed_at = cluster.kill_node("hmh-a")
    dead_at = cluster.wait_dead("hmh-a", timeout=DEATH_LIMIT_S + 15)
    detected = dead_at - killed_at
    print(f"hmh-a marked dead by the GCS {detected:.1f}s after its raylet was killed")
    assert 0 < detected <= DEATH_LIMIT_S, detected
    # The whole node is gone (`ray start --block` kills the rest when its raylet dies).
    deadline = time.monotonic() + 15
    pids = _netns_pids("hmh-a")
    while pids and time.monotonic() < deadline:
        time.sleep(0.2)
        pids = _netns_pids("hmh-a")
    assert not pids, f"processes still in hmh-a: {pids}"
    alive = {n["NodeManagerAddress"]: n["Alive"] for n in cluster.nodes()}
    assert alive == {"10.214.230.1": True, "10.214.230.11": False, "10.214.230.12": True, "10.214.230.13": True}


def _netns_pids(name: str) -> list[str]:
    return subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, timeout=10).stdout.split()
