"""``harness runs``, ``compare``, ``report`` and ``grafana push|link``: finished runs, looked at."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from harness import paths
from harness.cli.app import errors_to_exit_codes, token
from harness.errors import ConfigError

__all__ = ["compare", "grafana_link", "grafana_push", "register", "report", "runs_"]

log = logging.getLogger("harness")


def register(app: typer.Typer, grafana_app: typer.Typer) -> None:
    app.command("runs")(errors_to_exit_codes(runs_))
    app.command()(errors_to_exit_codes(compare))
    app.command()(errors_to_exit_codes(report))
    grafana_app.command("push")(errors_to_exit_codes(grafana_push))
    grafana_app.command("link")(errors_to_exit_codes(grafana_link))


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
    query = InfluxQuery(results_url, database, token=token(results_token_env, "--results-token-env"), timeout=5.0)
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

    secret = (
        token_from_env(results_token_env, "--results-token-env", "the InfluxDB token") if results_token_env else None
    )
    query = InfluxQuery(results_url, database, token=secret, timeout=5.0)
    started, ended = run_times(run_id, paths.runs_dir(), query)
    typer.echo(run_dashboard_url(url, run_id, started, ended))
