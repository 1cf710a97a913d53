"""What every fault of a scenario has, and the registry that says which fault kinds exist.

A fault kind belongs to a **fault family**: a module that declares its kinds as pydantic models
(subclasses of :class:`FaultBase`, each with ``kind: Literal["family.kind"]``, the one place a kind
string is written) and implements what harness does with them (:mod:`harness.chaos.family`).
Families register through the Python entry-point group :data:`ENTRY_POINT_GROUP`, the built-in
ones in harness's own ``pyproject.toml`` and a team's own in the package that ships it::

    [project.entry-points."harness.fault_families"]
    dns = "acme_harness_dns:FAMILY"

This module reads that group (:func:`registered`), so the scenario's ``Fault`` union, ``harness
schema`` and ``harness validate`` know every installed kind, while the scenario package never
imports the chaos package: loading a family imports its module, which must import nothing heavy
(pyroute2, the kubernetes client, Ray, gevent) until one of its hooks runs.

A fault model may add the checks that need more than its own fields (:meth:`FaultBase.checks`),
given the scenario's allow-lists and load hosts (:class:`FaultContext`), and say how a relative
path in it is read (:meth:`FaultBase.with_base_dir`).
"""

from __future__ import annotations

import functools
import ipaddress
import posixpath
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Protocol, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, Discriminator, Field, GetCoreSchemaHandler, Tag

from harness.errors import ConfigError
from harness.scenario.fields import (
    Duration,
    KeyPath,
    KubeNamespace,
    KubeObjectName,
    Model,
    Name,
    NodeSelector,
    label_selector,
    regex,
)
from harness.scenario.heal import HealCheck
from harness.scenario.radius import Radius
from harness.scenario.start import SteadyStart

if TYPE_CHECKING:
    from pydantic_core import CoreSchema

    from harness.scenario.model import Safety, Target

__all__ = [
    "ENTRY_POINT_GROUP",
    "DeclaresKinds",
    "Fault",
    "FaultBase",
    "FaultContext",
    "PodSelector",
    "ProcessTarget",
    "acts_in_pods",
    "fault_kinds",
    "registered",
]

#: The entry-point group fault families register in; each entry names an object with ``models``.
ENTRY_POINT_GROUP = "harness.fault_families"


class ProcessTarget(Model):
    """Which process a process fault acts on: exactly one of pid_file, pattern, systemd_unit or cgroup."""

    pid_file: str | None = Field(default=None, description="File holding the target's PID.")
    pattern: Annotated[str, AfterValidator(regex)] | None = Field(
        default=None, description="Regular expression matched against each process's full command line."
    )
    systemd_unit: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9:_.@\\-]+$",
        description="A systemd unit (e.g. nginx.service): every process in its control group.",
    )
    cgroup: list[Annotated[str, Field(min_length=2, pattern=r"^/")]] | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="cgroup directories (absolute paths under a mounted cgroup hierarchy): every process in them "
        "and their sub-groups. A fault with pods gets its pods' container cgroups here on each node.",
    )

    def choice_problem(self) -> str | None:
        """What is wrong when not exactly one way of choosing the process is given, else None."""
        if len([t for t in (self.pid_file, self.pattern, self.systemd_unit, self.cgroup) if t]) != 1:
            return "give exactly one of pid_file, pattern, systemd_unit or cgroup"
        return None

    def with_base_dir(self, base: Path) -> ProcessTarget:
        """A relative pid file read from ``base`` (the scenario file's directory): agents run elsewhere."""
        if self.pid_file and not Path(self.pid_file).is_absolute():
            return self.model_copy(update={"pid_file": str((base / self.pid_file).resolve())})
        return self


