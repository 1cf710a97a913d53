"""The chaos agent: a Ray actor pinned to the node where a fault must act.

The orchestrator starts one :class:`ChaosAgent` per (run, node) with :meth:`ChaosAgent.start`,
asks it to :meth:`~ChaosAgent.inject` and :meth:`~ChaosAgent.revert` faults on the timeline,
and calls :meth:`~ChaosAgent.stop` in its ``finally``, which reverts whatever is still active
before the actor goes away. The actor looks each fault's kind up in the registry of fault
families (:mod:`harness.chaos.family`), whose shared journal steps record every fault on its
node's disk first, so if the actor, its node or the driver dies
mid-run, ``harness recover`` on that node can still undo it.

Every fault is also a **lease**: it is journaled with ``lease_until`` = now + ``lease_ttl``
(node clock), the orchestrator's heartbeat calls :meth:`ChaosAgent.renew` about every
:data:`RENEW_INTERVAL` seconds, and the node's watchdog (:mod:`harness.chaos.watchdog`,
started by the agent on its first inject) reverts any fault whose lease lapsed: the
orchestrator, Ray or this actor died, or the network to the node was cut.

This is the only module of :mod:`harness.chaos` that imports Ray.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from harness.chaos import pods as pod_faults
from harness.chaos import watchdog
from harness.chaos.family import FaultFamily, find_family
from harness.chaos.journal import FaultRecord, FaultState, Journal
from harness.chaos.kubelet import PodRef
from harness.chaos.processes import protected_processes, resolve_targets
from harness.chaos.recover import revert_record
from harness.chaos.steps import InjectContext
from harness.errors import FaultError, HarnessError
from harness.measure.clocks import ClockOffset
from harness.priority import AGENT_NICE, normal_priority
from harness.scenario import Fault, ProcessTarget

__all__ = ["LEASE_TTL", "RENEW_INTERVAL", "ChaosAgent"]

log = logging.getLogger(__name__)

Summary = dict[str, Any]

#: Seconds a fault stays applied without a renewal before the watchdog reverts it. Long
#: enough for a few missed heartbeats (a GC pause, a busy driver), short enough that a
#: crash leaves a paused service stopped for seconds, not minutes.
LEASE_TTL = 5.0
#: Seconds between the orchestrator's renewals: several renewals fit in one TTL.
RENEW_INTERVAL = 1.0


def _summary(record: FaultRecord, node_id: str) -> Summary:
    """A fault's latest journal record as plain data the driver can log and annotate with;
    ``what`` is what its family says was done (the run's fault event shows it)."""
    family = find_family(record.kind)
    return {
        "run_id": record.run_id,
        "fault": record.fault_name,
        "kind": record.kind,
        "state": record.state.value,
        "pids": list(record.pids),
        "time": record.time,
        "node_id": node_id,
        "details": dict(record.details),
        "what": family.applied_text(record) if family is not None else "",
    }


def _combined(fault_name: str, kind: str, members: list[Summary], node_id: str) -> Summary:
    """One summary for a fault applied as members, one per pod (``what`` names each pod)."""
    times = [float(m["time"]) for m in members if m.get("time")]
    states = {str(m["state"]) for m in members}
    return {
        "run_id": members[0]["run_id"] if members else "",
        "fault": fault_name,
        "kind": kind,
        "state": states.pop() if len(states) == 1 else ",".join(sorted(states)),
        "pids": [p for m in members for p in m["pids"]],
        "time": max(times) if times else time.time(),
        "node_id": node_id,
        "details": {},
        "what": "; ".join(
            f"pod {pod_faults.pod_of_member(fault_name, str(m['fault']))}: {m.get('what', '')}" for m in members
        ),
        "members": [m["fault"] for m in members],
    }


def _family_of(fault: Any) -> FaultFamily:
    """The family that applies ``fault``; ``FaultError`` for a kind no installed family declares."""
    family = find_family(getattr(fault, "kind", ""))
    model = next((m for m in family.models if fault.kind == m.KIND), None) if family is not None else None
    if family is None or model is None or not isinstance(fault, model):
        kind = getattr(fault, "kind", type(fault).__name__)
        name = getattr(fault, "name", "?")
        raise FaultError(f"fault '{name}': kind {kind} is not supported by the chaos agent")
    return family


class _ChaosAgentActor:
    """Runs in a Ray worker on the target node. Use :class:`ChaosAgent`, not this class.

    Calls may arrive on up to ``max_concurrency`` threads; one lock serialises every call
    that reads or writes the journal, so inject and revert of one fault never interleave.
    Signalling is fast (milliseconds), so holding the lock keeps calls prompt.
    """

    def __init__(
        self,
        run_id: str,
        protected: list[tuple[int, float]],
        lease_ttl: float = LEASE_TTL,
        allowed_contexts: tuple[str, ...] = (),
    ) -> None:
        normal_priority(AGENT_NICE)  # faults are on the run's clock: never wait behind the load
        self._run_id = run_id
        self._allowed_contexts = allowed_contexts
        self._journal = Journal(run_id)
        self._lease_ttl = lease_ttl
        self._protected = [*protected, *protected_processes()]
        self._mine: dict[str, None] = {}  # faults this agent was asked to inject, in order
        self._members: dict[str, list[str]] = {}  # a fault with pods -> its member per pod here
        self._lock = threading.Lock()
        self._node_id = ray.get_runtime_context().get_node_id()

    def node_id(self) -> str:
        normal_priority(AGENT_NICE)  # again: threads Ray started after __init__ (the call pool) too
        return self._node_id

    def inject(self, fault: Any, pods: list[PodRef] | None = None) -> Summary:
        if pods:
            return self._inject_in_pods(fault, pods)
        family = _family_of(fault)
        with self._lock:
            self._mine[fault.name] = None
            try:
                ctx = InjectContext(
                    self._run_id,
                    self._journal,
                    lease_until=time.time() + self._lease_ttl,
                    protected=tuple(self._protected),
                    allowed_contexts=self._allowed_contexts,
                )
                record = family.inject(fault, ctx)
            except HarnessError as exc:  # a refused context or namespace is a FaultError to the run
                if isinstance(exc, FaultError):
                    raise
                raise FaultError(f"fault '{fault.name}': {exc}") from None
            except Exception as exc:  # a bug or an I/O error: still a FaultError to the caller
                log.exception("fault %s: inject failed", fault.name)
                raise FaultError(f"fault '{fault.name}': {type(exc).__name__}: {exc}") from exc
            finally:
                # After: the fault is journaled now, so a watchdog that was leaving sees it,
                # or this check finds none and starts one (watchdog module docstring). Off the
                # inject's path: forking this big process cost a first inject ~80 ms, and the
                # watchdog has the whole lease TTL to come up.
                self._ensure_watchdog_soon()
            return _summary(record, self._node_id)

    def _inject_in_pods(self, fault: Any, pods: list[PodRef]) -> Summary:
        """``fault`` in each of ``pods`` (all on this node): every pod is found and its member fault
        made (:mod:`harness.chaos.pods`) before any is applied; then each member is injected as an
        ordinary fault, journaled under its own name. Members already applied stay applied when a
        later one fails: the run reverts the fault on every node."""
        try:
            members = pod_faults.member_faults(fault, pods)
        except HarnessError as exc:
            raise FaultError(f"fault '{fault.name}': {exc}") from None
        self._members[fault.name] = [m.name for m in members]
        summaries = [self.inject(member) for member in members]
        return _combined(fault.name, fault.kind, summaries, self._node_id)

    def warm_up(self, kinds: list[str]) -> None:
        """Warm up the fault families of ``kinds`` and start the watchdog, before the run starts.

        Both cost tens of ms the first time (pyroute2, the kubernetes client, a fork of this
        process); paid here, they do not make the run's first fault late.
        """
        normal_priority(AGENT_NICE)
        wanted = frozenset(kinds)
        for family in {f for kind in wanted if (f := find_family(kind)) is not None}:
            family.warm_up(wanted & frozenset(family.kinds))
        self._ensure_watchdog()

    def _ensure_watchdog(self) -> None:
        try:
            watchdog.ensure_running(self._journal.directory)
        except Exception as exc:  # the fault is still journaled: harness recover can undo it
            log.error("could not start the watchdog for %s: %s", self._journal.directory, exc)

    def _ensure_watchdog_soon(self) -> None:
        threading.Thread(target=self._ensure_watchdog, name="harness-watchdog-start", daemon=True).start()

    def renew(self, ttl: float) -> float:
        """Extend the lease of every fault of this run to now + ``ttl``; returns the new expiry.

        Takes no lock: the lease file is replaced atomically, so a renewal never waits
        behind an inject or revert. Writes nothing before the first fault is journaled.
        """
        until = time.time() + ttl
        if self._mine and self._journal.path.exists():
            self._journal.renew(until)
        return until

    def revert(self, fault_name: str) -> Summary:
        with self._lock:
            members = self._members.get(fault_name)
            if not members:
                return self._revert(fault_name)
            summaries = [self._revert(name) for name in members]
        kind = str(summaries[0]["kind"]) if summaries else ""
        return _combined(fault_name, kind, summaries, self._node_id)

    def _revert(self, fault_name: str) -> Summary:
        record = self._journal.latest(fault_name)
        if record is None:
            return {
                "run_id": self._run_id,
                "fault": fault_name,
                "kind": "",
                "state": "not_injected",
                "pids": [],
                "time": time.time(),
                "node_id": self._node_id,
                "details": {},
            }
        try:
            revert_record(record, self._journal)
        except FaultError:
            raise
        except Exception as exc:
            log.exception("fault %s: revert failed", fault_name)
            raise FaultError(f"fault '{fault_name}': revert failed: {type(exc).__name__}: {exc}") from exc
        return _summary(self._journal.latest(fault_name) or record, self._node_id)

    def revert_all(self, retire: bool = False) -> list[Summary]:
        """Revert this agent's outstanding faults; with ``retire``, also retire a fully reverted journal.

        Retiring is left to :meth:`ChaosAgent.stop`: a retired journal no longer remembers
        which faults ran, so a later inject of the same name would act again.
        """
        out: list[Summary] = []
        with self._lock:
            current = self._journal.current()
            for name in self._mine:
                record = current.get(name)
                if record is None or not record.outstanding:
                    continue
                try:
                    out.append(self._revert(name))
                except FaultError as exc:
                    failed = _summary(record.advance(FaultState.REVERT_FAILED), self._node_id)
                    failed["error"] = str(exc)
                    out.append(failed)
            if retire:
                self._journal.retire()
        return out

    def active(self) -> list[str]:
        with self._lock:
            current = self._journal.current()
            return [name for name in self._mine if name in current and current[name].outstanding]

    def ping(self) -> float:
        return time.time()

    def matching(self, pattern: str) -> list[int]:
        """PIDs of the processes on this node whose command line matches ``pattern`` (a heal
        condition), harness itself and the processes it protects excluded; reads, changes nothing."""
        try:
            return [p.pid for p in resolve_targets(ProcessTarget(pattern=pattern), protected=self._protected)]
        except FaultError:  # none matches
            return []


def _actor_name(run_id: str, node_id: str | None) -> str:
    where = node_id or "any"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"harness-chaos-{run_id}-{where}")


