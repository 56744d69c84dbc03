"""What the structural passes should do: the ``structural:`` section of a profile, and the merge
with command-line flags (a flag overrides the profile's value, the profile fills in the rest)."""

from __future__ import annotations

from pydantic import Field, ValidationError, model_validator

from ..errors import UsageError
from .targets import Strict


class PruneSettings(Strict):
    """Magnitude pruning. ``skip`` None means the first and last prunable layers: the first sees
    raw pixels with few channels to spare, the last produces the classes and cannot lose any."""

    sparsity: float = Field(gt=0, lt=1, description="fraction of weights (or channels) removed")
    structured: bool = Field(default=False, description="remove whole filters/units")
    scope: str = Field(default="layer", pattern="^(layer|global)$",
                       description="unstructured: one threshold per layer, or one for all")
    per_layer: dict[str, float] = Field(default_factory=dict,
                                        description="sparsity overrides by layer name")
    skip: list[str] | None = None


class LowRankSettings(Strict):
    """Truncated-SVD factorization; the rank comes from exactly one of the two criteria."""

    energy: float | None = Field(default=None, gt=0, le=1,
                                 description="keep singular values holding this energy")
    param_ratio: float | None = Field(default=None, gt=0, lt=1,
                                      description="factorized params / original params")

    @model_validator(mode="after")
    def _one_criterion(self) -> LowRankSettings:
        if (self.energy is None) == (self.param_ratio is None):
            raise ValueError("give exactly one of 'energy' and 'param_ratio'")
        return self


class DistillSettings(Strict):
    """Knowledge distillation; ``alpha`` weighs the soft-target loss against label CE (labels
    are used only when the training data has them)."""

    temperature: float = Field(default=4.0, gt=0)
    alpha: float = Field(default=0.7, ge=0, le=1)
    epochs: int = Field(default=40, ge=1)
    patience: int = Field(default=6, ge=1)
    batch_size: int = Field(default=32, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0)
    validation_split: float = Field(default=0.2, gt=0, lt=1)
    width: float | None = Field(default=None, gt=0, lt=1,
                                description="derive a narrower student from the teacher")
    seed: int = 0


class Structural(Strict):
    prune: PruneSettings | None = None
    lowrank: LowRankSettings | None = None
    distill: DistillSettings | None = None

    @property
    def requested(self) -> bool:
        return any((self.prune, self.lowrank, self.distill))


def merge(profile: Structural | None, *, prune: float | None = None, structured: bool = False,
          lowrank: float | None = None, distill: bool = False) -> Structural:
    """The profile's section with the command line's flags applied on top.

    ``--prune S`` sets the sparsity (the profile's skip list and scope are kept), ``--structured``
    switches to channel pruning, ``--lowrank E`` sets the kept energy, ``--distill`` turns on
    distillation with the profile's (or default) training settings.
    """
    base = profile or Structural()
    p = base.prune.model_dump() if base.prune else {}
    if prune is not None:
        p["sparsity"] = prune
    if structured:
        if not p:
            raise UsageError("--structured needs a sparsity", hint="pass --prune 0.5")
        p["structured"] = True
    try:
        return Structural(
            prune=PruneSettings(**p) if p else None,
            lowrank=LowRankSettings(energy=lowrank) if lowrank is not None else base.lowrank,
            distill=base.distill or (DistillSettings() if distill else None))
    except ValidationError as exc:
        raise UsageError(f"structural settings: {exc.errors()[0]['msg']}",
                         hint="sparsity is in (0, 1), low-rank energy in (0, 1]") from None
