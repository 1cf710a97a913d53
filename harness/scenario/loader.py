"""``load_scenario``: YAML in, a frozen, cross-checked ``Scenario`` out, every problem located."""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.errors import Problem, ScenarioError
from harness.scenario.checks import Found, cross_checks
from harness.scenario.draft import Draft, salvage
from harness.scenario.faults import fault_kinds
from harness.scenario.fields import KeyPath
from harness.scenario.keys import allowed_keys, closest
from harness.scenario.messages import plain
from harness.scenario.model import Scenario
from harness.scenario.overrides import Overrides, apply_overrides, parse_variables
from harness.scenario.redact import Loaded, redact, secret_values, shown_use
from harness.scenario.source import Positions, Prepare, dotted, read_yaml
from harness.scenario.variables import Use, Variables, interpolate

MAX_SCENARIO_BYTES = 1_000_000


# Union tags pydantic puts in a location (and every fault kind: fault_kinds(), read when needed).
_TAGS = {"users_stage", "rate_stage", "at_offset", "at_steady"}


_SECRET_KEYS = {"token", "password", "secret", "api_key", "apikey"}


def _data_path(loc: tuple[Any, ...], data: Any) -> KeyPath:
    """Map a pydantic ``loc`` onto the document, dropping union tags and following aliases."""
    out: list[str | int] = []
    node = data
    for part in loc:
        written = isinstance(node, dict) and part in node  # a key of the document, whatever it looks like
        tag = isinstance(part, str) and (part in _TAGS or part in fault_kinds())
        if isinstance(part, str) and not written and (tag or part.startswith("function-") or "[" in part):
            continue  # a union tag or a validator's name, e.g. 'function-after[...]'

        out.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(out)


def _suggestion(path: KeyPath, data: Any) -> tuple[str | None, list[str]]:
    """For an unknown key at ``path``: the allowed key it most resembles, and all allowed keys."""
    allowed = allowed_keys(path[:-1], data) or []
    return closest(path[-1] if path else "", allowed), allowed


