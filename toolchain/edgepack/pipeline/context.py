"""What one build's stages share: the request, what it resolved to, and what they report.

The orchestrator (build.py) makes one ``BuildContext`` per build and hands it to every stage;
stages read the request and the catalog through it and add their warnings, notes and tool
versions to it. Everything else a stage needs it is given by the stage before.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..cache.records import BuildSteps
from ..cache.store import StepCache
from ..config.catalog import Catalog, load_catalog
from ..config.profiles import ROLE_NAMES, Profile
from ..config.project import PROJECT_FILE
from ..config.targets import Target
from ..data.dataset import Dataset
from ..limits import guarded
from ..progress import Progress
from ..report.parts import SkippedFormat
from ..runtimes.integer_semantics import as_written_for
from ..signature import Signature
from ..validate import accuracy as acc
from ..validate.floor import InputFloor, InputFloors
from .inputs import BuildInputs, project_of, resolve_inputs

if TYPE_CHECKING:
    from ..devices.inventory import Device
    from ..request import BuildRequest


@dataclass
class BuildContext:
    """One build's shared state (one model, one target)."""

    request: BuildRequest
    inputs: BuildInputs
    catalog: Catalog
    target: Target
    profile: Profile  # the profile asked for (the plan may take its no-calibration fallback)
    output: Path
    progress: Any  # a Progress, every step checked against --max-seconds/--max-memory-mb
    steps: BuildSteps | None  # the step cache; None: every step runs afresh
    metric: acc.UserMetric | None = None  # --metric, unless it names the first output's role
    boards: list[Device] = field(default_factory=list)  # --device, resolved before any step
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # build-wide facts (fixed shapes, exports)
    tools: dict[str, str] = field(default_factory=dict)  # tool -> version, for the report
    skipped: list[SkippedFormat] = field(default_factory=list)  # formats not built, and why

    @classmethod
    def create(cls, request: BuildRequest, progress: Progress | None = None) -> BuildContext:
        """Resolve the request: its project, catalog, target and profile, the output folder."""
        project = project_of(request)
        inputs = resolve_inputs(request, project)
        catalog = load_catalog(
            [*(project.targets_dirs if project else []), *request.catalog.targets_dirs],
            [*(project.profiles_dirs if project else []), *request.catalog.profiles_dirs])
        target = catalog.targets.get(request.target)
        metric = request.validation.metric
        return cls(
            request=request, inputs=inputs, catalog=catalog, target=target,
            profile=catalog.profile_for(target, request.profile),
            output=request.output.output or Path("build") / f"{inputs.name}-{target.name}",
            progress=guarded(progress or Progress()),
            steps=BuildSteps(StepCache(request.cache.cache_dir)) if request.cache.cache else None,
            metric=acc.UserMetric.load(metric) if metric and metric not in ROLE_NAMES else None,
            boards=_boards(request, inputs))

    @property
    def int8_as_written(self) -> bool:
        """Whether int8 files are judged as their ops are written rather than through this
        host's kernels (runtimes/integer_semantics.py ``as_written_for``)."""
        return as_written_for(self.target.arch, self.target.isa)

    @property
    def threads(self) -> int:
        """Host latency uses as many threads as the target has cores, at most the host's."""
        wanted = self.request.validation.threads or self.target.device.cores
        return max(1, min(wanted, os.cpu_count() or 1))

    def accuracy(self, outputs: list[np.ndarray], data: Dataset) -> acc.Accuracy | None:
        """Accuracy on labelled data: top-1/top-5 for a classifier, the user's metric."""
        return acc.measure(outputs, data, self.metric)

    def warn(self, message: str) -> None:
        """A warning for the report that the user also sees now."""
        self.warnings.append(message)
        self.progress.warn(message)

    def not_built(self, fmt: str, precision: str, reason: str) -> None:
        """A format the build gave up on: recorded for the report, and said now."""
        self.skipped.append(SkippedFormat(fmt, precision, reason))
        self.warn(f"{fmt} not built: {reason}")


def _boards(request: BuildRequest, inputs: BuildInputs) -> list[Device]:
    """The --device boards from the inventory (the user's, then the project's), so a name
    that is not there fails the build before its first step."""
    names = tuple(dict.fromkeys(request.devices.devices))
    if not names:
        return []
    from ..devices.inventory import load_inventory

    project = inputs.project.path if inputs.project else Path.cwd() / PROJECT_FILE
    inventory = load_inventory(project_file=project)
    return [inventory.get(name) for name in names]


@dataclass(frozen=True)
class Yardstick:
    """What every artifact is measured against: the source model's outputs on the eval inputs
    (the ORIGINAL model's, when structural passes change the source), its accuracy, and the
    input-rounding floor."""

    evaluation: Dataset
    outputs: list[np.ndarray]
    signature: Signature
    accuracy: acc.Accuracy | None
    #: the source fed its input rounded to int8 steps over the calibration data's range (the
    #: report's; int8 builds only)
    floor: InputFloor | None = None
    #: each int8 file's floor, on the grid read from the file (int8 builds only)
    floors: InputFloors | None = None
