"""Scenario files: YAML in, frozen pydantic models out, every problem located.

This is the only module that sees raw scenario data. ``load_scenario`` reads a file with a
safe loader that remembers where each key was written, validates it against the models
below (``extra="forbid"`` everywhere), runs the checks that span several keys (stages that
overlap, faults outside the run, SLO windows naming unknown faults, user classes missing
from the locustfile) and raises one :class:`~harness.errors.ScenarioError` carrying every
problem as ``file:line:col: key.path: message``.
"""

from __future__ import annotations

import ast
import difflib
import ipaddress
import math
import posixpath
import re
import signal
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    WithJsonSchema,
)

from harness.errors import Problem, ScenarioError
from harness.expressions import (
    Condition,
    Objective,
    WindowKind,
    WindowRef,
    parse_condition,
    parse_duration,
    parse_objective,
    parse_percent,
    parse_window,
)

__all__ = [
    "MAX_SCENARIO_BYTES",
    "Baseline",
    "DeploymentTarget",
    "ErrorBudget",
    "Fault",
    "Guard",
    "HostPort",
    "KubernetesPodKillFault",
    "KubernetesScaleFault",
    "Load",
    "NetemParams",
    "NetworkLinkDownFault",
    "NetworkNetemFault",
    "NodeSelector",
    "PodKillParams",
    "PodTarget",
    "ProcessKillFault",
    "ProcessPauseFault",
    "ProcessTarget",
    "ProxyAbortFault",
    "ProxyBandwidthFault",
    "ProxyLatencyFault",
    "ProxyResetFault",
    "ProxyTarget",
    "RateStage",
    "RecoveryRule",
    "Results",
    "Safety",
    "Scenario",
    "Slo",
    "StressCpuFault",
    "StressDiskFillFault",
    "StressIoFault",
    "StressMemoryFault",
    "Target",
    "UserClass",
    "UsersStage",
    "load_scenario",
    "scenario_json_schema",
    "steady_thresholds",
]

MAX_SCENARIO_BYTES = 1_000_000

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}]}),
]
Percent = Annotated[
    float,
    BeforeValidator(parse_percent),
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0, "maximum": 1}, {"type": "string"}]}),
]
AsText = WithJsonSchema({"type": "string"})  # parsed from a short string; editors should expect one
Name = Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _label_key(value: str) -> str:
    """Kubernetes label syntax, which Ray's labels follow: [dns-prefix/]name."""
    if len(value) > 317 or not re.fullmatch(_LABEL_KEY, value):
        raise ValueError(
            f"'{value}' is not a label key: an optional lower-case DNS prefix and '/', then up to 63 letters, "
            "digits, '-', '_' or '.', starting and ending with a letter or digit (e.g. harness.io/host)"
        )
    return value


def _label_value(value: Any) -> Any:
    if isinstance(value, bool):
        value = str(value).lower()
    elif isinstance(value, int | float):
        value = str(value)
    if isinstance(value, str) and not re.fullmatch(_LABEL_VALUE, value):
        raise ValueError(
            f"'{value}' is not a label value: up to 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return value


LabelKey = Annotated[str, AfterValidator(_label_key)]
LabelValue = Annotated[str, BeforeValidator(_label_value)]


class NodeSelector(_Model):
    """Which Ray nodes: those started with these labels, or those declaring a custom resource.

    Labels are what ``ray start --labels`` and KubeRay's ``rayStartParams`` set (the files in
    ``ray_cluster/`` give every node ``harness.io/host`` and ``harness.io/role``); a custom
    resource (``ray start --resources``) works on clusters that predate labels.
    """

    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict,
        max_length=32,
        description="Node labels that must all match, e.g. {harness.io/host: db-1}.",
    )
    resource: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:/-]+$")] | None = Field(
        default=None, description="A custom resource the node declares (ray start --resources), e.g. db-1."
    )

    def describe(self) -> str:
        if self.resource is not None:
            return f"resource {self.resource}"
        return "labels " + ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))


class Target(_Model):
    """The system under test and the hosts load may be sent to."""

    base_url: str = Field(description="Base URL the Locust users send requests to, e.g. http://127.0.0.1:8700.")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts load may go to; the base URL's host must be one of them. Empty means only that host.",
    )

    def host(self) -> str:
        return urlsplit(self.base_url).hostname or ""


class UserClass(_Model):
    """A Locust User class from the locustfile and its share of the users."""

    class_name: str = Field(alias="class", description="Name of a User class defined in the locustfile.")
    weight: int = Field(default=1, ge=1, le=10_000, description="Relative share of users of this class.")


class UsersStage(_Model):
    """Closed model: hold ``users`` concurrent users, ramping at ``spawn_rate`` users/s."""

    name: Name | None = Field(default=None, description="Phase name, usable in SLO windows as phase:NAME.")
    at: Duration | None = Field(
        default=None, description="Offset from the run start; defaults to the end of the previous stage."
    )
    duration: Duration = Field(description="How long the stage lasts (e.g. 30s, 1m).")
    users: int = Field(ge=0, le=1_000_000, description="Concurrent users to reach and hold.")
    spawn_rate: float = Field(default=10.0, gt=0, le=100_000, description="Users started or stopped per second.")


class RateStage(_Model):
    """Open model: start ``arrival_rate`` task iterations per second, whatever the latency."""

    name: Name | None = Field(default=None, description="Phase name, usable in SLO windows as phase:NAME.")
    at: Duration | None = Field(
        default=None, description="Offset from the run start; defaults to the end of the previous stage."
    )
    duration: Duration = Field(description="How long the stage lasts.")
    arrival_rate: float = Field(ge=0, le=10_000_000, description="Task iterations started per second, all generators.")
    max_users: int = Field(
        default=1000, ge=1, le=1_000_000, description="Upper bound of concurrent users serving the arrivals."
    )


def _stage_tag(value: Any) -> str:
    if isinstance(value, dict) and "arrival_rate" in value:
        return "rate_stage"
    return "users_stage"


Stage = Annotated[
    Annotated[UsersStage, Tag("users_stage")] | Annotated[RateStage, Tag("rate_stage")],
    Discriminator(_stage_tag),
]


class Load(_Model):
    """How load is generated: which locustfile, which users, which stages."""

    locustfile: str = Field(description="Path to the locustfile, relative to the scenario file.")
    user_classes: list[UserClass] = Field(min_length=1, description="User classes to run, with weights.")
    stages: list[Stage] = Field(min_length=1, description="Load stages in order; all closed or all open model.")
    generators: int = Field(default=1, ge=1, le=1000, description="LoadGenerator actors (one per load node).")
    processes: int | Literal["auto"] = Field(
        default="auto", description="Locust subprocesses per generator; auto means one per core."
    )
    node: NodeSelector | None = Field(
        default=None,
        description="Ray nodes generators may run on (e.g. {labels: {harness.io/role: generator}}); "
        "default any node with a CPU.",
    )


def _regex(value: str) -> str:
    """A pattern that compiles; checked here so a typo is not a fault that fails mid-run."""
    try:
        re.compile(value)
    except (re.error, RecursionError, OverflowError) as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


class ProcessTarget(_Model):
    """Which process a process fault acts on: exactly one of pid_file, pattern or systemd_unit."""

    pid_file: str | None = Field(default=None, description="File holding the target's PID.")
    pattern: Annotated[str, AfterValidator(_regex)] | None = Field(
        default=None, description="Regular expression matched against each process's full command line."
    )
    systemd_unit: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9:_.@\\-]+$",
        description="A systemd unit (e.g. nginx.service): every process in its control group.",
    )


