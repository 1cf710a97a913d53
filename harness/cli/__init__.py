"""The ``harness`` command line: flags in, the work done by the rooms below, results printed.

``harness = "harness.cli:main"`` is the console script; ``python -m harness.cli`` runs the same.
"""

from __future__ import annotations

from harness.cli.app import app, main

__all__ = ["app", "main"]
