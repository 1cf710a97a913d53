"""docs/ci.md's CI snippets parse, publish JUnit whatever the outcome, and use only real harness options.

Every ```yaml block is loaded with yaml.safe_load. Every `harness ...` command in the snippets
(``run:``/``script:`` lines, ```sh blocks and the synopsis) is checked against the real CLI: its
subcommand answers ``--help`` and each ``--option`` it uses is listed there.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import errors
from tests.cli_help import check_command

DOC = Path(__file__).resolve().parents[1] / "docs" / "ci.md"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
OPERATORS = {";", "&&", "||", "|", "&", "(", ")", ";;"}
KEYWORDS = {"then", "else", "do", "if", "elif", "!", "time", "exec"}


def _blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(DOC.read_text()) if lang == language]


def _yaml_docs() -> list[Any]:
    return [yaml.safe_load(block) for block in _blocks("yaml")]


def _github_workflows() -> list[dict[str, Any]]:
    # PyYAML reads the bare key `on` as the boolean True (YAML 1.1).
    return [doc for doc in _yaml_docs() if isinstance(doc, dict) and "jobs" in doc and ("on" in doc or True in doc)]


def _gitlab_jobs() -> dict[str, dict[str, Any]]:
    jobs: dict[str, dict[str, Any]] = {}
    for doc in _yaml_docs():
        if isinstance(doc, dict) and "jobs" not in doc:
            jobs.update({name: job for name, job in doc.items() if isinstance(job, dict) and "script" in job})
    return jobs


def _scripts() -> list[str]:
    """Every shell script in the snippets: GitHub `run:` steps, GitLab script lists, ```sh blocks."""
    scripts = []
    for workflow in _github_workflows():
        for job in workflow["jobs"].values():
            scripts += [step["run"] for step in job.get("steps", []) if "run" in step]
    for job in _gitlab_jobs().values():
        for key in ("before_script", "script", "after_script"):
            value = job.get(key) or []
            scripts += [value] if isinstance(value, str) else list(value)
    return scripts + _blocks("sh") + _blocks("bash")


def _harness_commands(script: str) -> list[list[str]]:
    """The argument lists of every `harness` (or `.../bin/harness`) invocation in a shell script."""
    commands = []
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
        for i, token in enumerate(tokens):
            if token.rsplit("/", 1)[-1] != "harness":
                continue
            before = tokens[:i]
            # Command position: after an operator or keyword, or after VAR=value assignments only.
            head = before[(max((j for j, t in enumerate(before) if t in OPERATORS | KEYWORDS), default=-1) + 1) :]
            if all(re.match(r"^\w+=", t) for t in head):
                args = []
                for arg in tokens[i + 1 :]:
                    if arg in OPERATORS:
                        break
                    args.append(arg)
                commands.append(args)
    return commands


def _synopses() -> list[list[str]]:
    """Untagged blocks that show a harness command line, e.g. the gate's synopsis."""
    found = []
    for body in _blocks(""):
        text = " ".join(body.split())
        if text.startswith("harness "):
            words = text.split()
            found.append([words[1], *re.findall(r"--[\w-]+", text)])
    return found


def _all_commands() -> list[list[str]]:
    commands = [args for script in _scripts() for args in _harness_commands(script)] + _synopses()
    unique: dict[str, list[str]] = {}
    for args in commands:
        unique.setdefault(" ".join(args), args)
    return list(unique.values())


def test_the_doc_has_yaml_snippets_that_all_parse() -> None:
    blocks = _blocks("yaml")
    assert len(blocks) >= 2
    for block in blocks:
        assert isinstance(yaml.safe_load(block), dict)


def test_the_github_workflow_runs_the_gate_and_publishes_junit_always() -> None:
    [workflow] = _github_workflows()
    assert workflow.get("on", workflow.get(True))
    [job] = workflow["jobs"].values()
    steps = job["steps"]
    assert all(isinstance(step, dict) and ("run" in step or "uses" in step) for step in steps)
    assert any("harness gate" in step.get("run", "") for step in steps)
    reporters = [
        step
        for step in steps
        if str(step.get("uses", "")).startswith(("mikepenz/action-junit-report@", "dorny/test-reporter@"))
    ]
    uploads = [step for step in steps if str(step.get("uses", "")).startswith("actions/upload-artifact@")]
    assert reporters and uploads
    for step in reporters + uploads:
        assert "always()" in str(step.get("if", "")), step
    # The report reads the file the gate writes by default: runs/<run_id>/junit.xml.
    assert reporters[0]["with"]["report_paths"].endswith("/junit.xml")
    assert _permissions_allow_checks(workflow, job)


def _permissions_allow_checks(workflow: dict[str, Any], job: dict[str, Any]) -> bool:
    permissions = job.get("permissions", workflow.get("permissions", {}))
    return isinstance(permissions, dict) and permissions.get("checks") == "write"


def test_the_gitlab_job_runs_the_gate_and_reports_junit_always() -> None:
    gates = {name: job for name, job in _gitlab_jobs().items() if "harness gate" in "\n".join(job["script"])}
    assert gates
    for job in gates.values():
        artifacts = job["artifacts"]
        assert artifacts["when"] == "always"
        junit = artifacts["reports"]["junit"]
        assert str(junit).endswith("junit.xml")
        assert any(str(junit).startswith(path) for path in artifacts["paths"])


def test_the_exit_code_table_covers_every_exit_code() -> None:
    codes = {value for name, value in vars(errors).items() if name.startswith("EXIT_")}
    rows = {int(m.group(1)) for m in re.finditer(r"^\| (\d+) \|", DOC.read_text(), re.MULTILINE)}
    assert rows == codes


def test_the_snippets_use_the_gate_and_baseline() -> None:
    commands = _all_commands()
    assert any(args[:1] == ["gate"] and "--baseline" in args for args in commands)
    assert any(args[:2] == ["demo", "up"] for args in commands)


@pytest.mark.parametrize("args", _all_commands(), ids=lambda args: " ".join(args)[:60])
def test_every_harness_command_in_the_snippets_exists(args: list[str]) -> None:
    check_command(args, "docs/ci.md")