class ChaosAgent:
    """A handle on the chaos agent of one run on one node.

    Every method returns within its timeout (``call_timeout``, or ``grace`` for
    :meth:`stop`) and raises :class:`~harness.errors.FaultError` on any failure: the agent's
    own error (its message names the fault and the reason), a timeout, or a dead actor.
    Inject and revert are idempotent per fault name, so the orchestrator may retry them.
    After :meth:`stop`, every call except ``stop`` raises ``FaultError``.
    """

    def __init__(self, handle: Any, run_id: str, node_id: str, name: str, call_timeout: float) -> None:
        self._handle = handle
        self._stopped = False
        self.run_id = run_id
        #: The node the actor runs on (hex node id), as reported by the actor itself.
        self.node_id = node_id
        #: The actor's name in the job's namespace.
        self.name = name
        self.call_timeout = call_timeout
        #: Seconds each fault's lease runs without a renewal.
        self.lease_ttl = LEASE_TTL
        #: The node's clock against the driver's (set by the orchestrator; journal times are node-local).
        self.clock = ClockOffset(0.0, 0.0)

    def __repr__(self) -> str:
        return f"ChaosAgent({self.name!r}, node_id={self.node_id!r})"

    @classmethod
    def start(
        cls,
        run_id: str,
        node_id: str | None = None,
        *,
        call_timeout: float = 30.0,
        start_timeout: float = 60.0,
        lease_ttl: float = LEASE_TTL,
        allowed_contexts: tuple[str, ...] = (),
    ) -> ChaosAgent:
        """Start (or join) the agent of ``run_id`` on ``node_id`` and wait until it answers.

        With a ``node_id`` the actor is pinned to that node (hard affinity: if the node is
        gone, start fails rather than injecting faults elsewhere); without one Ray places it
        (normally on the driver's node). It takes no CPU, so it never competes with load
        generators for placement, and it lives no longer than the driver. Starting twice for
        the same run and node returns a handle on the same actor. The driver passes itself
        and its ancestors as protected, so no pattern can match the harness process.
        Raises ``FaultError`` if the actor does not answer within ``start_timeout`` seconds.
        Faults are leased for ``lease_ttl`` seconds; keep them applied with :meth:`renew`.
        Kubernetes faults act only in ``allowed_contexts`` (the scenario's safety block).
        """
        name = _actor_name(run_id, node_id)
        options: dict[str, Any] = {
            "num_cpus": 0,
            "name": name,
            "get_if_exists": True,
            "lifetime": None,
            "max_concurrency": 4,
        }
        if node_id:
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id, soft=False)
        actor_class: Any = ray.remote(_ChaosAgentActor)
        handle = actor_class.options(**options).remote(
            run_id, protected_processes(), lease_ttl, tuple(allowed_contexts)
        )
        try:
            actual_node: str = ray.get(handle.node_id.remote(), timeout=start_timeout)
        except (GetTimeoutError, RayError) as exc:
            _kill(handle)
            where = f"node {node_id}" if node_id else "any node"
            reason = f"did not answer within {start_timeout:g}s" if isinstance(exc, GetTimeoutError) else str(exc)
            raise FaultError(f"chaos agent for run {run_id} on {where} could not start: {reason}") from None
        log.debug("chaos agent %s up on node %s", name, actual_node)
        agent = cls(handle, run_id, actual_node, name, call_timeout)
        agent.lease_ttl = lease_ttl
        return agent

    def _call(self, method: str, *args: Any, what: str | None = None, timeout: float | None = None) -> Any:
        """Call ``method`` on the actor and wait for it; every failure becomes a ``FaultError``."""
        what = what or method
        if self._stopped:
            raise FaultError(f"chaos agent {self.name} was stopped ({what})")
        ref = getattr(self._handle, method).remote(*args)
        return self._get(what, ref, timeout)

    def _get(self, what: str, ref: Any, timeout: float | None = None) -> Any:
        timeout = self.call_timeout if timeout is None else timeout
        try:
            return ray.get(ref, timeout=timeout)
        except GetTimeoutError:
            raise FaultError(f"chaos agent {self.name}: {what} did not answer within {timeout:g}s") from None
        except RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, FaultError):
                raise FaultError(str(cause)) from None
            raise FaultError(f"chaos agent {self.name}: {what} failed: {cause!r}") from None
        except RayActorError as exc:
            raise FaultError(f"chaos agent {self.name} is gone ({what}): {exc}") from None
        except RayError as exc:
            raise FaultError(f"chaos agent {self.name}: {what} failed: {exc}") from None

    def inject(self, fault: Fault, pods: list[PodRef] | None = None) -> Summary:
        """Inject ``fault`` on the agent's node; returns ``{fault, kind, state, pids, time, node_id, ...}``.

        The fault is journaled on the node before it is applied. Injecting a fault name that
        this run already injected returns its record and signals nothing. With ``pods`` (this
        node's pods of a fault with a pod selector) it is applied inside each, one journaled
        member fault per pod (:mod:`harness.chaos.pods`); revert by the fault's name reverts them all.
        """
        result: Summary = self._call("inject", fault, pods, what=f"inject {fault.name}")
        return result

    def warm_up(self, kinds: list[str], timeout: float = 30.0) -> None:
        """Load what faults of ``kinds`` need and start the node's watchdog; call before the run starts."""
        self._call("warm_up", kinds, what="warm up", timeout=timeout)

    def renew(self, ttl: float | None = None, timeout: float = 2.0) -> float:
        """Extend every fault lease of this run to now + ``ttl`` (default ``lease_ttl``) on the node.

        Idempotent; call it every :data:`RENEW_INTERVAL` seconds while faults may be
        active. Returns the new expiry (the node's epoch seconds); raises ``FaultError``
        after ``timeout`` seconds or if the actor is gone, so a caller can log and go on.
        """
        result: float = self._call("renew", self.lease_ttl if ttl is None else ttl, what="renew", timeout=timeout)
        return result

    def revert(self, fault_name: str) -> Summary:
        """Undo one fault; idempotent. A name never injected returns ``state: not_injected``."""
        result: Summary = self._call("revert", fault_name, what=f"revert {fault_name}")
        return result

    def revert_all(self) -> list[Summary]:
        """Undo every fault this agent injected that is still active; returns one summary each.

        Every fault is attempted; if any could not be reverted, ``FaultError`` is raised after
        the others were, naming the failures (they stay journaled for ``harness recover``).
        """
        results: list[Summary] = self._call("revert_all")
        _raise_failures(self.name, results)
        return results

    def active(self) -> list[str]:
        """Names of faults this agent injected that are not reverted yet, in injection order."""
        result: list[str] = self._call("active")
        return result

    def ping(self) -> float:
        """The agent's wall-clock time (``time.time()`` on its node): it is alive and answering."""
        result: float = self._call("ping")
        return result

    def matching(self, pattern: str, timeout: float = 2.0) -> list[int]:
        """PIDs of the node's processes whose command line matches ``pattern`` (harness's own excluded)."""
        result: list[int] = self._call("matching", pattern, what="match processes", timeout=timeout)
        return result

    def stop(self, grace: float = 5.0) -> list[Summary]:
        """Revert everything still active, then kill the actor. Safe to call more than once.

        The actor gets ``grace`` seconds to revert; it is killed whether or not it answered.
        Raises ``FaultError`` if it did not answer or some fault could not be reverted: those
        faults remain in the node's journal, and ``harness recover`` on that node undoes them.
        """
        if self._stopped:
            return []
        self._stopped = True
        try:
            results: list[Summary] = self._get("stop", self._handle.revert_all.remote(True), timeout=grace)
        except FaultError as exc:
            raise FaultError(
                f"{exc}; faults may still be active on node {self.node_id}: run 'harness recover' there"
            ) from None
        finally:
            _kill(self._handle)
        _raise_failures(self.name, results)
        return results


def _raise_failures(name: str, results: list[Summary]) -> None:
    failed = [r for r in results if r.get("state") == FaultState.REVERT_FAILED.value]
    if failed:
        reasons = "; ".join(str(r.get("error") or r["fault"]) for r in failed)
        raise FaultError(f"chaos agent {name}: could not revert {len(failed)} fault(s): {reasons}")


def _kill(handle: Any) -> None:
    try:
        ray.kill(handle, no_restart=True)
    except (RayError, ValueError) as exc:
        log.debug("ray.kill of chaos agent failed: %s", exc)
