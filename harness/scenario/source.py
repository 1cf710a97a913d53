"""YAML with positions: a bounded safe loader that remembers where each key path was written."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from harness.errors import Problem
from harness.scenario.fields import KeyPath
from harness.scenario.messages import yaml_plain


class Positions:
    """Where each key path was written: (line, column), 1-based."""

    def __init__(self) -> None:
        self.at: dict[KeyPath, tuple[int, int]] = {}
        self.written: dict[tuple[int, int], KeyPath] = {}  # where each node starts -> its key path

    def locate(self, path: KeyPath) -> tuple[int, int]:
        while path not in self.at and path:
            path = path[:-1]
        return self.at.get(path, (1, 1))

    def path_at(self, line: int, column: int) -> KeyPath:
        """The key path of the node written at ``line:column``, or ``()``: locates a constructor's error."""
        return self.written.get((line, column), ())


#: Deepest nesting of mappings and lists a scenario may have (a real one needs about 6).
MAX_DEPTH = 50


#: Most nodes a document may expand to, aliases followed: a "billion laughs" alias bomb is
#: a few lines of YAML that expand to 10^9 nodes; a real scenario has a few hundred.
MAX_NODES = 20_000


#: Integers beyond 64 bits are no count, duration or port a scenario needs, and converting
#: them (to float, or from thousands of digits) raises where nobody expects it.
_INT_LIMIT = 2**63


class _TooComplex(Exception):
    """The document is nested too deeply, expands to too many nodes, or refers to itself."""

    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


class _Refused(yaml.constructor.ConstructorError):
    """A value our loader refuses; its message is ours, shown as it is."""


class _Loader(yaml.SafeLoader):
    """The safe loader, bounded: nesting depth while composing, integer size while constructing."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        self._nodes += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooComplex(f"nested more than {MAX_DEPTH} levels deep", self.peek_event().start_mark)
            if self._nodes > MAX_NODES:  # stop parsing early: PyYAML reads about 20,000 values a second
                raise _TooComplex(f"more than {MAX_NODES} values in one document", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, AttributeError, OverflowError) as exc:
            # An explicit tag on a value it cannot describe (``!!int name``, ``!!timestamp x``)
            # makes PyYAML's constructors raise these instead of a located YAML error.
            tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
            raise _Refused(
                None, None, f"cannot read this value as {tag} ({type(exc).__name__})", node.start_mark
            ) from None

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        digits = str(node.value).lstrip("+-").replace("_", "")
        if len(digits) > 30:  # also keeps int() away from Python's 4300-digit conversion limit
            raise _Refused(None, None, "number too large", node.start_mark)
        value = int(super().construct_yaml_int(node))
        if abs(value) >= _INT_LIMIT:
            raise _Refused(None, None, "number too large (over 64 bits)", node.start_mark)
        return value


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


#: Called on the composed document before it is constructed (variables are substituted there),
#: with the function that gives the tag YAML would give a plain scalar. It keeps its own
#: problems: they do not stop the document from being read (every problem comes out at once).
Prepare = Callable[[yaml.Node, Callable[[str], str]], None]


def read_yaml(text: str, file: str, prepare: Prepare | None = None) -> tuple[Any, Positions, list[Problem]]:
    """The document in ``text``, where each key path was written, and every problem, located.

    ``prepare`` sees the composed nodes after their positions are recorded and before values
    are built from them: what it changes keeps the line and column it was written at.
    """
    positions = Positions()
    problems: list[Problem] = []
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # the reader refuses control characters here already
        node = loader.get_single_node()
        if node is None:
            return None, positions, [Problem(file, 1, 1, "", "file is empty; a scenario needs name, target and load")]
        _walk(node, (), positions, problems, file, _Budget())
        if prepare is not None and not problems:
            resolver = loader  # bound here: mypy cannot see it is not None inside the lambda
            prepare(node, lambda value: str(resolver.resolve(yaml.ScalarNode, value, (True, False))))
        if problems:
            return None, positions, problems
        data = loader.construct_document(node)
    except _TooComplex as exc:
        line, col = (exc.mark.line + 1, exc.mark.column + 1) if exc.mark else (1, 1)
        return None, positions, [Problem(file, line, col, "", exc.message)]
    except yaml.reader.ReaderError as exc:
        line, col = _line_col(text, exc.position)
        char = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
        return None, positions, [Problem(file, line, col, "", f"character {char} is not allowed in YAML")]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        mine = isinstance(exc, _Refused)
        message = str(exc.problem) if mine else yaml_plain(str(exc.problem or ""), str(exc.context or ""))
        where = positions.path_at(line, col) if isinstance(exc, yaml.constructor.ConstructorError) else ()
        return None, positions, [Problem(file, line, col, dotted(where), message)]
    except yaml.YAMLError:
        return None, positions, [Problem(file, 1, 1, "", yaml_plain("", ""))]
    finally:
        if loader is not None:
            loader.dispose()
    return data, positions, problems


def _line_col(text: str, offset: int) -> tuple[int, int]:
    return text.count("\n", 0, offset) + 1, offset - text.rfind("\n", 0, offset)


def _scalar_problem(value: str) -> str:
    """What no value may hold, whatever its key: it would fail far from here (a path, a terminal)."""
    if "\x00" in value:
        return "NUL character in a value"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid Unicode (a lone surrogate escape such as \\ud800)"
    return ""


class _Budget:
    """Nodes visited so far by :func:`_walk`, aliases followed (each visit counts)."""

    def __init__(self) -> None:
        self.nodes = 0


def _walk(
    node: yaml.Node,
    path: KeyPath,
    positions: Positions,
    problems: list[Problem],
    file: str,
    budget: _Budget,
    stack: tuple[int, ...] = (),
) -> None:
    """Record where each key path was written, and refuse what must never reach validation.

    Aliases are followed, so a key path inside an aliased block is located too; that is also
    why the walk is bounded: an alias that contains itself is refused, and so is a document
    that expands to more than ``MAX_NODES`` nodes.
    """
    mark = node.start_mark
    budget.nodes += 1
    if budget.nodes > MAX_NODES:
        raise _TooComplex(f"the document expands to more than {MAX_NODES} values (an alias bomb?)", mark)
    if id(node) in stack:
        raise _TooComplex("an alias refers to a block that contains it (a recursive structure)", mark)
    if len(stack) >= MAX_DEPTH:  # aliases can nest blocks deeper than the text does
        raise _TooComplex(f"nested more than {MAX_DEPTH} levels deep (aliases included)", mark)
    positions.at.setdefault(path, (mark.line + 1, mark.column + 1))
    positions.written.setdefault((mark.line + 1, mark.column + 1), path)
    inner = (*stack, id(node))
    if isinstance(node, yaml.ScalarNode) and (problem := _scalar_problem(str(node.value))):
        problems.append(Problem(file, mark.line + 1, mark.column + 1, dotted(path), problem))
    elif isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key_node)
            child = (*path, key)
            where = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in seen:
                problems.append(Problem(file, *where, dotted(child), "duplicate key"))
            seen.add(key)
            positions.at[child] = where
            _walk(key_node, child, positions, problems, file, budget, inner)
            _walk(value_node, child, positions, problems, file, budget, inner)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), positions, problems, file, budget, inner)


def dotted(path: KeyPath) -> str:
    out = ""
    for part in path:
        text = str(part) if part != "" else "''"  # an empty key still has a place in the path
        out += f"[{part}]" if isinstance(part, int) else (f".{text}" if out else text)
    return out
