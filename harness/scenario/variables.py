"""Variables in a scenario file: ``${NAME}`` and ``${NAME:-default}``, taken from the environment.

The grammar is docker compose's braced one, so a file written for one reads the same here:

* ``${NAME}``: the variable's value; unset is a located problem (an empty value is a value);
* ``${NAME:-default}``: the default when the variable is unset or empty; ``${NAME-default}``:
  only when it is unset (the default may hold references itself);
* ``${NAME:?message}`` / ``${NAME?message}``: a problem saying ``message`` when unset or empty /
  unset;
* ``$$``: one ``$``. A ``$`` not followed by ``{`` stays as written (process patterns are
  regular expressions, where ``$`` ends a line); ``$NAME`` without braces is not read.

Values are substituted into the YAML **after** it is parsed, scalar by scalar, so a value can
never add keys or lists to the document and every key keeps the line and column it was written
at. A plain (unquoted) value whose text changed is read again as YAML reads a plain value, so
``users: ${USERS}`` with ``USERS=400`` is the number 400, as if 400 had been written; a quoted one
(``"${USERS}"``) stays a string. Keys are not interpolated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import yaml

from harness.errors import Problem
from harness.scenario.fields import KeyPath
from harness.scenario.source import dotted

__all__ = ["NAME", "Lookup", "Reference", "Use", "Variables", "interpolate", "substitute"]

#: What a variable's name may be: a letter or underscore, then letters, digits and underscores.
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: Where a variable's value came from.
Origin = str  # "-e" (the command line), "environment" or "default"


@dataclass(frozen=True)
class Reference:
    """One ``${...}`` in a value: which variable, where in the value, what it gave."""

    name: str
    offset: int  # of the '$' in the value's text
    value: str | None  # None: nothing to substitute (see ``problem``)
    origin: Origin
    problem: str = ""


#: Looks a variable up: its value and where it came from, or None when it is unset.
Lookup = Callable[[str], "tuple[str, Origin] | None"]


def substitute(text: str, lookup: Lookup) -> tuple[str, list[Reference]]:
    """``text`` with every ``${...}`` replaced, and each reference read (problems included)."""
    out: list[str] = []
    refs: list[Reference] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$" or i + 1 >= len(text) or text[i + 1] not in "${":
            out.append(char)
            i += 1
            continue
        if text[i + 1] == "$":
            out.append("$")
            i += 2
            continue
        end = _closing(text, i + 2)
        if end < 0:
            refs.append(Reference("", i, None, "", f"'{text[i:]}' has no closing '}}'; write ${{NAME}}"))
            out.append(text[i:])
            break
        value, ref = _braced(text[i + 2 : end], i, lookup, refs)
        refs.append(ref)
        out.append(value)
        i = end + 1
    return "".join(out), refs


def _closing(text: str, start: int) -> int:
    """Index of the ``}`` that closes a ``${`` whose body starts at ``start`` (nesting counted), or -1."""
    depth = 1
    for j in range(start, len(text)):
        if text.startswith("${", j):
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return -1


_OPERATORS = (":-", "-", ":?", "?")


def _braced(body: str, offset: int, lookup: Lookup, nested: list[Reference]) -> tuple[str, Reference]:
    """The value of ``${body}`` written at ``offset``, and the reference it makes."""
    match = NAME.match(body)
    name = match.group(0) if match else ""
    rest = body[len(name) :]
    operator = next((op for op in _OPERATORS if rest.startswith(op)), "")
    if not name or (rest and not operator):
        problem = f"'${{{body}}}' is not a variable reference; write ${{NAME}} or ${{NAME:-default}}"
        return "", Reference(name, offset, None, "", problem)
    argument = rest[len(operator) :]
    found = lookup(name)
    unset = found is None
    empty = found is None or found[0] == ""
    if operator in (":-", "-") and (unset if operator == "-" else empty):
        value, inner = substitute(argument, lookup)
        nested.extend(Reference(r.name, offset, r.value, r.origin, r.problem) for r in inner)
        return value, Reference(name, offset, value, "default")
    if operator in (":?", "?") and (unset if operator == "?" else empty):
        return "", Reference(name, offset, None, "", f"variable {name}: {argument or 'is not set'}")
    if found is None:
        problem = (
            f"variable {name} is not set; set it in the environment or with -e {name}=VALUE, "
            f"or give a default: ${{{name}:-default}}"
        )
        return "", Reference(name, offset, None, "", problem)
    return found[0], Reference(name, offset, found[0], found[1])


@dataclass(frozen=True)
class Use:
    """Where a variable was used: the value it gave, the key path and position in the file."""

    name: str
    value: str  # "***" when it is a secret (see :mod:`.redact`)
    origin: Origin
    path: KeyPath
    line: int
    column: int
    secret: bool = False


@dataclass
class Variables:
    """The variables a scenario file may read: ``-e`` values first, then the environment."""

    given: Mapping[str, str] = field(default_factory=dict)  # from -e NAME=VALUE
    environment: Mapping[str, str] = field(default_factory=dict)
    asked: set[str] = field(default_factory=set)  # every name the file referred to

    def lookup(self, name: str) -> tuple[str, Origin] | None:
        self.asked.add(name)
        if name in self.given:
            return self.given[name], "-e"
        if name in self.environment:
            return self.environment[name], "environment"
        return None


def interpolate(
    root: yaml.Node, file: str, variables: Variables, resolve: Callable[[str], str]
) -> tuple[list[Use], list[Problem]]:
    """Substitute variables in every scalar value under ``root``, in place.

    ``resolve`` gives the tag YAML would give a plain scalar with that text. Each node is
    substituted once (an aliased block is one node), and recorded at the first key path it is
    reached by. Returns every use and every problem (unset variables, bad references), located.
    """
    uses: list[Use] = []
    problems: list[Problem] = []
    done: set[int] = set()

    def visit(node: yaml.Node, path: KeyPath) -> None:
        if id(node) in done:
            return
        done.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else repr(key)
                visit(value, (*path, name))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                visit(item, (*path, index))
        elif isinstance(node, yaml.ScalarNode) and "$" in str(node.value):
            _scalar(node, path, file, variables, resolve, uses, problems)

    visit(root, ())
    return uses, problems


def _scalar(
    node: yaml.ScalarNode,
    path: KeyPath,
    file: str,
    variables: Variables,
    resolve: Callable[[str], str],
    uses: list[Use],
    problems: list[Problem],
) -> None:
    text = str(node.value)
    value, refs = substitute(text, variables.lookup)
    for ref in refs:
        line, column = _position(node, ref.offset)
        if ref.problem:
            problems.append(Problem(file, line, column, dotted(path), ref.problem))
        elif ref.value is not None:
            uses.append(Use(ref.name, ref.value, ref.origin, path, line, column))
    if value != text:
        node.value = value
        if node.style is None:  # plain: read as if the value had been written there
            node.tag = resolve(value)


def _position(node: yaml.ScalarNode, offset: int) -> tuple[int, int]:
    """Line and column (1-based) of ``offset`` in the scalar's value, exact for a value written on
    one line (the usual case); the start of the value otherwise."""
    mark, end = node.start_mark, node.end_mark
    if mark.line != end.line:
        return mark.line + 1, mark.column + 1
    quoted = 1 if node.style in ("'", '"') else 0
    return mark.line + 1, mark.column + 1 + quoted + offset
