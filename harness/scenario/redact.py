"""Secrets a scenario's variables carry, and keeping them out of every output.

A variable's value is a secret when any of these holds:

* the variable is named by a key the schema marks as naming a secret's variable
  (``json_schema_extra={"x-secret-env": True}``: ``results.token_env``);
* it is used in a value the schema marks secret (``{"x-secret": True}``), or in a value whose key
  reads like one (token, password, secret, api_key, ...: free-form mappings have no schema);
* its own name reads like one: a part of it (split at ``_``) is TOKEN, PASSWORD, PASSWD, PASS,
  SECRET, KEY, APIKEY, AUTH, CREDENTIALS or PRIVATE.

Such values are shown as ``***`` in ``harness plan`` and ``--json``, and replaced by ``***`` in
every problem message (a value echoed back by an error would otherwise print it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from harness.errors import Problem
from harness.scenario.fields import KeyPath
from harness.scenario.keys import model_at
from harness.scenario.model import Scenario
from harness.scenario.overrides import Setting
from harness.scenario.variables import Use, Variables

__all__ = ["HIDDEN", "Loaded", "redact", "secret_name", "secret_values", "shown_use"]

HIDDEN = "***"

_SECRET_WORDS = {"TOKEN", "PASSWORD", "PASSWD", "PASS", "SECRET", "KEY", "APIKEY", "AUTH", "CREDENTIALS", "PRIVATE"}
_SECRET_KEYS = {"token", "password", "passwd", "secret", "api_key", "apikey", "auth", "authorization", "credentials"}


def secret_name(name: str) -> bool:
    """Whether a variable's name reads like a secret's (INFLUX_TOKEN, DB_PASSWORD, API_KEY)."""
    return bool(_SECRET_WORDS & set(name.upper().split("_")))


def _mark(path: KeyPath, document: Any) -> dict[str, Any]:
    """The schema's ``json_schema_extra`` of the field at ``path`` (its list's, for an item)."""
    while path and isinstance(path[-1], int):
        path = path[:-1]
    if not path:
        return {}
    model = model_at(path[:-1], document)
    field = model.model_fields.get(str(path[-1])) if model is not None else None
    if field is None and model is not None:
        field = next((f for f in model.model_fields.values() if f.alias == path[-1]), None)
    extra = field.json_schema_extra if field is not None else None
    return extra if isinstance(extra, dict) else {}


def _secret_path(path: KeyPath, document: Any) -> bool:
    keys = [str(p).lower() for p in path if isinstance(p, str)]
    return bool(_mark(path, document).get("x-secret")) or any(k in _SECRET_KEYS for k in keys)


def _named_variables(node: Any, document: Any, path: KeyPath = ()) -> Iterable[str]:
    """Variables named by keys the schema marks as naming a secret's variable (token_env)."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = (*path, key)
            if isinstance(value, str) and _mark(here, document).get("x-secret-env"):
                yield value
            else:
                yield from _named_variables(value, document, here)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _named_variables(item, document, (*path, i))


def secret_values(document: Any, uses: list[Use], variables: Variables) -> set[str]:
    """Every value the outputs must not show (see the module's docstring)."""
    names = {u.name for u in uses if secret_name(u.name) or _secret_path(u.path, document)}
    names |= set(_named_variables(document, document))
    values = {u.value for u in uses if u.name in names}
    for name in names:
        found = variables.lookup(name)
        if found is not None:
            values.add(found[0])
    return {v for v in values if v}


def _hide(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):  # a longer secret may contain a shorter one
        text = text.replace(secret, HIDDEN)
    return text


def redact(problem: Problem, secrets: Iterable[str]) -> Problem:
    """The problem with every secret value in it replaced by ``***``."""
    secrets = list(secrets)
    if not secrets:
        return problem
    return dataclasses.replace(
        problem,
        message=_hide(problem.message, secrets),
        path=_hide(problem.path, secrets),
        flag=_hide(problem.flag, secrets),
    )


def shown_use(use: Use, secrets: Iterable[str]) -> Use:
    """A use as it may be shown: a secret's value is ``***``."""
    if use.value and use.value in set(secrets):
        return dataclasses.replace(use, value=HIDDEN, secret=True)
    return use


@dataclass(frozen=True)
class Loaded:
    """A validated scenario, the variables its file used (secrets shown as ``***``), the values
    the command line's flags set, and the secret values no output may show."""

    scenario: Scenario
    variables: tuple[Use, ...]
    settings: tuple[Setting, ...]
    secrets: frozenset[str]

    def redact(self, text: str) -> str:
        """``text`` with every secret value replaced by ``***``: for whatever prints the scenario."""
        return _hide(text, self.secrets)
