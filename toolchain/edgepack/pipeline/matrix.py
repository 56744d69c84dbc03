"""Many models x many targets: the build matrix of an ``edgepack.yaml`` zoo.

Each (model, target) cell is the request narrowed to that model, that target and the folder
``OUT/<model>-<target>``, built as an ordinary single build (cell.py) in its own process
(frameworks hold memory and threads, and are not thread-safe), ``jobs`` at a time, or as Ray
tasks (ray_cells.py). Every option of the request reaches every cell. A cell whose inputs did
not change since a previous run is taken from the build cache instead of being built again; a
cell that is built again still reuses every step the change did not touch, from the step cache.

A cell's folder that exists and is not an earlier build of that same cell is not replaced
without ``force`` (an earlier build of the cell is: that is what a rebuild is).
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config.project import LoadedProject
from ..errors import EdgepackError, OutputError, UsageError
from .cell import Cell, build_cell, matrix_catalog
from .inputs import project_of

if TYPE_CHECKING:
    from ..request import BuildRequest


@dataclass
class MatrixResult:
    """Every cell of a matrix build, in plan order, and whether an over-budget cell passes."""

    cells: list[Cell]
    allow_accuracy_drop: bool = False

    @property
    def exit_code(self) -> int:
        """The worst cell's exit code (3 for a cell over budget, unless that is allowed)."""
        over = 0 if self.allow_accuracy_drop else 3
        return max((c.exit_code or (over if c.status == "over budget" else 0))
                   for c in self.cells)

    @property
    def passed(self) -> bool:
        return self.exit_code == 0

    def error(self) -> EdgepackError | None:
        """What the matrix failed with (the worst cell's exit code), or None."""
        code = self.exit_code
        if not code:
            return None
        failed = [f"{c.model}/{c.target}: {c.status}" for c in self.cells
                  if c.status == "failed"
                  or (c.status == "over budget" and not self.allow_accuracy_drop)]
        error = EdgepackError(f"{len(failed)} of {len(self.cells)} cells did not pass: "
                              + "; ".join(failed))
        error.exit_code = code
        return error

    def warnings(self) -> list[str]:
        """The cells over budget that ``allow_accuracy_drop`` let pass."""
        if not self.allow_accuracy_drop:
            return []
        return [f"{c.model}/{c.target}: over the accuracy budget, accepted with "
                "--allow-accuracy-drop" for c in self.cells if c.status == "over budget"]

    def to_list(self) -> list[dict[str, Any]]:
        return [c.to_dict() for c in self.cells]


def plan(project: LoadedProject, models: tuple[str, ...] = (),
         targets: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(model, target) pairs: each model's targets (its own, else the project's), narrowed."""
    names = project.model_names
    unknown = [m for m in models if m not in names]
    if unknown:
        raise UsageError(f"no model {', '.join(unknown)} in {project.path}",
                         hint=f"models: {', '.join(names)}")
    pairs = []
    for name in models or tuple(names):
        spec = project.for_model(name).spec
        for target in targets or tuple(spec.targets):
            pairs.append((name, target))
    if not pairs:
        raise UsageError(f"nothing to build: {project.path} names no targets",
                         hint="add `targets:` to edgepack.yaml or pass --target")
    return pairs


def cell_request(request: BuildRequest, project: LoadedProject, model: str,
                 target: str) -> BuildRequest:
    """The request narrowed to one cell: its model, its target, its own output folder, and
    the project by its file's full path (a worker need not run in this folder)."""
    parent = request.output.output or Path("build")
    return request.with_options(model=None, project=project.path.resolve(), targets=(target,),
                                models=(model,), output=parent / f"{model}-{target}")


def run_matrix(request: BuildRequest,
               on_cell: Callable[[Cell], None] | None = None) -> MatrixResult:
    """Build every cell of the request's project; ``on_cell`` sees each one as it finishes
    (for a live view)."""
    project = project_of(request)
    if project is None:
        raise UsageError("a build matrix needs a project: there is no edgepack.yaml here",
                         hint="pass the project folder, or --project FILE")
    if request.output.name is not None:
        raise UsageError("a matrix's cells are named after the project's models: name is for "
                         "a single build")
    pairs = plan(project, request.matrix.models, request.targets)
    targets = matrix_catalog(project, request).targets
    cells: dict[tuple[str, str], Cell] = {}
    todo = []
    for m, t in pairs:
        narrowed = cell_request(request, project, m, t)
        refused = _refused(narrowed, m, targets.get(t).name)
        if refused is None:
            todo.append(narrowed)
            continue
        cells[(m, t)] = refused
        if on_cell:
            on_cell(refused)
    for cell in _run_cells(todo, request):
        cells[(cell.model, cell.target)] = cell
        if on_cell:
            on_cell(cell)
    return MatrixResult([cells[p] for p in pairs], request.validation.allow_accuracy_drop)


def _run_cells(requests: list[BuildRequest], request: BuildRequest) -> Iterator[Cell]:
    """The cells as they finish: one after the other here, ``jobs`` processes at a time, or
    as Ray tasks."""
    options = request.matrix
    if options.executor == "ray":
        from .ray_cells import run_on_ray

        yield from run_on_ray(requests, options.address)
    elif options.jobs <= 1 or len(requests) <= 1:
        for narrowed in requests:
            yield build_cell(narrowed)
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=options.jobs, mp_context=context) as pool:
            futures = [pool.submit(build_cell, narrowed) for narrowed in requests]
            for future in as_completed(futures):
                yield future.result()


def _refused(request: BuildRequest, model: str, target: str) -> Cell | None:
    """A failed cell when its folder exists, is not empty and is not an earlier build of
    this same cell (``target``: the target's own name), unless ``force``; else None."""
    out = request.output.output
    if request.output.force or out is None or not out.exists() or (
            out.is_dir() and not any(out.iterdir())) or _earlier_build(out, model, target):
        return None
    error = OutputError("exists and is not an earlier build of this cell", path=out,
                        hint="pass --force to replace it, or choose another -o")
    return Cell(model, request.target, "failed", str(out), error=str(error),
                exit_code=error.exit_code)


def _earlier_build(out: Path, model: str, target: str) -> bool:
    """``out`` holds an edgepack build of ``model`` for ``target`` (its report says so)."""
    try:
        report = json.loads((out / "report.json").read_text())
        return report["model"]["name"] == model and report["target"]["name"] == target
    except (OSError, ValueError, KeyError, TypeError):
        return False
