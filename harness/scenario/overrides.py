"""What the command line changes in a scenario: ``-e NAME=VALUE``, ``--set key.path=value`` and
the shortcuts ``--base-url``, ``--users``, ``--rate`` and ``--duration``.

They are applied to the document read from the file (variables already substituted), before it
is validated, so a value given on the command line is checked exactly as one written in the file.
Each key path a flag wrote is remembered with the flag as the user typed it: a problem found
there is located to the flag (``--set load.stages[1].users=many: ...``), not to the file.
The shortcuts are applied first, then every ``--set`` in order: the last word is the most precise.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from harness.scenario.expressions import parse_duration
from harness.scenario.fields import KeyPath
from harness.scenario.keys import allowed_keys, closest
from harness.scenario.source import dotted
from harness.scenario.variables import NAME

__all__ = ["Applied", "Overrides", "Setting", "apply_overrides", "parse_path", "parse_variables"]


@dataclass(frozen=True)
class Overrides:
    """The override flags as given on the command line (raw text: parsed and checked here)."""

    variables: tuple[str, ...] = ()  # each -e NAME=VALUE
    settings: tuple[str, ...] = ()  # each --set key.path=value
    base_url: str | None = None
    users: int | None = None
    rate: float | None = None
    duration: str | None = None

    def __bool__(self) -> bool:
        return any((self.variables, self.settings)) or any(
            v is not None for v in (self.base_url, self.users, self.rate, self.duration)
        )


@dataclass(frozen=True)
class Setting:
    """One value a flag wrote into the document."""

    flag: str  # as typed, e.g. "--set load.stages[1].users=400" or "--users 400"
    path: KeyPath
    value: Any


@dataclass
class Applied:
    """What the flags did: the values written (in order), which flag owns each key path, and the
    problems found in the flags themselves (flag, key path, message)."""

    settings: list[Setting] = field(default_factory=list)
    owners: dict[KeyPath, str] = field(default_factory=dict)
    problems: list[tuple[str, KeyPath, str]] = field(default_factory=list)

    def owner(self, path: KeyPath) -> str | None:
        """The flag that wrote ``path`` or a key above it (the deepest one), if any."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.owners:
                return self.owners[path[:end]]
        return None


def parse_variables(given: tuple[str, ...]) -> tuple[dict[str, str], dict[str, str], list[tuple[str, str]]]:
    """``-e NAME=VALUE`` flags: the values by name, the flag that gave each, and (flag, message) problems."""
    values: dict[str, str] = {}
    flags: dict[str, str] = {}
    problems: list[tuple[str, str]] = []
    for text in given:
        flag = f"-e {text}"
        name, sep, value = text.partition("=")
        if not sep:
            problems.append((flag, "expected NAME=VALUE, e.g. -e BASE_URL=http://127.0.0.1:8700"))
        elif not NAME.fullmatch(name):
            problems.append((flag, f"'{name}' is not a variable name (letters, digits and _; no digit first)"))
        else:
            values[name], flags[name] = value, flag
    return values, flags, problems


_PART = re.compile(r"""\.?(?P<key>[^.\[\]=]+)|\[(?P<index>-?\d+)\]|\[(?P<quote>["'])(?P<quoted>.*?)(?P=quote)\]""")


def parse_path(text: str) -> KeyPath:
    """``load.stages[1].users`` -> ('load', 'stages', 1, 'users'); a key with dots in it is
    written in quotes: ``load.node.labels["harness.io/host"]``. Raises ValueError."""
    parts: list[str | int] = []
    at = 0
    while at < len(text):
        match = _PART.match(text, at)
        if match is None or (match["key"] is not None and parts and not text.startswith(".", at)):
            raise ValueError(f"cannot read the key path at '{text[at:]}'; write e.g. load.stages[1].users")
        if match["index"] is not None:
            index = int(match["index"])
            if index < 0:
                raise ValueError(f"[{index}]: list indexes start at 0")
            parts.append(index)
        else:
            parts.append(match["key"] if match["key"] is not None else match["quoted"])
        at = match.end()
    if not parts or isinstance(parts[0], int):
        raise ValueError("expected key.path=value, e.g. --set load.stages[1].users=400")
    return tuple(parts)


