"""The ``harness`` command line: flags in, the work done by the rooms below, results printed.

``harness = "harness.cli:main"`` is the console script; ``python -m harness.cli`` runs the same.
"""

from __future__ import annotations

from harness.cli import host_commands, new_command, review_commands, run_commands, scenario_commands
from harness.cli.app import app, demo_app, grafana_app, influx_app

__all__ = ["app", "main"]

# In the order ``harness --help`` lists them (sub-command groups come after the commands).
new_command.register(app)
scenario_commands.register(app)
run_commands.register(app)
review_commands.register(app, grafana_app)
host_commands.register(app, demo_app, influx_app)


def main() -> None:
    app()