def _signal_number(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a signal name such as SIGKILL or a number")
    if isinstance(value, int):
        if value not in {s.value for s in signal.Signals}:
            raise ValueError(f"{value} is not a signal number on this platform")
        return value
    if isinstance(value, str):
        name = value.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        try:
            return int(signal.Signals[name])
        except KeyError:
            raise ValueError(f"unknown signal '{value}'") from None
    raise ValueError("expected a signal name such as SIGKILL or a number")


class KillParams(_Model):
    signal: Annotated[int, BeforeValidator(_signal_number), WithJsonSchema({"type": ["integer", "string"]})] = Field(
        default=int(signal.SIGKILL), description="Signal to send, by name (SIGKILL, TERM) or number."
    )
    restart: list[Annotated[str, Field(min_length=1)]] | None = Field(
        default=None,
        min_length=1,
        description=(
            "Command (argv list, no shell) that starts the target again at the end of the fault window; "
            "default: none, or `systemctl start UNIT` for a systemd_unit target."
        ),
    )
    restart_cwd: str | None = Field(default=None, description="Working directory of the restart command.")


class PauseParams(_Model):
    pass


class _FaultBase(_Model):
    name: Name = Field(description="Fault name, unique in the scenario; SLO windows refer to it.")
    at: Duration = Field(description="Offset from the run start at which the fault is injected.")
    duration: Duration = Field(description="How long the fault window lasts; reverted at at + duration.")
    recovery: Duration = Field(
        default=0.0, description="Seconds after the fault window that are excluded from the steady window."
    )
    description: str = Field(default="", description="Free text shown in plans and Grafana annotations.")
    node: NodeSelector | None = Field(
        default=None,
        description="The Ray node whose chaos agent applies the fault, i.e. the host it acts on "
        "(e.g. {labels: {harness.io/host: db-1}}); must match exactly one node. Default: the driver's node.",
    )


class ProcessKillFault(_FaultBase):
    """Send a signal (SIGKILL by default) to the target process(es) at ``at``."""

    kind: Literal["process.kill"] = Field(description="Fault kind.")
    target: ProcessTarget = Field(description="Which process(es) the fault acts on.")
    params: KillParams = Field(default_factory=KillParams, description="Kill parameters.")


class ProcessPauseFault(_FaultBase):
    """SIGSTOP the target at ``at``, SIGCONT it at ``at + duration``."""

    kind: Literal["process.pause"] = Field(description="Fault kind.")
    target: ProcessTarget = Field(description="Which process(es) the fault acts on.")
    params: PauseParams = Field(default_factory=PauseParams, description="No parameters.")


# ---------------------------------------------------------------- Kubernetes faults

# Kubernetes object names: a namespace is a DNS-1123 label, a deployment a DNS-1123 subdomain.
KubeNamespace = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]
KubeObjectName = Annotated[
    str,
    Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"),
]

_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = rf"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?{_LABEL_NAME}"
_LABEL_VALUE = rf"({_LABEL_NAME})?"
_EXISTS = re.compile(rf"^!?\s*{_LABEL_KEY}$")
_EQUALITY = re.compile(rf"^{_LABEL_KEY}\s*(==|=|!=)\s*{_LABEL_VALUE}$")
_SET = re.compile(rf"^{_LABEL_KEY}\s+(in|notin)\s*\((?P<values>[^()]*)\)$")
_VALUE = re.compile(rf"^{_LABEL_VALUE}$")


def split_label_selector(selector: str) -> list[str]:
    """The requirements of a label selector: split on commas outside parentheses, stripped."""
    parts: list[str] = []
    depth, start = 0, 0
    for i, char in enumerate(selector):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(selector[start:i].strip())
            start = i + 1
    parts.append(selector[start:].strip())
    return parts


def _label_selector(value: str) -> str:
    """Check a label selector in the syntax the API server takes; the string is passed on as written.

    Supported requirements, comma-separated (all must hold): ``key=value`` (or ``==``),
    ``key!=value``, ``key in (a,b)``, ``key notin (a,b)``, ``key`` (exists), ``!key``.
    Checked here so a typo is a located scenario error, not a 400 from the cluster mid-run.
    An empty selector (every pod in the namespace) is refused on purpose.
    """
    if not value.strip():
        raise ValueError("an empty selector would match every pod in the namespace; name at least one label")
    if value.count("(") != value.count(")"):
        raise ValueError(f"unbalanced parentheses in selector '{value}'")
    for requirement in split_label_selector(value):
        if not requirement:
            raise ValueError(f"empty requirement in selector '{value}' (two commas, or a trailing comma)")
        if _EXISTS.match(requirement) or _EQUALITY.match(requirement):
            continue
        match = _SET.match(requirement)
        if match is None:
            raise ValueError(
                f"'{requirement}' is not a label requirement; use key=value, key!=value, "
                "key in (a,b), key notin (a,b), key or !key"
            )
        values = [v.strip() for v in match["values"].split(",")]
        if not values or not all(v and _VALUE.match(v) for v in values):
            raise ValueError(f"'{requirement}': the set needs one or more valid label values")
    return value


class PodTarget(_Model):
    """The pods a ``kubernetes.pod_kill`` chooses from: a label selector in one namespace."""

    namespace: KubeNamespace = Field(
        description="Namespace of the pods; it must carry the opt-in label harness.io/chaos=enabled."
    )
    selector: Annotated[str, AfterValidator(_label_selector)] = Field(
        description="Label selector as the API takes it, e.g. 'app=payments,tier in (web,api)'; not empty."
    )


class DeploymentTarget(_Model):
    """The deployment a ``kubernetes.scale`` fault scales to zero and back."""

    namespace: KubeNamespace = Field(
        description="Namespace of the deployment; it must carry the opt-in label harness.io/chaos=enabled."
    )
    deployment: KubeObjectName = Field(description="Name of the Deployment.")


class PodKillParams(_Model):
    """How many of the matching pods are deleted (with gracePeriodSeconds=0)."""

    mode: Literal["one", "all", "fixed", "percent"] = Field(
        default="one",
        description="one pod, all pods, a fixed count (params.count) or a percent of them (params.percent).",
    )
    count: int | None = Field(
        default=None, ge=1, le=100_000, description="Pods to delete with mode fixed (all of them if fewer match)."
    )
    percent: float | None = Field(
        default=None,
        gt=0,
        le=100,
        description="Share of matching pods to delete with mode percent, rounded up: 50% of 3 pods is 2.",
    )
    seed: str | None = Field(
        default=None,
        max_length=200,
        description="Seed of the pod choice (the same seed and pods give the same choice); default: the fault name.",
    )


class ScaleParams(_Model):
    pass


class KubernetesPodKillFault(_FaultBase):
    """Delete the selected pods with gracePeriodSeconds=0 at ``at``; their controller recreates them."""

    kind: Literal["kubernetes.pod_kill"] = Field(description="Fault kind.")
    target: PodTarget = Field(description="Namespace and label selector of the pods.")
    params: PodKillParams = Field(default_factory=PodKillParams, description="Which of the matching pods.")


class KubernetesScaleFault(_FaultBase):
    """Scale a deployment to 0 replicas at ``at``, back to the recorded count at ``at + duration``."""

    kind: Literal["kubernetes.scale"] = Field(description="Fault kind.")
    target: DeploymentTarget = Field(description="Namespace and name of the deployment.")
    params: ScaleParams = Field(default_factory=ScaleParams, description="No parameters.")


# ---------------------------------------------------------------- stress faults (stress-ng)

