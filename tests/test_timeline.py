"""compile_plan: scenario files in, a frozen timeline of offsets and SLO window spans out."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest

from harness.errors import ScenarioError
from harness.plan import Plan, Span, StepKind, compile_plan, split_evenly
from harness.scenario import Scenario, load_scenario
from harness.scenario.expressions import parse_window

LOCUSTFILE = """\
from locust import FastHttpUser, task


class Shopper(FastHttpUser):
    @task
    def t(self):
        pass
"""


def scenario_from(tmp_path: Path, body: str) -> Scenario:
    """Load a scenario whose ``load.stages``/``faults``/``slos`` come from ``body`` (YAML)."""
    (tmp_path / "locust.py").write_text(LOCUSTFILE)
    text = (
        "name: timeline-test\n"
        "target:\n  base_url: http://127.0.0.1:8700\n"
        "load:\n  locustfile: locust.py\n  user_classes: [{class: Shopper}]\n" + body
    )
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return load_scenario(path)


def plan_from(tmp_path: Path, body: str) -> Plan:
    return compile_plan(scenario_from(tmp_path, body))


def steps_at(plan: Plan, offset: float) -> list[tuple[StepKind, str]]:
    return [(s.kind, s.name) for s in plan.steps if s.offset == offset]


THREE_STAGES = """\
  stages:
    - {name: ramp, duration: 10s, users: 10, spawn_rate: 5}
    - {name: plateau, duration: 20s, users: 50}
    - {name: cooldown, duration: 30s, users: 5}
"""


def test_stages_follow_each_other_at_absolute_offsets(tmp_path: Path) -> None:
    plan = plan_from(tmp_path, THREE_STAGES)
    assert plan.duration == 60.0
    assert plan.phases == {"ramp": Span(0, 10), "plateau": Span(10, 30), "cooldown": Span(30, 60)}
    loads = [(s.offset, s.name, s.stage.users) for s in plan.steps if s.kind is StepKind.STAGE and s.stage]
    assert loads == [(0.0, "ramp", 10), (10.0, "plateau", 50), (30.0, "cooldown", 5)]
    assert plan.steps[0].kind is StepKind.RUN_START and plan.steps[0].offset == 0
    assert plan.steps[-1].kind is StepKind.RUN_END and plan.steps[-1].offset == 60
    offsets = [s.offset for s in plan.steps]
    assert offsets == sorted(offsets)


def test_stage_detail_describes_the_load(tmp_path: Path) -> None:
    plan = plan_from(tmp_path, THREE_STAGES)
    details = {s.name: s.detail for s in plan.steps if s.kind is StepKind.STAGE}
    assert details["ramp"] == "10 users at 5/s for 10s"
    assert details["cooldown"] == "5 users at 10/s for 30s"


def test_open_model_stage_detail(tmp_path: Path) -> None:
    plan = plan_from(
        tmp_path,
        "  stages:\n    - {name: flood, duration: 1m, arrival_rate: 250, max_users: 40}\n",
    )
    assert plan.scenario.open_model
    (stage,) = [s for s in plan.steps if s.kind is StepKind.STAGE]
    assert stage.detail == "arrival rate 250/s (up to 40 users) for 1m"
    assert plan.duration == 60.0


def test_stage_at_leaves_a_gap_and_later_stages_follow_it(tmp_path: Path) -> None:
    plan = plan_from(
        tmp_path,
        """\
  stages:
    - {name: a, duration: 10s, users: 1}
    - {name: b, at: 15s, duration: 10s, users: 2}
    - {name: c, duration: 5s, users: 3}
