"""What a locustfile declares, read from its source without importing it.

Importing locust in the driver before Ray starts hangs (see DESIGN.md), and a scenario must be
checkable without running user code, so ``harness validate`` reads the file's syntax tree:
its top-level classes (which may be User classes or load shapes), the command-line arguments
it declares (``parser.add_argument("--name", ...)`` in an ``init_command_line_parser``
listener) and whether it reads ``environment.stats`` (kept off the hot path unless it does).
What a syntax tree cannot tell (a class that inherits from an imported User class, an
argument added in a loop) is judged again by the load process when it imports the file.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.scenario.model import Scenario

__all__ = ["Outline", "argument_name", "describe_load", "locustfile_notes", "outline"]


@dataclass(frozen=True)
class Outline:
    """A locustfile's declarations, as written."""

    classes: frozenset[str]  # every top-level class name
    users: tuple[str, ...]  # top-level classes whose bases name a User (HttpUser, FastHttpUser, ...)
    shapes: tuple[str, ...]  # top-level classes whose bases name LoadTestShape
    arguments: tuple[str, ...]  # declared options, as argument_name() spells them
    reads_stats: bool  # the file reads some ``.stats`` attribute (environment.stats, runner.stats)


def argument_name(option: str) -> str:
    """The one spelling an option is compared by: ``--my-arg``, ``my_arg`` and ``my-arg`` are ``my_arg``."""
    return option.lstrip("-").replace("-", "_")


def _base_names(node: ast.ClassDef) -> list[str]:
    names = []
    for base in node.bases:
        if isinstance(base, ast.Name):
            names.append(base.id)
        elif isinstance(base, ast.Attribute):
            names.append(base.attr)
    return names


def _declared(tree: ast.Module) -> list[str]:
    options: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument":
            for arg in node.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.startswith("--"):
                    options.append(argument_name(arg.value))
    return options


def outline(path: Path) -> Outline | None:
    """The declarations of the locustfile at ``path``; None when it is not readable Python."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
        return None
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    local = {c.name for c in classes}
    users: list[str] = []
    user_like: set[str] = set()  # abstract ones too: their subclasses are Users
    shapes: list[str] = []
    for node in classes:
        bases = _base_names(node)
        if any(b == "LoadTestShape" or b in shapes for b in bases):
            shapes.append(node.name)
        elif any(b.endswith("User") or b in user_like for b in bases):
            user_like.add(node.name)
            if not _abstract(node):
                users.append(node.name)
    reads_stats = any(isinstance(n, ast.Attribute) and n.attr == "stats" for n in ast.walk(tree))
    return Outline(frozenset(local), tuple(users), tuple(shapes), tuple(dict.fromkeys(_declared(tree))), reads_stats)


def _abstract(node: ast.ClassDef) -> bool:
    """``abstract = True`` in the class body: Locust does not run it."""
    for stmt in node.body:
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "abstract" for t in stmt.targets):
            return isinstance(stmt.value, ast.Constant) and stmt.value.value is True
    return False


def _scenario_outline(scenario: Scenario) -> Outline | None:
    return outline(scenario.locustfile_path)


def locustfile_notes(scenario: Scenario) -> list[str]:
    """Warnings for ``harness validate``: what the locustfile does that runs differently under harness."""
    declared = _scenario_outline(scenario)
    notes = []
    if declared is not None and declared.reads_stats:
        notes.append(
            f"{scenario.load.locustfile} reads '.stats': under harness, environment.stats holds only each Locust "
            "process's own requests, not the run's (the run's figures are in its summary), and Locust's "
            "per-request statistics are switched on for it, which costs CPU on every request "
            "(see docs/locustfiles.md)"
        )
    return notes


def describe_load(scenario: Scenario) -> list[tuple[str, str]]:
    """What will run, for ``harness plan``: locustfile, user classes, shape, arguments."""
    load = scenario.load
    rows = [("locustfile", str(scenario.locustfile_path))]
    if load.user_classes:
        classes = ", ".join(f"{u.class_name} (weight {u.weight})" for u in load.user_classes)
    else:
        declared = _scenario_outline(scenario)
        found = ", ".join(declared.users) if declared is not None and declared.users else "as the file defines"
        classes = f"every User class in the file, each with its own weight or fixed_count: {found}"
    rows.append(("user classes", classes))
    if load.shape is not None:
        rows.append(("shape", f"{load.shape}: {len(load.stages)} stages read from its ticks, one a second"))
    if load.arguments:
        rows.append(("arguments", " ".join(_argument_text(k, v) for k, v in load.arguments.items())))
    return rows


def _argument_text(name: str, value: object) -> str:
    option = "--" + name.lstrip("-")
    if value is True:
        return option
    if value is False:
        return f"(no {option})"
    if isinstance(value, list):
        return " ".join([option, *map(str, value)])
    return f"{option}={value}"
