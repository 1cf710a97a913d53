"""The proxy family: ``proxy.latency``, ``proxy.bandwidth``, ``proxy.reset`` and ``proxy.abort`` on
every request, and ``http.abort``, ``http.delay``, ``http.replace`` and ``http.patch`` on the
requests an HTTP rule matches (method, path, host, headers; Chaos Mesh HTTPChaos).

The faults are applied by the fault proxy (:mod:`harness.chaos.proxy_server`); this family puts
them there and takes them away again, through the shared journal steps
(:mod:`harness.chaos.steps`): ``injecting`` is journaled, fsynced, with everything a revert
needs *before* anything changes, then ``injected``; inject and revert are idempotent, and
revert undoes only what the journal recorded.

Two ways to reach a proxy, as the scenario's ``target`` says:

* **Explicit** (``target.control``): a ``harness proxy`` already sits in the traffic's path.
  Inject PUTs the fault to its control API (:mod:`.control`) under the name
  ``<run id>:<fault name>`` (so two runs sharing one proxy never remove each other's faults);
  revert DELETEs that name.
* **Transparent** (``target.service``): nothing is in the path yet, so inject starts a proxy
  for this fault and redirects the service's port to it with nftables (:mod:`.transparent`).

nat acts on new connections only, so a connection opened before inject would keep going
straight to the service: clients with a keep-alive pool (Locust's FastHttpUser, the demo
gateway) would never see the fault. With ``target.reset_established`` (the default), inject
therefore aborts, after the redirect is in place, every established TCP connection to the
service from clients in the service's namespace and in the agent's own (``ss -K``, sock
destroy; the proxy's marked upstream connections are spared); their next request fails
once with a connection abort and reconnects, through the proxy. Clients elsewhere keep
their connections until they reconnect. A connection opened through the proxy is closed
when the proxy stops at revert (clients reconnect, directly). Two transparent faults
on the same service at once do not stack: a connection is redirected once, to one of the
two proxies; to combine faults, use one explicit proxy and put several faults in it.

An inject that fails part-way undoes what it did (journaled ``reverted``) and raises
``FaultError``. This family imports neither gevent nor Ray: the chaos agent calls it from a
Ray worker.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import shutil
from typing import Any

import psutil

from harness.chaos import capabilities, fault_servers, nft
from harness.chaos.families.proxy import control, transparent
from harness.chaos.families.proxy.params import (
    HttpAbortFault,
    HttpDelayFault,
    HttpFault,
    HttpPatch,
    HttpPatchFault,
    HttpReplace,
    HttpReplaceFault,
    ProxyAbortFault,
    ProxyBandwidthFault,
    ProxyFault,
    ProxyLatencyFault,
    ProxyResetFault,
)
from harness.chaos.family import FaultFamily, HostContext, Leftover
from harness.chaos.journal import FaultRecord, FaultState, Journal
from harness.chaos.kubelet import PodSite
from harness.chaos.steps import Details, InjectContext, Prepared
from harness.errors import ConfigError, FaultError

__all__ = ["FAMILY", "ProxyFamily", "check", "describe", "inject", "proxy_fault_name", "revert", "table_name"]

log = logging.getLogger(__name__)

EXPLICIT, TRANSPARENT = "explicit", "transparent"
TAG = transparent.TAG
MARK = transparent.MARK
table_name = transparent.table_name


def proxy_fault_name(run_id: str, fault_name: str) -> str:
    """The fault's name inside the proxy: namespaced by run, so runs sharing a proxy stay apart."""
    return f"{run_id}:{fault_name}"


def _spec(fault: ProxyFault) -> dict[str, Any]:
    """The PUT body of the fault (seconds, bits/s, percent: what the proxy expects)."""
    return {"kind": fault.kind, **fault.model_dump(include={"params"}, exclude_none=True)["params"]}


def _requests(fault: HttpFault) -> str:
    """``50% of POST /api/checkout/* requests (Host api.*, X-Canary: 1)``: what a rule matches."""
    p = fault.params
    route = " ".join(x for x in (p.method, p.path or (p.path_regex and f"~{p.path_regex}")) if x)
    where = [f"Host {p.host}"] if p.host else []
    where += [f"{name}: {value}" for name, value in p.request_headers.items()]
    share = "" if p.percent == 100 else f"{p.percent:g}% of "
    text = f"{share}{route or 'all'} requests" + (f" ({', '.join(where)})" if where else "")
    if p.target == "Response":
        text = "the responses" + (f" {p.code}" if p.code else "") + f" to {text}"
    return text


