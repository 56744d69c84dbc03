"""The project file, ``edgepack.yaml``: what a folder's model is and how to build it.

With it, ``edgepack build examples/digits --target raspberrypi`` needs no other argument: the
model, its calibration and evaluation data, labels and preprocessing are named here, relative to
the file's folder.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..data.preprocess import Preprocessing
from ..errors import ConfigError
from ..signature import Normalization
from .catalog import load_yaml_model
from .profiles import ROLE_NAMES, OutputBudget, RoleName
from .targets import Strict

PROJECT_FILE = "edgepack.yaml"


class NormalizationSpec(Strict):
    """``x_model = (x_raw * scale - mean) / std``, per channel."""

    mean: list[float] = Field(default_factory=lambda: [0.0])
    std: list[float] = Field(default_factory=lambda: [1.0])
    scale: float = 1.0
    color_order: str = ""

    def to_normalization(self) -> Normalization:
        return Normalization(mean=tuple(self.mean), std=tuple(self.std), scale=self.scale,
                             color_order=self.color_order)


class PreprocessingSpec(Strict):
    """How image files become model inputs; anything left out comes from the model.

    ``resize`` sets the shorter side (aspect kept), then a centre ``crop`` x ``crop`` is taken;
    with neither, images are stretched to the model input's H x W. ``scale`` may be written as a
    fraction (``1/255``), as people do.
    """

    resize: int | None = Field(default=None, gt=0)
    crop: int | None = Field(default=None, gt=0)
    mean: list[float] | None = None
    std: list[float] | None = None
    scale: float | None = None
    color_order: Literal["RGB", "BGR", "GRAY"] | None = None
    layout: Literal["NHWC", "NCHW"] | None = None

    @field_validator("scale", mode="before")
    @classmethod
    def _fraction(cls, value: object) -> object:
        if isinstance(value, str) and "/" in value:
            try:
                return float(Fraction(value.replace(" ", "")))
            except (ValueError, ZeroDivisionError) as exc:
                raise ValueError(f"not a number or fraction: {value!r}") from exc
        return value

    def to_preprocessing(self) -> Preprocessing:
        return Preprocessing(resize=self.resize, crop=self.crop,
                             mean=None if self.mean is None else tuple(self.mean),
                             std=None if self.std is None else tuple(self.std),
                             scale=self.scale, color_order=self.color_order, layout=self.layout)


class OutputSpec(OutputBudget):
    """One output of the model (keyed by its name) or every output of a role (keyed by the
    role): what it means, and limits over the profile's budget (config/profiles.py)."""

    role: RoleName | None = None


class ModelSpec(Strict):
    """One model of a project: the file, its data and how its inputs are prepared."""

    name: str | None = None
    version: str = "0.0.0"
    model: str
    calibration: str | None = None
    eval: str | None = None
    labels: str | list[str] | None = None
    normalization: NormalizationSpec | None = None
    preprocessing: PreprocessingSpec | None = None
    targets: list[str] = Field(default_factory=list)
    #: per output name (or role): its role and its limits, e.g. ``output0: {role: detector}``
    outputs: dict[str, OutputSpec] = Field(default_factory=dict)
    #: fixed input shapes by input name, as ``--input-shape`` gives them (which wins)
    input_shape: dict[str, list[int]] = Field(default_factory=dict)
    #: the batch axis of inputs whose batch is not axis 0 (an RNN state ``[2, batch, 128]``:
    #: ``{state: 1}``): where each row of the data goes
    batch_axis: dict[str, int] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _roles_by_name(self) -> ModelSpec:
        for key, spec in self.outputs.items():
            if key in ROLE_NAMES and spec.role is not None and spec.role != key:
                raise ValueError(f"outputs.{key}: an entry keyed by a role cannot give "
                                 f"another role ({spec.role})")
        return self

    @field_validator("input_shape")
    @classmethod
    def _positive(cls, value: dict[str, list[int]]) -> dict[str, list[int]]:
        for name, dims in value.items():
            if any(d < 1 for d in dims):
                raise ValueError(f"input_shape of '{name}': every dimension must be >= 1")
        return value


