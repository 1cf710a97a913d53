"""The repository stands alone: every document's relative links resolve inside it, and none
points outside the checkout (the design notes the developers keep beside it are not shipped)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _documents() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True, check=False)
    names = listed.stdout.split() if listed.returncode == 0 else []
    return [ROOT / n for n in names] or sorted(ROOT.glob("**/*.md"))


def test_every_relative_link_resolves_inside_the_repository() -> None:
    broken = []
    for doc in _documents():
        for target in LINK.findall(doc.read_text(encoding="utf-8")):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue  # a URL or an anchor in the same page
            path = (doc.parent / target.split("#")[0]).resolve()
            if not path.is_relative_to(ROOT) or not path.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not broken, broken


def test_no_document_points_outside_the_checkout() -> None:
    outside = [
        f"{doc.relative_to(ROOT)}: {line.strip()}"
        for doc in _documents()
        for line in doc.read_text(encoding="utf-8").splitlines()
        if "../shared" in line or "shared/DESIGN" in line
    ]
    assert not outside, outside
