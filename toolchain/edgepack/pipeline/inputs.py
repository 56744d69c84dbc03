"""What one build reads: the model file, its data, labels and input preparation.

The request's options come first; a project (``edgepack.yaml``: named by ``--project``, or the
one in the model folder, or in this folder when no model is named) fills in the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..config.project import LoadedProject, find_project, load_project
from ..data.preprocess import Preprocessing
from ..errors import UsageError
from ..signature import Normalization

if TYPE_CHECKING:
    from ..request import BuildRequest


@dataclass(frozen=True)
class BuildInputs:
    """The model one build converts, what it is called, and the data it is measured on."""

    model: Path
    name: str
    version: str = "0.0.0"
    calibration: Path | None = None
    evaluation: Path | None = None
    labels: list[str] | None = None
    normalization: Normalization | None = None
    preprocessing: Preprocessing | None = None
    #: fixed input shapes (the request's, else the project's ``input_shape``)
    input_shapes: dict[str, tuple[int, ...]] | None = None
    #: batch axes of inputs whose batch is not axis 0 (the project's ``batch_axis``)
    batch_axes: dict[str, int] | None = None
    project: LoadedProject | None = None


def project_of(request: BuildRequest) -> LoadedProject | None:
    """The request's project: ``--project``, else the model folder's (this folder's when no
    model is named), else None (a model file is built on its own)."""
    if request.catalog.project is not None:
        if request.model is not None:
            raise UsageError("--project names the model to build: MODEL is not taken with it",
                             hint="drop MODEL, or drop --project")
        return load_project(request.catalog.project)
    where = request.model if request.model is not None else Path.cwd()
    return find_project(where) if where.is_dir() else None


def resolve_inputs(request: BuildRequest, project: LoadedProject | None) -> BuildInputs:
    """The request's model and data over the project's; with a project of several models the
    request names one (``models``), as a matrix cell does."""
    given = dict(request.data.input_shapes) if request.data.input_shapes else None
    if project is None:
        if request.model is None:
            raise UsageError("which model? pass MODEL or run in a folder with an edgepack.yaml")
        model = request.model
        return BuildInputs(model=model, name=request.output.name or model.stem or model.name,
                           calibration=request.data.calibration,
                           evaluation=request.data.evaluation, input_shapes=given)
    names = request.matrix.models
    if len(names) > 1:
        raise UsageError(f"one build is for one model, not {', '.join(names)}")
    if names:
        project = project.for_model(names[0])
    spec = project.spec
    return BuildInputs(
        model=project.model, name=request.output.name or project.name, version=spec.version,
        calibration=request.data.calibration or project.resolve(spec.calibration),
        evaluation=request.data.evaluation or project.resolve(spec.eval),
        labels=project.labels(),
        normalization=spec.normalization.to_normalization() if spec.normalization else None,
        preprocessing=spec.preprocessing.to_preprocessing() if spec.preprocessing else None,
        input_shapes=given or {n: tuple(s) for n, s in spec.input_shape.items()} or None,
        batch_axes=spec.batch_axis or None, project=project)
