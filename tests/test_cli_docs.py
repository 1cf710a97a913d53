"""docs/cli.md against the command line it documents, run as users run it.

The summary.json tables are compared with the keys the typed RunSummary writes (every class
reachable from it, found by walking its type hints), so a field added to or removed from the
model without the document fails here. The `runs --json` and `compare --json` tables are
compared with what those commands print. Every `harness ...` line in the document must parse.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import re
import shutil
import subprocess
import sys
import types
import typing
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from harness.judge.codec import to_json
from harness.judge.summary import RunSummary
from tests.cli_help import check_command
from tests.test_baseline import T0, write_run

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "cli.md"
HARNESS = Path(sys.executable).with_name("harness")


def _cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        env={**os.environ, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


# ---------------------------------------------------------------- the document's tables


def _sections(text: str) -> dict[str, list[list[str]]]:
    """Table rows (cells) under each heading, by the heading's text without #'s and backticks."""
    out: dict[str, list[list[str]]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("#"):
            current = line.lstrip("#").strip().replace("`", "")
            out.setdefault(current, [])
        elif line.startswith("| ") and not line.startswith("| key ") and not line.startswith("|---"):
            out.setdefault(current, []).append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return out


def _documented_keys(rows: list[list[str]], keys_of: dict[str, set[str]]) -> set[str]:
    keys: set[str] = set()
    for row in rows:
        first = row[0]
        every = re.fullmatch(r"every key of `(\w+)`", first)
        if every:
            keys |= keys_of[every.group(1)]
        else:
            keys |= set(re.findall(r"`(\w+)`", first))
    return keys


# ---------------------------------------------------------------- the model's keys


def _without_none(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return next(arg for arg in typing.get_args(tp) if arg is not type(None))
    return tp


def _complete(cls: Any) -> Any:
    """An instance of the dataclass ``cls`` with every optional part present, so that its JSON
    shows every key it can write (a None that is left out, a flag that adds a key)."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        tp = _without_none(hints[f.name])
        origin = typing.get_origin(tp)
        if dataclasses.is_dataclass(tp):
            values[f.name] = _complete(tp)
        elif origin is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            values[f.name] = [_complete(typing.get_args(tp)[0])]  # a key written only when the list has items
        elif origin in (list, dict):
            values[f.name] = origin()
        elif isinstance(tp, type) and issubclass(tp, enum.Enum):
            values[f.name] = next(iter(tp))
        else:
            values[f.name] = {str: "", int: 0, float: 0.0, bool: True}[tp]
    return cls(**values)


def _model_keys() -> dict[str, set[str]]:
    """JSON keys of RunSummary and of every object inside summary.json, by class name."""
    found: dict[str, set[str]] = {}

    def walk(cls: Any) -> None:
        if cls.__name__ in found:
            return
        keys = set(to_json(_complete(cls)))
        found[cls.__name__] = keys
        hints = typing.get_type_hints(cls)
        for key in sorted(keys & set(hints)):
            tp = _without_none(hints[key])
            inner = typing.get_args(tp)[-1] if typing.get_origin(tp) in (list, dict) else tp
            if dataclasses.is_dataclass(inner):
                walk(inner)

    walk(RunSummary)
    return found


def test_the_summary_json_tables_list_exactly_what_the_model_writes() -> None:
    model = _model_keys()
    assert len(model) > 15 and "Stats" in model and "SloResult" in model  # the walk reached the leaves
    sections = _sections(DOC.read_text())
    documented = {name: _documented_keys(sections[name], model) for name in model if name in sections}
    assert sorted(set(model) - set(documented)) == [], "classes in summary.json without a table in docs/cli.md"
    for name, keys in model.items():
        assert documented[name] == keys, (
            f"docs/cli.md's {name}: missing {sorted(keys - documented[name])}, "
            f"not written {sorted(documented[name] - keys)}"
        )
    # ... and the document has no table for a class summary.json no longer holds.
    summary_part = DOC.read_text().split("## `summary.json`", 1)[1]
    tables = set(re.findall(r"^#### `(\w+)`", summary_part, re.MULTILINE))
    assert tables == set(model)


def test_every_harness_command_in_the_document_parses() -> None:
    text = DOC.read_text()
    blocks = re.findall(r"```\n(.*?)```", text, re.DOTALL)
    commands = [
        line.split("#", 1)[0].removeprefix("$ ").split()[1:]
        for block in blocks
        for line in block.splitlines()
        if line.removeprefix("$ ").startswith("harness ")
    ]
    assert len(commands) >= 10
    for args in commands:
        if args[0].startswith("--"):  # `harness --version` and the completion options: the app's own
            assert args[0] in _cli("--help", env={"COLUMNS": "200"}).stdout
            continue
        check_command(args, "docs/cli.md")


