"""The proxy family's kinds as scenario models: ``proxy.latency``, ``proxy.bandwidth``,
``proxy.reset`` and ``proxy.abort`` (every request), and the HTTP rules matched by route,
``http.abort``, ``http.delay``, ``http.replace`` and ``http.patch`` (Chaos Mesh HTTPChaos's
actions, one kind each so each is validated, planned and windowed on its own; several faults at
once compose in the proxy in Chaos Mesh's order abort -> delay -> replace -> patch)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

from harness.scenario.faults import FaultBase, FaultContext
from harness.scenario.fields import Duration, HostPort, KeyPath, Model, NetnsName, rate_bits, regex

__all__ = [
    "HttpAbortFault",
    "HttpDelayFault",
    "HttpFault",
    "HttpMatch",
    "HttpPatch",
    "HttpPatchFault",
    "HttpReplace",
    "HttpReplaceFault",
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
    workers: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Transparent mode: processes of the proxy sharing its port (default: the cores it may use).",
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
        if self.pods is not None:
            if target.service is None or target.control is not None or target.netns is not None:
                yield (
                    ("target",),
                    ("with pods, give only service (its port is each pod's; its host is replaced by the pod's IP)"),
                )
            return
        if (target.control is None) == (target.service is None):
            yield ("target",), "give exactly one of control (a running proxy) or service (transparent)"
        if target.control and target.netns:
            yield ("target", "netns"), "netns is only used with service (transparent mode)"
        if target.control and target.workers:
            yield (
                ("target", "workers"),
                "workers is only used with service (transparent mode); give it to harness proxy",
            )
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


_METHOD = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
_HEADER_NAME = Annotated[str, Field(pattern=_METHOD, max_length=200)]
_HEADER_VALUE = Annotated[str, Field(pattern=r"^[^\r\n]*$", max_length=4000)]
Headers = dict[_HEADER_NAME, _HEADER_VALUE]


class HttpMatch(Model):
    """Which requests an HTTP rule acts on (every key given must match), and how many of them."""

    target: Literal["Request", "Response"] = Field(
        default="Request",
        description="Chaos Mesh target: act on the request before it is forwarded, or on the service's response.",
    )
    method: str | None = Field(default=None, pattern=_METHOD, max_length=20, description="HTTP method, e.g. POST.")
    path: str | None = Field(
        default=None,
        min_length=1,
        max_length=2000,
        description="Glob on the request path, query excluded, e.g. /api/checkout/* ('*' also crosses '/').",
    )
    path_regex: Annotated[str, AfterValidator(regex)] | None = Field(
        default=None, max_length=2000, description="Regular expression the whole path must match (instead of path)."
    )
    host: str | None = Field(
        default=None, min_length=1, max_length=300, description="Glob on the Host header, port excluded."
    )
    request_headers: Headers = Field(
        default_factory=dict, description="Header name: glob its value must match; every one must be present."
    )
    code: int | None = Field(
        default=None, ge=100, le=599, description="target Response only: act only on responses with this status."
    )
    percent: float = Field(default=100.0, gt=0, le=100, description="Percent of matching requests acted on.")


class HttpAbortParams(HttpMatch):
    status: int | None = Field(
        default=None, ge=100, le=599, description="Answer with this status instead (e.g. 503); or give reset."
    )
    reset: bool = Field(default=False, description="Reset the client's connection (TCP RST) instead of answering.")


class HttpDelayParams(HttpMatch):
    delay: Duration = Field(description="How long the request (or the response) is held, e.g. 200ms.")
    jitter: Duration = Field(default=0.0, description="Uniform random variation (+/-) of the delay.")


class HttpReplace(Model):
    method: str | None = Field(default=None, pattern=_METHOD, max_length=20, description="Request: the new method.")
    path: str | None = Field(
        default=None, pattern=r"^/[^ \r\n]*$", max_length=2000, description="Request: the new path (query kept)."
    )
    code: int | None = Field(default=None, ge=100, le=599, description="Response: the new status.")
    headers: Headers = Field(default_factory=dict, description="Headers set (replacing any of the same name).")
    body: str | None = Field(default=None, max_length=1_000_000, description="The new body (Content-Length follows).")


class HttpReplaceParams(HttpMatch):
    replace: HttpReplace = Field(description="What is replaced in the request or the response.")


class HttpPatch(Model):
    headers: Headers = Field(default_factory=dict, description="Headers added.")
    body: dict[str, Any] | None = Field(
        default=None, description="A JSON object merged into a JSON body (RFC 7386 JSON merge patch)."
    )


class HttpPatchParams(HttpMatch):
    patch: HttpPatch = Field(description="What is added to the request or the response.")


class HttpFault(ProxyFault):
    """An HTTP rule in the fault proxy: acts on the requests it matches, lets every other one pass."""

    params: HttpMatch = Field(description="Which requests, and what is done to them.")

    def checks(self, context: FaultContext) -> Iterator[tuple[KeyPath, str]]:
        yield from super().checks(context)
        p = self.params
        if p.path is not None and p.path_regex is not None:
            yield ("params", "path_regex"), "give path (a glob) or path_regex, not both"
        if p.code is not None and p.target != "Response":
            yield ("params", "code"), "code matches the response's status: only with target: Response"
        edits = getattr(p, "replace", None) or getattr(p, "patch", None)
        if edits is not None:
            key = "replace" if isinstance(edits, HttpReplace) else "patch"
            if not edits.model_dump(exclude_defaults=True):
                yield ("params", key), f"{key} changes nothing: give headers or body"
            wrong = ("code",) if p.target == "Request" else ("method", "path")
            for name in wrong:
                if getattr(edits, name, None) is not None:
                    yield ("params", key, name), f"{name} cannot be replaced in a {p.target.lower()}"


class HttpAbortFault(HttpFault):
    """Answer the matching requests with a status, or reset their connection (Chaos Mesh abort)."""

    kind: Literal["http.abort"] = Field(description="Fault kind.")
    params: HttpAbortParams = Field(description="Which requests, and status or reset.")

    def checks(self, context: FaultContext) -> Iterator[tuple[KeyPath, str]]:
        yield from super().checks(context)
        if (self.params.status is None) == (not self.params.reset):
            yield ("params",), "give status (answer it, e.g. 503) or reset: true (reset the connection), one of them"


class HttpDelayFault(HttpFault):
    """Hold the matching requests (or their responses) for a while (Chaos Mesh delay)."""

    kind: Literal["http.delay"] = Field(description="Fault kind.")
    params: HttpDelayParams = Field(description="Which requests, and the delay.")


class HttpReplaceFault(HttpFault):
    """Replace the method, path, headers or body of the matching requests, or the status, headers or
    body of their responses (Chaos Mesh replace)."""

    kind: Literal["http.replace"] = Field(description="Fault kind.")
    params: HttpReplaceParams = Field(description="Which requests, and what is replaced.")


class HttpPatchFault(HttpFault):
    """Add headers to the matching requests or their responses, or merge JSON into their bodies
    (Chaos Mesh patch)."""

    kind: Literal["http.patch"] = Field(description="Fault kind.")
    params: HttpPatchParams = Field(description="Which requests, and what is added.")
