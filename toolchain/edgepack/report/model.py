"""The build report's data model: what was built, by which path and tools, and every number.

One object feeds every rendering (report.json, markdown, HTML, the terminal), so the numbers can
never disagree between them. It only holds and (de)serialises the data; the renderers sit above
it and import it, never the other way round.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..converters.hop import Hop
from ..errors import UsageError
from ..validate.accuracy import Accuracy
from ..validate.attempts import FallbackAttempt
from ..validate.budget import BudgetVerdict
from ..validate.fidelity import OutputFidelity
from ..validate.floor import InputFloor
from ..validate.latency import LatencyStats
from . import decode
from .parts import (
    CalibrationSection,
    DeviceRun,
    EvalSection,
    ModelSection,
    ProfileSection,
    SkippedFormat,
    TargetSection,
)

REPORT_SCHEMA_VERSION = 1


@dataclass
class Artifact:
    role: str  # "deliverable" (what ships) or "reference" (fp32 of the same format, to compare)
    format: str
    precision: str
    file: str  # relative to the build folder
    size_bytes: int
    sha256: str
    path: list[Hop]
    signature: dict[str, Any]
    fidelity: list[OutputFidelity] = field(default_factory=list)
    accuracy: Accuracy | None = None
    latency: LatencyStats | None = None
    budget: BudgetVerdict | None = None
    notes: list[str] = field(default_factory=list)
    #: files that belong to the artifact: OpenVINO's .bin, a TFLite metadata sidecar
    extra_files: list[str] = field(default_factory=list)
    #: sha256 of each extra file (packaging refuses one that changed after the build)
    extra_sha256: dict[str, str] = field(default_factory=dict)
    #: the accuracy fallback's attempts: layers kept in float and what each attempt measured
    fallback: list[FallbackAttempt] = field(default_factory=list)
    #: on-device runs (edgepack build --device): latency there and fidelity vs the host
    devices: list[DeviceRun] = field(default_factory=list)

    @property
    def conversion_path(self) -> str:
        if not self.path:
            return self.format
        return " -> ".join([self.path[0].src, *(h.dst for h in self.path)])


@dataclass
class Report:
    edgepack_version: str
    created: str
    model: ModelSection
    target: TargetSection
    profile: ProfileSection
    eval: EvalSection
    calibration: CalibrationSection | None
    tools: dict[str, str]
    host: dict[str, Any]
    artifacts: list[Artifact]
    source_accuracy: Accuracy | None = None
    output: str = ""  # the build folder, as the caller named it
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: list[SkippedFormat] = field(default_factory=list)
    #: structural passes on the source (structural/stages.py StageReport), the original first
    structural: list[dict[str, Any]] = field(default_factory=list)
    #: what the step cache gave this build: steps (hops, validations) "reused" and "built";
    #: None when it was built without the cache
    step_cache: dict[str, int] | None = None
    #: the fp32 source fed its input rounded to int8 steps (validate/floor.py): how close an
    #: int8 file can follow it at best; None when not measured (not an int8 build)
    input_floor: InputFloor | None = None
    schema_version: int = REPORT_SCHEMA_VERSION

    @property
    def passed(self) -> bool:
        return all((a.budget is None or a.budget.passed) and all(d.passed for d in a.devices)
                   for a in self.artifacts)

    @property
    def deliverables(self) -> list[Artifact]:
        return [a for a in self.artifacts if a.role == "deliverable"]

    def reference_for(self, artifact: Artifact) -> Artifact | None:
        """The fp32 reference of the same format, which size and speed are compared with."""
        return next((a for a in self.artifacts
                     if a.role == "reference" and a.format == artifact.format), None)

    def to_dict(self) -> dict[str, Any]:
        d = decode.encode(self)
        d["status"] = "passed" if self.passed else "failed"
        for a, src in zip(d["artifacts"], self.artifacts, strict=True):
            a["conversion_path"] = src.conversion_path
        return d

    @classmethod
    def from_dict(cls, d: Any, source: str | Path | None = None) -> Report:
        """The inverse of ``to_dict`` (e.g. report.json read back, ``source`` naming where
        from); UsageError naming the field when ``d`` is not a report."""
        if not isinstance(d, dict):
            raise UsageError("not an edgepack report (expected a JSON object)", path=source)
        version = d.get("schema_version")
        if isinstance(version, int) and version > REPORT_SCHEMA_VERSION:
            raise UsageError(f"written by a newer edgepack (report schema {version}; this one "
                             f"reads up to {REPORT_SCHEMA_VERSION})", path=source,
                             hint="upgrade edgepack")
        try:
            return decode.build(cls, d, "report", _DERIVED)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"not a valid edgepack report: {exc}", path=source) from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False, default=_json_default)


def _json_default(value: Any) -> Any:
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


#: keys ``Report.to_dict`` adds that are computed from the fields, not stored in them
_DERIVED: dict[type, frozenset[str]] = {Report: frozenset({"status"}),
                                        Artifact: frozenset({"conversion_path"})}
