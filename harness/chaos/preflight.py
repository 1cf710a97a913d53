"""Before anything starts: what each fault will act on, and the refusals a run would meet.

``harness plan`` prints :func:`targets`; ``harness run`` calls :func:`check` before it
starts Ray, so a fault that could never be applied (a capability this host lacks, no
kubeconfig, a kube context the scenario does not allow, a namespace without the opt-in label,
an API server that does not answer, a proxy that does not answer) stops the run with exit 2
and the reason, with no load sent and nothing applied. Each fault's family says what it acts
on now (``resolve``) and what this host must have (``requirements``, then ``check``): process
faults are resolved when they fire (the target may start after the run does), so here only a
pid file that already names PID 1 or a kernel thread is refused; the plan shows what each
process target would match now.

The scenario's allow-lists (``safety``) are checked from the file alone when it is loaded;
what needs this host is checked here, for faults that act on the driver's node: a stress
directory that lies under ``safety.allowed_paths`` as written but leaves it once symbolic
links are followed is refused.

Joining a Ray cluster without its token is refused by
:func:`harness.run.cluster.check_ray_address`: that is Ray's security, not a fault's.
"""

from __future__ import annotations

from harness.chaos import pods
from harness.chaos.family import HostContext, family_of
from harness.errors import ConfigError, HarnessError
from harness.scenario import Scenario
from harness.scenario.faults import FaultBase
from harness.scenario.heal import watched_faults

__all__ = ["check", "targets"]


def targets(scenario: Scenario) -> dict[str, str]:
    """One line per fault: what it will do, and what it would act on now where its family can say.

    Sends only GET requests (a Kubernetes fault that cannot be resolved says why instead).
    """
    context = HostContext(scenario.safety)
    out: dict[str, str] = {}
    for fault in scenario.faults:
        if fault.pods is not None:
            out[fault.name] = pods.describe(fault) + _pods_now(fault, scenario)
            continue
        family = family_of(fault.kind)
        out[fault.name] = family.describe(fault) + family.resolve(fault, context)
    for fault in watched_faults(scenario.faults, scenario.slos):
        check = fault.heal_check()
        since = "the kill" if fault.HEALS_FROM_START else "its end"
        out[fault.name] += f"; heal_time from {since} until {check.describe() if check else '?'}"
    return out


def _pods_now(fault: FaultBase, scenario: Scenario) -> str:
    """``; now: N of M matching pods ...: p1 on node-a, ...`` (GET requests only), and for each
    pod found on this machine its cgroup, processes and network namespace."""
    from harness.chaos.kube import choose_pods
    from harness.chaos.kubelet import locate

    try:
        choice = choose_pods([fault], scenario.safety.allowed_contexts)[fault.name]
    except HarnessError as exc:
        return f"; not resolved: {exc}"
    here = []
    for pod in choice.pods:
        try:
            here.append(locate(pod, fault.pods.containers if fault.pods else ()).describe())
        except HarnessError:
            continue  # on another node: its agent resolves it when the fault fires
    local = f"; on this machine: {'; '.join(here)}" if here else ""
    return f"; now: {choice.describe()}{local}"


def check(scenario: Scenario) -> None:
    """Raise ``ConfigError`` (exit 2) naming the fault when one could not be applied at all."""
    from harness.chaos import capabilities

    context = HostContext(scenario.safety)
    on_node = [f for f in scenario.faults if f.pods is None]  # a pod fault is checked on its pods' nodes
    for fault in on_node:
        refused = family_of(fault.kind).refusal(fault, context)
        if refused:
            raise ConfigError(refused)
    needed = sorted({need for fault in scenario.faults for need in capabilities.requirements(fault)})
    if needed:  # probed on this host, which is where a single-node run applies its faults
        gaps = capabilities.missing(scenario, capabilities.probe(needed))
        if gaps:
            raise ConfigError("cannot run here (harness doctor says more):\n  " + "\n  ".join(gaps))
    for fault in on_node:
        family_of(fault.kind).check(fault, context)
    _check_pods(scenario)


def _check_pods(scenario: Scenario) -> None:
    """The pods of every fault with a selector can be listed (allowed context, opted-in namespace)
    and some match; their nodes are matched to Ray nodes once Ray is up."""
    if not any(f.pods is not None for f in scenario.faults):
        return
    from harness.chaos.kube import choose_pods

    try:
        choose_pods(scenario.faults, scenario.safety.allowed_contexts)
    except ConfigError:
        raise
    except HarnessError as exc:
        raise ConfigError(str(exc)) from None
