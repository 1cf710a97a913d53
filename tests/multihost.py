"""Three network namespaces as three "hosts", each running a Ray node joined to one head.

:func:`multihost_cluster` builds, on this one machine::

    root namespace                         hmh-a (10.214.230.11)   ray node, labels host=hmh-a, role=generator
      bridge hmh-br0 10.214.230.1/24  ---  hmh-b (10.214.230.12)   ray node, labels host=hmh-b, role=generator
      Ray head (0 CPUs, host=driver)       hmh-c (10.214.230.13)   ray node, labels host=hmh-c, role=generator

Each namespace is joined to the bridge by a veth pair (``v-<namespace>`` in the root
namespace, ``eth0`` inside), has ``lo`` up and a default route via the bridge address. The
head runs in the root namespace bound to the bridge address; every other node is ``ip netns
exec <namespace> ray start --address ... --block``, so its raylet, workers and actors live in
that namespace and reach the others only through the bridge, as separate machines would.
Names, subnet, labels and CPUs are parameters, so two users (or a test that wants a host
without the generator role) can pick their own.

What a caller may rely on:

* **Token authentication** on every node and for every driver: ``RAY_AUTH_MODE=token`` and
  ``RAY_AUTH_TOKEN_PATH`` naming a private token file (``~/.ray/auth_token`` is never read
  or written). :attr:`MultiHostCluster.env` is the environment a driver needs. The token
  matters: the head's GCS and raylet listen on every address of the root namespace (Ray
  2.60 has no bind-address option for them), not only on the bridge.
* **Private session files**: ``RAY_TMPDIR`` is a fresh short directory under /tmp (Ray's unix
  socket paths must stay under 108 bytes), each node has its own ``--temp-dir`` below it (two
  nodes starting at once in one session directory could pick the same socket name), and the
  ``ray_current_cluster`` file a bare ``ray.init()`` reads is only there: nothing else on
  the machine joins this cluster by accident.
* **The caller's environment reaches every node** (``HARNESS_DATA_DIR``, ``HARNESS_RUNS_DIR``,
  plus ``env=``), as a real cluster's nodes do not inherit the driver's.
* **Nothing of it stays in this process**: node tables are read, and drivers run, in
  subprocesses (:meth:`MultiHostCluster.nodes`, :meth:`MultiHostCluster.run_driver`); the
  pytest process never imports a Ray token or holds a Ray connection.
* **Teardown always runs** (also when the body raises) and touches only what it made: each
  ``ray start --block`` is a session leader whose process group gets SIGKILL; any survivor
  that was seen as a descendant of those processes (snapshots at start, at ``kill_node``
  and at teardown: a killed raylet's children are orphans), or that carries this cluster's
  private RAY_TMPDIR (in its environment or command line), is killed by PID. Then the
  namespaces, veths and bridge it created are deleted and the directory removed, and what
  is left is checked: a leftover process, namespace, link or directory raises
  ``LeftBehindError`` (unless the body's own exception is already on its way; then it is
  printed). Never ``ray stop``, ``pkill`` or ``killall``.
* **Name lookups inside a namespace fail at once** (``/etc/netns/<namespace>/resolv.conf``
  points at the namespace's own loopback; ``ip netns exec`` mounts it over /etc/resolv.conf):
  with the host's resolver, a lookup (``http.server.HTTPServer`` does one on bind) would be
  routed to the bridge, dropped, and stall ~10 s; and no DNS query leaves a namespace.

Use it as a context manager, or wrap it in a pytest fixture of the scope you need::

    with multihost_cluster() as cluster:
        subprocess.run([sys.executable, "-m", "harness.cli", "run", "x.yaml", "--ray-address", cluster.address],
                       env={**cluster.env, "HARNESS_RUNS_DIR": str(runs)})
        lost_at = cluster.kill_node("hmh-a")
        print(cluster.wait_dead("hmh-a") - lost_at, "s until the GCS marked hmh-a dead")

A driver in the root namespace finds the head's raylet by the head's address, which the
route to the GCS gives it (``ray.init(address=...)`` is enough; :meth:`run_driver` passes
``_node_ip_address`` explicitly anyway).

Run as a script, this file is the subprocess that reads the GCS node table
(``python tests/multihost.py nodes ADDRESS``, ``... wait-dead ADDRESS NODE_ID``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

__all__ = [
    "DEFAULT_BRIDGE",
    "DEFAULT_HOSTS",
    "DEFAULT_SUBNET",
    "HostNode",
    "LeftBehindError",
    "MultiHostCluster",
    "default_labels",
    "leftovers",
    "multihost_cluster",
]

DEFAULT_BRIDGE = "hmh-br0"
DEFAULT_HOSTS = ("hmh-a", "hmh-b", "hmh-c")
DEFAULT_SUBNET = "10.214.230.0/24"
HOST_LABEL = "harness.io/host"
ROLE_LABEL = "harness.io/role"
FIRST_HOST_OFFSET = 11  # hosts get .11, .12, ... ; the bridge (and the head) .1
NETNS_DIR = Path("/run/netns")
ETC_NETNS = Path("/etc/netns")  # `ip netns exec NAME` bind-mounts files found in ETC_NETNS/NAME over /etc
RESOLV_MARK = "# written by tests/multihost.py"
NETNS_INTERFACE = "eth0"
IFNAMSIZ = 15
IP_TIMEOUT = 10.0
RAY = Path(sys.executable).with_name("ray")
MARKER = "MULTIHOST-RESULT "


class LeftBehindError(AssertionError):
    """Teardown found a process, namespace, link or directory of the cluster still there."""


def default_labels(host: str, role: str | None = "generator") -> dict[str, str]:
    """``{"harness.io/host": host, "harness.io/role": role}`` (no role label when role is None)."""
    labels = {HOST_LABEL: host}
    if role is not None:
        labels[ROLE_LABEL] = role
    return labels


@dataclass
class HostNode:
    """One namespace "host": its name (also the namespace's), address, labels and Ray node."""

    name: str
    ip: str
    labels: dict[str, str]
    veth: str
    temp_dir: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    node_id: str = ""
    killed_at: float | None = None  # time.time() of kill_node


@dataclass
class MultiHostCluster:
    """What :func:`multihost_cluster` yields. Addresses are strings, times are seconds."""

    address: str  # "10.214.230.1:PORT": the head's GCS
    head_ip: str
    head_node_id: str
    hosts: dict[str, str]  # host (namespace) name -> IP
    node_ids: dict[str, str]  # host name -> Ray node id (hex); the head is head_node_id
    pids: dict[str, int]  # "head" and host names -> PID of the `ray start --block` we started
    env: dict[str, str]  # environment for a driver (or a `harness run --ray-address`) of this cluster
    tmpdir: Path
    bridge: str
    started_s: float = 0.0  # from entering the context to every node alive
    teardown_s: float = 0.0  # set when the context has exited
    timings: dict[str, float] = field(default_factory=dict)  # start phases, seconds from entering
    _nodes: dict[str, HostNode] = field(default_factory=dict, repr=False)
    _tracked: dict[int, psutil.Process] = field(default_factory=dict, repr=False)
    _made: list[tuple[str, str]] = field(default_factory=list, repr=False)  # (kind, name), see _remove

    def nodes(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The GCS node table, as ``ray.nodes()`` gives it (dead nodes included), read in a subprocess."""
        out = _run_tool(self.env, ["nodes", self.address], timeout)
        return list(json.loads(out))

    def kill_node(self, host: str) -> float:
        """SIGKILL the raylet of ``host``'s node (by PID): the node is lost, it does not drain.

        Returns ``time.time()`` of the kill. The ``ray start --block`` process then kills the
        rest of that node and exits, as a crashed machine's supervisor would; every process of
        the node (snapshotted here, so orphans are known) is killed again at teardown.
        """
        node = self._nodes[host]
        assert node.proc is not None and node.killed_at is None, f"{host}: not running"
        self._track(node.proc.pid)
        leader = psutil.Process(node.proc.pid)
        raylets = [p for p in leader.children(recursive=True) if _name(p) == "raylet"]
        assert len(raylets) == 1, f"{host}: expected one raylet under pid {leader.pid}, found {raylets}"
        node.killed_at = time.time()
        raylets[0].kill()
        return node.killed_at

    def wait_dead(self, host: str, timeout: float = 60.0) -> float:
        """Poll the GCS (every 0.1 s, in a subprocess) until ``host``'s node is DEAD; return ``time.time()`` then.

        Raises ``AssertionError`` with the node table when it is still alive after ``timeout``.
        """
        out = _run_tool(self.env, ["wait-dead", self.address, self.node_ids[host], str(timeout)], timeout + 30)
        found = json.loads(out)
        assert found["dead_at"] is not None, f"{host} still alive after {timeout}s: {found['nodes']}"
        return float(found["dead_at"])

    def run_driver(self, script: str, timeout: float = 120.0) -> Any:
        """Run ``script`` as a Ray driver of this cluster in a subprocess (root namespace) and return its ``result``.

        The script runs after ``import ray`` and ``ray.init(address=..., _node_ip_address=<head ip>)``;
        it must set a JSON-serialisable ``result``. The subprocess is its own session and is
        killed with its group on timeout. Raises ``AssertionError`` with its output on failure.
        """
        program = (
            "import json, ray\n"
            f"ray.init(address={self.address!r}, _node_ip_address={self.head_ip!r}, "
            "log_to_driver=False, configure_logging=False)\n"
            f"{script}\n"
            f"print({MARKER!r} + json.dumps(result), flush=True)\n"
            "ray.shutdown()\n"
        )
        path = self.tmpdir / f"driver-{secrets.token_hex(4)}.py"
        path.write_text(program)
        proc = subprocess.Popen(
            [sys.executable, str(path)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            raise AssertionError(
                f"driver timed out after {timeout}s:\n{output.decode(errors='replace')[-4000:]}"
            ) from None
        finally:
            path.unlink(missing_ok=True)
        text = output.decode(errors="replace")
        lines = [line for line in text.splitlines() if line.startswith(MARKER)]
        assert proc.returncode == 0 and lines, f"driver exited {proc.returncode}:\n{text[-4000:]}"
        return json.loads(lines[-1][len(MARKER) :])

    def _track(self, pid: int) -> None:
        """Remember ``pid`` and all its descendants now (children of a killed raylet become orphans)."""
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                self._tracked.setdefault(proc.pid, proc)


# --------------------------------------------------------------------------- the context manager


@contextlib.contextmanager
def multihost_cluster(
    hosts: Sequence[str] = DEFAULT_HOSTS,
    *,
    bridge: str = DEFAULT_BRIDGE,
    subnet: str = DEFAULT_SUBNET,
    labels: Mapping[str, Mapping[str, str]] | None = None,
    head_labels: Mapping[str, str] | None = None,
    num_cpus: int = 1,
    object_store_mb: int = 128,
    log_monitor: bool = False,
    env: Mapping[str, str] | None = None,
    host_env: Mapping[str, Mapping[str, str]] | None = None,
    resources: Mapping[str, Mapping[str, float]] | None = None,
    start_timeout: float = 60.0,
) -> Iterator[MultiHostCluster]:
    """Bridge + one namespace and Ray node per host + a head in the root namespace; all removed on exit.

        ``labels`` replaces a host's labels (default :func:`default_labels`: host and
        ``role=generator``); ``head_labels`` defaults to ``host=driver, role=head``. ``env`` is
        added to this process's environment for every node and driver; ``host_env`` adds more for
        one host's node (its own HARNESS_DATA_DIR, as a machine has its own disk, or a clock set
        ahead with libfaketime); ``resources`` gives a host's node custom resources
    (``ray start --resources``). Host *i* gets the
        subnet's address ``11 + i``, the bridge and the head address 1. Raises ``RuntimeError``
        (after removing whatever it made) when a name or the subnet is in use by someone else
        or a node does not come up within ``start_timeout``.
    """
    began = time.monotonic()
    if os.geteuid() != 0 or shutil.which("ip") is None:
        raise RuntimeError("multihost_cluster needs root and iproute2 (ip)")
    network = ipaddress.ip_network(subnet)
    if FIRST_HOST_OFFSET + len(hosts) >= network.num_addresses - 1:
        raise ValueError(f"subnet {subnet} has no room for {len(hosts)} hosts from address {FIRST_HOST_OFFSET}")
    unknown = (set(labels or {}) | set(host_env or {}) | set(resources or {})) - set(hosts)
    if unknown:
        raise ValueError(f"labels, env or resources given for hosts that are not in {list(hosts)}: {sorted(unknown)}")
    for name in [bridge, *(f"v-{host}" for host in hosts)]:
        if len(name) > IFNAMSIZ:
            raise ValueError(f"interface name {name!r} is longer than {IFNAMSIZ} characters")
    head_ip = str(network[1])
    tmpdir = Path(tempfile.mkdtemp(prefix="hmh-", dir="/tmp"))  # short: unix socket paths
    nodes = {
        name: HostNode(
            name=name,
            ip=str(network[FIRST_HOST_OFFSET + index]),
            labels=dict(labels[name]) if labels and name in labels else default_labels(name),
            veth=f"v-{name}",
            temp_dir=tmpdir / f"n{index}",
            log=tmpdir / f"node-{name}.log",
        )
        for index, name in enumerate(hosts)
    }
    token_path = tmpdir / "auth_token"
    token_path.write_text(secrets.token_hex(32))
    token_path.chmod(0o600)
    node_env = _node_env(env, tmpdir, token_path)
    cluster = MultiHostCluster(
        address="",
        head_ip=head_ip,
        head_node_id="",
        hosts={n.name: n.ip for n in nodes.values()},
        node_ids={},
        pids={},
        env=node_env,
        tmpdir=tmpdir,
        bridge=bridge,
        _nodes=nodes,
    )
    head: subprocess.Popen[bytes] | None = None
    failed = True
    try:
        _build_network(bridge, network, list(nodes.values()), cluster._made)
        network_s = time.monotonic() - began
        port, head_args = _head_ports()
        cluster.address = f"{head_ip}:{port}"
        head = _start(
            [
                str(RAY),
                "start",
                "--head",
                f"--node-ip-address={head_ip}",
                f"--port={port}",
                "--num-cpus=0",
                "--include-dashboard=false",
                f"--object-store-memory={object_store_mb * 1024 * 1024}",
                "--labels",
                _labels_arg(head_labels if head_labels is not None else {HOST_LABEL: "driver", ROLE_LABEL: "head"}),
                "--disable-usage-stats",
                f"--include-log-monitor={str(log_monitor).lower()}",
                *head_args,
                "--block",
            ],
            node_env,
            tmpdir / "node-head.log",
        )
        cluster.pids["head"] = head.pid
        deadline = time.monotonic() + start_timeout
        _wait_port(head_ip, port, deadline, head, tmpdir / "node-head.log")
        cluster.timings["head_gcs_s"] = time.monotonic() - began
        for node in nodes.values():
            node.proc = _start(
                [
                    "ip",
                    "netns",
                    "exec",
                    node.name,
                    str(RAY),
                    "start",
                    f"--address={cluster.address}",
                    f"--node-ip-address={node.ip}",
                    f"--num-cpus={num_cpus}",
                    f"--object-store-memory={object_store_mb * 1024 * 1024}",
                    f"--temp-dir={node.temp_dir}",
                    "--labels",
                    _labels_arg(node.labels),
                    *(
                        ["--resources", json.dumps(dict(resources[node.name]))]
                        if resources and node.name in resources
                        else []
                    ),
                    "--disable-usage-stats",
                    f"--include-log-monitor={str(log_monitor).lower()}",
                    "--block",
                ],
                {**node_env, **(host_env or {}).get(node.name, {})},
                node.log,
            )
            cluster.pids[node.name] = node.proc.pid
        cluster.timings["network_s"] = network_s
        table = _wait_alive(cluster, deadline)
        cluster.timings["nodes_alive_s"] = time.monotonic() - began
        by_ip = {entry["NodeManagerAddress"]: entry["NodeID"] for entry in table if entry["Alive"]}
        cluster.head_node_id = by_ip[head_ip]
        for node in nodes.values():
            node.node_id = by_ip[node.ip]
            cluster.node_ids[node.name] = node.node_id
        for pid in cluster.pids.values():
            cluster._track(pid)
        cluster.started_s = time.monotonic() - began
        failed = False
    finally:
        if failed:  # nothing yielded: clean up what was made, and let the error through
            _teardown(cluster, head, check=False)
    ended_with_error = True
    try:
        yield cluster
        ended_with_error = False
    finally:
        _teardown(cluster, head, check=not ended_with_error)


def _node_env(extra: Mapping[str, str] | None, tmpdir: Path, token_path: Path) -> dict[str, str]:
    env = {**os.environ, **(extra or {})}
    for key in ("RAY_ADDRESS", "RAY_AUTH_TOKEN"):  # this cluster's address and token only
        env.pop(key, None)
    env.update(
        {
            "RAY_TMPDIR": str(tmpdir),
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(token_path),
            "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _labels_arg(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in labels.items())


def _head_ports() -> tuple[int, list[str]]:
    """The GCS port and explicit free ports for the head's other servers.

    The head shares the root namespace's port space with every other Ray on the machine, and
    some of its defaults are fixed (client server 10001, dashboard agent 52365), so each is
    picked free here (all held open together, so they are distinct). Namespace nodes have a
    port space of their own and keep Ray's defaults.
    """
    flags = [
        "--port",
        "--ray-client-server-port",
        "--node-manager-port",
        "--object-manager-port",
        "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port",
        "--runtime-env-agent-port",
        "--metrics-export-port",
    ]
    sockets = []
    try:
        for _ in flags:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("", 0))  # free on every address: Ray's GCS and raylet listen on all of them
            sockets.append(sock)
        ports = [int(s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()
    return ports[0], [f"{flag}={port}" for flag, port in zip(flags[1:], ports[1:], strict=True)]


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start one node as a session leader (its process group is ours to signal), output to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _tail(log: Path, size: int = 3000) -> str:
    try:
        return log.read_bytes()[-size:].decode(errors="replace")
    except OSError:
        return ""


def _wait_port(ip: str, port: int, deadline: float, head: subprocess.Popen[bytes], log: Path) -> None:
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise RuntimeError(f"the Ray head exited ({head.returncode}):\n{_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection((ip, port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"the Ray head's GCS {ip}:{port} did not answer in time:\n{_tail(log)}")


def _wait_alive(cluster: MultiHostCluster, deadline: float) -> list[dict[str, Any]]:
    """One subprocess polls the GCS until the head and every host's node are alive, or the deadline."""
    expected = [cluster.head_ip, *cluster.hosts.values()]
    remaining = max(1.0, deadline - time.monotonic())
    try:
        out = _run_tool(
            cluster.env, ["nodes", cluster.address, "--wait-ips", ",".join(expected), str(remaining)], remaining + 30
        )
    except AssertionError as exc:
        raise RuntimeError(f"{exc}\n{_logs(cluster)}") from None
    table: list[dict[str, Any]] = json.loads(out)
    alive = {e["NodeManagerAddress"] for e in table if e["Alive"]}
    if not set(expected) <= alive:
        missing = sorted(set(expected) - alive)
        raise RuntimeError(f"nodes not alive after the start timeout: {missing}; table: {table}\n{_logs(cluster)}")
    return table


