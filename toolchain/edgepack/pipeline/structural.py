"""Stage 3, structural: run the passes on the opened source, hand the build a new source file
to convert, and keep the ORIGINAL outputs as the yardstick.

Training data for distillation is ``--train DATA`` when given (labels there are mixed into the
loss), else the calibration data, unlabelled. The evaluation data is never trained on: it is
what measures the result, and the report warns when the two overlap (e.g. when no --eval was
given and the calibration data doubles as evaluation data).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config.structural import merge
from ..data.dataset import load_dataset, overlap
from ..formats import get_format
from ..runtimes import get_runtime
from ..structural.stages import Evaluation
from .context import BuildContext, Yardstick
from .data import BuildData
from .load import SourceModel


@dataclass
class StructuralResult:
    """The model to convert, its outputs on the eval inputs (what the hops are checked
    against) and the stages' reports (none when no pass ran)."""

    model: Path
    outputs: list[np.ndarray]
    stages: list[dict[str, Any]] = field(default_factory=list)


def run_structural(ctx: BuildContext, source: SourceModel, data: BuildData,
                   yardstick: Yardstick, workdir: Path) -> StructuralResult:
    """Without any pass requested: the original source, its outputs, and no stages."""
    from ..structural.passes import run_passes

    flags = ctx.request.structural
    settings = merge(ctx.profile.structural, prune=flags.prune, structured=flags.structured,
                     lowrank=flags.lowrank, distill=flags.distill or flags.student is not None)
    if not settings.requested:
        return StructuralResult(source.path, yardstick.outputs)
    evals = yardstick.evaluation
    train = data.calibration
    if flags.train is not None:
        train = load_dataset(flags.train, source.signature,
                             preprocessing=ctx.inputs.preprocessing,
                             class_names=ctx.inputs.labels)
    if settings.distill is not None and train is not None and overlap(train, evals):
        ctx.warnings.append(f"{overlap(train, evals)} evaluation samples were also used to "
                            "train the distilled model: its accuracy is flattered; pass "
                            "disjoint --train/--calibration and --eval data")
    validation = ctx.request.validation
    ev = Evaluation(evals, yardstick.outputs, source.signature, ctx.accuracy, ctx.threads,
                    validation.warmup, validation.runs)
    path, stages = run_passes(source.path, source.format, settings, ev, workdir, ctx.progress,
                              train, flags.student)
    session = get_runtime(get_format(source.format).runtime).load(str(path))
    done = " -> ".join(s.stage for s in stages[1:]) or "none applicable"
    ctx.notes.append(f"structural passes ({done}) ran on the source; every artifact is "
                     "compared with the ORIGINAL model")
    return StructuralResult(path, list(session.run(evals.inputs).values()),
                            [s.to_dict() for s in stages])
