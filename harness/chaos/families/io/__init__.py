"""The io family: ``io.latency`` and ``io.error`` on the operations in one directory (Chaos Mesh IOChaos).

A FUSE passthrough file system (:mod:`.server`, mfusepy over libfuse3) is mounted over the
directory for the fault window: every operation a process makes on a file under it that it
opened *after* the mount goes through the server, which delays or fails ``percent`` of the
chosen ``methods`` and otherwise does the operation on the directory underneath (opened before
the mount covered it). Descriptors opened before the injection bypass the mount and are never
affected.

* **Journal first.** ``injecting`` records the directory, the mount's source tag and the
  process tag before the server starts; ``injected`` adds its PID and start time.
* **Revert.** The server stops faulting (SIGUSR1), the mount is detached lazily
  (``umount2(MNT_DETACH)``, so it succeeds while a target holds files open), the server gets
  :data:`DRAIN_SECONDS` to end by itself (operations in flight finish), then it is ended. The
  files underneath were written in place: nothing is copied back. A descriptor a target opened
  through the mount and still holds after that fails with ``ENOTCONN``: open it again.
* **Refused targets.** ``/``, system directories (``/etc``, ``/usr``, ``/proc``, ...) and top
  level ones (``/tmp``, ``/var``, ``/home``), the directory holding harness's own fault journal,
  and a directory that leaves ``safety.allowed_paths`` through a symbolic link.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile

from harness.chaos import capabilities, fuse_probe, processes
from harness.chaos.families.io import mounts
from harness.chaos.families.io.params import IoErrorFault, IoFault, IoLatencyFault
from harness.chaos.family import FaultFamily, HostContext, Leftover
from harness.chaos.journal import FaultRecord
from harness.chaos.kubelet import PodSite
from harness.chaos.steps import Details, InjectContext, Prepared
from harness.errors import ConfigError, FaultError
from harness.paths import journal_dir

__all__ = ["FAMILY", "IoFamily", "system_directory_refusal"]

log = logging.getLogger(__name__)

#: Seconds past the fault's duration after which the server detaches its mount by itself.
LIFETIME_MARGIN = 15.0

#: Seconds a revert waits for the detached server to end by itself (nothing holds a file of the
#: mount open) before it is ended: a file closed within them never sees ENOTCONN.
DRAIN_SECONDS = 1.0

#: Never mounted over: the root, the directories the system runs from and the top-level ones.
_NEVER = frozenset(
    (
        "/",
        *("/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media", "/mnt"),
        *("/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var"),
        *("/var/tmp", "/var/lib", "/var/log"),
    )
)
#: Nothing under these either.
_NEVER_UNDER = ("/bin/", "/boot/", "/dev/", "/etc/", "/lib/", "/lib64/", "/proc/", "/sbin/", "/sys/", "/usr/")


def _realpath(path: str) -> str:
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return os.path.normpath(path)


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def system_directory_refusal(real: str) -> str | None:
    """Why harness never mounts over ``real`` (a path with links resolved), or None."""
    if real in _NEVER or real.startswith(_NEVER_UNDER):
        return f"{real} is a system or top-level directory: never an io fault's volume_path"
    journal = _realpath(str(journal_dir()))
    if _inside(journal, real):
        return f"{real} holds harness's fault journal ({journal}): never an io fault's volume_path"
    return None


def _methods(fault: IoFault) -> str:
    methods = fault.params.methods
    return "every operation" if len(methods) >= 14 else ", ".join(methods)


class IoFamily(FaultFamily):
    """Latency and errors on file operations in a directory, through a FUSE mount over it."""

    name = "io"
    models = (IoLatencyFault, IoErrorFault)
    undo_failed_inject = True

    def describe(self, fault: IoFault) -> str:
        p = fault.params
        if isinstance(fault, IoLatencyFault):
            jitter = f" +- {fault.params.jitter * 1000:g} ms" if fault.params.jitter else ""
            effect = f"delay by {fault.params.delay * 1000:g} ms{jitter}"
        else:
            assert isinstance(fault, IoErrorFault)
            effect = f"fail with {errno_name(fault.params.errno)}"
        files = "" if p.path == "*" else f" (files matching {p.path})"
        where = f" in the mount namespace of {processes.describe_target(fault.target)}" if fault.target else ""
        return (
            f"{effect} {p.percent:g}% of {_methods(fault)} in {p.volume_path}{files}{where} for {fault.duration:g}s "
            "(a FUSE mount over the directory: files opened after the injection only)"
        )

    def requirements(self, fault: IoFault) -> list[str]:
        return [capabilities.FUSE]

    def resolve(self, fault: IoFault, context: HostContext) -> str:
        if fault.target is not None:
            return processes.now_text(fault.target)
        path = fault.params.volume_path
        if not os.path.isdir(path):
            return f"; now: {path} is not a directory here"
        real = _realpath(path)
        top = mounts.top_mount(real)
        on = f", a mount point ({top.fs_type})" if top is not None else ""
        return f"; now: {real}{on}"

    def refusal(self, fault: IoFault, context: HostContext) -> str | None:
        """A system directory, the journal's, or one outside ``safety.allowed_paths`` once symbolic
        links are followed (faults on this node only; an agent refuses system directories too)."""
        if fault.node is not None:
            return None
        if fault.target is not None:
            why = processes.pid_file_refusal(fault.name, fault.target)
            if why:
                return why
        real = _realpath(fault.params.volume_path)
        allowed = [_realpath(d) for d in context.safety.allowed_paths]
        if not any(_inside(real, d) for d in allowed):
            return (
                f"fault '{fault.name}': {fault.params.volume_path} is {real} once symbolic links are followed, "
                f"which is not under safety.allowed_paths ({', '.join(context.safety.allowed_paths)})"
            )
        why = system_directory_refusal(real)
        return f"fault '{fault.name}': {why}" if why else None

    def check(self, fault: IoFault, context: HostContext) -> None:
        why = fuse_probe.problem()
        if why:
            raise ConfigError(f"fault '{fault.name}' needs FUSE: {why}")

    def warm_up(self, kinds: frozenset[str]) -> None:
        return None  # the server is a process of its own, started per fault

    def prepare(self, fault: IoFault, ctx: InjectContext) -> Prepared:
        ns_pid, ns_ticks, pids = 0, 0, []
        if fault.target is not None:  # the first process matching: its mount namespace
            try:
                found = processes.resolve_targets(fault.target, protected=ctx.protected)[0]
            except FaultError as exc:
                raise FaultError(f"fault '{fault.name}': {exc}") from None
            ns_pid, ns_ticks, pids = found.pid, processes.start_ticks(found.pid) or 0, [found.pid]
        path = fault.params.volume_path
        seen_as = f"/proc/{ns_pid}/root{path}" if ns_pid else path
        if not os.path.isdir(seen_as):
            raise FaultError(
                f"fault '{fault.name}': {path} is not a directory" + (f" for pid {ns_pid}" if ns_pid else "")
            )
        real = _realpath(path) if not ns_pid else os.path.normpath(path)
        why = system_directory_refusal(real)
        if why:
            raise FaultError(f"fault '{fault.name}': {why}")
        top = mounts.top_mount(real, ns_pid or None)
        if top is not None and top.fs_type == mounts.FS_TYPE:
            raise FaultError(f"fault '{fault.name}': {real} already has an io fault ({top.source})")
        tag = f"{ctx.run_id}/{fault.name}"
        safe = tag.replace("/", "-")
        details: Details = {
            "target": real,
            "tag": tag,
            "source": f"{mounts.SOURCE_PREFIX}{tag}",
            "log": os.path.join(tempfile.gettempdir(), f"harness-io-{safe}.log"),
            "ns_pid": ns_pid,
            "ns_start_ticks": ns_ticks,
        }
        return Prepared(details, pids)

    def apply(self, fault: IoFault, record: FaultRecord, ctx: InjectContext, *, resumed: bool) -> Details:
        from harness.chaos.families.io.spec import spec_of

        point, source, tag = str(record.details["target"]), str(record.details["source"]), str(record.details["tag"])
        ns_pid = _namespace_of(record)
        if record.details.get("ns_pid") and ns_pid is None:
            raise FaultError(f"fault '{fault.name}': pid {record.details['ns_pid']} ended before the mount")
        if resumed:  # an earlier attempt died mid-way: clean up what it may have left
            mounts.detach(point, source, ns_pid)
            mounts.kill(None, None, tag)
        spec = spec_of(fault, point, source, fault.duration + LIFETIME_MARGIN)
        pid, ticks = mounts.start(spec, point, source, tag, str(record.details["log"]), ns_pid)
        log.info("run %s: fault %s: %s", ctx.run_id, fault.name, self.describe(fault))
        return {"server_pid": pid, "server_start_ticks": ticks}

    def undo(self, record: FaultRecord) -> Details:
        """Stop the faults, detach the mount (lazily), let the server end by itself for up to
        :data:`DRAIN_SECONDS` (operations in flight finish), then end it and remove its log;
        enough on a record left ``injecting``.

        In a target's mount namespace the mount is reached through the target, or the server
        while the target is gone; with both gone nothing is left to reach it by (the sweep looks
        through every namespace)."""
        d = record.details
        server = mounts.quiesce(d.get("server_pid"), d.get("server_start_ticks"))
        ns_pid = _namespace_of(record)
        reachable = ns_pid is not None or not d.get("ns_pid")
        unmounted = mounts.detach(str(d.get("target", "")), str(d.get("source", "")), ns_pid) if reachable else 0
        mounts.drain(server, DRAIN_SECONDS)
        stopped = mounts.kill(d.get("server_pid"), d.get("server_start_ticks"), str(d.get("tag", "")))
        with contextlib.suppress(OSError):
            os.unlink(str(d.get("log", "")))
        return {"unmounted": unmounted, "stopped": stopped}

    def applied_text(self, record: FaultRecord) -> str:
        return f"FUSE mount over {record.details.get('target')} (server pid {record.details.get('server_pid')})"

    def reverted_text(self, before: FaultRecord, after: FaultRecord) -> str:
        if after.details.get("unmounted"):
            return f"unmounted {before.details.get('target')}"
        return f"marked {after.state.value}"

    def in_pod(self, fault: IoFault, site: PodSite) -> IoFault:
        """Mounted in the mount namespace of the pod's first chosen container process: the
        directory is ``volume_path`` as the container sees it (its volume's mount point)."""
        return fault.model_copy(update={"target": site.process_target()})

    def leftovers(self) -> list[Leftover]:
        """harness io mounts in every mount namespace, and processes carrying the io tag, whatever run left them."""
        found = [
            Leftover("", "fuse mount", f"{m.point} ({m.source})", (0, m.point, m.source), self.name, order=4)
            for m in mounts.harness_mounts()
        ]
        for ns, pid in mounts.other_namespaces().items():
            with contextlib.suppress(OSError):  # the process ended meanwhile
                found += [
                    Leftover(
                        "", "fuse mount", f"{m.point} ({m.source}) in {ns}", (pid, m.point, m.source), self.name, 4
                    )
                    for m in mounts.harness_mounts(pid)
                ]
        found += [
            Leftover("", "process", f"pid {proc.pid} ({tag})", (proc.pid, proc.create_time()), self.name, order=5)
            for proc, tag in processes.tagged([mounts.TAG])
        ]
        return found

    def remove(self, leftover: Leftover) -> None:
        if leftover.kind == "fuse mount":
            ns_pid, point, source = leftover.key
            mounts.detach(point, source, ns_pid or None)
        else:
            processes.kill_if_same(*leftover.key)


def _namespace_of(record: FaultRecord) -> int | None:
    """The PID to reach the fault's mount namespace by: None for the agent's own, or when no process
    in it is left (the target's while it lives, else the server's)."""
    d = record.details
    if not d.get("ns_pid"):
        return None
    for pid_key, ticks_key in (("ns_pid", "ns_start_ticks"), ("server_pid", "server_start_ticks")):
        pid, ticks = d.get(pid_key), d.get(ticks_key)
        if isinstance(pid, int) and pid > 0 and processes.start_ticks(pid) == ticks:
            return pid
    return None


def errno_name(number: int) -> str:
    import errno

    return errno.errorcode.get(number, str(number))


FAMILY = IoFamily()