class PodSelector(Model):
    """The Kubernetes pods a fault acts inside, chosen as Chaos Mesh chooses them (selector and mode).

    The driver lists the pods through the API server, chooses them deterministically (the first
    ``k`` of an order shuffled by ``seed``, so a larger count always includes a smaller one's
    pods), and the chaos agent on each chosen pod's node applies the fault there: in the pod's
    network namespace, or to the processes of its containers' cgroups.
    """

    namespace: KubeNamespace = Field(
        description="Namespace of the pods; it must carry the opt-in label harness.io/chaos=enabled."
    )
    selector: Annotated[str, AfterValidator(label_selector)] = Field(
        description="Label selector as the API takes it, e.g. 'app=payments'; not empty."
    )
    mode: Literal["one", "all", "fixed", "percent"] = Field(
        default="one", description="one pod, all pods, a fixed count (count) or a percent of them (percent)."
    )
    count: int | None = Field(default=None, ge=1, le=100_000, description="Pods with mode fixed (all if fewer match).")
    percent: float | None = Field(
        default=None, gt=0, le=100, description="Share of the matching pods with mode percent, rounded up."
    )
    seed: str | None = Field(
        default=None,
        max_length=200,
        description="Seed of the choice (same seed and pods, same choice); default: the fault name.",
    )
    containers: list[KubeObjectName] = Field(
        default_factory=list,
        max_length=64,
        description="Only these containers' processes (by name); default: every container of the pod.",
    )

    def describe(self) -> str:
        how = {"one": "one pod", "all": "all pods"}.get(self.mode, "")
        if self.mode == "fixed":
            how = f"{self.count} pods"
        elif self.mode == "percent":
            how = f"{self.percent:g}% of the pods"
        only = f", containers {', '.join(self.containers)}" if self.containers else ""
        return f"{how} matching '{self.selector}' in namespace {self.namespace}{only}"

    def problems(self) -> Iterator[tuple[KeyPath, str]]:
        if self.mode == "fixed" and self.count is None:
            yield ("mode",), "mode 'fixed' needs count"
        if self.mode == "percent" and self.percent is None:
            yield ("mode",), "mode 'percent' needs percent"
        if self.count is not None and self.mode != "fixed":
            yield ("count",), f"count is only used with mode 'fixed' (mode is '{self.mode}')"
        if self.percent is not None and self.mode != "percent":
            yield ("percent",), f"percent is only used with mode 'percent' (mode is '{self.mode}')"


def _start_tag(value: Any) -> str:
    """A mapping is a steady-state condition; anything else an offset."""
    return "at_steady" if isinstance(value, dict | SteadyStart) else "at_offset"


#: A fault's ``at``: an offset, or the steady state to wait for (:mod:`harness.scenario.start`).
FaultStart = Annotated[
    Annotated[Duration, Tag("at_offset")] | Annotated[SteadyStart, Tag("at_steady")],
    Discriminator(_start_tag),
]


class FaultBase(Model):
    """The keys every fault has; a fault model adds ``kind``, ``target`` and ``params``."""

    #: The model's kind, read from its ``kind: Literal[...]`` field ("" on a base without one).
    KIND: ClassVar[str] = ""
    #: True for a kind that has nothing to revert (a kill): its heal_time runs from the injection,
    #: not from the end of its window.
    HEALS_FROM_START: ClassVar[bool] = False
    if TYPE_CHECKING:  # each kind's model declares ``kind: Literal["family.kind"]``
        kind: str

    name: Name = Field(description="Fault name, unique in the scenario; SLO windows refer to it.")
    at: FaultStart = Field(
        description="Offset from the run start at which the fault is injected (e.g. 30s); or a condition: start "
        "once the load is steady, {steady: [p99 < 300ms, rps >= 100], for: 5s, deadline: 60s}."
    )
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
    heal: HealCheck | None = Field(
        default=None,
        description="When the system is whole again after this fault, for its heal_time (one of url, pattern, "
        "pods, deployment). Default: derived from the fault's target where its kind can (a pod kill, a scale, "
        "a process kill by pattern).",
    )
    pods: PodSelector | None = Field(
        default=None,
        description="Act inside these Kubernetes pods instead of on a node: the agent on each chosen pod's node "
        "applies the fault in the pod's network namespace or to its containers' processes. Not with node.",
    )
    radius: Radius | None = Field(
        default=None,
        description="A blast radius that grows: apply the fault to more and more of the instances its target "
        "selects (e.g. {steps: [1, 2, 50%], hold: 10s}), judging the during:<name> SLOs per step and stopping "
        "at the first step that breaks them. Default: the fault acts on everything its target selects at once.",
    )

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        field = cls.model_fields.get("kind")
        if field is not None and typing.get_origin(field.annotation) is typing.Literal:
            cls.KIND = str(typing.get_args(field.annotation)[0])

    @property
    def start(self) -> float:
        """The offset the plan places the fault at: ``at``, or its deadline when it waits for a
        steady state (the latest it can start; the run moves it earlier when the system is steady)."""
        return self.at.deadline if isinstance(self.at, SteadyStart) else self.at

    @property
    def earliest(self) -> float:
        """The earliest offset the fault can start at (``at``, or its ``after`` when it waits)."""
        return self.at.after if isinstance(self.at, SteadyStart) else self.at

    @property
    def waits_for(self) -> SteadyStart | None:
        """The steady state the fault waits for before it starts, or None (it starts at ``at``)."""
        return self.at if isinstance(self.at, SteadyStart) else None

    def checks(self, context: FaultContext) -> Iterator[tuple[KeyPath, str]]:
        """Problems a type cannot express (one key against another, the allow-lists): ``(key path
        relative to the fault, message)``. Decided from the file alone; the default finds none."""
        return iter(())

    def with_base_dir(self, base: Path) -> Self:
        """This fault with relative paths in it read from ``base`` (the scenario file's directory)."""
        return self

    def instances_problem(self) -> str | None:
        """Why this fault's target selects no set of instances a ``radius`` could count, or None.

        A kind whose family counts instances (its ``instances`` and ``narrowed`` hooks) overrides
        this to say when it can (a process fault: when its target is a pattern). A fault with
        ``pods`` counts the pods chosen for it, whatever its kind."""
        if self.pods is not None:
            return None
        return f"kind {self.KIND} selects no set of instances a radius could count"

    def default_heal(self) -> HealCheck | None:
        """The heal condition this kind derives from its own target when ``heal:`` is not given; none by default."""
        return None

    def heal_check(self) -> HealCheck | None:
        """The condition that says the system healed after this fault: ``heal:``, else the kind's default."""
        return self.heal if self.heal is not None else self.default_heal()

    def pod_checks(self, context: FaultContext) -> Iterator[tuple[KeyPath, str]]:
        """What ``pods`` needs, for every kind: no ``node`` beside it, a family that can act inside a
        pod, and kube contexts to list the pods in. Called for every fault (a kind's own
        :meth:`checks` need not call it)."""
        if self.pods is None:
            return
        if self.node is not None:
            yield ("pods",), "give node or pods, not both: the chosen pods decide the nodes"
        if not acts_in_pods(self.KIND):
            yield ("pods",), f"faults of kind {self.KIND} cannot act inside a pod; remove pods"
        for path, message in self.pods.problems():
            yield ("pods", *path), message
        if context.safety is not None and not context.safety.allowed_contexts:
            yield ("pods",), "pods need safety.allowed_contexts: the kube contexts the pods may be listed in"


_IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _inside(network: str, allowed: tuple[_IpNetwork, ...]) -> bool:
    net = ipaddress.ip_network(network, strict=False)
    return any(net.version == a.version and net.subnet_of(a) for a in allowed)  # type: ignore[arg-type]


def _load_networks(base_url: str, allowed_hosts: list[str]) -> tuple[_IpNetwork, ...]:
    """The load hosts as networks of one address: the base URL's host and ``allowed_hosts``
    written as IP addresses, and ``localhost`` as 127.0.0.1 and ::1. Names are not resolved."""
    try:
        hosts = [urlsplit(base_url).hostname or "", *allowed_hosts]
    except ValueError:  # an invalid base URL, reported by its own check
        hosts = list(allowed_hosts)
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
    return tuple(out)


@dataclass(frozen=True)
class FaultContext:
    """What a fault's :meth:`~FaultBase.checks` may consult: the scenario's ``safety`` allow-lists,
    its load hosts, and every fault (for checks made once per scenario).

    Validation runs in one pass over what validated (:mod:`.draft`): ``safety`` is None when
    the safety block did not validate, ``load_hosts`` None when the target did not, a fault
    None when it did not. A check against what is unknown is skipped, never guessed: the
    allow-list methods below answer None (nothing to say) then.
    """

    safety: Safety | None
    load_hosts: tuple[_IpNetwork, ...] | None
    faults: tuple[FaultBase | None, ...]

    @classmethod
    def of(cls, safety: Safety | None, target: Target | None, faults: Iterable[FaultBase | None]) -> FaultContext:
        hosts = _load_networks(target.base_url, target.allowed_hosts) if target is not None else None
        return cls(safety, hosts, tuple(faults))

    def is_first(self, fault: FaultBase, of_type: type[FaultBase]) -> bool:
        """True for the first fault of the scenario that is an ``of_type``: a problem of the
        scenario as a whole is reported once, at that fault."""
        return next((f for f in self.faults if isinstance(f, of_type)), None) is fault

    def outside(self, address: str) -> str | None:
        """The end of the message saying ``address`` (an address or CIDR) lies in no allowed
        network and is no load host; None when it does (or the allow-lists are unknown)."""
        if self.safety is None or self.load_hosts is None:
            return None
        allowed = tuple(ipaddress.ip_network(n) for n in self.safety.allowed_networks)
        if _inside(address, (*allowed, *self.load_hosts)):
            return None
        networks = ", ".join(self.safety.allowed_networks) or "none given"
        hosts = ", ".join(sorted({str(n.network_address) for n in self.load_hosts})) or "none written as an address"
        return f"is outside safety.allowed_networks ({networks}) and is not a load host ({hosts})"

    def interface_problem(self, netns: str | None, interface: str | None) -> str | None:
        """Why ``interface`` may not be touched, or None. The host's own namespace carries
        everything on the machine (ssh, Ray, other tenants): an interface of it is touched only
        when listed. A named netns confines the fault to itself."""
        if self.safety is None or self.load_hosts is None:
            return None
        if netns is not None or not interface or interface in self.safety.allowed_interfaces:
            return None
        listed = ", ".join(self.safety.allowed_interfaces) or "none given"
        return (
            f"interface {interface} of the host's own network namespace is not in "
            f"safety.allowed_interfaces ({listed}); list it there, or give the target.netns it is in"
        )

    def path_problem(self, path: str) -> str | None:
        """Why a fault may not write under ``path`` (a directory on the fault's node), or None."""
        if self.safety is None or self.load_hosts is None:
            return None
        if not path.startswith("/"):
            return f"'{path}' is not an absolute path; give the directory as /... (it is on the fault's node)"
        directories = self.safety.allowed_paths
        normal = posixpath.normpath(path)
        if any(normal == d or normal.startswith(d.rstrip("/") + "/") for d in directories):
            return None
        return f"{path} is not under safety.allowed_paths ({', '.join(directories)})"


