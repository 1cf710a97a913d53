"""The fault family interface, and the registry every part of harness looks a fault kind up in.

A **fault family** (``harness/chaos/families/<name>/``, or a package of a team's own) declares
its kinds as scenario models (``models``: subclasses of
:class:`~harness.scenario.faults.FaultBase`, each writing its kind string once, in its ``kind``
Literal) and implements every hook of :class:`FaultFamily`:

========================  ===============================================================
``describe``              the line ``harness plan`` prints for a fault; touches nothing
``requirements``          capability names (:mod:`harness.chaos.capabilities`) for
                          ``harness doctor`` and the preflight
``resolve``               what the fault would act on now, appended to the plan line
``refusal``               preflight, first: what this host refuses about the target now
``check``                 preflight on this host before a run starts: raises ``ConfigError``
``warm_up``               imports and probes on the agent's node before the run starts
``prepare``/``apply``     inject: what to journal first, then the change (:mod:`.steps`
                          journals around them)
``undo``                  revert from the journal record alone
``leftovers``/``remove``  ``harness recover --sweep``: tagged objects no journal knows
``reverted_text``         what ``harness recover`` prints for a reverted record
``in_pod`` (optional)     the fault made concrete for one pod on this node (its network
                          namespace, its containers' cgroups); None: the kinds cannot act
                          inside a pod, and a fault of them with ``pods`` is a scenario error
========================  ===============================================================

The family registers through the entry-point group
:data:`~harness.scenario.faults.ENTRY_POINT_GROUP`; the agent, ``recover``, the watchdog,
the preflight, ``doctor``, ``plan`` and the sweep find it with :func:`family_of` and never name
a kind. A family module imports nothing heavy when it loads (``harness validate`` loads every
family): pyroute2, the kubernetes client or gevent are imported inside its hooks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.chaos import steps
from harness.chaos.journal import FaultRecord, Journal
from harness.chaos.steps import Details, InjectContext, Prepared
from harness.errors import ConfigError
from harness.scenario.faults import ENTRY_POINT_GROUP, FaultBase, registered
from harness.scenario.model import Safety

if TYPE_CHECKING:
    from harness.chaos.kubelet import PodSite

__all__ = ["HOOKS", "FaultFamily", "HostContext", "Leftover", "families", "family_of", "find_family"]


@dataclass(frozen=True)
class HostContext:
    """What the plan and the preflight know besides a fault: the scenario's allow-lists."""

    safety: Safety


@dataclass(frozen=True)
class Leftover:
    """One tagged object a sweep found: where it is, what it is, and what identifies it for removal.

    ``order`` sorts removals across families (what sits on a link before the link; processes last).
    """

    netns: str  # '' = the host's namespace; '' for processes and files
    kind: str  # e.g. nft table | qdisc | filter | ifb | route | process
    name: str
    key: tuple[Any, ...]
    family: str
    order: int = 0

    def describe(self) -> str:
        where = f"netns {self.netns}" if self.netns else "host"
        return f"{self.kind} {self.name} ({where})"


