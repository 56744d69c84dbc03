"""Float-domain preparation of an ONNX model before any format's int8 quantizer sees it.

A registry of passes, each a plain class with a ``name`` (what the profile's
``quantization.prepare`` lists), ``needs_samples`` and ``apply(graph, samples) -> note``. They
run in the profile's order on the float ONNX model that feeds the int8 quantizers of every
format (ONNX Runtime, onnx2tf's TFLite converter, NNCF); the fp32 reference files stay the
source's own, so an int8 file is judged against the untouched model. Passes that claim to
change nothing (folding, equalization) are checked: the prepared model's outputs must equal the
source's on the samples, or the preparation is dropped with a note.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ...data.dataset import Dataset
from .adaround import AdaRound
from .equalize import Equalize
from .fold_bn import FoldBatchNorm
from .graph import Graph

#: the largest relative output change an exact pass may make (float rounding)
EXACT_TOLERANCE = 1e-4
#: samples the exactness check runs
CHECK_SAMPLES = 8


class PreparePass(Protocol):
    name: str
    needs_samples: bool
    #: whether the pass leaves the model's function unchanged (checked when it does)
    exact: bool

    def apply(self, graph: Graph, samples: Dataset) -> str: ...


PASSES: dict[str, PreparePass] = {p.name: p for p in (FoldBatchNorm(), Equalize(), AdaRound())}


def prepare(src: Path, out: Path, names: list[str], samples: Dataset, notes: list[str]) -> None:
    """Write ``src`` with the passes ``names`` applied, in order, to ``out``; one note per pass
    says what it changed and what it cost. An exact pass whose result changes the outputs on
    ``samples`` is undone (noted), never shipped."""
    import onnx

    model = onnx.load(str(src))
    for name in names:
        step = PASSES[name]
        before = onnx.ModelProto()
        before.CopyFrom(model)
        t0 = time.perf_counter()
        graph = Graph(model)
        note = step.apply(graph, samples)
        seconds = time.perf_counter() - t0
        if step.exact:
            change = max_change(before, model, samples.head(CHECK_SAMPLES))
            if not change <= EXACT_TOLERANCE:
                notes.append(f"prepare {name}: undone, it changed the outputs by {change:.2g} "
                             f"(relative) on {min(len(samples), CHECK_SAMPLES)} samples")
                model = before
                continue
        notes.append(f"prepare {name}: {note} ({seconds:.1f} s)")
    onnx.save(model, str(out), save_as_external_data=model.ByteSize() > 2**30)


def max_change(a: Any, b: Any, samples: Dataset) -> float:
    """The largest output difference of models ``a`` and ``b`` on ``samples``, relative to each
    output's largest magnitude (inf when ``b`` does not run)."""
    try:
        outs_a, outs_b = run(a, samples), run(b, samples)
    except Exception:  # noqa: BLE001 - a pass that broke the graph is undone
        return float("inf")
    worst = 0.0
    for x, y in zip(outs_a, outs_b, strict=True):
        scale = max(float(np.max(np.abs(x))), 1e-12)
        worst = max(worst, float(np.max(np.abs(x - y))) / scale)
    return worst


def run(model: Any, samples: Dataset) -> list[np.ndarray]:
    """Every output of ``model`` on each sample, stacked on a new first axis."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="edgepack-prepare-") as tmp:
        path = Path(tmp) / "model.onnx"
        onnx.save(model, str(path), save_as_external_data=model.ByteSize() > 2**30)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    per_sample = [session.run(None, feed) for feed in samples.samples()]
    return [np.stack([o[i] for o in per_sample]) for i in range(len(per_sample[0]))]


__all__ = ["PASSES", "PreparePass", "prepare"]
