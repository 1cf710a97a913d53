"""``harness validate``, ``plan`` and ``schema``: a scenario file checked, shown, described.

``validate`` and ``plan`` take the override flags (:mod:`~harness.cli.scenario_options`) and
``--json``; with ``--json`` the document goes to stdout whatever the outcome (problems included,
still exit 2), and nothing else is printed.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from harness.cli.app import ScenarioArg, errors_to_exit_codes
from harness.cli.scenario_options import BaseUrl, Duration, Env, Json, Rate, Set, Users, overrides
from harness.errors import HarnessError, Problem, ScenarioError

if TYPE_CHECKING:
    from harness.scenario.redact import Loaded

__all__ = ["plan", "register", "schema", "validate"]


def register(app: typer.Typer) -> None:
    app.command()(errors_to_exit_codes(validate))
    app.command()(errors_to_exit_codes(plan))
    app.command()(errors_to_exit_codes(schema))


def validate(
    scenario: ScenarioArg,
    as_json: Json = False,
    env: Env = None,
    settings: Set = None,
    base_url: BaseUrl = None,
    users: Users = None,
    rate: Rate = None,
    duration: Duration = None,
) -> None:
    """Check a scenario file and report every problem with file, line and key path (exit 2)."""
    from harness.load.shape import shape_stages
    from harness.plan import compile_plan, validation_document
    from harness.scenario import locustfile_notes, read_scenario

    try:
        loaded = read_scenario(scenario, overrides(env, settings, base_url, users, rate, duration))
        loaded = dataclasses.replace(loaded, scenario=shape_stages(loaded.scenario))  # a LoadTestShape's ticks
    except HarnessError as exc:
        if as_json:
            _json_failure(validation_document(str(scenario), None, _problems(exc, scenario)), exc)
        raise
    notes = locustfile_notes(loaded.scenario)
    if as_json:
        _echo_json(validation_document(str(scenario), loaded, [], notes))
        return
    for note in notes:
        typer.echo(f"{scenario}: warning: {note}", err=True)
    compiled = compile_plan(loaded.scenario)
    scenario_ = loaded.scenario
    typer.echo(
        f"{scenario}: valid: {len(compiled.phases)} stages, {len(scenario_.faults)} faults, "
        f"{len(scenario_.slos)} SLOs, {len(scenario_.guards)} guards, {compiled.duration:g}s"
    )


def plan(
    scenario: ScenarioArg,
    ray_address: Annotated[
        str | None,
        typer.Option(help="Show where each actor will run on this Ray cluster (HOST:PORT; needs its token)."),
    ] = None,
    as_json: Json = False,
    env: Env = None,
    settings: Set = None,
    base_url: BaseUrl = None,
    users: Users = None,
    rate: Rate = None,
    duration: Duration = None,
) -> None:
    """Print the variables and overrides used, what each Locust process runs, the compiled
    timeline, resolved fault targets and where each actor runs; applies nothing."""
    from harness.load.shape import shape_stages
    from harness.plan import plan_document, validation_document
    from harness.scenario import locustfile_notes, read_scenario

    try:
        loaded = read_scenario(scenario, overrides(env, settings, base_url, users, rate, duration))
        loaded = dataclasses.replace(loaded, scenario=shape_stages(loaded.scenario))  # a LoadTestShape's ticks
        targets, rows = _resolve(loaded, ray_address)
    except HarnessError as exc:
        if as_json:
            document = validation_document(str(scenario), None, _problems(exc, scenario))
            _json_failure(document, exc)
        raise
    if as_json:
        _echo_json(plan_document(str(scenario), loaded, targets, rows, locustfile_notes(loaded.scenario)))
        return
    from harness.cli.display import print_plan_of

    print_plan_of(loaded, targets, rows)


def _resolve(loaded: Loaded, ray_address: str | None) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Each fault's resolved target, and where each actor runs (on the cluster at ``ray_address``)."""
    from harness.chaos.preflight import targets
    from harness.run.nodes import plan_rows

    if ray_address:
        from harness.run.cluster import read_cluster
        from harness.run.faults import choose_pods

        nodes, driver = read_cluster(ray_address)
        return targets(loaded.scenario), plan_rows(loaded.scenario, nodes, driver, choose_pods(loaded.scenario))
    return targets(loaded.scenario), plan_rows(loaded.scenario)


def _problems(exc: HarnessError, scenario: Path) -> list[Problem]:
    """A scenario's located problems; any other refusal (a fault family that cannot load, say)
    as one problem of the file."""
    if isinstance(exc, ScenarioError):
        return exc.problems
    return [Problem(str(scenario), 0, 0, "", str(exc))]


def _json_failure(document: dict[str, Any], exc: HarnessError) -> NoReturn:
    _echo_json(document)
    raise typer.Exit(exc.exit_code) from None


def _echo_json(document: dict[str, Any]) -> None:
    typer.echo(json.dumps(document, indent=2, default=str))


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
