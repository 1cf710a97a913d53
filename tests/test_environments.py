"""One scenario, every environment: ``${VAR}`` in scenario files, ``-e``, ``--set``, the shortcuts,
and ``validate``/``plan --json`` (docs/environments.md).

What a user sees is checked through the real command line (``python -m harness.cli``) where the
flags matter, and through :func:`read_scenario` where the scenario room's answer is enough.
Nothing here starts Ray, Locust or the demo: the run against the demo is in
tests/test_environments_run.py.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ScenarioError
from harness.scenario import Overrides, read_scenario
from tests.cli_help import check_command

ROOT = Path(__file__).resolve().parents[1]

LOCUSTFILE = """\
from locust import FastHttpUser, task


class Shopper(FastHttpUser):
    @task
    def home(self):
        self.client.get("/")
"""

SCENARIO = """\
name: env-demo
description: "against ${BASE_URL}, costs $$5"
target:
  base_url: ${BASE_URL}
load:
  locustfile: locust.py
  user_classes:
    - class: Shopper
  stages:
    - {name: ramp, duration: 10s, users: 20, spawn_rate: 4}
    - name: plateau
      duration: ${PLATEAU:-20s}
      users: ${USERS:-50}
faults:
  - name: pause-shop
    kind: process.pause
    at: 12s
    duration: 6s
    target: {pattern: "no-such-process"}
slos:
  - name: p99
    objective: "p99 < 250ms"
    window: steady
results:
  url: http://127.0.0.1:8086
  token_env: INFLUX_TOKEN