# ---------------------------------------------------------------- runs and compare, as JSON


def test_runs_json_prints_the_documented_fields(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_run(runs, "older", started=T0 + 0.3)
    write_run(runs, "newer", verdict="failed", started=T0 + 100.3)
    done = _cli("runs", "--json", env={"HARNESS_RUNS_DIR": str(runs)})
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    sections = _sections(DOC.read_text())
    assert set(document) == _documented_keys(sections["harness runs --json"][:2], {})
    per_run = _documented_keys(sections["harness runs --json"][2:], {})
    assert [run["run_id"] for run in document["runs"]] == ["newer", "older"]
    assert all(set(run) == per_run for run in document["runs"])
    newer = document["runs"][0]
    assert (newer["verdict"], newer["duration_s"], newer["started"]) == ("failed", 20.0, T0 + 100.3)
    assert document["runs_dir"] == str(runs) and newer["directory"] == str(runs / "newer")


def test_compare_json_prints_the_documented_fields(tmp_path: Path) -> None:
    write_run(tmp_path, "a")
    write_run(tmp_path, "slow", latency_ms=70.0)
    done = _cli("compare", "a", "slow", "--json", env={"HARNESS_RUNS_DIR": str(tmp_path)})
    assert done.returncode == 1, done.stdout + done.stderr  # the exit code is the verdict's in JSON mode too
    document = json.loads(done.stdout)
    model = _model_keys()
    assert set(document) == _documented_keys(_sections(DOC.read_text())["harness compare --json"], {})
    assert (document["before"], document["after"], document["passed"]) == ("a", "slow", False)
    assert document["comparisons"] and all(set(c) == model["ComparisonEntry"] for c in document["comparisons"])
    assert any(c["regressed"] and c["metric"] == "p99" for c in document["comparisons"])
    assert "p99 of POST /api/checkout in phase steady" in document["summary_line"]


# ---------------------------------------------------------------- where runs are, from anywhere


def test_runs_are_found_the_same_way_from_any_directory(tmp_path: Path) -> None:
    """No HARNESS_RUNS_DIR: runs live under the data directory, whatever the working directory."""
    env = {k: v for k, v in os.environ.items() if k not in ("HARNESS_RUNS_DIR", "HARNESS_DATA_DIR")}
    env.update({"XDG_DATA_HOME": str(tmp_path / "xdg"), "COLUMNS": "200"})
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()

    def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "harness.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
        )

    empty = cli("runs", cwd=here)
    where = tmp_path / "xdg" / "harness" / "runs"
    assert empty.returncode == 0 and empty.stdout == f"no runs in {where} (the default; HARNESS_RUNS_DIR moves it)\n"
    write_run(where, "a")
    write_run(where, "b", latency_ms=70.0)
    seen = [json.loads(cli("runs", "--json", cwd=cwd).stdout) for cwd in (here, there)]
    assert seen[0] == seen[1] and sorted(r["run_id"] for r in seen[0]["runs"]) == ["a", "b"]
    assert seen[0]["runs_dir"] == str(where)
    assert cli("compare", "a", "b", cwd=there).returncode == 1
    link = cli("grafana", "link", "a", cwd=here)
    assert link.returncode == 0 and "var-run_id=a" in link.stdout, link.stderr
    report = cli("report", "a", "--results-url", "http://127.0.0.1:9", cwd=there)
    assert report.returncode == 0, report.stderr
    assert report.stdout.strip() == str(where / "a" / "report.html")
    # Runs an older harness left in ./runs are pointed at, not silently ignored.
    write_run(here / "runs", "old-style")
    (where / "a").rename(tmp_path / "a-moved")
    (where / "b").rename(tmp_path / "b-moved")
    legacy = cli("runs", cwd=here)
    assert f"HARNESS_RUNS_DIR={here / 'runs'}" in legacy.stdout, legacy.stdout


def test_a_run_id_is_never_cut_off(tmp_path: Path) -> None:
    long_id = "checkout-under-partition-with-a-very-long-team-prefix-20261206-234501-7f3a9c2e1b4d5f60a7"
    write_run(tmp_path, long_id, scenario="checkout under partition")
    write_run(tmp_path, "short", started=T0 + 50)
    for columns in ("60", "132", "250"):
        done = _cli("runs", env={"HARNESS_RUNS_DIR": str(tmp_path), "COLUMNS": columns})
        assert done.returncode == 0, done.stderr
        assert any(long_id in line for line in done.stdout.splitlines()), done.stdout
        assert "…" not in done.stdout


# ---------------------------------------------------------------- version, completion, new


def test_version_is_the_installed_distributions() -> None:
    done = _cli("--version")
    assert done.returncode == 0, done.stderr
    name, version = done.stdout.split()
    assert metadata.version(name) == version
    assert "harness" in metadata.packages_distributions()
    assert name in metadata.packages_distributions()["harness"]


