"""Every scenario shipped under ``scenarios/`` is valid, and together they cover every fault kind.

Validation is what ``harness validate`` does (load with locations, then compile the
timeline); the fault kinds come from the scenario models, so a new kind without an example
scenario fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.plan import compile_plan
from harness.scenario import fault_kinds, load_scenario

SCENARIOS = sorted((Path(__file__).resolve().parents[1] / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_shipped_scenario_is_valid(path: Path) -> None:
    scenario = load_scenario(path)
    plan = compile_plan(scenario)
    assert plan.duration > 0
    assert scenario.slos, f"{path.name} has no SLOs: say what is expected under its faults"
    for fault in scenario.faults:
        windows = [s for s in scenario.slos if s.window.ref == fault.name]
        steady = [s for s in scenario.slos if s.window.kind.value in ("steady", "run")]
        assert windows or steady, f"{path.name}: no SLO speaks about fault '{fault.name}'"


def test_every_fault_kind_has_an_example_scenario() -> None:
    used = {fault.kind for path in SCENARIOS for fault in load_scenario(path).faults}
    assert sorted(set(fault_kinds()) - used) == []
