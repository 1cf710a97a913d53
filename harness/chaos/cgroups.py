"""Control groups on this host: where the hierarchies are mounted, which cgroups a process is in,
and which processes a cgroup holds.

Shared by the process family (a systemd unit's processes are its control group), the stress
family (stress-ng is placed in a target's cgroups) and ``harness doctor``. Reads ``/proc`` and
the mounted hierarchies only; changes nothing.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from harness.errors import FaultError

__all__ = ["cgroup_dirs", "cgroup_mounts", "cgroup_pids", "cgroup_procs_files", "memory_limit"]

#: A memory limit at or above this is "no limit" (cgroup v1 writes one as 2**63 - a page).
UNLIMITED = 2**62

#: A mount as (the cgroup path at its root, the mount point).
Mount = tuple[str, str]


def cgroup_mounts() -> tuple[dict[str, Mount], Mount | None]:
    """v1 mounts by controller (or ``name=``) and the cgroup2 mount, each as (mount root, mount point)."""
    v1: dict[str, Mount] = {}
    v2: Mount | None = None
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if len(fields) < 5 or len(rfields) < 3:
                continue
            root, point = fields[3], fields[4]
            if rfields[0] == "cgroup2" and v2 is None:
                v2 = (root, point)
            elif rfields[0] == "cgroup":
                for option in rfields[2].split(","):
                    v1.setdefault(option, (root, point))
    return v1, v2


def _under(mount: Mount, path: str) -> str | None:
    """``path`` (as /proc names cgroups) relative to the mount's root, or None when outside it."""
    root = mount[0]
    if root == "/":
        return path
    if not (path == root or path.startswith(root + "/")):
        return None
    return path[len(root) :] or "/"


def cgroup_procs_files(pid: int) -> list[str]:
    """The ``cgroup.procs`` file of ``pid``'s cgroup in every mounted hierarchy it belongs to.

    Hierarchies that are not mounted here (or whose mount does not reach the process's
    cgroup, as inside a container with a private cgroup namespace) are skipped.
    """
    v1, v2 = cgroup_mounts()
    files: list[str] = []
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise FaultError(f"cannot read the cgroups of process {pid}: {exc.strerror or exc}") from None
    for line in lines:
        hierarchy_id, controllers, path = line.split(":", 2)
        mount = v2 if hierarchy_id == "0" and not controllers else v1.get(controllers.split(",")[0])
        relative = _under(mount, path) if mount is not None else None
        if mount is None or relative is None:
            continue
        procs = os.path.join(mount[1], relative.lstrip("/"), "cgroup.procs")
        if os.path.exists(procs) and procs not in files:
            files.append(procs)
    return files


def cgroup_dirs(control_group: str) -> list[str]:
    """Where ``control_group`` (a path as systemd names it) is in each mounted hierarchy, most
    likely first: cgroup2, then v1 ``name=systemd`` (the hierarchy systemd tracks units in),
    then every other v1 hierarchy. Only existing directories are returned."""
    v1, v2 = cgroup_mounts()
    mounts = [m for m in (v2, v1.get("name=systemd")) if m is not None]
    mounts += [m for m in v1.values() if m not in mounts]
    found: list[str] = []
    for mount in mounts:
        relative = _under(mount, control_group)
        if relative is None:
            continue
        directory = os.path.join(mount[1], relative.lstrip("/"))
        if os.path.isfile(os.path.join(directory, "cgroup.procs")) and directory not in found:
            found.append(directory)
    return found


def cgroup_pids(directory: str) -> set[int]:
    """Every PID in the cgroup at ``directory`` and its sub-groups (a unit's processes may sit
    in sub-groups: delegated units, ``user@.service``)."""
    pids: set[int] = set()
    for here, _dirs, _files in os.walk(directory):
        with contextlib.suppress(OSError):  # a sub-group removed while we walk
            text = Path(here, "cgroup.procs").read_text(encoding="ascii")
            pids.update(int(line) for line in text.split() if line.isdigit())
    return pids


def memory_limit(pid: int) -> int | None:
    """The smallest memory limit on ``pid``'s memory cgroup and its ancestors, in bytes; None when
    there is none (or no memory controller is mounted here).

    Why the ancestors: a cgroup's own limit may be unset while its parent's binds (a pod's limit
    sits on the pod, not the container). cgroup v2 ``memory.max``, v1 ``memory.limit_in_bytes``.
    """
    v1, v2 = cgroup_mounts()
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise FaultError(f"cannot read the cgroups of process {pid}: {exc.strerror or exc}") from None
    limits: list[int] = []
    for line in lines:
        hierarchy_id, controllers, path = line.split(":", 2)
        if hierarchy_id == "0" and not controllers:
            mount, name = v2, "memory.max"
        elif "memory" in controllers.split(","):
            mount, name = v1.get("memory"), "memory.limit_in_bytes"
        else:
            continue
        relative = _under(mount, path) if mount is not None else None
        if mount is None or relative is None:
            continue
        root = Path(mount[1])
        directory = root / relative.lstrip("/")
        while True:
            with contextlib.suppress(OSError, ValueError):  # no such file: no controller there
                text = (directory / name).read_text(encoding="ascii").strip()
                if text != "max" and int(text) < UNLIMITED:
                    limits.append(int(text))
            if directory == root or root not in directory.parents:
                break
            directory = directory.parent
    return min(limits) if limits else None
