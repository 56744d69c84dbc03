"""How to compress for a kind of hardware: the schema of ``profiles/*.yaml``.

A profile is a recipe (precision, quantization scheme, calibration, accuracy budget), kept apart
from targets because many devices share one recipe (every ARM CPU board wants int8-arm).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .structural import Structural
from .targets import FormatName, Strict

Precision = Literal["fp32", "fp16", "dynamic-int8", "int8"]


class Calibration(Strict):
    method: Literal["minmax", "entropy", "percentile"] = "minmax"
    samples: int = Field(default=200, ge=1, description="at most this many, drawn with seed")
    seed: int = 0


class Quantization(Strict):
    per_channel: bool = True
    io_dtype: Literal["float32", "int8", "uint8"] = "float32"
    #: activation type where the tool lets the recipe choose (ONNX Runtime QDQ): ONNX Runtime
    #: runs uint8-activation/int8-weight convolutions about 2x faster than int8/int8 on x86
    #: CPUs without VNNI, while ARM kernels take int8/int8; TFLite and NNCF decide themselves
    activations: Literal["int8", "uint8"] = "int8"
    calibration: Calibration = Calibration()


class Budget(Strict):
    """What "still computes what the original computed" means for this recipe.

    ``max_top1_drop`` applies when the eval data has labels; the agreement and cosine bounds
    compare the artifact to the source model and need no labels. With labels and a top-1 drop
    stated, the drop decides and the other two are measured and reported only.
    """

    max_top1_drop: float | None = Field(default=None, ge=0, le=1)
    min_top1_agreement: float | None = Field(default=None, ge=0, le=1)
    min_cosine: float | None = Field(default=None, ge=-1, le=1)


class Profile(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    precision: Precision
    formats: list[FormatName] = Field(min_length=1,
                                      description="formats this recipe can produce")
    quantization: Quantization | None = None
    fallback_without_calibration: str | None = Field(
        default=None, description="profile used when no calibration data is given")
    budget: Budget = Budget()
    #: the accuracy fallback may keep layers in float until the file is this many times the
    #: size of plain int8; beyond that it is no longer an int8 model and is not shipped
    fallback_max_size_growth: float = Field(default=1.5, ge=1.0)
    #: pruning / low-rank / distillation of the source before conversion (structural/)
    structural: Structural | None = None

    @model_validator(mode="after")
    def _needs_quantization(self) -> Profile:
        if self.precision == "int8" and self.quantization is None:
            raise ValueError("precision int8 needs a 'quantization' section")
        return self

    @property
    def needs_calibration(self) -> bool:
        return self.precision == "int8"
