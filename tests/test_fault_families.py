"""Fault families: every kind the scenario schema accepts has a family implementing every hook,
and no module outside a family names a kind or a family's fault class (issue 14).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from harness.chaos.family import HOOKS, FaultFamily, HostContext, families, family_of, find_family
from harness.chaos.journal import Journal
from harness.chaos.steps import InjectContext
from harness.errors import ConfigError
from harness.scenario import Safety, fault_kinds, scenario_json_schema

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "harness"
FAMILIES = PACKAGE / "chaos" / "families"
#: The fault proxy is a program of its own (``harness proxy``); its control API names its faults
#: with the same words as the scenario's proxy kinds, which is its wire protocol, not a dispatch.
WIRE_NAMES = PACKAGE / "chaos" / "proxy_server" / "spec.py"


def _schema_kinds() -> set[str]:
    items = scenario_json_schema()["properties"]["faults"]["items"]
    return set(items["discriminator"]["mapping"])


def test_every_kind_the_schema_accepts_has_a_family_implementing_every_hook() -> None:
    kinds = _schema_kinds()
    assert kinds == set(fault_kinds())
    assert len(kinds) >= 17
    assert set(HOOKS) >= {"describe", "requirements", "resolve", "refusal", "check", "warm_up", "prepare", "apply"}
    assert "undo" in HOOKS
    assert set(HOOKS) >= {"leftovers", "remove", "reverted_text"}
    for kind in sorted(kinds):
        family = family_of(kind)
        assert isinstance(family, FaultFamily), kind
        assert kind in family.kinds and fault_kinds()[kind] in family.models
        for hook in HOOKS:
            implemented = getattr(type(family), hook)
            assert implemented is not getattr(FaultFamily, hook), f"{family.name} does not implement {hook}"
            assert callable(getattr(family, hook))


def test_each_kind_has_one_family_and_one_model() -> None:
    seen: dict[str, str] = {}
    for family in families():
        assert family.name and family.models
        for model in family.models:
            assert model.KIND not in seen, f"{model.KIND} in {seen.get(model.KIND)} and {family.name}"
            seen[model.KIND] = family.name
    assert set(seen) == set(fault_kinds())
    assert find_family("nosuch.kind") is None
    with pytest.raises(ConfigError, match=r"no fault family is registered for kind nosuch\.kind"):
        family_of("nosuch.kind")


def test_plan_line_and_requirements_come_from_the_family(tmp_path: Path) -> None:
    """One example per family through the hooks the driver calls (nothing is applied)."""
    from pydantic import TypeAdapter

    from harness.scenario import Fault

    adapter: TypeAdapter[Fault] = TypeAdapter(Fault)
    base = {"at": 1, "duration": 2}
    examples: list[tuple[dict[str, Any], list[str]]] = [
        ({"kind": "network.partition", "params": {"peers": ["10.9.0.0/24"]}}, ["nftables"]),
        ({"kind": "proxy.latency", "target": {"control": "127.0.0.1:9"}, "params": {"latency": "5ms"}}, []),
        ({"kind": "process.pause", "target": {"pattern": "^no such process at all$"}}, []),
        ({"kind": "stress.cpu"}, ["stress-ng"]),
        ({"kind": "io.latency", "params": {"volume_path": "/tmp/x", "delay": "5ms"}}, ["fuse"]),
        ({"kind": "kubernetes.scale", "target": {"namespace": "shop", "deployment": "web"}}, ["kube-contexts"]),
        (
            {"kind": "time.skew", "target": {"pattern": "^no such process at all$"}, "params": {"offset": "-10m"}},
            ["libfaketime"],
        ),
        (
            {
                "kind": "time.skew",
                "target": {"pattern": "^no such process at all$"},
                "params": {"offset": "-10m", "mechanism": "vdso"},
            },
            ["ptrace-vdso"],
        ),
        (
            {"kind": "dns.error", "target": {"netns": "shop"}, "params": {"patterns": ["*"], "error": "refused"}},
            ["nftables", "netns"],
        ),
        (
            {"kind": "dns.delay", "target": {"pattern": "^nope$"}, "params": {"patterns": ["*"], "delay": "1s"}},
            ["nftables", "cgroup2"],
        ),
    ]
    context = HostContext(Safety())
    for i, (spec, needs) in enumerate(examples):
        fault = adapter.validate_python({"name": f"f{i}", **base, **spec})
        family = family_of(fault.kind)
        assert family.requirements(fault) == needs
        assert family.describe(fault)
        assert isinstance(family.resolve(fault, context), str)
    journal = Journal("families-unit", tmp_path)
    ctx = InjectContext("families-unit", journal)
    pause = adapter.validate_python({"name": "p", **base, "kind": "process.pause", "target": {"pattern": "^$nope"}})
    with pytest.raises(Exception, match="fault 'p'"):
        family_of(pause.kind).inject(pause, ctx)
    assert journal.records() == []  # nothing resolved: nothing journaled


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """String constants of a module that are not docstrings."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_each_kind_string_is_written_once_in_its_params_model() -> None:
    """A kind string appears in code only in its family's params module (its ``Literal``); outside
    the families, no module imports a family or names one of its fault classes."""
    kinds = set(fault_kinds())
    classes = {model.__name__ for model in fault_kinds().values()}
    written: dict[str, list[str]] = {kind: [] for kind in kinds}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = str(path.relative_to(ROOT))
        for line, text in _strings(tree):
            for kind in kinds:
                if text == kind or text.startswith((f"{kind} ", f"{kind}:")):
                    written[kind].append(f"{where}:{line}")
        if path.is_relative_to(FAMILIES):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("harness.chaos.families"):
                pytest.fail(f"{where}:{node.lineno} imports a family: {node.module}")
            if (
                isinstance(node, ast.Name | ast.alias)
                and (getattr(node, "id", None) or getattr(node, "name", "")) in classes
            ):
                pytest.fail(f"{where}:{node.lineno} names a family's fault class")
    for kind, places in written.items():
        mine = [p for p in places if not p.startswith(str(WIRE_NAMES.relative_to(ROOT)))]
        assert len(mine) == 1 and mine[0].split(":")[0].endswith("/params.py"), (kind, places)


def test_loading_every_family_for_validate_imports_no_runtime() -> None:
    """``harness validate`` reads every family (the schema needs their kinds); a family imports
    pyroute2, the kubernetes client, Ray or gevent only inside the hooks that use them."""
    import subprocess
    import sys

    script = (
        "import glob, sys\n"
        "from harness.scenario import load_scenario, scenario_json_schema\n"
        "scenario_json_schema()\n"
        "for path in sorted(glob.glob('scenarios/*.yaml')): load_scenario(path)\n"
        "print(sorted(m for m in ('pyroute2', 'kubernetes', 'ray', 'gevent', 'locust') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
