"""``edgepack.build``: what the CLI and Python callers call to build.

It takes one BuildRequest (or the model, targets and flat options to make one) and decides
what it is: a single build of one model for one target, or a project's matrix of (model,
target) cells, when the project has several models, models are named, or there are several
targets. The request is passed whole either way.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .config.project import LoadedProject
from .errors import BudgetError, EdgepackError, UsageError
from .pipeline.build import run_build
from .pipeline.cell import Cell
from .pipeline.inputs import project_of
from .pipeline.matrix import MatrixResult, run_matrix
from .progress import Progress
from .report.model import Report
from .request import BuildRequest


def build(request_or_model: BuildRequest | str | Path | Any = None,
          target: str | Sequence[str] | None = None, *, progress: Progress | None = None,
          on_cell: Callable[[Cell], None] | None = None, example_inputs: Any = None,
          **options: Any) -> Report | MatrixResult:
    """Build a model for a target: the Report (also written to the output folder), or for a
    project's matrix the MatrixResult of its cells (each folder has its own report).

    ``request_or_model`` is a BuildRequest, or a model file or folder, a project folder
    holding ``edgepack.yaml`` (whose settings fill in whatever is not passed), None (the
    project in this folder), or a ``torch.nn.Module`` together with ``example_inputs``.
    ``options`` are BuildRequest's flat option names (``calibration=``, ``evaluation=``,
    ``runs=``, ``prune=``, ``cache=False``...). ``progress`` sees a single build's steps,
    ``on_cell`` each matrix cell as it finishes.
    """
    if isinstance(request_or_model, BuildRequest):
        request = request_or_model.with_options(
            **options, **({"targets": target} if target is not None else {}))
    elif request_or_model is None or isinstance(request_or_model, (str, Path)):
        request = BuildRequest.create(request_or_model, target, **options)
    else:
        return _build_module(request_or_model, target, example_inputs, progress, options)
    project = project_of(request)
    if project is not None and is_matrix(request, project):
        return run_matrix(request, on_cell)
    if request.matrix.executor != "local":
        raise UsageError("--executor ray builds a project's matrix; this is a single build")
    if project is not None and not request.targets:
        request = request.with_options(targets=project.spec.targets)
    return run_build(request, progress)


def is_matrix(request: BuildRequest, project: LoadedProject) -> bool:
    """A project of several models, models named, or several targets is built as a matrix."""
    targets = request.targets or tuple(project.spec.targets)
    return bool(project.spec.models or request.matrix.models or len(targets) > 1)


def verdict(result: Report | MatrixResult,
            allow_accuracy_drop: bool = False) -> tuple[EdgepackError | None, list[str]]:
    """(the error a build exits with, or None; warnings to show): a deliverable over its
    budget or failing on a device is exit 3 unless ``allow_accuracy_drop`` accepts it (then
    a warning says so); a matrix exits as its worst cell."""
    if isinstance(result, MatrixResult):
        return result.error(), result.warnings()
    if result.passed:
        return None, []
    if allow_accuracy_drop:
        return None, ["over the accuracy budget, accepted with --allow-accuracy-drop"]
    failed = [f"{a.file}: " + ", ".join(f"{c.label()} {c.reading()}"
                                        for c in a.budget.failures())
              for a in result.artifacts if a.budget and not a.budget.passed]
    on_device = [f"{a.file} on {d.device}: " + "; ".join(d.failures)
                 for a in result.artifacts for d in a.devices if not d.passed]
    what = "over the accuracy budget" if failed else "on-device validation failed"
    return BudgetError(f"{what}: " + "; ".join(failed + on_device),
                       hint="the build folder and report were written for inspection"), []


def _build_module(module: Any, target: str | Sequence[str] | None, example_inputs: Any,
                  progress: Progress | None, options: dict[str, Any]) -> Report:
    """A torch.nn.Module, exported with ``torch.export`` to a temporary .pt2, then built."""
    from .pipeline.source import export_module

    progress = progress or Progress()
    with tempfile.TemporaryDirectory(prefix="edgepack-src-") as tmp:
        with progress.step("Exporting the PyTorch module (torch.export)"):
            path, note = export_module(module, example_inputs, Path(tmp),
                                       options.get("name") or type(module).__name__.lower())
        return run_build(BuildRequest.create(path, target, **options), progress,
                         notes=[f"PyTorch module: {note}"])
