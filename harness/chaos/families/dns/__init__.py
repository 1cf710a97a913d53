"""The dns family: ``dns.error``, ``dns.spoof`` and ``dns.delay`` (Chaos Mesh's DNSChaos).

Names matching a fault's patterns (globs) get an error rcode, no answer, a chosen or random
address, or a late answer; every other name resolves as before. The answers come from a harness
DNS responder (:mod:`harness.chaos.dns_server`), reached one of two ways, as ``target`` says:

* **control** (``target.control``): a responder the target already uses as its resolver (the
  demo's "cluster DNS"). Inject PUTs the fault to its control API under ``<run id>:<fault>``
  (runs sharing one responder never remove each other's faults); revert DELETEs it. This is
  the DNSChaos model: the cluster's DNS server is reconfigured, not the target.
* **netns** (``target.netns``): every process of that network namespace. Inject starts a
  responder in the namespace for the fault and redirects its port 53 to it with nftables
  (:mod:`.intercept`); other names go to the nameserver the namespace used before.
* **processes** (``target.pid_file``, ``pattern`` or ``systemd_unit``, resolved as process
  faults resolve them: never harness itself, its ancestors, PID 1 or a kernel thread): the
  processes move into a cgroup v2 of the fault's own, and only that cgroup's port 53 is
  redirected, in the namespace they share (:mod:`.cgroup`); their neighbours resolve as before.

Both ways go through the shared journal steps (:mod:`harness.chaos.steps`): journaled before
anything changes, leased, reverted from the record alone; an inject that fails part-way undoes
what it did. This family imports neither gevent nor Ray.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from typing import Any

from harness.chaos import capabilities, fault_servers, nft, processes
from harness.chaos.families.dns import cgroup, control, intercept
from harness.chaos.families.dns.params import DnsDelayFault, DnsErrorFault, DnsFault, DnsSpoofFault
from harness.chaos.family import FaultFamily, HostContext, Leftover
from harness.chaos.journal import FaultRecord, FaultState
from harness.chaos.kubelet import PodSite
from harness.chaos.steps import Details, InjectContext, Prepared
from harness.errors import ConfigError, FaultError

__all__ = ["FAMILY", "DnsFamily", "wire_spec"]

log = logging.getLogger(__name__)

CONTROL, NETNS, PROCESSES = "control", "netns", "processes"


def wire_spec(fault: DnsFault) -> dict[str, Any]:
    """The fault as the responder's control API takes it (its kind without the ``dns.`` prefix)."""
    return {"kind": fault.kind.partition(".")[2], **fault.model_dump(include={"params"})["params"]}


def _what(fault: DnsFault) -> str:
    p = fault.params
    names = ", ".join(p.patterns)
    share = "" if p.percent >= 100 else f"{p.percent:g}% of "
    late = f" after {p.delay * 1000:g}ms" if p.delay and not isinstance(fault, DnsDelayFault) else ""
    if isinstance(fault, DnsErrorFault):
        error = fault.params.error
        answer = "no answer (timeout)" if error == "timeout" else error.upper()
        return f"answer {share}queries for {names} with {answer}{late}"
    if isinstance(fault, DnsSpoofFault):
        spoof = fault.params
        address = f"a random address in {spoof.network}" if spoof.address == "random" else spoof.address
        return f"resolve {share}queries for {names} to {address}{late}"
    return f"delay {share}queries for {names} by {p.delay * 1000:g}ms"


def _mode(fault: DnsFault) -> str:
    target = fault.target
    modes = [m for m, given in ((CONTROL, target.control), (NETNS, target.netns)) if given is not None]
    modes += [PROCESSES] if target.processes() else []
    if len(modes) != 1:
        raise ConfigError(f"fault '{fault.name}': target needs exactly one of control, netns or a process target")
    return modes[0]


