"""Dataclasses to JSON and back, for :mod:`harness.judge.summary`: typed on the way in, forgiving.

:func:`to_json` writes a dataclass as a JSON object (a class's own ``to_json`` wins), enums as
their value, non-finite floats as ``null``; a field whose metadata is :data:`OMIT_NONE` is left
out while it is None. :func:`from_json` builds a dataclass from JSON data by its type hints and
never raises: a key that is missing, or whose value does not fit its type, takes the field's
default (a required field: an empty value of its type; a missing number is NaN). A class with
its own JSON shape defines ``from_json`` as a classmethod and may use :func:`decode_fields` for
the rest. Pure: the standard library only.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Mapping
from enum import Enum
from typing import Any, TypeVar, Union, get_args, get_origin

__all__ = ["OMIT_NONE", "decode_fields", "fields_to_json", "from_json", "to_json"]

OMIT_NONE = {"omit_none": True}  # dataclass field metadata: leave the key out while the value is None

T = TypeVar("T")


def to_json(value: Any) -> Any:
    """``value`` as JSON-ready data: dataclasses as objects (their own ``to_json`` when they have
    one), enums as their value, non-finite floats as None; fields marked :data:`OMIT_NONE` are
    left out while None."""
    own = getattr(value, "to_json", None)
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and callable(own):
        return own()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return fields_to_json(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): to_json(item) for key, item in value.items()}
    return value


def fields_to_json(value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(value):
        item = getattr(value, f.name)
        if item is None and f.metadata.get("omit_none"):
            continue
        out[f.name] = to_json(item)
    return out


def from_json(cls: type[T], data: Any) -> T:
    """An instance of the dataclass ``cls`` from JSON data; never raises on odd data (see module doc)."""
    return typing.cast(T, _decode(cls, data))


@functools.cache
def _hints(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _decode_dataclass(cls: type, data: Any) -> Any:
    own = cls.__dict__.get("from_json")
    if isinstance(own, classmethod):  # a class with its own JSON shape
        return own.__get__(None, cls)(data)
    return decode_fields(cls, data)


def decode_fields(cls: type[T], data: Any) -> T:
    """``cls`` field by field: a key that is missing or does not fit takes the field's default."""
    data = data if isinstance(data, Mapping) else {}
    shape: Any = cls
    hints = _hints(shape)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(shape):
        if not f.init:
            continue
        if f.name in data:
            decoded = _decode(hints[f.name], data[f.name])
            if decoded is not _BAD:
                kwargs[f.name] = decoded
                continue
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            kwargs[f.name] = _zero(hints[f.name])
    return cls(**kwargs)


class _Bad:
    """A value that does not fit its type: the field takes its default instead."""


_BAD: Any = _Bad()


def _decode(tp: Any, value: Any) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Union or origin is types.UnionType:
        if value is None and type(None) in get_args(tp):
            return None
        for arg in get_args(tp):
            if arg is not type(None) and (decoded := _decode(arg, value)) is not _BAD:
                return decoded
        return _BAD
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _decode_dataclass(tp, value) if isinstance(value, Mapping) else _BAD
    if origin in (list, tuple):
        (item,) = get_args(tp)[:1] or (Any,)
        if not isinstance(value, list | tuple):
            return _BAD
        return [d for d in (_decode(item, v) for v in value) if d is not _BAD]
    if origin is dict:
        item = get_args(tp)[1] if get_args(tp) else Any
        if not isinstance(value, Mapping):
            return _BAD
        return {str(k): d for k, v in value.items() if (d := _decode(item, v)) is not _BAD}
    if isinstance(tp, type) and issubclass(tp, Enum):
        try:
            return tp(value)
        except ValueError:
            return _BAD
    return _scalar(tp, value)


def _scalar(tp: Any, value: Any) -> Any:
    if tp is bool:
        return value if isinstance(value, bool) else _BAD
    if isinstance(value, bool):
        return _BAD if tp in (int, float) else str(value).lower() if tp is str else _BAD
    if tp is float:
        if value is None:
            return math.nan  # how a non-finite figure was written
        return float(value) if isinstance(value, int | float) else _BAD
    if tp is int:
        return int(value) if isinstance(value, int) or (isinstance(value, float) and value.is_integer()) else _BAD
    if tp is str:
        return value if isinstance(value, str) else str(value) if isinstance(value, int | float) else _BAD
    return value


def _zero(tp: Any) -> Any:
    """The value a required field takes when the JSON lacks it."""
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return None
    if origin in (list, tuple):
        return []
    if origin is dict:
        return {}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _decode_dataclass(tp, {})
    if isinstance(tp, type) and issubclass(tp, Enum):
        return next(iter(tp))
    return {bool: False, int: 0, float: math.nan, str: ""}.get(tp)
