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

Both ways go through the shared journal steps (:mod:`harness.chaos.steps`): journaled before
anything changes, leased, reverted from the record alone; an inject that fails part-way undoes
what it did. Processes chosen by pattern in the host's namespace are refused (no cgroup v2
here to select their sockets in nftables). This family imports neither gevent nor Ray.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from typing import Any

from harness.chaos import capabilities, fault_servers, nft
from harness.chaos.families.dns import control, intercept
from harness.chaos.families.dns.params import DnsDelayFault, DnsErrorFault, DnsFault, DnsSpoofFault
from harness.chaos.family import FaultFamily, HostContext, Leftover
from harness.chaos.journal import FaultRecord, FaultState
from harness.chaos.steps import Details, InjectContext, Prepared
from harness.errors import ConfigError, FaultError

__all__ = ["FAMILY", "DnsFamily", "wire_spec"]

log = logging.getLogger(__name__)

CONTROL, NETNS = "control", "netns"


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
    if target.pattern is not None or (target.control is None) == (target.netns is None):
        raise ConfigError(f"fault '{fault.name}': target needs exactly one of 'control' or 'netns'")
    return CONTROL if target.control is not None else NETNS


class DnsFamily(FaultFamily):
    """DNS faults through a harness DNS responder, running or started for the fault."""

    name = "dns"
    models = (DnsErrorFault, DnsSpoofFault, DnsDelayFault)
    undo_failed_inject = True

    def describe(self, fault: DnsFault) -> str:
        if fault.target.control is not None:
            where = f"through the DNS responder controlled at {fault.target.control}"
        else:
            where = f"in netns {fault.target.netns}, through a responder started for the fault (nftables redirect)"
        return f"{_what(fault)} {where} for {fault.duration:g}s"

    def requirements(self, fault: DnsFault) -> list[str]:
        return [] if fault.target.netns is None else [capabilities.NFTABLES, capabilities.NETNS]

    def resolve(self, fault: DnsFault, context: HostContext) -> str:
        netns = fault.target.netns
        if netns is None:
            return ""
        try:
            return f"upstream {intercept.nameserver(netns)} (from {intercept.resolv_conf(netns)})"
        except FaultError as exc:
            return str(exc)

    def refusal(self, fault: DnsFault, context: HostContext) -> str | None:
        return None  # a named namespace confines the fault; the control address is checked at load

    def check(self, fault: DnsFault, context: HostContext) -> None:
        """No responder answers at the control address; no ``nft``, no such namespace, no nameserver."""
        mode = _mode(fault)
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
        netns = str(fault.target.netns)
        if not (nft.NETNS_DIR / netns).exists():
            raise FaultError(f"fault '{fault.name}': network namespace '{netns}' does not exist")
        workdir = intercept.workdir_of(ctx.run_id, fault.name)
        details.update(
            netns=netns,
            upstream=intercept.nameserver(netns),
            table=intercept.table_name(ctx.run_id),
            chain=intercept.chain_name(fault.name),
            mark=intercept.MARK,
            workdir=workdir,
            control=f"unix:{os.path.join(workdir, 'control.sock')}",
            tag=f"{ctx.run_id}/{fault.name}",
        )
        return Prepared(details)

    def apply(self, fault: DnsFault, record: FaultRecord, ctx: InjectContext, *, resumed: bool) -> Details:
        d = record.details
        spec = json.loads(str(d["spec"]))
        if d["mode"] == CONTROL:
            control.put(str(d["control"]), str(d["dns_fault"]), spec)
            return {}
        if resumed:  # an attempt died mid-way: take away what it may have left
            intercept.undo(d)
        os.makedirs(str(d["workdir"]), mode=0o700, exist_ok=True)
        pid, ticks, port = intercept.start_responder(d)
        # Journaled at once: if the rest fails, revert finds the responder by PID as well as by tag.
        started: Details = {"responder_pid": pid, "responder_start_ticks": ticks, "responder_port": port}
        record = record.advance(FaultState.INJECTING, **started)
        ctx.journal.append(record)
        control.put(str(d["control"]), str(d["dns_fault"]), spec)
        intercept.nft_inject(record.details, port)
        log.info("run %s: fault %s: %s", ctx.run_id, fault.name, self.describe(fault))
        return started

    def undo(self, record: FaultRecord) -> Details:
        """Safe after the responder died. Raises when the fault may still be in effect."""
        d = record.details
        if d.get("mode") == CONTROL:
            return {"reverted": control.delete(str(d["control"]), str(d["dns_fault"]))}
        return {"reverted": intercept.undo(d)}

    def reverted_text(self, before: FaultRecord, after: FaultRecord) -> str:
        return str(after.details.get("reverted") or f"marked {after.state.value}")

    def leftovers(self) -> list[Leftover]:
        """Redirect tables (``ip harness_dns_*``) in every namespace, and tagged responders."""
        return fault_servers.redirect_leftovers(self.name, intercept.TABLE_PREFIX, ("ip",), intercept.TAG)

    def remove(self, leftover: Leftover) -> None:
        fault_servers.remove_redirect_leftover(leftover)


FAMILY = DnsFamily()
