"""The flags that change a scenario from the command line, shared by ``validate``, ``plan``,
``run`` and ``gate``: ``-e NAME=VALUE``, ``--set key.path=value`` and the shortcuts
``--base-url``, ``--users``, ``--rate`` and ``--duration`` (docs/environments.md).

They are passed on as written (:class:`harness.scenario.overrides.Overrides`): the scenario
room parses and checks them like the file, and locates each problem to its flag.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from harness.scenario.overrides import Overrides

__all__ = ["BaseUrl", "Duration", "Env", "Json", "Rate", "Set", "Users", "overrides"]

_PANEL = "Overrides (docs/environments.md)"

Env = Annotated[
    list[str] | None,
    typer.Option(
        "-e",
        "--env",
        metavar="NAME=VALUE",
        help="Set the variable NAME for ${NAME} in the scenario file (before the environment's). Repeatable.",
        rich_help_panel=_PANEL,
    ),
]
Set = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY.PATH=VALUE",
        help="Set one value of the scenario, e.g. --set load.stages[1].users=400 (the value is read as YAML "
        "reads a plain value). Repeatable; applied after the shortcuts.",
        rich_help_panel=_PANEL,
    ),
]
BaseUrl = Annotated[
    str | None,
    typer.Option("--base-url", help="Send the load here (target.base_url).", rich_help_panel=_PANEL),
]
Users = Annotated[
    int | None,
    typer.Option(
        "--users",
        min=0,
        help="Closed model: scale every stage's users (and spawn rate) so the busiest stage has this many.",
        rich_help_panel=_PANEL,
    ),
]
Rate = Annotated[
    float | None,
    typer.Option(
        "--rate",
        min=0,
        help="Open model: scale every stage's arrival_rate so the highest is this many per second.",
        rich_help_panel=_PANEL,
    ),
]
Duration = Annotated[
    str | None,
    typer.Option(
        "--duration",
        help="Make the run last this long (e.g. 5m): a single stage is set to it; several stages, and the "
        "faults' offsets and lengths, are scaled alike.",
        rich_help_panel=_PANEL,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON (fields in docs/environments.md) instead of text.")]


def overrides(
    env: list[str] | None,
    settings: list[str] | None,
    base_url: str | None,
    users: int | None,
    rate: float | None,
    duration: str | None,
) -> Overrides:
    from harness.scenario.overrides import Overrides

    return Overrides(
        variables=tuple(env or ()),
        settings=tuple(settings or ()),
        base_url=base_url,
        users=users,
        rate=rate,
        duration=duration,
    )