_BYTE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1024**2, "mb": 1000**2, "mib": 1024**2}
_BYTE_UNITS |= {"g": 1024**3, "gb": 1000**3, "gib": 1024**3, "t": 1024**4, "tb": 1000**4, "tib": 1024**4}
_BYTES = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def _parse_bytes(value: Any) -> int:
    """``256M``/``256MiB`` (binary), ``256MB`` (decimal) or a plain integer of bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 256M or a number of bytes")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = _BYTES.match(value)
        if match and match[2].lower() in _BYTE_UNITS:
            size = float(match[1]) * _BYTE_UNITS[match[2].lower()]
            if not size < 2**63:  # inf too: int() of it would raise OverflowError
                raise ValueError(f"'{value}' is larger than any file system or memory")
            return int(size)
    raise ValueError(f"'{value}' is not a size; use e.g. 256M, 1GiB, 500MB or a number of bytes")


Bytes = Annotated[int, BeforeValidator(_parse_bytes), WithJsonSchema({"type": ["integer", "string"]})]


class StressCpuParams(_Model):
    workers: int = Field(default=1, ge=1, le=1024, description="stress-ng CPU workers (each loads at most one core).")
    load: int = Field(default=100, ge=1, le=100, description="Percent of one core each worker keeps busy.")


class StressMemoryParams(_Model):
    bytes: Bytes = Field(gt=0, description="Memory to allocate and touch, e.g. 512M (resident, not just mapped).")
    hold: bool = Field(
        default=True,
        description="true: allocate once and hold it idle; false: keep rewriting it (costs a core too).",
    )


class StressIoParams(_Model):
    workers: int = Field(default=1, ge=1, le=256, description="stress-ng hdd workers writing and reading files.")
    path: str = Field(default="/tmp", description="Directory the workers write in (a private subdirectory).")


class StressDiskFillParams(_Model):
    path: str = Field(description="Directory on the file system to fill; a file harness-fill-<run>-<fault> is made.")
    bytes: Bytes = Field(gt=0, description="Size of the file (allocated blocks), e.g. 2G.")


class _StressFault(_FaultBase):
    target: ProcessTarget | None = Field(
        default=None,
        description="Process whose cgroups the stress-ng processes join; none: they stay in the agent's cgroups.",
    )


class StressCpuFault(_StressFault):
    """CPU load with stress-ng at ``load`` percent per worker for ``duration``."""

    kind: Literal["stress.cpu"] = Field(description="Fault kind.")
    params: StressCpuParams = Field(default_factory=StressCpuParams, description="Workers and load.")


class StressMemoryFault(_StressFault):
    """Allocate and hold ``bytes`` of memory with stress-ng for ``duration``."""

    kind: Literal["stress.memory"] = Field(description="Fault kind.")
    params: StressMemoryParams = Field(description="Bytes and hold.")


class StressIoFault(_StressFault):
    """File IO with stress-ng hdd workers for ``duration``."""

    kind: Literal["stress.io"] = Field(description="Fault kind.")
    params: StressIoParams = Field(default_factory=StressIoParams, description="Workers and directory.")


class StressDiskFillFault(_StressFault):
    """Fill a file system with one allocated file of ``bytes``; removed on revert."""

    kind: Literal["stress.disk_fill"] = Field(description="Fault kind.")
    params: StressDiskFillParams = Field(description="Directory and size.")


# ---------------------------------------------------------------- network faults

#: A network namespace name as ``ip netns`` makes them (a file under /run/netns).
NetnsName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
#: A Linux interface name (IFNAMSIZ is 16 with the terminating NUL).
IfName = Annotated[str, Field(min_length=1, max_length=15, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")]


def _cidr(value: str) -> str:
    """A peer network in CIDR notation (a bare address is a /32 or /128), normalised."""
    import ipaddress

    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise ValueError(f"'{value}' is not an IPv4/IPv6 address or CIDR such as 10.0.0.0/24") from None


Cidr = Annotated[str, AfterValidator(_cidr)]
Port = Annotated[int, Field(ge=1, le=65535)]

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)?\s*$", re.IGNORECASE)
_RATE_UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9}


def _rate_bits(value: Any) -> int:
    """Bits per second from ``1mbit``, ``500kbit``, ``2mbps`` (bytes/s, as tc spells it) or a number of bit/s."""
    if isinstance(value, bool):
        raise ValueError("expected a rate such as 1mbit")
    if isinstance(value, int | float):
        bits = float(value) if abs(value) < 1e300 else math.inf  # a huge int does not fit a float
    else:
        match = _RATE.match(str(value))
        if match is None:
            raise ValueError(f"'{value}' is not a rate; use e.g. 1mbit, 500kbit, 10mbps (bytes/s) or bits/s")
        bits = float(match[1]) * _RATE_UNITS[(match[2] or "bit").lower()]
    if not 8_000 <= bits <= 32e9:  # NaN too
        raise ValueError("rate must be between 8kbit and 32gbit")
    return int(bits)


class NetworkTarget(_Model):
    """Where a network fault acts: a network namespace (default: the host's) and an interface."""

    netns: NetnsName | None = Field(default=None, description="Network namespace name (ip netns); default the host.")
    interface: IfName | None = Field(
        default=None, description="Interface; required by network.bandwidth, narrows partition and loss."
    )


class InterfaceTarget(_Model):
    """A network namespace (default: the host's) and an interface in it, which must be named."""

    netns: NetnsName | None = Field(default=None, description="Network namespace name (ip netns); default the host.")
    interface: IfName = Field(description="Interface whose egress the fault shapes.")


class PartitionParams(_Model):
    """Traffic between the target and these peers is dropped, both directions."""

    peers: list[Cidr] = Field(min_length=1, max_length=256, description="Peer networks (CIDR) cut off from the target.")
    ports: list[Port] = Field(
        default_factory=list,
        max_length=64,
        description="Only TCP/UDP traffic to these peer ports (and its replies) is dropped; default all traffic.",
    )
    method: Literal["nftables", "blackhole"] = Field(
        default="nftables",
        description="nftables drop (both directions, ports allowed) or blackhole routes to the peers (no ports).",
    )


class LossParams(_Model):
    """A random share of the packets between the target and the peers is dropped (nftables numgen)."""

    percent: int = Field(ge=1, le=100, description="Percent of packets dropped, per direction it applies to.")
    peers: list[Cidr] = Field(min_length=1, max_length=256, description="Peer networks (CIDR) whose traffic is hit.")
    ports: list[Port] = Field(
        default_factory=list,
        max_length=64,
        description="Only TCP/UDP traffic to these peer ports (and its replies); nftables only; default all traffic.",
    )
    direction: Literal["egress", "ingress", "both"] = Field(
        default="egress",
        description="Packets leaving the target, arriving at it, or both (a round trip then loses 1-(1-p)^2).",
    )
    method: Literal["auto", "netem", "nftables"] = Field(
        default="auto",
        description=(
            "netem (needs the interface and a kernel with sch_netem), nftables numgen drop, "
            "or auto: netem where the kernel has it and an interface is named, else nftables."
        ),
    )


class BandwidthParams(_Model):
    """A tbf qdisc at the root of the target interface's egress."""

    rate: Annotated[int, BeforeValidator(_rate_bits), WithJsonSchema({"type": ["integer", "string"]})] = Field(
        description="Rate: 1mbit, 500kbit (bits/s), 2mbps (bytes/s, as tc spells it) or a number of bits/s."
    )
    burst: int | None = Field(
        default=None, ge=1600, le=64 * 1024 * 1024, description="Bucket size in bytes; default 10 ms of rate, >= 5000."
    )
    latency: Duration = Field(default=0.05, description="Longest a packet may wait in the queue before tbf drops it.")


class NetemParams(_Model):
    """A netem qdisc on the target interface: delay with jitter and correlation, loss, duplicate, corrupt, reorder.

    Percentages are of packets, per direction the qdisc is on. At least one effect must be set.
    """

    delay: Duration = Field(default=0.0, description="Added one-way delay per packet, e.g. 100ms.")
    jitter: Duration = Field(default=0.0, description="Random variation of the delay (+/-), e.g. 10ms.")
    correlation: float = Field(
        default=0.0, ge=0, le=100, description="Percent by which each random value depends on the previous one."
    )
    distribution: Literal["uniform"] = Field(
        default="uniform",
        description="Jitter distribution; only uniform (tc's normal/pareto tables cannot be sent through pyroute2).",
    )
    loss: float = Field(default=0.0, ge=0, le=100, description="Percent of packets dropped.")
    duplicate: float = Field(default=0.0, ge=0, le=100, description="Percent of packets sent twice.")
    corrupt: float = Field(default=0.0, ge=0, le=100, description="Percent of packets with one bit flipped.")
    reorder: float = Field(
        default=0.0, ge=0, le=100, description="Percent of packets sent at once, ahead of delayed ones (needs delay)."
    )
    limit: int = Field(default=10_000, ge=1, le=10_000_000, description="Packets the netem queue holds.")
    direction: Literal["egress", "ingress", "both"] = Field(
        default="egress", description="Egress of the interface, its ingress (through an ifb device), or both."
    )
    peers: list[Cidr] = Field(
        default_factory=list,
        max_length=64,
        description="Only packets to (egress) or from (ingress) these networks; default every packet.",
    )


class LinkParams(_Model):
    pass


class NetworkNetemFault(_FaultBase):
    """Shape an interface's traffic with a netem qdisc (pyroute2 netlink); needs a kernel with sch_netem."""

    kind: Literal["network.netem"] = Field(description="Fault kind.")
    target: InterfaceTarget = Field(description="Namespace and the interface whose traffic is shaped.")
    params: NetemParams = Field(description="Delay, jitter, loss, duplicate, corrupt, reorder; direction; peers.")


class NetworkLinkDownFault(_FaultBase):
    """Set an interface down for the fault window, up again on revert."""

    kind: Literal["network.link_down"] = Field(description="Fault kind.")
    target: InterfaceTarget = Field(description="Namespace and the interface set down.")
    params: LinkParams = Field(default_factory=LinkParams, description="No parameters.")


class NetworkPartitionFault(_FaultBase):
    """Drop all traffic (or given ports) between the target and the peers, both directions (nftables)."""

    kind: Literal["network.partition"] = Field(description="Fault kind.")
    target: NetworkTarget = Field(default_factory=NetworkTarget, description="Namespace and interface.")
    params: PartitionParams = Field(description="Peers and optional ports.")


class NetworkLossFault(_FaultBase):
    """Drop a random percent of packets to/from the peers (nftables numgen; the fallback where netem is missing)."""

    kind: Literal["network.loss"] = Field(description="Fault kind.")
    target: NetworkTarget = Field(default_factory=NetworkTarget, description="Namespace and interface.")
    params: LossParams = Field(description="Percent, peers, direction.")


class NetworkBandwidthFault(_FaultBase):
    """Limit the egress rate of an interface with a tbf qdisc (pyroute2 netlink)."""

    kind: Literal["network.bandwidth"] = Field(description="Fault kind.")
    target: InterfaceTarget = Field(description="Namespace and the interface whose egress is limited.")
    params: BandwidthParams = Field(description="Rate, burst and latency.")


# ---------------------------------------------------------------- proxy faults (harness.chaos.proxy)


def _host_port(value: Any) -> str:
    """``host:port`` (IPv6 as ``[::1]:port``), checked and normalised."""
    import ipaddress

    text = str(value).strip()
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or len(port) > 5 or not 1 <= int(port) <= 65535:
        raise ValueError(f"'{value}' is not host:port, e.g. 127.0.0.1:8700")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"'{value}': the host must be an IP address, e.g. 127.0.0.1:8700") from None
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