def _logs(cluster: MultiHostCluster) -> str:
    """The end of each node's `ray start` output, for an error message."""
    parts = [f"--- head:\n{_tail(cluster.tmpdir / 'node-head.log')}"]
    for node in cluster._nodes.values():
        exited = " (exited)" if node.proc is not None and node.proc.poll() is not None else ""
        parts.append(f"--- {node.name}{exited}:\n{_tail(node.log)}")
    return "\n".join(parts)


def _run_tool(env: dict[str, str], args: list[str], timeout: float) -> str:
    """Run this file as a script (the GCS reader) in a subprocess; its stdout, or AssertionError."""
    try:
        done = subprocess.run(
            [sys.executable, __file__, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{args[0]} timed out after {timeout}s") from exc
    assert done.returncode == 0, f"{' '.join(args[:1])} exited {done.returncode}: {done.stderr[-3000:]}"
    return done.stdout


# --------------------------------------------------------------------------- network


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT, check=check)


def _link_exists(name: str) -> bool:
    return _ip("link", "show", name, check=False).returncode == 0


def _netns_pids(name: str) -> list[str]:
    done = _ip("netns", "pids", name, check=False)
    return done.stdout.split() if done.returncode == 0 else []


def _build_network(
    bridge: str,
    network: ipaddress.IPv4Network | ipaddress.IPv6Network,
    nodes: list[HostNode],
    made: list[tuple[str, str]],
) -> None:
    """Bridge with the subnet's first address, and per host a namespace wired to it.

    Each namespace and link is appended to ``made`` (``("netns" | "link", name)``) as soon as
    it exists, so teardown removes exactly what this call created. A leftover of a crashed
    run (our names present, no process in any of those namespaces) is removed first; a
    namespace with processes in it, or the subnet on another interface, is someone else's:
    ``RuntimeError``, nothing touched.
    """
    stale = [n.name for n in nodes if (NETNS_DIR / n.name).exists()]
    busy = {name: pids for name in stale if (pids := _netns_pids(name))}
    if busy:
        raise RuntimeError(f"network namespaces in use by other processes: {busy}; pick other host names")
    taken = _subnet_users(network, exclude=bridge)
    if taken:
        raise RuntimeError(f"subnet {network} is already on interface(s) {taken}; pick another subnet")
    leftover = [("netns", name) for name in stale]
    leftover += [("etc", n.name) for n in nodes if _exists("etc", n.name)]
    leftover += [("link", name) for name in [*(n.veth for n in nodes), bridge] if _link_exists(name)]
    if leftover:
        print(f"multihost: removing a leftover of an earlier run: {leftover}", file=sys.stderr)
        _remove(leftover)
    prefix = network.prefixlen
    _ip("link", "add", bridge, "type", "bridge")
    made.append(("link", bridge))
    _ip("addr", "add", f"{network[1]}/{prefix}", "dev", bridge)
    _ip("link", "set", bridge, "up")
    for node in nodes:
        _ip("netns", "add", node.name)
        made.append(("netns", node.name))
        if not ETC_NETNS.exists():
            ETC_NETNS.mkdir()
            made.append(("etcdir", str(ETC_NETNS)))
        _write_resolv_conf(node.name)
        made.append(("etc", node.name))
        _ip("link", "add", node.veth, "type", "veth", "peer", "name", NETNS_INTERFACE, "netns", node.name)
        made.append(("link", node.veth))
        _ip("link", "set", node.veth, "master", bridge)
        _ip("link", "set", node.veth, "up")
        _ip("-n", node.name, "addr", "add", f"{node.ip}/{prefix}", "dev", NETNS_INTERFACE)
        _ip("-n", node.name, "link", "set", NETNS_INTERFACE, "up")
        _ip("-n", node.name, "link", "set", "lo", "up")
        _ip("-n", node.name, "route", "add", "default", "via", str(network[1]))


def _subnet_users(network: ipaddress.IPv4Network | ipaddress.IPv6Network, exclude: str) -> list[str]:
    done = _ip("-j", "addr", "show", check=False)
    users = []
    for link in json.loads(done.stdout or "[]"):
        for info in link.get("addr_info", []):
            with contextlib.suppress(ValueError):
                if link.get("ifname") != exclude and ipaddress.ip_address(info.get("local", "")) in network:
                    users.append(str(link.get("ifname")))
    return users


def _write_resolv_conf(netns: str) -> None:
    """A resolv.conf for processes in ``netns``: the resolver on the namespace's own loopback.

    Nothing answers there, so a name lookup fails at once. With the host's resolv.conf, a
    lookup inside the namespace (``socket.getfqdn``, as ``http.server.HTTPServer`` does on
    bind) would be routed to the bridge, dropped (no forwarding) and time out after ~10 s,
    and no DNS query leaves a namespace.
    """
    path = ETC_NETNS / netns / "resolv.conf"
    if path.exists() and RESOLV_MARK not in path.read_text():
        raise RuntimeError(f"{path} exists and is not ours; pick other host names")
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"{RESOLV_MARK}: name lookups in this namespace fail fast\nnameserver 127.0.0.1\n")


