"""What this host can do for faults, found by trying it: the data behind ``harness doctor``.

A fault that cannot work on a node fails mid-run, with load already sent. Each probe here
does the smallest real thing a fault family does (create an nftables table, a qdisc, a
namespace, a cgroup; run a binary) instead of reading config files or module lists, since
those lie in both directions: a kernel config can list a module that will not load, and a
built-in qdisc appears in no module list. Every probe:

* is bounded: each external command gets :data:`PROBE_TIMEOUT` seconds, and netlink calls
  answer in milliseconds;
* works in a throwaway network namespace (``harness-probe-<pid>-<hex>``) or a throwaway
  cgroup (``harness-probe-<hex>``) and deletes it in a ``finally``, so nothing is left
  behind even when the kernel refuses half-way;
* never raises: an unexpected error becomes ``ok=False`` with the error as the reason.

:func:`requirements` names what each fault kind needs and :func:`missing` turns a scenario
plus probe results into one message per fault that cannot work here. pyroute2 and the
kubernetes client are imported inside the probes that use them: a doctor must still answer
on a host where one of them is broken.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from harness.chaos import cgroups, clock_shim, fuse_probe, netem_probe
from harness.scenario import Scenario

__all__ = [
    "CGROUPS",
    "DEVELOPMENT_PROBES",
    "FUSE",
    "IFB",
    "IPROUTE",
    "KUBE_CONTEXTS",
    "LIBFAKETIME",
    "NETEM",
    "NETEM_HINT",
    "NETNS",
    "NFTABLES",
    "NGINX",
    "PROBES",
    "PROBE_TIMEOUT",
    "STRESS_NG",
    "SYSTEMD",
    "TBF",
    "UML",
    "WRK",
    "Capability",
    "kubeconfig_path",
    "missing",
    "probe",
    "render",
    "requirements",
]

#: Seconds any one command of a probe may take.
PROBE_TIMEOUT = 2.0

NFTABLES = "nftables"
NETEM = "netem"
TBF = "tbf"
IFB = "ifb"
NETNS = "netns"
IPROUTE = "iproute"
CGROUPS = "cgroups"
STRESS_NG = "stress-ng"
UML = "uml"
NGINX = "nginx"
WRK = "wrk"
KUBE_CONTEXTS = "kube-contexts"
SYSTEMD = "systemd"
LIBFAKETIME = "libfaketime"
FUSE = "fuse"

_UML_MODULES = "/usr/lib/uml/modules"


@dataclass(frozen=True)
class Capability:
    """One thing a fault may need, and whether this host has it.

    ``detail`` says what worked (with versions) when ``ok``, else why not and how to fix it.
    ``optional`` marks tools no fault needs (the test suite's and benchmarks' own tools).
    """

    name: str
    ok: bool
    detail: str
    optional: bool = False


class _Missing(Exception):
    """A probe's reason for ``ok=False``: the message is the detail shown to the user."""


# ---------------------------------------------------------------- helpers


def _which(binary: str, package: str) -> str:
    found = shutil.which(binary)
    if found is None:
        raise _Missing(f"{binary} is not installed (apt-get install {package})")
    return found