class FaultFamily(ABC):
    """One family of fault kinds; see the module docstring for what each hook is for."""

    #: The family's name, as ``harness doctor`` and messages say it (the entry point's name).
    name: str
    #: The scenario models of the kinds this family applies.
    models: tuple[type[FaultBase], ...]
    #: Revert at once when an inject fails part-way (see :mod:`harness.chaos.steps`).
    undo_failed_inject: bool = False
    #: The optional hook ``in_pod(fault, site) -> fault``: ``fault`` (which has ``pods``) made
    #: concrete for one pod found on this node (:class:`harness.chaos.kubelet.PodSite`): a network
    #: fault in the pod's network namespace, a process fault on its containers' cgroups. The
    #: agent renames it and clears ``pods``. Raises ``FaultError`` when this pod cannot take it.
    #: None (the default): this family's kinds cannot act inside a pod.
    in_pod: Callable[[Any, PodSite], FaultBase] | None = None

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(model.KIND for model in self.models)

    # ------------------------------------------------------------ plan, doctor, preflight

    @abstractmethod
    def describe(self, fault: Any) -> str:
        """What the fault will do, in one line, for ``harness plan``. Touches nothing."""

    @abstractmethod
    def requirements(self, fault: Any) -> list[str]:
        """The capabilities (:data:`harness.chaos.capabilities.PROBES` names) the fault needs on its node."""

    @abstractmethod
    def resolve(self, fault: Any, context: HostContext) -> str:
        """What the fault would act on now, as ``; now: ...`` after the plan line, or ''. Changes nothing."""

    @abstractmethod
    def refusal(self, fault: Any, context: HostContext) -> str | None:
        """Why this host refuses the fault's target now (a directory that leaves the allowed paths
        through a symbolic link, a pid file naming PID 1), as the whole message, or None.

        The preflight asks every fault this first, as the allow-lists come first at load.
        Decided locally, fast; changes nothing.
        """

    @abstractmethod
    def check(self, fault: Any, context: HostContext) -> None:
        """Raise ``ConfigError`` when the fault could never apply on this host. Changes nothing."""

    # ------------------------------------------------------------ the agent

    @abstractmethod
    def warm_up(self, kinds: frozenset[str]) -> None:
        """Import and probe what faults of ``kinds`` (this family's) need, before the run starts."""

    @abstractmethod
    def prepare(self, fault: Any, ctx: InjectContext) -> Prepared:
        """Resolve the targets and say what a revert will need (journaled first). Changes nothing."""

    @abstractmethod
    def apply(self, fault: Any, record: FaultRecord, ctx: InjectContext, *, resumed: bool) -> Details:
        """Put the fault into effect as ``record`` says (``resumed``: after a crash mid-inject)."""

    @abstractmethod
    def undo(self, record: FaultRecord) -> Details:
        """Undo exactly what ``record`` names, with no scenario at hand; idempotent."""

    # ------------------------------------------------------------ recover and sweep

    @abstractmethod
    def reverted_text(self, before: FaultRecord, after: FaultRecord) -> str:
        """What ``harness recover`` prints after reverting ``before`` (its record is now ``after``)."""

    @abstractmethod
    def leftovers(self) -> list[Leftover]:
        """Every object of this family on this node that carries harness's tag; changes nothing."""

    @abstractmethod
    def remove(self, leftover: Leftover) -> None:
        """Remove one object :meth:`leftovers` found (raises on failure)."""

    def applied_text(self, record: FaultRecord) -> str:
        """What the run's fault event says was done (after the kind)."""
        return str(record.details.get("target") or "applied")

    # ------------------------------------------------------------ the journal steps, shared

    def inject(self, fault: FaultBase, ctx: InjectContext) -> FaultRecord:
        """Apply ``fault`` through the shared journal steps; returns its ``injected`` record."""
        return steps.inject(self, fault, ctx)

    def revert(self, record: FaultRecord, journal: Journal) -> None:
        """Undo ``record``'s fault through the shared journal steps."""
        steps.revert(self, record, journal)


#: The hooks every family implements (the abstract methods of :class:`FaultFamily`).
HOOKS: tuple[str, ...] = tuple(sorted(FaultFamily.__abstractmethods__))


def families() -> tuple[FaultFamily, ...]:
    """Every registered family (entry-point group ``harness.fault_families``), by entry-point name."""
    out = []
    for family in registered():
        if not isinstance(family, FaultFamily):
            raise ConfigError(
                f"fault family '{getattr(family, 'name', family)}' (entry point group {ENTRY_POINT_GROUP}) "
                "is not a harness.chaos.family.FaultFamily"
            )
        out.append(family)
    return tuple(out)


def find_family(kind: str) -> FaultFamily | None:
    """The family that applies ``kind``, or None when no installed family declares it."""
    return next((f for f in families() if kind in f.kinds), None)


def family_of(kind: str) -> FaultFamily:
    """The family that applies ``kind``; ``ConfigError`` when none is installed."""
    family = find_family(kind)
    if family is None:
        raise ConfigError(f"no fault family is registered for kind {kind} (is the package that provides it installed?)")
    return family
