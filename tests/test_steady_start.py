"""A fault that waits for a steady state: ``at: {steady: [...], for, after, deadline}``.

What a user sees of it without a run: ``harness validate`` refuses every mistake located
(file:line, key path, exit 2, no traceback), ``harness plan`` places the fault at its deadline and
says its windows move, ``plan --json`` has ``waits_for``, ``--duration`` scales its bounds. Then
the pure parts a run is made of, fed real closed seconds (real HdrHistograms) as
:mod:`tests.test_slo` feeds the SLO book: the per-second judge (:class:`SteadyWatch`), the plan
moved to the fault's real start (:meth:`Plan.started_at`), and the books that count seconds into
windows after they moved (``retime``). The run against the demo shop is tests/test_steady_demo.py.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.judge.ladder import LadderBook, StepState
from harness.judge.probe_samples import ProbeSample
from harness.judge.slo import SloBook, SloResult
from harness.judge.steady import SteadyHeld, SteadyWatch
from harness.judge.verdict import RunLedger
from harness.measure.windows import ClosedSecond
from harness.plan import Plan, Span, StepKind, compile_plan
from harness.scenario import load_scenario
from harness.scenario.start import SteadyStart
from tests.test_scenario_errors import LOCUSTFILE, Outcome, harness
from tests.test_slo import closed_second

# 40 s of load; fault F waits (from 4 s, by 30 s) for 3 s of p99 < 300ms and >= 20 req/s; fault P
# is an ordinary one at 2 s, so the steady window has a hole that never moves.
VALID = """\
name: steady-start
target:
  base_url: http://127.0.0.1:8700
  allowed_hosts: [127.0.0.1]
load:
  locustfile: locust.py
  user_classes:
    - class: Shopper
  stages:
    - name: ramp
      duration: 10s
      users: 5
      spawn_rate: 5
    - name: plateau
      duration: 30s
      users: 10
probes:
  prometheus: http://127.0.0.1:9090
  queries:
    - name: ready
      promql: up
faults:
  - name: F
    kind: process.kill
    at:
      steady: [p99 < 300ms, rps >= 20]
      for: 3s
      after: 4s
      deadline: 30s
    duration: 5s
    recovery: 2s
    target:
      pattern: steady-start-test-no-such-process
  - name: P
    kind: process.pause
    at: 2s
    duration: 1s
    target:
      pattern: steady-start-test-no-such-process
slos:
  - name: during-F
    objective: p99 < 250ms
    window: during:F
  - name: after-F
    objective: p99 < 250ms
    window: after:F:5s
  - name: calm
    objective: p99 < 250ms
    window: steady
  - name: whole
    objective: p99 < 250ms
    window: run
  - name: during-P
    objective: error_rate < 50%
    window: during:P
