"""Pods laid out on this machine the way a kubelet lays them out, for the pod-fault tests.

No kubelet or container runtime can run here (TESTBED.md), so :func:`kubelet_pods` makes what a
kubelet with containerd leaves on a node, with real kernel objects:

* per pod, a cgroup directory named for its UID, in the systemd driver's cgroup v2 layout
  (``/sys/fs/cgroup/unified/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid
  with _>.slice/cri-containerd-<id>.scope``) or the cgroupfs driver's cgroup v1 layout
  (``/sys/fs/cgroup/{pids,cpu,freezer}/kubepods/besteffort/pod<uid>/<id>``), with a container scope holding
  the pod's "app" (a real HTTP server answering its pod's name) and a sandbox scope holding a
  ``sleep`` (the "pause" process, not a container in the pod's status);
* per pod, a network namespace named as the CNI plugins name them (``cni-...``), joined to the
  host by a veth pair whose host end is on a test bridge (10.231.7.1/24; pods at .11, .12, ...);
  the app listens on 0.0.0.0:8080 in it.

Everything made is removed at the end, also when the test fails: the processes we started (by
PID), whatever else a fault left in the pods' cgroups (stress-ng a failed revert left), the
cgroup directories (leaves first), the namespaces and the bridge.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HOST_ADDR", "PORT", "Pod", "get", "kubelet_pods", "restart_app"]

BRIDGE_NET = "10.231.7"
HOST_ADDR = f"{BRIDGE_NET}.1"
PORT = 8080
V2_ROOT = Path("/sys/fs/cgroup/unified")
V1_ROOTS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup/freezer"))

SERVER = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

name = sys.argv[1].encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(name)))
        self.end_headers()
        self.wfile.write(name)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
"""


@dataclass
class Pod:
    """One pod as made on this machine."""

    name: str
    uid: str
    container_id: str
    netns: str
    ip: str
    pod_dirs: list[Path]  # the pod's cgroup in each hierarchy
    container_dirs: list[Path]
    sandbox_dirs: list[Path]
    app: subprocess.Popen[bytes] | None = None
    sandbox: subprocess.Popen[bytes] | None = None

    def procs(self) -> set[int]:
        """Every PID in the pod's cgroup and its sub-groups (first hierarchy)."""
        out: set[int] = set()
        for here, _dirs, _files in os.walk(self.pod_dirs[0]):
            with contextlib.suppress(OSError):
                out |= {int(p) for p in Path(here, "cgroup.procs").read_text().split()}
        return out


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=20)


