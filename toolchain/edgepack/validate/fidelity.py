"""How closely an artifact's outputs follow the source model's: every output, each by what it
means.

Max/mean abs error catch a broken kernel; cosine, SNR and the largest error relative to the
output's range summarise quantization noise without depending on the output's scale. An output
whose channels mix meanings (a detector's boxes next to its class scores) is also measured per
channel group, and an output whose role is known (validate/roles.py) gets the readings its
users see: a classifier's top-k, a detector's detections, an embedding's neighbours, a map's
thresholded IoU. All are computed on the same eval inputs fed to both models.

Cosine is taken per sample and averaged. A sample whose source output is flat (its rms at most
FLAT of the output's range: an empty segmentation map, a detector's scores where nothing is)
has no direction to compare, so there the sample scores one minus its rms error relative to
the output's range: a good file is not failed by a zero reference, and a bad one still is.

Outputs are compared as the models return them, whatever their signatures declare: shapes that
differ only by axes of size 1 are the same values; shapes that hold different numbers of values
are a failure of that output (``mismatch`` says what each returned), never an exception. An
output that holds the samples on another axis than 0 (an RNN state ``[2, N, 128]``) is compared
per sample all the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .roles import role_for, topk_overlap

#: a sample's source output is flat when its rms is at most this share of the output's range
FLAT = 0.01

__all__ = ["FLAT", "GroupFidelity", "OutputFidelity", "compare", "compare_all", "head_rows",
           "same_values_shape", "sample_axis", "topk_overlap"]


@dataclass
class GroupFidelity:
    """The closeness of one channel group of an output (``channels``: which)."""

    name: str
    channels: str
    max_abs_error: float
    mean_abs_error: float
    cosine: float
    snr_db: float | None
    range_error: float | None = None
    flat_samples: int = 0


@dataclass
class OutputFidelity:
    name: str
    samples: int
    max_abs_error: float
    mean_abs_error: float
    cosine: float  # mean over samples of the per-sample cosine (flat samples: see the module)
    snr_db: float | None  # None: undefined (identical outputs, or an all-zero reference)
    top1_agreement: float | None = None  # classifiers only
    top5_overlap: float | None = None
    #: the output's role (validate/roles.py); "" in reports written before roles existed
    role: str = ""
    #: the largest absolute error over the source's range on the eval set (None: no range)
    range_error: float | None = None
    #: samples on which the source's output was flat, judged by error relative to its range
    flat_samples: int = 0
    #: channel groups of mixed meaning, each measured on its own
    groups: list[GroupFidelity] = field(default_factory=list)
    #: what the role reports besides top-k: detections kept, neighbour agreement, IoU, ...
    readings: dict[str, float] = field(default_factory=dict)
    #: the source and the artifact return differently shaped values for this output (what
    #: each returned); the errors are then the outputs' own magnitude and the cosine 0
    mismatch: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OutputFidelity:
        return cls(**{**d, "groups": [GroupFidelity(**g) for g in d.get("groups", [])]})


def compare(name: str, ref: np.ndarray, out: np.ndarray, role: str = "",
            primary: bool = True) -> OutputFidelity:
    """Output ``name`` of the artifact (``out``) against the source's (``ref``), batch first.
    ``role``: declared by the user ("" to find it from the name and the data); ``primary``:
    the model's first output, which a bare (N, C) shape makes a classifier."""
    ref = np.asarray(ref, np.float64)
    out = np.asarray(out, np.float64)
    if out.shape != ref.shape:
        if not same_values_shape(ref.shape, out.shape):
            return _mismatch(name, ref, out)
        out = out.reshape(ref.shape)
    n = ref.shape[0] if ref.ndim else 1
    kind = role_for(name, ref, role, primary)
    readings = kind.readings(ref, out)
    groups = [GroupFidelity(g.name, g.channels, **_closeness(g.take(ref).reshape(n, -1),
                                                             g.take(out).reshape(n, -1)))
              for g in kind.groups(ref)]
    return OutputFidelity(name=name, samples=n,
                          **_closeness(ref.reshape(n, -1), out.reshape(n, -1)),
                          top1_agreement=readings.pop("top1_agreement", None),
                          top5_overlap=readings.pop("top5_overlap", None), role=kind.name,
                          groups=groups, readings=readings)