""",
    )
    assert plan.phases == {"a": Span(0, 10), "b": Span(15, 25), "c": Span(25, 30)}
    assert plan.duration == 30.0
    assert [s.offset for s in plan.steps if s.kind is StepKind.STAGE] == [0.0, 15.0, 25.0]


def test_unnamed_stages_get_phase_names(tmp_path: Path) -> None:
    plan = plan_from(
        tmp_path,
        "  stages:\n    - {duration: 5s, users: 1}\n    - {name: main, duration: 5s, users: 2}\n"
        "    - {duration: 5s, users: 3}\n",
    )
    assert plan.phases == {"stage-1": Span(0, 5), "main": Span(5, 10), "stage-3": Span(10, 15)}


def test_a_stage_name_that_collides_with_a_default_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"load\.stages\[1\]: phase name 'stage-2' is used twice"):
        plan_from(
            tmp_path,
            "  stages:\n    - {name: stage-2, duration: 10s, users: 1}\n    - {duration: 10s, users: 2}\n"
            "slos:\n  - {name: s, objective: 'p99 < 1s', window: 'phase:stage-2'}\n",
        )


def test_default_phase_names_are_usable_in_windows(tmp_path: Path) -> None:
    plan = plan_from(
        tmp_path,
        "  stages:\n    - {duration: 10s, users: 1}\n    - {duration: 10s, users: 2}\n"
        "slos:\n  - {name: s, objective: 'p99 < 1s', window: 'phase:stage-2'}\n",
    )
    assert len(plan.phases) == 2
    assert plan.windows["s"] == (Span(10, 20),)


FAULTS = """\
  stages:
    - {name: warm, duration: 20s, users: 5}
    - {name: hot, duration: 40s, users: 20}
faults:
  - {name: a, kind: process.pause, at: 5s, duration: 15s, recovery: 3s, target: {pattern: svc-a}}
  - {name: b, kind: process.pause, at: 20s, duration: 10s, target: {pattern: svc-b}}
  - {name: c, kind: process.pause, at: 25s, duration: 10s, recovery: 5s, target: {pattern: svc-c}}
slos:
  - {name: whole, objective: "p99 < 1s", window: run}
  - {name: calm, objective: "p99 < 1s", window: steady}
  - {name: in-a, objective: "p99 < 1s", window: "during:a"}
  - {name: after-b-10, objective: "p99 < 1s", window: "after:b:10s"}
  - {name: after-c-1h, objective: "p99 < 1s", window: "after:c:1h"}
  - {name: after-c, objective: "p99 < 1s", window: "after:c"}
  - {name: tail, objective: "p99 < 1s", window: "last:10s"}
  - {name: heat, objective: "p99 < 1s", window: "phase:hot"}
"""


def test_faults_on_the_timeline_including_overlaps(tmp_path: Path) -> None:
    plan = plan_from(tmp_path, FAULTS)
    assert plan.faults == {"a": Span(5, 20), "b": Span(20, 30), "c": Span(25, 35)}
    starts = [(s.offset, s.name) for s in plan.steps if s.kind is StepKind.FAULT_START]
    ends = [(s.offset, s.name) for s in plan.steps if s.kind is StepKind.FAULT_END]
    assert starts == [(5.0, "a"), (20.0, "b"), (25.0, "c")]
    assert ends == [(20.0, "a"), (30.0, "b"), (35.0, "c")]
    # b and c overlap: c starts while b is still active, each is reverted at its own end.
    assert [s.fault_index for s in plan.steps if s.kind is StepKind.FAULT_START] == [0, 1, 2]


def test_at_one_offset_a_fault_ends_before_the_next_begins_and_load_changes_first(tmp_path: Path) -> None:
    plan = plan_from(tmp_path, FAULTS)
    assert steps_at(plan, 20.0) == [
        (StepKind.PHASE_END, "warm"),
        (StepKind.FAULT_END, "a"),
        (StepKind.PHASE_START, "hot"),
        (StepKind.STAGE, "hot"),
        (StepKind.FAULT_START, "b"),
    ]
    assert steps_at(plan, 60.0) == [(StepKind.PHASE_END, "hot"), (StepKind.RUN_END, "timeline-test")]


def test_a_zero_length_fault_starts_before_it_ends(tmp_path: Path) -> None:
    plan = plan_from(
        tmp_path,
        "  stages:\n    - {duration: 30s, users: 5}\n"
        "faults:\n  - {name: k, kind: process.kill, at: 10s, duration: 0s, target: {pattern: svc}}\n",
    )
    assert steps_at(plan, 10.0) == [(StepKind.FAULT_START, "k"), (StepKind.FAULT_END, "k")]


def test_steady_is_the_run_minus_fault_windows_and_their_recovery(tmp_path: Path) -> None:
    plan = plan_from(tmp_path, FAULTS)
    # a: 5..20 +3s recovery -> 5..23; b: 20..30; c: 25..35 +5s -> 25..40. Union 5..40.
    assert plan.spans(parse_window("steady")) == (Span(0, 5), Span(40, 60))
    assert plan.windows["calm"] == (Span(0, 5), Span(40, 60))
    steady = parse_window("steady")
    assert plan.contains(steady, 4.5)
    assert not plan.contains(steady, 5.0)
    assert not plan.contains(steady, 39.5)
    assert plan.contains(steady, 40.0)


def test_steady_with_separate_faults_has_several_spans_and_recovery_stops_at_the_run_end(
    tmp_path: Path,
) -> None:
    plan = plan_from(
        tmp_path,
        """\
  stages:
    - {duration: 60s, users: 5}
