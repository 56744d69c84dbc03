"""Stage 4, convert: each format the plan names, along the cheapest path of the converter graph
(every fp32 hop checked against the source), at the profile's precision (quantized by the
format's own tool) and, when that is compressed, at fp32 too as the reference to compare with.

A format whose every path fails is reported as not built (loudly); the build fails only when no
format could be built.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..converters.converter import ConvertedFile, Converter
from ..errors import ConversionError
from .context import BuildContext, Yardstick
from .data import BuildData
from .load import Plan, SourceModel
from .structural import StructuralResult


@dataclass
class FormatBuild:
    """One format's files: what ships, and its fp32 reference when that is compressed."""

    format: str
    deliverable: ConvertedFile
    reference: ConvertedFile | None = None


def make_converter(ctx: BuildContext, source: SourceModel, data: BuildData,
                   yardstick: Yardstick, structural: StructuralResult,
                   workdir: Path) -> Converter:
    """The build's converter: it converts the (structurally changed) source and checks each
    hop against that source's outputs on the eval inputs."""
    return Converter(structural.model, source.format, yardstick.signature, yardstick.evaluation,
                     structural.outputs, workdir, ctx.progress.step, data.shapes, ctx.steps,
                     isa=tuple(ctx.target.isa), shown=source.path)


def convert_formats(ctx: BuildContext, planned: Plan, converter: Converter, data: BuildData,
                    staging: Path) -> list[FormatBuild]:
    """Every format of the plan, into ``staging``."""
    profile, name = planned.profile, ctx.inputs.name
    builds = []
    for fmt in planned.formats:
        try:
            reference = converter.produce(fmt, "fp32", staging, name) \
                if profile.precision != "fp32" else None
            deliverable = converter.produce(fmt, profile.precision, staging, name,
                                            profile.quantization, data.calibration)
        except ConversionError as exc:
            if len(planned.formats) == 1:
                raise
            ctx.not_built(fmt, profile.precision, str(exc))
            continue
        builds.append(FormatBuild(fmt, deliverable, reference))
    if not builds:
        raise nothing_built(ctx)
    return builds


def nothing_built(ctx: BuildContext) -> ConversionError:
    return ConversionError("no format could be built: " +
                           "; ".join(s.reason for s in ctx.skipped), path=ctx.inputs.model)
