"""``run_passes``: prune -> low-rank -> distill on the source, each stage saved and measured.

Keras sources are rebuilt and (with distillation) fine-tuned in Keras; the result is a new
``.keras`` file of standard layers that the build converts instead of the original. PyTorch
ExportedPrograms are edited and fine-tuned in PyTorch (torch_passes.py) and SavedModels in
TensorFlow on their restored variables (savedmodel_passes.py). ONNX sources get the
post-training passes on their weights and a note that no fine-tuning was possible. TFLite and
TorchScript are refused with a hint: neither is trainable here nor editable weight by weight.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config.structural import Structural
from ..data.dataset import Dataset
from ..errors import UsageError
from .keras import graph as kg
from .onnx import weights as onnx_weights
from .stages import UNSTRUCTURED_NOTE, Evaluation, StageReport, measure, sparsity_details
from .training import choose_student, require_data

if TYPE_CHECKING:
    from ..progress import Progress

NO_FINE_TUNING = ("no fine-tuning possible: {fmt} sources cannot be trained here, so pruning and "
                  "factorization ran post-training on the weights")


def run_passes(source: Path, fmt: str, settings: Structural, ev: Evaluation,
               workdir: Path, progress: Progress, train: Dataset | None = None,
               student: Path | None = None) -> tuple[Path, list[StageReport]]:
    """The new source file and one report per stage, the original first.

    ``train`` is what distillation learns from (never the eval data that measures the result);
    ``student`` is a user-supplied model (of the source's framework) to distil into.
    """
    if fmt == "keras":
        return _keras(source, settings, ev, workdir, progress, train, student)
    if fmt == "onnx":
        return _onnx(source, settings, ev, workdir, progress)
    if fmt == "torch":
        from .torch.passes import run_torch

        return run_torch(source, settings, ev, workdir, progress, train, student)
    if fmt == "savedmodel":
        from .savedmodel.passes import run_savedmodel

        return run_savedmodel(source, settings, ev, workdir, progress, train, student)
    hint = ("export the module with torch.export.save (.pt2)" if fmt == "torchscript" else
            "give the Keras, SavedModel, PyTorch (.pt2) or ONNX model instead")
    raise UsageError(f"structural passes do not support {fmt} sources", hint=hint)


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
        from ..config.structural import PruneSettings

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
