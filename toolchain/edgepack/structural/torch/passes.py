"""prune -> low-rank -> distill for a PyTorch ExportedProgram source, trained in PyTorch.

Each stage edits the program's module (graph.py), exports it again to a ``.pt2`` that is
measured like the original, and reloads that file, so every pass sees the shapes the previous
one left. The last ``.pt2`` is what the build converts. What the graph did not allow (a layer
that keeps its width, a layer not worth factorizing) is in the stage's details and notes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...config.structural import PruneSettings, Structural
from ...data.dataset import Dataset
from ...errors import UsageError
from ...formats import detect
from ..stages import UNSTRUCTURED_NOTE, Evaluation, StageReport, measure, sparsity_details
from ..training import choose_student, require_data
from . import graph as tg

if TYPE_CHECKING:
    from ...progress import Progress

EVAL_MODE = ("fine-tuned with the module in eval mode (an exported program cannot switch "
             "modes): batch-norm statistics frozen, dropout off")


def _load_student(path: Path) -> Any:
    if detect(path).name != "torch":
        raise UsageError("a PyTorch source distils into a PyTorch student",
                         hint="save the student with torch.export.save (.pt2)")
    return tg.load(path)[0]


def run_torch(source: Path, settings: Structural, ev: Evaluation, workdir: Path,
              progress: Progress, train: Dataset | None,
              student: Path | None) -> tuple[Path, list[StageReport]]:
    from .distill import distill
    from .lowrank import factorize_torch
    from .prune import prune_structured, prune_unstructured

    teacher, signature = tg.load(source)
    stages = [measure("original", source, "torch", tg.weight_counts(teacher), ev)]
    model, path, masks, changed = tg.load(source)[0], source, {}, False

    def stage(name: str, notes: list[str], details: dict[str, Any]) -> None:
        nonlocal path, model
        path = tg.save(model, signature, workdir / f"{source.stem}.{name}.pt2")
        stages.append(measure(name, path, "torch", tg.weight_counts(model), ev, notes, details))
        model = tg.load(path)[0]

    if settings.prune is not None:
        p = settings.prune
        with progress.step(f"Pruning ({'structured' if p.structured else 'unstructured'}, "
                           f"sparsity {p.sparsity:g})"):
            if p.structured:
                plan = prune_structured(model, p)
                notes = [] if plan.outputs else ["no layer could be narrowed"]
                if plan.skipped:
                    notes.append(f"{len(plan.skipped)} layer(s) kept their width: "
                                 + "; ".join(f"{k}: {v}" for k, v in plan.skipped.items()))
                stage("prune", notes, plan.details())
                changed = bool(plan.outputs)
            else:
                masks = prune_unstructured(model, p)
                stage("prune", [UNSTRUCTURED_NOTE], sparsity_details(masks))
                changed = bool(masks)
    if settings.lowrank is not None:
        with progress.step("Low-rank factorization (truncated SVD)"):
            decisions = factorize_torch(model, settings.lowrank)
            masks = {n: m for n, m in masks.items() if tuple(tg.get(model, n).shape) == m.shape}
            stage("lowrank", [], {"layers": [d.to_dict() for d in decisions]})
        changed = changed or any(d.rank is not None for d in decisions)
    if settings.distill is not None:
        d = settings.distill
        def narrow(width: float) -> Any:  # channels removed in place
            prune_structured(model, PruneSettings(sparsity=1 - width, structured=True, skip=[]))
            return model

        model, what, masks = choose_student(d, student, changed, model, masks, _load_student,
                                            narrow)
        train = require_data(train)
        with progress.step(f"Distilling into the {what} student ({len(train)} samples, at most "
                           f"{d.epochs} epochs, PyTorch)"):
            result = distill(teacher, model, signature, train, d, masks)
            stage("distill", [f"student: {what}", result.note(), EVAL_MODE], {})
    return path, stages