# ---------------------------------------------------------------- the registry


class DeclaresKinds(Protocol):
    """What the scenario needs of a registered family: its name and the models of its kinds."""

    name: str
    models: tuple[type[FaultBase], ...]


@functools.cache
def registered() -> tuple[DeclaresKinds, ...]:
    """Every fault family registered in :data:`ENTRY_POINT_GROUP`, sorted by entry-point name.

    Raises ``ConfigError`` (exit 2) naming the entry point when one cannot be loaded or
    declares no fault kinds, and when two families declare the same kind.
    """
    out: list[DeclaresKinds] = []
    owners: dict[str, str] = {}
    # One entry point seen twice (the same name and object, from two copies of one project's metadata:
    # an editable install beside a stale egg-info left by the distribution's former name) is one family.
    unique = {(e.name, e.value): e for e in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    for entry in sorted(unique.values(), key=lambda e: e.name):
        where = f"fault family '{entry.name}' ({entry.value}, entry point group {ENTRY_POINT_GROUP})"
        try:
            family = entry.load()
        except Exception as exc:  # a broken plugin: say which, do not crash with its traceback
            raise ConfigError(f"{where} cannot be loaded: {type(exc).__name__}: {exc}") from None
        models = getattr(family, "models", ())
        if not models or not all(isinstance(m, type) and issubclass(m, FaultBase) and m.KIND for m in models):
            raise ConfigError(f"{where} declares no fault models (FaultBase subclasses with a kind Literal)")
        for model in models:
            if model.KIND in owners:
                raise ConfigError(f"fault kind {model.KIND} is declared by both '{owners[model.KIND]}' and {where}")
            owners[model.KIND] = entry.name
        out.append(family)
    return tuple(out)


def acts_in_pods(kind: str) -> bool:
    """Whether the family of ``kind`` can act inside a pod: it implements the optional ``in_pod``
    hook of :class:`harness.chaos.family.FaultFamily` (None there when it cannot)."""
    family = next((f for f in registered() if any(kind == m.KIND for m in f.models)), None)
    return callable(getattr(family, "in_pod", None))


def fault_kinds() -> dict[str, type[FaultBase]]:
    """Every registered fault kind and its model, in registration order."""
    return {model.KIND: model for family in registered() for model in family.models}


def _union() -> Any:
    kinds = fault_kinds()
    if not kinds:
        raise ConfigError(f"no fault family is registered in entry point group {ENTRY_POINT_GROUP} (reinstall harness)")
    if len(kinds) == 1:  # a union of one is its member: nothing to discriminate
        return next(iter(kinds.values()))
    options = tuple(Annotated[model, Tag(kind)] for kind, model in kinds.items())
    return Annotated[typing.Union[options], Field(discriminator="kind")]  # noqa: UP007 -- built at run time


if TYPE_CHECKING:
    Fault = FaultBase
else:

    class Fault:
        """One fault of any registered kind, chosen by its ``kind`` key.

        The discriminated union is built from the registry when pydantic first needs it (the
        ``Scenario`` model defers its schema), not when this module is imported: a family
        module imports this one, so reading the registry here at import would load half a family.
        """

        @classmethod
        def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
            return handler.generate_schema(_union())