def _exists(kind: str, name: str) -> bool:
    if kind == "netns":
        return (NETNS_DIR / name).exists()
    if kind == "etc":
        return (ETC_NETNS / name / "resolv.conf").exists()
    if kind == "etcdir":
        return Path(name).exists()
    return _link_exists(name)


def _remove(objects: list[tuple[str, str]]) -> None:
    """Delete namespaces first (a veth pair goes with its namespace end), then links still there,
    then our resolv.conf files (and /etc/netns when we created it and it is empty); no error if absent."""
    order = {"netns": 0, "link": 1, "etc": 2, "etcdir": 3}
    for kind, name in sorted(objects, key=lambda o: order[o[0]]):
        if not _exists(kind, name):
            continue
        if kind == "etc":
            path = ETC_NETNS / name / "resolv.conf"
            if RESOLV_MARK in path.read_text():
                path.unlink()
                with contextlib.suppress(OSError):  # only when empty: anything else there is not ours
                    path.parent.rmdir()
        elif kind == "etcdir":
            with contextlib.suppress(OSError):
                Path(name).rmdir()
        else:
            _ip("netns" if kind == "netns" else "link", "delete", name, check=False)


# --------------------------------------------------------------------------- teardown


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return ""


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _carries(proc: psutil.Process, tmpdir: str) -> bool:
    """True when ``proc`` runs with this cluster's private RAY_TMPDIR or names it on its command line."""
    try:
        if proc.environ().get("RAY_TMPDIR") == tmpdir:
            return True
        return any(tmpdir in arg for arg in proc.cmdline())
    except psutil.Error:
        return False


