"""Acceptance: mistakes in scenario files exit 2 with file, line and key path, and start nothing.

Every case runs the real command line in a subprocess against a scenario written to a
temporary directory, with the state directories pointed into that directory too, so the
test sees exactly what a user at a terminal (or a CI job) sees.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
import yaml

from harness.errors import ScenarioError
from harness.scenario import load_scenario

LOCUSTFILE = """\
from locust import FastHttpUser, task


class Shopper(FastHttpUser):
    @task
    def home(self):
        self.client.get("/")
"""

VALID = """\
name: checkout-under-chaos
description: a valid scenario
target:
  base_url: http://127.0.0.1:8700
  allowed_hosts: [127.0.0.1]
load:
  locustfile: locust.py
  user_classes:
    - class: Shopper
      weight: 1
  stages:
    - name: ramp
      duration: 10s
      users: 5
      spawn_rate: 5
    - name: plateau
      duration: 20s
      users: 10
faults:
  - name: pause-payments
    kind: process.pause
    at: 12s
    duration: 5s
    recovery: 3s
    target:
      pattern: "payments"
slos:
  - name: p99-steady
    objective: "p99 < 250ms"
    window: steady
  - name: errors-during
    objective: "error_rate < 50%"
    window: during:pause-payments
guards:
  - name: meltdown
    condition: "error_rate > 90% for 5s"
results:
  url: http://127.0.0.1:8086
"""


def edit(old: str, new: str, text: str = VALID) -> str:
    """``text`` with ``old`` (which must occur exactly once) replaced by ``new``."""
    assert text.count(old) == 1, f"test bug: {old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


# The same scenario with Kubernetes faults instead of the process pause, and the kube contexts allowed.
KUBE_VALID = edit(
    """    target:
      pattern: "payments"
""",
    """    target:
      namespace: shop
      deployment: payments
  - name: kill-payments-pods
    kind: kubernetes.pod_kill
    at: 20s
    duration: 0s
    target:
      namespace: shop
      selector: "app=payments,tier in (web,api)"
    params:
      mode: percent
      percent: 50
