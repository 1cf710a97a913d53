"""A Kubernetes pod found on its node the way the kubelet lays it out: cgroups, processes, network namespace.

Pure of Ray and of the Kubernetes client: the driver lists the pods (:mod:`harness.chaos.kube`)
and hands each node's agent a :class:`PodRef` per pod (name, UID, container IDs); :func:`locate` turns one
into a :class:`PodSite` by reading this node's ``/proc`` and cgroup hierarchies only. Changes nothing.

Where the kubelet puts a pod (its UID ``u``, its QoS class ``q`` = burstable or besteffort; a
Guaranteed pod sits directly under kubepods), in every hierarchy mounted here (cgroup v2, and
each v1 controller), as :func:`harness.chaos.cgroups.cgroup_mounts` finds them in
``/proc/self/mountinfo``:

* systemd cgroup driver: ``kubepods.slice/kubepods-q.slice/kubepods-q-pod<u with _ for ->.slice``,
  containers in ``cri-containerd-<id>.scope`` (``crio-<id>.scope``, ``docker-<id>.scope``);
* cgroupfs driver: ``kubepods/q/pod<u>``, containers in ``<id>``.

The containers' IDs come from the pod's ``status.containerStatuses[].containerID``
(``containerd://<id>``); the pod sandbox ("pause") is no container there, so it is never a
target. Every process found is checked back through ``/proc/<pid>/cgroup`` (its cgroup path must
name the pod's UID), and the pod's network namespace is the one ``/proc/<pid>/ns/net`` of its
first process points to, named by the entry under ``/run/netns`` with the same inode (as the CNI
plugins name them, ``cni-...``). A pod in the node's own network namespace (``hostNetwork``: the
agent's) has none of its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from harness.chaos import cgroups, nft
from harness.errors import FaultError
from harness.scenario.faults import ProcessTarget

__all__ = ["PodRef", "PodSite", "container_dirs", "locate", "pod_dir_names"]

_QOS = ("burstable", "besteffort")
_SCOPES = ("cri-containerd-{}.scope", "crio-{}.scope", "docker-{}.scope", "{}")


@dataclass(frozen=True)
class PodRef:
    """A pod as the driver chose it: enough for the agent on its node to find it (picklable)."""

    namespace: str
    name: str
    uid: str
    node: str  # spec.nodeName
    ip: str = ""  # status.podIP
    containers: tuple[tuple[str, str], ...] = ()  # (container name, container ID without the runtime prefix)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class PodSite:
    """Where a pod is on this node: its cgroup directories, its containers' cgroups and processes,
    and its network namespace (``netns``: the name under /run/netns, '' for none)."""

    pod: PodRef
    pod_dirs: tuple[str, ...]  # the pod's cgroup in each hierarchy it is in
    container_dirs: tuple[str, ...]  # the chosen containers' cgroups, in one hierarchy (v2 first)
    pids: tuple[int, ...] = ()
    netns: str = ""
    netns_inode: int = 0
    host_network: bool = False

    def process_target(self) -> ProcessTarget:
        """The pod's chosen containers' processes, as a process target (by cgroup)."""
        return ProcessTarget(cgroup=list(self.container_dirs))

    def network_namespace(self, fault_name: str) -> str:
        """The pod's netns name; ``FaultError`` for a pod on the host's network or one without a name."""
        if self.host_network:
            raise FaultError(
                f"fault '{fault_name}': pod {self.pod.key} uses the host's network namespace (hostNetwork); "
                "a network fault there would hit the whole node"
            )
        if not self.netns:
            raise FaultError(
                f"fault '{fault_name}': the network namespace of pod {self.pod.key} (inode {self.netns_inode}) "
                f"has no name under {nft.NETNS_DIR}"
            )
        return self.netns

    def describe(self) -> str:
        net = "host network" if self.host_network else f"netns {self.netns or '(unnamed)'}"
        pids = ", ".join(str(p) for p in self.pids[:8]) + (" ..." if len(self.pids) > 8 else "")
        return f"pod {self.pod.key}: cgroup {self.pod_dirs[0]}, pids {pids}, {net}"


def pod_dir_names(uid: str) -> list[str]:
    """The pod's cgroup paths relative to a hierarchy's root, in every layout the kubelet uses."""
    under = uid.replace("-", "_")
    out = [f"kubepods.slice/kubepods-pod{under}.slice", f"kubepods/pod{uid}"]
    for qos in _QOS:
        out += [f"kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{under}.slice", f"kubepods/{qos}/pod{uid}"]
    return out


def _hierarchies() -> list[str]:
    """Mount points of the cgroup hierarchies whose root is the host's: cgroup v2 first, then each v1."""
    v1, v2 = cgroups.cgroup_mounts()
    points = [v2[1]] if v2 is not None and v2[0] == "/" else []
    for root, point in v1.values():
        if root == "/" and point not in points:
            points.append(point)
    return points