def _run(argv: list[str]) -> str:
    """Run ``argv`` (bounded by :data:`PROBE_TIMEOUT`); its stdout+stderr, or ``_Missing`` on failure."""
    try:
        done = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise _Missing(f"`{' '.join(argv)}` did not finish in {PROBE_TIMEOUT:g}s") from None
    except OSError as exc:
        raise _Missing(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise _Missing(f"`{' '.join(argv)}` failed: {' '.join(output.split())[:300] or f'exit {done.returncode}'}")
    return output


def _first_line(text: str) -> str:
    return text.splitlines()[0].strip() if text else ""


@contextlib.contextmanager
def _throwaway_netns() -> Iterator[str]:
    """A new, empty named network namespace, deleted on the way out whatever happened inside."""
    ip = _which("ip", "iproute2")
    name = f"harness-probe-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    _run([ip, "netns", "add", name])
    try:
        yield name
    finally:
        with contextlib.suppress(_Missing):
            _run([ip, "netns", "delete", name])


def _netlink_error(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _qdisc_probe(kind: str, **options: Any) -> None:
    """Create a ``kind`` qdisc at the root of ``lo`` in a throwaway netns with pyroute2, as the
    fault code does; raises ``_Missing`` with the kernel's answer when refused."""
    from harness.chaos import netlink  # opens the socket without pyroute2's fork

    with _throwaway_netns() as netns, netlink.ipr(netns) as ipr:
        index = int(ipr.link_lookup(ifname="lo")[0])
        ipr.link("set", index=index, state="up")
        try:
            ipr.tc("add", kind, index=index, handle=0x10000, **options)
        except Exception as exc:  # pyroute2's NetlinkError carries the kernel's errno and text
            raise _Missing(f"the kernel refused a {kind} qdisc: {_netlink_error(exc)}") from None


# ---------------------------------------------------------------- probes


def _probe_nftables() -> str:
    nft = _which("nft", "nftables")
    ip = _which("ip", "iproute2")
    version = _first_line(_run([nft, "--version"]))
    with _throwaway_netns() as netns:
        _run([ip, "netns", "exec", netns, nft, "add", "table", "inet", "harness_probe"])
        _run([ip, "netns", "exec", netns, nft, "delete", "table", "inet", "harness_probe"])
    return f"{version}: created and deleted a table in a throwaway netns"


#: What to do when the kernel has no netem qdisc, said to the person running harness.
NETEM_HINT = (
    "load the kernel module sch_netem (modprobe sch_netem); Debian's kernels ship it in "
    "linux-image-*, Ubuntu's in linux-modules-extra-$(uname -r)"
)


def _probe_netem() -> str:
    available: Callable[[], tuple[bool, str]] | None = getattr(netem_probe, "available", None)
    if available is not None:  # the probe netem faults use (a throwaway namespace of a child process)
        ok, why = available()
        if not ok:
            raise _Missing(f"{why}; {NETEM_HINT}")
        return why
    try:
        _qdisc_probe("netem", delay=1000)
    except _Missing as exc:
        raise _Missing(f"{exc}; {NETEM_HINT}") from None
    return "created a netem qdisc on lo in a throwaway netns"


def _probe_tbf() -> str:
    try:
        _qdisc_probe("tbf", rate="1mbit", burst=5000, latency="50ms")
    except _Missing as exc:
        raise _Missing(f"{exc}; load the kernel module sch_tbf (modprobe sch_tbf)") from None
    return "created a tbf qdisc on lo in a throwaway netns"


def _probe_ifb() -> str:
    from harness.chaos import netlink  # opens the socket without pyroute2's fork

    with _throwaway_netns() as netns, netlink.ipr(netns) as ipr:
        try:
            ipr.link("add", ifname="hprobe-ifb", kind="ifb")
        except Exception as exc:
            raise _Missing(
                f"the kernel refused an ifb link: {_netlink_error(exc)}; load the kernel module ifb (modprobe ifb)"
            ) from None
    return "created an ifb link in a throwaway netns"


def _probe_netns() -> str:
    ip = _which("ip", "iproute2")
    version = _first_line(_run([ip, "-V"]))
    with _throwaway_netns() as netns:
        if netns not in _run([ip, "netns", "list"]).split():
            raise _Missing(f"ip netns add {netns} succeeded but ip netns list does not show it")
        _run([ip, "netns", "exec", netns, ip, "link", "show", "lo"])
    return f"{version}: ip netns add, exec and delete work"


def _probe_iproute() -> str:
    import pyroute2

    from harness.chaos import netlink  # opens the socket without pyroute2's fork

    with _throwaway_netns() as netns, netlink.ipr(netns) as ipr:
        index = int(ipr.link_lookup(ifname="lo")[0])
        ipr.link("set", index=index, state="up")
        ipr.link("set", index=index, state="down")
        state = ipr.get_links(index)[0].get("state")
        if state != "down":
            raise _Missing(f"set lo down with pyroute2 but the kernel reports it {state}")
    version = getattr(pyroute2, "__version__", "?")
    return f"pyroute2 {version}: set a link up and down in a throwaway netns"


def _probe_cgroups() -> str:
    # The stress family reads the mount table the same way when it places stress-ng.
    v1, v2 = cgroups.cgroup_mounts()
    parts: list[str] = []
    writable_v1 = [c for c in ("cpu", "memory") if c in v1 and _can_make_cgroup(v1[c][1])]
    controllers = sorted(c for c in v1 if not c.startswith("name=") and c not in ("rw", "ro"))
    if v1:
        parts.append(f"v1 {', '.join(controllers)} (cpu, memory writable: {', '.join(writable_v1) or 'none'})")
    v2_ok = False
    if v2 is not None:
        point = v2[1]
        try:
            v2_controllers = Path(point, "cgroup.controllers").read_text().split()
        except OSError:
            v2_controllers = []
        writable = _can_make_cgroup(point)
        v2_ok = writable and {"cpu", "memory"} <= set(v2_controllers)
        state = "writable" if writable else "not writable"
        parts.append(f"cgroup2 at {point} ({state}, controllers: {', '.join(v2_controllers) or 'none'})")
    if not parts:
        raise _Missing("no cgroup hierarchy is mounted (mount -t cgroup2 none /sys/fs/cgroup)")
    if len(writable_v1) < 2 and not v2_ok:
        raise _Missing("; ".join(parts) + ": stress in a target's cgroup needs writable cpu and memory (run as root)")
    return "; ".join(parts)


def _can_make_cgroup(mount_point: str) -> bool:
    """Create and remove an empty child cgroup: the write a placement needs."""
    path = Path(mount_point, f"harness-probe-{uuid.uuid4().hex[:8]}")
    try:
        path.mkdir()
    except OSError:
        return False
    with contextlib.suppress(OSError):
        path.rmdir()
    return True


def _probe_stress_ng() -> str:
    stress_ng = _which("stress-ng", "stress-ng")
    version = _first_line(_run([stress_ng, "--version"]))
    return f"{version.encode('ascii', 'ignore').decode().strip()} at {stress_ng}"


def _probe_fuse() -> str:
    why = fuse_probe.problem()  # the io family mounts a FUSE file system
    if why:
        raise _Missing(why)
    return fuse_probe.found()


def _probe_uml() -> str:
    hint = "apt-get install user-mode-linux kmod"
    uml = _which("linux.uml", "user-mode-linux kmod")
    modules = sorted(glob.glob(f"{_UML_MODULES}/*/kernel/net/sched/sch_netem.ko*"))
    if not modules:
        raise _Missing(f"{uml} is there but no sch_netem.ko under {_UML_MODULES} ({hint})")
    release = Path(modules[-1]).relative_to(_UML_MODULES).parts[0]
    return f"{uml} (Linux {release}) with {modules[-1]}: real netem in a UML guest"


def _probe_nginx() -> str:
    nginx = _which("nginx", "nginx")
    return f"{_first_line(_run([nginx, '-v']))} (the demo's target)"


def _probe_wrk() -> str:
    wrk = _which("wrk", "wrk")
    try:  # wrk prints its version with its usage and exits 1
        done = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _Missing(f"cannot run {wrk}: {exc}") from None
    return f"{_first_line(done.stdout + done.stderr)} (benchmark ceiling)"


def kubeconfig_path() -> str:
    """``$KUBECONFIG`` if set (read now, not at import as the client does), else ``~/.kube/config``.

    Never from the scenario file, so a scenario cannot point harness at credentials.
    """
    return os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


def _probe_kube_contexts() -> str:
    path = kubeconfig_path()
    files = [p for p in path.split(os.pathsep) if p]
    if not any(os.path.isfile(p) for p in files):
        raise _Missing(
            f"no kubeconfig: {path} does not exist (set KUBECONFIG or write ~/.kube/config; kubernetes faults need one)"
        )
    from kubernetes import config as k8s_config
    from kubernetes.config.config_exception import ConfigException

    try:
        contexts, current = k8s_config.list_kube_config_contexts(config_file=path)
    except ConfigException as exc:
        raise _Missing(f"kubeconfig {path} cannot be read: {exc}") from None
    except Exception as exc:  # YAML syntax and shape errors surface as many exception types
        raise _Missing(f"kubeconfig {path} cannot be read: {type(exc).__name__}: {_first_line(str(exc))}") from None
    names = [str(c.get("name", "?")) for c in contexts]
    if not names:
        raise _Missing(f"kubeconfig {path} has no contexts")
    current_name = (current or {}).get("name", "none")
    return f"{path}: contexts {', '.join(names)} (current: {current_name})"


def _probe_systemd() -> str:
    try:
        init = psutil.Process(1).name()
    except psutil.Error as exc:
        raise _Missing(f"cannot inspect PID 1: {exc}") from None
    if init != "systemd" and not os.path.isdir("/run/systemd/system"):
        raise _Missing(
            f"PID 1 is {init}, not systemd: systemd_unit targets cannot be resolved here "
            "(use a pid_file or pattern target)"
        )
    systemctl = _which("systemctl", "systemd")
    return f"PID 1 is {init}; {systemctl} can resolve units"


def _probe_libfaketime() -> str:
    """A clock moved an hour ahead in a real child (``date``) under the library time.skew preloads."""
    lib = clock_shim.library()
    if lib is None:
        raise _Missing(f"libfaketime is not installed (no {clock_shim.LIBRARY_GLOB}; apt-get install faketime)")
    shown = _run(["env", f"LD_PRELOAD={lib}", "FAKETIME=+1h", "date", "+%s"])
    try:
        ahead = int(shown.split()[-1]) - time.time()
    except (ValueError, IndexError):
        raise _Missing(f"`date` under {lib} printed {shown[:80]!r}, not seconds") from None
    if abs(ahead - 3600) > 60:
        raise _Missing(f"{lib} did not move `date` an hour ahead ({ahead:+.0f} s): the preload does not work here")
    return f"{lib} moves a child's wall clock (time.skew on processes started under harness's clock shim)"


_OPTIONAL = frozenset({NGINX, WRK, UML})

#: What faults may need, by capability name, in the order ``harness doctor`` prints them.
PROBES: dict[str, Callable[[], str]] = {
    NFTABLES: _probe_nftables,
    NETEM: _probe_netem,
    TBF: _probe_tbf,
    IFB: _probe_ifb,
    NETNS: _probe_netns,
    IPROUTE: _probe_iproute,
    CGROUPS: _probe_cgroups,
    STRESS_NG: _probe_stress_ng,
    KUBE_CONTEXTS: _probe_kube_contexts,
    SYSTEMD: _probe_systemd,
    LIBFAKETIME: _probe_libfaketime,
    FUSE: _probe_fuse,
}

#: Tools this project's own test suite and benchmarks use (a UML guest for netem where the
#: host kernel lacks it, nginx and wrk for the throughput ceiling). No fault needs them, so
#: ``harness doctor`` does not list them; :func:`probe` answers for them when named.
DEVELOPMENT_PROBES: dict[str, Callable[[], str]] = {
    UML: _probe_uml,
    NGINX: _probe_nginx,
    WRK: _probe_wrk,
}


def probe(names: Iterable[str] | None = None) -> list[Capability]:
    """Run the probes named (default: every one faults may need, in :data:`PROBES` order) and
    say what works.

    Never raises for a probe: a failure is that capability's ``ok=False`` and reason.
    Raises ``KeyError`` for a name that is not a probe (of :data:`PROBES` or
    :data:`DEVELOPMENT_PROBES`).
    """
    wanted = list(PROBES) if names is None else list(names)
    out: list[Capability] = []
    for name in wanted:
        run = PROBES[name] if name in PROBES else DEVELOPMENT_PROBES[name]
        try:
            out.append(Capability(name, True, run(), optional=name in _OPTIONAL))
        except _Missing as exc:
            out.append(Capability(name, False, str(exc), optional=name in _OPTIONAL))
        except ModuleNotFoundError as exc:  # a dependency of harness itself is broken or absent
            missing_module = (exc.name or "?").split(".")[0]
            detail = (
                f"the Python package {missing_module} is missing (pip install {missing_module}, or reinstall harness)"
            )
            out.append(Capability(name, False, detail, optional=name in _OPTIONAL))
        except Exception as exc:  # a probe's own bug or an odd host: still an answer, not a crash
            out.append(Capability(name, False, f"probe failed: {type(exc).__name__}: {exc}", name in _OPTIONAL))
    return out


# ---------------------------------------------------------------- what faults need


def requirements(fault: Any) -> list[str]:
    """The capabilities ``fault`` (a scenario fault model) needs on the node that applies it, as its
    family says (:meth:`~harness.chaos.family.FaultFamily.requirements`). Faults that need nothing
    beyond Python (disk fill, a proxy already running, process faults by pid file or pattern)
    need none."""
    from harness.chaos.family import family_of

    return family_of(fault.kind).requirements(fault)


def missing(scenario: Scenario, probed: Iterable[Capability]) -> list[str]:
    """One message per fault of ``scenario`` that needs a capability ``probed`` says is missing.

    e.g. ``fault 'slow-db' (network.netem) needs netem: <why not>``; a fault missing
    several says each, joined by ``; ``. A needed capability absent from ``probed`` counts as
    missing ("not probed"), so a partial probe never passes a scenario by omission.
    """
    by_name = {c.name: c for c in probed}
    out: list[str] = []
    for fault in scenario.faults:
        gaps = []
        for need in requirements(fault):
            cap = by_name.get(need)
            if cap is None:
                gaps.append(f"needs {need}: not probed")
            elif not cap.ok:
                gaps.append(f"needs {need}: {cap.detail}")
        if gaps:
            out.append(f"fault '{fault.name}' ({fault.kind}) " + "; ".join(gaps))
    return out


def render(probed: Iterable[Capability]) -> list[str]:
    """The lines ``harness doctor`` prints: one per capability, then a count.

    ``ok`` / ``NO`` / ``--`` (an optional tool that is missing), the name, and the detail:
    what works, or what is missing and the package that brings it.
    """
    caps = list(probed)
    width = max((len(c.name) for c in caps), default=0)
    lines = []
    for cap in caps:
        mark = "ok" if cap.ok else ("--" if cap.optional else "NO")
        lines.append(f"{mark:<4}{cap.name:<{width}}  {cap.detail}")
    required = [c for c in caps if not c.optional]
    working = sum(c.ok for c in required)
    lines.append(f"{working} of {len(required)} capabilities available" + _optional_note(caps))
    return lines


def _optional_note(caps: list[Capability]) -> str:
    absent = [c.name for c in caps if c.optional and not c.ok]
    return f"; optional tools missing: {', '.join(absent)}" if absent else ""
