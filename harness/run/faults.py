"""The run's chaos agents: one per node a fault acts on, its faults leased while the run lives.

:class:`FaultAgents` starts the agents (in parallel, each pinned to its node with its clock
measured), keeps the run's fault leases renewed from a heartbeat thread of its own, injects
and reverts faults on the plan's schedule, and at teardown reverts whatever is still active
and stops every agent, even when one of them fails.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from harness.chaos.agent import RENEW_INTERVAL, ChaosAgent
from harness.chaos.kubelet import PodRef
from harness.errors import ConfigError, FaultError, HarnessError
from harness.judge.summary import AgentEntry
from harness.measure.clocks import measure
from harness.run.nodes import FaultPlacement, Node
from harness.run.recorder import Recorder
from harness.scenario import Scenario

__all__ = ["FaultAgents", "Injected", "choose_pods"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Done:
    """One node's answer to an inject or revert."""

    node: Node
    agent: ChaosAgent
    info: dict[str, Any]

    def at(self) -> float:
        """When it was done, on the driver's clock."""
        return float(self.info["time"]) - self.agent.clock.offset_s if self.info.get("time") else time.time()


@dataclass(frozen=True)
class Injected:
    """A fault applied: its one-line description and when (epoch, on the driver's clock)."""

    name: str
    text: str
    at: float


def choose_pods(scenario: Scenario, recorder: Recorder | None = None) -> dict[str, tuple[PodRef, ...]]:
    """The pods each fault with a pod selector acts inside, listed now through the API server.

    Chosen once, before anything starts: the run acts inside these pods even if others match
    later. Any problem (a refused context or namespace, no pod matching) is a ``ConfigError``.
    """
    if not any(f.pods is not None for f in scenario.faults):
        return {}
    from harness.chaos.kube import choose_pods as choose  # the client, only when needed

    try:
        choices = choose(scenario.faults, scenario.safety.allowed_contexts)
    except ConfigError:
        raise
    except HarnessError as exc:
        raise ConfigError(f"{scenario.source or scenario.name}: {exc}") from None
    for name, choice in choices.items():
        if recorder is not None:
            recorder.note(f"fault {name} acts inside {choice.describe()}")
    return {name: choice.pods for name, choice in choices.items()}