def _pod_dirs(uid: str) -> list[str]:
    found = []
    for point in _hierarchies():
        for relative in pod_dir_names(uid):
            directory = os.path.join(point, relative)
            if os.path.isfile(os.path.join(directory, "cgroup.procs")):
                found.append(directory)
    return found


def container_dirs(pod_dir: str, ids: list[str]) -> list[str]:
    """The cgroup directory of each container ID under ``pod_dir`` (whichever runtime named it)."""
    out = []
    for cid in ids:
        for pattern in _SCOPES:
            directory = os.path.join(pod_dir, pattern.format(cid))
            if os.path.isfile(os.path.join(directory, "cgroup.procs")):
                out.append(directory)
                break
    return out


def _names_pod(pid: int, uid: str) -> bool:
    """``/proc/<pid>/cgroup`` puts the process under the pod's UID (the reverse check)."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text(encoding="utf-8")
    except OSError:
        return False
    return f"pod{uid}" in text or f"pod{uid.replace('-', '_')}" in text


def _netns_of(pid: int) -> tuple[int, str, bool]:
    """(inode, name under /run/netns or '', whether it is the node's own) of ``pid``'s network namespace.

    The node's own is the agent's (it runs in the host's namespace; PID 1's may not be readable).
    """
    ns_id = nft.namespace_id(f"/proc/{pid}/ns/net")
    name = nft.namespace_named(ns_id)
    return ns_id[1], name or "", name == ""


def locate(pod: PodRef, containers: list[str] | tuple[str, ...] = ()) -> PodSite:
    """Find ``pod`` on this node; only the ``containers`` named (all when empty). ``FaultError`` when
    its cgroup, a chosen container or any process of it cannot be found here."""
    where = f"pod {pod.key} (uid {pod.uid})"
    pod_dirs = _pod_dirs(pod.uid)
    if not pod_dirs:
        tried = ", ".join(pod_dir_names(pod.uid)[:2])
        raise FaultError(
            f"{where}: no cgroup of it on this node under {', '.join(_hierarchies()) or 'no mounted hierarchy'} "
            f"(kubelet layouts tried, e.g. {tried}); is it on node {pod.node}?"
        )
    wanted = [(n, cid) for n, cid in pod.containers if not containers or n in containers]
    missing = sorted(set(containers) - {n for n, _ in pod.containers})
    if missing:
        raise FaultError(f"{where} has no container {', '.join(missing)}")
    if not wanted:
        raise FaultError(f"{where}: its status lists no container ID yet (not started?)")
    chosen: list[str] = []
    for pod_dir in pod_dirs:  # the first hierarchy holding every chosen container (v2 first)
        chosen = container_dirs(pod_dir, [cid for _, cid in wanted])
        if len(chosen) == len(wanted):
            break
    if len(chosen) != len(wanted):
        raise FaultError(f"{where}: no cgroup for container(s) {', '.join(n for n, _ in wanted)} under {pod_dirs[0]}")
    pids = sorted(set().union(*(cgroups.cgroup_pids(d) for d in chosen)))
    if not pids:
        raise FaultError(f"{where}: its containers' cgroups hold no process")
    strays = [p for p in pids if not _names_pod(p, pod.uid)]
    if strays:
        raise FaultError(f"{where}: /proc/<pid>/cgroup of pid {strays[0]} does not name the pod's UID; refusing")
    inode, netns, host = _netns_of(pids[0])
    return PodSite(pod, tuple(pod_dirs), tuple(chosen), tuple(pids), netns, inode, host)