HostPort = Annotated[str, BeforeValidator(_host_port), AsText]


class ProxyTarget(_Model):
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


class ProxyLatencyParams(_Model):
    latency: Duration = Field(description="Delay added to each response, e.g. 50ms.")
    jitter: Duration = Field(default=0.0, description="Uniform random variation (+/-) of the delay.")


class ProxyBandwidthParams(_Model):
    rate: Annotated[int, BeforeValidator(_rate_bits), WithJsonSchema({"type": ["integer", "string"]})] = Field(
        description="Rate per connection and direction: 1mbit, 500kbit, 2mbps (bytes/s) or bits/s."
    )


class ProxyResetParams(_Model):
    percent: float = Field(default=100.0, gt=0, le=100, description="Percent of requests answered by a TCP reset.")


class ProxyAbortParams(_Model):
    status: int = Field(ge=100, le=599, description="HTTP status returned instead of forwarding, e.g. 503.")
    percent: float = Field(gt=0, le=100, description="Percent of requests aborted.")


class _ProxyFault(_FaultBase):
    target: ProxyTarget = Field(description="The proxy: its control address, or the service to intercept.")


class ProxyLatencyFault(_ProxyFault):
    """Delay every response through the proxy."""

    kind: Literal["proxy.latency"] = Field(description="Fault kind.")
    params: ProxyLatencyParams = Field(description="Latency and jitter.")


class ProxyBandwidthFault(_ProxyFault):
    """Limit the bytes per second each proxied connection carries, each way."""

    kind: Literal["proxy.bandwidth"] = Field(description="Fault kind.")
    params: ProxyBandwidthParams = Field(description="Rate.")


class ProxyResetFault(_ProxyFault):
    """Close a share of connections with a TCP reset when a request arrives."""

    kind: Literal["proxy.reset"] = Field(description="Fault kind.")
    params: ProxyResetParams = Field(default_factory=ProxyResetParams, description="Percent of requests.")


class ProxyAbortFault(_ProxyFault):
    """Answer a share of HTTP requests with a chosen status instead of forwarding them."""

    kind: Literal["proxy.abort"] = Field(description="Fault kind.")
    params: ProxyAbortParams = Field(description="Status and percent.")


FAULT_KINDS: dict[str, type[_FaultBase]] = {
    "network.partition": NetworkPartitionFault,
    "network.loss": NetworkLossFault,
    "network.bandwidth": NetworkBandwidthFault,
    "network.netem": NetworkNetemFault,
    "network.link_down": NetworkLinkDownFault,
    "proxy.latency": ProxyLatencyFault,
    "proxy.bandwidth": ProxyBandwidthFault,
    "proxy.reset": ProxyResetFault,
    "proxy.abort": ProxyAbortFault,
    "process.kill": ProcessKillFault,
    "process.pause": ProcessPauseFault,
    "kubernetes.pod_kill": KubernetesPodKillFault,
    "kubernetes.scale": KubernetesScaleFault,
    "stress.cpu": StressCpuFault,
    "stress.memory": StressMemoryFault,
    "stress.io": StressIoFault,
    "stress.disk_fill": StressDiskFillFault,
}
Fault = Annotated[
    Annotated[NetworkPartitionFault, Tag("network.partition")]
    | Annotated[NetworkLossFault, Tag("network.loss")]
    | Annotated[NetworkBandwidthFault, Tag("network.bandwidth")]
    | Annotated[NetworkNetemFault, Tag("network.netem")]
    | Annotated[NetworkLinkDownFault, Tag("network.link_down")]
    | Annotated[ProxyLatencyFault, Tag("proxy.latency")]
    | Annotated[ProxyBandwidthFault, Tag("proxy.bandwidth")]
    | Annotated[ProxyResetFault, Tag("proxy.reset")]
    | Annotated[ProxyAbortFault, Tag("proxy.abort")]
    | Annotated[ProcessKillFault, Tag("process.kill")]
    | Annotated[ProcessPauseFault, Tag("process.pause")]
    | Annotated[KubernetesPodKillFault, Tag("kubernetes.pod_kill")]
    | Annotated[KubernetesScaleFault, Tag("kubernetes.scale")]
    | Annotated[StressCpuFault, Tag("stress.cpu")]
    | Annotated[StressMemoryFault, Tag("stress.memory")]
    | Annotated[StressIoFault, Tag("stress.io")]
    | Annotated[StressDiskFillFault, Tag("stress.disk_fill")],
    Field(discriminator="kind"),
]


def _absolute_dir(value: str) -> str:
    """An absolute directory, normalised lexically (``/tmp/`` and ``/tmp/x/..`` are ``/tmp``)."""
    if not value.startswith("/"):
        raise ValueError(f"'{value}' is not an absolute path such as /tmp or /srv/scratch")
    return posixpath.normpath(value).replace("//", "/", 1)  # normpath keeps a leading '//' (POSIX)


AbsoluteDir = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_absolute_dir)]

#: Where stress.io and stress.disk_fill may write when the scenario lists no safety.allowed_paths.
DEFAULT_ALLOWED_PATHS = ("/tmp", "/var/tmp")


class Safety(_Model):
    """What faults may act on, beyond the target hosts. The kubeconfig itself comes from $KUBECONFIG.

    The load hosts (the base URL's host and ``target.allowed_hosts``, when written as IP
    addresses, or ``localhost``) count as allowed networks of one address each, so a fault that
    cuts or slows a service the load goes to needs none of these keys. What each list guards
    is in docs/security.md.
    """

    allowed_contexts: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        default_factory=list,
        description="Kube contexts (names in the kubeconfig) Kubernetes faults may act in; required for them.",
    )
    allowed_networks: list[Cidr] = Field(
        default_factory=list,
        max_length=256,
        description=(
            "Networks (CIDR) faults may act on besides the load hosts: every peer of network.partition and "
            "network.loss, a transparent proxy's service and a proxy's control address must lie inside one."
        ),
    )
    allowed_interfaces: list[IfName] = Field(
        default_factory=list,
        max_length=64,
        description=(
            "Interfaces of the host's own network namespace that network faults may name (lo too: Ray and "
            "harness talk over it); an interface inside a named target.netns needs no listing."
        ),
    )
    allowed_paths: list[AbsoluteDir] = Field(
        default=list(DEFAULT_ALLOWED_PATHS),  # a default, not a factory: the schema shows it
        max_length=64,
        description=(
            "Directories (absolute) under which stress.io and stress.disk_fill may write; "
            "default /tmp and /var/tmp. Giving the key replaces the default."
        ),
    )


_ERROR_KIND = re.compile(r"^(?:[1-5]xx|[1-5][0-9][0-9]|http_[1-5][0-9][0-9]|[A-Za-z_][A-Za-z0-9_.]*)$")


def _error_kind(value: str) -> str:
    if not _ERROR_KIND.match(value):
        raise ValueError(
            f"'{value}' is not an error kind; use a status (503), a status class (5xx), "
            "a recorded kind (http_503) or an exception name (ConnectionError)"
        )
    return value


ErrorKind = Annotated[
    str,
    BeforeValidator(lambda v: str(v) if isinstance(v, int) and not isinstance(v, bool) else v),
    AfterValidator(_error_kind),
]


def _latency_ms(value: Any) -> float:
    return parse_objective(f"p99 < {value}" if not isinstance(value, str) else f"p99 < {value.strip()}").value


class RecoveryRule(_Model):
    """When a second counts as recovered, for a recovery_time SLO (client side, per second)."""

    p99: Annotated[float, BeforeValidator(_latency_ms), AsText] | None = Field(
        default=None,
        description="A second is good when its p99 is at or under this (e.g. 500ms). "
        "Default: the threshold of the scenario's steady p99 SLO.",
    )
    error_rate: Percent | None = Field(
        default=None,
        description="...and its error rate at or under this (e.g. 1%). "
        "Default: the threshold of the scenario's steady error_rate SLO.",
    )
    stable_for: Annotated[int, BeforeValidator(lambda v: math.ceil(parse_duration(v)))] = Field(
        default=3,
        ge=1,
        le=600,
        description="Recovered once this many consecutive seconds are good (e.g. 5s); the recovery time "
        "runs from the fault's end to the start of the first such streak.",
    )


