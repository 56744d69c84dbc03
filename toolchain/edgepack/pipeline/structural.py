"""The structural step of ``edgepack build``: run the passes on the opened source, hand the
build a new source file to convert, and keep the ORIGINAL outputs as the yardstick.

Training data for distillation is ``--train DATA`` when given (labels there are mixed into the
loss), else the calibration data, unlabelled. The evaluation data is never trained on: it is
what measures the result, and the report warns when the two overlap (e.g. when no --eval was
given and the calibration data doubles as evaluation data).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config.structural import merge
from ..data.dataset import Dataset, load_dataset, overlap
from ..formats import get_format
from ..runtimes import get_runtime
from ..signature import Signature
from ..structural.stages import Evaluation

if TYPE_CHECKING:
    from .builder import Builder


@dataclass
class StructuralRequest:
    """The command line's structural flags (None/False: take the profile's section)."""

    prune: float | None = None
    structured: bool = False
    lowrank: float | None = None
    distill: bool = False
    student: Path | None = None
    train: Path | None = None

    def build_kwargs(self) -> dict[str, Any]:
        """The flags as ``edgepack.build`` keyword arguments (how a matrix cell passes them)."""
        return asdict(self)

    def cache_facts(self) -> dict[str, Any]:
        """What a cached build made with these flags depends on: the flags, and the contents
        (not the names) of the student and training data files."""
        from ..cache.keys import file_digest

        facts = asdict(self)
        for name in ("student", "train"):
            path = facts[name]
            facts[name] = file_digest(path) if path is not None and path.exists() else path
        return facts


def run_step(builder: Builder, fmt: str, calib: Dataset | None, evals: Dataset,
             refs: list[np.ndarray], signature: Signature,
             workdir: Path) -> tuple[Path, list[np.ndarray], list[dict[str, Any]]]:
    """(source to convert, its outputs on the eval inputs for the hop checks, stage reports).

    Without any pass requested: the original source, its outputs, and no stages.
    """
    from ..structural.passes import run_passes

    req = builder.req.structural or StructuralRequest()
    settings = merge(builder.profile.structural, prune=req.prune, structured=req.structured,
                     lowrank=req.lowrank, distill=req.distill or req.student is not None)
    if not settings.requested:
        return builder.req.model, refs, []
    train = calib
    if req.train is not None:
        train = load_dataset(req.train, signature, preprocessing=builder.req.preprocessing,
                             class_names=builder.req.labels)
    if settings.distill is not None and train is not None and overlap(train, evals):
        builder.warnings.append(f"{overlap(train, evals)} evaluation samples were also used to "
                                "train the distilled model: its accuracy is flattered; pass "
                                "disjoint --train/--calibration and --eval data")
    ev = Evaluation(evals, refs, signature, builder._accuracy, builder._threads(),
                    builder.req.warmup, builder.req.runs)
    path, stages = run_passes(builder.req.model, fmt, settings, ev, workdir, builder.progress,
                              train, req.student)
    session = get_runtime(get_format(fmt).runtime).load(str(path))
    done = " -> ".join(s.stage for s in stages[1:]) or "none applicable"
    builder.notes.append(f"structural passes ({done}) ran on the source; every artifact is "
                         "compared with the ORIGINAL model")
    return path, list(session.run(evals.inputs).values()), [s.to_dict() for s in stages]
