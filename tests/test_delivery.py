"""Delivery rules (saturation, open-model shortfall, lost generators) and step timing, as pure code.

The orchestrator feeds these from real windows; here they are fed by hand so that every
edge of the rules (exact thresholds, streak length, skipped stage edges, late windows)
is pinned with the reason text a user reads.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import EXIT_ABORTED, EXIT_INVALID
from harness.judge.verdict import Verdict, decide
from harness.measure.delivery import (
    SATURATED_CPU,
    SATURATED_LAG_MS,
    SUSTAINED_SECONDS,
    Condition,
    DeliveryWatch,
    format_clock,
    is_saturated,
)
from harness.measure.steptiming import Applied, StepLog, parse_applied
from harness.measure.windows import ClosedSecond, ProcessHealth
from harness.plan import Plan, compile_plan
from harness.scenario import load_scenario

LOCUSTFILE = """\
from locust import FastHttpUser, task


class U(FastHttpUser):
    @task
    def t(self):
        pass
"""

START = 1000.25  # run start epoch: second s covers offsets [s - START, s + 1 - START)
S0 = 1001  # first whole second of the run: offsets 0.75 .. 1.75


def _plan(tmp_path: Path, stages: str) -> Plan:
    (tmp_path / "locust.py").write_text(LOCUSTFILE)
    path = tmp_path / "scenario.yaml"
    path.write_text(
        "name: delivery\ntarget: {base_url: 'http://127.0.0.1:1'}\n"
        "load:\n  locustfile: locust.py\n  user_classes: [{class: U}]\n  stages:\n" + stages
    )
    return compile_plan(load_scenario(path))


@pytest.fixture
def closed_plan(tmp_path: Path) -> Plan:
    return _plan(tmp_path, "    - {name: main, duration: 60s, users: 10}\n")


@pytest.fixture
def open_plan(tmp_path: Path) -> Plan:
    return _plan(
        tmp_path,
        "    - {name: warm, duration: 10s, arrival_rate: 100, max_users: 50}\n"
        "    - {name: idle, duration: 10s, arrival_rate: 0, max_users: 50}\n"
        "    - {name: hot, duration: 20s, arrival_rate: 1000, max_users: 50}\n",
    )


def health(process: str, cpu: float = 0.3, lag: float = 1.0, started: int = 0, rate: float = 0.0) -> ProcessHealth:
    return ProcessHealth(process, cpu=cpu, lag_ms=lag, users=10, target_rate=rate, started=started)


def second(s: int, *healths: ProcessHealth) -> ClosedSecond:
    return ClosedSecond(s, {}, list(healths))


# ---------------------------------------------------------------- saturation


def test_thresholds_are_strictly_above() -> None:
    assert not is_saturated(health("p", cpu=SATURATED_CPU, lag=SATURATED_LAG_MS))
    assert is_saturated(health("p", cpu=SATURATED_CPU + 0.001))
    assert is_saturated(health("p", lag=SATURATED_LAG_MS + 0.1))


def test_a_starved_process_that_waits_for_a_core_is_saturated(closed_plan: Plan) -> None:
    """60% of a core used and 35% spent runnable but waiting: flat out beside a busy neighbour."""
    starved = ProcessHealth("g0.0", cpu=0.6, lag_ms=20.0, users=10, target_rate=0.0, wait=0.35)
    assert is_saturated(starved)
    assert not is_saturated(ProcessHealth("g0.0", cpu=0.6, lag_ms=20.0, users=10, target_rate=0.0, wait=0.2))
    watch = DeliveryWatch(closed_plan, START)
    for s in range(S0, S0 + 6):
        watch.observe(second(s, starved))
    assert watch.reason() == "generator saturated: process g0.0 CPU 60% + 35% waiting for a core for 6 s (from 00:00)"


def test_a_process_saturated_for_the_sustained_count_makes_the_run_invalid(closed_plan: Plan) -> None:
    watch = DeliveryWatch(closed_plan, START)
    for s in range(S0 + 13, S0 + 13 + 12):
        assert watch.observe(second(s, health("g0.0"), health("g0.1", cpu=0.98)))
    assert watch.observe(second(S0 + 25, health("g0.0"), health("g0.1", cpu=0.5))) is False
    [finding] = watch.findings()
    assert finding.condition is Condition.SATURATED
    assert finding.subject == "g0.1" and finding.seconds == 12
    # second S0+13 starts at offset 13.75: "00:13" on the run clock
    assert watch.reason() == "generator saturated: process g0.1 CPU 98% for 12 s (from 00:13)"
    assert watch.saturated_seconds() == 12


def test_one_second_short_of_the_streak_is_not_enough(closed_plan: Plan) -> None:
    watch = DeliveryWatch(closed_plan, START)
    for s in range(S0, S0 + SUSTAINED_SECONDS - 1):
        watch.observe(second(s, health("g0.0", cpu=1.0)))
    watch.observe(second(S0 + SUSTAINED_SECONDS - 1, health("g0.0", cpu=0.2)))
    for s in range(S0 + SUSTAINED_SECONDS, S0 + 2 * SUSTAINED_SECONDS - 1):
        watch.observe(second(s, health("g0.0", cpu=1.0)))
    assert watch.findings() == []
    assert watch.reason() == ""
    assert watch.saturated_seconds() == 2 * (SUSTAINED_SECONDS - 1)


def test_a_missing_window_breaks_the_streak(closed_plan: Plan) -> None:
    watch = DeliveryWatch(closed_plan, START)
    for s in [S0, S0 + 1, S0 + 2, S0 + 4, S0 + 5, S0 + 6]:  # S0+3 never reported
        watch.observe(second(s, health("g0.0", cpu=1.0)))
    assert watch.findings() == []


def test_lag_alone_saturates_and_is_named_with_its_peak(closed_plan: Plan) -> None:
    watch = DeliveryWatch(closed_plan, START)
    for i, lag in enumerate([150, 420, 130, 101, 200]):
        watch.observe(second(S0 + 60 + i, health("g1.0", cpu=0.4, lag=lag)))
    # offset 61.75 s
    assert watch.reason() == "generator saturated: process g1.0 event-loop lag up to 420 ms for 5 s (from 01:00)"


def test_both_figures_and_the_worst_process_first(closed_plan: Plan) -> None:
    watch = DeliveryWatch(closed_plan, START)
    for i in range(8):
        watch.observe(second(S0 + i, health("g0.0", cpu=0.95, lag=300), health("g0.1", cpu=0.99 if i < 6 else 0.1)))
    findings = watch.findings()
    assert [(f.subject, f.seconds) for f in findings] == [("g0.0", 8), ("g0.1", 6)]
    assert watch.reason() == (
        "generator saturated: process g0.0 CPU 95%, event-loop lag up to 300 ms for 8 s (from 00:00)"
    )


def test_late_windows_count_for_saturation(closed_plan: Plan) -> None:
    """A saturated process reports late; its windows still count once they arrive."""
    watch = DeliveryWatch(closed_plan, START)
    for s in range(S0, S0 + 6):
        watch.observe(second(s, health("g0.0")))  # closed without g0.1
    for s in range(S0, S0 + 6):
        watch.observe_health(s, health("g0.1", cpu=0.97))
    assert watch.reason() == "generator saturated: process g0.1 CPU 97% for 6 s (from 00:00)"


# ---------------------------------------------------------------- open model shortfall


def test_only_whole_inner_seconds_of_rate_stages_are_judged(open_plan: Plan) -> None:
    watch = DeliveryWatch(open_plan, START)
    # warm: offsets 0..10; judged seconds lie within [1, 9]
    assert watch.target_rate(S0 - 1) is None  # offsets -0.25 .. 0.75
    assert watch.target_rate(S0) is None  # 0.75 .. 1.75 starts before 1
    assert watch.target_rate(S0 + 1) == 100  # 1.75 .. 2.75
    assert watch.target_rate(S0 + 7) == 100  # 7.75 .. 8.75
    assert watch.target_rate(S0 + 8) is None  # 8.75 .. 9.75 ends after 9
    # idle (rate 0) is never judged
    assert all(watch.target_rate(S0 + i) is None for i in range(9, 21))
    # hot: offsets 20..40, judged within [21, 39]
    assert watch.target_rate(S0 + 20) is None  # 20.75 .. 21.75 starts before 21
    assert watch.target_rate(S0 + 21) == 1000  # 21.75 .. 22.75
    assert watch.target_rate(S0 + 37) == 1000  # 37.75 .. 38.75
    assert watch.target_rate(S0 + 38) is None


def test_closed_model_is_never_short(closed_plan: Plan) -> None:
    watch = DeliveryWatch(closed_plan, START)
    for s in range(S0, S0 + 30):
        watch.observe(second(s, health("g0.0", started=0)))
    assert watch.short_seconds() == 0 and watch.findings() == []


def test_started_below_ninety_percent_for_the_streak_is_short(open_plan: Plan) -> None:
    watch = DeliveryWatch(open_plan, START)
    for i in range(0, 40):
        s = S0 + i
        target = watch.target_rate(s) or 0
        # hot stage: two processes start 380 each = 76%; warm stage: exactly 90% is enough
        each = 380 if target == 1000 else int(target * 0.45)
        watch.observe(second(s, health("g0.0", started=each), health("g0.1", started=each)))
    [finding] = watch.findings()
    assert finding.condition is Condition.SHORT
    assert finding.seconds == 17  # S0+21 .. S0+37
    assert watch.reason() == "arrival rate not delivered: 760/s started of 1000/s asked (76%) for 17 s (from 00:21)"
    assert watch.short_seconds() == 17
    assert watch.is_short(S0 + 25) and not watch.is_short(S0 + 3)


def test_a_short_spell_below_the_streak_is_tolerated(open_plan: Plan) -> None:
    watch = DeliveryWatch(open_plan, START)
    for i in range(20, 40):
        started = 500 if i in (22, 23, 24, 25) else 1000  # four short seconds, then enough
        watch.observe(second(S0 + i, health("g0.0", started=started)))
    assert watch.findings() == []
    assert watch.short_seconds() == 4


def test_a_second_nobody_reported_counts_as_nothing_started(open_plan: Plan) -> None:
    watch = DeliveryWatch(open_plan, START)
    watch.observe(second(S0 + 20, health("g0.0", started=1000)))
    watch.observe(second(S0 + 30, health("g0.0", started=1000)))
    # nine seconds in between without any window: nothing is known to have been started
    [finding] = watch.findings()
    assert finding.condition is Condition.SHORT and finding.seconds == 9


def test_late_windows_add_their_started_iterations(open_plan: Plan) -> None:
    watch = DeliveryWatch(open_plan, START)
    for s in range(S0 + 20, S0 + 30):
        watch.observe(second(s, health("g0.0", started=500)))
        watch.observe_health(s, health("g0.1", started=500))
    assert watch.findings() == []


# ---------------------------------------------------------------- losses and the verdict


def test_losses_come_first_and_each_condition_is_named_once(open_plan: Plan) -> None:
    watch = DeliveryWatch(open_plan, START)
    for s in range(S0 + 20, S0 + 30):
        watch.observe(second(s, health("g0.0", cpu=0.99, started=400), health("g0.1", cpu=0.99, started=100)))
    watch.lost("g1", START + 12.4, "its actor died (ActorDiedError)")
    reason = watch.reason()
    parts = reason.split("; ")
    assert parts[0] == "load not delivered: generator g1 lost at 00:12 (its actor died (ActorDiedError))"
    assert parts[1] == "generator saturated: process g0.0 CPU 99% for 10 s (from 00:20)"
    assert parts[2].startswith("arrival rate not delivered: 500/s started of 1000/s asked (50%) for 9 s (from 00:21)")
    assert len(parts) == 3
    assert [f.condition for f in watch.findings()] == [
        Condition.LOST,
        Condition.SATURATED,
        Condition.SATURATED,
        Condition.SHORT,
    ]


def test_a_dead_process_is_named(closed_plan: Plan) -> None:
    watch = DeliveryWatch(closed_plan, START)
    watch.died("g0.1", START + 75)
    assert watch.reason() == "load not delivered: load process g0.1 died at 01:15"


def test_verdict_invalid_unless_something_worse() -> None:
    reason = "generator saturated: process g0.1 CPU 98% for 12 s (from 00:14)"
    verdict, text = decide([], invalid=reason)
    assert (verdict, text, verdict.exit_code) == (Verdict.INVALID, reason, EXIT_INVALID)
    verdict, _ = decide([], invalid=reason, aborted="guard meltdown tripped")
    assert verdict is Verdict.ABORTED and verdict.exit_code == EXIT_ABORTED
    assert decide([], invalid=reason, error="LoadError: x")[0] is Verdict.ERROR
    assert decide([], invalid=reason, interrupted=True)[0] is Verdict.INTERRUPTED


def test_clock_format() -> None:
    assert format_clock(-0.3) == "00:00"
    assert format_clock(14.9) == "00:14"
    assert format_clock(754) == "12:34"
    assert format_clock(3723) == "1:02:03"


# ---------------------------------------------------------------- step timing


def test_applied_lines_are_parsed_and_others_ignored() -> None:
    assert parse_applied('{"t":"applied","p":"g0.1","cmd":"set_rate","at":1700000000.5}') == Applied(
        "g0.1", "set_rate", 1700000000.5
    )
    assert parse_applied('{"t":"window","p":"g0.1","s":1}') is None
    assert parse_applied('{"t":"applied","p":"g0.1"}') is None
    assert parse_applied("not json") is None


def test_a_stage_is_done_when_its_last_process_applied_it() -> None:
    log = StepLog(START)
    stage = log.executed("load", "ramp", 4.0, START + 4.002)
    log.expect(stage, ["g0.0", "g0.1"])
    assert log.applied(Applied("g0.1", "set_users", START + 4.010)) is None
    assert not stage.complete and stage.late_ms == pytest.approx(10.0)  # the latest so far
    assert log.applied(Applied("g0.0", "set_users", START + 4.031)) is stage
    assert stage.complete and stage.late_ms == pytest.approx(31.0)
    row = stage.to_dict()
    assert row["planned_s"] == 4.0 and row["executed_s"] == 4.002 and row["done_s"] == 4.031
    assert row["acknowledged"] == 2 and row["unacknowledged"] == []


def test_acknowledgements_match_commands_in_order_per_process() -> None:
    log = StepLog(START)
    first = log.executed("load", "a", 1.0, START + 1.0)
    log.expect(first, ["p"])
    second_ = log.executed("load", "b", 1.0, START + 1.001)  # a zero-length stage: same offset
    log.expect(second_, ["p"])
    assert log.applied(Applied("p", "set_users", START + 1.05)) is first
    assert log.applied(Applied("p", "set_users", START + 1.06)) is second_
    assert log.applied(Applied("p", "set_users", START + 9.0)) is None  # nothing left to match
    assert (first.done_s, second_.done_s) == (pytest.approx(1.05), pytest.approx(1.06))


def test_forgetting_a_lost_process_completes_the_step_with_what_arrived() -> None:
    log = StepLog(START)
    stage = log.executed("load", "s", 10.0, START + 10.0)
    log.expect(stage, ["g0.0", "g1.0"])
    log.applied(Applied("g0.0", "set_rate", START + 10.02))
    assert log.pending() == [stage]
    assert log.forget(["g1.0"]) == [stage]
    assert stage.complete and stage.acknowledged == 1 and log.pending() == []


def test_worst_lateness_over_chosen_kinds() -> None:
    log = StepLog(START)
    log.executed("phase start", "a", 0.0, START + 0.4)
    fault = log.executed("fault start", "f", 5.0, START + 5.001)
    log.done(fault, START + 5.080)
    stage = log.executed("load", "s", 5.0, START + 5.0005)
    assert stage.late_ms == pytest.approx(0.5)  # nothing acknowledged: the driver's time counts
    assert log.max_late_ms(("load", "fault start", "fault end")) == 80.0
    assert log.max_late_ms() == 400.0
    assert StepLog(START).max_late_ms() == 0.0
