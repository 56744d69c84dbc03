"""Every option of a build, made once and passed whole: CLI -> API -> matrix -> each cell.

The command line and Python callers make one ``BuildRequest``; the API decides whether it is a
single build or a project's matrix, and each matrix cell gets the same request narrowed to its
model, target and output folder. Options are declared here once, grouped by what they act on, so
none can be dropped on the way (a matrix cell once lost the data and validation options).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import UsageError


@dataclass(frozen=True)
class DataOptions:
    """The data a build feeds the model (None: the project's, else none)."""

    calibration: Path | None = None  # calibration samples (int8)
    evaluation: Path | None = None  # samples fidelity and accuracy are measured on
    input_shapes: Mapping[str, tuple[int, ...]] | None = None  # fixed shapes of inputs


@dataclass(frozen=True)
class ValidationOptions:
    """How artifacts are measured and judged."""

    threads: int | None = None  # host latency threads (default: the target's cores)
    warmup: int = 10
    runs: int = 100
    metric: str | None = None  # "package.module:function", called as f(outputs, labels)
    allow_accuracy_drop: bool = False  # an artifact over its budget still passes

    def __post_init__(self) -> None:
        _at_least("threads", self.threads, 1)
        _at_least("warmup", self.warmup, 0)
        _at_least("runs", self.runs, 1)


@dataclass(frozen=True)
class DeviceOptions:
    """Boards the deliverables also run on, over SSH."""

    devices: tuple[str, ...] = ()
    trust_new_host: bool = False


@dataclass(frozen=True)
class StructuralOptions:
    """Structural passes on the source (None/False: take the profile's section)."""

    prune: float | None = None  # fraction of weights (or channels) to remove
    structured: bool = False
    lowrank: float | None = None  # energy kept by truncated SVD
    distill: bool = False
    student: Path | None = None
    train: Path | None = None  # distillation data (default: the calibration data)

    def __post_init__(self) -> None:
        if self.prune is not None and not 0 < self.prune < 1:
            raise UsageError(f"prune must be between 0 and 1, got {self.prune}")
        if self.lowrank is not None and not 0 < self.lowrank <= 1:
            raise UsageError(f"lowrank must be in (0, 1], got {self.lowrank}")


@dataclass(frozen=True)
class CacheOptions:
    """Reuse (and store) build steps and matrix cells."""

    cache: bool = True
    cache_dir: Path | None = None  # None: $EDGEPACK_CACHE, else ~/.cache/edgepack


@dataclass(frozen=True)
class OutputOptions:
    """Where the build goes and what it is called."""

    output: Path | None = None  # single build: the folder; matrix: the parent of the cells
    force: bool = False  # replace an output folder edgepack did not write for this build
    name: str | None = None  # single build: the model's name (default: the file's)


@dataclass(frozen=True)
class MatrixOptions:
    """A project's matrix of (model, target) cells."""

    models: tuple[str, ...] = ()  # narrow a project of several models
    jobs: int = 1
    executor: Literal["local", "ray"] = "local"
    address: str | None = None  # the Ray cluster

    def __post_init__(self) -> None:
        _at_least("jobs", self.jobs, 1)
        if self.executor not in ("local", "ray"):
            raise UsageError(f"executor must be 'local' or 'ray', got '{self.executor}'")


@dataclass(frozen=True)
class CatalogOptions:
    """Where targets, profiles and the project file come from (besides the built-in ones)."""

    targets_dirs: tuple[Path, ...] = ()
    profiles_dirs: tuple[Path, ...] = ()
    project: Path | None = None  # an edgepack.yaml; None: the model folder's, or ./edgepack.yaml


_GROUPS: dict[str, type] = {
    "data": DataOptions, "validation": ValidationOptions, "devices": DeviceOptions,
    "structural": StructuralOptions, "cache": CacheOptions, "output": OutputOptions,
    "matrix": MatrixOptions, "catalog": CatalogOptions}
#: flat option name -> its group
_GROUP_OF = {f.name: group for group, cls in _GROUPS.items() for f in dataclasses.fields(cls)}
_PATHS = {"calibration", "evaluation", "student", "train", "cache_dir", "output", "project"}
_PATH_TUPLES = {"targets_dirs", "profiles_dirs"}
_NAME_TUPLES = {"devices", "models"}


@dataclass(frozen=True)
class BuildRequest:
    """One build: a model (file, folder or project; None: the project here) for targets."""

    model: Path | None = None
    targets: tuple[str, ...] = ()  # none: the project's
    profile: str | None = None  # none: each target's default
    data: DataOptions = field(default_factory=DataOptions)
    validation: ValidationOptions = field(default_factory=ValidationOptions)
    devices: DeviceOptions = field(default_factory=DeviceOptions)
    structural: StructuralOptions = field(default_factory=StructuralOptions)
    cache: CacheOptions = field(default_factory=CacheOptions)
    output: OutputOptions = field(default_factory=OutputOptions)
    matrix: MatrixOptions = field(default_factory=MatrixOptions)
    catalog: CatalogOptions = field(default_factory=CatalogOptions)

    @classmethod
    def create(cls, model: str | Path | None = None,
               targets: str | Sequence[str] | None = None, *, profile: str | None = None,
               **options: Any) -> BuildRequest:
        """A request from flat option names (``calibration=``, ``runs=``, ``devices=``...),
        each sorted into its group by name: how the CLI and keyword callers make one."""
        groups: dict[str, dict[str, Any]] = {g: {} for g in _GROUPS}
        for name, value in options.items():
            groups[_group_of(name)][name] = _coerce(name, value)
        return cls(model=Path(model) if model is not None else None,
                   targets=_names(targets), profile=profile,
                   **{g: _GROUPS[g](**kw) for g, kw in groups.items()})

    def with_options(self, **options: Any) -> BuildRequest:
        """A copy with some options changed (``model``, ``targets``, ``profile`` and the flat
        names of ``create``)."""
        changed: dict[str, Any] = {}
        for name, value in options.items():
            if name == "model":
                changed[name] = Path(value) if value is not None else None
            elif name == "targets":
                changed[name] = _names(value)
            elif name == "profile":
                changed[name] = value
            else:
                group = _group_of(name)
                current = changed.get(group, getattr(self, group))
                changed[group] = dataclasses.replace(current, **{name: _coerce(name, value)})
        return dataclasses.replace(self, **changed)

    @property
    def target(self) -> str:
        """The one target of a single build (a matrix cell is narrowed to one)."""
        if len(self.targets) != 1:
            raise UsageError("which target? pass one --target NAME" if not self.targets else
                             f"one build is for one target, not {', '.join(self.targets)}",
                             hint="see `edgepack targets`")
        return self.targets[0]

    def flat(self) -> dict[str, Any]:
        """Every option by its flat name (the inverse of ``create``), for keys and records."""
        out: dict[str, Any] = {"model": self.model, "targets": self.targets,
                               "profile": self.profile}
        for group in _GROUPS:
            out.update(dataclasses.asdict(getattr(self, group)))
        return out


def option_names() -> tuple[str, ...]:
    """Every flat option name ``BuildRequest.create`` takes."""
    return tuple(_GROUP_OF)


def _group_of(name: str) -> str:
    if name not in _GROUP_OF:
        raise UsageError(f"unknown build option '{name}'",
                         hint="options: " + ", ".join(sorted(_GROUP_OF)))
    return _GROUP_OF[name]


def _names(value: str | Sequence[str] | None) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value or ())


def _coerce(name: str, value: Any) -> Any:
    """Paths as Path and repeatable options as tuples, whatever the caller passed."""
    if name in _PATH_TUPLES:
        return tuple(Path(v) for v in ([value] if isinstance(value, (str, Path)) else
                                       value or ()))
    if name in _NAME_TUPLES:
        return _names(value)
    if value is None:
        return None
    if name in _PATHS:
        return Path(value)
    if name == "input_shapes":
        return {k: tuple(int(d) for d in v) for k, v in dict(value).items()} or None
    return value


def _at_least(name: str, value: int | None, least: int) -> None:
    if value is not None and value < least:
        raise UsageError(f"{name} must be at least {least}, got {value}")
