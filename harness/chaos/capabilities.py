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
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from harness.chaos import cgroups, clock_shim, fuse_probe, network_probes, nft, vdso_skew
from harness.chaos.network_probes import NETEM_HINT
from harness.chaos.probe_tools import PROBE_TIMEOUT, first_line, run, which
from harness.errors import CapabilityMissing, FaultError
from harness.scenario import Scenario

__all__ = [
    "CGROUP2",
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
    "PTRACE_VDSO",
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


NFTABLES = "nftables"
NETEM = "netem"
TBF = "tbf"
IFB = "ifb"
NETNS = "netns"
IPROUTE = "iproute"
CGROUPS = "cgroups"
CGROUP2 = "cgroup2"
STRESS_NG = "stress-ng"
UML = "uml"
NGINX = "nginx"
WRK = "wrk"
KUBE_CONTEXTS = "kube-contexts"
SYSTEMD = "systemd"
LIBFAKETIME = "libfaketime"
FUSE = "fuse"
PTRACE_VDSO = "ptrace-vdso"

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
        raise CapabilityMissing("no cgroup hierarchy is mounted (mount -t cgroup2 none /sys/fs/cgroup)")
    if len(writable_v1) < 2 and not v2_ok:
        raise CapabilityMissing(
            "; ".join(parts) + ": stress in a target's cgroup needs writable cpu and memory (run as root)"
        )
    return "; ".join(parts)


def _probe_cgroup2() -> str:
    """A writable cgroup2 hierarchy, and an nft that loads a ``socket cgroupv2`` rule for a cgroup
    in it (checked with ``nft -c``: nothing is committed). Membership only: no controller needed."""
    v2 = cgroups.cgroup_mounts()[1]
    if v2 is None:
        raise CapabilityMissing("no cgroup2 hierarchy is mounted (mount -t cgroup2 none /sys/fs/cgroup/unified)")
    path = Path(v2[1], f"harness-probe-{uuid.uuid4().hex[:8]}")
    try:
        path.mkdir()
    except OSError as exc:
        raise CapabilityMissing(f"cannot create a cgroup under {v2[1]}: {exc.strerror} (run as root)") from None
    rules = (
        "add table ip harness_probe\n"
        "add chain ip harness_probe c { type nat hook output priority -100; }\n"
        f'add rule ip harness_probe c socket cgroupv2 level 1 "{path.name}" udp dport 53 redirect to :53\n'
    )
    try:
        nft.run_with_cgroup2("", ["-c", "-f", "-"], rules)
    except FaultError as exc:
        raise CapabilityMissing(f"nft does not take a socket cgroupv2 rule here: {exc}") from None
    finally:
        with contextlib.suppress(OSError):
            path.rmdir()
    return f"cgroup2 at {v2[1]} (writable; nft takes socket cgroupv2 rules): dns faults on processes"


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
    stress_ng = which("stress-ng", "stress-ng")
    version = first_line(run([stress_ng, "--version"]))
    return f"{version.encode('ascii', 'ignore').decode().strip()} at {stress_ng}"


def _probe_fuse() -> str:
    why = fuse_probe.problem()  # the io family mounts a FUSE file system
    if why:
        raise CapabilityMissing(why)
    return fuse_probe.found()


def _probe_uml() -> str:
    hint = "apt-get install user-mode-linux kmod"
    uml = which("linux.uml", "user-mode-linux kmod")
    modules = sorted(glob.glob(f"{_UML_MODULES}/*/kernel/net/sched/sch_netem.ko*"))
    if not modules:
        raise CapabilityMissing(f"{uml} is there but no sch_netem.ko under {_UML_MODULES} ({hint})")
    release = Path(modules[-1]).relative_to(_UML_MODULES).parts[0]
    return f"{uml} (Linux {release}) with {modules[-1]}: real netem in a UML guest"


def _probe_nginx() -> str:
    nginx = which("nginx", "nginx")
    return f"{first_line(run([nginx, '-v']))} (the demo's target)"


def _probe_wrk() -> str:
    wrk = which("wrk", "wrk")
    try:  # wrk prints its version with its usage and exits 1
        done = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CapabilityMissing(f"cannot run {wrk}: {exc}") from None
    return f"{first_line(done.stdout + done.stderr)} (benchmark ceiling)"


def kubeconfig_path() -> str:
    """``$KUBECONFIG`` if set (read now, not at import as the client does), else ``~/.kube/config``.

    Never from the scenario file, so a scenario cannot point harness at credentials.
    """
    return os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


def _probe_kube_contexts() -> str:
    path = kubeconfig_path()
    files = [p for p in path.split(os.pathsep) if p]
    if not any(os.path.isfile(p) for p in files):
        raise CapabilityMissing(
            f"no kubeconfig: {path} does not exist (set KUBECONFIG or write ~/.kube/config; kubernetes faults need one)"
        )
    from kubernetes import config as k8s_config
    from kubernetes.config.config_exception import ConfigException

    try:
        contexts, current = k8s_config.list_kube_config_contexts(config_file=path)
    except ConfigException as exc:
        raise CapabilityMissing(f"kubeconfig {path} cannot be read: {exc}") from None
    except Exception as exc:  # YAML syntax and shape errors surface as many exception types
        raise CapabilityMissing(
            f"kubeconfig {path} cannot be read: {type(exc).__name__}: {first_line(str(exc))}"
        ) from None
    names = [str(c.get("name", "?")) for c in contexts]
    if not names:
        raise CapabilityMissing(f"kubeconfig {path} has no contexts")
    current_name = (current or {}).get("name", "none")
    return f"{path}: contexts {', '.join(names)} (current: {current_name})"


def _probe_systemd() -> str:
    try:
        init = psutil.Process(1).name()
    except psutil.Error as exc:
        raise CapabilityMissing(f"cannot inspect PID 1: {exc}") from None
    if init != "systemd" and not os.path.isdir("/run/systemd/system"):
        raise CapabilityMissing(
            f"PID 1 is {init}, not systemd: systemd_unit targets cannot be resolved here "
            "(use a pid_file or pattern target)"
        )
    systemctl = which("systemctl", "systemd")
    return f"PID 1 is {init}; {systemctl} can resolve units"


def _probe_libfaketime() -> str:
    """A clock moved an hour ahead in a real child (``date``) under the library time.skew preloads."""
    lib = clock_shim.library()
    if lib is None:
        raise CapabilityMissing(
            f"libfaketime is not installed (no {clock_shim.LIBRARY_GLOB}; apt-get install faketime)"
        )
    shown = run(["env", f"LD_PRELOAD={lib}", "FAKETIME=+1h", "date", "+%s"])
    try:
        ahead = int(shown.split()[-1]) - time.time()
    except (ValueError, IndexError):
        raise CapabilityMissing(f"`date` under {lib} printed {shown[:80]!r}, not seconds") from None
    if abs(ahead - 3600) > 60:
        raise CapabilityMissing(
            f"{lib} did not move `date` an hour ahead ({ahead:+.0f} s): the preload does not work here"
        )
    return f"{lib} moves a child's wall clock (time.skew on processes started under harness's clock shim)"


_OPTIONAL = frozenset({NGINX, WRK, UML})

#: What faults may need, by capability name, in the order ``harness doctor`` prints them.
PROBES: dict[str, Callable[[], str]] = {
    NFTABLES: network_probes.probe_nftables,
    NETEM: network_probes.probe_netem,
    TBF: network_probes.probe_tbf,
    IFB: network_probes.probe_ifb,
    NETNS: network_probes.probe_netns,
    IPROUTE: network_probes.probe_iproute,
    CGROUPS: _probe_cgroups,
    CGROUP2: _probe_cgroup2,
    STRESS_NG: _probe_stress_ng,
    KUBE_CONTEXTS: _probe_kube_contexts,
    SYSTEMD: _probe_systemd,
    LIBFAKETIME: _probe_libfaketime,
    FUSE: _probe_fuse,
    PTRACE_VDSO: vdso_skew.probe,
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
        attempt = PROBES[name] if name in PROBES else DEVELOPMENT_PROBES[name]
        try:
            out.append(Capability(name, True, attempt(), optional=name in _OPTIONAL))
        except CapabilityMissing as exc:
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

    if getattr(fault, "pods", None) is not None:  # as inside a pod, plus listing pods and reading cgroups
        from harness.chaos.pods import placeholder

        made = placeholder(fault)
        inside = family_of(made.kind).requirements(made)
        return [*inside, *(need for need in (KUBE_CONTEXTS, CGROUPS) if need not in inside)]
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
