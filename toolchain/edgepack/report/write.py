"""A build folder's report files: report.json, report.md and report.html from one Report.

The three are written together from the same object, so the machine-readable numbers and the
two renderings for people can never disagree.
"""

from __future__ import annotations

from pathlib import Path

from .html import to_html
from .markdown import to_markdown
from .model import Report


def write_report(report: Report, folder: Path) -> None:
    """Write report.json, report.md and report.html into ``folder`` (which exists)."""
    (folder / "report.json").write_text(report.to_json() + "\n", encoding="utf-8")
    (folder / "report.md").write_text(to_markdown(report), encoding="utf-8")
    (folder / "report.html").write_text(to_html(report), encoding="utf-8")