class DnsFamily(FaultFamily):
    """DNS faults through a harness DNS responder, running or started for the fault."""

    name = "dns"
    models = (DnsErrorFault, DnsSpoofFault, DnsDelayFault)
    undo_failed_inject = True

    def in_pod(self, fault: DnsFault, site: PodSite) -> DnsFault:
        """The pod's network namespace intercepted (every container of the pod resolves through it)."""
        target = fault.target.model_copy(update={"netns": site.network_namespace(fault.name)})
        return fault.model_copy(update={"target": target})

    def describe(self, fault: DnsFault) -> str:
        target = fault.target
        if target.control is not None:
            where = f"through the DNS responder controlled at {target.control}"
        elif target.netns is not None:
            where = f"in netns {target.netns}, through a responder started for the fault (nftables redirect)"
        else:
            where = (
                f"for {processes.describe_target(target)} only, through a responder started for the fault "
                "(their cgroup v2, nftables socket cgroupv2 redirect)"
            )
        return f"{_what(fault)} {where} for {fault.duration:g}s"

    def requirements(self, fault: DnsFault) -> list[str]:
        if fault.target.netns is not None:
            return [capabilities.NFTABLES, capabilities.NETNS]
        return [capabilities.NFTABLES, capabilities.CGROUP2] if fault.target.processes() else []

    def resolve(self, fault: DnsFault, context: HostContext) -> str:
        target = fault.target
        if target.control is not None:
            return ""
        if target.processes():
            now = processes.now_text(target)
            with contextlib.suppress(FaultError):
                found = processes.resolve_targets(target, protected=processes.protected_processes())
                upstream = target.upstream or cgroup.upstream_of(found[0].pid)
                now += f"; upstream {upstream}"
            return now
        netns = str(target.netns)
        if target.upstream is not None:
            return f"; upstream {target.upstream}"
        try:
            return f"; upstream {intercept.nameserver(netns)} (from {intercept.resolv_conf(netns)})"
        except FaultError as exc:
            return f"; {exc}"

    def refusal(self, fault: DnsFault, context: HostContext) -> str | None:
        """A pid file naming PID 1 or a kernel thread (as process faults refuse it). A named
        namespace confines a netns fault; the control address is checked at load."""
        if fault.node is not None or not fault.target.processes():
            return None
        return processes.pid_file_refusal(fault.name, fault.target)

    def check(self, fault: DnsFault, context: HostContext) -> None:
        """No responder answers at the control address; no ``nft``, no such namespace, no
        nameserver; no cgroup2 hierarchy for a process target."""
        mode = _mode(fault)
        if mode == PROCESSES:
            if shutil.which("nft") is None or shutil.which("unshare") is None:
                raise ConfigError(f"fault '{fault.name}': nft and unshare are needed (Debian nftables, util-linux)")
            try:
                cgroup.v2_mount()
            except FaultError as exc:
                raise ConfigError(f"fault '{fault.name}': {exc}") from None
            return  # the processes are resolved when the fault fires (they may start later)
        if mode == CONTROL:
            address = str(fault.target.control)
            try:
                status, answer = control.health(address, timeout=2.0)
            except FaultError as exc:
                raise ConfigError(f"fault '{fault.name}': no DNS responder answers at {address} ({exc})") from None
            if status != 200 or not isinstance(answer, dict) or "queries" not in answer:
                raise ConfigError(f"fault '{fault.name}': {address} is not a harness DNS responder's control API")
            return
        netns = str(fault.target.netns)
        if shutil.which("nft") is None:
            raise ConfigError(f"fault '{fault.name}': the nft command is missing (Debian package nftables)")
        if not (nft.NETNS_DIR / netns).exists():
            raise ConfigError(f"fault '{fault.name}': network namespace '{netns}' does not exist (ip netns list)")
        if fault.target.upstream is not None:
            return
        try:
            intercept.nameserver(netns)
        except FaultError as exc:
            raise ConfigError(f"fault '{fault.name}': {exc}") from None

    def warm_up(self, kinds: frozenset[str]) -> None:
        # The responder's code and its one library (dnslib): missing here means missing there.
        from harness.chaos.dns_server import responder  # noqa: F401

    def prepare(self, fault: DnsFault, ctx: InjectContext) -> Prepared:
        try:
            mode = _mode(fault)
        except ConfigError as exc:
            raise FaultError(str(exc)) from None
        details: Details = {
            "target": self.describe(fault),
            "dns_fault": f"{ctx.run_id}:{fault.name}",
            "spec": json.dumps(wire_spec(fault)),
            "mode": mode,
        }
        if mode == CONTROL:
            details["control"] = str(fault.target.control)
            return Prepared(details)
        pids: list[int] = []
        if mode == PROCESSES:
            try:
                found = processes.resolve_targets(fault.target, protected=ctx.protected)
                netns = cgroup.netns_of(found)
                upstream = fault.target.upstream or cgroup.upstream_of(found[0].pid)
                details.update(cgroup.prepare(found, ctx.run_id, fault.name))
            except FaultError as exc:
                raise FaultError(f"fault '{fault.name}': {exc}") from None
            pids = [p.pid for p in found]
        else:
            netns = str(fault.target.netns)
            if not (nft.NETNS_DIR / netns).exists():
                raise FaultError(f"fault '{fault.name}': network namespace '{netns}' does not exist")
            upstream = fault.target.upstream or intercept.nameserver(netns)
        workdir = intercept.workdir_of(ctx.run_id, fault.name)
        details.update(
            netns=netns,
            upstream=upstream,
            table=intercept.table_name(ctx.run_id),
            chain=intercept.chain_name(fault.name),
            mark=intercept.MARK,
            workdir=workdir,
            control=f"unix:{os.path.join(workdir, 'control.sock')}",
            tag=f"{ctx.run_id}/{fault.name}",
        )
        return Prepared(details, pids)

    def apply(self, fault: DnsFault, record: FaultRecord, ctx: InjectContext, *, resumed: bool) -> Details:
        d = record.details
        spec = json.loads(str(d["spec"]))
        if d["mode"] == CONTROL:
            control.put(str(d["control"]), str(d["dns_fault"]), spec)
            return {}
        by_cgroup = d["mode"] == PROCESSES
        if resumed:  # an attempt died mid-way: take away what it may have left
            (cgroup.undo if by_cgroup else intercept.undo)(d)
        os.makedirs(str(d["workdir"]), mode=0o700, exist_ok=True)
        pid, ticks, port = intercept.start_responder(d)
        # Journaled at once: if the rest fails, revert finds the responder by PID as well as by tag.
        started: Details = {"responder_pid": pid, "responder_start_ticks": ticks, "responder_port": port}
        record = record.advance(FaultState.INJECTING, **started)
        ctx.journal.append(record)
        control.put(str(d["control"]), str(d["dns_fault"]), spec)
        if by_cgroup:
            cgroup.inject(record.details, port)
        else:
            intercept.nft_inject(record.details, port)
        log.info("run %s: fault %s: %s", ctx.run_id, fault.name, self.describe(fault))
        return started

    def undo(self, record: FaultRecord) -> Details:
        """Safe after the responder died. Raises when the fault may still be in effect."""
        d = record.details
        if d.get("mode") == CONTROL:
            return {"reverted": control.delete(str(d["control"]), str(d["dns_fault"]))}
        if d.get("mode") == PROCESSES:
            return {"reverted": cgroup.undo(d)}
        return {"reverted": intercept.undo(d)}

    def reverted_text(self, before: FaultRecord, after: FaultRecord) -> str:
        return str(after.details.get("reverted") or f"marked {after.state.value}")

    def leftovers(self) -> list[Leftover]:
        """Redirect tables (``ip harness_dns_*``) in every namespace, ``harness-dns-*`` cgroups in
        the unified hierarchy, and tagged responders."""
        out = fault_servers.redirect_leftovers(self.name, intercept.TABLE_PREFIX, ("ip",), intercept.TAG)
        out += [
            Leftover("", "cgroup", os.path.basename(path), (path,), self.name, order=4)
            for path in cgroup.leftover_cgroups()
        ]
        return out

    def remove(self, leftover: Leftover) -> None:
        if leftover.kind == "cgroup":
            cgroup.empty_and_remove(*leftover.key)  # no journal: its processes go to the v2 root
        else:
            fault_servers.remove_redirect_leftover(leftover)


FAMILY = DnsFamily()