faults:
  - {name: early, kind: process.pause, at: 10s, duration: 5s, recovery: 5s, target: {pattern: x}}
  - {name: late, kind: process.pause, at: 50s, duration: 5s, recovery: 30s, target: {pattern: y}}
""",
    )
    assert plan.excluded_from_steady == (Span(10, 20), Span(50, 60))
    assert plan.spans(parse_window("steady")) == (Span(0, 10), Span(20, 50))


def test_slo_windows_resolve_to_spans(tmp_path: Path) -> None:
    plan = plan_from(tmp_path, FAULTS)
    assert plan.windows["whole"] == (Span(0, 60),)
    assert plan.windows["in-a"] == (Span(5, 20),)
    assert plan.windows["after-b-10"] == (Span(30, 40),)
    assert plan.windows["after-c-1h"] == (Span(35, 60),)  # clipped to the run
    assert plan.windows["after-c"] == (Span(35, 60),)  # no length: until the run ends
    assert plan.windows["tail"] == (Span(50, 60),)
    assert plan.windows["heat"] == (Span(20, 60),)
    assert set(plan.windows) == {slo.name for slo in plan.scenario.slos}


def test_spans_are_half_open(tmp_path: Path) -> None:
    plan = plan_from(tmp_path, FAULTS)
    during = parse_window("during:a")
    assert not plan.contains(during, 4.999)
    assert plan.contains(during, 5.0)
    assert plan.contains(during, 19.5)
    assert not plan.contains(during, 20.0)
    assert Span(3, 1).length == 0
    assert Span(1, 3).length == 2


def test_the_plan_is_frozen(tmp_path: Path) -> None:
    plan = plan_from(tmp_path, THREE_STAGES)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.duration = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.steps[0].offset = 3.0  # type: ignore[misc]
    assert isinstance(plan.steps, tuple)


def test_compiling_twice_gives_the_same_plan(tmp_path: Path) -> None:
    scenario = scenario_from(tmp_path, FAULTS)
    assert compile_plan(scenario).steps == compile_plan(scenario).steps


@pytest.mark.parametrize(
    ("total", "parts", "expected"),
    [(10, 3, [4, 3, 3]), (9, 3, [3, 3, 3]), (2, 4, [1, 1, 0, 0]), (0, 2, [0, 0]), (7, 1, [7])],
)
def test_split_evenly(total: int, parts: int, expected: list[int]) -> None:
    assert split_evenly(total, parts) == expected


def test_split_evenly_always_sums_and_differs_by_at_most_one() -> None:
    for total, parts in itertools.product(range(0, 60), range(1, 13)):
        shares = split_evenly(total, parts)
        assert len(shares) == parts
        assert sum(shares) == total
        assert max(shares) - min(shares) <= 1
