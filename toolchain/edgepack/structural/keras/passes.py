"""prune -> low-rank -> distill for a Keras source, rebuilt and fine-tuned in Keras.

Each stage is saved as a new ``.keras`` file of standard layers and measured like the original;
the last one is what the build converts instead of the original.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...config.structural import PruneSettings, Structural
from ...data.dataset import Dataset
from ..stages import UNSTRUCTURED_NOTE, Evaluation, StageReport, measure, sparsity_details
from ..training import choose_student, require_data
from . import graph as kg
from .distill import distill
from .lowrank import factorize_keras
from .prune import prune_structured, prune_unstructured

if TYPE_CHECKING:
    from ...progress import Progress


def run_keras(source: Path, settings: Structural, ev: Evaluation, workdir: Path,
              progress: Progress, train: Dataset | None,
              student: Path | None) -> tuple[Path, list[StageReport]]:
    """The last stage's ``.keras`` file and one report per stage, the original first."""
    teacher = kg.load(source)
    stages = [measure("original", source, "keras", kg.weight_counts(teacher), ev)]
    model, masks, path, changed = kg.load(source), {}, source, False

    def stage(name: str, notes: list[str], details: dict[str, Any]) -> None:
        nonlocal path
        path = kg.save(model, workdir / f"{source.stem}.{name}.keras")
        stages.append(measure(name, path, "keras", kg.weight_counts(model), ev, notes, details))

    if settings.prune is not None:
        p = settings.prune
        with progress.step(f"Pruning ({'structured' if p.structured else 'unstructured'}, "
                           f"sparsity {p.sparsity:g})"):
            if p.structured:
                model, plan = prune_structured(model, p)
                stage("prune", [] if plan.outputs else ["no layer could be narrowed"],
                      plan.details())
                changed = bool(plan.outputs)
            else:
                masks = prune_unstructured(model, p)
                stage("prune", [UNSTRUCTURED_NOTE], sparsity_details(masks))
                changed = bool(masks)
    if settings.lowrank is not None:
        with progress.step("Low-rank factorization (truncated SVD)"):
            model, decisions = factorize_keras(model, settings.lowrank)
            masks = {n: m for n, m in masks.items()
                     if tuple(model.get_layer(n).kernel.shape) == m.shape}
            stage("lowrank", [], {"layers": [d.to_dict() for d in decisions]})
        changed = changed or any(d.rank is not None for d in decisions)
    if settings.distill is not None:
        d = settings.distill
        model, what, masks = choose_student(
            d, student, changed, model, masks, kg.load,
            lambda width: prune_structured(model, PruneSettings(
                sparsity=1 - width, structured=True, skip=[]))[0])
        train = require_data(train)
        with progress.step(f"Distilling into the {what} student ({len(train)} samples, at most "
                           f"{d.epochs} epochs)"):
            result = distill(teacher, model, train, d, masks)
            stage("distill", [f"student: {what}", result.note()], {})
    return path, stages
