"""Read a build folder (what `edgepack build` wrote) as the input of packaging.

``report.json`` is read as plain JSON rather than through ``edgepack.report.model``: a bundle
must be made from exactly what the build recorded, and packaging must not depend on the build's
classes.
Before anything is packaged, every artifact and every file it needs beside it (OpenVINO's .bin
with the weights, a metadata sidecar) is checked against the sha256 the build recorded, so a
file changed after the build is never shipped under the build's measured numbers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BudgetError, ModelError, UsageError

REPORT = "report.json"
#: the report schema versions this packager reads
REPORT_SCHEMA_VERSIONS = (1,)
#: the human-readable renderings of the report that travel with it when present
REPORT_FILES = ("report.json", "report.md", "report.html")


@dataclass(frozen=True)
class BuildFolder:
    path: Path
    report: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.report["model"]["name"])

    @property
    def target(self) -> str:
        return str(self.report["target"]["name"])

    @property
    def labels(self) -> list[str] | None:
        labels = self.report["model"].get("labels")
        return [str(label) for label in labels] if labels else None

    def artifacts(self, include_reference: bool) -> list[dict[str, Any]]:
        """The deliverables, then the fp32 reference when asked for."""
        roles = ("deliverable", "reference") if include_reference else ("deliverable",)
        return [a for role in roles for a in self.report["artifacts"] if a["role"] == role]

    def artifact_files(self, artifact: dict[str, Any]) -> list[Path]:
        """The file a runtime loads, then the files the build recorded as belonging to it
        (OpenVINO's .bin, a TFLite metadata sidecar)."""
        main = self.path / artifact["file"]
        sidecars = [self.path / name for name in artifact.get("extra_files", [])]
        for f in [main, *sidecars]:
            if not f.is_file():
                raise ModelError("listed in report.json but missing from the build folder",
                                 path=f, hint="rebuild with edgepack build")
        return [main, *sidecars]

    def report_files(self) -> list[Path]:
        return [self.path / n for n in REPORT_FILES if (self.path / n).is_file()]


def find_build_folders(path: Path) -> list[BuildFolder]:
    """``path`` itself when it is a build folder, else each build folder directly inside it
    (one per target), so one call packages every target of a build."""
    if (path / REPORT).is_file():
        return [read_build_folder(path)]
    if not path.is_dir():
        raise UsageError("no such build folder", path=path, hint="run edgepack build first")
    found = sorted(p for p in path.iterdir() if (p / REPORT).is_file())
    if not found:
        raise UsageError(f"not a build folder: no {REPORT} in it or in its subfolders",
                         path=path, hint="pass the folder edgepack build wrote")
    return [read_build_folder(p) for p in found]


def read_build_folder(path: Path) -> BuildFolder:
    """Parse report.json and refuse a build that cannot be released as it is."""
    try:
        report = json.loads((path / REPORT).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"unreadable {REPORT}: {exc}", path=path,
                         hint="rebuild with edgepack build") from exc
    version = report.get("schema_version")
    if version not in REPORT_SCHEMA_VERSIONS:
        raise UsageError(f"{REPORT} has schema version {version!r}; this edgepack reads "
                         f"{', '.join(map(str, REPORT_SCHEMA_VERSIONS))}", path=path,
                         hint="package with the edgepack that built it, or rebuild")
    if report.get("status") != "passed":
        raise BudgetError("the build failed its accuracy budget; refusing to package it",
                          path=path, hint="see report.md, then rebuild within the budget")
    folder = BuildFolder(path, report)
    for artifact in folder.artifacts(include_reference=True):
        main, *sidecars = folder.artifact_files(artifact)
        recorded = artifact.get("extra_sha256") or {}
        for file, digest in [(main, artifact["sha256"]),
                             *((s, recorded.get(s.name)) for s in sidecars)]:
            if digest is None:
                raise ModelError(f"report.json records no sha256 for this file of "
                                 f"{main.name} (built by an older edgepack), so it cannot be "
                                 "checked", path=file, hint="rebuild with edgepack build")
            if sha256_file(file) != digest:
                raise ModelError("does not match the sha256 report.json recorded (changed "
                                 "after the build?)", path=file,
                                 hint="rebuild with edgepack build")
    return folder


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