def scalar(text: str) -> Any:
    """A value as YAML reads a plain scalar: 400 is a number, true a boolean, '' null, text text."""
    tag = yaml.SafeLoader("").resolve(yaml.ScalarNode, text, (True, False))
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(yaml.ScalarNode(tag, text))
    except (ValueError, yaml.YAMLError):
        return text
    finally:
        loader.dispose()


def apply_overrides(data: dict[str, Any], overrides: Overrides) -> Applied:
    """Write the flags' values into ``data`` (in place): shortcuts first, then each ``--set``."""
    applied = Applied()
    if overrides.base_url is not None:
        _put(data, ("target", "base_url"), overrides.base_url, f"--base-url {overrides.base_url}", applied)
    if overrides.users is not None:
        _scale_load(data, f"--users {overrides.users}", "users", overrides.users, applied)
    if overrides.rate is not None:
        _scale_load(data, f"--rate {overrides.rate:g}", "arrival_rate", overrides.rate, applied)
    if overrides.duration is not None:
        _set_duration(data, overrides.duration, applied)
    for text in overrides.settings:
        flag = f"--set {text}"
        written, sep, value = text.partition("=")
        try:
            if not sep:
                raise ValueError("expected key.path=value, e.g. --set load.stages[1].users=400")
            path = parse_path(written.strip())
        except ValueError as exc:
            applied.problems.append((flag, (), str(exc)))
            continue
        _put(data, path, scalar(value), flag, applied)
    return applied


def _put(data: dict[str, Any], path: KeyPath, value: Any, flag: str, applied: Applied) -> None:
    """``data[path] = value``, creating mappings on the way; a path that cannot be is a problem."""
    node: Any = data
    for depth, part in enumerate(path):
        here = path[: depth + 1]
        if isinstance(part, int):
            if not isinstance(node, list):
                applied.problems.append((flag, here, f"{dotted(path[:depth]) or 'the scenario'} is not a list"))
                return
            if part >= len(node):
                count = f"{len(node)} item{'s' if len(node) != 1 else ''}"
                message = f"{dotted(path[:depth])} has {count}; [{part}] is not one of them"
                applied.problems.append((flag, here, message))
                return
        else:
            if not isinstance(node, dict):
                what = "a list; give an index, e.g. [0]" if isinstance(node, list) else "not a mapping of keys"
                applied.problems.append((flag, here, f"{dotted(path[:depth])} is {what}"))
                return
            allowed = allowed_keys(path[:depth], data)
            if allowed is not None and part not in allowed:
                close = closest(part, allowed)
                hint = f"; did you mean '{close}'?" if close else f"; allowed keys: {', '.join(allowed)}"
                applied.problems.append((flag, here, f"unknown key '{part}'{hint}"))
                return
        if depth == len(path) - 1:
            node[part] = value
            break
        if isinstance(node, dict) and part not in node:
            node[part] = {}
            applied.owners.setdefault(here, flag)
        node = node[part]
    applied.owners[path] = flag
    applied.settings.append(Setting(flag, path, value))


def _stages(data: dict[str, Any], flag: str, applied: Applied) -> list[Any] | None:
    load = data.get("load")
    stages = load.get("stages") if isinstance(load, dict) else None
    if not isinstance(stages, list) or not stages:
        shaped = isinstance(load, dict) and load.get("shape") is not None
        why = "a load.shape class drives this scenario's users: shortcuts change stages only" if shaped else ""
        applied.problems.append((flag, ("load", "stages"), why or "the scenario has no load.stages to change"))
        return None
    return stages


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            return float(str(value))
        except ValueError:
            return None
    return float(value)


