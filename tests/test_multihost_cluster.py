"""The multi-host fixture's own life cycle (tests/multihost.py): start, refusal, teardown.

Checked against the kernel and the process table rather than the fixture's word:

* teardown when the body raises, after a node was killed: no process carries the cluster's
  RAY_TMPDIR, no namespace, veth or bridge is left, the directory is gone; while it ran, a
  host without a role label had none, the caller's environment reached the raylets, and a
  second cluster on the same subnet was refused without disturbing it;
* a start that times out (a node that can never join) leaves nothing either.

The running cluster's own checks (nodes, labels, token, actors placed in the right
namespace, hosts reaching each other, node loss) are in test_multihost_run.py, on the
cluster the acceptance runs use: one cluster start instead of two.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
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

# A three-node cluster starts in about 8.4 s here; the bound only catches a start that hangs,
# so it leaves room for a machine several times slower or busier.
START_LIMIT_S = 60.0
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


def _processes(cluster: MultiHostCluster) -> list[psutil.Process]:
    """Every process of the cluster now: the `ray start` processes and their descendants."""
    found = []
    for pid in cluster.pids.values():
        root = psutil.Process(pid)
        found += [root, *root.children(recursive=True)]
    assert len(found) >= 3 * len(cluster.pids), found  # at least ray start, raylet and an agent per node
    return found


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
        # A second cluster on the same subnet is refused, and this one is left alone.
        before = set(os.listdir("/tmp"))
        with pytest.raises(RuntimeError, match="already on interface"), multihost_cluster(("hmy-a",), bridge="hmy-br0"):
            pass
        assert not Path("/run/netns/hmy-a").exists()
        assert not [name for name in set(os.listdir("/tmp")) - before if name.startswith("hmh-")]
        assert all(n["Alive"] for n in made.nodes()), "the running cluster was disturbed"
        made.kill_node("hmx-b")  # orphans of a lost node must be cleaned up too
        raise RuntimeError("the test body failed")
    assert seen is not None
    print(f"teardown {seen.teardown_s:.1f}s")
    assert not _gone(seen, processes), _gone(seen, processes)


def test_a_start_that_times_out_leaves_nothing(tmp_path: Path) -> None:
    """Nodes that are not all alive by the deadline: RuntimeError with their logs, and all of it removed.

    The node holds another cluster's token, so the head refuses it (Unauthenticated, retried
    every second) and it can never be alive: the timeout is certain on any machine. A short
    timeout was not: a whole start takes 4.5 s here (head 0.6 s), and a faster machine could
    have the node alive inside a 2 s deadline and the tool's own start-up. With the head up,
    the node's processes are running when the start gives up, so their clean-up is checked too.
    """
    wrong = tmp_path / "another-clusters-token"
    wrong.write_text(secrets.token_hex(32))
    wrong.chmod(0o600)
    began = time.time()
    before = {p for p in os.listdir("/tmp") if p.startswith("hmh-")}
    with (
        pytest.raises(RuntimeError, match=r"nodes not alive|did not answer"),
        multihost_cluster(
            ("hmx-a",), bridge="hmx-br0", start_timeout=5.0, host_env={"hmx-a": {"RAY_AUTH_TOKEN_PATH": str(wrong)}}
        ),
    ):
        pytest.fail("a node with the wrong token joined the cluster")
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
