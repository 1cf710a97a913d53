"""Which keys a place in a scenario document takes: the model behind a key path, and the
allowed key a misspelt one most resembles (for "did you mean" in the file and in ``--set``)."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import BaseModel

from harness.scenario.faults import Fault, fault_kinds
from harness.scenario.fields import KeyPath
from harness.scenario.model import RateStage, Scenario, UsersStage, stage_tag

__all__ = ["allowed_keys", "closest", "model_at"]


def model_at(path: KeyPath, data: Any) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``path`` of ``data`` (best effort: None
    where it cannot be told, e.g. a fault without a known kind, or a free-form mapping)."""
    annotation: Any = Scenario
    node = data
    for part in path:
        if isinstance(part, int):
            annotation = _item(annotation)
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            continue
        model = _unwrap(annotation, node)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(part) or next((f for f in model.model_fields.values() if f.alias == part), None)
        if field is None:
            return None
        node = node.get(part) if isinstance(node, dict) else None
        annotation = field.annotation
    model = _unwrap(annotation, node)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _item(annotation: Any) -> Any:
    """The type of a list's items (through ``Annotated`` and ``| None``); None for no list."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _item(typing.get_args(annotation)[0])
    if origin is list:
        return typing.get_args(annotation)[0]
    if origin in (typing.Union, types.UnionType):
        items = [_item(a) for a in typing.get_args(annotation) if a is not type(None)]
        return next((i for i in items if i is not None), None)
    return None


def _unwrap(annotation: Any, node: Any) -> Any:
    """The model that validates ``node`` where ``annotation`` is expected (unions decided as
    the models decide them)."""
    if annotation is Fault:  # the union of every registered kind, built by pydantic on first use
        kind = node.get("kind") if isinstance(node, dict) else None
        return fault_kinds().get(kind) if isinstance(kind, str) else None
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0], node)
    if origin in (typing.Union, types.UnionType):
        options = [_unwrap(a, node) for a in typing.get_args(annotation) if a is not type(None)]
        models = [m for m in options if isinstance(m, type) and issubclass(m, BaseModel)]
        if isinstance(node, dict) and RateStage in models and UsersStage in models:
            return RateStage if stage_tag(node) == "rate_stage" else UsersStage
        return models[0] if models else None
    return annotation


def allowed_keys(path: KeyPath, data: Any) -> list[str] | None:
    """The keys the mapping at ``path`` takes, sorted; None when that cannot be told."""
    model = model_at(path, data)
    if model is None:
        return None
    return sorted(f.alias or n for n, f in model.model_fields.items() if n != "source")


def closest(word: object, choices: Iterable[str]) -> str | None:
    """The choice ``word`` most resembles (a likely misspelling of it), or None."""
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return close[0] if close else None
