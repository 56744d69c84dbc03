"""Stage 7, report: what was built, by which path, with which tools, and every measured
number, as the Report the build folder's report.json/.md/.html are written from."""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from typing import Any

from .. import __version__
from ..cache.keys import host_facts
from ..config.profiles import Profile
from ..data.dataset import Dataset
from ..report.model import Artifact, Report
from ..report.parts import CalibrationSection, ModelSection, ProfileSection, TargetSection
from .context import BuildContext, Yardstick
from .data import BuildData
from .load import Plan, SourceModel
from .structural import StructuralResult


def make_report(ctx: BuildContext, planned: Plan, source: SourceModel, data: BuildData,
                yardstick: Yardstick, structural: StructuralResult,
                artifacts: list[Artifact]) -> Report:
    profile = planned.profile
    target = ctx.target
    return Report(
        edgepack_version=__version__,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        model=_model_section(ctx, source),
        target=TargetSection(target.name, target.title, target.arch,
                             [r.model_dump() for r in target.runtimes]),
        profile=ProfileSection(profile.name, profile.title, profile.precision,
                               ctx.request.profile or target.default_profile,
                               profile.budget.model_dump()),
        eval=data.evaluation_section,
        calibration=_calibration_section(data.calibration, profile),
        tools=ctx.tools, host=_host(), artifacts=artifacts,
        source_accuracy=yardstick.accuracy, output=str(ctx.output), warnings=ctx.warnings,
        notes=ctx.notes, skipped=ctx.skipped, structural=structural.stages,
        step_cache=ctx.steps.summary() if ctx.steps else None, input_floor=yardstick.floor)


def _model_section(ctx: BuildContext, source: SourceModel) -> ModelSection:
    facts = source.facts
    return ModelSection(ctx.inputs.name, ctx.inputs.version, str(source.path), facts.format,
                        facts.parameters, facts.size_bytes, source.digest,
                        source.signature.to_dict(), ctx.inputs.labels)


def _calibration_section(calib: Dataset | None, profile: Profile) -> CalibrationSection | None:
    if calib is None:
        return None
    settings = profile.quantization.calibration if profile.quantization else None
    used = min(len(calib), settings.samples) if settings else 0
    return CalibrationSection(calib.source, calib.drawn_from or len(calib), used,
                              calib.preprocessing,
                              settings.seed if settings else None,
                              settings.method if settings else None)


def _host() -> dict[str, Any]:
    return {"platform": platform.platform(), "python": platform.python_version(),
            **host_facts()}