""",
    edit("kind: process.pause", "kind: kubernetes.scale", VALID + "safety:\n  allowed_contexts: [kind-shop]\n"),
)


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based number of the line holding the ``occurrence``-th line that contains ``needle``."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(hits) >= occurrence, f"test bug: {needle!r} not found {occurrence} times"
    return hits[occurrence - 1]


@dataclass(frozen=True)
class Mistake:
    id: str
    content: str | bytes
    line: int
    path: str  # dotted key path as printed; "" for problems of the whole file
    fragment: str


def _mistake(id: str, text: str, needle: str, path: str, fragment: str, occurrence: int = 1) -> Mistake:
    return Mistake(id, text, line_of(text, needle, occurrence), path, fragment)


def _mistakes() -> list[Mistake]:
    cases: list[Mistake] = []

    text = edit("    recovery: 3s\n", "    recovery: 3s\n    recovry: 1s\n")
    cases.append(_mistake("unknown-key", text, "recovry:", "faults[0].recovry", "did you mean 'recovery'?"))

    text = edit("guards:\n", "gaurds:\n")
    cases.append(_mistake("unknown-top-level-key", text, "gaurds:", "gaurds", "did you mean 'guards'?"))

    text = edit("      users: 10\n", '      users: "many"\n')
    cases.append(_mistake("wrong-type", text, '"many"', "load.stages[1].users", "valid integer"))

    text = edit("      duration: 20s\n", "      duration: -5s\n")
    cases.append(_mistake("negative-duration", text, "-5s", "load.stages[1].duration", "must not be negative"))

    text = edit("      duration: 10s\n", "      duration: 0s\n")
    cases.append(_mistake("zero-length-stage", text, "duration: 0s", "load.stages[0].duration", "must be positive"))

    text = edit("    at: 12s\n", "    at: 28s\n")
    cases.append(_mistake("fault-outside-run", text, "at: 28s", "faults[0].at", "ends after the run (30s)"))

    text = edit("kind: process.pause", "kind: network.teleport")
    cases.append(_mistake("unknown-fault-kind", text, "network.teleport", "faults[0].kind", "unknown fault kind"))

    text = edit("locustfile: locust.py", "locustfile: nowhere.py")
    cases.append(_mistake("missing-locustfile", text, "nowhere.py", "load.locustfile", "locustfile not found"))

    text = edit("- class: Shopper", "- class: Shoper")
    cases.append(
        _mistake(
            "unknown-user-class",
            text,
            "Shoper",
            "load.user_classes[0].class",
            "'Shoper' is not defined in locust.py",
        )
    )

    text = edit("    - name: plateau\n", "    - name: plateau\n      at: 5s\n")
    cases.append(_mistake("overlapping-stages", text, "at: 5s", "load.stages[1].at", "stages overlap"))

    text = edit('"p99 < 250ms"', '"p99 < fast"')
    cases.append(_mistake("bad-threshold", text, "p99 < fast", "slos[0].objective", "is not an objective"))

    text = edit('"p99 < 250ms"', '"p99 < 250"')
    cases.append(_mistake("latency-without-unit", text, '"p99 < 250"', "slos[0].objective", "needs a unit"))

    text = edit("description: a valid scenario", 'description: !!python/object/apply:os.system ["echo hi"]')
    cases.append(_mistake("python-tag", text, "!!python", "", "only plain YAML is allowed"))

    text = edit("  url: http://127.0.0.1:8086\n", "  url: http://127.0.0.1:8086\n  token: abc\n")
    cases.append(
        _mistake("token-in-file", text, "token: abc", "results.token", "must not be written in a scenario file")
    )

    cases.append(Mistake("empty-file", "", 1, "", "file is empty"))
    cases.append(Mistake("only-a-list", "- name\n- target\n- load\n", 1, "", "must be a mapping"))

    text = edit("    recovery: 3s\n", "    recovery: 3s\n    at: 13s\n")
    cases.append(_mistake("duplicate-key", text, "at: 13s", "faults[0].at", "duplicate key"))

    text = edit("window: during:pause-payments", "window: during:kill-db")
    cases.append(
        _mistake("window-unknown-fault", text, "during:kill-db", "slos[1].window", "no fault is named 'kill-db'")
    )

    text = edit('"p99 < 250ms"', '"p42 < 250ms"')
    cases.append(_mistake("unknown-metric", text, "p42", "slos[0].objective", "unknown metric 'p42'"))

    text = edit("kind: process.pause", "kind: process.kill")
    text = edit("    recovery: 3s\n", "    recovery: 3s\n    params:\n      signal: SIGBOGUS\n", text)
    cases.append(
        _mistake("unknown-kill-signal", text, "SIGBOGUS", "faults[0].params.signal", "unknown signal 'SIGBOGUS'")
    )

    text = edit("      users: 10\n", "      arrival_rate: 100\n")
    cases.append(
        _mistake(
            "mixed-load-models",
            text,
            "- name: plateau",
            "load.stages[1]",
            "stages mix users and arrival_rate",
        )
    )

    text = edit("base_url: http://127.0.0.1:8700", "base_url: ftp://127.0.0.1:8700")
    cases.append(_mistake("bad-base-url", text, "ftp://", "target.base_url", "is not an http(s) URL"))

    text = edit("base_url: http://127.0.0.1:8700", "base_url: http://shop.example.com")
    cases.append(
        _mistake("host-not-allowed", text, "shop.example.com", "target.base_url", "not in target.allowed_hosts")
    )

    raw = edit("description: a valid scenario", "description: caf\udce9 menu").encode("utf-8", "surrogateescape")
    assert b"caf\xe9" in raw
    cases.append(Mistake("not-utf8", raw, line_of(VALID, "description:"), "", "not UTF-8"))

    text = edit('"app=payments,tier in (web,api)"', '"app=payments,tier in web"', KUBE_VALID)
    cases.append(
        _mistake("bad-label-selector", text, "tier in web", "faults[1].target.selector", "is not a label requirement")
    )

    text = edit("      percent: 50\n", "", KUBE_VALID)
    cases.append(
        _mistake("percent-mode-without-percent", text, "mode: percent", "faults[1].params.mode", "needs params.percent")
    )

    text = edit("      percent: 50\n", "      percent: 150\n", KUBE_VALID)
    cases.append(
        _mistake("percent-over-100", text, "percent: 150", "faults[1].params.percent", "less than or equal to 100")
    )

    text = edit("      mode: percent\n", "      mode: some\n", KUBE_VALID)
    cases.append(_mistake("unknown-pod-kill-mode", text, "mode: some", "faults[1].params.mode", "'fixed'"))

    text = edit("      namespace: shop\n      deployment", "      namespace: Shop_NS\n      deployment", KUBE_VALID)
    cases.append(_mistake("bad-namespace", text, "Shop_NS", "faults[0].target.namespace", "must match the pattern"))

    text = edit("safety:\n  allowed_contexts: [kind-shop]\n", "", KUBE_VALID)
    cases.append(
        _mistake("kube-without-allowed-contexts", text, "kubernetes.scale", "faults[0].kind", "safety.allowed_contexts")
    )

    text = edit("safety:\n  allowed_contexts: [kind-shop]\n", "safety:\n  kubeconfig: /root/.kube/config\n", KUBE_VALID)
    cases.append(
        _mistake(
            "kubeconfig-in-file",
            text,
            "kubeconfig:",
            "safety.kubeconfig",
            "harness reads the kubeconfig named by $KUBECONFIG",
        )
    )

    padding = "# " + "x" * 1_100_000 + "\n"
    cases.append(Mistake("larger-than-1mb", VALID + padding, 1, "", "larger than"))
    memory = edit("kind: process.pause", "kind: stress.memory")
    text = edit(
        '      pattern: "payments"\n', '      pattern: "payments"\n    params: {bytes: 64M, percent: 50}\n', memory
    )
    cases.append(_mistake("memory-bytes-and-percent", text, "percent: 50", "faults[0].params", "exactly one of bytes"))

    text = edit('      pattern: "payments"\n', '      pattern: "payments"\n    params:\n      percent: 150\n', memory)
    cases.append(_mistake("memory-percent-over-100", text, "percent: 150", "faults[0].params.percent", "100"))

    return cases


MISTAKES = _mistakes()

PROBLEM_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<rest>.*)$")


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    seconds: float


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "locust.py").write_text(LOCUSTFILE)
    return tmp_path


def harness(workdir: Path, *args: str) -> Outcome:
    env = {
        **os.environ,
        "HARNESS_DATA_DIR": str(workdir / "data"),
        "HARNESS_RUNS_DIR": str(workdir / "runs"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    began = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - began)


def write_scenario(workdir: Path, content: str | bytes, name: str = "scenario.yaml") -> Path:
    path = workdir / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def problems_for(outcome: Outcome, file: Path) -> list[tuple[int, str]]:
    """(line, 'key.path: message' or 'message') of every problem printed for ``file``."""
    found = []
    for text in outcome.stderr.splitlines():
        match = PROBLEM_LINE.match(text)
        if match and match["file"] == str(file):
            found.append((int(match["line"]), match["rest"]))
    return found


def assert_nothing_started(workdir: Path, outcome: Outcome) -> None:
    runs = workdir / "runs"
    assert not runs.exists() or not any(runs.iterdir()), f"run outputs were created: {list(runs.iterdir())}"
    journal = workdir / "data" / "journal"
    assert not journal.exists() or not [p for p in journal.rglob("*") if p.is_file()], "a fault was journaled"
    assert "Traceback" not in outcome.stdout + outcome.stderr
    assert not outcome.stdout.startswith("run "), "the run banner was printed"
    # A Ray start alone takes about 3 s; failing validation must not get that far.
    assert outcome.seconds < 20, f"took {outcome.seconds:.1f}s"


def assert_problem(outcome: Outcome, file: Path, line: int, path: str, fragment: str) -> None:
    problems = problems_for(outcome, file)
    assert problems, f"no located problem printed; stderr was:\n{outcome.stderr}"
    matching = [
        rest
        for number, rest in problems
        if number == line and fragment in rest and (rest.startswith(f"{path}: ") if path else True)
    ]
    assert matching, f"expected {file}:{line}: {path}: ...{fragment}...; stderr was:\n{outcome.stderr}"


def test_valid_scenario_validates(workdir: Path) -> None:
    path = write_scenario(workdir, VALID)
    outcome = harness(workdir, "validate", str(path))
    assert outcome.code == 0, outcome.stderr
    assert "valid: 2 stages, 1 faults, 2 SLOs, 1 guards, 30s" in outcome.stdout
    assert outcome.stderr == ""
    assert_nothing_started(workdir, outcome)


def test_valid_kubernetes_scenario_validates(workdir: Path) -> None:
    path = write_scenario(workdir, KUBE_VALID)
    outcome = harness(workdir, "validate", str(path))
    assert outcome.code == 0, outcome.stderr
    assert "valid: 2 stages, 2 faults, 2 SLOs, 1 guards, 30s" in outcome.stdout
    assert_nothing_started(workdir, outcome)


def test_there_are_at_least_twelve_distinct_mistakes() -> None:
    assert len({m.id for m in MISTAKES}) == len(MISTAKES) >= 12
    assert len({(m.path, m.fragment) for m in MISTAKES}) == len(MISTAKES)


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.id for m in MISTAKES])
def test_mistake_exits_2_located_and_starts_nothing(workdir: Path, mistake: Mistake) -> None:
    path = write_scenario(workdir, mistake.content)
    outcome = harness(workdir, "run", str(path))
    assert outcome.code == 2, f"exit {outcome.code}\nstdout:\n{outcome.stdout}\nstderr:\n{outcome.stderr}"
    assert f"{path}:{mistake.line}:" in outcome.stderr
    assert_problem(outcome, path, mistake.line, mistake.path, mistake.fragment)
    # Each case makes one mistake, so exactly one problem is reported.
    assert len(problems_for(outcome, path)) == 1, outcome.stderr
    assert "1 problem found; nothing was started." in outcome.stderr
    assert_nothing_started(workdir, outcome)


THREE_MISTAKES = edit(
    '"p99 < 250ms"',
    '"p99 < fast"',
    edit(
        "      users: 10\n",
        '      users: "many"\n',
        edit("    recovery: 3s\n", "    recovery: 3s\n    recovry: 1s\n"),
    ),
)
THREE_EXPECTED = [
    (line_of(THREE_MISTAKES, '"many"'), "load.stages[1].users", "valid integer"),
    (line_of(THREE_MISTAKES, "recovry:"), "faults[0].recovry", "did you mean 'recovery'?"),
    (line_of(THREE_MISTAKES, "p99 < fast"), "slos[0].objective", "is not an objective"),
]


@pytest.mark.parametrize("command", ["run", "validate"])
def test_every_mistake_is_reported_not_only_the_first(workdir: Path, command: str) -> None:
    path = write_scenario(workdir, THREE_MISTAKES)
    outcome = harness(workdir, command, str(path))
    assert outcome.code == 2, outcome.stderr
    for line, key_path, fragment in THREE_EXPECTED:
        assert_problem(outcome, path, line, key_path, fragment)
    assert len(problems_for(outcome, path)) == 3, outcome.stderr
    assert "3 problems found" in outcome.stderr
    assert_nothing_started(workdir, outcome)


def test_validate_and_run_report_the_same_lines(workdir: Path) -> None:
    path = write_scenario(workdir, THREE_MISTAKES)
    via_run = harness(workdir, "run", str(path))
    via_validate = harness(workdir, "validate", str(path))
    assert via_run.code == via_validate.code == 2
    assert problems_for(via_run, path) == problems_for(via_validate, path)
    assert len(problems_for(via_validate, path)) == 3


# Five mistakes of both kinds: two that pydantic finds (an unknown key, a wrong type in the fault
# an SLO window names) and three that only the checks across keys find (a fault ending after the
# run, an SLO name used twice, a window naming a fault the file does not have). The broken fault
# still counts as a fault named pause-payments: its window is no mistake.
FIVE_MISTAKES = edit(
    "    window: during:pause-payments\n",
    '    window: during:pause-payments\n  - name: p99-steady\n    objective: "p99 < 1s"\n    window: during:kill-db\n',
    edit(
        "slos:\n",
        "  - name: late\n    kind: process.pause\n    at: 28s\n    duration: 5s\n"
        "    target:\n      pattern: x\nslos:\n",
        edit("    at: 12s\n", "    at: soon\n", edit("description: a valid", "descripton: a valid")),
    ),
)
FIVE_EXPECTED = [
    f"{line_of(FIVE_MISTAKES, 'descripton:')}:1: descripton: unknown key 'descripton'; did you mean 'description'?",
    f"{line_of(FIVE_MISTAKES, 'at: soon')}:5: faults[0].at: 'soon' is not a duration; "
    "write e.g. 30s, 1m30s, 500ms or 2h",
    f"{line_of(FIVE_MISTAKES, 'at: 28s')}:5: faults[1].at: fault window 28s..33s ends after the run (30s)",
    f"{line_of(FIVE_MISTAKES, '- name: p99-steady', 2)}:5: slos[2].name: SLO name 'p99-steady' is used twice",
    f"{line_of(FIVE_MISTAKES, 'during:kill-db')}:5: slos[2].window: no fault is named 'kill-db' "
    "(there are: pause-payments, late)",
]


def test_five_mistakes_of_both_kinds_are_five_lines_in_one_pass(workdir: Path) -> None:
    """Structural mistakes do not hide the checks across keys: one located line per mistake, in file order."""
    path = write_scenario(workdir, FIVE_MISTAKES)
    outcome = harness(workdir, "validate", str(path))
    assert outcome.code == 2, outcome.stderr
    lines = [line for line in outcome.stderr.splitlines() if PROBLEM_LINE.match(line)]
    assert lines == [f"{path}:{expected}" for expected in FIVE_EXPECTED], outcome.stderr
    assert "5 problems found; nothing was started." in outcome.stderr
    assert_nothing_started(workdir, outcome)

    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert [str(p) for p in caught.value.problems] == [f"{path}:{expected}" for expected in FIVE_EXPECTED]
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    ("old", "new", "needle", "expected"),
    [
        ("\ntarget:\n", "\ntargt:\n", "targt:", "targt: unknown key 'targt'; did you mean 'target'?"),
        (
            "- class: Shopper",
            "- clas: Shopper",
            "clas:",
            "load.user_classes[0].clas: unknown key 'clas'; did you mean 'class'?",
        ),
        (
            "      duration: 20s\n",
            "      duraton: 20s\n",
            "duraton:",
            "load.stages[1].duraton: unknown key 'duraton'; did you mean 'duration'?",
        ),
        ("kind: process.pause", "knd: process.pause", "knd:", "faults[0].knd: unknown key 'knd'; did you mean 'kind'?"),
    ],
    ids=["top-level", "aliased", "in-a-stage", "fault-kind"],
)
def test_a_misspelt_required_key_is_reported_once(
    tmp_path: Path, old: str, new: str, needle: str, expected: str
) -> None:
    """Not also as 'required key is missing' for the key it was meant to be: one mistake, one line."""
    (tmp_path / "locust.py").write_text(LOCUSTFILE)
    text = edit(old, new)
    path = write_scenario(tmp_path, text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    [problem] = caught.value.problems
    assert f"{problem.path}: {problem.message}" == expected
    assert problem.line == line_of(text, needle)


def test_a_missing_fault_kind_lists_the_kinds(tmp_path: Path) -> None:
    (tmp_path / "locust.py").write_text(LOCUSTFILE)
    path = write_scenario(tmp_path, edit("    kind: process.pause\n", ""))
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    [problem] = caught.value.problems
    assert problem.path == "faults[0].kind"
    assert problem.message.startswith("required key is missing; use one of ")
    assert "process.pause" in problem.message


@pytest.mark.parametrize(
    "mistake",
    [m for m in MISTAKES if m.id in {"unknown-key", "overlapping-stages", "not-utf8"}],
    ids=lambda m: m.id,
)
def test_validate_locates_mistakes_too(workdir: Path, mistake: Mistake) -> None:
    path = write_scenario(workdir, mistake.content)
    outcome = harness(workdir, "validate", str(path))
    assert outcome.code == 2, outcome.stderr
    assert_problem(outcome, path, mistake.line, mistake.path, mistake.fragment)
    assert "valid:" not in outcome.stdout
    assert_nothing_started(workdir, outcome)


def test_missing_scenario_file_exits_2(workdir: Path) -> None:
    path = workdir / "no-such.yaml"
    outcome = harness(workdir, "run", str(path))
    assert outcome.code == 2, outcome.stderr
    assert_problem(outcome, path, 1, "", "file not found")
    assert_nothing_started(workdir, outcome)


def test_schema_is_draft_2020_12_and_accepts_the_valid_scenario(workdir: Path) -> None:
    outcome = harness(workdir, "schema")
    assert outcome.code == 0, outcome.stderr
    schema = json.loads(outcome.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for text in (VALID, KUBE_VALID):
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(yaml.safe_load(text))]
        assert errors == []


def test_schema_rejects_unknown_keys(workdir: Path) -> None:
    outcome = harness(workdir, "schema")
    assert outcome.code == 0, outcome.stderr
    schema = json.loads(outcome.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    data = yaml.safe_load(VALID)
    data["gaurds"] = []
    assert any("gaurds" in e.message for e in validator.iter_errors(data))
    assert "source" not in schema["properties"]
