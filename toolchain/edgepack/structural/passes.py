"""``run_passes``: prune -> low-rank -> distill on the source, each stage saved and measured.

Keras sources are rebuilt and (with distillation) fine-tuned in Keras; the result is a new
``.keras`` file of standard layers that the build converts instead of the original. ONNX
sources get the post-training passes on their weights and a note that no fine-tuning was
possible. Other formats are refused with a hint: their graphs are neither trainable here nor
editable weight by weight.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data import Dataset
from ..errors import UsageError
from . import keras_graph as kg
from . import onnx_weights
from .settings import Structural
from .stages import Evaluation, StageReport, measure

if TYPE_CHECKING:
    from ..pipeline import Progress

NO_FINE_TUNING = ("no fine-tuning possible: {fmt} sources cannot be trained here, so pruning and "
                  "factorization ran post-training on the weights")


def run_passes(source: Path, fmt: str, settings: Structural, ev: Evaluation,
               workdir: Path, progress: Progress, train: Dataset | None = None,
               student: Path | None = None) -> tuple[Path, list[StageReport]]:
    """The new source file and one report per stage, the original first.

    ``train`` is what distillation learns from (never the eval data that measures the result);
    ``student`` is a user-supplied Keras model to distil into.
    """
    if fmt == "keras":
        return _keras(source, settings, ev, workdir, progress, train, student)
    if fmt == "onnx":
        return _onnx(source, settings, ev, workdir, progress)
    raise UsageError(f"structural passes do not support {fmt} sources yet",
                     hint="give the Keras (.keras) or ONNX model instead")


def _keras(source: Path, settings: Structural, ev: Evaluation, workdir: Path,
           progress: Progress, train: Dataset | None,
           student: Path | None) -> tuple[Path, list[StageReport]]:
    from .distill import distill
    from .lowrank import factorize_keras
    from .prune import prune_structured, prune_unstructured

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
                details = {"kept_channels": {k: len(v) for k, v in plan.outputs.items()},
                           "kept_width": plan.skipped}
                stage("prune", [] if plan.outputs else ["no layer could be narrowed"], details)
                changed = bool(plan.outputs)
            else:
                masks = prune_unstructured(model, p)
                stage("prune", ["unstructured zeros shrink the file only once compressed; "
                                "runtimes still compute densely"],
                      {"sparsity": {n: float(1 - m.mean()) for n, m in masks.items()}})
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
        if student is not None:
            model, what, masks = kg.load(student), f"given ({student.name})", {}
        elif d.width is not None:
            from .settings import PruneSettings

            model, _ = prune_structured(model, PruneSettings(sparsity=1 - d.width,
                                                             structured=True, skip=[]))
            what, masks = f"width x{d.width:g}", {}
        elif changed:
            what = "pruned/factorized"
        else:
            raise UsageError("nothing to distil into: the passes left the model as it was",
                             hint="add --prune/--lowrank, a distill width in the profile, or "
                                  "--student MODEL")
        if train is None:
            raise UsageError("distillation needs training data",
                             hint="pass --train DATA (or --calibration DATA, used unlabelled)")
        with progress.step(f"Distilling into the {what} student ({len(train)} samples, at most "
                           f"{d.epochs} epochs)"):
            result = distill(teacher, model, train, d, masks)
            stage("distill", [f"student: {what}", result.note()], {})
    return path, stages


def _onnx(source: Path, settings: Structural, ev: Evaluation, workdir: Path,
          progress: Progress) -> tuple[Path, list[StageReport]]:
    original = onnx_weights.load(source)
    stages = [measure("original", source, "onnx", onnx_weights.weight_counts(original), ev)]
    note = NO_FINE_TUNING.format(fmt="ONNX")
    path = source
    if settings.prune is not None:
        with progress.step(f"Pruning ONNX weights (sparsity {settings.prune.sparsity:g})"):
            model = onnx_weights.load(path)
            reached = onnx_weights.prune_onnx(model, settings.prune)
            notes = [note] + (["structured pruning needs a trainable source: unstructured "
                               "pruning was applied instead"] if settings.prune.structured
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
                                  [note], {"layers": [d.to_dict() for d in decisions]}))
    if settings.distill is not None:
        stages[-1].notes.append("distillation skipped: ONNX sources cannot be trained here")
    return path, stages
