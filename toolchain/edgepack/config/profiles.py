"""How to compress for a kind of hardware: the schema of ``profiles/*.yaml``.

A profile is a recipe (precision, quantization scheme, calibration, accuracy budget), kept apart
from targets because many devices share one recipe (every ARM CPU board wants int8-arm).
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, PrivateAttr, model_validator

from .structural import Structural
from .targets import FormatName, Strict

Precision = Literal["fp32", "fp16", "dynamic-int8", "int8"]
#: float passes over an ONNX source before any format's int8 quantizer (compress/prepare/)
PreparePass = Literal["fold-batchnorm", "equalize", "adaround"]


class Calibration(Strict):
    #: how each activation's int8 range is set: ``minmax`` covers every calibration value;
    #: ``mse`` clips where the tensor's own squared int8 error is least (ONNX, TFLite,
    #: OpenVINO); ``percentile`` keeps all but a sliver of the values (ONNX, TFLite; OpenVINO:
    #: NNCF's mean of per-sample quantiles); ``entropy`` is ONNX Runtime's (ONNX only)
    method: Literal["minmax", "mse", "entropy", "percentile"] = "minmax"
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
    #: the recipe's model family: ``transformer`` quantizes the matrix multiplications with
    #: weights and leaves attention, normalization and the residual adds in float (NNCF's
    #: transformer model type, with SmoothQuant, for OpenVINO); ``auto`` chooses it when the
    #: graph has attention (a Softmax over a product of two activations) and a normalization
    model_type: Literal["auto", "transformer", "generic"] = "auto"
    #: float-domain passes, in order, on the ONNX model every format's int8 file is made from:
    #: ``fold-batchnorm`` and ``equalize`` (cross-layer, through ReLU only) change no output;
    #: ``adaround`` puts the weights on the int8 grid with learned rounding (ONNX sources)
    prepare: list[PreparePass] = Field(default_factory=list)


#: what an output means, as the project file, a profile or ``--metric`` may name it (the
#: measures each role reports live in validate/roles.py, which has one class per name)
RoleName = Literal["classifier", "detector", "embedding", "map", "generic"]
ROLE_NAMES: tuple[str, ...] = get_args(RoleName)


class Limits(Strict):
    """Bounds on how closely an output follows the source model's; every one needs no labels.

    Cosine, SNR and the error relative to the output's range judge each output, and each
    channel group of an output whose channels mix meanings (a detector's boxes and scores);
    the others judge the outputs whose role reports them (validate/roles.py).
    """

    min_cosine: float | None = Field(default=None, ge=-1, le=1)
    min_top1_agreement: float | None = Field(default=None, ge=0, le=1)
    min_snr_db: float | None = None
    #: the largest deviation as a share of the output's range on the eval set
    max_range_error: float | None = Field(default=None, ge=0)
    #: detectors: the share of the source's detections (after NMS) the artifact finds with
    #: their class at IoU >= 0.5, and its detections matching none, per source detection
    min_detections_kept: float | None = Field(default=None, ge=0, le=1)
    max_extra_detections: float | None = Field(default=None, ge=0)
    #: embeddings: the share of samples whose nearest neighbour among the others is the same
    min_neighbour_agreement: float | None = Field(default=None, ge=0, le=1)
    #: maps: intersection over union of the thresholded maps
    min_iou: float | None = Field(default=None, ge=0, le=1)


class OutputBudget(Limits):
    """The limits for one output (keyed by its name) or every output of a role (keyed by
    the role): what it sets replaces the profile-wide limit, the rest is inherited.
    ``gating: false`` measures and shows the output without letting it fail the build (an
    output nobody reads, such as a transformer's hidden states at padded positions)."""

    gating: bool = True


class FloorMargins(Strict):
    """How much further from the source than its input-rounding floor (validate/floor.py) an
    output may be, per reading: a bound of the profile's own becomes the floor's reading
    less the margin (plus it, for an upper bound) where that is looser, never looser."""

    top1_agreement: float | None = Field(default=None, ge=0, le=1)
    cosine: float | None = Field(default=None, ge=0, le=2)
    snr_db: float | None = Field(default=None, ge=0)
    range_error: float | None = Field(default=None, ge=0)
    detections_kept: float | None = Field(default=None, ge=0, le=1)
    extra_detections: float | None = Field(default=None, ge=0)
    neighbour_agreement: float | None = Field(default=None, ge=0, le=1)
    iou: float | None = Field(default=None, ge=0, le=1)


class Budget(Limits):
    """What "still computes what the original computed" means for this recipe.

    ``max_top1_drop`` applies when the eval data has labels; the other bounds compare the
    artifact to the source model, every output of it, and need no labels. With labels and a
    top-1 drop stated, the drop decides for the output the labels score (the first) and its
    other bounds are measured and reported only. ``outputs`` states limits per output name
    or per role (a name's entry over its role's, over the profile-wide limits).
    ``relative_to_floor`` states the profile's unlabelled bounds against the model's own
    input-rounding floor where one is measured; a bound the user set (the project file's)
    stays absolute.
    """

    max_top1_drop: float | None = Field(default=None, ge=0, le=1)
    relative_to_floor: FloorMargins | None = None
    outputs: dict[str, OutputBudget] = Field(default_factory=dict)
    #: the fields each key of ``outputs`` has from the user (with_outputs), which stay absolute
    _by_user: dict[str, frozenset[str]] = PrivateAttr(default_factory=dict)

    def for_output(self, name: str, role: str) -> OutputBudget:
        """The limits that apply to output ``name`` whose role is ``role``."""
        merged = self.model_dump(include=set(Limits.model_fields), exclude_none=True)
        for key in (role, name):
            entry = self.outputs.get(key)
            if entry is not None:
                merged.update(entry.model_dump(exclude_unset=True))
        return OutputBudget(**merged)

    def set_by_user(self, name: str, role: str) -> frozenset[str]:
        """The limits of output ``name`` (role ``role``) whose value the user set."""
        fields: set[str] = set()
        for key in (role, name):
            entry = self.outputs.get(key)
            if entry is not None:
                mine = self._by_user.get(key, frozenset())
                fields = {f for f in fields if f not in entry.model_fields_set} \
                    | (entry.model_fields_set & mine)
        return frozenset(fields)

    def with_outputs(self, entries: dict[str, OutputBudget]) -> Budget:
        """This budget with the user's ``entries`` laid over its per-output ones, field by
        field (the project file's over the profile's); theirs stay absolute."""
        if not entries:
            return self
        outputs, by_user = dict(self.outputs), dict(self._by_user)
        for key, entry in entries.items():
            base = outputs[key].model_dump(exclude_unset=True) if key in outputs else {}
            outputs[key] = OutputBudget(**{**base, **entry.model_dump(exclude_unset=True)})
            by_user[key] = by_user.get(key, frozenset()) | entry.model_fields_set
        budget = self.model_copy(update={"outputs": outputs})
        budget._by_user = by_user
        return budget


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
    #: the accuracy fallback may quantize a transformer's activations at run time (int8
    #: weights, each input's range taken per inference) where static int8 misses, and a format
    #: whose static int8 no converter can make is made so (pipeline/convert.py): hardware that
    #: runs integer ops only (an Edge TPU) cannot run such a file
    fallback_dynamic: bool = False
    #: pruning / low-rank / distillation of the source before conversion (structural/)
    structural: Structural | None = None

    @model_validator(mode="after")
    def _needs_quantization(self) -> Profile:
        if self.precision == "int8" and self.quantization is None:
            raise ValueError("precision int8 needs a 'quantization' section")
        return self

    def with_output_budgets(self, entries: dict[str, OutputBudget]) -> Profile:
        """This profile with per-output limits (the project file's) laid over its budget's."""
        if not entries:
            return self
        return self.model_copy(update={"budget": self.budget.with_outputs(entries)})

    @property
    def needs_calibration(self) -> bool:
        return self.precision == "int8"
