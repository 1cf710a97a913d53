"""The proxy family's kinds: ``proxy.latency``, ``proxy.bandwidth``, ``proxy.reset`` and
``proxy.abort``, as scenario models."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema

from harness.scenario.faults import FaultBase, FaultContext
from harness.scenario.fields import Duration, HostPort, KeyPath, Model, NetnsName, rate_bits

__all__ = [
    "ProxyAbortFault",
    "ProxyAbortParams",
    "ProxyBandwidthFault",
    "ProxyBandwidthParams",
    "ProxyFault",
    "ProxyLatencyFault",
    "ProxyLatencyParams",
    "ProxyResetFault",
    "ProxyResetParams",
    "ProxyTarget",
]


class ProxyTarget(Model):
    """Which fault proxy acts: a running ``harness proxy`` (by its control address) or a transparent one.

    Exactly one of ``control`` or ``service``. With ``service`` the agent starts a proxy for the
    fault window and redirects the service's port to it with an nftables rule (nat, marked
    upstream connections are exempt), so clients need no change; the rule and the proxy are
    removed on revert.
    """

    control: HostPort | None = Field(
        default=None, description="Control address of a running `harness proxy` already in the traffic's path."
    )
    service: HostPort | None = Field(
        default=None, description="Service address whose port is redirected through a proxy during the fault."
    )
    netns: NetnsName | None = Field(default=None, description="Network namespace of the service (transparent mode).")
    reset_established: bool = Field(
        default=True,
        description=(
            "Transparent mode: abort clients' established connections to the service at inject, so pooled "
            "keep-alive connections reconnect through the proxy (nat redirects new connections only)."
        ),
    )


class ProxyLatencyParams(Model):
    latency: Duration = Field(description="Delay added to each response, e.g. 50ms.")
    jitter: Duration = Field(default=0.0, description="Uniform random variation (+/-) of the delay.")


class ProxyBandwidthParams(Model):
    rate: Annotated[int, BeforeValidator(rate_bits), WithJsonSchema({"type": ["integer", "string"]})] = Field(
        description="Rate per connection and direction: 1mbit, 500kbit, 2mbps (bytes/s) or bits/s."
    )


class ProxyResetParams(Model):
    percent: float = Field(default=100.0, gt=0, le=100, description="Percent of requests answered by a TCP reset.")


class ProxyAbortParams(Model):
    status: int = Field(ge=100, le=599, description="HTTP status returned instead of forwarding, e.g. 503.")
    percent: float = Field(gt=0, le=100, description="Percent of requests aborted.")


class ProxyFault(FaultBase):
    target: ProxyTarget = Field(description="The proxy: its control address, or the service to intercept.")

    def checks(self, context: FaultContext) -> Iterator[tuple[KeyPath, str]]:
        target = self.target
        if (target.control is None) == (target.service is None):
            yield ("target",), "give exactly one of control (a running proxy) or service (transparent)"
        if target.control and target.netns:
            yield ("target", "netns"), "netns is only used with service (transparent mode)"
        if target.service is not None:
            outside = context.outside(target.service.rpartition(":")[0].strip("[]"))
            if outside:
                yield ("target", "service"), f"{target.service} {outside}"
        if target.control is not None:
            host = target.control.rpartition(":")[0].strip("[]")
            outside = None if ipaddress.ip_address(host).is_loopback else context.outside(host)
            if outside:
                yield ("target", "control"), f"{target.control} is not loopback and {outside}"


class ProxyLatencyFault(ProxyFault):
    """Delay every response through the proxy."""

    kind: Literal["proxy.latency"] = Field(description="Fault kind.")
    params: ProxyLatencyParams = Field(description="Latency and jitter.")


class ProxyBandwidthFault(ProxyFault):
    """Limit the bytes per second each proxied connection carries, each way."""

    kind: Literal["proxy.bandwidth"] = Field(description="Fault kind.")
    params: ProxyBandwidthParams = Field(description="Rate.")


class ProxyResetFault(ProxyFault):
    """Close a share of connections with a TCP reset when a request arrives."""

    kind: Literal["proxy.reset"] = Field(description="Fault kind.")
    params: ProxyResetParams = Field(default_factory=ProxyResetParams, description="Percent of requests.")


class ProxyAbortFault(ProxyFault):
    """Answer a share of HTTP requests with a chosen status instead of forwarding them."""

    kind: Literal["proxy.abort"] = Field(description="Fault kind.")
    params: ProxyAbortParams = Field(description="Status and percent.")