def _scale_load(data: dict[str, Any], flag: str, key: str, target: float, applied: Applied) -> None:
    """Scale every stage's ``key`` (users or arrival_rate) so the highest is ``target``; users
    stages scale their spawn rates alike, so each ramp keeps its length."""
    stages = _stages(data, flag, applied)
    if stages is None:
        return
    other, shortcut = ("arrival_rate", "--rate") if key == "users" else ("users", "--users")
    if any(isinstance(s, dict) and other in s and key not in s for s in stages):
        model = "open (arrival_rate)" if key == "users" else "closed (users)"
        applied.problems.append(
            (flag, ("load", "stages"), f"the scenario's stages are of the {model} load model; use {shortcut}")
        )
        return
    values = [_number(s.get(key)) if isinstance(s, dict) else None for s in stages]
    peak = max((v for v in values if v is not None), default=None)
    if peak is None:
        return  # no stage could be read: its own problem says why
    factor = target / peak if peak > 0 else math.nan
    for i, (stage, value) in enumerate(zip(stages, values, strict=True)):
        if value is None:
            continue
        scaled = target if math.isnan(factor) else value * factor
        _put(data, ("load", "stages", i, key), round(scaled) if key == "users" else round(scaled, 3), flag, applied)
        if key == "users" and not math.isnan(factor):
            spawn = _number(stage.get("spawn_rate", 10.0))
            if spawn is not None:
                _put(data, ("load", "stages", i, "spawn_rate"), max(round(spawn * factor, 3), 0.001), flag, applied)


def _set_duration(data: dict[str, Any], text: str, applied: Applied) -> None:
    """The run lasts ``text``: one stage takes it all; several are scaled alike (their ``at``
    too), and so are the faults' ``at`` and ``duration``, so the timeline keeps its shape."""
    flag = f"--duration {text}"
    try:
        wanted = parse_duration(text)
    except ValueError as exc:
        applied.problems.append((flag, (), str(exc)))
        return
    if wanted <= 0:
        applied.problems.append((flag, (), "the run must last longer than 0s"))
        return
    stages = _stages(data, flag, applied)
    timeline = _timeline(stages) if stages is not None else None
    if stages is None or timeline is None:
        return  # a stage's duration or offset cannot be read: its own problem says why
    total = max(end for _, end in timeline)
    factor = wanted / total if total > 0 else 1.0
    for i, (stage, (start, end)) in enumerate(zip(stages, timeline, strict=True)):
        if "at" in stage:
            _put(data, ("load", "stages", i, "at"), round(start * factor, 3), flag, applied)
        last = i == len(stages) - 1 and end == total  # takes what rounding left: the run lasts exactly ``wanted``
        length = wanted - round(start * factor, 3) if last else (end - start) * factor
        _put(data, ("load", "stages", i, "duration"), round(length, 3), flag, applied)
    faults = data.get("faults")
    for i, fault in enumerate(faults if isinstance(faults, list) else []):
        for key in ("at", "duration"):
            seconds = _seconds(fault.get(key)) if isinstance(fault, dict) else None
            if seconds is not None:
                _put(data, ("faults", i, key), round(seconds * factor, 3), flag, applied)
        when = fault.get("at") if isinstance(fault, dict) else None
        for key in ("after", "deadline"):  # a steady start's bounds move with the run; its "for" does not
            seconds = _seconds(when.get(key)) if isinstance(when, dict) else None
            if seconds is not None:
                _put(data, ("faults", i, "at", key), round(seconds * factor, 3), flag, applied)


def _seconds(value: Any) -> float | None:
    try:
        return parse_duration(value)
    except ValueError:
        return None


def _timeline(stages: list[Any]) -> list[tuple[float, float]] | None:
    """(start, end) of each stage, as the plan places them; None when one cannot be read."""
    out: list[tuple[float, float]] = []
    end = 0.0
    for stage in stages:
        if not isinstance(stage, dict):
            return None
        length = _seconds(stage.get("duration"))
        start = _seconds(stage["at"]) if "at" in stage else end
        if length is None or start is None:
            return None
        out.append((start, start + length))
        end = max(end, start) + length
    return out