"""

START = 1000.6  # the run's start epoch: second s has its midpoint at offset s + 0.5 - START


def edit(old: str, new: str, text: str = VALID) -> str:
    """``text`` with ``old`` (which must occur exactly once) replaced by ``new``."""
    assert text.count(old) == 1, f"test bug: {old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


def line_of(text: str, needle: str) -> int:
    """1-based number of the first line that contains ``needle``."""
    return next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "locust.py").write_text(LOCUSTFILE)
    return tmp_path


def write(workdir: Path, text: str) -> Path:
    path = workdir / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def located(outcome: Outcome, path: Path) -> list[str]:
    """Every problem printed for ``path``, as 'LINE: key.path: message' (the column left out)."""
    found = []
    for text in outcome.stderr.splitlines():
        if text.startswith(f"{path}:"):
            line, _column, rest = text[len(f"{path}:") :].split(":", 2)
            found.append(f"{line}: {rest.strip()}")
    return found


def assert_refused(outcome: Outcome, path: Path, expected: list[tuple[int, str, str]]) -> None:
    """Exit 2, no traceback, nothing started, and exactly the ``(line, key path, fragment)`` problems."""
    assert outcome.code == 2, f"exit {outcome.code}\n{outcome.stdout}\n{outcome.stderr}"
    assert "Traceback" not in outcome.stdout + outcome.stderr
    problems = located(outcome, path)
    assert len(problems) == len(expected), outcome.stderr
    for line, key, fragment in expected:
        hits = [p for p in problems if p.startswith(f"{line}: {key}: ") and fragment in p]
        assert hits, f"expected {path}:{line}: {key}: ...{fragment}...; stderr was:\n{outcome.stderr}"
    count = len(expected)
    assert f"{count} problem{'s' if count != 1 else ''} found; nothing was started." in outcome.stderr
    assert not (path.parent / "runs").exists() or not any((path.parent / "runs").iterdir())


def load(workdir: Path, text: str = VALID) -> Plan:
    return compile_plan(load_scenario(write(workdir, text)))


# ---------------------------------------------------------------- harness validate


def test_a_fault_that_waits_validates(workdir: Path) -> None:
    path = write(workdir, VALID)
    outcome = harness(workdir, "validate", str(path))
    assert outcome.code == 0, outcome.stderr
    assert "valid: 2 stages, 2 faults, 5 SLOs, 0 guards, 40s" in outcome.stdout
    assert outcome.stderr == ""


def test_a_steady_condition_on_a_declared_probe_validates(workdir: Path) -> None:
    path = write(workdir, edit("rps >= 20]", "rps >= 20, probe:ready >= 1]"))
    outcome = harness(workdir, "validate", str(path))
    assert outcome.code == 0, outcome.stderr


@dataclass(frozen=True)
class Mistake:
    id: str
    old: str
    new: str
    needle: str  # on the line the problem is reported at
    key: str
    fragment: str


MISTAKES = [
    Mistake(
        "deadline-plus-duration-past-the-run-end",
        "deadline: 30s",
        "deadline: 36s",
        "deadline: 36s",
        "faults[0].at.deadline",
        "fault window 36s..41s (started at its deadline, the latest it may) ends after the run (40s)",
    ),
    Mistake(
        "after-later-than-deadline",
        "after: 4s",
        "after: 31s",
        "at:",
        "faults[0].at",
        "after (31s) is later than deadline (30s)",
    ),
    Mistake(
        "for-longer-than-deadline-minus-after",
        "for: 3s",
        "for: 27s",
        "at:",
        "faults[0].at",
        "the conditions cannot hold for 27s between after (4s) and deadline (30s)",
    ),
    Mistake("for-0s", "for: 3s", "for: 0s", "at:", "faults[0].at", "the conditions must hold for at least 1s"),
    Mistake(
        "budget-burn-is-not-per-second",
        "rps >= 20]",
        "rps >= 20, budget_burn < 50%]",
        "steady:",
        "faults[0].at.steady[2]",
        "budget_burn cannot be judged second by second, so it cannot say when the load is steady",
    ),
    Mistake(
        "recovery-time-is-not-per-second",
        "rps >= 20]",
        "rps >= 20, recovery_time < 5s]",
        "steady:",
        "faults[0].at.steady[2]",
        "recovery_time cannot be judged second by second",
    ),
    Mistake(
        "heal-time-is-not-per-second",
        "rps >= 20]",
        "rps >= 20, heal_time < 5s]",
        "steady:",
        "faults[0].at.steady[2]",
        "heal_time cannot be judged second by second",
    ),
    Mistake(
        "burn-rate-needs-a-budget",
        "rps >= 20]",
        "rps >= 20, burn_rate < 2x]",
        "steady:",
        "faults[0].at.steady[2]",
        "burn_rate needs budget, which a steady condition cannot give",
    ),
    Mistake(
        "misspelt-after",
        "after: 4s",
        "afte: 4s",
        "afte:",
        "faults[0].at.afte",
        "unknown key 'afte'; did you mean 'after'?",
    ),
    Mistake(
        "misspelt-steady",
        "steady: [p99",
        "stedy: [p99",
        "stedy:",
        "faults[0].at.stedy",
        "unknown key 'stedy'; did you mean 'steady'?",
    ),
    Mistake(
        "undeclared-probe",
        "rps >= 20]",
        "rps >= 20, probe:nope > 1]",
        "steady:",
        "faults[0].at.steady[2]",
        "no probe is named 'nope' (there are: ready): declare it under probes.queries",
    ),
    Mistake(
        "empty-steady-list",
        "steady: [p99 < 300ms, rps >= 20]",
        "steady: []",
        "steady:",
        "faults[0].at.steady",
        "must have at least 1 item",
    ),
    Mistake("deadline-missing", "      deadline: 30s\n", "", "at:", "faults[0].at.deadline", "required key is missing"),
    Mistake(
        "deadline-not-a-duration",
        "deadline: 30s",
        "deadline: soon",
        "deadline:",
        "faults[0].at.deadline",
        "'soon' is not a duration",
    ),
]


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.id for m in MISTAKES])
def test_a_mistake_in_a_steady_start_is_exit_2_located(workdir: Path, mistake: Mistake) -> None:
    text = edit(mistake.old, mistake.new)
    path = write(workdir, text)
    outcome = harness(workdir, "validate", str(path))
    assert_refused(outcome, path, [(line_of(text, mistake.needle), mistake.key, mistake.fragment)])


def test_every_mistake_of_a_steady_start_is_reported_at_once(workdir: Path) -> None:
    """Mistakes pydantic finds (a misspelt key, a refused metric) and the checks across keys (a
    probe not declared, a window past the run's end) of two waiting faults, in one pass."""
    text = edit("after: 4s", "afte: 4s")
    text = edit("rps >= 20]", "rps >= 20, burn_rate < 2x]", text)
    text = edit("    at: 2s\n", "    at: {steady: [probe:nope > 1], for: 2s, deadline: 39.5s}\n", text)
    path = write(workdir, text)
    outcome = harness(workdir, "validate", str(path))
    second = line_of(text, "probe:nope")
    expected = [
        (line_of(text, "steady: [p99"), "faults[0].at.steady[2]", "burn_rate needs budget"),
        (line_of(text, "afte:"), "faults[0].at.afte", "did you mean 'after'?"),
        (second, "faults[1].at.steady[0]", "no probe is named 'nope'"),
        (second, "faults[1].at.deadline", "fault window 39.5s..40.5s (started at its deadline"),
    ]
    assert_refused(outcome, path, expected)


def test_run_refuses_the_same_mistakes_and_starts_nothing(workdir: Path) -> None:
    text = edit("deadline: 30s", "deadline: 36s")
    path = write(workdir, text)
    outcome = harness(workdir, "run", str(path))
    assert_refused(outcome, path, [(line_of(text, "deadline:"), "faults[0].at.deadline", "ends after the run")])


def test_the_schema_takes_a_steady_start(workdir: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    yaml = pytest.importorskip("yaml")
    outcome = harness(workdir, "schema")
    assert outcome.code == 0, outcome.stderr
    validator = jsonschema.Draft202012Validator(json.loads(outcome.stdout))
    data = yaml.safe_load(VALID)
    assert [e.message for e in validator.iter_errors(data)] == []
    data["faults"][0]["at"]["afte"] = "4s"
    assert any("afte" in e.message for e in validator.iter_errors(data))


# ---------------------------------------------------------------- the plan


def test_the_plan_places_a_waiting_fault_at_its_deadline(workdir: Path) -> None:
    plan = load(workdir)
    [start] = [s for s in plan.steps if s.kind is StepKind.FAULT_START and s.name == "F"]
    [end] = [s for s in plan.steps if s.kind is StepKind.FAULT_END and s.name == "F"]
    assert (start.offset, start.waits, end.offset) == (30.0, True, 35.0)
    assert "when p99 < 300ms and rps >= 20 for 3s, from 4s, by 30s at the latest" in start.detail
    assert plan.faults["F"] == Span(30.0, 35.0)
    assert plan.waiting() == {"F": 30.0}
    assert plan.started == {}
    # An ordinary fault neither waits nor moves.
    [other] = [s for s in plan.steps if s.kind is StepKind.FAULT_START and s.name == "P"]
    assert (other.offset, other.waits) == (2.0, False)


def test_started_at_moves_the_fault_and_its_windows(workdir: Path) -> None:
    plan = load(workdir)
    moved = plan.started_at("F", 12.3)
    steps = {(s.kind, s.name): s for s in moved.steps if s.name == "F"}
    assert steps[(StepKind.FAULT_START, "F")].offset == 12.3
    assert steps[(StepKind.FAULT_END, "F")].offset == pytest.approx(17.3)
    assert not any(s.waits for s in moved.steps)
    assert "when" not in steps[(StepKind.FAULT_START, "F")].detail
    assert moved.waiting() == {}
    assert moved.started == {"F": 12.3}
    assert moved.faults["F"] == Span(12.3, pytest.approx(17.3))  # type: ignore[arg-type]
    assert moved.windows["during-F"] == (Span(12.3, pytest.approx(17.3)),)  # type: ignore[arg-type]
    assert moved.windows["after-F"] == (Span(pytest.approx(17.3), pytest.approx(22.3)),)  # type: ignore[arg-type]
    # steady: outside both faults and F's 2 s of recovery, which moved with it.
    assert moved.windows["calm"] == (
        Span(0.0, 2.0),
        Span(3.0, 12.3),
        Span(pytest.approx(19.3), 40.0),  # type: ignore[arg-type]
    )
    assert moved.windows["whole"] == (Span(0.0, 40.0),)
    assert moved.windows["during-P"] == (Span(2.0, 3.0),)
    # The rest of the timeline did not move, and the plan it came from is unchanged.
    assert [s for s in moved.steps if s.name != "F"] == [s for s in plan.steps if s.name != "F"]
    assert plan.faults["F"] == Span(30.0, 35.0)
    assert plan.windows["calm"] == (Span(0.0, 2.0), Span(3.0, 30.0), Span(37.0, 40.0))
    assert plan.waiting() == {"F": 30.0}


LADDER = edit(
    "    recovery: 2s\n",
    "    recovery: 2s\n    radius: {steps: [1, 2], hold: 2s}\n",
    edit("    duration: 5s\n", "    duration: 4s\n"),
)


def test_started_at_moves_a_ladder_step_by_step(workdir: Path) -> None:
    plan = load(workdir, LADDER)
    assert [r.span for r in plan.ladders["F"].rungs] == [Span(30.0, 32.0), Span(32.0, 34.0)]
    steps = [(s.kind, s.offset, s.rung, s.waits) for s in plan.steps if s.name == "F"]
    assert steps == [
        (StepKind.FAULT_START, 30.0, 1, True),
        (StepKind.FAULT_WIDEN, 32.0, 2, False),
        (StepKind.FAULT_END, 34.0, None, False),
    ]

    moved = plan.started_at("F", 10.5)
    assert [r.span for r in moved.ladders["F"].rungs] == [Span(10.5, 12.5), Span(12.5, 14.5)]
    steps = [(s.kind, s.offset, s.rung, s.waits) for s in moved.steps if s.name == "F"]
    assert steps == [
        (StepKind.FAULT_START, 10.5, 1, False),
        (StepKind.FAULT_WIDEN, 12.5, 2, False),
        (StepKind.FAULT_END, 14.5, None, False),
    ]
    assert moved.ladders["F"].slos == ("during-F",)
    assert moved.windows["during-F"] == (Span(10.5, 14.5),)
    assert moved.windows["after-F"] == (Span(14.5, 19.5),)
    assert moved.windows["calm"] == (Span(0.0, 2.0), Span(3.0, 10.5), Span(16.5, 40.0))


def test_plan_says_the_windows_of_a_waiting_fault_move(workdir: Path) -> None:
    path = write(workdir, VALID)
    outcome = harness(workdir, "plan", str(path))
    assert outcome.code == 0, outcome.stderr
    out = outcome.stdout
    assert "by 30s at the latest" in out
    moves = "(at the latest: moves to when fault F starts)"
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") >= 6}
    assert "30s..35s " + moves in rows["during-F"]
    assert "35s..40s " + moves in rows["after-F"]
    assert "0s..2s, 3s..30s, 37s..40s " + moves in rows["calm"]
    assert "moves" not in rows["whole"] and "moves" not in rows["during-P"]


def test_plan_json_says_what_a_fault_waits_for(workdir: Path) -> None:
    path = write(workdir, VALID)
    outcome = harness(workdir, "plan", str(path), "--json")
    assert outcome.code == 0, outcome.stderr
    faults = {f["name"]: f for f in json.loads(outcome.stdout)["faults"]}
    assert faults["F"]["waits_for"] == {
        "steady": ["p99 < 300ms", "rps >= 20"],
        "for_s": 3,
        "after_s": 4.0,
        "deadline_s": 30.0,
    }
    assert (faults["F"]["start_s"], faults["F"]["end_s"]) == (30.0, 35.0)
    assert faults["P"]["waits_for"] is None


def test_duration_scales_after_and_deadline_but_not_for(workdir: Path) -> None:
    path = write(workdir, VALID)
    outcome = harness(workdir, "plan", str(path), "--json", "--duration", "80s")
    assert outcome.code == 0, outcome.stderr
    document = json.loads(outcome.stdout)
    assert document["duration_s"] == 80.0
    faults = {f["name"]: f for f in document["faults"]}
    assert faults["F"]["waits_for"] == {
        "steady": ["p99 < 300ms", "rps >= 20"],
        "for_s": 3,
        "after_s": 8.0,
        "deadline_s": 60.0,
    }
    assert (faults["F"]["start_s"], faults["F"]["end_s"]) == (60.0, 70.0)
    assert faults["P"]["start_s"] == 4.0
    keys = {o["key"]: o["value"] for o in document["overrides"] if o["flag"] == "--duration 80s"}
    assert (keys["faults[0].at.after"], keys["faults[0].at.deadline"]) == (8.0, 60.0)
    assert "faults[0].at.for" not in keys and "faults[0].at" not in keys


def test_duration_that_leaves_no_room_for_the_streak_is_refused(workdir: Path) -> None:
    """'for' is not scaled: a run made so short that after..deadline is shorter than it is exit 2."""
    path = write(workdir, edit("for: 3s", "for: 20s"))
    assert harness(workdir, "validate", str(path)).code == 0
    outcome = harness(workdir, "validate", str(path), "--duration", "20s")
    assert outcome.code == 2, outcome.stdout + outcome.stderr
    assert "Traceback" not in outcome.stderr
    assert "the conditions cannot hold for 20s between after (2s) and deadline (15s)" in outcome.stderr


# ---------------------------------------------------------------- SteadyWatch: judged each second


def start(*conditions: str, seconds: str = "3s", after: str = "0s", deadline: str = "60s") -> SteadyStart:
    return SteadyStart.model_validate(
        {"steady": list(conditions), "for": seconds, "after": after, "deadline": deadline}
    )


def good(second: int) -> ClosedSecond:
    return closed_second(second, 100)  # 100 requests at 100 ms


def slow(second: int) -> ClosedSecond:
    return closed_second(second, 400)


def feed(watch: SteadyWatch, seconds: list[ClosedSecond]) -> list[tuple[int, SteadyHeld]]:
    """Every fault reported, with the index of the second that reported it."""
    return [(i, held) for i, closed in enumerate(seconds) for held in watch.observe(closed)]


STEADY = start("p99 < 300ms", "rps >= 20")


def test_the_fault_is_due_after_for_seconds_in_a_row() -> None:
    watch = SteadyWatch({"F": STEADY}, START)
    # 1000 is the run's partial first second (it started at 1000.6): it does not count.
    reported = feed(watch, [good(s) for s in range(1000, 1010)])
    [(index, held)] = reported
    assert (held.fault, held.second, held.at) == ("F", 1003, 1004.0)
    assert index == 3
    assert held.text.startswith("steady: p99 < 300ms and rps >= 20 for 3s (last second: p99 ")
    assert "rps 100" in held.text
    assert watch.waiting == {}


def test_a_second_that_breaks_a_condition_starts_the_streak_again() -> None:
    watch = SteadyWatch({"F": STEADY}, START)
    seconds = [good(1001), good(1002), slow(1003), good(1004), good(1005), closed_second(1006, 100, n=10), good(1007)]
    seconds += [good(1008), good(1009)]
    [(_, held)] = feed(watch, seconds)
    assert held.second == 1009  # 1003 too slow, 1006 only 10 requests: two breaks
    assert held.at == 1010.0


def test_a_second_without_requests_breaks_the_streak() -> None:
    watch = SteadyWatch({"F": start("p99 < 300ms", seconds="2s")}, START)
    assert feed(watch, [good(1001), closed_second(1002, 100, n=0), good(1003)]) == []
    [(_, held)] = feed(watch, [good(1004)])
    assert held.second == 1004


def test_an_error_rate_condition_needs_requests_too() -> None:
    watch = SteadyWatch({"F": start("error_rate < 1%", seconds="2s")}, START)
    assert feed(watch, [good(1001), closed_second(1002, 100, n=0), good(1003)]) == []
    assert [h.second for _, h in feed(watch, [good(1004)])] == [1004]


def test_seconds_before_after_do_not_count() -> None:
    # after 4s: offset 4 is epoch 1004.6, so 1005 is the first whole second that counts.
    watch = SteadyWatch({"F": start("p99 < 300ms", seconds="2s", after="4s")}, START)
    reported = feed(watch, [good(s) for s in range(1001, 1010)])
    assert [(h.second, h.at) for _, h in reported] == [(1006, 1007.0)]


def test_with_after_0s_the_partial_first_second_still_does_not_count() -> None:
    watch = SteadyWatch({"F": start("p99 < 300ms", seconds="1s")}, START)
    assert watch.observe(good(1000)) == []
    assert [h.second for h in watch.observe(good(1001))] == [1001]


def test_a_revision_is_not_a_second() -> None:
    """A late window's requests for a second already judged neither count nor break a streak."""
    watch = SteadyWatch({"F": STEADY}, START)
    late_slow = ClosedSecond(1002, slow(1002).endpoints, [], late=True, revision=True)
    late_good = ClosedSecond(1003, good(1003).endpoints, [], late=True, revision=True)
    assert feed(watch, [good(1001), good(1002), late_slow, late_good]) == []
    [(_, held)] = feed(watch, [good(1003)])
    assert held.second == 1003


def test_each_fault_is_reported_once_when_its_own_streak_is_long_enough() -> None:
    watch = SteadyWatch({"short": start("p99 < 300ms", seconds="2s"), "long": STEADY}, START)
    reported = feed(watch, [good(s) for s in range(1001, 1020)])
    assert [(h.fault, h.second) for _, h in reported] == [("short", 1002), ("long", 1003)]
    assert watch.observe(good(1020)) == []


def test_a_fault_is_judged_on_its_own_conditions() -> None:
    watch = SteadyWatch({"fast": start("p99 < 300ms", seconds="2s"), "slow-ok": start("p99 < 1s", seconds="2s")}, START)
    reported = feed(watch, [slow(1001), slow(1002), good(1003), good(1004)])
    assert [(h.fault, h.second) for _, h in reported] == [("slow-ok", 1002), ("fast", 1004)]


def test_for_is_whole_seconds_rounded_up() -> None:
    watch = SteadyWatch({"F": start("p99 < 300ms", seconds="1500ms")}, START)
    assert watch.observe(good(1001)) == []
    assert [h.second for h in watch.observe(good(1002))] == [1002]


PROBED = start("probe:ready >= 3", "p99 < 300ms", seconds="2s")


def test_a_probe_condition_holds_on_a_fresh_sample() -> None:
    watch = SteadyWatch({"F": PROBED}, START, stale_after=3.0)
    watch.observe_probe(ProbeSample("ready", 1000.9, 3.0))
    assert watch.observe(good(1001)) == []
    [held] = watch.observe(good(1002))  # the sample, from 1000.9, is 2.1 s old at 1003.0
    assert held.second == 1002
    assert "probe:ready 3" in held.text


def test_a_probe_value_that_breaks_the_condition_breaks_the_streak() -> None:
    watch = SteadyWatch({"F": PROBED}, START)
    watch.observe_probe(ProbeSample("ready", 1001.5, 3.0))
    assert watch.observe(good(1001)) == []
    watch.observe_probe(ProbeSample("ready", 1002.5, 2.0))
    assert watch.observe(good(1002)) == []
    watch.observe_probe(ProbeSample("ready", 1003.5, 3.0))
    assert watch.observe(good(1003)) == []
    assert [h.second for h in watch.observe(good(1004))] == [1004]


def test_a_probe_sample_older_than_stale_after_breaks_the_streak() -> None:
    watch = SteadyWatch({"F": PROBED}, START, stale_after=1.5)
    watch.observe_probe(ProbeSample("ready", 1001.0, 5.0))
    assert watch.observe(good(1001)) == []  # 1 s old when 1001 ends: holds, a streak of 1
    assert watch.observe(good(1002)) == []  # 2 s old when 1002 ends: stale, no value: the streak breaks
    watch.observe_probe(ProbeSample("ready", 1003.2, 5.0))
    assert watch.observe(good(1003)) == []  # fresh again: a streak of 1
    watch.observe_probe(ProbeSample("ready", 1004.1, 5.0))
    assert [h.second for h in watch.observe(good(1004))] == [1004]


def test_a_failed_poll_or_an_empty_answer_is_no_value() -> None:
    watch = SteadyWatch({"F": PROBED}, START)
    watch.observe_probe(ProbeSample("ready", 1001.5, 3.0))
    assert watch.observe(good(1001)) == []
    watch.observe_probe(ProbeSample("ready", 1002.5, error="connection refused"))
    assert watch.observe(good(1002)) == []  # the latest poll failed: the streak breaks
    watch.observe_probe(ProbeSample("ready", 1003.5, math.nan))  # an empty vector
    assert watch.observe(good(1003)) == []
    watch.observe_probe(ProbeSample("ready", 1004.5, 4.0))
    assert watch.observe(good(1004)) == []
    assert [h.second for h in watch.observe(good(1005))] == [1005]


def test_a_probe_never_polled_is_no_value() -> None:
    watch = SteadyWatch({"F": PROBED}, START)
    assert feed(watch, [good(s) for s in range(1001, 1010)]) == []
    assert "F" in watch.waiting


def test_a_sample_of_another_probe_does_not_count() -> None:
    watch = SteadyWatch({"F": PROBED}, START)
    watch.observe_probe(ProbeSample("other", 1001.5, 3.0))
    assert feed(watch, [good(1001), good(1002)]) == []


# ---------------------------------------------------------------- the books, moved with the fault


def in_fault(second: int) -> ClosedSecond:
    """The seconds of the replay: 900 ms while F really was on (offsets 12..17), else 100 ms."""
    return closed_second(second, 900 if 1013 <= second <= 1017 else 100)


def replay(parts: list[Any], plan: Plan, moved: Plan, started: float) -> None:
    """Feed the run's seconds; once the second in which F started has closed, move every part."""
    for second in range(1000, 1041):
        if second + 0.5 - START > started and plan is not moved:
            for part in parts:
                part.retime(moved)
            plan = moved
        for part in parts:
            part.observe(in_fault(second))


def test_the_ledger_counts_the_moved_windows(workdir: Path) -> None:
    plan = load(workdir)
    moved = plan.started_at("F", 12.4)  # seconds 1013..1017 have midpoints 12.9..16.9
    ledger = RunLedger(plan, START)
    replay([ledger], plan, moved, 12.4)
    during = ledger.windows["during:F"]
    assert (during.seconds, during.total().count) == (5, 500)
    assert during.total().latency_ms()["p99"] == pytest.approx(900, rel=0.01)
    after = ledger.windows["after:F"]  # to the end of the run: midpoints 17.9..39.9, 1018..1040
    assert after.seconds == 23
    assert after.total().latency_ms()["max"] == pytest.approx(100, rel=0.01)
    steady = ledger.windows["steady"]  # not P (2..3) nor F and its recovery (12.4..19.4)
    assert steady.seconds == 40 - 1 - 7
    assert steady.total().latency_ms()["max"] == pytest.approx(100, rel=0.01)
    # steady's pieces end at 2, 12.4 (F's start) and 40; P at 3; ramp at 10; during:F at 17.4.
    assert ledger.window_ends() == pytest.approx([2.0, 3.0, 10.0, 12.4, 17.4, 40.0])


def test_without_the_move_the_deadline_window_would_have_judged_other_seconds(workdir: Path) -> None:
    """The control: the same seconds judged by the plan as compiled put calm seconds into during:F."""
    plan = load(workdir)
    ledger = RunLedger(plan, START)
    replay([ledger], plan, plan, math.inf)
    assert ledger.windows["during:F"].total().latency_ms()["max"] == pytest.approx(100, rel=0.01)


def slo_results(book: SloBook) -> dict[str, SloResult]:
    return {r.name: r for r in book.results()}


def test_the_slo_book_judges_the_moved_windows(workdir: Path) -> None:
    plan = load(workdir)
    moved = plan.started_at("F", 12.4)
    book = SloBook(plan, START)
    replay([book], plan, moved, 12.4)
    results = slo_results(book)
    during = results["during-F"]
    assert (during.passed, during.seconds, during.requests) == (False, 5, 500)
    assert during.measured == pytest.approx(900, rel=0.01)
    after = results["after-F"]  # 17.4..22.4: midpoints 17.9..21.9
    assert (after.passed, after.seconds) == (True, 5)
    calm = results["calm"]
    assert (calm.passed, calm.seconds) == (True, 40 - 1 - 7)
    assert results["whole"].passed is False  # the run window takes every second, F's too


def test_a_ladder_book_moves_its_steps(workdir: Path) -> None:
    plan = load(workdir, LADDER)
    moved = plan.started_at("F", 12.4)  # steps 12.4..14.4 and 14.4..16.4: midpoints 12.9, 13.9 | 14.9, 15.9
    book = LadderBook(plan, START)
    replay([book], plan, moved, 12.4)
    first = book.judge("F", 1)
    second = book.judge("F", 2)
    assert (first.start_s, first.end_s, second.start_s, second.end_s) == (12.4, 14.4, 14.4, pytest.approx(16.4))
    assert first.state is second.state is StepState.BROKE
    [slo] = first.slos
    assert (slo.name, slo.seconds, slo.requests) == ("during-F", 2, 200)
    assert slo.measured == pytest.approx(900, rel=0.01)
