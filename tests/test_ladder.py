"""A blast radius that grows: the ``radius`` key at the edge, the plan's ladder, per-step judging.

The scenario side runs the real ``harness validate`` (exit 2, every problem located); the plan and
the judging are pure and fed replayed seconds, as :mod:`tests.test_slo` feeds the SLO book; the
process family's instances are real processes. The run against the demo is
``tests/test_ladder_demo.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.chaos.ladder import instances, pod_step, step_fault, step_name
from harness.chaos.processes import resolve_targets
from harness.judge.junit import junit_xml
from harness.judge.ladder import LadderBook, StepState
from harness.judge.probe_samples import ProbeSample
from harness.judge.slo import SloBook
from harness.judge.summary import RunSummary
from harness.judge.verdict import Verdict, decide
from harness.plan import StepKind, compile_plan, plan_document
from harness.scenario import load_scenario
from harness.scenario.radius import instances_at
from harness.scenario.redact import Loaded
from tests.test_slo import START, closed_second

LOCUSTFILE = """\
from locust import FastHttpUser, task


class Shopper(FastHttpUser):
    @task
    def t(self):
        pass
"""

SCENARIO = """\
name: ladder-test
target: {base_url: http://127.0.0.1:8700}
load:
  locustfile: locust.py
  user_classes: [{class: Shopper}]
  stages:
    - {name: main, duration: 40s, users: 10}
faults:
  - name: kill
    kind: process.kill
    at: 6s
    duration: 24s
    target: {pattern: 'ladder-test-instance'}
    radius: RADIUS
slos:
  - {name: holds, objective: "error_rate < 5%", window: "during:kill"}
  - {name: fast, objective: "p99 < 250ms", window: "during:kill"}
  - {name: steady, objective: "error_rate < 1%", window: steady}
"""


def write(tmp_path: Path, radius: str = "{steps: [1, 2, 50%], hold: 8s}", text: str = SCENARIO) -> Path:
    (tmp_path / "locust.py").write_text(LOCUSTFILE)
    path = tmp_path / "ladder.yaml"
    path.write_text(text.replace("RADIUS", radius))
    return path


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "validate", str(path)], capture_output=True, text=True, timeout=60
    )


# ---------------------------------------------------------------- the scenario's key


@pytest.mark.parametrize(
    ("radius", "where", "message"),
    [
        ("{steps: [0]}", "faults[0].radius.steps[0]", "1 or more, not 0"),
        ("{steps: [1, 150%]}", "faults[0].radius.steps[1]", "at most 100%, not 150%"),
        ("{steps: [1, two]}", "faults[0].radius.steps[1]", "a number of instances (2) or a share of them (25%)"),
        ("{steps: []}", "faults[0].radius.steps", "at least 1 item"),
        ("[1, 2]", "faults[0].radius", "expected a mapping of keys"),
        ("{steps: [1], hld: 8s}", "faults[0].radius.hld", "did you mean 'hold'?"),
    ],
)
def test_a_bad_radius_is_exit_2_at_its_key(tmp_path: Path, radius: str, where: str, message: str) -> None:
    done = validate(write(tmp_path, radius))
    assert done.returncode == 2, done.stdout + done.stderr
    line = next(i for i, text in enumerate(write(tmp_path, radius).read_text().splitlines(), 1) if "radius" in text)
    assert f"ladder.yaml:{line}:" in done.stderr + done.stdout
    assert f"{where}: " in done.stdout + done.stderr and message in done.stdout + done.stderr


def test_every_problem_of_a_ladder_is_found_at_once_and_located(tmp_path: Path) -> None:
    text = SCENARIO.replace("{pattern: 'ladder-test-instance'}", "{pid_file: /run/x.pid}")
    text = text.replace('window: "during:kill"', "window: steady")
    text += """\
  - {name: net, objective: "p99 < 1s", window: "during:cut"}
"""
    text = text.replace(
        "slos:\n",
        """\
  - name: cut
    kind: network.partition
    at: 5s
    duration: 10s
    params: {peers: [127.0.0.1/32]}
    radius: {steps: [1, 2]}
slos:
""",
    )
    path = write(tmp_path, "{steps: [2, 1, 50%, 25%], hold: 7s, must_hold: 3}", text)
    done = validate(path)
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    lines = path.read_text().splitlines()
    kill = next(i for i, t in enumerate(lines, 1) if "radius: {steps: [2, 1" in t)
    cut = next(i for i, t in enumerate(lines, 1) if "radius: {steps: [1, 2]}" in t)
    expected = [
        (kill, "faults[0].radius", "a radius counts the processes target.pattern matches"),
        (kill, "faults[0].radius", "a radius needs an SLO with window during:kill to judge each step"),
        (kill, "faults[0].radius.steps[1]", "step 1 does not grow from step 2"),
        (kill, "faults[0].radius.steps[3]", "step 25% does not grow from step 50%"),
        (kill, "faults[0].radius.hold", "4 steps of 7s last 28s but the fault's duration is 24s"),
        (kill, "faults[0].radius.must_hold", "3 is not one of the steps (2, 1, 50%, 25%)"),
        (cut, "faults[1].radius", "kind network.partition selects no set of instances a radius could count"),
    ]
    for line, key, message in expected:
        assert any(f"ladder.yaml:{line}:" in row and f" {key}: {message}" in row for row in out.splitlines()), (
            line,
            key,
            message,
            out,
        )
    assert "nothing was started" in out


def test_a_step_counts_instances_or_a_share_rounded_up() -> None:
    assert [instances_at(step, 3) for step in ("1", "2", "3", "5", "25%", "50%", "100%")] == [1, 2, 3, 3, 1, 2, 3]
    assert [instances_at(step, 10) for step in ("10%", "25%", "33%", "99%")] == [1, 3, 4, 10]


# ---------------------------------------------------------------- the plan


@pytest.fixture
def loaded(tmp_path: Path) -> Loaded:
    path = write(tmp_path, "{steps: [1, 2, 50%], must_hold: 2}")  # 24 s over 3 steps: 8 s each
    return Loaded(load_scenario(path), (), (), frozenset())


def test_the_plan_holds_each_step_back_to_back_and_judges_during_slos_per_step(loaded: Loaded) -> None:
    plan = compile_plan(loaded.scenario)
    ladder = plan.ladders["kill"]
    assert [(r.radius, r.span.start, r.span.end) for r in ladder.rungs] == [
        ("1", 6.0, 14.0),
        ("2", 14.0, 22.0),
        ("50%", 22.0, 30.0),
    ]
    assert ladder.slos == ("holds", "fast") and ladder.must_hold_index() == 2
    faults = [(s.offset, s.kind, s.rung) for s in plan.steps if s.name == "kill"]
    assert faults == [
        (6.0, StepKind.FAULT_START, 1),
        (14.0, StepKind.FAULT_WIDEN, 2),
        (22.0, StepKind.FAULT_WIDEN, 3),
        (30.0, StepKind.FAULT_END, None),
    ]
    assert plan.per_step("holds") and not plan.per_step("steady")
    document = plan_document("ladder.yaml", loaded, {}, [])
    assert document["ladders"] == [
        {
            "fault": "kill",
            "steps": [
                {"step": 1, "radius": "1", "start_s": 6.0, "end_s": 14.0},
                {"step": 2, "radius": "2", "start_s": 14.0, "end_s": 22.0},
                {"step": 3, "radius": "50%", "start_s": 22.0, "end_s": 30.0},
            ],
            "judged_by": ["holds", "fast"],
            "must_hold": "2",
        }
    ]


def test_harness_plan_prints_the_ladder(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "plan", str(write(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ladder of fault kill" in done.stdout
    assert "each step: 6s..14s, 14s..22s, 22s..30s" in done.stdout
    assert "fault widen" in done.stdout and "step 3 (radius 50%)" in done.stdout
    as_json = subprocess.run(
        [sys.executable, "-m", "harness.cli", "plan", "--json", str(write(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    (fault,) = json.loads(as_json.stdout)["faults"]
    assert "; ladder now: fault 'kill': no running process matches" in fault["target"]  # nothing runs it now


# ---------------------------------------------------------------- judging per step


def _feed(book: LadderBook | SloBook, first: int, last: int, failure: str | None = None) -> None:
    """Seconds ``first``..``last`` (offsets) of 100 requests each, all failing with ``failure``."""
    for offset in range(first, last + 1):
        book.observe(closed_second(int(START) + 1 + offset, 20.0, failure))  # midpoint at offset + 0.9


def test_each_step_is_judged_on_its_own_window_and_frozen_when_judged(loaded: Loaded) -> None:
    plan = compile_plan(loaded.scenario)
    book = LadderBook(plan, START)
    _feed(book, 6, 12)  # step 1 (6..14): all fine; the last second is not in yet when judged
    one = book.judge("kill", 1, instances=1, found=3)
    assert one.state is StepState.HELD and (one.instances, one.found) == (1, 3)
    assert [(r.name, r.seconds, r.requests, r.window) for r in one.slos] == [
        ("holds", 7, 700, "during:kill step 1 (radius 1)"),
        ("fast", 7, 700, "during:kill step 1 (radius 1)"),
    ]
    _feed(book, 13, 13, "ConnectionRefusedError")  # late for step 1: its result stays as judged
    _feed(book, 14, 17)
    _feed(book, 18, 20, "ConnectionRefusedError")  # step 2 (14..22): 3 of 7 seconds fail
    two = book.judge("kill", 2, instances=2, found=3)
    assert two.state is StepState.BROKE
    holds = next(r for r in two.slos if r.name == "holds")
    assert holds.measured == pytest.approx(300 / 700) and not holds.passed
    assert "holds: error_rate" in two.reason and "fast" not in two.reason  # only what broke
    three = book.skip("kill", 3, "not injected: step 2 (radius 2) broke")
    (result,) = book.results()
    assert [s.state for s in result.steps] == [StepState.HELD, StepState.BROKE, StepState.SKIPPED]
    assert result.steps[0] == one and result.steps[2] == three
    assert (result.largest_held, result.first_broken, result.must_hold, result.passed) == ("1", "2", "2", False)
    assert result.message == "ladder kill: held up to radius 1, broke at radius 2, radius 2 had to hold"


def test_a_probe_slo_is_judged_per_step_on_the_probes_polled_in_that_step(tmp_path: Path) -> None:
    text = SCENARIO.replace(
        "slos:\n",
        "probes:\n  prometheus: http://127.0.0.1:9\n  every: 1s\n"
        "  queries:\n    - {name: errors, promql: 'sum(x)'}\nslos:\n",
    ).replace('objective: "p99 < 250ms"', 'objective: "probe:errors < 1"')
    path = write(tmp_path, "{steps: [1, 2, 50%], hold: 8s}", text)
    plan = compile_plan(load_scenario(path))
    book = LadderBook(plan, START)
    _feed(book, 6, 21)
    for offset, value in [(7, 0.0), (12, 0.0), (16, 0.0), (19, 3.0)]:  # step 2 (14..22) breaches at 19
        book.observe_probe(ProbeSample("errors", START + offset, value))
    one = book.judge("kill", 1)
    two = book.judge("kill", 2)
    assert one.state is StepState.HELD, one.reason
    assert two.state is StepState.BROKE and "fast: " in two.reason, two.reason
    assert [r.measured for r in one.slos if r.name == "fast"] == [0.0]
    assert [r.measured for r in two.slos if r.name == "fast"] == [3.0]


def test_the_whole_run_book_leaves_per_step_slos_to_the_ladder(loaded: Loaded) -> None:
    plan = compile_plan(loaded.scenario)
    book = SloBook(plan, START)
    _feed(book, 0, 39)
    assert [r.name for r in book.results()] == ["steady"]


def test_must_hold_gates_the_verdict_and_the_reason_says_where_it_broke(loaded: Loaded) -> None:
    plan = compile_plan(loaded.scenario)
    book = LadderBook(plan, START)
    _feed(book, 6, 21)
    book.judge("kill", 1)
    book.judge("kill", 2)  # held: must_hold 2 met
    _feed(book, 22, 29, "ConnectionRefusedError")
    book.judge("kill", 3)
    ladders = book.results()
    assert ladders[0].passed and ladders[0].first_broken == "50%"
    verdict, reason = decide([], ladders=ladders)
    assert verdict is Verdict.PASSED
    assert (
        reason == "no SLOs defined; run completed; ladder kill: held up to radius 2, broke at radius 50%, radius 2 held"
    )

    failing = LadderBook(plan, START)
    _feed(failing, 6, 13)
    failing.judge("kill", 1)
    _feed(failing, 14, 21, "ConnectionRefusedError")
    failing.judge("kill", 2)
    failing.skip("kill", 3, "not injected")
    verdict, reason = decide([], ladders=failing.results())
    assert (verdict, verdict.exit_code) == (Verdict.FAILED, 1)
    assert reason == "ladder kill: held up to radius 1, broke at radius 2, radius 2 had to hold"

    xml = junit_xml(RunSummary(run_id="r", scenario="s", ladders=failing.results()))
    assert '<testcase classname="harness.s.ladder" name="kill"' in xml
    assert 'type="LadderBroke"' in xml and "step 3 (radius 50%): skipped: not injected" in xml


def test_a_ladder_round_trips_through_summary_json(loaded: Loaded) -> None:
    book = LadderBook(compile_plan(loaded.scenario), START)
    _feed(book, 6, 13)
    book.judge("kill", 1, 1, 3)
    summary = RunSummary(run_id="r", ladders=book.results())
    again = RunSummary.from_json(json.loads(json.dumps(summary.to_json())))
    assert again.ladders == summary.ladders
    assert again.ladders[0].steps[1].state is StepState.NOT_REACHED


# ---------------------------------------------------------------- the process family's instances


@pytest.fixture
def three_instances() -> Iterator[list[subprocess.Popen[bytes]]]:
    marker = "ladder-test-instance"
    script = "import sys, time; time.sleep(60)"
    procs = [subprocess.Popen([sys.executable, "-c", script, marker, f"--port={p}"]) for p in (9003, 9001, 9002)]
    try:
        yield procs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(5)


def test_a_process_ladder_takes_a_prefix_of_the_sorted_command_lines(
    loaded: Loaded, three_instances: list[subprocess.Popen[bytes]]
) -> None:
    fault = loaded.scenario.faults[0]
    ids = instances(fault)
    assert [i.rsplit("=", 1)[1] for i in ids] == ["9001", "9002", "9003"]
    steps = [step_fault(fault, ids, i) for i in (1, 2, 3)]
    assert [(s.acts_on, s.found) for s in steps] == [(1, 3), (2, 3), (2, 3)]  # 50% of 3 rounds up to 2
    assert (
        [s.fault.name for s in steps]
        == [step_name("kill", i) for i in (1, 2, 3)]
        == [
            "kill.step1",
            "kill.step2",
            "kill.step3",
        ]
    )
    by_port = {p.args[-1]: p.pid for p in three_instances}  # type: ignore[index]
    for step in steps:
        assert step.fault.radius is None
        chosen = sorted(p.pid for p in resolve_targets(step.fault.target))  # type: ignore[attr-defined]
        assert chosen == sorted(by_port[f"--port={port}"] for port in ("9001", "9002", "9003")[: step.acts_on])


# ---------------------------------------------------------------- a ladder over pods

PODS = """\
name: ladder-pods
target: {base_url: http://127.0.0.1:8700}
load:
  locustfile: locust.py
  user_classes: [{class: Shopper}]
  stages:
    - {name: main, duration: 40s, users: 10}
faults:
  - name: cut
    kind: network.partition
    at: 6s
    duration: 24s
    pods: {namespace: shop, selector: app=catalog, mode: all}
    params: {peers: [127.0.0.1/32]}
    radius: RADIUS
slos:
  - {name: holds, objective: "error_rate < 5%", window: "during:cut"}
safety:
  allowed_contexts: [kind-shop]
"""


def test_a_ladder_over_pods_acts_in_the_first_pods_by_name(tmp_path: Path) -> None:
    path = write(tmp_path, "{steps: [1, 50%, 100%]}", PODS)
    done = validate(path)
    assert done.returncode == 0, done.stdout + done.stderr  # a radius counts the pods of any fault with pods
    fault = load_scenario(path).faults[0]
    keys = [f"shop/catalog-{c}" for c in "abcd"]
    steps = [pod_step(fault, keys, i) for i in (1, 2, 3)]
    assert [(s.acts_on, s.found, s.ids) for s in steps] == [
        (1, 4, ("shop/catalog-a",)),
        (2, 4, ("shop/catalog-a", "shop/catalog-b")),
        (4, 4, tuple(keys)),
    ]
    assert [s.fault.name for s in steps] == ["cut.step1", "cut.step2", "cut.step3"]
    assert all(s.fault.pods == fault.pods and s.fault.radius is None for s in steps)
    without_pods = PODS.replace("    pods: {namespace: shop, selector: app=catalog, mode: all}\n", "")
    done = validate(write(tmp_path, "{steps: [1, 50%, 100%]}", without_pods))
    assert done.returncode == 2 and "kind network.partition selects no set of instances" in done.stderr + done.stdout
