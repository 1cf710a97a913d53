"""Check a documented ``harness ...`` command line against the CLI's own ``--help``.

Docs (docs/ci.md, ray_cluster/README.md) show commands users will paste; these helpers
fail a test when a subcommand or option they use does not exist, by asking the real CLI
the way a user would (``python -m harness.cli ... --help``, wide and without colour).
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["check_command", "help_text", "subcommands"]


@functools.cache
def help_text(path: tuple[str, ...]) -> tuple[int, str]:
    """(exit code, output) of ``harness PATH --help``."""
    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"}
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", *path, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )
    return done.returncode, done.stdout + done.stderr


def subcommands(text: str) -> set[str]:
    """Command names listed in a group's help (rich boxes or plain click layout)."""
    section = text.split("Commands", 1)[1] if "Commands" in text else ""
    return {m.group(1) for m in re.finditer(r"^[\s│|]*([a-z][\w-]*)\s", section, re.MULTILINE)}


def check_command(args: list[str], source: str) -> None:
    """Assert ``harness ARGS`` names a real (sub)command and only options its help lists."""
    path: list[str] = []
    for arg in args:
        if arg.startswith("-"):
            break
        _, text = help_text(tuple(path))
        if arg not in subcommands(text):
            break
        path.append(arg)
    assert path, f"`harness {' '.join(args)}`: `{args[0]}` is not a harness command"
    code, text = help_text(tuple(path))
    assert code == 0, f"`harness {' '.join(path)} --help` exited {code}:\n{text}"
    for option in (arg.split("=", 1)[0] for arg in args if arg.startswith("--")):
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), (
            f"{source} uses `harness {' '.join(path)} {option}`, but its --help does not list {option}"
        )
