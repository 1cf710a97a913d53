"""Pydantic's and PyYAML's errors said in the scenario's own words.

Pydantic words its errors for programmers ("Input should be a valid integer, unable to parse
string as an integer", "Input should be a valid dictionary or instance of Target"); a user of a
scenario file should read what is wrong with the value written and what to write instead. Each
error type a scenario can meet has its sentence here; any other keeps pydantic's, reworded so
that none of its phrasing reaches the user ("Input should be" becomes "must be").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["plain", "yaml_plain"]


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
        return f"{_shown(value)} is too {word.split()[0]}: it must be {_BOUND_WORDS[word]} {limit}"

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
    "string_type": lambda ctx, v: (
        "a value is needed here" if v is None else f'expected text, not {_shown(v)} (quote it: "...")'
    ),
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


_CHAR = re.compile(r"found character '(.+)' that cannot start any token")
_EXPECTED = re.compile(r"expected '?([^']*)'? or '([\]}])', but got '(.*)'")


def yaml_plain(problem: str, context: str) -> str:
    """PyYAML's complaint (``problem``, ``context``) said plainly, for the position it points at."""
    match = _CHAR.search(problem)
    if match and match[1] == "\\t":
        return "a tab character: YAML indents with spaces only; replace the tab with spaces"
    if match:
        return f"a value cannot start with '{match[1]}'; put the value in quotes"
    if "mapping values are not allowed" in problem:
        return (
            "unexpected ':' here: quote a value that contains ': ' (e.g. \"a: b\"), "
            "or check this line's indentation against the lines above"
        )
    if "end of stream" in problem and "quoted" in context:
        return "a quoted value is not closed: the closing quote is missing"
    if (bracket := _EXPECTED.search(problem)) is not None:
        return f"a '{bracket[2]}' is missing, or an item in brackets has an unquoted ':' or ','; quote such an item"
    if problem.startswith("expected <block end>") or "did not find expected key" in problem:
        return "this line's indentation does not fit the lines above it (keys of one mapping line up)"
    if "could not find expected ':'" in problem:
        return "expected 'key: value' here: a ':' is missing, or this line is indented wrongly"
    if "did not find expected '-' indicator" in problem:
        return "expected a list item ('- ...') at this indentation"
    if (alias := re.search(r"found undefined alias '(.*)'", problem)) is not None:
        return f"*{alias[1]} refers to no anchor &{alias[1]} written before it"
    if "duplicate anchor" in context:
        return "this anchor (&name) is used twice; give each anchor its own name"
    if (escape := re.search(r"found unknown escape character '(.*)'", problem)) is not None:
        return (
            f"'\\{escape[1]}' is no escape in a double-quoted value: write '\\\\' for a backslash, or use single quotes"
        )
    if "another document" in problem:
        return "a scenario file holds one YAML document: remove the '---' line and what follows, or split the file"
    if "constructor for the tag" in problem or "python/" in problem:
        tag = re.search(r"'(!\S*)'", problem)
        written = f" {tag[1]}" if tag else ""
        return f"the tag{written} is not allowed: only plain YAML is allowed (no language-specific tags)"
    if "unacceptable character" in problem or "special characters are not allowed" in problem:
        return "a character that YAML does not allow in a file (a control character?)"
    return "not valid YAML at this point: check the quotes, the brackets, the indentation and the ':' after each key"
