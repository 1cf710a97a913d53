"""The README's first screen stays short and true: under 1,500 words, its scenario validates as
shown, and the picture of the report it shows is in the repository and small."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from harness.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_readme_is_under_1500_words() -> None:
    words = len(README.split())
    assert words < 1500, f"README.md has {words} words; move detail to docs/"


def test_the_readme_scenario_validates_where_it_says_to_save_it(tmp_path: Path) -> None:
    [scenario] = re.findall(r"^```yaml\n(.*?)^```", README, re.MULTILINE | re.DOTALL)
    assert len(scenario.splitlines()) <= 16, "the README's scenario is meant to be minimal"
    [where] = re.findall(r"Save this as `([^`]+)` in the checkout", README)
    saved = tmp_path / where
    saved.parent.mkdir(parents=True)
    saved.write_text(scenario)
    (tmp_path / "locustfiles").symlink_to(ROOT / "locustfiles")  # the checkout's, beside scenarios/
    result = CliRunner().invoke(app, ["validate", str(saved)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


def test_the_report_picture_is_in_the_repository_and_small() -> None:
    [picture] = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    path = ROOT / picture
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size < 200_000, f"{picture} is {path.stat().st_size} bytes; keep it small"
