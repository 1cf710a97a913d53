"""``harness validate``, ``plan`` and ``schema``: a scenario file checked, shown, described."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from harness.cli.app import ScenarioArg, errors_to_exit_codes

__all__ = ["plan", "register", "schema", "validate"]


def register(app: typer.Typer) -> None:
    app.command()(errors_to_exit_codes(validate))
    app.command()(errors_to_exit_codes(plan))
    app.command()(errors_to_exit_codes(schema))


def validate(scenario: ScenarioArg) -> None:
    """Check a scenario file and report every problem with file, line and key path (exit 2)."""
    from harness.load.shape import shape_stages
    from harness.plan import compile_plan
    from harness.scenario import load_scenario, locustfile_notes

    loaded = shape_stages(load_scenario(scenario))
    compiled = compile_plan(loaded)
    for note in locustfile_notes(loaded):
        typer.echo(f"{scenario}: warning: {note}", err=True)
    typer.echo(
        f"{scenario}: valid: {len(compiled.phases)} stages, {len(loaded.faults)} faults, "
        f"{len(loaded.slos)} SLOs, {len(loaded.guards)} guards, {compiled.duration:g}s"
    )


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
    from harness.load.shape import shape_stages
    from harness.plan import compile_plan
    from harness.run.nodes import plan_rows
    from harness.scenario import load_scenario

    loaded = shape_stages(load_scenario(scenario))
    compiled = compile_plan(loaded)
    if ray_address:
        from harness.run.cluster import read_cluster

        nodes, driver = read_cluster(ray_address)
        rows = plan_rows(loaded, nodes, driver)
    else:
        rows = plan_rows(loaded)
    print_plan(compiled, targets(loaded), rows)


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