class ErrorBudget(_Model):
    """The availability objective an error budget comes from, for burn_rate and budget_burn SLOs."""

    availability: Percent = Field(
        description="Share of requests that must succeed over the period, e.g. 99.9%; the budget is the rest."
    )
    period: Annotated[float, BeforeValidator(lambda v: parse_duration(v, limit=366 * 86400.0))] = Field(
        default=30 * 86400.0,
        gt=0,
        description="The budget period, e.g. 30d or 7d; budget_burn is the share of its budget the window used.",
    )


class Slo(_Model):
    """An objective judged over a window of the run, for one endpoint or all."""

    name: Name = Field(description="SLO name, shown in the verdict and JUnit output.")
    objective: Annotated[Objective, BeforeValidator(parse_objective), AsText] = Field(
        description="e.g. 'p99 < 250ms', 'error_rate < 1%', 'max < 2s', 'rps >= 100'."
    )
    window: Annotated[WindowRef, BeforeValidator(parse_window), AsText] = Field(
        default=WindowRef(WindowKind.RUN),
        json_schema_extra={"default": "run"},
        description="run, steady, phase:NAME, during:FAULT, after:FAULT[:30s] or last:30s.",
    )
    endpoint: str | None = Field(
        default=None, description="Limit to one endpoint: its name, or 'METHOD name'. All endpoints if omitted."
    )
    errors: list[ErrorKind] = Field(
        default_factory=list,
        max_length=64,
        description="error_rate only: count just these failures: a status (503), a class (5xx), a recorded "
        "kind (http_503) or an exception name (ConnectionError). All failures if omitted.",
    )
    recovery: RecoveryRule | None = Field(
        default=None, description="recovery_time only: what a recovered second is; defaults from the steady SLOs."
    )
    budget: ErrorBudget | None = Field(
        default=None, description="burn_rate and budget_burn only (required there): the availability objective."
    )


class Baseline(_Model):
    """How much worse than a baseline run (``--baseline``) this run may be, per phase and endpoint.

    A change fails only when it is both larger than its tolerance and statistically significant
    over the per-second samples (one-sided Mann-Whitney U at ``confidence``), so two runs of the
    same build do not fail each other on noise.
    """

    p99: Percent = Field(default=0.10, description="Relative rise allowed in median per-second p99, e.g. 10%.")
    error_rate: Percent = Field(
        default=0.01, description="Rise allowed in the error rate, in percentage points, e.g. 1% (0.5% -> 1.5%)."
    )
    rps: Percent = Field(default=0.10, description="Relative drop allowed in median requests per second, e.g. 10%.")
    confidence: Percent = Field(
        default=0.99, ge=0.5, lt=1, description="Confidence a change must reach to count, e.g. 99%."
    )
    min_seconds: int = Field(
        default=5, ge=3, le=3600, description="Phases with fewer seconds of samples on either side are not compared."
    )


class Guard(_Model):
    """An abort condition checked every second on the live aggregate."""

    name: Name = Field(description="Guard name, shown when it trips.")
    condition: Annotated[Condition, BeforeValidator(parse_condition), AsText] = Field(
        description="e.g. 'error_rate > 50% for 5s' or 'p99 > 5s for 10s'."
    )


def _env_name(value: str) -> str:
    if not value.replace("_", "").isalnum() or value[0].isdigit():
        raise ValueError("must be the name of an environment variable, e.g. INFLUX_TOKEN")
    return value


def _no_credentials(value: str) -> str:
    """A results URL without ``user:password@``: secrets come from the environment, never from a scenario."""
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ValueError("not a valid URL") from None
    if parts.username is not None or parts.password is not None:  # the message must not repeat them
        raise ValueError(
            "credentials must not be written in a scenario file: remove 'user:password@' from the URL and "
            "name the environment variable holding the token in results.token_env"
        )
    return value


class Results(_Model):
    """Where per-second results go. The token is read from the environment, never from this file."""

    url: Annotated[str, AfterValidator(_no_credentials)] = Field(
        default="http://127.0.0.1:8086", description="InfluxDB base URL (no credentials: see token_env)."
    )
    api: Literal["v1", "v2"] | None = Field(
        default=None, description="Write API: v1 (/write) or v2 (influxdb-client). Default: v2 when bucket is set."
    )
    database: str = Field(default="harness", min_length=1, description="InfluxDB 1.x database.")
    bucket: str | None = Field(default=None, description="InfluxDB 2.x/3.x bucket (v2 API).")
    org: str | None = Field(default=None, description="InfluxDB 2.x organisation (v2 API).")
    token_env: Annotated[str, AfterValidator(_env_name)] | None = Field(
        default=None, description="Name of the environment variable holding the token."
    )

    def write_api(self) -> Literal["v1", "v2"]:
        return self.api or ("v2" if self.bucket else "v1")


class Scenario(_Model):
    """A whole scenario: target, load, faults on a timeline, SLOs, guards and results."""

    name: Name = Field(description="Scenario name; tags every result point.")
    description: str = Field(default="", description="What the scenario checks, for humans.")
    target: Target = Field(description="System under test.")
    load: Load = Field(description="Load model.")
    faults: list[Fault] = Field(default_factory=list, description="Faults overlaid on the load timeline.")
    slos: list[Slo] = Field(default_factory=list, description="Objectives that decide the verdict.")
    guards: list[Guard] = Field(default_factory=list, description="Abort conditions evaluated every second.")
    baseline: Baseline = Field(
        default_factory=Baseline, description="Tolerances when the run is compared with a baseline run."
    )
    results: Results = Field(default_factory=Results, description="Results destination.")
    safety: Safety = Field(
        default_factory=Safety,
        description="Allow-lists for faults: kube contexts, networks, host interfaces, stress directories.",
    )

    # Filled in by load_scenario; excluded from the schema and from equality.
    source: str = Field(default="", exclude=True, description="Path of the file this came from.")

    @property
    def locustfile_path(self) -> Path:
        return (Path(self.source).parent / self.load.locustfile).resolve()

    @property
    def open_model(self) -> bool:
        return isinstance(self.load.stages[0], RateStage)


def scenario_json_schema() -> dict[str, Any]:
    """JSON Schema for editors (``harness schema``)."""
    schema = Scenario.model_json_schema(by_alias=True, mode="validation")
    schema.setdefault("properties", {}).pop("source", None)
    schema["title"] = "harness scenario"
    return schema


# ---------------------------------------------------------------- YAML with positions

Path_ = tuple[str | int, ...]


class _Positions:
    """Where each key path was written: (line, column), 1-based."""

    def __init__(self) -> None:
        self.at: dict[Path_, tuple[int, int]] = {}
        self.written: dict[tuple[int, int], Path_] = {}  # where each node starts -> its key path

    def locate(self, path: Path_) -> tuple[int, int]:
        while path not in self.at and path:
            path = path[:-1]
        return self.at.get(path, (1, 1))

    def path_at(self, line: int, column: int) -> Path_:
        """The key path of the node written at ``line:column``, or ``()``: locates a constructor's error."""
        return self.written.get((line, column), ())


#: Deepest nesting of mappings and lists a scenario may have (a real one needs about 6).
MAX_DEPTH = 50
#: Most nodes a document may expand to, aliases followed: a "billion laughs" alias bomb is
#: a few lines of YAML that expand to 10^9 nodes; a real scenario has a few hundred.
MAX_NODES = 20_000
#: Integers beyond 64 bits are no count, duration or port a scenario needs, and converting
#: them (to float, or from thousands of digits) raises where nobody expects it.
_INT_LIMIT = 2**63


class _TooComplex(Exception):
    """The document is nested too deeply, expands to too many nodes, or refers to itself."""

    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