def leftovers(tmpdir: str | Path) -> list[psutil.Process]:
    """Running processes that carry ``tmpdir`` (a cluster's private RAY_TMPDIR): ours, and nobody else's."""
    mine = os.getpid()
    return [p for p in psutil.process_iter() if p.pid != mine and _carries(p, str(tmpdir))]


def _teardown(cluster: MultiHostCluster, head: subprocess.Popen[bytes] | None, check: bool) -> None:
    """Stop every process, remove the network and the directory; with ``check``, raise on what is left."""
    began = time.monotonic()
    nodes = list(cluster._nodes.values())
    leaders = [p for p in [head, *(n.proc for n in nodes)] if p is not None]
    for proc in leaders:
        cluster._track(proc.pid)
    # SIGKILL, no grace: the cluster is thrown away, and a SIGTERM'd `ray start` spends
    # seconds stopping its children one by one. Each group is signalled while its leader is
    # not yet reaped: its PID (the group's id) cannot have been reused while it is our
    # unreaped child.
    for proc in leaders:
        if proc.returncode is None:
            _killpg(proc.pid, signal.SIGKILL)
    survivors = [p for p in cluster._tracked.values() if p.is_running()]
    survivors += [p for p in leftovers(cluster.tmpdir) if p.pid not in cluster._tracked]
    for survivor in survivors:
        with contextlib.suppress(psutil.Error):
            survivor.kill()
    with contextlib.suppress(psutil.Error):
        psutil.wait_procs(survivors, timeout=10)
    for proc in leaders:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    _remove(cluster._made)
    left = leftovers(cluster.tmpdir)
    shutil.rmtree(cluster.tmpdir, ignore_errors=True)
    cluster.teardown_s = time.monotonic() - began
    problems = [f"process {p.pid} {' '.join(p.cmdline())[:100]}" for p in left if p.is_running()]
    problems += [f"{kind} {name}" for kind, name in cluster._made if kind != "etcdir" and _exists(kind, name)]
    problems += [f"directory {cluster.tmpdir}"] if cluster.tmpdir.exists() else []
    if problems:
        message = "multihost cluster left behind: " + "; ".join(problems)
        if check:
            raise LeftBehindError(message)
        print(message, file=sys.stderr)


