"""The ``harness`` command line: validate, plan, run, schema, demo, recover, influx.

The only module that imports typer. Every ``HarnessError`` becomes its exit code and a
message without a traceback; anything unexpected is exit 3 with the traceback written to
the debug log (``$HARNESS_DATA_DIR/harness.log``), never to the terminal.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from harness import paths
from harness.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    ConfigError,
    HarnessError,
    ScenarioError,
)

app = typer.Typer(
    name="harness",
    help="Distributed load-and-chaos harness: Locust load and timed faults on Ray, results in InfluxDB, SLO verdicts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
demo_app = typer.Typer(help="The local demo shop (gateway, catalog, cart, payments) under a supervisor.")
influx_app = typer.Typer(help="The embedded local InfluxDB 1.x that harness starts when none is running.")
app.add_typer(demo_app, name="demo")
app.add_typer(influx_app, name="influx")

log = logging.getLogger("harness")
F = TypeVar("F", bound=Callable[..., Any])

ScenarioArg = Annotated[Path, typer.Argument(help="Scenario YAML file.", show_default=False)]


def _setup_logging() -> None:
    handler = logging.FileHandler(paths.data_dir() / "harness.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def _errors_to_exit_codes(func: F) -> F:
    """Map the exception tree to exit codes; no traceback ever reaches the terminal."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from harness.cli.display import err_console, print_problems

        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except ScenarioError as exc:
            print_problems(exc)
            raise typer.Exit(exc.exit_code) from None
        except HarnessError as exc:
            err_console.print(f"error: {exc}", markup=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("interrupted", markup=False)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as exc:
            log.exception("internal error")
            where = paths.data_dir() / "harness.log"
            err_console.print(f"internal error: {type(exc).__name__}: {exc} (traceback in {where})", markup=False)
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@_errors_to_exit_codes
def validate(scenario: ScenarioArg) -> None:
    """Check a scenario file and report every problem with file, line and key path (exit 2)."""
    from harness.plan import compile_plan
    from harness.scenario import load_scenario

    loaded = load_scenario(scenario)
    plan = compile_plan(loaded)
    typer.echo(
        f"{scenario}: valid: {len(plan.phases)} stages, {len(loaded.faults)} faults, "
        f"{len(loaded.slos)} SLOs, {len(loaded.guards)} guards, {plan.duration:g}s"
    )


@app.command()
@_errors_to_exit_codes
def plan(
    scenario: ScenarioArg,
    ray_address: Annotated[
        str | None,
        typer.Option(help="Show where each actor will run on this Ray cluster (HOST:PORT; needs its token)."),
    ] = None,
) -> None:
    """Print the compiled timeline, resolved fault targets and where each actor runs; applies nothing."""
    from harness.chaos.preflight import targets
    from harness.cli.display import print_plan
    from harness.plan import compile_plan
    from harness.run.nodes import plan_rows
    from harness.scenario import load_scenario

    loaded = load_scenario(scenario)
    compiled = compile_plan(loaded)
    if ray_address:
        from harness.run.placement import read_cluster

        nodes, driver = read_cluster(ray_address)
        rows = plan_rows(loaded, nodes, driver)
    else:
        rows = plan_rows(loaded)
    print_plan(compiled, targets(loaded), rows)


@app.command()
@_errors_to_exit_codes
def schema(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")] = None,
) -> None:
    """Print the JSON Schema of scenario files, for editors."""
    from harness.scenario import scenario_json_schema

    text = json.dumps(scenario_json_schema(), indent=2)
    if output:
        output.write_text(text + "\n")
    else:
        typer.echo(text)


RayAddress = Annotated[str | None, typer.Option(help="Join this Ray cluster instead of starting a local one.")]
Processes = Annotated[
    int | None, typer.Option(min=1, max=256, help="Locust processes per generator (default: the scenario's).")
]
ResultsUrl = Annotated[str | None, typer.Option(help="Override the scenario's results URL.")]
RunId = Annotated[str | None, typer.Option(help="Run id (default: scenario name, time and a random suffix).")]


@app.command()
@_errors_to_exit_codes
def run(
    scenario: ScenarioArg,
    ray_address: RayAddress = None,
    processes: Processes = None,
    results_url: ResultsUrl = None,
    junit: Annotated[
        Path | None, typer.Option("--junit", help="Also write the SLO and guard results as JUnit XML here.")
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option(
            help="Compare per phase and endpoint with this run id, or 'last-pass' (the newest passing run "
            "of the same scenario); a significant regression beyond the scenario's tolerances fails the run."
        ),
    ] = None,
    run_id: RunId = None,
) -> None:
    """Run a scenario: live progress, then the verdict table. Exit code per the verdict."""
    _run_scenario(
        scenario,
        ray_address=ray_address,
        processes=processes,
        results_url=results_url,
        junit=junit,
        baseline=baseline,
        run_id=run_id,
        gate=False,
    )


@app.command()
@_errors_to_exit_codes
def gate(
    scenario: ScenarioArg,
    junit: Annotated[
        Path | None, typer.Option("--junit", help="JUnit XML file to write (default: runs/<run_id>/junit.xml).")
    ] = None,
    baseline: Annotated[
        str,
        typer.Option(
            help="Run id or 'last-pass' to compare with; with 'last-pass' and no passing run yet, the "
            "comparison is skipped (this run may become the baseline)."
        ),
    ] = "last-pass",
    no_baseline: Annotated[bool, typer.Option("--no-baseline", help="Do not compare with any baseline.")] = False,
    ray_address: RayAddress = None,
    processes: Processes = None,
    results_url: ResultsUrl = None,
    run_id: RunId = None,
) -> None:
    """A pre-promotion gate: run with strict settings for CI (exit 0 only when everything held).

    Strict: the scenario must have SLOs; an SLO without data fails; JUnit XML is always
    written; the run is compared with the last passing run unless --no-baseline; a run that
    could not deliver its load is invalid (exit 5).
    """
    _run_scenario(
        scenario,
        ray_address=ray_address,
        processes=processes,
        results_url=results_url,
        junit=junit,
        baseline=None if no_baseline else baseline,
        run_id=run_id,
        gate=True,
    )


def _run_scenario(
    scenario: Path,
    *,
    ray_address: str | None,
    processes: int | None,
    results_url: str | None,
    junit: Path | None,
    baseline: str | None,
    run_id: str | None,
    gate: bool,
) -> None:
    invoked_at = time.time()
    _terminate_as_interrupt()
    from harness.plan import compile_plan
    from harness.scenario import load_scenario

    loaded = load_scenario(scenario)
    plan_ = compile_plan(loaded)
    if gate and not loaded.slos:
        raise ConfigError(f"{scenario}: a gate needs at least one SLO under 'slos:' to decide on")
    token = _token(loaded.results.token_env)
    from harness.chaos.preflight import check, check_ray_address

    check(loaded)  # a fault that could never be applied stops the run here (exit 2)
    check_ray_address(ray_address)  # joining a cluster without its token: exit 2 before connecting

    from harness.cli.display import Progress, console, print_verdict
    from harness.results.sink import open_results
    from harness.run.orchestrator import Orchestrator, RunOptions, new_run_id

    rid = run_id or new_run_id(loaded.name)
    url = results_url or loaded.results.url
    against = _load_baseline(baseline, loaded, rid, url, token, console.print) if baseline else None
    directory = paths.run_dir(rid)
    _setup_logging()
    sink = open_results(loaded.results, url, token, directory, console.print)
    from harness.review.runs import note_driver_exit, write_driver_record

    write_driver_record(directory, loaded.name)  # `harness runs`: running while we live, aborted if we die
    options = RunOptions(
        run_id=rid,
        run_dir=directory,
        ray_address=ray_address,
        processes=processes,
        invoked_at=invoked_at,
        baseline=against,
    )
    console.print(f"run {rid}: {loaded.name}, {plan_.duration:g}s; outputs in {directory}", markup=False)
    try:
        with Progress(rid, plan_.duration) as progress:
            orchestrator = Orchestrator(plan_, options, sink.writer, on_status=progress.update, on_event=progress.event)
            outcome = orchestrator.run()
    except BaseException as exc:  # no verdict will be written: say why in the driver's record
        note_driver_exit(directory, f"the driver stopped on {type(exc).__name__}", faults_left=False)
        with contextlib.suppress(Exception):
            sink.writer.close(timeout=2.0)
        raise
    began = time.time()
    stats = sink.writer.close(timeout=10.0)
    outcome.summary["results"] = {**sink.describe(), **stats.to_dict()}
    outcome.summary["timings"]["verdict_s"] = round(
        time.time() - outcome.summary["timings"].pop("load_stopped_at", began), 3
    )
    (directory / "summary.json").write_text(json.dumps(outcome.summary, indent=2, default=str) + "\n")
    if gate and junit is None:
        junit = directory / "junit.xml"
    if junit is not None:
        from harness.judge.junit import junit_xml

        guards = [(g.name, g.condition.text) for g in loaded.guards]
        junit.write_text(junit_xml(outcome.summary, guards))
        console.print(f"junit: {junit}", markup=False)
    (directory / "scenario.yaml").write_text(Path(scenario).read_text())
    try:  # the report is for reading the run later: it never changes the run's exit code
        from harness.review.report_data import write_report

        console.print(f"report: {write_report(directory)}", markup=False)
    except Exception as exc:
        log.warning("report.html for run %s not written", rid, exc_info=True)
        console.print(f"warning: report.html not written: {type(exc).__name__}: {exc}", markup=False)
    print_verdict(rid, outcome.verdict.value, outcome.reason, outcome.slos, outcome.summary)
    console.print(f"summary: {directory / 'summary.json'}", markup=False)
    sink.after_run(console.print)
    raise typer.Exit(outcome.verdict.exit_code)


def _terminate_as_interrupt() -> None:
    """SIGTERM ends a run the way Ctrl-C does: faults reverted, load stopped, results flushed, exit 130.

    Both raise KeyboardInterrupt in the main thread; during the run's teardown a second one
    of either exits at once (see ``Orchestrator.run``).
    """
    import signal

    with contextlib.suppress(ValueError):  # not the main thread: leave SIGTERM alone
        signal.signal(signal.SIGTERM, signal.default_int_handler)


class _Unreachable:
    """An InfluxDB that cannot be asked (not running yet, say) has no baseline to offer: no rows."""

    def __init__(self, query: Any) -> None:
        self._query = query

    def query(self, q: str) -> list[dict[str, Any]]:
        from harness.errors import ResultsError

        try:
            rows: list[dict[str, Any]] = self._query.query(q)
            return rows
        except ResultsError as exc:
            log.info("baseline lookup in InfluxDB failed: %s", exc)
            return []


def _load_baseline(
    ref: str, scenario: Any, run_id: str, url: str, token: str | None, say: Callable[[str], None]
) -> Any:
    """The baseline run's samples, loaded before anything starts (an unknown run id is exit 2)."""
    from harness.results.query import InfluxQuery
    from harness.results.samples import BaselineRun, find_baseline

    query = None
    if scenario.results.write_api() == "v1":
        query = _Unreachable(InfluxQuery(url, scenario.results.database, token=token, timeout=5.0))
    found = find_baseline(ref, scenario.name, paths.runs_dir(), run_id, query=query)
    if found is None:
        say(f"baseline {ref}: no passing run of {scenario.name} yet; comparison skipped")
        return None
    baseline_id, samples = found
    say(f"baseline: run {baseline_id}")
    return BaselineRun(ref=ref, run_id=baseline_id, samples=samples, tolerances=scenario.baseline)


@app.command("runs")
@_errors_to_exit_codes
def runs_(
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Show at most this many runs.")] = 20,
) -> None:
    """List recent runs under runs/ (id, scenario, start, duration, verdict), newest first.

    A run without a verdict shows as 'running' while its driver process lives and 'aborted'
    once it is gone (killed, crashed, interrupted twice); 'unfinished' when that cannot be told.
    """
    from harness.cli.display import print_runs
    from harness.review.runs import list_runs

    print_runs(list_runs(paths.runs_dir(), limit))


@app.command()
@_errors_to_exit_codes
def compare(
    before: Annotated[str, typer.Argument(help="Run id of the reference run (under runs/).", show_default=False)],
    after: Annotated[str, typer.Argument(help="Run id of the run to judge against it.", show_default=False)],
    scenario: Annotated[
        Path | None,
        typer.Option(help="Take the tolerances from this scenario's baseline: block (default: the defaults)."),
    ] = None,
) -> None:
    """Per-phase and per-endpoint differences of AFTER against BEFORE, with the gate's statistics.

    Exit 1 when AFTER regressed beyond the tolerances, else 0.
    """
    from harness.cli.display import print_comparison
    from harness.judge.baseline import compare as judge
    from harness.results.samples import samples_from_run_dir
    from harness.scenario import Baseline, load_scenario

    tolerances = load_scenario(scenario).baseline if scenario is not None else Baseline()
    samples = []
    for run in (before, after):
        directory = paths.runs_dir() / run
        if not (directory / "results.lp").is_file():
            raise ConfigError(f"run {run}: no {directory / 'results.lp'}")
        samples.append(samples_from_run_dir(directory))
    report = judge(samples[1], samples[0], tolerances)
    print_comparison(report, before, after)
    raise typer.Exit(0 if report.passed else 1)


@app.command()
@_errors_to_exit_codes
def report(
    run_id: Annotated[str, typer.Argument(help="Run id (in InfluxDB, else under runs/).", show_default=False)],
    results_url: Annotated[str, typer.Option(help="InfluxDB to read the run from.")] = "http://127.0.0.1:8086",
    database: Annotated[str, typer.Option(help="InfluxDB database (InfluxQL).")] = "harness",
    results_token_env: Annotated[
        str | None, typer.Option(help="Environment variable holding the InfluxDB token, if it needs one.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (default: runs/<run_id>/report.html).")
    ] = None,
) -> None:
    """Write a run's self-contained HTML report (summary, verdict, plots, endpoints, scenario) and print its path.

    Read from InfluxDB; from runs/<run_id>/ when InfluxDB is not reachable or has no such run.
    Exit 2 when the run is in neither.
    """
    from harness.errors import ResultsError
    from harness.results.query import InfluxQuery
    from harness.review.report_data import RunNotFound, from_influx, from_run_dir, write_report

    if not run_id or run_id in (".", "..") or "/" in run_id or "\\" in run_id:
        raise ConfigError(f"run {run_id!r}: not a run id")
    directory = paths.runs_dir() / run_id
    query = InfluxQuery(results_url, database, token=_token(results_token_env, "--results-token-env"), timeout=5.0)
    try:
        scenario_yaml = (directory / "scenario.yaml").read_text(encoding="utf-8", errors="replace")
    except OSError:
        scenario_yaml = None
    try:
        data = from_influx(query, run_id, scenario_yaml)
    except (ResultsError, RunNotFound) as exc:
        log.info("report %s: not from InfluxDB: %s", run_id, exc)
        try:
            data = from_run_dir(directory)
        except RunNotFound:
            raise RunNotFound(
                f"run {run_id}: not found in InfluxDB {query.url} (database {database}) nor under {paths.runs_dir()}/"
            ) from None
        typer.echo(f"InfluxDB: {exc}; read {directory}/ instead", err=True)
    typer.echo(str(write_report(directory, output, data)))


def _token(env_name: str | None, named_by: str = "results.token_env") -> str | None:
    """The secret in the environment variable ``env_name`` (named by the scenario key or option ``named_by``)."""
    if not env_name:
        return None
    value = os.environ.get(env_name)
    if not value:
        raise ConfigError(f"{named_by} names {env_name}, but that environment variable is not set")
    return value


@app.command()
@_errors_to_exit_codes
def recover(
    sweep: Annotated[
        bool,
        typer.Option(
            "--sweep",
            help="Then remove every harness-tagged object left on this node that no journal knows "
            "(nft tables, qdiscs, ifb links, routes, stress and proxy processes), in every netns.",
        ),
    ] = False,
) -> None:
    """Revert every fault still recorded in this node's journal (after a crash)."""
    from harness.chaos.recover import recover as do_recover
    from harness.errors import FaultError

    lines = do_recover()
    for line in lines:
        typer.echo(line)
    if not lines:
        typer.echo("nothing to recover: no fault is outstanding in the journal")
    if sweep:
        from harness.chaos.sweep import sweep as do_sweep

        removed, failed = do_sweep()
        for line in [*removed, *failed]:
            typer.echo(line)
        if not removed and not failed:
            typer.echo("sweep: no harness object left on this node")
        if failed:
            raise FaultError(f"sweep: {len(failed)} object(s) could not be removed")


@app.command()
@_errors_to_exit_codes
def doctor(
    scenario: Annotated[
        Path | None, typer.Argument(help="Also say which of this scenario's faults cannot work here.")
    ] = None,
) -> None:
    """Print what this host can do for faults (netem, nftables, tbf, cgroups, stress-ng, UML, kube), and why not.

    With a scenario: exit 2 when one of its faults needs something missing, naming it.
    """
    from harness.chaos.capabilities import missing, probe, render
    from harness.errors import ConfigError
    from harness.scenario import load_scenario

    loaded = load_scenario(scenario) if scenario else None
    probed = probe()
    for line in render(probed):
        typer.echo(line)
    if loaded is not None:
        gaps = missing(loaded, probed)
        if gaps:
            raise ConfigError(f"{scenario}: cannot run here:\n  " + "\n  ".join(gaps))
        typer.echo(f"{scenario}: every fault can be applied on this host")


@app.command()
def proxy(
    listen: Annotated[str, typer.Option(help="host:port clients connect to.")],
    upstream: Annotated[str, typer.Option(help="host:port of the service behind the proxy.")],
    control: Annotated[str, typer.Option(help="host:port of the control API that proxy.* faults use.")],
) -> None:
    """Run a fault proxy in front of a service; proxy.* faults with target.control act on it."""
    from harness.chaos.proxy_server import serve

    serve(listen, upstream, control)


@app.command()
def watchdog(
    journal_dir: Annotated[
        Path | None, typer.Option(help="Journal directory to watch (default: this node's journal).")
    ] = None,
    idle_exit: Annotated[
        float | None, typer.Option(help="Exit after this many seconds with no leased fault (default 30).")
    ] = None,
) -> None:
    """Revert faults whose lease lapsed (normally started by the chaos agent, detached)."""
    from harness.chaos.watchdog import main as watchdog_main

    args = (["--idle-exit", str(idle_exit)] if idle_exit is not None else []) + (
        ["--journal-dir", str(journal_dir)] if journal_dir else []
    )
    raise typer.Exit(code=watchdog_main(args))


@demo_app.command("up")
@_errors_to_exit_codes
def demo_up(
    base_port: Annotated[int, typer.Option(help="Gateway port; catalog, cart, payments follow.")] = 8700,
    restart_delay: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=600.0,
            help="Seconds the supervisor waits before restarting a dead service (a demo already up keeps its own).",
        ),
    ] = 3.0,
) -> None:
    """Start the demo shop (idempotent)."""
    from harness.demo.control import up

    info = up(base_port=base_port, restart_delay=restart_delay)
    typer.echo(f"demo shop up at {info.base_url} (supervisor pid {info.supervisor_pid}, state in {info.directory})")
    typer.echo(f"fault proxy in front of payments: 127.0.0.1:{base_port + 4}, control API 127.0.0.1:{base_port + 5}")
    net = info.payments_netns
    if net is not None:
        typer.echo(
            f"payments in network namespace {net.netns} at {net.payments_address}:{base_port + 3} "
            f"(veth {net.host_interface} <-> {net.netns_interface})"
        )
    elif info.note:
        typer.echo(info.note)