class _Loader(yaml.SafeLoader):
    """The safe loader, bounded: nesting depth while composing, integer size while constructing."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        self._nodes += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooComplex(f"nested more than {MAX_DEPTH} levels deep", self.peek_event().start_mark)
            if self._nodes > MAX_NODES:  # stop parsing early: PyYAML reads about 20,000 values a second
                raise _TooComplex(f"more than {MAX_NODES} values in one document", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, AttributeError, OverflowError) as exc:
            # An explicit tag on a value it cannot describe (``!!int name``, ``!!timestamp x``)
            # makes PyYAML's constructors raise these instead of a located YAML error.
            tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value as {tag} ({type(exc).__name__})", node.start_mark
            ) from None

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        digits = str(node.value).lstrip("+-").replace("_", "")
        if len(digits) > 30:  # also keeps int() away from Python's 4300-digit conversion limit
            raise yaml.constructor.ConstructorError(None, None, "number too large", node.start_mark)
        value = int(super().construct_yaml_int(node))
        if abs(value) >= _INT_LIMIT:
            raise yaml.constructor.ConstructorError(None, None, "number too large (over 64 bits)", node.start_mark)
        return value


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


def _read_yaml(text: str, file: str) -> tuple[Any, _Positions, list[Problem]]:
    positions = _Positions()
    problems: list[Problem] = []
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # the reader refuses control characters here already
        node = loader.get_single_node()
        if node is None:
            return None, positions, [Problem(file, 1, 1, "", "file is empty; a scenario needs name, target and load")]
        _walk(node, (), positions, problems, file, _Budget())
        if problems:
            return None, positions, problems
        data = loader.construct_document(node)
    except _TooComplex as exc:
        line, col = (exc.mark.line + 1, exc.mark.column + 1) if exc.mark else (1, 1)
        return None, positions, [Problem(file, line, col, "", exc.message)]
    except yaml.reader.ReaderError as exc:
        line, col = _line_col(text, exc.position)
        char = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
        return None, positions, [Problem(file, line, col, "", f"character {char} is not allowed in YAML")]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = f"{exc.problem or 'invalid YAML'}"
        if "python/" in message or "could not determine a constructor" in message:
            message += " (only plain YAML is allowed: no language-specific tags)"
        where = positions.path_at(line, col) if isinstance(exc, yaml.constructor.ConstructorError) else ()
        return None, positions, [Problem(file, line, col, _dotted(where), message)]
    except yaml.YAMLError as exc:
        return None, positions, [Problem(file, 1, 1, "", f"invalid YAML: {exc}")]
    finally:
        if loader is not None:
            loader.dispose()
    return data, positions, problems


def _line_col(text: str, offset: int) -> tuple[int, int]:
    return text.count("\n", 0, offset) + 1, offset - text.rfind("\n", 0, offset)


def _scalar_problem(value: str) -> str:
    """What no value may hold, whatever its key: it would fail far from here (a path, a terminal)."""
    if "\x00" in value:
        return "NUL character in a value"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid Unicode (a lone surrogate escape such as \\ud800)"
    return ""


class _Budget:
    """Nodes visited so far by :func:`_walk`, aliases followed (each visit counts)."""

    def __init__(self) -> None:
        self.nodes = 0


def _walk(
    node: yaml.Node,
    path: Path_,
    positions: _Positions,
    problems: list[Problem],
    file: str,
    budget: _Budget,
    stack: tuple[int, ...] = (),
) -> None:
    """Record where each key path was written, and refuse what must never reach validation.

    Aliases are followed, so a key path inside an aliased block is located too; that is also
    why the walk is bounded: an alias that contains itself is refused, and so is a document
    that expands to more than ``MAX_NODES`` nodes.
    """
    mark = node.start_mark
    budget.nodes += 1
    if budget.nodes > MAX_NODES:
        raise _TooComplex(f"the document expands to more than {MAX_NODES} values (an alias bomb?)", mark)
    if id(node) in stack:
        raise _TooComplex("an alias refers to a block that contains it (a recursive structure)", mark)
    if len(stack) >= MAX_DEPTH:  # aliases can nest blocks deeper than the text does
        raise _TooComplex(f"nested more than {MAX_DEPTH} levels deep (aliases included)", mark)
    positions.at.setdefault(path, (mark.line + 1, mark.column + 1))
    positions.written.setdefault((mark.line + 1, mark.column + 1), path)
    inner = (*stack, id(node))
    if isinstance(node, yaml.ScalarNode) and (problem := _scalar_problem(str(node.value))):
        problems.append(Problem(file, mark.line + 1, mark.column + 1, _dotted(path), problem))
    elif isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key_node)
            child = (*path, key)
            where = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in seen:
                problems.append(Problem(file, *where, _dotted(child), "duplicate key"))
            seen.add(key)
            positions.at[child] = where
            _walk(key_node, child, positions, problems, file, budget, inner)
            _walk(value_node, child, positions, problems, file, budget, inner)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), positions, problems, file, budget, inner)


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        text = str(part) if part != "" else "''"  # an empty key still has a place in the path
        out += f"[{part}]" if isinstance(part, int) else (f".{text}" if out else text)
    return out


# ---------------------------------------------------------------- validation errors

_TAGS = {"users_stage", "rate_stage", *FAULT_KINDS}
_SECRET_KEYS = {"token", "password", "secret", "api_key", "apikey"}


def _data_path(loc: tuple[Any, ...], data: Any) -> Path_:
    """Map a pydantic ``loc`` onto the document, dropping union tags and following aliases."""
    out: list[str | int] = []
    node = data
    for part in loc:
        written = isinstance(node, dict) and part in node  # a key of the document, whatever it looks like
        if isinstance(part, str) and not written and (part in _TAGS or part.startswith("function-") or "[" in part):
            continue  # a union tag or a validator's name, e.g. 'function-after[...]'

        out.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(out)


def _model_at(path: Path_, data: Any) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``path`` (best effort, for suggestions)."""
    model: Any = Scenario
    node = data
    for part in path:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(part) or next((f for f in model.model_fields.values() if f.alias == part), None)
        if field is None:
            return None
        node = node.get(part) if isinstance(node, dict) else None
        model = _unwrap(field.annotation, node)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _unwrap(annotation: Any, node: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0], node)
    if origin is list:
        item = node[0] if isinstance(node, list) and node else None
        return _unwrap(typing.get_args(annotation)[0], item)
    if origin in (typing.Union, __import__("types").UnionType):
        options = [_unwrap(a, node) for a in typing.get_args(annotation) if a is not type(None)]
        models = [m for m in options if isinstance(m, type) and issubclass(m, BaseModel)]
        if isinstance(node, dict):
            kind = node.get("kind")
            if isinstance(kind, str) and kind in FAULT_KINDS:  # a list is no kind (and no dict key)
                return FAULT_KINDS[kind]
            if "arrival_rate" in node and RateStage in models:
                return RateStage
            if UsersStage in models:
                return UsersStage
        return models[0] if models else None
    return annotation


