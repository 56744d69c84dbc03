"""Which layers int8 hurts most: the ranking the accuracy fallback keeps in float, worst first.

One ranker per format, each with the format's own tooling:

- ONNX (QDQ): ONNX Runtime's quantization debugger runs the float and the QDQ model with every
  Conv/MatMul/Gemm output exposed on the same calibration samples, and measures each output's
  signal-to-quantization-noise ratio in the QDQ model (``qdq_err``: the noise that layer's own
  quantization adds). Lowest SQNR first; returned as the producing node names, which is what
  ``quantize_static(nodes_to_exclude=...)`` takes.

Formats without a ranker here (TFLite, OpenVINO) get no layer-wise fallback yet; the build says so.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..data import Dataset

#: the op types whose outputs are ranked (where int8 error is made and where it pays to undo it)
RANKED_OPS = ("Conv", "MatMul", "Gemm", "ConvTranspose")


def rank_onnx(fp32: Path, int8: Path, samples: Dataset) -> list[str]:
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    names = [i.name for i in onnx.load(str(fp32)).graph.input]
    with tempfile.TemporaryDirectory(prefix="edgepack-sens-") as tmp:
        # the QDQ model was made from the pre-processed graph (Conv+Relu fused, MatMul+Add as
        # Gemm): compare with that graph, whose node names nodes_to_exclude understands
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre))
        aug_f = Path(tmp) / "float.onnx"
        aug_q = Path(tmp) / "qdq.onnx"
        modify_model_output_intermediate_tensors(str(pre), str(aug_f), list(RANKED_OPS))
        modify_model_output_intermediate_tensors(str(int8), str(aug_q), list(RANKED_OPS))
        float_acts = collect_activations(str(aug_f), _Feeds(samples, names))
        qdq_acts = collect_activations(str(aug_q), _Feeds(samples, names))
        graph = onnx.load(str(pre)).graph
    errors = compute_activation_error(create_activation_matching(qdq_acts, float_acts))
    # Excluding a node from quantization removes the quantization of its *inputs*: score each
    # Conv/MatMul/Gemm by the worst SQNR among the activations it consumes (tensor names are
    # the float graph's; in the QDQ graph they feed a QuantizeLinear before the node).
    order = [n.name for n in graph.node if n.op_type in RANKED_OPS]
    score = {name: np.inf for name in order}
    for node in graph.node:
        if node.op_type in RANKED_OPS:
            for t in node.input:
                if t in errors:
                    score[node.name] = min(score[node.name], errors[t].get("qdq_err", np.inf))
    # unmatched nodes keep +inf and come last, in graph order
    return sorted(order, key=lambda n: (score[n], order.index(n)))


class _Feeds:
    """CalibrationDataReader over a dataset's samples, renamed to the graph's inputs."""

    def __init__(self, samples: Dataset, names: list[str]):
        self._it = iter(samples.samples())
        self._names = names

    def get_next(self) -> dict[str, np.ndarray] | None:
        feed = next(self._it, None)
        if feed is None:
            return None
        return {n: v.astype(np.float32) for n, v in zip(self._names, feed.values(), strict=True)}

    def __iter__(self):  # collect_activations iterates the reader
        return iter(self.get_next, None)


RANKERS: dict[str, Callable[[Path, Path, Dataset], list[str]]] = {"onnx": rank_onnx}
