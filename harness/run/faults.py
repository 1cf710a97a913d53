"""The run's chaos agents: one per node a fault acts on, its faults leased while the run lives.

:class:`FaultAgents` starts the agents (in parallel, each pinned to its node with its clock
measured), keeps the run's fault leases renewed from a heartbeat thread of its own, injects
and reverts faults on the plan's schedule, and at teardown reverts whatever is still active
and stops every agent, even when one of them fails.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from harness.chaos.agent import RENEW_INTERVAL, ChaosAgent
from harness.chaos.ladder import step_fault
from harness.errors import FaultError, HarnessError
from harness.judge.summary import AgentEntry
from harness.measure.clocks import measure
from harness.run.nodes import FaultPlacement, Node
from harness.run.recorder import Recorder
from harness.scenario import Scenario
from harness.scenario.faults import FaultBase

__all__ = ["FaultAgents", "Injected"]


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Injected:
    """A fault applied: its one-line description and when (epoch, on the driver's clock)."""

    name: str
    text: str
    at: float


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
        # A ladder's fault is applied step by step, each step journaled under a name of its own
        # (harness.chaos.ladder): the instances listed at its first step, the journal name of
        # what is applied now, and how many instances the current step acts on, of how many.
        self._instances: dict[str, list[str]] = {}
        self._journaled: dict[str, str] = {}
        self.reach: dict[str, tuple[int, int]] = {}
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
            kinds.setdefault(self.placement.node_of(fault.name).node_id, set()).add(fault.kind)
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
                faults = sorted(f.name for f in self.scenario.faults if self.placement.node_of(f.name) is node)
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

    def _agent_of(self, fault_name: str) -> ChaosAgent | None:
        return self.agents.get(self.placement.node_of(fault_name).node_id)

    def inject(self, index: int, rung: int | None = None) -> Injected:
        """Inject fault ``index`` of the scenario; raises ``FaultError`` (and it is not active then).

        With ``rung``, a ladder's step: the first lists the instances the target selects (on the
        fault's node), each applies the fault to the first so many of them; a later step reverts
        the step before it and applies the wider one (a few milliseconds apart).
        """
        fault = self.scenario.faults[index]
        agent = self._agent_of(fault.name)
        assert agent is not None
        applied, reach = self._ladder_step(fault, agent, rung) if rung is not None else (fault, "")
        with self._lock:
            self._active[fault.name] = time.time()
        try:
            info = agent.inject(applied)
        except FaultError:
            with self._lock:
                self._active.pop(fault.name, None)
            raise
        self._journaled[fault.name] = applied.name
        what = str(info.get("what") or "applied") + reach  # as the fault's family says it
        text = f"{fault.kind} {what}" + (f": {fault.description}" if fault.description else "")
        if agent.node_id != self.placement.default.node_id:
            text += f" (on {self.placement.node_of(fault.name).name})"
        done = float(info["time"]) - agent.clock.offset_s if info.get("time") else time.time()
        return Injected(fault.name, text, done)

    def _ladder_step(self, fault: FaultBase, agent: ChaosAgent, rung: int) -> tuple[FaultBase, str]:
        """Step ``rung`` of ``fault``'s ladder, to inject next, and the words for it; reverts the step
        before it. The instances are listed on the fault's node when the ladder starts."""
        if rung == 1 or fault.name not in self._instances:
            self._instances[fault.name] = agent.instances(fault)
        step = step_fault(fault, self._instances[fault.name], rung)
        previous = self._journaled.get(fault.name)
        if previous is not None:
            agent.revert(previous)
        self.reach[fault.name] = (step.acts_on, step.found)
        assert fault.radius is not None
        return step.fault, f" at step {rung} (radius {fault.radius.steps[rung - 1]}): {step.text}"

    def revert(self, name: str) -> float | None:
        """Revert an active fault; returns when (epoch, driver's clock), None when it is not active."""
        agent = self._agent_of(name)
        with self._lock:
            active = name in self._active
        if not active or agent is None:
            return None
        info = agent.revert(self._journaled.get(name, name))
        with self._lock:
            self._active.pop(name, None)
        return float(info["time"]) - agent.clock.offset_s if info.get("time") else time.time()

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