def _in_cgroup(dirs: list[Path], netns: str, *command: str) -> subprocess.Popen[bytes]:
    """Start ``command`` in network namespace ``netns``, already in the cgroups ``dirs`` when it execs."""
    script = 'for f in $KP_CGROUPS; do echo $$ > "$f"; done; exec "$@"'
    env = {**os.environ, "KP_CGROUPS": " ".join(str(d / "cgroup.procs") for d in dirs)}
    return subprocess.Popen(
        ["sh", "-c", script, "sh", "ip", "netns", "exec", netns, *command],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def get(ip: str, timeout: float = 2.0) -> tuple[str, float]:
    """One GET from the host to a pod: (its body, or the error's name; seconds it took)."""
    began = time.monotonic()
    conn = http.client.HTTPConnection(ip, PORT, timeout=timeout)
    try:
        conn.request("GET", "/")
        body = conn.getresponse().read().decode()
    except OSError as exc:
        body = type(exc).__name__
    finally:
        conn.close()
    return body, time.monotonic() - began


def _wait_serving(pod: Pod, deadline: float) -> None:
    while time.monotonic() < deadline:
        if get(pod.ip, 0.5)[0] == pod.name:
            return
        time.sleep(0.05)
    raise RuntimeError(f"pod {pod.name} ({pod.ip}) did not answer")


def _layout(uid: str, cid: str, sid: str, layout: str) -> tuple[list[Path], list[Path], list[Path]]:
    if layout == "v2-systemd":
        under = uid.replace("-", "_")
        pod = V2_ROOT / "kubepods.slice/kubepods-besteffort.slice" / f"kubepods-besteffort-pod{under}.slice"
        return [pod], [pod / f"cri-containerd-{cid}.scope"], [pod / f"cri-containerd-{sid}.scope"]
    pods = [root / "kubepods/besteffort" / f"pod{uid}" for root in V1_ROOTS]
    return pods, [p / cid for p in pods], [p / sid for p in pods]


def _remove_dirs(pod: Pod) -> None:
    for directory in pod.pod_dirs:  # a frozen process cannot die: thaw a pod a failed test left frozen
        for name, thaw in (("cgroup.freeze", "0"), ("freezer.state", "THAWED")):
            with contextlib.suppress(OSError):
                (directory / name).write_text(thaw)
    for directory in [*pod.container_dirs, *pod.sandbox_dirs, *pod.pod_dirs]:
        for here, _dirs, _files in os.walk(directory, topdown=False):
            with contextlib.suppress(OSError):
                for pid in Path(here, "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)  # what a fault started in our pod (stress-ng)
            for _ in range(50):
                try:
                    os.rmdir(here)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)  # killed processes leave the cgroup a moment later
    for directory in pod.pod_dirs:  # the kubepods parents, once empty
        for parent in list(directory.parents)[:2]:
            with contextlib.suppress(OSError):
                parent.rmdir()


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGCONT)
        os.kill(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


@contextlib.contextmanager
def kubelet_pods(
    count: int = 3, layout: str = "v2-systemd", prefix: str = "payments", slot: int = 0
) -> Iterator[list[Pod]]:
    """``count`` pods laid out as a kubelet would (module docstring), serving; removed at the end.
    Sets made at once need their own ``slot`` (their bridge and the third octet, 7 + slot)."""
    tag = f"{os.getpid() % 100000}{slot}"
    net = f"10.231.{7 + slot}"
    bridge = f"kpb{tag}"
    pods: list[Pod] = []
    try:
        _sh("ip", "link", "add", bridge, "type", "bridge")
        _sh("ip", "addr", "add", f"{net}.1/24", "dev", bridge)
        _sh("ip", "link", "set", bridge, "up")
        for i in range(count):
            uid, cid, sid = str(uuid.uuid4()), uuid.uuid4().hex * 2, uuid.uuid4().hex * 2
            pod_dirs, container_dirs, sandbox_dirs = _layout(uid, cid, sid, layout)
            pod = Pod(
                f"{prefix}-{i}",
                uid,
                cid,
                f"cni-kp{tag}-{i}",
                f"{net}.{11 + i}",
                pod_dirs,
                container_dirs,
                sandbox_dirs,
            )
            pods.append(pod)
            for directory in [*container_dirs, *sandbox_dirs]:
                directory.mkdir(parents=True, exist_ok=True)
            veth = f"kpv{tag}{i}"
            _sh("ip", "netns", "add", pod.netns)
            _sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", pod.netns)
            _sh("ip", "link", "set", veth, "master", bridge, "up")
            _sh("ip", "-n", pod.netns, "addr", "add", f"{pod.ip}/24", "dev", "eth0")
            _sh("ip", "-n", pod.netns, "link", "set", "eth0", "up")
            _sh("ip", "-n", pod.netns, "link", "set", "lo", "up")
            pod.sandbox = _in_cgroup(sandbox_dirs, pod.netns, "sleep", "600")
            pod.app = _in_cgroup(container_dirs, pod.netns, sys.executable, "-c", SERVER, pod.name)
        deadline = time.monotonic() + 15
        for pod in pods:
            _wait_serving(pod, deadline)
        yield pods
    finally:
        for pod in pods:
            _stop(pod.app)
            _stop(pod.sandbox)
            _remove_dirs(pod)
            subprocess.run(["ip", "netns", "delete", pod.netns], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "delete", bridge], capture_output=True, timeout=10)


def restart_app(pod: Pod) -> None:
    """Start the pod's app again (after a kill), in its container cgroup and namespace."""
    _stop(pod.app)
    pod.app = _in_cgroup(pod.container_dirs, pod.netns, sys.executable, "-c", SERVER, pod.name)
    _wait_serving(pod, time.monotonic() + 10)