@pytest.mark.skipif(not HARNESS.exists() or shutil.which("bash") is None, reason="needs the harness script and bash")
def test_bash_completion_completes_commands_and_options(tmp_path: Path) -> None:
    """The script `--show-completion bash` prints, sourced in a real bash, completes as a user sees."""
    shown = subprocess.run(
        [str(HARNESS), "--show-completion", "bash"], capture_output=True, text=True, timeout=60, check=True
    )
    script = tmp_path / "complete.bash"
    script.write_text(shown.stdout)
    probe = (
        f"source {script}\n"
        "complete -p harness\n"
        "for line in 'harness ru' 'harness grafana push --res' 'harness gr'; do\n"
        '  read -ra COMP_WORDS <<< "$line"; COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n'
        '  _harness_completion harness; echo "$line => ${COMPREPLY[*]}"\n'
        "done\n"
    )
    env = {**os.environ, "PATH": f"{HARNESS.parent}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert "complete -o default -F _harness_completion harness" in done.stdout
    assert "harness ru => run runs" in done.stdout
    assert "harness grafana push --res => --results-url --results-token-env" in done.stdout
    assert "harness gr => grafana" in done.stdout


def test_new_writes_a_scenario_and_locustfile_that_validate(tmp_path: Path) -> None:
    done = _cli("new", "checkout", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "checkout.yaml").is_file() and (tmp_path / "checkout.py").is_file()
    assert done.stdout.splitlines() == [
        "wrote checkout.yaml",
        "wrote checkout.py",
        "next: harness validate checkout.yaml; harness run checkout.yaml",
    ]
    valid = _cli("validate", "checkout.yaml", cwd=tmp_path)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    assert valid.stdout == "checkout.yaml: valid: 2 stages, 0 faults, 2 SLOs, 0 guards, 60s\n"
    plan = _cli("plan", "checkout.yaml", cwd=tmp_path, env={"COLUMNS": "200"})
    assert plan.returncode == 0 and "target http://127.0.0.1:8700" in plan.stdout, plan.stderr
    # The locustfile is an ordinary one: plain Locust lists its user class.
    listed = subprocess.run(
        [sys.executable, "-m", "locust", "-f", "checkout.py", "--list"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0 and "Visitor" in listed.stdout, listed.stdout + listed.stderr


def test_new_refuses_what_it_should_and_writes_nothing(tmp_path: Path) -> None:
    _cli("new", "shop", cwd=tmp_path)
    before = (tmp_path / "shop.yaml").read_text()
    again = _cli("new", "shop", cwd=tmp_path)
    assert again.returncode == 2 and again.stderr == "error: shop.yaml, shop.py: already exists (--force overwrites)\n"
    assert (tmp_path / "shop.yaml").read_text() == before
    forced = _cli("new", "shop", "--force", "--base-url", "http://127.0.0.1:9000", cwd=tmp_path)
    assert forced.returncode == 0 and '"http://127.0.0.1:9000"' in (tmp_path / "shop.yaml").read_text()
    bad = _cli("new", "no/slashes", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error: NAME 'no/slashes': use letters, digits")
    refused = _cli("new", "ftp", "--base-url", "ftp://example", cwd=tmp_path)
    assert refused.returncode == 2 and "ftp.yaml:7:3: target.base_url:" in refused.stderr, refused.stderr
    assert not (tmp_path / "ftp.yaml").exists() and not (tmp_path / "ftp.py").exists()
    assert "Traceback" not in again.stderr + bad.stderr + refused.stderr


def test_results_token_env_is_one_name_on_run_gate_and_report(tmp_path: Path) -> None:
    """`--results-token-env` names the token's variable alike on every command that reads results;
    an unset one is exit 2 naming the flag, before anything starts."""
    assert _cli("new", "tok", cwd=tmp_path).returncode == 0
    env = {"HARNESS_RUNS_DIR": str(tmp_path / "runs")}
    for command in ("run", "gate"):
        done = _cli(command, "tok.yaml", "--results-token-env", "NO_SUCH_TOKEN_VAR", cwd=tmp_path, env=env)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr == (
            "error: --results-token-env names NO_SUCH_TOKEN_VAR, but that environment variable is not set\n"
        )
        assert not (tmp_path / "runs").exists()  # nothing was started
    for command in (["report", "some-run"], ["grafana", "link", "some-run"]):
        done = _cli(*command, "--results-token-env", "NO_SUCH_TOKEN_VAR", cwd=tmp_path, env=env)
        assert done.returncode == 2 and "--results-token-env names NO_SUCH_TOKEN_VAR" in done.stderr, done.stderr