"""

URL = "http://127.0.0.1:8700"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "locust.py").write_text(LOCUSTFILE)
    return tmp_path


def write(workdir: Path, text: str, name: str = "scenario.yaml") -> Path:
    path = workdir / name
    path.write_text(text)
    return path


def harness(workdir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("BASE_URL", "USERS", "PLATEAU", "INFLUX_TOKEN")}
    environ |= {"HARNESS_DATA_DIR": str(workdir / "data"), "HARNESS_RUNS_DIR": str(workdir / "runs")}
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=workdir,
        env={**environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def problems(path: Path, environ: dict[str, str], overrides: Overrides | None = None) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        read_scenario(path, overrides, environ=environ)
    return [str(p) for p in caught.value.problems]


# ---------------------------------------------------------------- ${VAR} in the file


def test_variables_come_from_the_environment_with_defaults_and_escapes(workdir: Path) -> None:
    path = write(workdir, SCENARIO)
    loaded = read_scenario(path, environ={"BASE_URL": URL, "USERS": "400"})
    scenario = loaded.scenario
    assert scenario.target.base_url == URL
    assert scenario.description == f"against {URL}, costs $5"  # $$ is one $
    assert scenario.load.stages[1].users == 400  # a plain value reads as YAML reads it: a number  # type: ignore[union-attr]
    assert scenario.load.stages[1].duration == 20.0  # the default
    used = {(u.name, u.value, u.origin, u.line, u.column) for u in loaded.variables}
    assert used == {
        ("BASE_URL", URL, "environment", 2, 23),
        ("BASE_URL", URL, "environment", 4, 13),
        ("PLATEAU", "20s", "default", 12, 17),
        ("USERS", "400", "environment", 13, 14),
    }


def test_a_quoted_variable_stays_text_and_empty_takes_the_default(workdir: Path) -> None:
    text = SCENARIO.replace("name: env-demo", 'name: "${NAME}"').replace("${USERS:-50}", "${USERS:-7}")
    path = write(workdir, text)
    loaded = read_scenario(path, environ={"BASE_URL": URL, "NAME": "123", "USERS": ""})
    assert loaded.scenario.name == "123"
    assert loaded.scenario.load.stages[1].users == 7  # ':-' takes the default when the value is empty  # type: ignore[union-attr]


def test_an_unset_variable_is_located_and_reported_with_every_other_problem(workdir: Path) -> None:
    text = SCENARIO.replace("users: 20,", "users: many,")
    path = write(workdir, text)
    found = problems(path, {})
    assert found == [
        f"{path}:2:23: description: variable BASE_URL is not set; set it in the environment or with "
        "-e BASE_URL=VALUE, or give a default: ${BASE_URL:-default}",
        f"{path}:4:13: target.base_url: variable BASE_URL is not set; set it in the environment or with "
        "-e BASE_URL=VALUE, or give a default: ${BASE_URL:-default}",
        f"{path}:10:35: load.stages[0].users: 'many' is not a valid integer (a whole number, e.g. 10)",
    ]


def test_a_long_value_keeps_every_later_line_where_it_was(workdir: Path) -> None:
    """Values are substituted after parsing: a value of many lines adds none to the file."""
    text = SCENARIO.replace('objective: "p99 < 250ms"', 'objective: "p99 < fast"')
    path = write(workdir, text)
    long_url = URL + "/" + "x" * 300 + "\n\n\n"
    found = problems(path, {"BASE_URL": long_url})
    line = text.splitlines().index('    objective: "p99 < fast"') + 1
    assert line == 22
    assert any(p.startswith(f"{path}:{line}:5: slos[0].objective:") for p in found), found


def test_a_value_cannot_add_keys(workdir: Path) -> None:
    """A value is substituted into one scalar: YAML in it stays text, never new keys."""
    path = write(workdir, SCENARIO)
    found = problems(path, {"BASE_URL": URL, "USERS": "{users: 1, spawn_rate: 9}"})
    assert found == [
        f"{path}:13:7: load.stages[1].users: '{{users: 1, spawn_rate: 9}}' is not a valid integer "
        "(a whole number, e.g. 10)"
    ]


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("${BASE_URL", "has no closing '}'"),
        ("${1X}", "is not a variable reference"),
        ("${BASE_URL:?give the shop's URL}", "variable BASE_URL: give the shop's URL"),
    ],
)
def test_bad_references_are_located(workdir: Path, written: str, message: str) -> None:
    path = write(workdir, SCENARIO.replace("  base_url: ${BASE_URL}", f'  base_url: "{written}"'))
    found = problems(path, {})
    # the '$' is the 14th character of line 4: after the opening quote
    assert any(p.startswith(f"{path}:4:14: target.base_url: ") and message in p for p in found), found


# ---------------------------------------------------------------- secrets


def test_a_secret_never_appears_in_plan_json_or_errors(workdir: Path) -> None:
    secret = "s3cr3t-t0k3n-value"
    text = SCENARIO.replace('description: "against ${BASE_URL}, costs $$5"', 'description: "token ${INFLUX_TOKEN}"')
    path = write(workdir, text)
    env = {"BASE_URL": URL, "INFLUX_TOKEN": secret}
    shown = harness(workdir, "plan", str(path), env=env)
    assert shown.returncode == 0, shown.stderr
    assert "INFLUX_TOKEN" in shown.stdout and "***" in shown.stdout
    as_json = harness(workdir, "plan", str(path), "--json", env=env)
    document = json.loads(as_json.stdout)
    assert document["scenario"]["description"] == "token ***"
    assert {"name": "INFLUX_TOKEN", "value": "***", "secret": True} in [
        {k: v[k] for k in ("name", "value", "secret")} for v in document["variables"]
    ]
    broken = write(workdir, text.replace("  base_url: ${BASE_URL}", "  base_url: ftp://${API_KEY}"), "broken.yaml")
    refused = harness(workdir, "validate", str(broken), "--json", env={**env, "API_KEY": "k3y-value"})
    assert refused.returncode == 2
    assert "***" in refused.stdout
    for output in (shown, as_json, refused):
        assert secret not in output.stdout + output.stderr
        assert "k3y-value" not in output.stdout + output.stderr


# ---------------------------------------------------------------- -e, --set and the shortcuts


def test_set_changes_what_plan_json_prints(workdir: Path) -> None:
    path = write(workdir, SCENARIO)
    before = json.loads(harness(workdir, "plan", str(path), "--json", "-e", f"BASE_URL={URL}").stdout)
    after_run = harness(
        workdir, "plan", str(path), "--json", "-e", f"BASE_URL={URL}", "--set", "load.stages[1].users=400"
    )
    assert after_run.returncode == 0, after_run.stderr
    after = json.loads(after_run.stdout)
    assert [s["users"] for s in before["stages"]] == [20, 50]
    assert [s["users"] for s in after["stages"]] == [20, 400]
    assert after["overrides"] == [
        {"flag": "--set load.stages[1].users=400", "key": "load.stages[1].users", "value": 400}
    ]
    assert before["variables"][1] == {
        "name": "BASE_URL",
        "value": URL,
        "secret": False,
        "from": "-e",
        "key": "target.base_url",
        "line": 4,
        "column": 13,
    }


def test_flag_problems_are_located_to_the_flag_with_every_file_problem(workdir: Path) -> None:
    path = write(workdir, SCENARIO.replace('"p99 < 250ms"', '"p99 < fast"'))
    done = harness(
        workdir,
        "validate",
        str(path),
        "-e",
        f"BASE_URL={URL}",
        "-e",
        "USER=3",
        "--set",
        "load.stagez[1].users=400",
        "--set",
        "load.stages[1].users=many",
        "--set",
        "load.stages[7].users=1",
        "--rate",
        "100",
    )
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    for expected in (
        "--set load.stagez[1].users=400: unknown key 'stagez'; did you mean 'stages'?",
        "--set load.stages[1].users=many: 'many' is not a valid integer (a whole number, e.g. 10)",
        "--set load.stages[7].users=1: load.stages has 2 items; [7] is not one of them",
        "-e USER=3: the scenario uses no variable USER; did you mean USERS?",
        "--rate 100: the scenario's stages are of the closed (users) load model; use --users",
        f"{path}:22:5: slos[0].objective: 'p99 < fast' is not an objective; write '<metric> <op> <value>', "
        "e.g. 'p99 < 250ms', 'error_rate < 1%', 'rps >= 100'",
        "6 problems found; nothing was started.",
    ):
        assert expected in lines, done.stderr
    assert "Traceback" not in done.stderr


def test_users_scales_the_stages_and_their_ramps(workdir: Path) -> None:
    path = write(workdir, SCENARIO)
    loaded = read_scenario(path, Overrides(users=500), environ={"BASE_URL": URL})
    stages = loaded.scenario.load.stages
    assert [(s.users, s.spawn_rate) for s in stages] == [(200, 40.0), (500, 100.0)]  # type: ignore[union-attr]


def test_rate_scales_open_model_stages(workdir: Path) -> None:
    text = SCENARIO.replace("users: 20, spawn_rate: 4", "arrival_rate: 10").replace(
        "users: ${USERS:-50}", "arrival_rate: 40"
    )
    path = write(workdir, text)
    loaded = read_scenario(path, Overrides(rate=100), environ={"BASE_URL": URL})
    assert [s.arrival_rate for s in loaded.scenario.load.stages] == [25.0, 100.0]  # type: ignore[union-attr]


def test_duration_scales_stages_and_faults_alike(workdir: Path) -> None:
    path = write(workdir, SCENARIO)
    loaded = read_scenario(path, Overrides(duration="1m"), environ={"BASE_URL": URL})
    scenario = loaded.scenario
    assert [s.duration for s in scenario.load.stages] == [20.0, 40.0]
    assert (scenario.faults[0].at, scenario.faults[0].duration) == (24.0, 12.0)


def test_duration_sets_a_single_stage(workdir: Path) -> None:
    text = SCENARIO.replace("    - {name: ramp, duration: 10s, users: 20, spawn_rate: 4}\n", "")
    text = text.replace("at: 12s", "at: 2s")
    path = write(workdir, text)
    loaded = read_scenario(path, Overrides(duration="90s"), environ={"BASE_URL": URL})
    assert [s.duration for s in loaded.scenario.load.stages] == [90.0]


def test_base_url_shortcut_is_checked_against_allowed_hosts(workdir: Path) -> None:
    text = SCENARIO.replace("  base_url: ${BASE_URL}\n", "  base_url: ${BASE_URL}\n  allowed_hosts: [127.0.0.1]\n")
    path = write(workdir, text)
    found = problems(path, {"BASE_URL": URL}, Overrides(base_url="http://10.1.2.3:80"))
    assert found == [
        "--base-url http://10.1.2.3:80: host '10.1.2.3' is not in target.allowed_hosts",
    ]


# ---------------------------------------------------------------- --json


def _json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.stderr == "", done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def test_validate_json_fields(workdir: Path) -> None:
    path = write(workdir, SCENARIO)
    valid = _json(harness(workdir, "validate", str(path), "--json", env={"BASE_URL": URL}))
    assert set(valid) == {
        "version",
        "file",
        "valid",
        "scenario",
        "duration_s",
        "counts",
        "variables",
        "overrides",
        "problems",
        "warnings",
    }
    assert (valid["version"], valid["valid"], valid["scenario"], valid["duration_s"]) == (1, True, "env-demo", 30.0)
    assert valid["counts"] == {"stages": 2, "faults": 1, "slos": 1, "guards": 0}
    assert valid["problems"] == valid["warnings"] == []

    done = harness(workdir, "validate", str(path), "--json", "--set", "load.stagez=1")
    assert done.returncode == 2
    invalid = _json(done)
    assert set(invalid) == set(valid)
    assert invalid["valid"] is False
    assert {
        "file": None,
        "line": None,
        "column": None,
        "flag": "--set load.stagez=1",
        "key": "load.stagez",
    }.items() <= (invalid["problems"][0].items())
    assert invalid["problems"][1] == {
        "file": str(path),
        "line": 2,
        "column": 23,
        "flag": None,
        "key": "description",
        "message": "variable BASE_URL is not set; set it in the environment or with -e BASE_URL=VALUE, "
        "or give a default: ${BASE_URL:-default}",
    }


def test_plan_json_fields(workdir: Path) -> None:
    path = write(workdir, SCENARIO)
    plan = _json(harness(workdir, "plan", str(path), "--json", env={"BASE_URL": URL}))
    assert set(plan) >= {"version", "file", "valid", "scenario", "duration_s", "variables", "overrides", "stages"}
    assert set(plan) >= {"faults", "steps", "slos", "guards", "placement", "results", "problems"}
    assert plan["stages"][0] == {
        "name": "ramp",
        "start_s": 0.0,
        "end_s": 10.0,
        "users": 20,
        "spawn_rate": 4.0,
        "arrival_rate": None,
        "max_users": None,
    }
    fault = plan["faults"][0]
    assert (fault["name"], fault["kind"], fault["start_s"], fault["end_s"]) == (
        "pause-shop",
        "process.pause",
        12.0,
        18.0,
    )
    assert plan["slos"][0]["covers"] == [{"start_s": 0.0, "end_s": 12.0}, {"start_s": 18.0, "end_s": 30.0}]
    assert plan["results"]["token_env"] == "INFLUX_TOKEN"
    refused = harness(workdir, "plan", str(path), "--json")
    assert refused.returncode == 2
    assert _json(refused)["problems"][0]["message"].startswith("variable BASE_URL is not set")


# ---------------------------------------------------------------- docs/environments.md

DOC = Path(__file__).resolve().parents[1] / "docs" / "environments.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def test_every_command_in_the_doc_parses_against_the_cli() -> None:
    commands = [
        shlex.split(line)
        for lang, body in FENCE.findall(DOC.read_text())
        if lang == "sh"
        for line in body.splitlines()
        if line.startswith("harness ")
    ]
    assert len(commands) >= 4
    for command in commands:
        check_command(command[1:], "docs/environments.md")


def test_the_docs_example_scenario_validates(tmp_path: Path) -> None:
    [example] = [body for lang, body in FENCE.findall(DOC.read_text()) if lang == "yaml"]
    (tmp_path / "locustfiles").mkdir()
    shutil.copy(ROOT / "locustfiles" / "shop.py", tmp_path / "locustfiles" / "shop.py")
    (tmp_path / "scenarios").mkdir()
    path = write(tmp_path / "scenarios", example, "checkout.yaml")
    loaded = read_scenario(path, Overrides(variables=("BASE_URL=https://staging.example.com",)), environ={})
    assert loaded.scenario.load.stages[1].duration == 300.0
    assert loaded.scenario.load.stages[0].users == 50  # type: ignore[union-attr]
    found = problems(path, {})
    assert found == [
        f"{path}:3:13: target.base_url: variable BASE_URL is not set; set it in the environment or with "
        "-e BASE_URL=VALUE, or give a default: ${BASE_URL:-default}"
    ]


def _documented_fields(heading: str) -> set[str]:
    """The field names in the first column of the table under ``heading`` in docs/environments.md."""
    section = DOC.read_text().split(heading, 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([a-z_]+)`", row.split("|")[1])}


def test_the_documented_json_fields_are_the_printed_ones(workdir: Path) -> None:
    path = write(workdir, SCENARIO)
    env = {"BASE_URL": URL}
    valid = _json(harness(workdir, "validate", str(path), "--json", "--users", "5", env=env))
    plan = _json(harness(workdir, "plan", str(path), "--json", "--users", "5", env=env))
    assert _documented_fields("### `harness validate --json`") == set(valid)
    assert _documented_fields("### `harness plan --json`") == set(plan)
    doc = DOC.read_text()
    for item in (*valid["variables"], *valid["overrides"], *plan["stages"], *plan["faults"], *plan["slos"]):
        for key in item:
            assert f"`{key}`" in doc, key
    for key in (*plan["scenario"], *plan["results"], *plan["steps"][0], *plan["placement"][0]):
        assert f"`{key}`" in doc, key