@demo_app.command("down")
@_errors_to_exit_codes
def demo_down() -> None:
    """Stop the demo shop and its supervisor (idempotent)."""
    from harness.demo.control import down

    typer.echo("demo shop stopped" if down() else "demo shop was not running")


@demo_app.command("status")
@_errors_to_exit_codes
def demo_status() -> None:
    """Show the demo services' PIDs."""
    from harness.demo.control import status

    for name, pid in status().items():
        typer.echo(f"{name:10} {pid if pid else 'down'}")


@influx_app.command("start")
@_errors_to_exit_codes
def influx_start() -> None:
    """Start the embedded InfluxDB on 127.0.0.1:8086 if nothing answers there."""
    from harness.results.embedded import DEFAULT_URL, ensure_local_influx

    info = ensure_local_influx(DEFAULT_URL, paths.data_dir())
    if info is None:
        raise ConfigError("influxd is not installed (Debian package 'influxdb'); run 'make setup'")
    typer.echo(f"InfluxDB at {info.url}" + (f" (started, pid {info.pid})" if info.started else " (already running)"))


@influx_app.command("stop")
@_errors_to_exit_codes
def influx_stop() -> None:
    """Stop the embedded InfluxDB if harness started it."""
    from harness.results.embedded import stop_local_influx

    typer.echo(
        "embedded InfluxDB stopped" if stop_local_influx(paths.data_dir()) else "embedded InfluxDB was not running"
    )