def _message(error: Any, path: KeyPath, data: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(path[-1]) if path else ""
        if key.lower() in _SECRET_KEYS:
            return (
                f"'{key}' must not be written in a scenario file; put the secret in an environment "
                "variable and name the variable in results.token_env"
            )
        if key.lower() in ("kubeconfig", "kube_config", "kubeconfig_path"):
            return (
                f"'{key}' must not be written in a scenario file; harness reads the kubeconfig named by "
                "$KUBECONFIG (default ~/.kube/config) and acts only in safety.allowed_contexts"
            )
        close, allowed = _suggestion(path, data)
        hint = f"; did you mean '{close}'?" if close else (f"; allowed keys: {', '.join(allowed)}" if allowed else "")
        return f"unknown key '{key}'{hint}"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_not_found":  # only the fault union has a key for a tag: kind
        return f"required key is missing; use one of {', '.join(sorted(fault_kinds()))}"
    if kind == "union_tag_invalid" or (kind == "literal_error" and path and path[-1] == "kind"):
        written = _node(path[:-1], data).get("kind")
        close = closest(written, fault_kinds()) if isinstance(written, str) else None
        hint = f"did you mean '{close}'? The kinds are" if close else "use one of"
        return f"unknown fault kind; {hint} {', '.join(sorted(fault_kinds()))}"
    return plain(error)


def _error_path(error: Any, data: Any) -> KeyPath:
    path = _data_path(tuple(error["loc"]), data)
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        path = (*path, "kind")
    return path


def _validation_problems(exc: ValidationError, data: Any) -> list[Found]:
    """One located problem per mistake.

    A misspelt required key is one mistake that pydantic reports twice (the key written is
    unknown, the key meant is missing): it is reported once, as the unknown key with its
    suggestion, where it was written. A misspelt ``kind`` likewise: the fault union cannot pick
    a model, so its unknown key is reported here, instead of "required key is missing".
    """
    errors = [(_error_path(e, data), e) for e in exc.errors()]
    misspelt: dict[KeyPath, KeyPath] = {}  # the key meant -> the key written
    for path, error in errors:
        if error["type"] == "extra_forbidden" and (close := _suggestion(path, data)[0]) is not None:
            misspelt.setdefault((*path[:-1], close), path)
        if error["type"] == "union_tag_not_found":
            node = _node(path[:-1], data)
            written = difflib.get_close_matches("kind", [k for k in node if isinstance(k, str)], n=1)
            if written:
                misspelt[path] = (*path[:-1], written[0])
    problems = []
    for path, error in errors:
        if error["type"] == "missing" and path in misspelt:
            continue  # the key meant: reported as the unknown key written
        message = _message(error, path, data)
        if error["type"] == "union_tag_not_found" and path in misspelt:
            path, message = misspelt[path], f"unknown key '{misspelt[path][-1]}'; did you mean 'kind'?"
        problems.append((path, message))
    return problems


def _node(path: KeyPath, data: Any) -> dict[Any, Any]:
    """The mapping written at ``path`` of the document (empty when it is none)."""
    for part in path:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return {}
    return data if isinstance(data, dict) else {}


def load_scenario(path: str | Path, overrides: Overrides | None = None) -> Scenario:
    """Read, validate and cross-check a scenario file, with the command line's ``overrides``.

    Raises ``ScenarioError`` (exit 2) listing every problem found, each located by file,
    line, column and key path (or by the flag that gave the value), in one pass: structural
    mistakes (a wrong type, a missing or unknown key, an unset variable) do not hide the checks
    that span keys, which run on whatever validated (see :mod:`.draft`). Applies nothing and
    starts nothing.
    """
    return read_scenario(path, overrides).scenario


def read_scenario(
    path: str | Path, overrides: Overrides | None = None, environ: Mapping[str, str] | None = None
) -> Loaded:
    """:func:`load_scenario`, also saying which variables the file used and what the flags set
    (for ``harness plan``). ``environ`` defaults to the process's environment."""
    overrides = overrides or Overrides()
    file = str(path)
    source = Path(path)
    given, given_flags, flag_problems = parse_variables(overrides.variables)
    variables = Variables(given, os.environ if environ is None else environ)
    found = _Interpolated(file, variables)
    data, positions = _document(_text(source, file), file, found.prepare)
    problems = [Problem(file, 0, 0, "", m, flag=f) for f, m in flag_problems]
    problems += found.problems
    problems += _unused(given_flags, variables.asked, file)
    broken = {p.path for p in found.problems}  # a value whose variable is unset: said once, there
    if "source" in data:
        problems.append(Problem(file, *positions.locate(("source",)), "source", "unknown key 'source'"))
    document = {k: v for k, v in data.items() if k != "source"}
    applied = apply_overrides(document, overrides)
    problems += [Problem(file, 0, 0, dotted(p), m, flag=f) for f, p, m in applied.problems]

    def locate(path: KeyPath, message: str) -> Problem:
        flag = applied.owner(path)
        if flag is not None:
            return Problem(file, 0, 0, dotted(path), message, flag=flag)
        return Problem(file, *positions.locate(path), dotted(path), message)

    resolved = str(source.resolve())
    scenario: Scenario | None = None
    found_problems: list[Found] = []
    try:
        try:
            scenario = Scenario.model_validate({**document, "source": resolved})
            draft = Draft.of(scenario)
        except ValidationError as exc:
            found_problems += _validation_problems(exc, document)
            draft = salvage(document, resolved)
    except RecursionError:
        raise ScenarioError([Problem(file, 1, 1, "", "document is nested too deeply")]) from None
    found_problems += cross_checks(draft)
    problems += [locate(p, m) for p, m in found_problems if not _under(dotted(p), broken)]
    secret = secret_values(document, found.uses, variables)
    if problems or scenario is None:
        raise ScenarioError([redact(p, secret) for p in dict.fromkeys(problems)])
    uses = tuple(shown_use(u, secret) for u in found.uses)
    return Loaded(_absolute_paths(scenario), uses, tuple(applied.settings), frozenset(secret))


def _under(path: str, broken: set[str]) -> bool:
    """Whether ``path`` is one of ``broken`` or lies under one."""
    return any(path == b or path.startswith((f"{b}.", f"{b}[")) for b in broken)


class _Interpolated:
    """Variables substituted into a document while it is read (:data:`~.source.Prepare`)."""

    def __init__(self, file: str, variables: Variables) -> None:
        self.file = file
        self.variables = variables
        self.uses: list[Use] = []
        self.problems: list[Problem] = []

    def prepare(self, root: Any, resolve: Callable[[str], str]) -> None:
        self.uses, self.problems = interpolate(root, self.file, self.variables, resolve)


def _unused(flags: Mapping[str, str], asked: set[str], file: str) -> list[Problem]:
    """A ``-e`` the file never reads changes nothing: most likely a misspelt name."""
    out = []
    for name, flag in flags.items():
        if name not in asked:
            close = closest(name, asked)
            hint = f"; did you mean {close}?" if close else ""
            out.append(Problem(file, 0, 0, "", f"the scenario uses no variable {name}{hint}", flag=flag))
    return out


def _text(source: Path, file: str) -> str:
    """The file's text, read with a bound; every way it cannot be read is a located problem."""
    too_large = ScenarioError([Problem(file, 1, 1, "", f"file is larger than {MAX_SCENARIO_BYTES} bytes")])
    try:
        if source.stat().st_size > MAX_SCENARIO_BYTES:
            raise too_large
        with source.open("rb") as stream:  # bounded: a pipe or a device has no size to check first
            raw = stream.read(MAX_SCENARIO_BYTES + 1)
        if len(raw) > MAX_SCENARIO_BYTES:
            raise too_large
    except FileNotFoundError:
        raise ScenarioError([Problem(file, 1, 1, "", "file not found")]) from None
    except IsADirectoryError:
        raise ScenarioError([Problem(file, 1, 1, "", "is a directory, not a scenario file")]) from None
    except OSError as exc:
        raise ScenarioError([Problem(file, 1, 1, "", f"cannot read: {exc.strerror}")]) from None
    except ValueError:  # a NUL in the path
        raise ScenarioError([Problem(file, 1, 1, "", "not a usable file name")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = raw.count(b"\n", 0, exc.start) + 1, exc.start - raw.rfind(b"\n", 0, exc.start)
        raise ScenarioError([Problem(file, line, col, "", f"not UTF-8 text (byte {exc.start})")]) from None
    if "\x00" in text:
        raise ScenarioError([Problem(file, 1, 1, "", "binary data is not a scenario")])
    return text


def _document(text: str, file: str, prepare: Prepare | None = None) -> tuple[dict[str, Any], Positions]:
    """The YAML mapping with where each key was written; a document that is none is a problem."""
    data, positions, problems = read_yaml(text, file, prepare)
    if data is None and not problems:
        problems = [Problem(file, 1, 1, "", "file is empty; a scenario needs name, target and load")]
    if problems:
        raise ScenarioError(problems)
    if not isinstance(data, dict):
        raise ScenarioError([Problem(file, 1, 1, "", "a scenario must be a mapping of keys (name, target, load, ...)")])
    return data, positions


def _absolute_paths(scenario: Scenario) -> Scenario:
    """Paths in faults (pid files) are relative to the scenario file, like the locustfile; agents run elsewhere."""
    base = Path(scenario.source).parent
    return scenario.model_copy(update={"faults": [fault.with_base_dir(base) for fault in scenario.faults]})
