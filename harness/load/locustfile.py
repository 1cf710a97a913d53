"""A locustfile loaded the way ``locust`` loads it, for one harness load process.

Plain Locust imports the locustfile (its module-level ``@events...`` decorators register on the
global ``locust.events``), builds its command-line parser (firing
``init_command_line_parser``, so the file's own arguments exist), parses the options, builds
one ``Environment`` on those same global events and fires ``init``. A harness process does the
same, in the same order, so hooks, custom arguments, ``environment.parsed_options`` and
``environment.runner`` behave as under Locust (see docs/locustfiles.md for what differs).

Imported only by :mod:`harness.load.runner` (gevent already patched); never by Ray processes.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import locust
from locust import LoadTestShape, User
from locust.argument_parser import get_parser
from locust.env import Environment
from locust.util.load_locustfile import load_locustfile

__all__ = ["Locustfile", "build_environment", "parse_options"]

#: What a scenario's ``load.arguments`` value may be (YAML scalars, or a list for nargs options).
ArgumentValue = str | int | float | bool | Sequence[str | int | float]


@dataclass(frozen=True)
class Locustfile:
    """What a locustfile offers: its runnable User classes and its shapes, by name."""

    path: Path
    users: dict[str, type[User]]
    shapes: dict[str, LoadTestShape]

    @classmethod
    def load(cls, path: Path) -> Locustfile:
        """Import it as Locust does (``locust.util.load_locustfile``): module-level hooks register now."""
        users, shapes = load_locustfile(str(path))
        return cls(path, users, {type(s).__name__: s for s in shapes})

    def user_classes(self, wanted: Mapping[str, int]) -> list[type[User]]:
        """The named classes with the scenario's weights; none named: every runnable class, as Locust does.

        Every non-abstract User class of the file then runs with its own ``weight`` or
        ``fixed_count`` (Locust's default when no class is named on its command line).
        """
        if not wanted:
            if not self.users:
                raise RuntimeError(f"no User class found in {self.path} (Locust says the same)")
            return list(self.users.values())
        classes = []
        for name, weight in wanted.items():
            cls = self.users.get(name)
            if cls is None:
                raise RuntimeError(f"{name} is not a runnable (non-abstract) Locust User class in {self.path}")
            cls.weight = weight
            classes.append(cls)
        return classes

    def shape(self, name: str | None) -> LoadTestShape | None:
        if name is None:
            return None
        shape = self.shapes.get(name)
        if shape is None:
            raise RuntimeError(f"{name} is not a LoadTestShape class in {self.path}")
        return shape


def _refuse(message: str) -> NoReturn:
    raise ValueError(message)


def parse_options(
    locustfile: Path,
    host: str,
    users: int | None,
    run_time: float | None,
    arguments: Mapping[str, Any],
) -> argparse.Namespace:
    """``environment.parsed_options`` as ``locust --headless`` would build it for this run.

    Builds Locust's own parser (which fires ``init_command_line_parser`` on the global events,
    so the locustfile's arguments are declared) without reading Locust's config files (a run is
    decided by its scenario), and parses host, users, run time and the scenario's
    ``load.arguments``. Raises ValueError for an argument the file does not declare or a value
    its parser refuses.
    """
    parser = get_parser(default_config_files=[])
    parser.error = _refuse  # type: ignore[method-assign]  # argparse exits; a refused value is an error here
    argv = ["-f", str(locustfile), "--headless", "--host", host]
    if users is not None:
        argv += ["--users", str(users)]
    for name, value in arguments.items():
        argv += _argv(parser, name, value)
    options = parser.parse_args(args=argv)
    options.run_time = None if run_time is None else round(run_time)  # as locust.main parses -t
    return options


def _argv(parser: argparse.ArgumentParser, name: str, value: ArgumentValue) -> list[str]:
    """One scenario argument as command-line words: ``--name value``; a flag only when true."""
    wanted = name.lstrip("-").replace("-", "_")
    for action in parser._actions:  # argparse keeps no public list of its actions
        if action.dest == wanted or any(o.lstrip("-").replace("-", "_") == wanted for o in action.option_strings):
            option = max(action.option_strings, key=len)
            if action.nargs == 0:  # store_true / store_false / store_const
                return [option] if value else []
            if isinstance(value, (list, tuple)):
                return [option, *(str(v) for v in value)]
            return [f"{option}={value}"]
    raise ValueError(f"the locustfile declares no argument --{name.lstrip('-')}")


def build_environment(
    locustfile: Locustfile,
    user_classes: list[type[User]],
    shape: LoadTestShape | None,
    host: str,
    options: argparse.Namespace,
) -> Environment:
    """One Environment on Locust's global ``events``, with a local runner, as ``locust`` builds it."""
    return Environment(
        user_classes=user_classes,
        shape_class=shape,
        events=locust.events,
        host=host,
        parsed_options=options,
        locustfile=os.path.basename(locustfile.path),
        parsed_locustfiles=[str(locustfile.path)],
        available_user_classes=dict(locustfile.users),  # type: ignore[arg-type]  # Locust's own annotation is off
        available_shape_classes=dict(locustfile.shapes),
    )
