"""Stage 1, load: what the source model is, what the target takes of it, and its outputs.

The plan (the profile to build with, the formats to make) is settled before the model is
loaded, so a target that cannot take the model fails at once. The source's facts and its
outputs on the eval inputs come from the step cache when this very model was loaded before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cache.keys import build_key, file_digest, model_digest
from ..config.profiles import ROLE_NAMES, Precision, Profile
from ..converters import plan_path
from ..errors import ConversionError, DataError
from ..formats import detect, get_format
from ..formats.prequantized import DESCRIBED, quantization_of
from ..report.parts import SkippedFormat
from ..signature import Signature
from .context import BuildContext
from .source import Source, SourceFacts, open_source


@dataclass
class Plan:
    """What the build makes: the profile (the target's, or its no-calibration fallback) and
    every format the target accepts that the profile produces and edgepack reaches."""

    source_format: str
    profile: Profile
    formats: list[str]
    #: the quantization the source file brings (formats/prequantized.py): its files keep it
    #: and are not quantized again; None for a float source
    source_quantization: Precision | None = None


@dataclass
class SourceModel:
    """The source model: its facts and signature, its file's sha256 (as the report states it),
    the digest of every file it consists of (what the step cache keys on), and the loaded
    model once a step needed it."""

    path: Path
    facts: SourceFacts
    signature: Signature
    digest: str
    content: str
    loaded: Source | None = field(default=None, repr=False)

    @property
    def format(self) -> str:
        return self.facts.format


def plan(ctx: BuildContext) -> Plan:
    """The profile and formats to build (the formats no path reaches go to ``ctx.skipped``)."""
    fmt = detect(ctx.inputs.model).name
    quantized = quantization_of(fmt, ctx.inputs.model)
    profile = ctx.profile if quantized else \
        _effective_profile(ctx, has_calibration=ctx.inputs.calibration is not None)
    if ctx.inputs.project is not None:  # the project file's limits per output
        profile = profile.with_output_budgets(ctx.inputs.project.output_budgets())
    chosen = []
    for target_format in ctx.target.formats:
        if target_format not in profile.formats:
            continue
        try:  # a quantized source is converted only
            plan_path(fmt, target_format, "fp32" if quantized else profile.precision)
        except ConversionError as exc:
            ctx.skipped.append(SkippedFormat(target_format, quantized or profile.precision,
                                             str(exc)))
            continue
        chosen.append(target_format)
    if not chosen:
        raise ConversionError(
            f"cannot build any format {ctx.target.name} accepts "
            f"({', '.join(ctx.target.formats)}) at {quantized or profile.precision} from {fmt}",
            hint="; ".join(s.reason for s in ctx.skipped) or
                 f"profile {profile.name} produces {', '.join(profile.formats)}")
    if quantized:
        ctx.warn(f"{ctx.inputs.model.name} is already quantized ({DESCRIBED[quantized]}): its "
                 f"files keep that quantization instead of profile {profile.name}'s "
                 f"{profile.precision} (quantizing it again only adds error, and its float "
                 f"weights are not in the file); each file is compared with the quantized "
                 f"source, so its fidelity is the conversion's alone")
    return Plan(fmt, profile, chosen, quantized)


def _effective_profile(ctx: BuildContext, has_calibration: bool) -> Profile:
    profile = ctx.profile
    if not profile.needs_calibration or has_calibration:
        return profile
    fallback = profile.fallback_without_calibration
    if fallback is None:
        raise DataError(f"profile {profile.name} needs calibration data and has no fallback",
                        hint="pass --calibration DATA (.npz or a folder of .npy)")
    ctx.warn(f"NO CALIBRATION DATA: built {fallback} (weights-only int8) instead of the "
             f"full-integer int8 of profile {profile.name}; activations stay float, so it is "
             f"slower and accelerators cannot run it. Pass --calibration DATA.")
    return ctx.catalog.profiles.get(fallback)


def load_source(ctx: BuildContext, planned: Plan) -> SourceModel:
    """What the source is (signature, size, runtime), from the step cache when this very
    model was loaded before; else the model is loaded (and kept for its outputs)."""
    path, fmt = ctx.inputs.model, planned.source_format
    digest, content = file_digest(path), model_digest(path)
    key = source_key(ctx, content, "load", format=fmt)
    record = ctx.steps.fetch_facts(key) if ctx.steps is not None and key else None
    loaded = None
    if record is not None:
        get_format(fmt).checked_note(path)  # refused untrusted, as when loaded
        with ctx.progress.step(f"Loading {fmt} model (cached)"):
            facts = SourceFacts.from_record(record)
    else:
        with ctx.progress.step(f"Loading {fmt} model"):
            loaded = open_source(path, ctx.inputs.input_shapes)
        facts = SourceFacts.of(loaded)
        if ctx.steps is not None and key:
            ctx.steps.store_facts(key, facts.to_record())
    ctx.notes.extend(facts.notes)  # e.g. a SavedModel checked and loaded untrusted
    ctx.tools[facts.runtime] = facts.runtime_version
    signature = facts.signature.with_normalization(ctx.inputs.normalization)
    signature = signature.with_roles(_roles(ctx, signature))
    return SourceModel(path, facts, signature, digest, content, loaded)


def _roles(ctx: BuildContext, signature: Signature) -> dict[str, str]:
    """The roles the user gave outputs (validate/roles.py): the project file's by output
    name, and ``--metric ROLE`` for the first output."""
    project, metric = ctx.inputs.project, ctx.request.validation.metric
    roles = project.output_roles() if project is not None else {}
    if metric in ROLE_NAMES and signature.outputs:
        roles = {**roles, signature.outputs[0].name: metric}
    return roles


def source_key(ctx: BuildContext, digest: str, step: str, **more: Any) -> str | None:
    if ctx.steps is None:
        return None
    shapes = ctx.inputs.input_shapes
    return build_key({"step": step, "model": digest,
                      "input_shapes": dict(shapes) if shapes else None, **more})
