"""A whole run on a Ray cluster whose hosts are network namespaces (issue 8's acceptance test).

The cluster (tests/multihost.py): a head in the root namespace (no CPU, the driver's node) and
three "hosts", each a namespace with its own address and a Ray node started inside it:

* hmh-a (.11): role generator;
* hmh-b (.12): role generator, its clock set **3 s ahead** with libfaketime (every process of
  that node, Locust included, reads the shifted ``time.time()``); payments runs here;
* hmh-c (.13): role service, no generator; the gateway, catalog and cart run here.

Each host has its own HARNESS_DATA_DIR (fault journal and watchdog), as machines have their
own disks. ``harness run --ray-address`` runs as a user would, from the root namespace.

The first run puts generators on the two generator hosts (``load.node``) and a partition
between hmh-c and hmh-b in the agent on hmh-c (a fault's ``node``). What is checked, each
against the kernel or the raw data rather than harness's own word where one exists:

* the partition acted on hmh-c only: its nft table is seen in hmh-c's namespace while the
  fault is on (polled from outside), never in hmh-a's, hmh-b's or the root namespace, and
  it is gone afterwards; the fault is in hmh-c's journal and in no other host's;
* the load came from both generator hosts: packet counters in hmh-c count connections to
  the gateway from .11 and from .12; summary.json places one generator on each;
* the merge is exact: InfluxDB's per-second rows and the summary's per-endpoint figures equal
  the nearest-rank values of every raw latency the two Locust processes logged;
* the clocks: the summary reports hmh-b's offset as +3 s (within its uncertainty) and hmh-a's
  as about 0; every failed checkout, from either host, falls inside the fault window on the
  driver's clock (uncorrected, hmh-b's failures would be filed 3 s late, after it);
* the verdict passes: checkouts fail during the partition, nothing fails in steady state.

Before the runs, the cluster itself: four live nodes with their labels and IPs, a client
with another token refused; an actor placed by label runs inside that host's namespace;
one host reaches another over the bridge; a placement group that cannot be satisfied fails
fast with what the cluster has.

The second run loses a generator node: hmh-a's raylet is SIGKILLed while the partition on
hmh-c is applied. The run records the lost generator and is invalid (exit 5), the fault on
hmh-c is still reverted at its planned time, and nothing of the run is left in hmh-a.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ground_truth import PERCENTILES, hdr_close, nearest_rank, read_raw
from tests.multihost import MultiHostCluster, default_labels, multihost_cluster

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root")]

ROOT = Path(__file__).resolve().parents[1]
FAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
SKEW_S = 3.0
PORT = 18950  # gateway; catalog +1 and cart +2 on hmh-c, payments +3 on hmh-b (namespaces: own port spaces)
HOSTS = ("hmh-a", "hmh-b", "hmh-c")
SERVER_PORT = 18080  # a test server inside hmh-c
DETECTION_LIMIT_S = 5.0  # a lost generator node is recorded within this


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("raw")


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("hosts")
    return {host: base / host for host in HOSTS}


@pytest.fixture(scope="module")
def cluster(raw_dir: Path, data_dirs: dict[str, Path]) -> Iterator[MultiHostCluster]:
    if not FAKETIME.exists():
        pytest.fail(f"{FAKETIME} is missing: `make setup` installs Debian's faketime package")
    skewed = {
        "LD_PRELOAD": str(FAKETIME),
        # Monotonic clocks move by the same offset (harmless: only differences are used).
        # FAKETIME_DONT_FAKE_MONOTONIC=1 would be closer to a badly synced host, but then
        # libfaketime 0.9.10 fails every time.sleep with EINVAL.
        "FAKETIME": f"+{SKEW_S:g}s",
    }
    host_env = {host: {"HARNESS_DATA_DIR": str(path)} for host, path in data_dirs.items()}
    host_env["hmh-b"].update(skewed)
    with multihost_cluster(
        HOSTS,
        labels={"hmh-c": default_labels("hmh-c", "service")},
        env={"HARNESS_RAW_LATENCY_DIR": str(raw_dir)},
        host_env=host_env,
        resources={"hmh-a": {"loadbox": 1}},  # for load.node: {resource: loadbox}
    ) as started:
        print(f"multihost cluster up in {started.started_s:.1f}s")
        yield started


@pytest.fixture(scope="module")
def shop(cluster: MultiHostCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo services spread over hmh-c (gateway, catalog, cart) and hmh-b (payments), each
    in a scratch directory as the demo's own (its trace log goes there, not into the checkout)."""
    directory = tmp_path_factory.mktemp("shop")
    c, b = cluster.hosts["hmh-c"], cluster.hosts["hmh-b"]
    services = [
        ("hmh-c", ["gateway", "--port", str(PORT), "--host", c, "--payments-host", b]),
        ("hmh-c", ["catalog", "--port", str(PORT + 1)]),
        ("hmh-c", ["cart", "--port", str(PORT + 2)]),
        ("hmh-b", ["payments", "--port", str(PORT + 3), "--host", b]),
    ]
    started = [
        subprocess.Popen(
            ["ip", "netns", "exec", host, sys.executable, "-m", "harness.demo.services", *args],
            cwd=directory,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for host, args in services
    ]
    try:
        for url in (f"http://{c}:{PORT}/health", f"http://{b}:{PORT + 3}/health"):
            _wait_healthy(url)
        yield f"http://{c}:{PORT}"
    finally:
        for proc in started:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _wait_healthy(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def _scenario(path: Path, base_url: str, cluster: MultiHostCluster, influx_url: str, body: str) -> Path:
    gateway = cluster.hosts["hmh-c"]
    path.write_text(
        f"""
name: {path.stem}
target:
  base_url: {base_url}
  allowed_hosts: [{gateway}]
load:
  locustfile: {ROOT / "locustfiles" / "shop.py"}
  user_classes: [{{class: Shopper}}]
  generators: 2
  processes: 2
  node: {{labels: {{harness.io/role: generator}}}}
{body}
results:
  url: {influx_url}
  database: multihost
safety:
  allowed_networks: [{cluster.hosts["hmh-b"]}/32]
""".lstrip()
    )
    return path


def _partition(cluster: MultiHostCluster, at: int, duration: int) -> str:
    return f"""faults:
  - name: cut-payments
    kind: network.partition
    description: hmh-c (gateway) loses hmh-b (payments)
    node: {{labels: {{harness.io/host: hmh-c}}}}
    at: {at}s
    duration: {duration}s
    recovery: 3s
    params: {{peers: [{cluster.hosts["hmh-b"]}/32]}}"""


def _run(scenario: Path, tmp: Path, run_id: str, cluster: MultiHostCluster) -> subprocess.Popen[str]:
    env = {**cluster.env, "HARNESS_RUNS_DIR": str(tmp / "runs")}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "run",
            str(scenario),
            "--run-id",
            run_id,
            "--ray-address",
            cluster.address,
        ],
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


def _nft_tables(netns: str | None) -> str:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    shown = subprocess.run([*prefix, "nft", "list", "tables"], capture_output=True, text=True, timeout=10)
    return shown.stdout


class TableWatch(threading.Thread):
    """Polls every namespace's nft tables while a run goes on: when harness's table was seen where."""

    def __init__(self, cluster: MultiHostCluster) -> None:
        super().__init__(daemon=True)
        self.places: list[str | None] = [None, *cluster.hosts]
        self.seen: dict[str, list[float]] = defaultdict(list)  # place -> times the table was there
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            for place in self.places:
                if "harness" in _nft_tables(place):
                    self.seen[place or "root"].append(time.time())


def _count_sources(netns: str, port: int, sources: list[str]) -> None:
    """Our own counters in the gateway's namespace: new connections to it, per source address."""
    rules = "\n".join(
        f"add rule inet hmhcount input ip saddr {s} tcp dport {port} tcp flags syn counter" for s in sources
    )
    script = (
        f"add table inet hmhcount\nadd chain inet hmhcount input {{ type filter hook input priority 10; }}\n{rules}\n"
    )
    subprocess.run(["ip", "netns", "exec", netns, "nft", "-f", "-"], input=script, text=True, check=True, timeout=10)


def _counted(netns: str) -> dict[str, int]:
    shown = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "-j", "list", "table", "inet", "hmhcount"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    counts: dict[str, int] = {}
    for item in json.loads(shown.stdout)["nftables"]:
        rule = item.get("rule")
        if not rule:
            continue
        source = next(e["match"]["right"] for e in rule["expr"] if "match" in e and e["match"]["right"] != 0)
        packets = next(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
        counts[str(source)] = int(packets)
    return counts


def _journal_runs(data_dir: Path) -> set[str]:
    """Run ids with a fault journal (live or retired) under a host's data directory."""
    return {p.name.split(".")[0] for p in data_dir.rglob("*.jsonl*")} if data_dir.exists() else set()


def _fault_window(summary: dict[str, Any], name: str) -> tuple[float, float]:
    events = [e for e in summary["events"] if e.get("kind") == "fault" and e.get("name") == name]
    start = next(e for e in events if e["state"] == "start")
    end = next(e for e in events if e["state"] == "end")
    return float(start["time"]), float(end["time"])


# 80 users: a checkout is a small share of a Shopper's requests, and the "during" window's
# edge seconds hold checkouts that succeeded just before the cut or just after the revert;
# with 40 users one run saw 3 failures in 8 checkouts (37.5%). Observed at 80: 75-100%.
RUN = """  stages:
    - {name: ramp, duration: 3s, users: 80, spawn_rate: 40}
    - {name: steady, duration: 24s, users: 80}
slos:
  - {name: checkouts-fail-when-cut, objective: error_rate > 40%, window: "during:cut-payments",
     endpoint: "/api/checkout/[session]"}
  - {name: nothing-fails-otherwise, objective: error_rate < 1%, window: steady}
"""


# The cluster itself first: nodes, labels and token, placement, reachability.


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
        role = "service" if host == "hmh-c" else "generator"
        assert {k: v for k, v in node["Labels"].items() if k.startswith("harness.io/")} == default_labels(host, role)
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


IMPOSSIBLE = """
import time
from ray.util import placement_group_table
from harness.errors import LoadError
from harness.run.placement import place_generators

began = time.monotonic()
try:
    place_generators(4, name="multihost-impossible", timeout=3, bundle={"CPU": 1})
    message = ""
except LoadError as exc:
    message = str(exc)
took = time.monotonic() - began
states = [g["state"] for g in placement_group_table().values() if g["name"] == "multihost-impossible"]
placement = place_generators(3, name="multihost-fits", timeout=30)
table = placement_group_table(placement.group)
placed = [table["state"], sorted(set(table["bundles_to_node_id"].values()))]
placement.remove()
placement.remove()  # idempotent
after = placement_group_table(placement.group)["state"]
from harness.scenario import NodeSelector
for_resource = place_generators(2, name="multihost-resource", timeout=30, node=NodeSelector(resource="loadbox"))
on = sorted(set(placement_group_table(for_resource.group)["bundles_to_node_id"].values()))
for_resource.remove()
result = {"message": message, "took": took, "states": states, "placed": placed, "after": after, "resource": on}
"""


def test_placement_that_cannot_be_satisfied_fails_fast_with_what_the_cluster_has(cluster: MultiHostCluster) -> None:
    """Four whole-CPU bundles on three one-CPU nodes: a clear LoadError, not a hang; then groups that fit.

    The last group is confined by a custom resource (``load.node: {resource: ...}``): Ray
    puts both bundles on the one node that declares it.
    """
    found = cluster.run_driver(IMPOSSIBLE)
    message = found["message"]
    assert message.startswith("placement group not ready after 3s: 4 generator(s) need 4 bundle(s) of {CPU: 1}")
    assert "the cluster has 4 alive node(s)" in message and found["took"] < 10, found
    assert found["states"] == ["REMOVED"], found  # the half-made group does not keep reserving
    # A group that fits: one bundle per namespace node (the head has no CPU), released again.
    assert found["placed"] == ["CREATED", sorted(cluster.node_ids.values())], found
    assert found["after"] == "REMOVED"
    # load.node: {resource: loadbox}: both bundles on the one node that declares it.
    assert found["resource"] == [cluster.node_ids["hmh-a"]], found


# Then the runs.


def test_faults_act_on_their_host_load_comes_from_both_and_the_merge_is_exact(
    cluster: MultiHostCluster,
    shop: str,
    influxd: Any,
    raw_dir: Path,
    data_dirs: dict[str, Path],
    tmp_path: Path,
) -> None:
    influxd.create_database("multihost")
    run_id = "multihost-run"
    c = "hmh-c"
    _count_sources(c, PORT, [cluster.hosts["hmh-a"], cluster.hosts["hmh-b"]])
    scenario = _scenario(tmp_path / "multihost.yaml", shop, cluster, influxd.url, RUN + _partition(cluster, 9, 6))
    watch = TableWatch(cluster)
    watch.start()
    proc = _run(scenario, tmp_path, run_id, cluster)
    output = _finish(proc, timeout=180)
    watch.done.set()
    watch.join(10)
    print(output[-3000:])
    assert proc.returncode == 0, output[-5000:]
    summary = json.loads((tmp_path / "runs" / run_id / "summary.json").read_text())

    # Placement: a generator on each generator host, none on hmh-c or the head; the agent on hmh-c.
    ips = {g["node_ip"]: g for g in summary["generators"]}
    assert set(ips) == {cluster.hosts["hmh-a"], cluster.hosts["hmh-b"]}, summary["generators"]
    assert [a["node_ip"] for a in summary["chaos_agents"]] == [cluster.hosts[c]]
    assert summary["chaos_agents"][0]["faults"] == ["cut-payments"]
    start, end = _fault_window(summary, "cut-payments")
    start_event = next(e for e in summary["events"] if e.get("name") == "cut-payments" and e["state"] == "start")
    assert "(on hmh-c)" in start_event["text"], start_event

    # The partition acted on hmh-c, and only there, while it was on.
    assert set(watch.seen) == {c}, dict(watch.seen)
    first, last = min(watch.seen[c]), max(watch.seen[c])
    print(f"nft table in hmh-c from {first - start:+.2f}s to {last - end:+.2f}s around the fault events")
    assert start - 0.5 <= first <= start + 1.0 and end - 1.0 <= last <= end + 0.5
    assert "harness" not in _nft_tables(c)
    assert run_id in _journal_runs(data_dirs[c])
    assert not (_journal_runs(data_dirs["hmh-a"]) | _journal_runs(data_dirs["hmh-b"])) & {run_id}

    # The load came from both hosts: the gateway's namespace counted connections from each.
    counted = _counted(c)
    print(f"connections to the gateway by source: {counted}")
    assert all(counted.get(ip, 0) > 0 for ip in (cluster.hosts["hmh-a"], cluster.hosts["hmh-b"])), counted

    # Clocks: hmh-b is 3 s ahead, hmh-a is not; both measured within their uncertainty.
    b, a = ips[cluster.hosts["hmh-b"]], ips[cluster.hosts["hmh-a"]]
    print(f"clock offsets: hmh-a {a['offset_ms']} ms (+/- {a['uncertainty_ms']}), hmh-b {b['offset_ms']} ms")
    assert abs(b["offset_ms"] - SKEW_S * 1000) <= b["uncertainty_ms"] + 20, b
    assert abs(a["offset_ms"]) <= a["uncertainty_ms"] + 20, a

    # Exact merge, per second and per endpoint, from every raw latency of the four processes.
    files = sorted(raw_dir.glob("raw-*.log"))
    assert [f.name for f in files] == ["raw-g0.0.log", "raw-g0.1.log", "raw-g1.0.log", "raw-g1.1.log"], files
    per_second, per_endpoint = read_raw(files)
    rows = influxd.query(f"SELECT * FROM harness_requests WHERE run_id = '{run_id}' AND \"count\" > 0", "multihost")
    assert sum(r["count"] for r in rows) == sum(len(v) for v in per_endpoint.values()) == summary["totals"]["requests"]
    for row in rows:
        key = (int(row["time"]) // 1_000_000_000, row["method"], row["name"])
        values = per_second[key]
        assert len(values) == row["count"], key
        for field, pct in PERCENTILES:
            assert hdr_close(row[field], nearest_rank(values, pct)), (key, field)
    for endpoint in summary["endpoints"]:
        values = per_endpoint[(endpoint["method"], endpoint["name"])]
        assert len(values) == endpoint["requests"]
        for field, pct in PERCENTILES:
            assert hdr_close(endpoint[f"{field}_ms"], nearest_rank(values, pct)), (endpoint["name"], field)

    # Alignment on the driver's clock: every failed checkout second lies in the fault window
    # (plus the gateway's 2 x 1 s deadline for a request sent just before the revert).
    failed = influxd.query(
        f"SELECT failures FROM harness_requests WHERE run_id = '{run_id}' AND failures > 0", "multihost"
    )
    seconds = sorted({int(r["time"]) // 1_000_000_000 for r in failed})
    print(f"seconds with failures: {[s - int(start) for s in seconds]} (fault {end - start:.1f}s long)")
    assert seconds, "the partition made nothing fail"
    assert int(start) <= seconds[0] and seconds[-1] <= int(end) + 2, (seconds, start, end)
    assert summary["verdict"] == "passed"


def test_plan_shows_where_each_actor_runs_and_a_selector_for_no_node_is_refused(
    cluster: MultiHostCluster, shop: str, tmp_path: Path
) -> None:
    scenario = _scenario(tmp_path / "plan.yaml", shop, cluster, "http://127.0.0.1:9", RUN + _partition(cluster, 9, 6))
    env = {**cluster.env, "HARNESS_RUNS_DIR": str(tmp_path / "runs"), "COLUMNS": "200"}
    harness = [sys.executable, "-m", "harness.cli"]
    shown = subprocess.run(
        [*harness, "plan", str(scenario), "--ray-address", cluster.address],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stdout[-3000:] + shown.stderr[-3000:]
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in shown.stdout.splitlines() if "│" in line}
    print({k: v for k, v in rows.items() if k.startswith(("generator", "chaos"))})
    assert {rows["generator g0"].split()[0], rows["generator g1"].split()[0]} == {"hmh-a", "hmh-b"}, rows
    assert rows["chaos agent for cut-payments"].startswith(f"hmh-c ({cluster.hosts['hmh-c']}"), rows

    nowhere = scenario.read_text().replace("harness.io/host: hmh-c", "harness.io/host: hmh-z")
    (tmp_path / "nowhere.yaml").write_text(nowhere)
    refused = subprocess.run(
        [*harness, "run", str(tmp_path / "nowhere.yaml"), "--ray-address", cluster.address, "--run-id", "nowhere"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    text = refused.stdout + refused.stderr
    assert refused.returncode == 2, text[-3000:]
    assert "faults[0].node (cut-payments): no live Ray node has labels harness.io/host=hmh-z" in text, text[-3000:]
    assert "harness.io/host=hmh-c" in text and "Traceback" not in text  # the live nodes are listed
    assert not (tmp_path / "runs" / "nowhere" / "summary.json").exists()  # nothing ran


LOSS = """  stages:
    - {name: ramp, duration: 2s, users: 20, spawn_rate: 20}
    - {name: steady, duration: 18s, users: 20}
"""


# Last (file order): the module's cluster has lost hmh-a afterwards.
def test_losing_a_generator_node_is_recorded_and_faults_elsewhere_revert_on_time(
    cluster: MultiHostCluster, shop: str, influxd: Any, tmp_path: Path
) -> None:
    influxd.create_database("multihost")
    run_id = "multihost-loss"
    scenario = _scenario(tmp_path / "loss.yaml", shop, cluster, influxd.url, LOSS + _partition(cluster, 6, 8))
    watch = TableWatch(cluster)
    watch.start()
    began = time.time()
    proc = _run(scenario, tmp_path, run_id, cluster)
    killed_at = None
    deadline = time.monotonic() + 90
    while proc.poll() is None and time.monotonic() < deadline:  # kill hmh-a once the fault is on
        if watch.seen.get("hmh-c"):
            time.sleep(1.0)
            killed_at = cluster.kill_node("hmh-a")
            break
        time.sleep(0.1)
    output = _finish(proc, timeout=150)
    watch.done.set()
    watch.join(10)
    print(output[-3000:])
    assert killed_at is not None, "the fault never showed on hmh-c"
    assert proc.returncode == 5, output[-5000:]
    summary = json.loads((tmp_path / "runs" / run_id / "summary.json").read_text())
    lost = summary["lost_generators"]
    lost_on_a = [g for g in summary["generators"] if g["node_ip"] == cluster.hosts["hmh-a"]]
    assert [entry["id"] for entry in lost] == [g["id"] for g in lost_on_a], (lost, summary["generators"])
    noticed = [e for e in summary["events"] if e.get("kind") == "generator" and e.get("name") == lost_on_a[0]["id"]]
    assert noticed, summary["events"]
    detected = noticed[0]["time"] - killed_at
    print(f"hmh-a killed {killed_at - began:.1f}s into the run; noticed {detected:.1f}s later")
    assert 0 <= detected <= DETECTION_LIMIT_S, detected
    assert summary["verdict"] == "invalid" and summary["totals"]["requests"] > 0
    assert summary["ended"] - summary["started"] >= 19, "the run went on to its planned end on hmh-b"
    # The fault on hmh-c went on and was reverted at its planned end (offset 14 s) all the same.
    _, end = _fault_window(summary, "cut-payments")
    planned_end = summary["started"] + 14
    last_seen = max(watch.seen["hmh-c"]) - end
    print(f"cut-payments reverted {end - planned_end:+.2f}s from plan; table last seen {last_seen:+.2f}s after")
    assert abs(end - planned_end) <= 1.0, (end, planned_end)
    assert max(watch.seen["hmh-c"]) <= end + 0.5 and set(watch.seen) == {"hmh-c"}
    assert "harness" not in _nft_tables("hmh-c")
    # Nothing of the run is left on hmh-a: the namespace holds no process at all.
    deadline = time.monotonic() + 15
    while (left := _netns_pids("hmh-a")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"processes left in hmh-a: {left}"


def _netns_pids(name: str) -> list[str]:
    return subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, timeout=10).stdout.split()
