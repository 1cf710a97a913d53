"""Before anything starts: what each fault will act on, and the refusals a run would meet.

``harness plan`` prints :func:`targets`; ``harness run`` calls :func:`check` before it
starts Ray, so a fault that could never be applied (no kubeconfig, a kube context the
scenario does not allow, a namespace without the opt-in label, an API server that does not
answer) stops the run with exit 2 and the reason, with no load sent and nothing applied.
Process faults are resolved when they fire (the target may start after the run does); here
only a pid file that already names PID 1 or a kernel thread is refused. The plan shows what
each process target would match now.

The scenario's allow-lists (``safety``) are checked from the file alone when it is loaded;
what needs this host is checked here, for faults that act on the driver's node: a stress
directory that lies under ``safety.allowed_paths`` as written but leaves it once symbolic
links are followed is refused.

Joining a Ray cluster without its token is refused by
:func:`harness.run.cluster.check_ray_address`: that is Ray's security, not a fault's.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from harness.chaos import process, stress
from harness.errors import ConfigError, HarnessError
from harness.scenario import (
    KubernetesPodKillFault,
    KubernetesScaleFault,
    NetworkBandwidthFault,
    NetworkLinkDownFault,
    NetworkLossFault,
    NetworkNetemFault,
    NetworkPartitionFault,
    ProcessTarget,
    ProxyAbortFault,
    ProxyBandwidthFault,
    ProxyLatencyFault,
    ProxyResetFault,
    Scenario,
    StressCpuFault,
    StressDiskFillFault,
    StressIoFault,
    StressMemoryFault,
)

__all__ = ["check", "targets"]

_NETWORK = (NetworkPartitionFault, NetworkLossFault, NetworkBandwidthFault, NetworkNetemFault, NetworkLinkDownFault)
_PROXY = (ProxyLatencyFault, ProxyBandwidthFault, ProxyResetFault, ProxyAbortFault)


def targets(scenario: Scenario) -> dict[str, str]:
    """One line per fault: what it will do, and for Kubernetes faults what it resolves to now.

    Sends only GET requests; a Kubernetes fault that cannot be resolved says why instead.
    """
    out: dict[str, str] = {}
    for fault in scenario.faults:
        if isinstance(fault, KubernetesPodKillFault | KubernetesScaleFault):
            from harness.chaos import kubernetes as kube  # imports the kubernetes client

            line = kube.describe(fault)
            try:
                api = kube.connect(scenario.safety.allowed_contexts)
                line += f"; now: {kube.resolve(fault, api).describe()}"
            except HarnessError as exc:
                line += f"; not resolved: {exc}"
            out[fault.name] = line
        elif isinstance(fault, StressCpuFault | StressMemoryFault | StressIoFault | StressDiskFillFault):
            out[fault.name] = stress.describe(fault) + (_now(fault.target) if fault.target is not None else "")
        elif isinstance(fault, _NETWORK):
            from harness.chaos import network  # imports pyroute2

            out[fault.name] = network.describe(fault)
        elif isinstance(fault, _PROXY):
            from harness.chaos import proxy

            out[fault.name] = proxy.describe(fault)
        else:
            out[fault.name] = process.describe(fault) + _now(fault.target)
    return out


def _now(target: ProcessTarget) -> str:
    """``; now: pid 12 (cmd), ...`` or why nothing matches now: a process target is resolved
    again when the fault fires (it may start, or restart, after the plan was printed)."""
    try:
        found = process.resolve_targets(target, protected=process.protected_processes())
    except HarnessError as exc:
        return f"; now: nothing ({exc})"
    shown = ", ".join(f"pid {p.pid} ({p.cmdline[:60]})" for p in found[:5])
    more = f" and {len(found) - 5} more" if len(found) > 5 else ""
    return f"; now: {shown}{more}"


def check(scenario: Scenario) -> None:
    """Raise ``ConfigError`` (exit 2) naming the fault when one could not be applied at all."""
    from harness.chaos import capabilities

    _check_local_targets(scenario)

    needed = sorted({need for fault in scenario.faults for need in capabilities.requirements(fault)})
    if needed:  # probed on this host, which is where a single-node run applies its faults
        gaps = capabilities.missing(scenario, capabilities.probe(needed))
        if gaps:
            raise ConfigError("cannot run here (harness doctor says more):\n  " + "\n  ".join(gaps))
    stress_ng = [f.name for f in scenario.faults if f.kind in (stress.CPU, stress.MEMORY, stress.IO)]
    if stress_ng and shutil.which("stress-ng") is None:  # the agent would fail at the fault, mid-run
        raise ConfigError(
            f"fault '{stress_ng[0]}' needs stress-ng, which is not installed here (Debian: apt-get install stress-ng)"
        )
    network_faults = [f for f in scenario.faults if isinstance(f, _NETWORK)]
    if network_faults:  # no nft, no netem, no such namespace or interface: refused before anything starts
        from harness.chaos import network

        for net_fault in network_faults:
            network.check(net_fault)
    proxy_faults = [f for f in scenario.faults if isinstance(f, _PROXY)]
    if proxy_faults:  # a control address that does not answer, no nft for a transparent proxy
        from harness.chaos import proxy

        for proxy_fault in proxy_faults:
            proxy.check(proxy_fault)
    kube_faults = [f for f in scenario.faults if isinstance(f, KubernetesPodKillFault | KubernetesScaleFault)]
    if not kube_faults:
        return
    from harness.chaos import kubernetes as kube

    api = kube.connect(scenario.safety.allowed_contexts)
    for fault in kube_faults:
        try:
            kube.resolve(fault, api)
        except ConfigError:
            raise
        except HarnessError as exc:
            raise ConfigError(f"fault '{fault.name}' cannot be applied: {exc}") from None


def _check_local_targets(scenario: Scenario) -> None:
    """What the allow-lists cannot decide from the file: symbolic links under a stress directory,
    and a pid file naming PID 1 or a kernel thread now. Only for faults on this (the driver's)
    node; on another node the agent refuses a pid file's PID 1 or kernel thread when it fires."""
    for fault in scenario.faults:
        if fault.node is not None:
            continue
        if isinstance(fault, StressIoFault | StressDiskFillFault):
            allowed = [_realpath(d) for d in scenario.safety.allowed_paths]
            real = _realpath(fault.params.path)
            if not any(real == d or real.startswith(d.rstrip("/") + "/") for d in allowed):
                raise ConfigError(
                    f"fault '{fault.name}': {fault.params.path} is {real} once symbolic links are followed, "
                    f"which is not under safety.allowed_paths ({', '.join(scenario.safety.allowed_paths)})"
                )
        target = getattr(fault, "target", None)
        if isinstance(target, ProcessTarget) and target.pid_file is not None:
            try:
                text = Path(target.pid_file).read_text(encoding="utf-8", errors="replace").split()
                pid = int(text[0]) if text else 0
            except (OSError, ValueError):
                continue  # not there yet, or not a pid: resolved (and reported) when the fault fires
            why = process.never_a_target(pid) if pid > 0 else None
            if why is not None:
                raise ConfigError(
                    f"fault '{fault.name}': pid file {target.pid_file} names process {pid}, {why}: never a fault target"
                )


def _realpath(path: str) -> str:
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):  # a loop of links, say: judged as written
        return os.path.normpath(path)
