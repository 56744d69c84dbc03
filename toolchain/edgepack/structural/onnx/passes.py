"""prune -> low-rank for an ONNX source, post-training on its weights (weights.py): ONNX cannot
be trained here, so every stage says so, and distillation is skipped with a note.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ...config.structural import Structural
from ..stages import Evaluation, StageReport, measure
from . import weights as onnx_weights

if TYPE_CHECKING:
    from ...progress import Progress

NO_FINE_TUNING = ("no fine-tuning possible: ONNX sources cannot be trained here, so pruning and "
                  "factorization ran post-training on the weights")
STRUCTURED_AS_UNSTRUCTURED = ("structured pruning needs a trainable source: unstructured pruning "
                              "was applied instead")


def run_onnx(source: Path, settings: Structural, ev: Evaluation, workdir: Path,
             progress: Progress) -> tuple[Path, list[StageReport]]:
    """The last stage's ``.onnx`` file and one report per stage, the original first."""
    original = onnx_weights.load(source)
    stages = [measure("original", source, "onnx", onnx_weights.weight_counts(original), ev)]
    path = source
    if settings.prune is not None:
        with progress.step(f"Pruning ONNX weights (sparsity {settings.prune.sparsity:g})"):
            model = onnx_weights.load(path)
            reached = onnx_weights.prune_onnx(model, settings.prune)
            notes = [NO_FINE_TUNING] + ([STRUCTURED_AS_UNSTRUCTURED] if settings.prune.structured
                                        else [])
            path = onnx_weights.save(model, workdir / f"{source.stem}.prune.onnx")
            stages.append(measure("prune", path, "onnx", onnx_weights.weight_counts(model), ev,
                                  notes, {"sparsity": reached}))
    if settings.lowrank is not None:
        with progress.step("Low-rank factorization of ONNX weights (truncated SVD)"):
            model = onnx_weights.load(path)
            decisions = onnx_weights.factorize_onnx(model, settings.lowrank)
            path = onnx_weights.save(model, workdir / f"{source.stem}.lowrank.onnx")
            stages.append(measure("lowrank", path, "onnx", onnx_weights.weight_counts(model), ev,
                                  [NO_FINE_TUNING], {"layers": [d.to_dict() for d in decisions]}))
    if settings.distill is not None:
        stages[-1].notes.append("distillation skipped: ONNX sources cannot be trained here")
    return path, stages
