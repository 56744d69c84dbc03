"""Stage 3b, control flow: an ONNX source's If nodes that the build's fixed inputs decide are
folded before anything converts it (converters/onnx_control_flow.py).

The folded file becomes the model every format is made from; the yardstick stays the source's
own outputs, so every hop check compares the folded model's files with the unfolded source. A
0-d input the fold froze leaves the signature the files are fed and described by, and the
samples they are calibrated and measured on; the outputs take the dimensions and layouts the
folded file shows.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..converters.onnx_control_flow import fold_control_flow
from ..data.dataset import Dataset
from ..formats import get_format
from ..signature import Signature
from .context import BuildContext, Yardstick
from .data import BuildData
from .structural import StructuralResult


def fold(ctx: BuildContext, source_format: str, changed: StructuralResult, data: BuildData,
         yardstick: Yardstick, workdir: Path
         ) -> tuple[StructuralResult, BuildData, Yardstick]:
    """The model to convert, the samples and the yardstick to check it by, with decidable If
    nodes folded (all three as given when there are none)."""
    if source_format != "onnx":
        return changed, data, yardstick
    folder = workdir / "control-flow"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / changed.model.name
    datasets = [d for d in (data.calibration, data.evaluation) if d is not None]
    folded = fold_control_flow(changed.model, path, data.shapes, datasets)
    if folded is None:
        return changed, data, yardstick
    ctx.notes.append(folded.note())
    frozen = set(folded.frozen)

    def kept(samples: Dataset) -> Dataset:
        return replace(samples, inputs={k: v for k, v in samples.inputs.items()
                                        if k not in frozen})

    signature = _folded_signature(yardstick.signature, path, frozen)
    calibration = kept(data.calibration) if data.calibration is not None else None
    more = data.more_calibration  # drawn again by the accuracy fallback: without them too
    return (replace(changed, model=path),
            replace(data, calibration=calibration, evaluation=kept(data.evaluation),
                    more_calibration=None if more is None else lambda n: kept(more(n))),
            replace(yardstick, signature=signature, evaluation=kept(yardstick.evaluation)))


def _folded_signature(source: Signature, folded: Path, frozen: set[str]) -> Signature:
    """The source's signature without the frozen inputs, its outputs with the dimensions and
    layouts the folded file shows: folded with fixed input shapes, an output the source
    declared ``[?, ?, ?]`` (an RNN state) is ``[2, ?, 128]``, its samples on axis 1, not an
    image's channels-first tensor."""
    made = {s.name: s for s in get_format("onnx").read_signature(folded).outputs}
    outputs = []
    for spec in source.outputs:
        known = made.get(spec.name)
        if known is None or known.rank != spec.rank:
            outputs.append(spec)
            continue
        shape = tuple(k if isinstance(k, int) else d
                      for k, d in zip(known.shape, spec.shape, strict=True))
        outputs.append(replace(spec, shape=shape, layout=known.layout))
    return replace(source, inputs=tuple(s for s in source.inputs if s.name not in frozen),
                   outputs=tuple(outputs))
