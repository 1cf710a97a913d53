"""The ``harness`` Typer app, its sub-command groups, and the one error handler of every command.

The commands live in modules by what they are about (:mod:`~harness.cli.scenario_commands`,
:mod:`~harness.cli.run_commands`, :mod:`~harness.cli.review_commands`,
:mod:`~harness.cli.host_commands`), which :mod:`harness.cli` imports in the order
``harness --help`` lists them; each parses its flags, calls the room below that does the
work, and prints. Only :mod:`harness.cli` imports typer. Every ``HarnessError`` becomes
its exit code and a message without a traceback; anything unexpected is exit 3 with the
traceback written to the debug log (``$HARNESS_DATA_DIR/harness.log``), never to the terminal.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from harness import paths
from harness.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, HarnessError, ScenarioError

__all__ = [
    "JsonFlag",
    "QuietFlag",
    "ScenarioArg",
    "app",
    "demo_app",
    "errors_to_exit_codes",
    "grafana_app",
    "influx_app",
    "token",
    "version",
]

app = typer.Typer(
    name="harness",
    help="Distributed load-and-chaos harness: Locust load and timed faults on Ray, results in InfluxDB, SLO verdicts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
)
demo_app = typer.Typer(help="The local demo shop (gateway, catalog, cart, payments) under a supervisor.")
influx_app = typer.Typer(help="The embedded local InfluxDB 1.x that harness starts when none is running.")
grafana_app = typer.Typer(help="Push the datasource and dashboards to a Grafana server; link to a run's dashboard.")
app.add_typer(demo_app, name="demo")
app.add_typer(influx_app, name="influx")
app.add_typer(grafana_app, name="grafana")

log = logging.getLogger("harness")
F = TypeVar("F", bound=Callable[..., Any])

ScenarioArg = Annotated[Path, typer.Argument(help="Scenario YAML file.", show_default=False)]
JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables (fields: docs/cli.md).")
]
QuietFlag = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print only the verdict line; errors still go to stderr.")
]


def version() -> str:
    """``<distribution> <version>`` of the installed distribution that provides the ``harness`` package.

    Read from the installed metadata (never a constant that can disagree with it); the
    distribution's name is looked up the same way, so a rename on the package index needs no
    change here.
    """
    from importlib import metadata

    names = list(dict.fromkeys(metadata.packages_distributions().get("harness", [])))
    for name in names or ["harness"]:
        try:
            return f"{name} {metadata.version(name)}"
        except metadata.PackageNotFoundError:
            continue
    return "harness (not installed: no distribution metadata)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(version())
        raise typer.Exit(0)


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the installed version and exit."),
    ] = False,
) -> None:
    """Distributed load-and-chaos harness: Locust load and timed faults on Ray, results in InfluxDB, SLO verdicts."""


def errors_to_exit_codes(func: F) -> F:
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


def token(env_name: str | None, named_by: str) -> str | None:
    """The secret in the environment variable ``env_name``, which the option ``named_by`` names."""
    from harness.run.session import results_token

    return results_token(env_name, named_by)
