"""``harness new NAME``: a minimal scenario and locustfile to start from, checked before it is kept."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harness.cli.app import errors_to_exit_codes
from harness.errors import ConfigError

__all__ = ["new", "register"]

DEMO_URL = "http://127.0.0.1:8700"


def register(app: typer.Typer) -> None:
    app.command()(errors_to_exit_codes(new))


def new(
    name: Annotated[
        str, typer.Argument(help="Scenario name; also the file names NAME.yaml and NAME.py.", show_default=False)
    ],
    directory: Annotated[Path, typer.Option("--dir", help="Write the two files into this directory.")] = Path("."),
    base_url: Annotated[str, typer.Option(help="The service the load goes to (default: the demo shop).")] = DEMO_URL,
    force: Annotated[bool, typer.Option("--force", help="Overwrite NAME.yaml and NAME.py if they exist.")] = False,
) -> None:
    """Write NAME.yaml (a scenario: a ramp, a steady stage, two SLOs) and NAME.py (its locustfile).

    Both validate and run against the demo shop as written (harness demo up). Exit 2 when
    NAME is not a plain name or a file exists (without --force); nothing is written then.
    """
    from harness.scenario import load_scenario
    from harness.templates import NAME_PATTERN, render

    if not NAME_PATTERN.match(name):
        raise ConfigError(
            f"NAME {name!r}: use letters, digits, '-' and '_' (starting with a letter or digit, at most 80)"
        )
    files = {directory / filename: text for filename, text in render(name, base_url).items()}
    existing = [str(path) for path in files if path.exists()]
    if existing and not force:
        raise ConfigError(f"{', '.join(existing)}: already exists (--force overwrites)")
    directory.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    scenario = directory / f"{name}.yaml"
    try:
        load_scenario(scenario)  # a --base-url the scenario refuses: say so, keep nothing
    except BaseException:
        if not existing:
            for path in files:
                path.unlink(missing_ok=True)
        raise
    for path in files:
        typer.echo(f"wrote {path}")
    typer.echo(f"next: harness validate {scenario}; harness run {scenario}")
