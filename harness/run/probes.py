"""The scenario's probes during a run: checked before anything starts, then polled on their own thread.

:func:`preflight` asks every probe once before the run: a source that does not answer, or a query
that gives no single number (several series, an error), is :class:`~harness.errors.ProbeFailed`,
exit 2 with nothing started. :class:`ProbePoller` then polls every probe each ``every`` seconds
from the load start on a thread of its own (a slow query never delays a step of the plan or the
per-second work), writes each value as a ``harness_probes`` point, and queues it as a typed
:class:`~harness.judge.probe_samples.ProbeSample` that :class:`ProbeObserver` hands, on the poll
thread, to the SLO book and the guards before they judge a second. A poll that fails mid-run is
recorded (an event of kind ``probe`` when a probe starts failing and when it answers again, and
a note for the user), and the SLOs on it have no data for that poll.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

from harness.errors import ProbeFailed
from harness.judge.probe_samples import ProbeSample
from harness.judge.summary import ProbeSeries, ProbeValue
from harness.measure.aggregator import LateWindow
from harness.results.points import probe_point
from harness.results.promql import PromQuery
from harness.results.query import InfluxQuery
from harness.run.recorder import Recorder
from harness.run.seconds import Second
from harness.scenario import Scenario
from harness.scenario.probes import Probe, Probes, render

__all__ = ["ProbeObserver", "ProbePoller", "preflight"]

log = logging.getLogger(__name__)

STOP_TIMEOUT = 5.0  # how long the end of a run waits for a poll in progress (s)


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Sources:
    """The probes' query clients, and one poll of one probe."""

    def __init__(self, probes: Probes, run_id: str, scenario: str) -> None:
        self.probes = probes
        self.fixed = {"run_id": run_id, "scenario": scenario, **probes.labels}
        self.prometheus = PromQuery(probes.prometheus, probes.timeout) if probes.prometheus else None
        source = probes.influxdb
        self.influx = InfluxQuery(source.url, source.database, timeout=probes.timeout) if source else None

    def text(self, probe: Probe, start: float, now: float) -> str:
        values = {
            **self.fixed,
            "start": f"{start:.3f}",
            "start_rfc3339": _rfc3339(start),
            "now": f"{now:.3f}",
            "now_rfc3339": _rfc3339(now),
            "elapsed": max(1, math.ceil(now - start)),
        }
        return render(probe.query, values)

    def number(self, probe: Probe, start: float, now: float) -> float:
        """The probe's value now; ProbeFailed with the reason."""
        query = self.text(probe, start, now)
        if probe.promql is not None:
            assert self.prometheus is not None  # the scenario's model makes sure
            return self.prometheus.number(query, now)
        assert self.influx is not None
        try:
            series = self.influx.query_series(query, epoch="ns")
        except Exception as exc:  # ResultsError: unreachable, an HTTP or statement error
            raise ProbeFailed(str(exc)) from None
        rows = [row for s in series for row in s.values]
        if len(rows) > 1:
            raise ProbeFailed(f"the query gave {len(rows)} rows; a probe is one number: aggregate it or LIMIT 1")
        if not rows or rows[0][-1] is None:
            return math.nan
        try:
            return float(rows[0][-1])
        except (TypeError, ValueError):
            raise ProbeFailed(f"the query's last column is {rows[0][-1]!r}, not a number") from None


def preflight(scenario: Scenario) -> None:
    """Ask every probe once; the first problem of each is ProbeFailed (exit 2), all at once."""
    if scenario.probes is None:
        return
    sources = _Sources(scenario.probes, "preflight", scenario.name)
    now = time.time()
    problems = []
    for i, probe in enumerate(scenario.probes.queries):
        try:
            sources.number(probe, now, now)
        except ProbeFailed as exc:
            problems.append(f"{scenario.source}: probes.queries[{i}] ({probe.name}): {exc}")
    if problems:
        raise ProbeFailed("\n".join([*problems, "nothing was started"]))