def _message(error: Any, path: Path_, data: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(path[-1]) if path else ""
        if key.lower() in _SECRET_KEYS:
            return (
                f"'{key}' must not be written in a scenario file; put the secret in an environment "
                "variable and name the variable in results.token_env"
            )
        if key.lower() in ("kubeconfig", "kube_config", "kubeconfig_path"):
            return (
                f"'{key}' must not be written in a scenario file; harness reads the kubeconfig named by "
                "$KUBECONFIG (default ~/.kube/config) and acts only in safety.allowed_contexts"
            )
        model = _model_at(path[:-1], data)
        allowed = sorted(f.alias or n for n, f in model.model_fields.items() if n != "source") if model else []
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = (
            f"; did you mean '{close[0]}'?" if close else (f"; allowed keys: {', '.join(allowed)}" if allowed else "")
        )
        return f"unknown key '{key}'{hint}"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid" or (kind == "literal_error" and path and path[-1] == "kind"):
        return f"unknown fault kind; use one of {', '.join(sorted(FAULT_KINDS))}"
    message = str(error["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return message


def _validation_problems(exc: ValidationError, data: Any, positions: _Positions, file: str) -> list[Problem]:
    problems = []
    for error in exc.errors():
        path = _data_path(tuple(error["loc"]), data)
        if error["type"] == "union_tag_invalid":
            path = (*path, "kind")
        line, col = positions.locate(path)
        problems.append(Problem(file, line, col, _dotted(path), _message(error, path, data)))
    return problems


# ---------------------------------------------------------------- checks across keys


def _cross_checks(scenario: Scenario) -> Iterator[tuple[Path_, str]]:
    target = scenario.target
    try:
        parts = urlsplit(target.base_url)
        port_error = ""
        try:
            parts.port  # noqa: B018 -- urlsplit checks the port only when asked
        except ValueError as exc:
            port_error = str(exc)
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        yield ("target", "base_url"), f"'{target.base_url}' is not a valid URL: {exc}"
    else:
        if parts.scheme not in ("http", "https") or not parts.hostname:
            yield ("target", "base_url"), f"'{target.base_url}' is not an http(s) URL with a host"
        elif port_error:
            yield ("target", "base_url"), f"'{target.base_url}': {port_error}"
        elif target.allowed_hosts and parts.hostname not in target.allowed_hosts:
            yield ("target", "base_url"), f"host '{parts.hostname}' is not in target.allowed_hosts"

    stages = scenario.load.stages
    if len({type(s) for s in stages}) > 1:
        first_open = next(i for i, s in enumerate(stages) if type(s) is not type(stages[0]))
        yield ("load", "stages", first_open), "stages mix users and arrival_rate; use one load model per scenario"
    end = 0.0
    phase_names: set[str] = set()
    for i, stage in enumerate(stages):
        start = end if stage.at is None else stage.at
        if start < end - 1e-9:
            yield (
                ("load", "stages", i, "at"),
                f"stage starts at {start:g}s, before the previous stage ends at {end:g}s (stages overlap)",
            )
        if stage.duration <= 0:
            yield ("load", "stages", i, "duration"), "duration must be positive"
        phase = stage.name or f"stage-{i + 1}"  # as timeline.phase_name names it
        if phase in phase_names:
            where = ("load", "stages", i, "name") if stage.name else ("load", "stages", i)
            yield where, f"phase name '{phase}' is used twice (an unnamed stage N is called stage-N)"
        phase_names.add(phase)
        end = max(end, start) + stage.duration
    total = end

    if scenario.load.processes != "auto" and not 1 <= scenario.load.processes <= 256:
        yield ("load", "processes"), "processes must be 'auto' or between 1 and 256"

    locustfile, found = Path(), False
    try:
        locustfile = scenario.locustfile_path
        found = locustfile.is_file()
    except (OSError, ValueError) as exc:  # a name too long for the file system, say
        yield ("load", "locustfile"), f"not a usable path: {getattr(exc, 'strerror', None) or exc}"
    else:
        if not found:
            yield ("load", "locustfile"), f"locustfile not found: {locustfile}"
    if found:
        defined = _locust_classes(locustfile)
        if defined is None:
            yield ("load", "locustfile"), f"{locustfile} is not valid Python"
        else:
            for i, user in enumerate(scenario.load.user_classes):
                if user.class_name not in defined:
                    known = ", ".join(sorted(defined)) or "none"
                    yield (
                        ("load", "user_classes", i, "class"),
                        f"class '{user.class_name}' is not defined in {scenario.load.locustfile} (found: {known})",
                    )

    if scenario.load.node is not None and bool(scenario.load.node.labels) == (scenario.load.node.resource is not None):
        yield ("load", "node"), "give exactly one of labels or resource"
    fault_names: set[str] = set()
    for i, fault in enumerate(scenario.faults):
        if fault.node is not None and bool(fault.node.labels) == (fault.node.resource is not None):
            yield ("faults", i, "node"), "give exactly one of labels or resource"
        if fault.node is not None and fault.kind.startswith("kubernetes."):
            yield ("faults", i, "node"), "Kubernetes faults act through the API server, not on a node; remove node"
        if fault.name in fault_names:
            yield ("faults", i, "name"), f"fault name '{fault.name}' is used twice"
        fault_names.add(fault.name)
        if fault.at + fault.duration > total + 1e-9:
            yield (
                ("faults", i, "at"),
                f"fault window {fault.at:g}s..{fault.at + fault.duration:g}s ends after the run ({total:g}s)",
            )
        if isinstance(fault, ProcessKillFault) and fault.params.signal in (signal.SIGSTOP, signal.SIGTSTP):
            yield (
                ("faults", i, "params", "signal"),
                "a stop signal cannot be reverted by a kill; use kind process.pause",
            )
        if fault.kind == "process.pause" and fault.duration <= 0:
            yield ("faults", i, "duration"), "a pause needs a positive duration"
        if isinstance(fault, ProcessKillFault | ProcessPauseFault):
            targets = [t for t in (fault.target.pid_file, fault.target.pattern, fault.target.systemd_unit) if t]
            if len(targets) != 1:
                yield ("faults", i, "target"), "give exactly one of pid_file, pattern or systemd_unit"
        if isinstance(fault, ProcessKillFault) and fault.params.restart_cwd and not fault.params.restart:
            yield ("faults", i, "params", "restart_cwd"), "restart_cwd needs params.restart"
        if isinstance(fault, NetworkNetemFault):
            yield from _netem_checks(i, fault.params)
        if isinstance(fault, NetworkPartitionFault) and fault.params.method == "blackhole" and fault.params.ports:
            yield ("faults", i, "params", "ports"), "a blackhole route cannot match ports; use method nftables"
        if isinstance(fault, NetworkLossFault) and fault.params.method == "netem" and not fault.target.interface:
            yield ("faults", i, "target", "interface"), "method netem needs the interface to put the qdisc on"
        if isinstance(fault, NetworkLossFault) and fault.params.method == "netem" and fault.params.ports:
            yield ("faults", i, "params", "ports"), "netem cannot match ports; use method nftables"
        if isinstance(fault, _ProxyFault) and (fault.target.control is None) == (fault.target.service is None):
            yield ("faults", i, "target"), "give exactly one of control (a running proxy) or service (transparent)"
        if isinstance(fault, _ProxyFault) and fault.target.control and fault.target.netns:
            yield ("faults", i, "target", "netns"), "netns is only used with service (transparent mode)"
        if isinstance(fault, KubernetesPodKillFault):
            yield from _pod_kill_checks(i, fault.params)
        if isinstance(fault, KubernetesScaleFault) and fault.duration <= 0:
            yield ("faults", i, "duration"), "a scale to zero needs a positive duration (it is scaled back after it)"
    yield from _allowlist_checks(scenario)
    kube = [i for i, f in enumerate(scenario.faults) if f.kind.startswith("kubernetes.")]
    if kube and not scenario.safety.allowed_contexts:
        yield (
            ("faults", kube[0], "kind"),
            "kubernetes faults need safety.allowed_contexts: the kube contexts this scenario may act in",
        )

    names: set[str] = set()
    for i, slo in enumerate(scenario.slos):
        if slo.name in names:
            yield ("slos", i, "name"), f"SLO name '{slo.name}' is used twice"
        names.add(slo.name)
        window = slo.window
        if window.kind is WindowKind.PHASE and window.ref not in phase_names:
            yield ("slos", i, "window"), f"no stage is named '{window.ref}'"
        if window.kind in (WindowKind.DURING, WindowKind.AFTER) and window.ref not in fault_names:
            yield ("slos", i, "window"), f"no fault is named '{window.ref}'"
        if window.kind is WindowKind.LAST and window.seconds > total:
            yield ("slos", i, "window"), f"last {window.seconds:g}s is longer than the run ({total:g}s)"
        yield from _slo_metric_checks(i, slo, scenario.slos)
    for i, guard in enumerate(scenario.guards):
        if guard.name in names:
            yield ("guards", i, "name"), f"name '{guard.name}' is already used by an SLO or guard"
        names.add(guard.name)


def steady_thresholds(slos: list[Slo]) -> tuple[float | None, float | None]:
    """The p99 (ms) and error rate the scenario holds its steady window to, over all endpoints."""
    p99 = error_rate = None
    for slo in slos:
        if slo.window.kind is WindowKind.STEADY and slo.endpoint is None and slo.objective.op in ("<", "<="):
            if slo.objective.metric == "p99":
                p99 = slo.objective.value
            elif slo.objective.metric == "error_rate" and not slo.errors:
                error_rate = slo.objective.value
    return p99, error_rate


def _slo_metric_checks(i: int, slo: Slo, slos: list[Slo]) -> Iterator[tuple[Path_, str]]:
    metric = slo.objective.metric
    if slo.errors and metric != "error_rate":
        yield ("slos", i, "errors"), f"errors filters an error_rate SLO, not {metric}"
    if slo.recovery is not None and metric != "recovery_time":
        yield ("slos", i, "recovery"), f"recovery applies to a recovery_time SLO, not {metric}"
    if slo.budget is not None and metric not in ("burn_rate", "budget_burn"):
        yield ("slos", i, "budget"), f"budget applies to burn_rate and budget_burn SLOs, not {metric}"
    if metric in ("burn_rate", "budget_burn") and slo.budget is None:
        yield ("slos", i, "objective"), f"{metric} needs budget: {{availability: 99.9%, period: 30d}}"
    if metric == "recovery_time":
        if slo.window.kind is not WindowKind.AFTER:
            yield ("slos", i, "window"), "recovery_time is measured from a fault's end: use window after:FAULT"
        rule = slo.recovery or RecoveryRule()
        p99, error_rate = steady_thresholds(slos)
        if rule.p99 is None and p99 is None:
            yield ("slos", i, "recovery"), "recovery_time needs recovery.p99 or a steady 'p99 <' SLO to compare with"
        if rule.error_rate is None and error_rate is None:
            yield (
                ("slos", i, "recovery"),
                "recovery_time needs recovery.error_rate or a steady 'error_rate <' SLO to compare with",
            )


_IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_NETWORK_FAULTS = (
    NetworkPartitionFault,
    NetworkLossFault,
    NetworkBandwidthFault,
    NetworkNetemFault,
    NetworkLinkDownFault,
)


def _load_networks(target: Target) -> list[_IpNetwork]:
    """The load hosts as networks of one address: the base URL's host and ``allowed_hosts``
    written as IP addresses, and ``localhost`` as 127.0.0.1 and ::1. Names are not resolved."""
    try:
        hosts = [urlsplit(target.base_url).hostname or "", *target.allowed_hosts]
    except ValueError:  # an invalid base URL, reported by its own check
        hosts = list(target.allowed_hosts)
    out: list[_IpNetwork] = []
    for host in hosts:
        host = host.strip().removeprefix("[").removesuffix("]")
        if host.lower() == "localhost":  # RFC 6761: always the loopback address
            out += [ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128")]
            continue
        try:
            out.append(ipaddress.ip_network(ipaddress.ip_address(host)))  # one address, never a network
        except ValueError:
            continue
    return out


def _inside(network: str, allowed: list[_IpNetwork]) -> bool:
    net = ipaddress.ip_network(network, strict=False)
    return any(net.version == a.version and net.subnet_of(a) for a in allowed)  # type: ignore[arg-type]


def _path_under(path: str, directories: list[str]) -> bool:
    path = posixpath.normpath(path)
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in directories)


def _allowlist_checks(scenario: Scenario) -> Iterator[tuple[Path_, str]]:
    """What network, proxy and stress faults act on must be in the scenario's ``safety`` allow-lists.

    Decided from the file alone, so a refusal is a located problem and nothing starts.
    """
    safety = scenario.safety
    load = _load_networks(scenario.target)
    allowed = [ipaddress.ip_network(n) for n in safety.allowed_networks]
    networks = ", ".join(safety.allowed_networks) or "none given"
    hosts = ", ".join(sorted({str(n.network_address) for n in load})) or "none written as an address"
    outside = f"is outside safety.allowed_networks ({networks}) and is not a load host ({hosts})"
    for i, fault in enumerate(scenario.faults):
        if isinstance(fault, NetworkPartitionFault | NetworkLossFault):
            for j, peer in enumerate(fault.params.peers):
                if not _inside(peer, [*allowed, *load]):
                    yield ("faults", i, "params", "peers", j), f"{peer} {outside}"
        # The host's own namespace carries everything on the machine (ssh, Ray, other tenants): an
        # interface of it is touched only when listed. A named netns confines the fault to itself.
        if (
            isinstance(fault, _NETWORK_FAULTS)
            and fault.target.netns is None
            and fault.target.interface
            and fault.target.interface not in safety.allowed_interfaces
        ):
            listed = ", ".join(safety.allowed_interfaces) or "none given"
            yield (
                ("faults", i, "target", "interface"),
                f"interface {fault.target.interface} of the host's own network namespace is not in "
                f"safety.allowed_interfaces ({listed}); list it there, or give the target.netns it is in",
            )
        if isinstance(fault, _ProxyFault) and fault.target.service is not None:
            host = fault.target.service.rpartition(":")[0].strip("[]")
            if not _inside(host, [*allowed, *load]):
                yield ("faults", i, "target", "service"), f"{fault.target.service} {outside}"
        if isinstance(fault, _ProxyFault) and fault.target.control is not None:
            host = fault.target.control.rpartition(":")[0].strip("[]")
            if not ipaddress.ip_address(host).is_loopback and not _inside(host, [*allowed, *load]):
                yield ("faults", i, "target", "control"), f"{fault.target.control} is not loopback and {outside}"
        if isinstance(fault, StressIoFault | StressDiskFillFault):
            path = fault.params.path
            where: Path_ = ("faults", i, "params", "path")
            if not path.startswith("/"):
                yield where, f"'{path}' is not an absolute path; give the directory as /... (it is on the fault's node)"
            elif not _path_under(path, safety.allowed_paths):
                yield where, f"{path} is not under safety.allowed_paths ({', '.join(safety.allowed_paths)})"


def _netem_checks(i: int, params: NetemParams) -> Iterator[tuple[Path_, str]]:
    where: Path_ = ("faults", i, "params")
    if not (params.delay or params.loss or params.duplicate or params.corrupt or params.reorder):
        yield where, "netem needs at least one of delay, loss, duplicate, corrupt or reorder"
    if params.reorder and not params.delay:
        yield (*where, "reorder"), "reorder needs a delay (the packets not reordered are the delayed ones)"
    if params.jitter and not params.delay:
        yield (*where, "jitter"), "jitter needs a delay"


def _pod_kill_checks(i: int, params: PodKillParams) -> Iterator[tuple[Path_, str]]:
    where: Path_ = ("faults", i, "params")
    if params.mode == "fixed" and params.count is None:
        yield (*where, "mode"), "mode 'fixed' needs params.count"
    if params.mode == "percent" and params.percent is None:
        yield (*where, "mode"), "mode 'percent' needs params.percent"
    if params.count is not None and params.mode != "fixed":
        yield (*where, "count"), f"count is only used with mode 'fixed' (mode is '{params.mode}')"
    if params.percent is not None and params.mode != "percent":
        yield (*where, "percent"), f"percent is only used with mode 'percent' (mode is '{params.mode}')"


def _locust_classes(path: Path) -> set[str] | None:
    """Class names defined at the top level of a locustfile, read without importing it.

    Importing locust in the driver before Ray starts hangs (see DESIGN.md), and a scenario
    must be checkable without running user code.
    """
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, OSError):
        return None
    return {node.name for node in tree.body if isinstance(node, ast.ClassDef)}


# ---------------------------------------------------------------- entry point


def load_scenario(path: str | Path) -> Scenario:
    """Read, validate and cross-check a scenario file.

    Raises ``ScenarioError`` (exit 2) listing every problem found, each located by file,
    line, column and key path. Applies nothing and starts nothing.
    """
    file = str(path)
    source = Path(path)
    too_large = ScenarioError([Problem(file, 1, 1, "", f"file is larger than {MAX_SCENARIO_BYTES} bytes")])
    try:
        if source.stat().st_size > MAX_SCENARIO_BYTES:
            raise too_large
        with source.open("rb") as stream:  # bounded: a pipe or a device has no size to check first
            raw = stream.read(MAX_SCENARIO_BYTES + 1)
        if len(raw) > MAX_SCENARIO_BYTES:
            raise too_large
    except FileNotFoundError:
        raise ScenarioError([Problem(file, 1, 1, "", "file not found")]) from None
    except IsADirectoryError:
        raise ScenarioError([Problem(file, 1, 1, "", "is a directory, not a scenario file")]) from None
    except OSError as exc:
        raise ScenarioError([Problem(file, 1, 1, "", f"cannot read: {exc.strerror}")]) from None
    except ValueError:  # a NUL in the path
        raise ScenarioError([Problem(file, 1, 1, "", "not a usable file name")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = raw.count(b"\n", 0, exc.start) + 1, exc.start - raw.rfind(b"\n", 0, exc.start)
        raise ScenarioError([Problem(file, line, col, "", f"not UTF-8 text (byte {exc.start})")]) from None
    if "\x00" in text:
        raise ScenarioError([Problem(file, 1, 1, "", "binary data is not a scenario")])

    data, positions, problems = _read_yaml(text, file)
    if data is None and not problems:
        problems = [Problem(file, 1, 1, "", "file is empty; a scenario needs name, target and load")]
    if problems:
        raise ScenarioError(problems)
    if not isinstance(data, dict):
        raise ScenarioError([Problem(file, 1, 1, "", "a scenario must be a mapping of keys (name, target, load, ...)")])
    if "source" in data:
        line, col = positions.locate(("source",))
        raise ScenarioError([Problem(file, line, col, "source", "unknown key 'source'")])

    try:
        scenario = Scenario.model_validate({**data, "source": str(source.resolve())})
    except ValidationError as exc:
        raise ScenarioError(_validation_problems(exc, data, positions, file)) from None
    except RecursionError:
        raise ScenarioError([Problem(file, 1, 1, "", "document is nested too deeply")]) from None

    cross = [Problem(file, *positions.locate(p), _dotted(p), m) for p, m in _cross_checks(scenario)]
    if cross:
        raise ScenarioError(cross)
    return _absolute_paths(scenario)


def _absolute_paths(scenario: Scenario) -> Scenario:
    """Pid files are relative to the scenario file, like the locustfile; agents run elsewhere."""
    base = Path(scenario.source).parent
    faults = []
    for fault in scenario.faults:
        process_target = (
            fault.target if isinstance(fault, ProcessKillFault | ProcessPauseFault | _StressFault) else None
        )
        pid_file = process_target.pid_file if process_target is not None else None
        if process_target is not None and pid_file and not Path(pid_file).is_absolute():
            target = process_target.model_copy(update={"pid_file": str((base / pid_file).resolve())})
            fault = fault.model_copy(update={"target": target})
        faults.append(fault)
    return scenario.model_copy(update={"faults": faults})


def scenario_total_seconds(scenario: Scenario) -> float:
    """End of the last stage, in seconds from the run start."""
    end = 0.0
    for stage in scenario.load.stages:
        start = end if stage.at is None else stage.at
        end = max(end, start) + stage.duration
    return end
