"""prune -> distill for a SavedModel source, fine-tuned in TensorFlow (see restored.py for
why this path, and why structured pruning and low-rank factorization cannot change a restored
serving graph). Each stage is saved as a new SavedModel folder and measured like the original.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ...config.structural import Structural
from ...data.dataset import Dataset
from ..stages import UNSTRUCTURED_NOTE, Evaluation, StageReport, measure, sparsity_details
from ..training import nothing_to_distil, require_data
from .restored import Restored

if TYPE_CHECKING:
    from ...progress import Progress

FIXED_GRAPH = ("a SavedModel's serving graph has fixed shapes: {what} needs the Keras model "
               "(or, post-training, the ONNX file)")


def run_savedmodel(source: Path, settings: Structural, ev: Evaluation, workdir: Path,
                   progress: Progress, train: Dataset | None,
                   student: Path | None) -> tuple[Path, list[StageReport]]:
    from .distill import distill
    from .restored import prune

    teacher = Restored(source)
    stages = [measure("original", source, "savedmodel", teacher.weight_counts(), ev)]
    model, path, masks = Restored(source), source, {}
    deferred: list[str] = []  # what could not be done, said on the next stage

    def stage(name: str, notes: list[str], details: dict[str, object]) -> None:
        nonlocal path
        path = model.save(workdir / f"{source.stem}.{name}")
        stages.append(measure(name, path, "savedmodel", model.weight_counts(), ev,
                              notes, details))

    if settings.prune is not None:
        p = settings.prune
        with progress.step(f"Pruning SavedModel variables (sparsity {p.sparsity:g})"):
            masks = prune(model, p)
            notes = [UNSTRUCTURED_NOTE]
            if p.structured:
                notes.insert(0, FIXED_GRAPH.format(what="removing channels") +
                             "; unstructured pruning was applied instead")
            stage("prune", notes, sparsity_details(masks))
    if settings.lowrank is not None:
        deferred.append(FIXED_GRAPH.format(what="low-rank factorization") + "; it was skipped")
    if settings.distill is not None:
        d = settings.distill
        other = student is not None or d.width is not None
        if not masks:
            if not other and settings.lowrank is None:
                raise nothing_to_distil()
            deferred.append("distillation skipped: " + (
                FIXED_GRAPH.format(what="a different student") if other else
                "no pass changed the model"))
        else:
            if other:
                deferred.append(FIXED_GRAPH.format(what="a different student") +
                                "; the pruned source was fine-tuned instead")
            train = require_data(train)
            with progress.step(f"Fine-tuning the SavedModel by distillation ({len(train)} "
                               f"samples, at most {d.epochs} epochs, TensorFlow)"):
                result = distill(teacher, model, train, d, masks)
                stage("distill", [*deferred, result.note()], {})
            deferred = []
    stages[-1].notes.extend(deferred)
    return path, stages