grafana_app = typer.Typer(help="Push the datasource and dashboards to a Grafana server; link to a run's dashboard.")
app.add_typer(grafana_app, name="grafana")


@grafana_app.command("push")
@_errors_to_exit_codes
def grafana_push(
    url: Annotated[str, typer.Option(help="Grafana's base URL, e.g. http://127.0.0.1:3000.", show_default=False)],
    token_env: Annotated[
        str, typer.Option(help="Environment variable holding a Grafana service account token (Bearer).")
    ] = "GRAFANA_TOKEN",
    influx_url: Annotated[
        str, typer.Option(help="InfluxDB URL as Grafana's server reaches it (stored in the datasource).")
    ] = "http://127.0.0.1:8086",
    database: Annotated[str, typer.Option(help="InfluxDB database the dashboards query.")] = "harness",
    influx_token_env: Annotated[
        str | None,
        typer.Option(help="Environment variable holding an InfluxDB token; stored encrypted in the datasource."),
    ] = None,
    folder: Annotated[str, typer.Option(help="Grafana folder for the dashboards (created if missing).")] = "harness",
) -> None:
    """Create or update the InfluxDB datasource (uid harness-influxdb), the folder and every dashboard.

    Idempotent: a second push updates the same objects. Exit 3 when Grafana refuses or is unreachable.
    """
    from harness.review.grafana.push import PushSettings, check_url, push, token_from_env

    settings = PushSettings(
        url=check_url(url, "--url"),
        token=token_from_env(token_env, "--token-env", "a Grafana service account token"),
        influx_url=check_url(influx_url, "--influx-url"),
        database=database,
        influx_token=(
            token_from_env(influx_token_env, "--influx-token-env", "the InfluxDB token") if influx_token_env else None
        ),
        folder=folder,
    )
    from harness.review.grafana.dashboards import build_all

    push(settings, build_all(), typer.echo)