def _http_what(fault: HttpFault) -> str:
    subject = _requests(fault)
    if isinstance(fault, HttpAbortFault):
        return (
            f"reset the connection of {subject}"
            if fault.params.reset
            else f"answer {subject} with {fault.params.status}"
        )
    if isinstance(fault, HttpDelayFault):
        jitter = f" +/- {fault.params.jitter * 1000:g}ms" if fault.params.jitter else ""
        return f"hold {subject} {fault.params.delay * 1000:g}ms{jitter}"
    edits: HttpReplace | HttpPatch
    if isinstance(fault, HttpReplaceFault):
        verb, edits = "replace", fault.params.replace
    else:
        assert isinstance(fault, HttpPatchFault)
        verb, edits = "patch", fault.params.patch
    keys = ", ".join(edits.model_dump(exclude_defaults=True))
    return f"{verb} the {keys} of {subject}"


def _what(fault: ProxyFault) -> str:
    if isinstance(fault, HttpFault):
        return _http_what(fault)
    if isinstance(fault, ProxyLatencyFault):
        jitter = f" +/- {fault.params.jitter * 1000:g}ms" if fault.params.jitter else ""
        return f"add {fault.params.latency * 1000:g}ms{jitter} latency to each response"
    if isinstance(fault, ProxyBandwidthFault):
        return f"limit each connection to {fault.params.rate / 1e6:g}mbit/s each way"
    if isinstance(fault, ProxyResetFault):
        return f"reset {fault.params.percent:g}% of requests' connections with a TCP RST"
    assert isinstance(fault, ProxyAbortFault)
    return f"answer {fault.params.percent:g}% of HTTP requests with {fault.params.status}"


def _mode(fault: ProxyFault) -> str:
    target = fault.target
    if (target.control is None) == (target.service is None):
        raise ConfigError(f"fault '{fault.name}': target needs exactly one of 'control' or 'service'")
    return EXPLICIT if target.control is not None else TRANSPARENT


def _require_netns(name: str, netns: str) -> None:
    if netns and not (nft.NETNS_DIR / netns).exists():
        raise FaultError(f"fault '{name}': network namespace '{netns}' does not exist")


