"""Heal times, measured from the system's side while the run goes.

After a fault ends (or, for a kill, which has nothing to revert, right after the kill), the
run polls the fault's heal condition (:class:`~harness.scenario.heal.HealCheck`: a health URL,
a process pattern, Ready pods, available replicas) every
:data:`~harness.scenario.heal.POLL_INTERVAL` seconds on the driver's clock until it holds or
the run's load ends; :meth:`HealWatch.stop` hands one
:class:`~harness.measure.heal.HealTime` per fault to the judge. Each fault is polled from its
own thread, so a slow answer (a URL that times out) delays no step of the plan and no other
fault's polls.

Where each condition is asked: a URL and the Kubernetes API from the driver (the scenario's
checks allowed the URL's host; reads happen only in an allowed kube context), a process
pattern on the fault's node, by its chaos agent. A fault is watched when it has a ``heal:`` key
or an SLO on ``heal_time`` names it (then its kind's default condition serves).
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from harness.chaos.agent import ChaosAgent
from harness.chaos.kube import KubeApi, connect
from harness.chaos.kube_health import pods_ready, replicas_available
from harness.errors import HarnessError
from harness.judge.units import format_duration
from harness.measure.heal import HealTime
from harness.run.recorder import Recorder
from harness.scenario import Scenario
from harness.scenario.faults import FaultBase
from harness.scenario.heal import POLL_INTERVAL, DeploymentHeal, HealCheck, PodsHeal, watched_faults

__all__ = ["HealWatch"]

log = logging.getLogger(__name__)

URL_TIMEOUT = 1.0  # s: one poll of a health URL; a slower answer is no answer


class Probe(Protocol):
    """One heal condition, asked once: whether it holds now, and if not, why (for messages)."""

    def whole(self) -> tuple[bool, str]: ...


class _Url:
    def __init__(self, url: str) -> None:
        self.url = url
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy

    def whole(self) -> tuple[bool, str]:
        try:
            with self._opener.open(self.url, timeout=URL_TIMEOUT) as answer:
                status = int(answer.status)
        except urllib.error.HTTPError as exc:
            return False, f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            return False, str(getattr(exc, "reason", None) or exc)
        return 200 <= status < 300, f"HTTP {status}"


class _Pattern:
    def __init__(self, agent: ChaosAgent, pattern: str) -> None:
        self.agent, self.pattern = agent, pattern

    def whole(self) -> tuple[bool, str]:
        pids = self.agent.matching(self.pattern)
        return bool(pids), f"no process matches '{self.pattern}'"


class _Pods:
    def __init__(self, read: Callable[[], tuple[int, int]], want: int) -> None:
        self.read, self.want = read, want

    def whole(self) -> tuple[bool, str]:
        ready, total = self.read()
        return ready >= self.want, f"{ready} of {self.want} pods Ready ({total} matching)"


class _Replicas:
    def __init__(self, read: Callable[[], tuple[int, int]]) -> None:
        self.read = read

    def whole(self) -> tuple[bool, str]:
        desired, available = self.read()
        return desired > 0 and available >= desired, f"{available} of {desired} replicas available"


@dataclass
class _Watched:
    fault: FaultBase
    check: HealCheck
    probe: Probe
    began: float | None = None
    thread: threading.Thread | None = None
    result: HealTime | None = None
    polls: int = 0
    last_error: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


class HealWatch:
    """The heal conditions of one run's watched faults. Not reusable: one per run.

    ``agent_of`` gives the chaos agent on a fault's node (for a pattern); a pods or deployment
    condition is read in the kubeconfig's context, which ``safety.allowed_contexts`` must allow.
    Each fault's healing begins once (:meth:`fault_started` for a kill, :meth:`fault_ended` for
    the others) and never after :meth:`stop`.
    """

    def __init__(
        self,
        scenario: Scenario,
        recorder: Recorder,
        agent_of: Callable[[str], ChaosAgent | None],
        interval: float = POLL_INTERVAL,
    ) -> None:
        self._scenario = scenario
        self._recorder = recorder
        self._agent_of = agent_of
        self._interval = interval
        self._stop = threading.Event()
        self._watched: dict[str, _Watched] = {}

    def start(self) -> None:
        """Build each watched fault's probe, before the load starts: a pods condition without a
        count reads how many pods are Ready now (raises ``HarnessError`` when it cannot)."""
        faults = watched_faults(self._scenario.faults, self._scenario.slos)
        kube: KubeApi | None = None
        if any(check.kubernetes for f in faults if (check := f.heal_check()) is not None):
            kube = connect(self._scenario.safety.allowed_contexts)
        for fault in faults:
            check = fault.heal_check()
            assert check is not None  # watched_faults keeps only these
            self._watched[fault.name] = _Watched(fault, check, self._probe(fault.name, check, kube))

    def _probe(self, name: str, check: HealCheck, kube: KubeApi | None) -> Probe:
        if check.url is not None:
            return _Url(check.url)
        if check.pattern is not None:
            agent = self._agent_of(name)
            if agent is None:
                raise HarnessError(f"fault '{name}': no chaos agent on its node to look for '{check.pattern}'")
            return _Pattern(agent, check.pattern)
        assert kube is not None  # made above when any condition reads the Kubernetes API
        api = kube
        if check.pods is not None:
            pods: PodsHeal = check.pods

            def read_pods() -> tuple[int, int]:
                return pods_ready(api, pods.namespace, pods.selector, name)

            want = pods.count if pods.count is not None else read_pods()[0]
            return _Pods(read_pods, max(1, want))
        deployment: DeploymentHeal | None = check.deployment
        assert deployment is not None
        return _Replicas(lambda: replicas_available(api, deployment.namespace, deployment.deployment, name))

    def fault_started(self, name: str, at: float) -> None:
        """Fault ``name`` was injected at ``at`` (epoch s, driver's clock): a kill is watched from now."""
        watched = self._watched.get(name)
        if watched is not None and watched.fault.HEALS_FROM_START:
            self._begin(watched, at)

    def fault_ended(self, name: str, at: float) -> None:
        """Fault ``name`` was reverted at ``at`` (epoch s, driver's clock): any other fault is watched from now."""
        watched = self._watched.get(name)
        if watched is not None and not watched.fault.HEALS_FROM_START:
            self._begin(watched, at)

    def _begin(self, watched: _Watched, at: float) -> None:
        if watched.began is not None or self._stop.is_set():
            return
        watched.began = at
        name = f"harness-heal-{watched.fault.name}"
        watched.thread = threading.Thread(target=self._watch, args=(watched,), name=name, daemon=True)
        watched.thread.start()

    def _watch(self, watched: _Watched) -> None:
        """Poll until the condition holds or the run ends; record the heal as an event."""
        assert watched.began is not None
        due = time.monotonic()
        while not self._stop.is_set():
            sent = time.time()
            try:
                whole, why = watched.probe.whole()
            except Exception as exc:  # a poll that fails is a poll that did not find it whole
                whole, why = False, str(exc) or type(exc).__name__
            with watched.lock:
                watched.polls += 1
                if whole:
                    watched.result = self._healed(watched, sent)
                    break
                watched.last_error = why
            due += self._interval
            self._stop.wait(max(0.0, due - time.monotonic()))
        healed = watched.result
        if healed is not None and healed.healed is not None:
            took = format_duration(round(healed.seconds or 0.0, 2))
            text = f"fault {watched.fault.name} healed after {took}: {watched.check.describe()}"
            self._recorder.event("heal", watched.fault.name, "end", text, healed.healed)

    def _healed(self, watched: _Watched, at: float | None) -> HealTime:
        assert watched.began is not None
        return HealTime(
            fault=watched.fault.name,
            check=watched.check.describe(),
            began=watched.began,
            healed=at,
            watched_until=at if at is not None else time.time(),
            polls=watched.polls,
            from_start=watched.fault.HEALS_FROM_START,
            last_error="" if at is not None else watched.last_error,
        )

    def stop(self) -> dict[str, HealTime]:
        """Stop polling (the run's load ended) and return the heal time of every fault whose healing
        began, by name; a fault that never healed has ``healed`` None. Idempotent."""
        self._stop.set()
        for watched in self._watched.values():
            if watched.thread is not None:
                watched.thread.join(URL_TIMEOUT + 2.0)
        out: dict[str, HealTime] = {}
        for name, watched in self._watched.items():
            if watched.began is None:
                continue
            with watched.lock:
                if watched.result is None:
                    watched.result = self._healed(watched, None)
                    self._recorder.note(f"fault {name} did not heal within the run: {watched.check.describe()}")
                out[name] = watched.result
        return out
