"""The dns family's kinds: ``dns.error``, ``dns.spoof`` and ``dns.delay``, as scenario models."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, Self

from pydantic import Field

from harness.scenario.faults import FaultBase, FaultContext, ProcessTarget
from harness.scenario.fields import Cidr, Duration, HostPort, KeyPath, Model, NetnsName

__all__ = [
    "DnsDelayFault",
    "DnsDelayParams",
    "DnsErrorFault",
    "DnsErrorParams",
    "DnsFault",
    "DnsSpoofFault",
    "DnsSpoofParams",
    "DnsTarget",
]

#: A name glob: letters, digits, '-', '_', '.', and the glob characters '*', '?', '[', ']'.
Pattern = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9_*?\[\]!.-]+\.?$")]

_ONE_TARGET = (
    "give exactly one of control (a running harness DNS responder), netns (a network namespace) "
    "or a process target (pid_file, pattern or systemd_unit)"
)


class DnsTarget(ProcessTarget):
    """Whose name resolution fails: exactly one of ``control``, ``netns`` or a process target.

    ``control``: a running harness DNS responder (``python -m harness.chaos.dns_server``, the
    demo's "cluster DNS") that the target already uses as its resolver; the fault is put into
    it through its control API, as Chaos Mesh's DNSChaos reconfigures the cluster's CoreDNS.
    ``netns``: every process in that network namespace; the agent starts a responder in it for
    the fault window and redirects the namespace's DNS (UDP and TCP port 53, IPv4) to it with
    nftables; other names are forwarded to the nameserver of the namespace's resolv.conf.
    ``pid_file``, ``pattern`` or ``systemd_unit`` (as process faults take them): only those
    processes (and the children they start during the fault), in whatever network namespace
    they share; the agent moves them into a cgroup v2 of the fault's own and redirects only
    that cgroup's DNS (nftables ``socket cgroupv2``), then moves them back.
    """

    control: HostPort | None = Field(
        default=None, description="Control address of a running harness DNS responder the target resolves through."
    )
    netns: NetnsName | None = Field(
        default=None, description="Network namespace whose DNS queries are intercepted during the fault."
    )
    upstream: HostPort | None = Field(
        default=None,
        description=(
            "With netns or a process target: where the fault's responder forwards the names the fault does not "
            "act on (IPv4 host:port, loopback or inside safety.allowed_networks); default: the first nameserver "
            "of the target's resolv.conf."
        ),
    )

    def processes(self) -> bool:
        """True when the target names processes (pid_file, pattern or systemd_unit)."""
        return any(t is not None for t in (self.pid_file, self.pattern, self.systemd_unit, self.cgroup))


class _Names(Model):
    patterns: list[Pattern] = Field(
        min_length=1, max_length=64, description="Name globs the fault acts on, e.g. payments.shop.demo or *.shop.demo."
    )
    percent: float = Field(default=100.0, gt=0, le=100, description="Percent of matching queries the fault answers.")
    delay: Duration = Field(default=0.0, le=60, description="Seconds before the fault's answer (or forwarding).")


class DnsErrorParams(_Names):
    error: Literal["nxdomain", "servfail", "refused", "timeout"] = Field(
        description="What matching queries get: NXDOMAIN, SERVFAIL, REFUSED, or no answer at all (timeout)."
    )


class DnsSpoofParams(_Names):
    address: str = Field(
        description="The address answered for matching names (IPv4 answers A queries, IPv6 AAAA), or 'random'."
    )
    network: Cidr = Field(
        default="127.0.0.0/8", description="With address 'random': the network each answer is drawn from."
    )


class DnsDelayParams(_Names):
    delay: Duration = Field(gt=0, le=60, description="Seconds each matching query is held before it is forwarded.")


class DnsFault(FaultBase):
    target: DnsTarget = Field(
        description="The DNS responder to reconfigure, the network namespace to intercept, or the processes."
    )
    if TYPE_CHECKING:  # each kind declares its own params model
        params: _Names

    def with_base_dir(self, base: Path) -> Self:
        """A relative pid file read from ``base`` (the scenario file's directory)."""
        return self.model_copy(update={"target": self.target.with_base_dir(base)})

    def checks(self, context: FaultContext) -> Iterator[tuple[KeyPath, str]]:
        target = self.target
        given = [target.control, target.netns, target.pid_file, target.pattern, target.systemd_unit, target.cgroup]
        if self.pods is not None:  # each pod's network namespace is the target
            if any(t is not None for t in given):
                yield ("target",), "with pods, the fault intercepts each pod's network namespace; give only upstream"
        elif len([t for t in given if t is not None]) != 1:
            yield ("target",), _ONE_TARGET
        if target.upstream is not None and target.control is not None:
            yield ("target", "upstream"), "upstream is for netns and process targets (a running responder has its own)"
        if target.upstream is not None:  # the target's other queries go there: only where faults may act
            host = target.upstream.rpartition(":")[0].strip("[]")
            outside = None if ipaddress.ip_address(host).is_loopback else context.outside(host)
            if ipaddress.ip_address(host).version != 4:
                yield ("target", "upstream"), f"{target.upstream}: dns faults forward to an IPv4 nameserver only"
            elif outside:
                yield ("target", "upstream"), f"{target.upstream} is not loopback and {outside}"
        if target.netns is not None or target.processes():
            yield from self._overlaps(context)
        if target.control is not None:
            host = target.control.rpartition(":")[0].strip("[]")
            outside = None if ipaddress.ip_address(host).is_loopback else context.outside(host)
            if outside:
                yield ("target", "control"), f"{target.control} is not loopback and {outside}"

    def _overlaps(self, context: FaultContext) -> Iterator[tuple[KeyPath, str]]:
        """Two faults on one namespace (or on the same processes) at once do not stack (a query is
        redirected once, to one of two responders; a process is in one cgroup): said at the later.
        A fault that waits for a steady state may start anywhere from its ``after`` to its deadline."""
        mine = self.target.model_dump(exclude={"upstream", "control"}, exclude_none=True)
        for other in context.faults:
            if other is self:
                return
            if (
                isinstance(other, DnsFault)
                and other.target.model_dump(exclude={"upstream", "control"}, exclude_none=True) == mine
                and other.earliest < self.start + self.duration
                and self.earliest < other.start + other.duration
            ):
                key, what = next(iter(mine.items()))
                yield (
                    ("target", key),
                    (
                        f"overlaps dns fault '{other.name}' on {key} {what}: two dns faults on one "
                        "target at once do not stack; run them one after the other, or put both into one "
                        "running responder (target.control)"
                    ),
                )
                return


class DnsErrorFault(DnsFault):
    """Matching names get an error rcode, or no answer at all."""

    kind: Literal["dns.error"] = Field(description="Fault kind.")
    params: DnsErrorParams = Field(description="Names, error and share.")


class DnsSpoofFault(DnsFault):
    """Matching names resolve to a chosen (or random) address."""

    kind: Literal["dns.spoof"] = Field(description="Fault kind.")
    params: DnsSpoofParams = Field(description="Names and the address answered.")

    def checks(self, context: FaultContext) -> Iterator[tuple[KeyPath, str]]:
        yield from super().checks(context)
        address = self.params.address
        if address != "random":
            try:
                ipaddress.ip_address(address)
            except ValueError:
                yield ("params", "address"), f"'{address}' is neither an IP address nor 'random'"
                return
        # Spoofed answers send the target's traffic there: only where faults may act.
        where = self.params.network if address == "random" else address
        key = "network" if address == "random" else "address"
        if not ipaddress.ip_network(where, strict=False).is_loopback:
            outside = context.outside(where)
            if outside:
                yield ("params", key), f"{where} {outside}"


class DnsDelayFault(DnsFault):
    """Matching names resolve as before, late."""

    kind: Literal["dns.delay"] = Field(description="Fault kind.")
    params: DnsDelayParams = Field(description="Names and delay.")