def _closeness(ref: np.ndarray, out: np.ndarray) -> dict[str, Any]:
    """Errors, cosine, SNR and range error of (samples, values) arrays."""
    diff = out - ref
    span = float(ref.max() - ref.min())
    flat = np.sqrt(np.mean(ref ** 2, axis=1)) <= FLAT * span
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    cos = np.sum(ref * out, axis=1) / np.where(norms > 0, norms, 1)
    rms_error = np.sqrt(np.mean(diff ** 2, axis=1))
    if span > 0:
        on_flat = 1 - np.minimum(1.0, rms_error / span)
    else:  # every sample all zero: identical or not
        on_flat = (rms_error == 0).astype(np.float64)
    noise = float(np.sum(diff ** 2))
    signal = float(np.sum(ref ** 2))
    return {"max_abs_error": float(np.max(np.abs(diff))),
            "mean_abs_error": float(np.mean(np.abs(diff))),
            "cosine": float(np.mean(np.where(flat, on_flat, cos))),
            "snr_db": 10 * math.log10(signal / noise) if noise > 0 and signal > 0 else None,
            "range_error": float(np.max(np.abs(diff)) / span) if span > 0 else None,
            "flat_samples": int(flat.sum())}


def sample_axis(shape: tuple[int, ...], total: int) -> int:
    """The axis of an output computed on ``total`` samples that holds them: axis 0 when it has
    that size, else the first that has (an RNN's ``[2, N, 128]`` state: axis 1), else 0."""
    if shape[:1] == (total,):
        return 0
    return next((i for i, d in enumerate(shape) if d == total), 0)


def head_rows(output: np.ndarray, total: int, k: int) -> np.ndarray:
    """The first ``k`` samples of an output computed on ``total`` samples (``sample_axis``)."""
    shape = np.shape(output)
    axis = sample_axis(shape, total)
    return output[(slice(None),) * axis + (slice(0, k),)] if shape else output


def same_values_shape(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Whether two shapes hold the same values in the same order: equal once their axes of
    size 1 are dropped (``(N, 1, C)`` and ``(N, C)``)."""
    return tuple(d for d in a if d != 1) == tuple(d for d in b if d != 1)


def _mismatch(name: str, ref: np.ndarray, out: np.ndarray) -> OutputFidelity:
    """A failed output: the artifact returns values that cannot be matched with the source's
    (errors as large as the values themselves, cosine 0, and what each returned)."""
    size = max(float(np.max(np.abs(ref), initial=0.0)), float(np.max(np.abs(out), initial=0.0)))
    return OutputFidelity(name=name, samples=ref.shape[0] if ref.ndim else 1,
                          max_abs_error=size, mean_abs_error=size, cosine=0.0, snr_db=None,
                          mismatch=f"the source returns shape {ref.shape}, the artifact "
                                   f"{out.shape}")


def compare_all(names: list[str], refs: list[np.ndarray], outs: list[np.ndarray],
                roles: Sequence[str] | None = None) -> list[OutputFidelity]:
    """Per-output fidelity; outputs are matched by position (formats rename them).
    ``roles``: each output's declared role by position ("" where none was)."""
    if len(refs) != len(outs):
        raise ValueError(f"the artifact has {len(outs)} outputs, the source {len(refs)}")
    declared = list(roles) if roles else [""] * len(refs)
    total = np.shape(refs[0])[0] if refs and np.ndim(refs[0]) else 0
    return [compare(n, *_samples_first(np.asarray(r), np.asarray(o), total), role,
                    primary=i == 0)
            for i, (n, r, o, role) in enumerate(zip(names, refs, outs, declared, strict=True))]


def _samples_first(ref: np.ndarray, out: np.ndarray,
                   total: int) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays with the samples on axis 0, where an output holds them elsewhere (an RNN
    state ``[2, N, 128]`` next to a primary output ``[N, 1]``: compared per sample, not as 2)."""
    axis = sample_axis(ref.shape, total) if total and ref.shape == out.shape else 0
    if axis == 0:
        return ref, out
    return np.moveaxis(ref, axis, 0), np.moveaxis(out, axis, 0)
