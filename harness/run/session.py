"""One run, from a scenario file to its verdict: what ``harness run`` and ``harness gate`` call.

:func:`run_session` checks everything that can be checked before anything starts (the
scenario, a gate's SLOs, the results token, the faults' preflight, a Ray address's token;
each an exit 2 with nothing started), resolves the baseline, opens the results sink,
records itself as the run's driver (so ``harness runs`` can tell a live run from a dead
one), runs the plan (:class:`~harness.run.orchestrator.Orchestrator`), and writes what the
run leaves behind: ``summary.json``, JUnit XML, the scenario as run and the HTML report.

The terminal is the caller's: everything shown goes through a :class:`RunView`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from harness import paths
from harness.errors import ConfigError, ResultsError
from harness.judge.summary import ResultsSummary, RunSummary, from_json

if TYPE_CHECKING:  # imported where used: a refused scenario must not wait for Ray to load
    from harness.results.samples import BaselineRun
    from harness.run.seconds import LiveStatus
    from harness.scenario import Overrides, Scenario

Say = Callable[[str], None]

__all__ = ["ProgressView", "RunRequest", "RunView", "results_token", "run_session"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRequest:
    """What the command line asked for (``harness run`` / ``harness gate``)."""

    scenario_file: Path
    ray_address: str | None = None
    processes: int | None = None  # Locust processes per generator; None: the scenario's
    results_url: str | None = None  # None: the scenario's
    results_token_env: str | None = None  # the variable holding the results token; None: the scenario's
    junit: Path | None = None  # JUnit XML to write (a gate writes runs/<id>/junit.xml by default)
    baseline: str | None = None  # a run id or "last-pass"
    run_id: str | None = None  # None: scenario name, time and a random suffix
    gate: bool = False  # strict: SLOs required, JUnit always written
    invoked_at: float = field(default_factory=time.time)
    overrides: Overrides | None = None  # -e, --set and the shortcuts (docs/environments.md)


class ProgressView(Protocol):
    """The live progress of a run."""

    def update(self, status: LiveStatus) -> None:
        """A second closed: what it was like."""

    def event(self, text: str) -> None:
        """Something happened that the user should see now (a fault, a loss, an abort)."""


class RunView(Protocol):
    """Where a run shows itself: the terminal of ``harness run``."""

    def say(self, text: str) -> None:
        """One line for the user."""

    def progress(self, run_id: str, duration: float) -> AbstractContextManager[ProgressView]:
        """The live progress display, for as long as the run's load runs."""

    def verdict(self, summary: RunSummary) -> None:
        """The verdict table and reason, once the run is judged."""


def results_token(env_name: str | None, named_by: str = "results.token_env") -> str | None:
    """The secret in the environment variable ``env_name`` (named by the scenario key or option ``named_by``)."""
    if not env_name:
        return None
    value = os.environ.get(env_name)
    if not value:
        raise ConfigError(f"{named_by} names {env_name}, but that environment variable is not set")
    return value


