"""``load_scenario``: YAML in, a frozen, cross-checked ``Scenario`` out, every problem located."""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ValidationError,
)

from harness.errors import Problem, ScenarioError
from harness.scenario.checks import cross_checks
from harness.scenario.draft import Draft, salvage
from harness.scenario.faults import Fault, fault_kinds
from harness.scenario.fields import KeyPath
from harness.scenario.model import RateStage, Scenario, UsersStage
from harness.scenario.source import Positions, dotted, read_yaml

MAX_SCENARIO_BYTES = 1_000_000


_TAGS = {"users_stage", "rate_stage"}  # and every fault kind (fault_kinds(), read when needed)


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


def _model_at(path: KeyPath, data: Any) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``path`` (best effort, for suggestions)."""
    model: Any = Scenario
    node = data
    for part in path:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(part) or next((f for f in model.model_fields.values() if f.alias == part), None)
        if field is None:
            return None
        node = node.get(part) if isinstance(node, dict) else None
        model = _unwrap(field.annotation, node)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _unwrap(annotation: Any, node: Any) -> Any:
    if annotation is Fault:  # the union of every registered kind, built by pydantic on first use
        kind = node.get("kind") if isinstance(node, dict) else None
        return fault_kinds().get(kind) if isinstance(kind, str) else None
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0], node)
    if origin is list:
        item = node[0] if isinstance(node, list) and node else None
        return _unwrap(typing.get_args(annotation)[0], item)
    if origin in (typing.Union, __import__("types").UnionType):
        options = [_unwrap(a, node) for a in typing.get_args(annotation) if a is not type(None)]
        models = [m for m in options if isinstance(m, type) and issubclass(m, BaseModel)]
        if isinstance(node, dict):
            if "arrival_rate" in node and RateStage in models:
                return RateStage
            if UsersStage in models:
                return UsersStage
        return models[0] if models else None
    return annotation


def _suggestion(path: KeyPath, data: Any) -> tuple[str | None, list[str]]:
    """For an unknown key at ``path``: the allowed key it most resembles, and all allowed keys."""
    model = _model_at(path[:-1], data)
    allowed = sorted(f.alias or n for n, f in model.model_fields.items() if n != "source") if model else []
    close = difflib.get_close_matches(str(path[-1]) if path else "", allowed, n=1)
    return (close[0] if close else None), allowed


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
        return f"unknown fault kind; use one of {', '.join(sorted(fault_kinds()))}"
    message = str(error["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return message


def _error_path(error: Any, data: Any) -> KeyPath:
    path = _data_path(tuple(error["loc"]), data)
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        path = (*path, "kind")
    return path


def _validation_problems(exc: ValidationError, data: Any, positions: Positions, file: str) -> list[Problem]:
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
        problems.append(Problem(file, *positions.locate(path), dotted(path), message))
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


def load_scenario(path: str | Path) -> Scenario:
    """Read, validate and cross-check a scenario file.

    Raises ``ScenarioError`` (exit 2) listing every problem found, each located by file,
    line, column and key path, in one pass: structural mistakes (a wrong type, a missing or
    unknown key) do not hide the checks that span keys, which run on whatever validated
    (see :mod:`.draft`). Applies nothing and starts nothing.
    """
    file = str(path)
    source = Path(path)
    data, positions = _document(_text(source, file), file)
    problems: list[Problem] = []
    if "source" in data:
        problems.append(Problem(file, *positions.locate(("source",)), "source", "unknown key 'source'"))
    document = {k: v for k, v in data.items() if k != "source"}
    resolved = str(source.resolve())
    scenario: Scenario | None = None
    try:
        try:
            scenario = Scenario.model_validate({**document, "source": resolved})
            draft = Draft.of(scenario)
        except ValidationError as exc:
            problems += _validation_problems(exc, document, positions, file)
            draft = salvage(document, resolved)
    except RecursionError:
        raise ScenarioError([Problem(file, 1, 1, "", "document is nested too deeply")]) from None
    problems += [Problem(file, *positions.locate(p), dotted(p), m) for p, m in cross_checks(draft)]
    if problems or scenario is None:
        raise ScenarioError(list(dict.fromkeys(problems)))
    return _absolute_paths(scenario)


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


def _document(text: str, file: str) -> tuple[dict[str, Any], Positions]:
    """The YAML mapping with where each key was written; a document that is none is a problem."""
    data, positions, problems = read_yaml(text, file)
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
