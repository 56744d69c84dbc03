"""The tensor layouts an artifact ``compare`` measures takes and gives, next to its source's.

A TFLite file made from an NCHW ONNX model takes NHWC images (onnx2tf): fed the source's
samples as they are, it refuses them. Its build recorded every artifact's layouts in the
report.json beside it, and that record decides. Without one, the shapes do: the source's
layout when the samples fit the artifact's input as they are, its channels-last (or
channels-first) counterpart when only the transposed samples fit; when both fit (dynamic dims),
the source's layout if the artifact's own signature names it too, else compare says it cannot
tell rather than guess. An
output is moved back when only its transposition has the source output's shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import layout
from ..errors import DataError, UsageError
from ..report.load import load_report
from ..signature import Dim, Signature, TensorSpec

#: each layout's counterpart with the channels moved to the other end
COUNTERPART = {**layout.CHANNELS_LAST, **{v: k for k, v in layout.CHANNELS_LAST.items()}}


@dataclass(frozen=True)
class Layouts:
    """An artifact's input and output layouts, by position; ``outputs`` None: each output is
    told from its shape once it has run (``outputs_as_source``)."""

    inputs: list[str]
    outputs: list[str] | None = None


def recorded(path: Path) -> Layouts | None:
    """The layouts the build that wrote ``path`` recorded for it (its report.json); None when
    ``path`` is not in an edgepack build folder."""
    if not (path.parent / "report.json").is_file():
        return None
    try:
        report = load_report(path.parent)
    except UsageError:
        return None
    for art in report.artifacts:
        if art.file == path.name and art.signature:
            sig = Signature.from_dict(art.signature)
            return Layouts([s.layout for s in sig.inputs], [s.layout for s in sig.outputs])
    return None


def from_shapes(path: Path, artifact: Signature, source: Signature,
                inputs: dict[str, np.ndarray]) -> Layouts:
    """Each input's layout told from which of the source's samples, as they are or
    transposed, fit the artifact's input shape (``DataError`` when neither or both do)."""
    layouts = []
    own = {s.name: s for s in artifact.inputs}
    by_name = set(own) <= {s.name for s in source.inputs}
    for i, spec in enumerate(source.inputs):
        target = own.get(spec.name) if by_name else (
            artifact.inputs[i] if i < len(artifact.inputs) else None)
        if target is None or spec.name not in inputs:
            layouts.append(spec.layout)
            continue
        layouts.append(_input_layout(path, target, spec, inputs[spec.name]))
    return Layouts(layouts)


def _input_layout(path: Path, target: TensorSpec, spec: TensorSpec, sample: np.ndarray) -> str:
    other = COUNTERPART.get(spec.layout)
    moved = layout.convert(sample, spec.layout, other) if other else sample
    fits = [lay for lay, arr in ((spec.layout, sample), (other, moved))
            if lay is not None and _fits(arr.shape, target.shape)]
    if len(fits) == 2 and moved.shape != sample.shape and target.layout != spec.layout:
        raise DataError(f"cannot tell whether input '{target.name}' ({_shape(target.shape)}) "
                        f"takes the source's {spec.layout} samples as they are or as {other}",
                        path=path, hint="compare it inside its build folder (report.json "
                                        "records its layouts), or fix its input shape")
    if not fits:
        raise DataError(f"does not take the source model's inputs: input '{target.name}' takes "
                        f"{_shape(target.shape)}, the source's samples are "
                        f"{_shape(sample.shape)} ({spec.layout or 'no layout'})", path=path)
    return fits[0]


def outputs_as_source(outs: list[np.ndarray], refs: list[np.ndarray], source: Signature,
                      layouts: Layouts) -> list[np.ndarray]:
    """The artifact's outputs moved into the source's layouts: as recorded, else each one
    whose shape differs from the source output's and whose transposition matches it."""
    moved = []
    for i, out in enumerate(outs):
        src = source.outputs[i].layout if i < len(source.outputs) else ""
        if layouts.outputs is not None:
            own = layouts.outputs[i] if i < len(layouts.outputs) else src
            moved.append(layout.convert(out, own, src))
            continue
        back = layout.convert(out, COUNTERPART.get(src, ""), src)
        ref_shape = refs[i].shape if i < len(refs) else out.shape
        moved.append(back if out.shape != ref_shape and back.shape == ref_shape else out)
    return moved


def _fits(shape: tuple[int, ...], dims: tuple[Dim, ...]) -> bool:
    """Whether samples of ``shape`` (batched) fit a tensor of ``dims`` (batch axis first; a
    scalar input's samples are one value each)."""
    if not dims:
        return len(shape) == 1
    return len(shape) == len(dims) and all(
        not isinstance(d, int) or d < 0 or d == s for s, d in zip(shape[1:], dims[1:],
                                                                  strict=True))


def _shape(dims: tuple[Dim, ...] | tuple[int, ...]) -> str:
    return "x".join(str(d) if isinstance(d, int) and d >= 0 else "?" for d in dims)
