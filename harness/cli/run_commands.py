"""``harness run`` and ``harness gate``: flags in, :func:`harness.run.session.run_session`, the verdict out."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from harness.cli.app import JsonFlag, QuietFlag, ScenarioArg, errors_to_exit_codes
from harness.cli.scenario_options import BaseUrl, Duration, Env, Rate, Set, Users, overrides

if TYPE_CHECKING:
    from harness.judge.summary import RunSummary
    from harness.run.seconds import LiveStatus
    from harness.run.session import ProgressView, RunRequest

__all__ = ["gate", "register", "run"]

RayAddress = Annotated[str | None, typer.Option(help="Join this Ray cluster instead of starting a local one.")]
Processes = Annotated[
    int | None, typer.Option(min=1, max=256, help="Locust processes per generator (default: the scenario's).")
]
ResultsUrl = Annotated[str | None, typer.Option(help="Override the scenario's results URL.")]
ResultsTokenEnv = Annotated[
    str | None,
    typer.Option(help="Environment variable holding the results token (overrides the scenario's results.token_env)."),
]
RunId = Annotated[str | None, typer.Option(help="Run id (default: scenario name, time and a random suffix).")]


def register(app: typer.Typer) -> None:
    app.command()(errors_to_exit_codes(run))
    app.command()(errors_to_exit_codes(gate))


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
    results_token_env: ResultsTokenEnv = None,
    as_json: JsonFlag = False,
    quiet: QuietFlag = False,
    env: Env = None,
    settings: Set = None,
    base_url: BaseUrl = None,
    users: Users = None,
    rate: Rate = None,
    duration: Duration = None,
) -> None:
    """Run a scenario: live progress, then the verdict table. Exit code per the verdict.

    --json: the run's summary (what summary.json holds) on stdout, progress on stderr.

    --quiet: only the verdict line. Both: only the JSON.
    """
    invoked_at = time.time()
    from harness.run.session import RunRequest

    _run(
        RunRequest(
            scenario,
            ray_address=ray_address,
            processes=processes,
            results_url=results_url,
            results_token_env=results_token_env,
            junit=junit,
            baseline=baseline,
            run_id=run_id,
            gate=False,
            invoked_at=invoked_at,
            overrides=overrides(env, settings, base_url, users, rate, duration),
        ),
        _Terminal(as_json, quiet),
    )


def gate(
    scenario: ScenarioArg,
    junit: Annotated[
        Path | None,
        typer.Option("--junit", help="JUnit XML file to write (default: the run directory's junit.xml)."),
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
    results_token_env: ResultsTokenEnv = None,
    as_json: JsonFlag = False,
    quiet: QuietFlag = False,
    env: Env = None,
    settings: Set = None,
    base_url: BaseUrl = None,
    users: Users = None,
    rate: Rate = None,
    duration: Duration = None,
) -> None:
    """A pre-promotion gate: run with strict settings for CI (exit 0 only when everything held).

    Strict: the scenario must have SLOs; an SLO without data fails; JUnit XML is always
    written; the run is compared with the last passing run unless --no-baseline; a run that
    could not deliver its load is invalid (exit 5).
    """
    invoked_at = time.time()
    from harness.run.session import RunRequest

    _run(
        RunRequest(
            scenario,
            ray_address=ray_address,
            processes=processes,
            results_url=results_url,
            results_token_env=results_token_env,
            junit=junit,
            baseline=None if no_baseline else baseline,
            run_id=run_id,
            gate=True,
            invoked_at=invoked_at,
            overrides=overrides(env, settings, base_url, users, rate, duration),
        ),
        _Terminal(as_json, quiet),
    )


def _run(request: RunRequest, terminal: _Terminal) -> None:
    from harness.run.session import run_session

    summary = run_session(request, terminal)
    raise typer.Exit(summary.exit_code)


class _Terminal:
    """The terminal a run shows itself on (:class:`harness.run.session.RunView`).

    ``as_json``: stdout carries only the summary as one JSON document, so everything else a run
    says goes to stderr. ``quiet``: nothing but the verdict line (and errors, on stderr).
    """

    def __init__(self, as_json: bool = False, quiet: bool = False) -> None:
        self.as_json = as_json
        self.quiet = quiet

    def say(self, text: str) -> None:
        from harness.cli.display import console, err_console

        if not self.quiet:
            (err_console if self.as_json else console).print(text, markup=False)

    def progress(self, run_id: str, duration: float) -> AbstractContextManager[ProgressView]:
        from harness.cli.display import err_console
        from harness.cli.progress import Progress

        if self.quiet:
            return _silent()
        return Progress(run_id, duration, err_console if self.as_json else None)

    def verdict(self, summary: RunSummary) -> None:
        from harness.cli.display import print_verdict, print_verdict_line

        if self.as_json:
            typer.echo(json.dumps(summary.to_json(), indent=2, default=str))
        elif self.quiet:
            print_verdict_line(summary, with_run_id=True)
        else:
            print_verdict(summary)


class _Silent:
    """Progress that shows nothing (``--quiet``)."""

    def update(self, status: LiveStatus) -> None:
        pass

    def event(self, text: str) -> None:
        pass


@contextlib.contextmanager
def _silent() -> Iterator[ProgressView]:
    yield _Silent()