@grafana_app.command("link")
@_errors_to_exit_codes
def grafana_link(
    run_id: Annotated[str, typer.Argument(help="Run id (under runs/, else in InfluxDB).", show_default=False)],
    url: Annotated[str, typer.Option(envvar="HARNESS_GRAFANA_URL", help="Grafana's base URL.")] = (
        "http://127.0.0.1:3000"
    ),
    results_url: Annotated[
        str, typer.Option(help="InfluxDB asked for the run's times when runs/<run_id>/summary.json is missing.")
    ] = "http://127.0.0.1:8086",
    database: Annotated[str, typer.Option(help="InfluxDB database the runs were written to.")] = "harness",
    results_token_env: Annotated[
        str | None, typer.Option(help="Environment variable holding the InfluxDB token, if it needs one.")
    ] = None,
) -> None:
    """Print the run dashboard's URL for RUN_ID, over the run's time range plus 10 s each side."""
    from harness.results.query import InfluxQuery
    from harness.review.grafana.link import run_dashboard_url, run_times
    from harness.review.grafana.push import token_from_env

    token = (
        token_from_env(results_token_env, "--results-token-env", "the InfluxDB token") if results_token_env else None
    )
    query = InfluxQuery(results_url, database, token=token, timeout=5.0)
    started, ended = run_times(run_id, paths.runs_dir(), query)
    typer.echo(run_dashboard_url(url, run_id, started, ended))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
