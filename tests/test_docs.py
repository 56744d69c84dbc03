"""The README and docs/ stay short, linked and true to the scripts and CI they name."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_readme_is_at_most_200_lines():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken


def test_every_script_named_exists():
    """A figure is attributed to the script that measures it: that script must be there."""
    named = {m for page in PAGES
             for m in re.findall(r"scripts/[\w/]+\.(?:py|sh)", page.read_text())}
    assert named
    assert not [s for s in sorted(named) if not (ROOT / s).is_file()]


def test_ci_runs_the_readme_test_command():
    """.ci/run mirrors the README's second command (install the test dependencies, run pytest)."""
    blocks = re.findall(r"```sh\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)
    test_command = next(b for b in blocks if "pytest" in b)
    ci = (ROOT / ".ci" / "run").read_text().replace(" -q", "")
    steps = test_command.split(" && ")
    assert len(steps) == 3
    assert [s for s in steps if s not in ci] == []