class VerifySettings(Strict):
    """How ``edgepack verify`` treats bundles in this project (flags add to it)."""

    #: refuse a bundle without a valid signature by one of ``trusted_keys``
    require_signature: bool = False
    #: a folder of ed25519 public keys (.pub), relative to the project file
    trusted_keys: str | None = None


class Project(ModelSpec):
    """A project: one model (the fields of ModelSpec) or a zoo of them (``models``), the
    targets they ship to, and where the project's own targets and profiles live."""

    model: str | None = None  # type: ignore[assignment]
    models: list[ModelSpec] = Field(default_factory=list)
    targets_dir: list[str] = Field(default_factory=list)
    profiles_dir: list[str] = Field(default_factory=list)
    # boards to validate on, as in the user's device inventory; checked by edgepack.devices
    devices: dict[str, dict] = Field(default_factory=dict)
    #: the project's model files are the team's own: load them as --trust-model-code does
    #: (their code RUNS; see edgepack/trust.py)
    trust_model_code: bool = False
    verify: VerifySettings = Field(default_factory=VerifySettings)

    @model_validator(mode="after")
    def _one_or_many(self) -> Project:
        if (self.model is None) == (not self.models):
            raise ValueError("name either one `model` or a list of `models`")
        names = [m.name or Path(m.model).stem for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"models: names must be unique, got {names}")
        return self


class LoadedProject:
    """A validated project with every path resolved against the file's folder."""

    def __init__(self, path: Path, spec: Project):
        self.path = path
        self.spec = spec
        self.root = path.parent

    def resolve(self, rel: str | None) -> Path | None:
        return None if rel is None else (self.root / rel)

    @property
    def model(self) -> Path:
        if self.spec.model is None:
            raise ConfigError("this project names several models: pick one with --model",
                              path=self.path, hint=f"models: {', '.join(self.model_names)}")
        return self.root / self.spec.model

    @property
    def model_names(self) -> list[str]:
        return [m.name or Path(m.model).stem for m in self.spec.models] or [self.name]

    def for_model(self, name: str) -> LoadedProject:
        """The project as if it named only model ``name`` (its own fields over the shared)."""
        for entry, entry_name in zip(self.spec.models, self.model_names, strict=False):
            if entry_name == name:
                fields = self.spec.model_dump(exclude={"models"})
                fields.update(entry.model_dump(exclude_unset=True))
                fields["name"] = name
                return LoadedProject(self.path, Project.model_validate(fields))
        if not self.spec.models and name == self.name:
            return self
        raise ConfigError(f"no model '{name}' in the project", path=self.path,
                          hint=f"models: {', '.join(self.model_names)}")

    @property
    def name(self) -> str:
        return self.spec.name or self.root.resolve().name

    @property
    def targets_dirs(self) -> list[Path]:
        return [self.root / d for d in self.spec.targets_dir]

    @property
    def profiles_dirs(self) -> list[Path]:
        return [self.root / d for d in self.spec.profiles_dir]

    def output_roles(self) -> dict[str, str]:
        """The roles the project gives its outputs, by output name."""
        return {key: spec.role for key, spec in self.spec.outputs.items()
                if spec.role is not None and key not in ROLE_NAMES}

    def output_budgets(self) -> dict[str, OutputBudget]:
        """The project's limits per output name or role, to lay over the profile's budget
        (an entry that only gives a role adds no limit, but a name matching no output is
        still reported)."""
        return {key: OutputBudget(**spec.model_dump(exclude_unset=True, exclude={"role"}))
                for key, spec in self.spec.outputs.items()}

    def labels(self) -> list[str] | None:
        labels = self.spec.labels
        if labels is None or isinstance(labels, list):
            return labels
        path = self.root / labels
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"labels: cannot read {path}: {exc.strerror}",
                              path=self.path) from exc
        return [ln.strip() for ln in text.splitlines() if ln.strip()]


def load_project(path: Path) -> LoadedProject:
    """Read ``path`` (a project file, or a folder holding ``edgepack.yaml``)."""
    file = path / PROJECT_FILE if path.is_dir() else path
    return LoadedProject(file, load_yaml_model(file, Project))


def find_project(start: Path) -> LoadedProject | None:
    """The project file in folder ``start``, if there is one (no search upwards: explicit wins)."""
    candidate = start / PROJECT_FILE
    return load_project(candidate) if candidate.is_file() else None