def setup_logging() -> None:
    """The debug log of the run (``$HARNESS_DATA_DIR/harness.log``): tracebacks go there, never to the terminal."""
    handler = logging.FileHandler(paths.data_dir() / "harness.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def run_session(request: RunRequest, view: RunView) -> RunSummary:
    """Run the scenario of ``request``; returns its summary (its ``exit_code`` is the verdict's).

    Raises ``ScenarioError`` / ``ConfigError`` (exit 2) before anything starts; after the run
    started, an error that leaves no verdict (a second Ctrl-C exits at once, a bug) is noted
    in the run's driver record before it propagates.
    """
    from harness.run.signals import terminate_as_interrupt

    terminate_as_interrupt()
    from harness.chaos.preflight import check
    from harness.load.shape import shape_stages
    from harness.plan import compile_plan
    from harness.run.cluster import check_ray_address
    from harness.scenario import read_scenario

    read = read_scenario(request.scenario_file, request.overrides)
    loaded = shape_stages(read.scenario)  # a LoadTestShape's ticks as stages
    hide = read.redact if read.secrets else None  # values from secret variables are never shown
    if hide is not None:
        view = _HiddenView(view, hide)
    plan = compile_plan(loaded)
    if request.gate and not loaded.slos:
        raise ConfigError(f"{request.scenario_file}: a gate needs at least one SLO under 'slos:' to decide on")
    if request.results_token_env:
        token = results_token(request.results_token_env, "--results-token-env")
    else:
        token = results_token(loaded.results.token_env)
    check(loaded)  # a fault that could never be applied stops the run here (exit 2)
    from harness.run.probes import preflight as probe_preflight

    probe_preflight(loaded)  # a probe source that does not answer stops the run here (exit 2)
    check_ray_address(request.ray_address)  # joining a cluster without its token: exit 2 before connecting

    from harness.results.sink import open_results
    from harness.review.runs import note_driver_exit, write_driver_record
    from harness.run.orchestrator import Orchestrator, RunOptions, new_run_id

    rid = request.run_id or new_run_id(loaded.name)
    url = request.results_url or loaded.results.url
    against = _baseline(request.baseline, loaded, rid, url, token, view.say) if request.baseline else None
    directory = paths.run_dir(rid)
    setup_logging()
    sink = open_results(loaded.results, url, token, directory, view.say)
    write_driver_record(directory, loaded.name)  # `harness runs`: running while we live, aborted if we die
    options = RunOptions(
        run_id=rid,
        run_dir=directory,
        ray_address=request.ray_address,
        processes=request.processes,
        invoked_at=request.invoked_at,
        baseline=against,
        hide=hide,
    )
    view.say(f"run {rid}: {loaded.name}, {plan.duration:g}s; outputs in {directory}")
    try:
        with view.progress(rid, plan.duration) as progress:
            orchestrator = Orchestrator(plan, options, sink.writer, on_status=progress.update, on_event=progress.event)
            judged = orchestrator.run()
    except BaseException as exc:  # no verdict will be written: say why in the driver's record
        note_driver_exit(directory, f"the driver stopped on {type(exc).__name__}", faults_left=False)
        with contextlib.suppress(Exception):
            sink.writer.close(timeout=2.0)
        raise
    began = time.time()
    stats = sink.writer.close(timeout=10.0)
    results = from_json(ResultsSummary, {**sink.describe(), **stats.to_dict()})
    summary = judged.finished(results, round(time.time() - (orchestrator.load_stopped_at or began), 3))
    if hide is not None:
        summary = RunSummary.from_json(_hide_strings(summary.to_json(), hide))
    summary.write(directory)
    _leave_behind(request, loaded, summary, directory, view.say)
    view.verdict(summary)
    view.say(f"summary: {directory / 'summary.json'}")
    sink.after_run(view.say)
    return summary


def _leave_behind(request: RunRequest, scenario: Scenario, summary: RunSummary, directory: Path, say: Say) -> None:
    """JUnit XML (when asked, or for a gate), the scenario as run, and the HTML report."""
    junit = request.junit if request.junit is not None or not request.gate else directory / "junit.xml"
    if junit is not None:
        from harness.judge.junit import junit_xml

        guards = [(g.name, g.condition.text) for g in scenario.guards]
        junit.write_text(junit_xml(summary, guards))
        say(f"junit: {junit}")
    (directory / "scenario.yaml").write_text(Path(request.scenario_file).read_text())
    try:  # the report is for reading the run later: it never changes the run's exit code
        from harness.review.report_data import write_report

        say(f"report: {write_report(directory)}")
    except Exception as exc:
        log.warning("report.html for run %s not written", summary.run_id, exc_info=True)
        say(f"warning: report.html not written: {type(exc).__name__}: {exc}")


class _Unreachable:
    """An InfluxDB that cannot be asked (not running yet, say) has no baseline to offer: no rows."""

    def __init__(self, query: Any) -> None:
        self._query = query

    def query(self, q: str) -> list[dict[str, Any]]:
        try:
            rows: list[dict[str, Any]] = self._query.query(q)
            return rows
        except ResultsError as exc:
            log.info("baseline lookup in InfluxDB failed: %s", exc)
            return []


def _baseline(ref: str, scenario: Scenario, run_id: str, url: str, token: str | None, say: Say) -> BaselineRun | None:
    """The baseline run's samples, loaded before anything starts (an unknown run id is exit 2)."""
    from harness.results.query import InfluxQuery
    from harness.results.samples import BaselineRun, find_baseline

    query: _Unreachable | None = None
    if scenario.results.write_api() == "v1":
        query = _Unreachable(InfluxQuery(url, scenario.results.database, token=token, timeout=5.0))
    found = find_baseline(ref, scenario.name, paths.runs_dir(), run_id, query=query)
    if found is None:
        say(f"baseline {ref}: no passing run of {scenario.name} yet; comparison skipped")
        return None
    baseline_id, samples = found
    say(f"baseline: run {baseline_id}")
    return BaselineRun(ref=ref, run_id=baseline_id, samples=samples, tolerances=scenario.baseline)


def _hide_strings(value: Any, hide: Callable[[str], str]) -> Any:
    """``value`` (a JSON document) with ``hide`` applied to every string in it, keys included.

    Strings one by one, never the serialised text: a short secret such as ``5`` must not turn
    numbers into ``***``."""
    if isinstance(value, str):
        return hide(value)
    if isinstance(value, dict):
        return {hide(k): _hide_strings(v, hide) for k, v in value.items()}
    if isinstance(value, list):
        return [_hide_strings(v, hide) for v in value]
    return value


class _HiddenProgress:
    """A progress view whose event lines never show a secret value."""

    def __init__(self, inner: ProgressView, hide: Callable[[str], str]) -> None:
        self._inner = inner
        self._hide = hide

    def update(self, status: LiveStatus) -> None:
        self._inner.update(status)

    def event(self, text: str) -> None:
        self._inner.event(self._hide(text))


class _HiddenView:
    """A run view that replaces the scenario's secret values in everything it is given to show."""

    def __init__(self, inner: RunView, hide: Callable[[str], str]) -> None:
        self._inner = inner
        self._hide = hide

    def say(self, text: str) -> None:
        self._inner.say(self._hide(text))

    @contextlib.contextmanager
    def progress(self, run_id: str, duration: float) -> Iterator[ProgressView]:
        with self._inner.progress(run_id, duration) as inner:
            yield _HiddenProgress(inner, self._hide)

    def verdict(self, summary: RunSummary) -> None:
        self._inner.verdict(summary)  # already hidden: the summary is, before it is written
