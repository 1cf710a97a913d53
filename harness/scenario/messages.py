"""Pydantic's errors said in the scenario's own words.

Pydantic words its errors for programmers ("Input should be a valid integer, unable to parse
string as an integer", "Input should be a valid dictionary or instance of Target"); a user of a
scenario file should read what is wrong with the value written and what to write instead. Each
error type a scenario can meet has its sentence here; any other keeps pydantic's, reworded so
that none of its phrasing reaches the user ("Input should be" becomes "must be").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["plain"]


def _shown(value: Any) -> str:
    """A written value, short, as the user wrote it (a mapping or list is named, not dumped)."""
    if isinstance(value, dict):
        return "a mapping of keys"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return str(value).lower()
    text = str(value)
    return repr(text[:60] + "..." if len(text) > 60 else text) if isinstance(value, str) else text


def _bound(word: str) -> Callable[[Mapping[str, Any], Any], str]:
    def say(ctx: Mapping[str, Any], value: Any) -> str:
        limit = next(iter(ctx.values()), "?") if ctx else "?"
        return f"{_shown(value)} is too {word}: it must be {_BOUND_WORDS[word]} {limit}"

    return say


_BOUND_WORDS = {
    "small": "greater than",
    "small or equal": "greater than or equal to",
    "large": "less than",
    "large or equal": "less than or equal to",
}


def _choices(ctx: Mapping[str, Any], value: Any) -> str:
    expected = str(ctx.get("expected", "")).replace(" or ", ", ")
    return f"{_shown(value)} is not one of {expected}"


def _length(unit: str, word: str) -> Callable[[Mapping[str, Any], Any], str]:
    def say(ctx: Mapping[str, Any], value: Any) -> str:
        key = "min_length" if word == "at least" else "max_length"
        count = ctx.get(key, "?")
        return f"must have {word} {count} {unit}{'' if count == 1 else 's'}"

    return say


_SAY: dict[str, Callable[[Mapping[str, Any], Any], str]] = {
    "int_parsing": lambda ctx, v: f"{_shown(v)} is not a valid integer (a whole number, e.g. 10)",
    "int_type": lambda ctx, v: f"{_shown(v)} is not a valid integer (a whole number, e.g. 10)",
    "int_from_float": lambda ctx, v: f"{_shown(v)} is not a valid integer: it has a fractional part",
    "float_parsing": lambda ctx, v: f"{_shown(v)} is not a number",
    "float_type": lambda ctx, v: f"{_shown(v)} is not a number",
    "finite_number": lambda ctx, v: "must be a finite number",
    "bool_parsing": lambda ctx, v: f"{_shown(v)} is not true or false",
    "bool_type": lambda ctx, v: f"{_shown(v)} is not true or false",
    "string_type": lambda ctx, v: f'expected text, not {_shown(v)} (quote it: "...")',
    "list_type": lambda ctx, v: f"expected a list (items on lines starting with '- ', or [a, b]), not {_shown(v)}",
    "dict_type": lambda ctx, v: f"expected a mapping of keys (key: value lines), not {_shown(v)}",
    "model_type": lambda ctx, v: f"expected a mapping of keys (key: value lines), not {_shown(v)}",
    "model_attributes_type": lambda ctx, v: f"expected a mapping of keys (key: value lines), not {_shown(v)}",
    "literal_error": _choices,
    "enum": _choices,
    "greater_than": _bound("small"),
    "greater_than_equal": _bound("small or equal"),
    "less_than": _bound("large"),
    "less_than_equal": _bound("large or equal"),
    "string_too_short": lambda ctx, v: (
        "must not be empty"
        if ctx.get("min_length") == 1
        else f"must be at least {ctx.get('min_length')} characters long"
    ),
    "string_too_long": lambda ctx, v: f"must be at most {ctx.get('max_length')} characters long",
    "too_short": _length("item", "at least"),
    "too_long": _length("item", "at most"),
    "string_pattern_mismatch": lambda ctx, v: (
        f"{_shown(v)} is not allowed here: it must match the pattern {ctx.get('pattern')}"
    ),
    "none_required": lambda ctx, v: "must be left empty",
    "string_unicode": lambda ctx, v: "must be valid Unicode text",
    "frozen_instance": lambda ctx, v: "cannot be changed",
}


def plain(error: Mapping[str, Any]) -> str:
    """The user's sentence for one pydantic error (``ValidationError.errors()`` item)."""
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    value = error.get("input")
    say = _SAY.get(kind)
    if say is not None:
        return say(ctx, value)
    message = str(error.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    for phrase, ours in (
        ("Input should be", "must be"),
        ("String should", "must"),
        ("List should", "must"),
        ("Value should", "must"),
        ("Dictionary should", "must"),
        ("Field required", "required key is missing"),
        ("Extra inputs are not permitted", "unknown key"),
    ):
        message = message.replace(phrase, ours)
    return message