class ProbePoller:
    """Polls every probe each ``every`` seconds from :meth:`start` until :meth:`stop`. Thread-safe."""

    def __init__(self, probes: Probes, recorder: Recorder, scenario: str) -> None:
        self.probes = probes
        self.recorder = recorder
        self.scenario = scenario
        self.sources = _Sources(probes, recorder.run_id, scenario)
        self.start_epoch = 0.0
        self._queue: deque[ProbeSample] = deque()
        self._taken: list[ProbeSample] = []  # every sample, for the summary
        self._failing: dict[str, str] = {}  # probe -> the reason its last poll failed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, start_epoch: float) -> None:
        self.start_epoch = start_epoch
        self._thread = threading.Thread(target=self._run, name="harness-probes", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling; a poll in progress is waited for (up to ``STOP_TIMEOUT``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)

    def take(self) -> list[ProbeSample]:
        """The samples polled since the last call, oldest first."""
        taken = []
        while self._queue:
            taken.append(self._queue.popleft())
        return taken

    def series(self) -> list[ProbeSeries]:
        """Every probe's values over the run, for summary.json."""
        out = []
        for probe in self.probes.queries:
            mine = [s for s in list(self._taken) if s.name == probe.name]
            values = [
                ProbeValue(round(s.at - self.start_epoch, 3), None if math.isnan(s.value) else s.value)
                for s in mine
                if not s.failed
            ]
            failures = sum(1 for s in mine if s.failed)
            out.append(ProbeSeries(probe.name, probe.language, probe.query, values, failures))
        return out

    def _run(self) -> None:
        ticks = 0
        while not self._stop.is_set():
            try:
                self.poll_all()
            except Exception:  # a bug here must never break the run: log and go on
                log.exception("probe poll failed")
            ticks += 1
            wait = self.start_epoch + ticks * self.probes.every - time.time()
            if self._stop.wait(max(0.0, wait)):
                break

    def poll_all(self) -> None:
        for probe in self.probes.queries:
            now = time.time()
            try:
                sample = ProbeSample(probe.name, now, self.sources.number(probe, self.start_epoch, now))
            except ProbeFailed as exc:
                sample = ProbeSample(probe.name, now, error=str(exc))
            self._record(sample)

    def _record(self, sample: ProbeSample) -> None:
        self._taken.append(sample)
        self._queue.append(sample)
        name = sample.name
        if not sample.failed and not math.isnan(sample.value):
            self.recorder.write([probe_point(self.recorder.run_id, self.scenario, name, sample.at, sample.value)])
        if sample.failed and name not in self._failing:
            self._failing[name] = sample.error
            text = f"probe {name} failed: {sample.error}"
            self.recorder.event("probe", name, "start", text, sample.at)
            self.recorder.note(f"{self.recorder.at(sample.at)} {text}")
        elif not sample.failed and name in self._failing:
            del self._failing[name]
            self.recorder.event("probe", name, "end", f"probe {name} answers again", sample.at)
            self.recorder.note(f"{self.recorder.at(sample.at)} probe {name} answers again")


class ProbeSink(Protocol):
    """What judges probe samples: the SLO book, the ladders' step books, the guards, the steady starts."""

    def observe_probe(self, sample: ProbeSample) -> None: ...


class ProbeObserver:
    """Hands the probe samples polled so far to each of ``sinks`` before they judge a second (it
    comes first among the per-second observers), and once more at the end of the run."""

    def __init__(self, poller: ProbePoller, sinks: Sequence[ProbeSink]) -> None:
        self.poller = poller
        self.sinks = tuple(sinks)

    def on_second(self, second: Second) -> None:
        self.flush()

    def on_late(self, late: LateWindow) -> None:
        pass

    def flush(self) -> None:
        for sample in self.poller.take():
            for sink in self.sinks:
                sink.observe_probe(sample)
