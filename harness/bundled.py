"""Files that ship with harness but live at the top of the repository: the example scenarios, the
locustfiles they name and the Grafana provisioning.

In a checkout they are ``scenarios/``, ``locustfiles/`` and ``grafana/`` beside the ``harness``
package, where users and the tests look for them. A wheel carries the same trees inside the
package, as ``harness/_bundled/<name>/`` (``setup.py`` maps them there), so that an installed
harness finds them without a checkout. Code that reads these files asks :func:`bundled_dir` and
works in both places; the relative paths inside a tree (``../locustfiles/shop.py`` in a scenario)
hold in both, because the trees keep their names and sit side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from harness.errors import HarnessError

__all__ = ["BUNDLED", "Bundled", "bundled_dir"]

Bundled = Literal["scenarios", "locustfiles", "grafana"]
#: Every tree that ships with the package, by its name at the top of the repository.
BUNDLED: tuple[Bundled, ...] = ("scenarios", "locustfiles", "grafana")

_PACKAGE = Path(__file__).resolve().parent


def bundled_dir(name: Bundled) -> Path:
    """The directory holding the shipped tree ``name``: inside the installed package when it is
    there, else in the checkout this package was imported from (recognised by its
    ``pyproject.toml``, so an unrelated ``scenarios/`` beside site-packages is never taken).

    Raises ``HarnessError`` (exit 3) when neither exists: the install is broken."""
    if name not in BUNDLED:
        raise ValueError(f"no bundled tree {name!r}; known: {', '.join(BUNDLED)}")
    installed = _PACKAGE / "_bundled" / name
    if installed.is_dir():
        return installed
    checkout = _PACKAGE.parent / name
    if checkout.is_dir() and (_PACKAGE.parent / "pyproject.toml").is_file():
        return checkout
    raise HarnessError(f"harness is installed without its {name}/ files (looked in {installed} and {checkout})")