class ProxyFamily(FaultFamily):
    """HTTP/TCP faults through a fault proxy, running or started for the fault."""

    name = "proxy"
    models = (
        ProxyLatencyFault,
        ProxyBandwidthFault,
        ProxyResetFault,
        ProxyAbortFault,
        HttpAbortFault,
        HttpDelayFault,
        HttpReplaceFault,
        HttpPatchFault,
    )
    undo_failed_inject = True

    def in_pod(self, fault: ProxyFault, site: PodSite) -> ProxyFault:
        """A transparent proxy in the pod's network namespace, for the service's port on the pod's IP."""
        port = (fault.target.service or "").rpartition(":")[2]
        if not site.pod.ip:
            raise FaultError(f"fault '{fault.name}': pod {site.pod.key} has no IP yet (status.podIP)")
        host = f"[{site.pod.ip}]" if ":" in site.pod.ip else site.pod.ip
        netns = site.network_namespace(fault.name)
        target = fault.target.model_copy(update={"service": f"{host}:{port}", "netns": netns})
        return fault.model_copy(update={"target": target})

    def describe(self, fault: ProxyFault) -> str:
        """What the fault will do, and through which proxy."""
        target = fault.target
        if target.control is not None:
            where = f"through the fault proxy controlled at {target.control}"
        else:
            ns = f" in netns {target.netns}" if target.netns else ""
            where = f"for {target.service}{ns}, through a proxy started for the fault (nftables redirect)"
        return f"{_what(fault)} {where} for {fault.duration:g}s"

    def requirements(self, fault: ProxyFault) -> list[str]:
        if fault.target.service is None:
            return []  # a running proxy is reached by its control address
        return [capabilities.NFTABLES] + ([capabilities.NETNS] if fault.target.netns else [])

    def resolve(self, fault: ProxyFault, context: HostContext) -> str:
        return ""  # the plan line names the proxy; check asks it whether it answers

    def refusal(self, fault: ProxyFault, context: HostContext) -> str | None:
        return None  # nothing about the target is decided locally beyond the allow-lists

    def check(self, fault: ProxyFault, context: HostContext) -> None:
        """No proxy answers at the control address; for a transparent proxy no ``nft``, or no such namespace."""
        if _mode(fault) == EXPLICIT:
            address = str(fault.target.control)
            try:
                status, _ = control.health(address, timeout=2.0)
            except FaultError as exc:
                raise ConfigError(
                    f"fault '{fault.name}': no fault proxy answers at {address} ({exc}); start one with 'harness proxy'"
                ) from None
            if status != 200:
                why = f"{address} answered /health with {status}: not a harness proxy"
                raise ConfigError(f"fault '{fault.name}': {why}")
            return
        netns = fault.target.netns
        if shutil.which("nft") is None:
            raise ConfigError(f"fault '{fault.name}': the nft command is missing (Debian package nftables)")
        if netns is not None and not (nft.NETNS_DIR / netns).exists():
            raise ConfigError(f"fault '{fault.name}': network namespace '{netns}' does not exist (ip netns list)")

    def warm_up(self, kinds: frozenset[str]) -> None:
        return None  # the control client and nft are the standard library and a command

    def prepare(self, fault: ProxyFault, ctx: InjectContext) -> Prepared:
        fault_servers.reap()
        try:
            mode = _mode(fault)
        except ConfigError as exc:
            raise FaultError(str(exc)) from None
        name = proxy_fault_name(ctx.run_id, fault.name)
        details: Details = {"target": self.describe(fault), "proxy_fault": name, "spec": json.dumps(_spec(fault))}
        if mode == EXPLICIT:
            details.update(mode=EXPLICIT, control=str(fault.target.control))
            return Prepared(details)
        service = str(fault.target.service)
        workdir = transparent.workdir_of(ctx.run_id, fault.name)
        details.update(
            mode=TRANSPARENT,
            service=service,
            netns=fault.target.netns or "",
            family="ip6" if ipaddress.ip_address(control.split_address(service)[0]).version == 6 else "ip",
            table=table_name(ctx.run_id),
            chains=",".join(transparent.chain_names(fault.name)),
            mark=MARK,
            workdir=workdir,
            control=f"unix:{os.path.join(workdir, 'control.sock')}",
            tag=f"{ctx.run_id}/{fault.name}",
        )
        if fault.target.workers is not None:
            details["workers"] = fault.target.workers
        _require_netns(fault.name, fault.target.netns or "")
        return Prepared(details)

    def apply(self, fault: ProxyFault, record: FaultRecord, ctx: InjectContext, *, resumed: bool) -> Details:
        d = record.details
        spec = json.loads(str(d["spec"]))
        if d["mode"] == EXPLICIT:
            control.put(str(d["control"]), str(d["proxy_fault"]), spec)
            return {}
        _require_netns(fault.name, str(d.get("netns", "")))
        if resumed:  # an attempt died mid-way: take away what it may have left
            transparent.undo(d)
        os.makedirs(str(d["workdir"]), mode=0o700, exist_ok=True)
        pid, ticks, port = transparent.start_proxy(d)
        # Recorded at once: if the rest fails, revert finds the proxy by PID as well as by tag.
        started: Details = {"proxy_pid": pid, "proxy_start_ticks": ticks, "proxy_port": port}
        with contextlib.suppress(psutil.Error):
            started[f"create_time.{pid}"] = int(psutil.Process(pid).create_time())
        record = record.advance(FaultState.INJECTING, **started)
        ctx.journal.append(record)
        control.put(str(d["control"]), str(d["proxy_fault"]), spec)
        transparent.nft_inject(record.details, port)
        aborted = transparent.abort_established(record.details) if fault.target.reset_established else 0
        log.info("run %s: fault %s: %s", ctx.run_id, fault.name, self.describe(fault))
        return {**started, "aborted_connections": aborted}

    def undo(self, record: FaultRecord) -> Details:
        """Safe after the proxy died. Raises when the fault may still be in effect (the proxy did not
        answer in time, an nft call failed, a proxy process survived SIGKILL)."""
        d = record.details
        explicit = d.get("mode") == EXPLICIT
        what = control.delete(str(d["control"]), str(d["proxy_fault"])) if explicit else transparent.undo(d)
        return {"reverted": what}

    def reverted_text(self, before: FaultRecord, after: FaultRecord) -> str:
        return str(after.details.get("reverted") or f"marked {after.state.value}")

    def leftovers(self) -> list[Leftover]:
        """Redirect tables (``ip``/``ip6 harness_proxy_*``) in every namespace, and tagged proxies."""
        return fault_servers.redirect_leftovers(self.name, transparent.TABLE_PREFIX, ("ip", "ip6"), TAG)

    def remove(self, leftover: Leftover) -> None:
        fault_servers.remove_redirect_leftover(leftover)


FAMILY = ProxyFamily()


def describe(fault: ProxyFault) -> str:
    """One line for ``harness plan``: what the fault will do, and through which proxy. Touches nothing."""
    return FAMILY.describe(fault)


def check(fault: ProxyFault) -> None:
    """Raise ``ConfigError`` when the fault could never apply here. Changes nothing."""
    from harness.scenario.model import Safety

    FAMILY.check(fault, HostContext(Safety()))


def inject(fault: ProxyFault, run_id: str, journal: Journal, *, lease_until: float | None = None) -> FaultRecord:
    """Put ``fault`` into effect through the journal steps and return its ``injected`` record."""
    return FAMILY.inject(fault, InjectContext(run_id, journal, lease_until))


def revert(record: FaultRecord, journal: Journal) -> None:
    """Undo exactly what the journal recorded for this fault; journal the outcome."""
    FAMILY.revert(record, journal)