class FaultAgents:
    """The chaos agents of one run and the faults active now. Not reusable: one per run."""

    def __init__(self, scenario: Scenario, run_id: str, placement: FaultPlacement, recorder: Recorder) -> None:
        self.scenario = scenario
        self.run_id = run_id
        self.placement = placement
        self.agents: dict[str, ChaosAgent] = {}  # node id -> the run's chaos agent there
        self.report: list[AgentEntry] = []
        self._recorder = recorder
        self._active: dict[str, float] = {}  # fault name -> when it was injected
        self._lock = threading.Lock()
        self._heartbeat: threading.Thread | None = None
        self._stop_heartbeat = threading.Event()

    def active(self) -> list[str]:
        """The faults injected and not reverted yet, in injection order."""
        with self._lock:
            return list(self._active)

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        """One chaos agent on each node a fault acts on, pinned there, its clock measured.

        Agents start in parallel (each waits for its node's fault families to load and its
        watchdog to come up); any that fails stops the run before the load starts.
        """
        if not self.scenario.faults:
            return
        kinds: dict[str, set[str]] = {}
        for fault in self.scenario.faults:
            for node, _pods in self.placement.sites(fault.name):
                kinds.setdefault(node.node_id, set()).add(fault.kind)
        contexts = tuple(self.scenario.safety.allowed_contexts)

        def start(node: Node) -> ChaosAgent:
            agent = ChaosAgent.start(self.run_id, node_id=node.node_id, allowed_contexts=contexts)
            agent.warm_up(sorted(kinds[node.node_id]))
            agent.clock = measure(agent.ping)
            return agent

        nodes = self.placement.nodes()
        errors = []
        with ThreadPoolExecutor(max_workers=len(nodes), thread_name_prefix="harness-agent") as pool:
            futures = [pool.submit(start, node) for node in nodes]
            for node, future in zip(nodes, futures, strict=True):
                try:
                    self.agents[node.node_id] = future.result()
                except HarnessError as exc:
                    errors.append(exc)
        for node in nodes:
            agent = self.agents.get(node.node_id)
            if agent is not None:
                faults = sorted(
                    f.name
                    for f in self.scenario.faults
                    if any(n.node_id == node.node_id for n, _ in self.placement.sites(f.name))
                )
                clock = agent.clock.to_json()
                self.report.append(
                    AgentEntry(
                        node.node_id, node.ip, node.hostname, faults, clock["offset_ms"], clock["uncertainty_ms"]
                    )
                )
        if errors:
            raise errors[0]
        self._heartbeat = threading.Thread(target=self._renew_leases, name="harness-lease", daemon=True)
        self._heartbeat.start()

    def _renew_leases(self) -> None:
        """The heartbeat thread: renew the run's fault leases every ``RENEW_INTERVAL`` seconds.

        Its own thread, so neither the clock thread nor the poll thread ever waits on the
        agent for it. A failed renewal is logged and the run goes on: if renewals keep
        failing, the node's watchdog reverts the faults when their lease lapses, which is
        the point of a lease.
        """
        agents = list(self.agents.values())

        def renew(agent: ChaosAgent) -> None:
            try:
                agent.renew(timeout=RENEW_INTERVAL)
            except FaultError as exc:
                if not self._stop_heartbeat.is_set():  # not the agent being stopped at teardown
                    log.warning("lease renewal failed on %s: %s", agent.node_id[:8], exc)

        # One node's agent slow to answer must not hold up the renewals of the others.
        with ThreadPoolExecutor(max_workers=len(agents), thread_name_prefix="harness-renew") as pool:
            while not self._stop_heartbeat.wait(RENEW_INTERVAL):
                list(pool.map(renew, agents))

    # ------------------------------------------------------------------ the schedule

    def agent_of(self, fault_name: str) -> ChaosAgent | None:
        """The chaos agent on the node fault ``fault_name`` acts on (None before :meth:`start`)."""
        return self.agents.get(self.placement.node_of(fault_name).node_id)

    def _on_each(self, name: str, call: Callable[[ChaosAgent, list[PodRef]], dict[str, Any]]) -> list[_Done]:
        """``call`` on the agent of every node fault ``name`` acts on, in parallel; every failure
        is collected and the first raised once all answered."""
        placed = self.placement.sites(name)
        sites = [(self.agents[n.node_id], n, list(p)) for n, p in placed if n.node_id in self.agents]
        if len(sites) == 1:
            agent, node, pods = sites[0]
            return [_Done(node, agent, call(agent, pods))]
        with ThreadPoolExecutor(max_workers=max(1, len(sites)), thread_name_prefix="harness-fault") as pool:
            futures = [(agent, node, pool.submit(call, agent, pods)) for agent, node, pods in sites]
        done, errors = [], []
        for agent, node, future in futures:
            try:
                done.append(_Done(node, agent, future.result()))
            except FaultError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
        return done

    def inject(self, index: int) -> Injected:
        """Inject fault ``index`` of the scenario (on every node it acts on, in parallel); raises
        ``FaultError`` (and it is not active then: what some nodes applied is reverted)."""
        fault = self.scenario.faults[index]
        with self._lock:
            self._active[fault.name] = time.time()
        try:
            done = self._on_each(fault.name, lambda agent, pods: agent.inject(fault, pods or None))
        except FaultError:
            with contextlib.suppress(FaultError):  # a pod fault may have landed on other nodes
                self._on_each(fault.name, lambda agent, _pods: agent.revert(fault.name))
            with self._lock:
                self._active.pop(fault.name, None)
            raise
        parts = []
        for d in done:
            what = str(d.info.get("what") or "applied")  # as the fault's family says it
            on = d.node.name if d.agent.node_id != self.placement.default.node_id or fault.pods else ""
            parts.append(f"{what} (on {on})" if on else what)
        text = f"{fault.kind} {'; '.join(parts)}" + (f": {fault.description}" if fault.description else "")
        return Injected(fault.name, text, max(d.at() for d in done))

    def revert(self, name: str) -> float | None:
        """Revert an active fault on every node it acts on; returns when (epoch, driver's clock),
        None when it is not active."""
        with self._lock:
            active = name in self._active
        if not active or not any(n.node_id in self.agents for n, _ in self.placement.sites(name)):
            return None
        done = self._on_each(name, lambda agent, _pods: agent.revert(name))
        with self._lock:
            self._active.pop(name, None)
        return max(d.at() for d in done)

    # ------------------------------------------------------------------ teardown

    def teardown(self) -> None:
        """Revert every active fault, then stop every agent (each reverts what it still holds).

        Every agent is stopped even when a revert or another agent fails; the first failure
        to stop is raised after all of them were tried (its faults stay journaled for
        ``harness recover`` and leased for the watchdog).
        """
        if not self.agents:
            return
        try:
            for name in self.active():
                try:
                    at = self.revert(name)
                    if at is not None:
                        self._recorder.event("fault", name, "end", f"fault {name} reverted", at)
                except HarnessError as exc:  # the others are still reverted one by one
                    self._recorder.note(f"revert of {name} failed, its agent reverts everything it holds: {exc}")
        finally:
            try:
                self._stop_agents()
            finally:
                self._stop_renewing()
            for name in self.active():
                with self._lock:
                    self._active.pop(name)
                self._recorder.event("fault", name, "end", f"fault {name} reverted at teardown", time.time())

    def _stop_agents(self) -> None:
        """Stop every agent, all of them even if one fails."""
        failures: list[HarnessError] = []
        with ThreadPoolExecutor(max_workers=len(self.agents), thread_name_prefix="harness-agent-stop") as pool:
            for future in [pool.submit(agent.stop) for agent in self.agents.values()]:
                try:
                    future.result()
                except HarnessError as exc:
                    failures.append(exc)
        if failures:
            raise failures[0]

    def _stop_renewing(self) -> None:
        self._stop_heartbeat.set()
        if self._heartbeat is not None:
            self._heartbeat.join(RENEW_INTERVAL * 3)
            self._heartbeat = None
