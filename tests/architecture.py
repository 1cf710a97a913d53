"""The rules that keep the house standing, read from the package's source (no import is executed).

:func:`violations` parses every module of a package with :mod:`ast` and reports, one line each:

* an import cycle between modules (imports inside functions count: they run too; imports under
  ``if TYPE_CHECKING:`` do not),
* ``from x import _private`` across modules (a private module of one's own package is fine),
* a pure-core module (scenario, plan, measure, judge) importing, directly or through the modules
  it imports at load time, one of the libraries that need a runtime (Ray, Locust, gevent,
  InfluxDB, netlink, Kubernetes) or a terminal (typer, rich),
* a third-party library imported outside the rooms that own it,
* a module over :data:`MAX_MODULE_LINES` lines, a class over :data:`MAX_CLASS_LINES` or a function
  over :data:`MAX_FUNCTION_LINES` lines, unless a ``# long: <why>`` comment says why (at the top of
  the module, or as the first line of the class's or function's body),
* a public exception class defined outside ``errors.py``, or missing from its drawn tree.

``tests/test_architecture.py`` runs it on ``harness/`` and on small packages built to break each rule.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
MAX_CLASS_LINES = 400
LONG_MARK = "# long:"

#: The rooms that must stay importable without a runtime or a terminal.
PURE_ROOMS = ("scenario", "plan", "measure", "judge")
#: What no pure room may import, directly or at load time through another module.
RUNTIME_LIBRARIES = ("ray", "locust", "gevent", "influxdb_client", "pyroute2", "kubernetes", "typer", "rich")

#: Each third-party library and the rooms (module prefixes, relative to the package) that own it.
OWNERS: dict[str, tuple[str, ...]] = {
    "ray": ("run", "load.generator", "chaos.agent"),
    "locust": ("load.runner", "load.arrivals", "load.locustfile", "load.shape_probe", "load.tracing"),
    "geventhttpclient": ("load.tracing",),  # FastHttpUser's header type, for the trace headers
    "gevent": ("load.runner", "load.arrivals", "load.tracing", "load.shape_probe", "chaos.proxy_server", "demo"),
    "influxdb_client": ("results.v2",),
    "pyroute2": ("chaos",),
    "kubernetes": ("chaos",),
    "urllib3": ("chaos",),
    "mfusepy": ("chaos.families.io.server",),
    "elftools": ("chaos.vdso_skew",),  # pyelftools reads a target process's vDSO symbols (time.skew mechanism vdso)
    "typer": ("cli",),
    "rich": ("cli",),
    "grafana_foundation_sdk": ("review.grafana",),
    "hdrh": ("measure",),
    "scipy": ("judge",),
    "pydantic": ("scenario", "chaos"),
    "yaml": ("scenario", "review"),
    "psutil": ("chaos", "demo", "review", "run", "load"),
    "dnslib": ("chaos.dns_server", "demo"),
    "prometheus_client": ("demo.metrics",),
}


@dataclass
class Module:
    name: str  # dotted, e.g. harness.scenario.model ("harness.scenario" for its __init__)
    path: Path
    tree: ast.Module
    lines: list[str]
    is_package: bool
    #: (imported module or name's module, names, line, at load time) for every harness import
    imports: list[tuple[str, tuple[str, ...], int, bool]] = field(default_factory=list)
    #: (top-level third-party module, line, at load time)
    libraries: list[tuple[str, int, bool]] = field(default_factory=list)


def _type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement and whether it runs when the module loads (not inside a function)."""

    def walk(node: ast.AST, in_function: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        for child in ast.iter_child_nodes(node):
            if _type_checking_block(child):
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, not in_function
            else:
                inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
                yield from walk(child, inner)

    yield from walk(tree, False)


def load_package(root: Path) -> dict[str, Module]:
    """Every module under ``root`` (a package directory), by dotted name."""
    package = root.name
    modules: dict[str, Module] = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        text = path.read_text(encoding="utf-8")
        modules[name] = Module(name, path, ast.parse(text, str(path)), text.splitlines(), is_package)
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for module in modules.values():
        for node, at_load in _imports(module.tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = module.name if module.is_package else module.name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                target = f"{base}.{node.module}" if node.module else base
                entries = [(target, tuple(a.name for a in node.names))]
            elif isinstance(node, ast.ImportFrom):
                entries = [(node.module or "", tuple(a.name for a in node.names))]
            else:
                entries = [(a.name, ()) for a in node.names]
            for target, names in entries:
                top = target.split(".")[0]
                if top == package:
                    module.imports.append((target, names, node.lineno, at_load))
                elif top not in stdlib:
                    module.libraries.append((top, node.lineno, at_load))
    return modules


def _edges(modules: dict[str, Module]) -> dict[str, set[tuple[str, bool]]]:
    """module -> {(module it imports, at load time)}; ``from pkg import sub`` is an edge to pkg.sub."""
    edges: dict[str, set[tuple[str, bool]]] = {name: set() for name in modules}
    for module in modules.values():
        for target, names, _line, at_load in module.imports:
            targets = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
            if len(targets) < len(names) or not names:  # some names are attributes of ``target`` itself
                targets.append(target)
            for t in targets:
                if t in modules and t != module.name:
                    edges[module.name].add((t, at_load))
    return edges


def _cycles(edges: dict[str, set[tuple[str, bool]]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    graph = {m: sorted({t for t, _ in ts}) for m, ts in edges.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        item = stack.pop()
                        on_stack.discard(item)
                        component.append(item)
                        if item == node:
                            break
                    if len(component) > 1:
                        out.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(graph.get(child, []))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return out


def _room(module: str, package: str) -> str:
    return module[len(package) + 1 :] if module.startswith(package + ".") else ""


def _in_rooms(module: str, package: str, rooms: tuple[str, ...]) -> bool:
    room = _room(module, package)
    return any(room == r or room.startswith(r + ".") for r in rooms)


def _long_ok(lines: list[str], first: int, last: int) -> bool:
    return any(line.strip().startswith(LONG_MARK) for line in lines[first:last])


def _size_violations(module: Module) -> Iterator[str]:
    where = module.path
    if len(module.lines) > MAX_MODULE_LINES and not _long_ok(module.lines, 0, 40):
        yield f"{where}: {len(module.lines)} lines (over {MAX_MODULE_LINES}, no '{LONG_MARK}' comment at its top)"
    for node in ast.walk(module.tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            body_start = node.body[0].lineno - 1
            if isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant):
                body_start = node.body[0].end_lineno or body_start  # after the docstring
            limit, what = (
                (MAX_CLASS_LINES, f"class {node.name}")
                if isinstance(node, ast.ClassDef)
                else (MAX_FUNCTION_LINES, f"{node.name}()")
            )
            if length > limit and not _long_ok(module.lines, node.lineno, body_start + 2):
                yield f"{where}:{node.lineno}: {what} is {length} lines (over {limit})"


def _exception_violations(modules: dict[str, Module], package: str) -> Iterator[str]:
    errors = modules.get(f"{package}.errors")
    tree_text = ast.get_docstring(errors.tree) or "" if errors else ""
    known = {"Exception", "BaseException", "HarnessError"}
    if errors is not None:
        known |= {n.name for n in errors.tree.body if isinstance(n, ast.ClassDef)}
    for module in modules.values():
        for node in module.tree.body:
            if not isinstance(node, ast.ClassDef) or node.name.startswith("_"):
                continue
            bases = {ast.unparse(b).rpartition(".")[2] for b in node.bases}
            if not (bases & known or any(b.endswith(("Error", "Exception")) for b in bases)):
                continue
            if module.name != f"{package}.errors":
                yield f"{module.path}:{node.lineno}: public exception {node.name} is defined outside errors.py"
            elif node.name not in tree_text:
                yield f"{module.path}:{node.lineno}: {node.name} is missing from the tree drawn in errors.py"


def violations(root: Path) -> list[str]:
    """Every broken rule in the package at ``root``, one line each (empty: the house stands)."""
    package = root.name
    modules = load_package(root)
    edges = _edges(modules)
    out = [f"import cycle: {' <-> '.join(c)}" for c in _cycles(edges)]
    for module in modules.values():
        for target, names, line, _ in module.imports:
            for name in names:
                sub = f"{target}.{name}"
                private_module_of_own_package = sub in modules and target == module.name.rpartition(".")[0]
                if name.startswith("_") and not name.startswith("__") and not private_module_of_own_package:
                    out.append(f"{module.path}:{line}: private import: from {target} import {name}")
        for library, line, _ in module.libraries:
            owners = OWNERS.get(library)
            if owners is None:
                out.append(f"{module.path}:{line}: {library} has no owning room in tests/architecture.py OWNERS")
            elif not _in_rooms(module.name, package, owners):
                out.append(f"{module.path}:{line}: imports {library}, which belongs to {', '.join(owners)}")
        out.extend(_size_violations(module))
    out.extend(_pure_violations(modules, edges, package))
    out.extend(_exception_violations(modules, package))
    return out


def _pure_violations(
    modules: dict[str, Module], edges: dict[str, set[tuple[str, bool]]], package: str
) -> Iterator[str]:
    """A pure room must load without a runtime: follow load-time imports from each of its modules."""
    for name, module in modules.items():
        if not _in_rooms(name, package, PURE_ROOMS):
            continue
        seen = {name}
        chain = {name: [name]}
        todo = [name]
        while todo:
            current = todo.pop()
            for library, line, at_load in modules[current].libraries:
                if library in RUNTIME_LIBRARIES and (at_load or current == name):
                    via = " -> ".join(chain[current])
                    yield f"{module.path}: pure room imports {library} (via {via}, line {line})"
            for target, at_load in edges[current]:
                if at_load and target not in seen:
                    seen.add(target)
                    chain[target] = [*chain[current], target]
                    todo.append(target)
