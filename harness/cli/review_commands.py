"""``harness runs``, ``compare``, ``report`` and ``grafana push|link``: finished runs, looked at."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from harness import paths
from harness.cli.app import JsonFlag, errors_to_exit_codes, token
from harness.errors import ConfigError

if TYPE_CHECKING:
    from harness.review.runs import RunInfo

__all__ = ["compare", "grafana_link", "grafana_push", "register", "report", "runs_", "runs_document"]

log = logging.getLogger("harness")


def register(app: typer.Typer, grafana_app: typer.Typer) -> None:
    app.command("runs")(errors_to_exit_codes(runs_))
    app.command()(errors_to_exit_codes(compare))
    app.command()(errors_to_exit_codes(report))
    grafana_app.command("push")(errors_to_exit_codes(grafana_push))
    grafana_app.command("link")(errors_to_exit_codes(grafana_link))


def runs_(
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Show at most this many runs.")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """List recent runs (id, scenario, start, duration, verdict), newest first.

    Runs are kept in one place whatever the working directory: $HARNESS_RUNS_DIR, else
    ~/.local/share/harness/runs ($XDG_DATA_HOME, $HARNESS_DATA_DIR move it).
    A run without a verdict shows as 'running' while its driver process lives and 'aborted'
    once it is gone (killed, crashed, interrupted twice); 'unfinished' when that cannot be told.
    """
    from harness.cli.display import print_runs
    from harness.review.runs import list_runs

    where = paths.runs_dir()
    found = list_runs(where, limit)
    if as_json:
        typer.echo(json.dumps(runs_document(where, found), indent=2))
        return
    if not found:
        typer.echo(f"no runs in {where} ({paths.runs_dir_source()})")
        legacy = Path("runs")
        if legacy.is_dir() and legacy.absolute() != where and list_runs(legacy, 1):
            typer.echo(f"./runs holds runs from an older harness: HARNESS_RUNS_DIR={legacy.absolute()} lists them")
        return
    print_runs(found)


def runs_document(where: Path, found: list[RunInfo]) -> dict[str, Any]:
    """``harness runs --json``: where the runs were looked for, and one object per run (docs/cli.md)."""
    return {
        "runs_dir": str(where),
        "runs": [
            {
                "run_id": run.run_id,
                "scenario": run.scenario,
                "started": run.started,
                "duration_s": run.duration_s,
                "verdict": run.verdict,
                "reason": run.reason,
                "directory": str(where / run.run_id),
            }
            for run in found
        ],
    }


def compare(
    before: Annotated[str, typer.Argument(help="Run id of the reference run.", show_default=False)],
    after: Annotated[str, typer.Argument(help="Run id of the run to judge against it.", show_default=False)],
    scenario: Annotated[
        Path | None,
        typer.Option(help="Take the tolerances from this scenario's baseline: block (default: the defaults)."),
    ] = None,
    as_json: JsonFlag = False,
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
            raise ConfigError(f"run {run}: no {directory / 'results.lp'} ({paths.runs_dir_source()})")
        samples.append(samples_from_run_dir(directory))
    report = judge(samples[1], samples[0], tolerances)
    if as_json:
        document = {
            "before": before,
            "after": after,
            "passed": report.passed,
            "summary_line": report.summary_line(),
            "comparisons": report.to_dict()["comparisons"],
            "skipped": list(report.skipped),
        }
        typer.echo(json.dumps(document, indent=2))
    else:
        print_comparison(report, before, after)
    raise typer.Exit(0 if report.passed else 1)


def report(
    run_id: Annotated[str, typer.Argument(help="Run id (InfluxDB, else runs dir).", show_default=False)],
    results_url: Annotated[str, typer.Option(help="InfluxDB to read the run from.")] = "http://127.0.0.1:8086",
    database: Annotated[str, typer.Option(help="InfluxDB database (InfluxQL).")] = "harness",
    results_token_env: Annotated[
        str | None, typer.Option(help="Environment variable holding the InfluxDB token, if it needs one.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (default: report.html in the run's directory).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a report that is already there.")] = False,
) -> None:
    """Write a run's self-contained HTML report (summary, verdict, plots, endpoints, scenario) and print its path.

    Read from the run's own record (its directory, see harness runs), found from any directory; from InfluxDB only when
    the record is gone. An existing report is never replaced without --force. Exit 2 when the run is in neither.
    """
    from harness.errors import ResultsError
    from harness.results.query import InfluxQuery
    from harness.review.report_data import RunNotFound, from_influx, from_run_dir, write_report

    if not run_id or run_id in (".", "..") or "/" in run_id or "\\" in run_id:
        raise ConfigError(f"run {run_id!r}: not a run id")
    directory = paths.runs_dir() / run_id
    query = InfluxQuery(results_url, database, token=token(results_token_env, "--results-token-env"), timeout=5.0)
    target = output or directory / "report.html"
    if target.exists() and not force:
        raise ConfigError(f"{target} exists: pass --force to replace it, or --output FILE to write elsewhere")
    try:
        scenario_yaml = (directory / "scenario.yaml").read_text(encoding="utf-8", errors="replace")
    except OSError:
        scenario_yaml = None
    try:
        data = from_run_dir(directory)  # the run's own record: its exact figures
    except RunNotFound:
        try:
            data = from_influx(query, run_id, scenario_yaml)
        except (ResultsError, RunNotFound) as exc:
            log.info("report %s: not from InfluxDB: %s", run_id, exc)
            raise RunNotFound(
                f"run {run_id}: not found under {paths.runs_dir()}/ nor in InfluxDB {query.url} (database {database}): "
                f"{exc}"
            ) from None
    typer.echo(str(write_report(directory, target, data)))


def grafana_push(
    url: Annotated[
        str,
        typer.Option(
            envvar="HARNESS_GRAFANA_URL", help="Grafana's base URL, e.g. http://127.0.0.1:3000.", show_default=False
        ),
    ],
    token_env: Annotated[
        str, typer.Option(help="Environment variable holding a Grafana service account token (Bearer).")
    ] = "GRAFANA_TOKEN",
    results_url: Annotated[
        str, typer.Option(help="InfluxDB URL as Grafana's server reaches it (stored in the datasource).")
    ] = "http://127.0.0.1:8086",
    database: Annotated[str, typer.Option(help="InfluxDB database the dashboards query.")] = "harness",
    results_token_env: Annotated[
        str | None,
        typer.Option(help="Environment variable holding an InfluxDB token; stored encrypted in the datasource."),
    ] = None,
    folder: Annotated[str, typer.Option(help="Grafana folder for the dashboards (created if missing).")] = "harness",
    influx_url: Annotated[str | None, typer.Option(hidden=True, help="Deprecated: --results-url.")] = None,
    influx_token_env: Annotated[str | None, typer.Option(hidden=True, help="Deprecated: --results-token-env.")] = None,
) -> None:
    """Create or update the InfluxDB datasource (uid harness-influxdb), the folder and every dashboard.

    Idempotent: a second push updates the same objects. Exit 3 when Grafana refuses or is unreachable.
    """
    from harness.review.grafana.push import PushSettings, check_url, push, token_from_env

    influx = influx_url if influx_url is not None else results_url
    influx_flag = _flag_used("--results-url", influx_url, "--influx-url")
    secret_env = influx_token_env if influx_token_env is not None else results_token_env
    secret_flag = _flag_used("--results-token-env", influx_token_env, "--influx-token-env")
    settings = PushSettings(
        url=check_url(url, "--url"),
        token=token_from_env(token_env, "--token-env", "a Grafana service account token"),
        influx_url=check_url(influx, influx_flag),
        database=database,
        influx_token=(token_from_env(secret_env, secret_flag, "the InfluxDB token") if secret_env else None),
        folder=folder,
    )
    from harness.review.grafana.dashboards import build_all

    push(settings, build_all(), typer.echo)


def _flag_used(flag: str, old_value: str | None, old_flag: str) -> str:
    """``old_flag`` (a deprecated spelling of ``flag``, noted on stderr) when it was given, else
    ``flag``: messages about the value name the flag that was typed."""
    if old_value is None:
        return flag
    typer.echo(f"note: {old_flag} is deprecated; use {flag}", err=True)
    return old_flag


def grafana_link(
    run_id: Annotated[str, typer.Argument(help="Run id (runs dir, else InfluxDB).", show_default=False)],
    url: Annotated[str, typer.Option(envvar="HARNESS_GRAFANA_URL", help="Grafana's base URL.")] = (
        "http://127.0.0.1:3000"
    ),
    results_url: Annotated[
        str, typer.Option(help="InfluxDB asked for the run's times when the run's summary.json is missing.")
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
