"""The small grammars users write inside scenario files: durations, objectives, guards, windows."""

from __future__ import annotations

import math

import pytest

from harness.scenario.expressions import (
    WindowKind,
    WindowRef,
    format_duration,
    parse_condition,
    parse_duration,
    parse_objective,
    parse_window,
)

# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (90, 90.0),
        (1.5, 1.5),
        ("90", 90.0),
        ("90s", 90.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("2h", 7200.0),
        ("1h2m3s", 3723.0),
        ("250us", 0.00025),
        ("0", 0.0),
        ("0s", 0.0),
        (" 1m 30s ", 90.0),
        ("1.5s", 1.5),
    ],
)
def test_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("-5s", "must not be negative"),
        ("-5", "must not be negative"),
        (-1, "must not be negative"),
        ("abc", "'abc' is not a duration"),
        ("5x", "'5x' is not a duration"),
        ("1m30", "'1m30' is not a duration"),
        ("", "is not a duration"),
        ("8d", "longer than 7 days"),
        ("3w", "is not a duration"),
        (True, "expected a duration"),
        (None, "expected a duration"),
        ([30], "expected a duration"),
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        ("700000", "longer than 7 days"),
    ],
)
def test_duration_errors(text: object, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert fragment in str(caught.value)


def test_duration_error_suggests_valid_forms() -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration("5x")
    for example in ("30s", "1m30s", "500ms"):
        assert example in str(caught.value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(90, "1m30s"), (60, "1m"), (5, "5s"), (0.25, "250ms"), (0, "0s"), (150, "2m30s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("text", ["1m30s", "500ms", "45s", "10m"])
def test_format_duration_round_trips(text: str) -> None:
    assert parse_duration(format_duration(parse_duration(text))) == pytest.approx(parse_duration(text))


# ---------------------------------------------------------------- objectives


@pytest.mark.parametrize(
    ("text", "metric", "op", "value"),
    [
        ("p99 < 250ms", "p99", "<", 250.0),
        ("p99.9 <= 1s", "p999", "<=", 1000.0),
        ("p999 <= 1s", "p999", "<=", 1000.0),
        ("p50 < 500us", "p50", "<", 0.5),
        ("median < 10ms", "p50", "<", 10.0),
        ("avg < 5ms", "mean", "<", 5.0),
        ("max < 2s", "max", "<", 2000.0),
        ("P99 < 250MS", "p99", "<", 250.0),
        ("p95<40ms", "p95", "<", 40.0),
        ("error_rate < 1%", "error_rate", "<", 0.01),
        ("error_rate < 0.05", "error_rate", "<", 0.05),
        ("error_rate <= 0%", "error_rate", "<=", 0.0),
        ("rps >= 100", "rps", ">=", 100.0),
        ("rps >= 100/s", "rps", ">=", 100.0),
        ("rps > 2.5", "rps", ">", 2.5),
    ],
)
def test_objective(text: str, metric: str, op: str, value: float) -> None:
    objective = parse_objective(text)
    assert (objective.metric, objective.op) == (metric, op)
    assert objective.value == pytest.approx(value)
    assert objective.text == text.strip()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("p99 < fast", "is not an objective"),
        ("p99 = 5ms", "is not an objective"),
        ("p99", "is not an objective"),
        ("p99 < 250", "needs a unit"),
        ("p99 < 250 parsecs", "needs a unit: ms, s or us"),
        ("p42 < 1ms", "unknown metric 'p42'"),
        ("latency < 1ms", "unknown metric 'latency'"),
        ("error_rate < 150%", "between 0% and 100%"),
        ("error_rate < 5ms", "percentage or a fraction"),
        ("rps >= 100ms", "rps threshold"),
        ("p99 < -5ms", "must not be negative"),
        (5, "expected an objective"),
        (None, "expected an objective"),
    ],
)
def test_objective_errors(text: object, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_objective(text)
    assert fragment in str(caught.value)


def test_objective_error_for_unknown_metric_lists_the_known_ones() -> None:
    with pytest.raises(ValueError) as caught:
        parse_objective("p42 < 1ms")
    for metric in ("p50", "p99", "p999", "max", "error_rate", "rps"):
        assert metric in str(caught.value)


@pytest.mark.parametrize(
    ("text", "measured", "holds"),
    [
        ("p99 < 250ms", 249.9, True),
        ("p99 < 250ms", 250.0, False),
        ("p99 <= 250ms", 250.0, True),
        ("rps >= 100", 100.0, True),
        ("rps >= 100", 99.9, False),
        ("error_rate > 50%", 0.5, False),
        ("error_rate > 50%", 0.51, True),
        ("p99 < 250ms", math.nan, False),
        ("rps >= 0", math.nan, False),
    ],
)
def test_objective_holds(text: str, measured: float, holds: bool) -> None:
    assert parse_objective(text).holds(measured) is holds


@pytest.mark.parametrize(
    ("text", "value", "shown"),
    [
        ("p99 < 250ms", 12.34, "12.3ms"),
        ("p99 < 250ms", 12_500.0, "12.50s"),
        ("error_rate < 1%", 0.0125, "1.25%"),
        ("rps >= 100", 99.5, "99.5/s"),
        ("p99 < 250ms", math.nan, "n/a"),
    ],
)
def test_objective_formats_values_in_user_units(text: str, value: float, shown: str) -> None:
    assert parse_objective(text).format_value(value) == shown


# ---------------------------------------------------------------- guard conditions


def test_condition() -> None:
    condition = parse_condition("error_rate > 50% for 5s")
    assert condition.breach.metric == "error_rate"
    assert condition.breach.op == ">"
    assert condition.breach.value == pytest.approx(0.5)
    assert condition.for_seconds == 5
    assert condition.text == "error_rate > 50% for 5s"


@pytest.mark.parametrize(
    ("text", "metric", "value", "seconds"),
    [
        ("p99 > 5s for 10s", "p99", 5000.0, 10),
        ("p99 > 5s for 1m", "p99", 5000.0, 60),
        ("error_rate > 50%", "error_rate", 0.5, 1),
        ("rps < 10 for 1.5s", "rps", 10.0, 2),  # rounded up to whole seconds
    ],
)
def test_condition_forms(text: str, metric: str, value: float, seconds: int) -> None:
    condition = parse_condition(text)
    assert condition.breach.metric == metric
    assert condition.breach.value == pytest.approx(value)
    assert condition.for_seconds == seconds


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("p99 > 1s for 0s", "at least 1s"),
        ("p99 > 1s for abc", "'abc' is not a duration"),
        ("p99 > 1s for -2s", "must not be negative"),
        ("p99 > fast for 5s", "is not an objective"),
        ("p99 > 5 for 5s", "needs a unit"),
        (None, "expected a condition"),
    ],
)
def test_condition_errors(text: object, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_condition(text)
    assert fragment in str(caught.value)


# ---------------------------------------------------------------- SLO windows


@pytest.mark.parametrize(
    ("text", "expected", "shown"),
    [
        ("run", WindowRef(WindowKind.RUN), "run"),
        (" run ", WindowRef(WindowKind.RUN), "run"),
        ("steady", WindowRef(WindowKind.STEADY), "steady"),
        ("phase:ramp", WindowRef(WindowKind.PHASE, "ramp"), "phase:ramp"),
        ("during:kill-db", WindowRef(WindowKind.DURING, "kill-db"), "during:kill-db"),
        ("after:kill-db", WindowRef(WindowKind.AFTER, "kill-db"), "after:kill-db"),
        ("after:kill-db:30s", WindowRef(WindowKind.AFTER, "kill-db", 30.0), "after:kill-db:30s"),
        ("after:kill-db:1m30s", WindowRef(WindowKind.AFTER, "kill-db", 90.0), "after:kill-db:1m30s"),
        ("last:30s", WindowRef(WindowKind.LAST, seconds=30.0), "last:30s"),
        ("last:2m", WindowRef(WindowKind.LAST, seconds=120.0), "last:2m"),
    ],
)
def test_window(text: str, expected: WindowRef, shown: str) -> None:
    window = parse_window(text)
    assert window == expected
    assert str(window) == shown
    assert parse_window(str(window)) == window


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "expected a window"),
        ("   ", "expected a window"),
        (None, "expected a window"),
        (30, "expected a window"),
        ("runs", "unknown window 'runs'"),
        ("bogus:x", "unknown window"),
        ("run:x", "'run' takes no argument"),
        ("steady:x", "'steady' takes no argument"),
        ("phase", "needs a name"),
        ("phase:", "needs a name"),
        ("during:", "needs a name"),
        ("after:", "needs a name"),
        ("last:0s", "positive duration"),
        ("last:-5s", "must not be negative"),
        ("last:abc", "'abc' is not a duration"),
        ("after:kill:abc", "'abc' is not a duration"),
    ],
)
def test_window_errors(text: object, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_window(text)
    assert fragment in str(caught.value)


def test_unknown_window_error_lists_the_forms() -> None:
    with pytest.raises(ValueError) as caught:
        parse_window("fault:x")
    for form in ("run", "steady", "phase:NAME", "during:FAULT", "after:FAULT", "last:30s"):
        assert form in str(caught.value)
