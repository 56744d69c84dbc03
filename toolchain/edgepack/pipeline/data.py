"""Stage 2, data: the calibration and evaluation samples, in the source's names and layouts,
and the source's outputs on the evaluation samples (the yardstick of every artifact).

Without evaluation data, fidelity is measured on the calibration samples, else on seeded random
inputs; either is said loudly in the report, as is any overlap between the two sets. The
source's outputs come from the step cache when this very model ran on the same samples before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..config.profiles import Profile
from ..data.dataset import Dataset, fixed_shapes, load_dataset, overlap
from ..data.random_inputs import random_inputs
from ..errors import UsageError
from ..report.parts import EvalSection
from ..signature import Signature
from ..validate.floor import InputFloors, calibration_grids
from .context import BuildContext, Yardstick
from .load import SourceModel, source_key
from .source import open_source

#: fidelity without any data: seeded standard-normal inputs (said loudly in the report)
RANDOM_EVAL_SAMPLES = 64


@dataclass
class BuildData:
    """The samples a build quantizes with and measures on, and what the report says of them."""

    calibration: Dataset | None
    evaluation: Dataset
    #: the report's ``eval`` section: where the samples came from, how many, labelled or not
    evaluation_section: EvalSection
    #: what was applied to image data; it travels in every artifact's metadata
    preprocessing: dict[str, Any] | None
    #: static input shapes when the target needs them or the user gave them (None: as is)
    shapes: dict[str, tuple[int, ...]] | None = None
    #: the calibration drawn again with more samples (the accuracy fallback's cheap fix
    #: "twice the calibration samples"); None without calibration data
    more_calibration: Callable[[int], Dataset] | None = None


def load_data(ctx: BuildContext, source: SourceModel, profile: Profile) -> BuildData:
    settings = profile.quantization.calibration if profile.quantization else None
    image_options = {"preprocessing": ctx.inputs.preprocessing,
                     "class_names": ctx.inputs.labels, "batch_axes": ctx.inputs.batch_axes}
    path = ctx.inputs.calibration
    more = partial(load_dataset, path, source.signature, **image_options,
                   seed=settings.seed if settings else 0) if path else None
    calib = more(max_samples=settings.samples if settings else None) if more else None
    if ctx.inputs.evaluation:
        evals = load_dataset(ctx.inputs.evaluation, source.signature, **image_options)
        section = EvalSection(str(ctx.inputs.evaluation), len(evals), evals.labels is not None,
                              evals.preprocessing)
        shared = overlap(calib, evals) if calib is not None else 0
        if shared:
            ctx.warnings.append(f"{shared} of {len(evals)} evaluation samples are also "
                                f"calibration samples: accuracy and fidelity are flattered; "
                                f"use disjoint data")
    elif calib is not None:
        evals = calib
        ctx.warnings.append("no evaluation data: fidelity is measured on the calibration "
                            "samples, which flatters int8; pass --eval DATA")
        section = EvalSection(f"{calib.source} (calibration data)", len(calib),
                              calib.labels is not None)
    else:
        evals = Dataset("random", random_inputs(source.signature, source.path,
                                                RANDOM_EVAL_SAMPLES, 0, "--eval"))
        ctx.warnings.append(f"no evaluation data: fidelity is measured on {len(evals)} random "
                            "normal inputs; pass --eval DATA")
        section = EvalSection("random normal inputs (seed 0)", len(evals), False)
    preprocessing = (calib.preprocessing if calib is not None else None) or evals.preprocessing
    shapes = _fixed_shapes(ctx, source.signature, calib if calib is not None else evals)
    return BuildData(calib, evals, section, preprocessing, shapes,
                     None if more is None else lambda n: more(max_samples=n))


def _fixed_shapes(ctx: BuildContext, signature: Signature,
                  data: Dataset) -> dict[str, tuple[int, ...]] | None:
    """Static input shapes when the target needs them or the user gave them, else None.

    A dimension the user fixed by name (``seq`` of ``input_ids``) is fixed in every input
    that has it; for a static-shape target the batch becomes 1 and the rest is taken from
    the data's samples. Inputs left with dynamic dimensions keep them where the target
    allows it.
    """
    given = ctx.inputs.input_shapes or {}
    static = ctx.target.constraints.static_shapes
    if not static and not given:
        return None
    shapes = fixed_shapes(signature, given, data if static else None)
    for spec in signature.inputs:
        if static and spec.name not in shapes:
            raise UsageError(
                f"{ctx.target.name} needs static shapes and input '{spec.name}' has dynamic "
                f"dimensions ({spec.shape_str()})",
                hint=f"pass --input-shape {spec.name}:" + "x".join(
                    str(d) if isinstance(d, int) else "N" for d in spec.shape))
    why = "the target needs static shapes" if static else "given with --input-shape"
    ctx.notes.append("input shapes fixed to " + ", ".join(
        f"{n} {'x'.join(map(str, s)) or 'scalar'}" for n, s in shapes.items()) + f" ({why})")
    return shapes


def source_outputs(ctx: BuildContext, source: SourceModel, data: BuildData, profile: Profile,
                   scratch: Path) -> Yardstick:
    """The source's outputs on the eval inputs and its accuracy there; for int8, the
    input-rounding floors (validate/floor.py): each int8 file's is measured on its own input
    grid when it is validated, and the report's on the grid the calibration data's range
    gives."""
    evals = data.evaluation
    outputs = _run_source(ctx, source, evals, scratch)
    floors = floor = None
    if profile.precision == "int8":
        floors = InputFloors(
            lambda rounded: _run_source(ctx, source, replace(evals, inputs=rounded), scratch),
            evals.inputs, outputs, source.signature.output_names, source.signature.output_roles)
        grids = calibration_grids((data.calibration or evals).inputs)
        floor = floors.at(grids) if grids else None
    return Yardstick(evals, outputs, source.signature, ctx.accuracy(outputs, evals), floor,
                     floors)


def _run_source(ctx: BuildContext, source: SourceModel, samples: Dataset,
                scratch: Path) -> list[np.ndarray]:
    """The source's outputs on ``samples``, from the step cache when it ran on them before."""
    key = source_key(ctx, source.content, "outputs", eval=ctx.steps.digest(samples)) \
        if ctx.steps is not None else None
    outputs = ctx.steps.fetch_outputs(key, scratch) if ctx.steps is not None and key else None
    what = f"Running the source model on {len(samples)} eval samples"
    if outputs is not None:
        with ctx.progress.step(f"{what} (cached)"):
            return outputs
    if source.loaded is None:  # its facts came from the cache
        with ctx.progress.step("Loading the source model"):
            source.loaded = open_source(source.path, ctx.inputs.input_shapes)
    with ctx.progress.step(what):
        outputs = list(source.loaded.session.run(samples.inputs).values())
    if ctx.steps is not None and key:
        ctx.steps.store_outputs(key, outputs, scratch)
    return outputs
