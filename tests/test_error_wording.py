"""Errors a newcomer meets are said in the scenario's words: never pydantic's or PyYAML's.

A set of broken files (YAML that does not parse, and YAML that parses into a wrong scenario)
is fed to ``load_scenario``; no message may carry a phrase of either library, and the ones a
newcomer meets first say what to write: a tab, a misspelt key (once), a misspelt fault kind,
SLO window or fault name, and an ``error_rate`` threshold without ``%``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ScenarioError
from harness.scenario import load_scenario
from tests.test_scenario_errors import LOCUSTFILE, VALID, edit

#: Phrases of pydantic's and PyYAML's own wording.
FOREIGN = (
    "Input should be",
    "validation error",
    "found character",
    "mapping values are not allowed",
    "type=",
    "Field required",
    "Extra inputs are not permitted",
    "String should",
    "List should",
    "Value error,",
    "could not determine a constructor",
    "while scanning",
    "while parsing",
    "expected <block end>",
    "<block mapping start>",
    "errors.pydantic.dev",
    "For further information",
    "pydantic",
    "PyYAML",
    "unable to parse string",
    "instance of",
    "union_tag",
)

BROKEN_YAML = {
    "tab": VALID.replace("  base_url:", "\tbase_url:"),
    "unquoted-colon": VALID.replace("description: a valid scenario", "description: note: a valid scenario"),
    "unclosed-quote": VALID.replace("url: http://127.0.0.1:8086", 'url: "http://127.0.0.1:8086'),
    "unclosed-bracket": VALID.replace("allowed_hosts: [127.0.0.1]", "allowed_hosts: [127.0.0.1"),
    "bad-indent": VALID.replace("  allowed_hosts: [127.0.0.1]", "   allowed_hosts: [127.0.0.1]"),
    "dedented-item": VALID.replace("    - name: plateau", "   - name: plateau"),
    "at-sign": VALID.replace("description: a valid scenario", "description: @here"),
    "undefined-alias": VALID.replace("description: a valid scenario", "description: *nope"),
    "bad-escape": VALID.replace("description: a valid scenario", 'description: "C:\\qx"'),
    "custom-tag": VALID.replace("description: a valid scenario", "description: !custom x"),
    "two-documents": VALID + "---\nname: again\n",
    "duplicate-anchor": VALID.replace("description: a valid scenario", "description: &a x\nx1: &a y"),
}

BROKEN_SCENARIO = {
    "wrong-int": edit("      users: 10\n", '      users: "many"\n'),
    "fractional-int": edit("      users: 10\n", "      users: 10.5\n"),
    "wrong-float": edit("      spawn_rate: 5\n", "      spawn_rate: fast\n"),
    "bool-as-text": edit("description: a valid scenario", "description: [a, list]"),
    "target-not-mapping": edit("  base_url: http://127.0.0.1:8700\n  allowed_hosts: [127.0.0.1]\n", "  5\n").replace(
        "target:\n  5", "target: 5"
    ),
    "stages-not-list": edit(
        "    - name: ramp\n      duration: 10s\n      users: 5\n      spawn_rate: 5\n"
        "    - name: plateau\n      duration: 20s\n      users: 10\n",
        "    ramp\n",
    ),
    "empty-stages": edit(
        "    - name: ramp\n      duration: 10s\n      users: 5\n      spawn_rate: 5\n"
        "    - name: plateau\n      duration: 20s\n      users: 10\n",
        "    []\n",
    ).replace("stages:\n    []", "stages: []"),
    "too-many-users": edit("      users: 10\n", "      users: 99999999\n"),
    "negative-spawn": edit("      spawn_rate: 5\n", "      spawn_rate: -1\n"),
    "bad-name": edit("name: checkout-under-chaos", "name: '-bad name'"),
    "missing-load": VALID.split("load:")[0] + "faults:" + VALID.split("faults:")[1],
    "misspelt-arrival-rate": edit("      users: 10\n", "      arival_rate: 10\n"),
    "misspelt-fault-kind": edit("kind: process.pause", "kind: process.paus"),
    "window-kind": edit("window: during:pause-payments", "window: durng:pause-payments"),
    "fault-name": edit("window: during:pause-payments", "window: during:pause-payment"),
    "error-rate-one": edit('"error_rate < 50%"', '"error_rate < 1"'),
    "api-literal": VALID + "  api: v3\n",
}


def _messages(tmp_path: Path, text: str) -> list[str]:
    (tmp_path / "locust.py").write_text(LOCUSTFILE)
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize(
    "text", list({**BROKEN_YAML, **BROKEN_SCENARIO}.values()), ids=[*BROKEN_YAML, *BROKEN_SCENARIO]
)
def test_no_library_wording_reaches_the_user(tmp_path: Path, text: str) -> None:
    messages = _messages(tmp_path, text)
    assert messages
    for message in messages:
        assert not [phrase for phrase in FOREIGN if phrase.lower() in message.lower()], message


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("tab", "4:1: a tab character: YAML indents with spaces only; replace the tab with spaces"),
        ("unquoted-colon", "2:18: unexpected ':' here: quote a value that contains ': '"),
        ("unclosed-quote", "a quoted value is not closed: the closing quote is missing"),
        ("at-sign", "2:14: a value cannot start with '@'; put the value in quotes"),
        ("undefined-alias", "*nope refers to no anchor &nope written before it"),
        ("custom-tag", "the tag !custom is not allowed: only plain YAML is allowed"),
    ],
)
def test_yaml_mistakes_are_said_plainly(tmp_path: Path, name: str, expected: str) -> None:
    [message] = _messages(tmp_path, BROKEN_YAML[name])
    assert expected in message, message


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "misspelt-arrival-rate",
            "load.stages[1].arival_rate: unknown key 'arival_rate'; did you mean 'arrival_rate'?",
        ),
        ("misspelt-fault-kind", "faults[0].kind: unknown fault kind; did you mean 'process.pause'?"),
        ("window-kind", "slos[1].window: unknown window 'durng:pause-payments'; did you mean 'during:pause-payments'?"),
        ("fault-name", "slos[1].window: no fault is named 'pause-payment'; did you mean 'pause-payments'?"),
        (
            "error-rate-one",
            "slos[1].objective: 'error_rate < 1' is ambiguous: write the threshold as a percentage (1%) "
            "or as a fraction below 1 (0.01)",
        ),
        ("wrong-int", "load.stages[1].users: 'many' is not a valid integer (a whole number, e.g. 10)"),
        ("too-many-users", "load.stages[1].users: 99999999 is too large: it must be less than or equal to 1000000"),
        ("api-literal", "results.api: 'v3' is not one of 'v1', 'v2'"),
        ("target-not-mapping", "target: expected a mapping of keys (key: value lines), not 5"),
    ],
)
def test_a_newcomers_mistake_is_one_plain_message(tmp_path: Path, name: str, expected: str) -> None:
    [message] = _messages(tmp_path, BROKEN_SCENARIO[name])
    assert expected in message, message