# --------------------------------------------------------------------------- the GCS reader (subprocess)


def _node_table(address: str) -> list[dict[str, Any]]:
    import ray._private.state
    from ray._raylet import GcsClientOptions  # type: ignore[attr-defined]

    state = ray._private.state.GlobalState()
    state._initialize_global_state(
        GcsClientOptions.create(address, None, allow_cluster_id_nil=True, fetch_cluster_id_if_nil=False)
    )
    table = state.node_table()
    return [
        {
            "NodeID": e["NodeID"],
            "Alive": bool(e["Alive"]),
            "NodeManagerAddress": e["NodeManagerAddress"],
            "Labels": dict(e.get("Labels") or {}),
            "Resources": dict(e.get("Resources") or {}),
            "IsHead": bool(e.get("IsHeadNode", False)),
            "State": e.get("State"),
        }
        for e in table
    ]


def _main(argv: list[str]) -> int:
    command, address = argv[0], argv[1]
    if command == "nodes":
        wait_ips = set(argv[3].split(",")) if len(argv) > 3 and argv[2] == "--wait-ips" else set()
        deadline = time.monotonic() + (float(argv[4]) if wait_ips else 0.0)
        table: list[dict[str, Any]] = []
        while True:
            with contextlib.suppress(Exception):  # the GCS may not answer yet: asked again
                table = _node_table(address)
            alive = {e["NodeManagerAddress"] for e in table if e["Alive"]}
            if wait_ips <= alive or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        print(json.dumps(table))
        return 0
    if command == "wait-dead":
        node_id, timeout = argv[2], float(argv[3])
        deadline = time.monotonic() + timeout
        dead_at: float | None = None
        while time.monotonic() < deadline:
            table = _node_table(address)
            if any(e["NodeID"] == node_id and not e["Alive"] for e in table):
                dead_at = time.time()
                break
            time.sleep(0.1)
        print(json.dumps({"dead_at": dead_at, "nodes": table}))
        return 0
    print(f"unknown command {command}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
