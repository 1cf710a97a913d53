"""The files ``harness new NAME`` writes: a minimal scenario and its locustfile.

The templates ship inside the package (``*.tmpl`` here, listed as package data), so
``harness new`` works from an installed wheel as well as from a checkout. They are
``string.Template`` texts (``$name``, ``$base_url``, ``$locustfile``); the scenario they make
validates and runs against the demo shop (``harness demo up``) as written.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from string import Template

__all__ = ["NAME_PATTERN", "render"]

#: What ``harness new`` accepts as NAME: a scenario name that is also a plain file name.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$")


def _template(filename: str) -> Template:
    return Template(resources.files(__name__).joinpath(filename).read_text(encoding="utf-8"))


def render(name: str, base_url: str) -> dict[str, str]:
    """``{file name: text}`` of the scenario ``<name>.yaml`` and the locustfile ``<name>.py`` it names."""
    locustfile = f"{name}.py"
    values = {"name": name, "base_url": json.dumps(base_url), "locustfile": locustfile}
    return {
        f"{name}.yaml": _template("scenario.yaml.tmpl").substitute(values),
        locustfile: _template("locustfile.py.tmpl").substitute(values),
    }
