"""Stage 4, convert: each format the plan names, along the cheapest path of the converter graph
(every fp32 hop checked against the source), at the profile's precision (quantized by the
format's own tool) and, when that is compressed, at fp32 too as the reference to compare with.

A format whose every path fails is reported as not built (loudly); the build fails only when no
format could be built. Static int8 that no converter can make (TensorFlow's calibrator crashes
on some recurrent graphs, and ai-edge-quantizer cannot quantize their loops) is made dynamic
int8 instead where the profile allows such files, and the warning says so: an int8-weight file
of the format the target runs beats none.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..cache.keys import model_files
from ..config.profiles import Precision, Profile
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


def make_converter(ctx: BuildContext, planned: Plan, source: SourceModel, data: BuildData,
                   yardstick: Yardstick, structural: StructuralResult,
                   workdir: Path) -> Converter:
    """The build's converter: it converts the (structurally changed) source and checks each
    hop against that source's outputs on the eval inputs."""
    return Converter(structural.model, source.format, yardstick.signature, yardstick.evaluation,
                     structural.outputs, workdir, ctx.progress.step, data.shapes, ctx.steps,
                     isa=tuple(ctx.target.isa), shown=source.path,
                     quantized_source=planned.source_quantization is not None)


def convert_formats(ctx: BuildContext, planned: Plan, converter: Converter, data: BuildData,
                    staging: Path) -> list[FormatBuild]:
    """Every format of the plan, into ``staging``."""
    profile, name = planned.profile, ctx.inputs.name
    builds = []
    for fmt in planned.formats:
        try:
            if planned.source_quantization is not None:
                builds.append(FormatBuild(fmt, _keeping_quantization(
                    converter.produce(fmt, "fp32", staging, name),
                    planned.source_quantization)))
                continue
            reference = converter.produce(fmt, "fp32", staging, name) \
                if profile.precision != "fp32" else None
            try:
                deliverable = converter.produce(fmt, profile.precision, staging, name,
                                                profile.quantization, data.calibration)
            except ConversionError as exc:
                deliverable = _dynamic_instead(ctx, profile, converter, fmt, staging, exc)
        except ConversionError as exc:
            if len(planned.formats) == 1:
                raise
            ctx.not_built(fmt, profile.precision, str(exc))
            continue
        builds.append(FormatBuild(fmt, deliverable, reference))
    if not builds:
        raise nothing_built(ctx)
    return builds


def _keeping_quantization(made: ConvertedFile, quantization: Precision) -> ConvertedFile:
    """A quantized source's file as converted (its hops quantize nothing), named and labelled
    by the quantization it carries: ``model.int8.tflite``, not ``model.fp32.tflite``."""
    files = model_files(made.path)
    renamed = [f.with_name(f.name.replace(".fp32.", f".{quantization}.", 1)) for f in files]
    for old, new in zip(files, renamed, strict=True):
        old.replace(new)
    return replace(made, path=renamed[0], precision=quantization)


def _dynamic_instead(ctx: BuildContext, profile: Profile, converter: Converter, fmt: str,
                     staging: Path, failed: ConversionError) -> ConvertedFile:
    """``fmt`` at dynamic int8 (int8 weights, activations quantized at run time: no
    calibration to crash) when static int8 could not be made and the profile allows dynamic
    files; else, or when that fails too, the error that says why neither was made."""
    if profile.precision != "int8" or not profile.fallback_dynamic:
        raise failed
    try:
        made = converter.produce(fmt, "dynamic-int8", staging, ctx.inputs.name,
                                 profile.quantization)
    except ConversionError as exc:
        raise ConversionError(f"{failed.bare}; dynamic int8 instead failed too: {exc.bare}",
                              path=exc.path) from failed
    why = failed.bare
    made.notes.append(f"dynamic int8 instead of static int8, which could not be made ({why})")
    ctx.warn(f"{fmt}: static int8 could not be made, dynamic int8 delivered instead (int8 "
             f"weights, activations quantized at run time; integer-only hardware cannot run "
             f"it): {why}")
    return made


def nothing_built(ctx: BuildContext) -> ConversionError:
    return ConversionError("no format could be built: " +
                           "; ".join(s.reason for s in ctx.skipped), path=ctx.inputs.model)
