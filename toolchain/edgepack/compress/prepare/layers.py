"""The weight layers learned rounding works on, and what their inputs look like on real data.

A layer's output error from a weight change ``dW`` on inputs ``X`` is ``|dW X|^2``, which only
needs the inputs' second moments ``G = X X^T / n`` (per convolution group, over every sample
and position): one ONNX Runtime pass over the calibration samples, fetching every layer's
input, gives every layer's ``G`` without keeping activations.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .graph import Graph, attr, float_weight


@dataclass
class Layer:
    """A Conv/Gemm/MatMul with a constant weight, seen as ``groups`` blocks of output rows."""

    node: Any
    weight: np.ndarray  # as stored
    rows: np.ndarray  # (groups, outputs per group, inputs per group): one row per channel
    groups: int

    @property
    def input(self) -> str:
        return self.node.input[0]

    def stored(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` (shaped like ``self.rows``) back in the weight's stored layout."""
        if self.node.op_type == "Conv":
            return rows.reshape(self.weight.shape)
        flat = rows.reshape(rows.shape[1], rows.shape[2])
        transposed = self.node.op_type == "MatMul" or not attr(self.node, "transB", 0)
        return flat.T if transposed else flat


def weight_layers(graph: Graph) -> list[Layer]:
    """Every layer whose weight rows this graph can learn the rounding of."""
    layers = []
    for node in graph.graph.node:
        weight = float_weight(graph, node, 1)
        if weight is None:
            continue
        if node.op_type == "Conv" and weight.ndim in (3, 4) and \
                attr(node, "auto_pad", b"NOTSET") in (b"NOTSET", b"VALID"):
            groups = attr(node, "group", 1)
            rows = weight.reshape(groups, weight.shape[0] // groups, -1)
        elif node.op_type == "Gemm" and weight.ndim == 2 and not attr(node, "transA", 0):
            rows = (weight if attr(node, "transB", 0) else weight.T)[None]
            groups = 1
        elif node.op_type == "MatMul" and weight.ndim == 2:
            rows, groups = weight.T[None], 1
        else:
            continue
        layers.append(Layer(node, weight, np.ascontiguousarray(rows), groups))
    return layers


def input_moments(model: Any, layers: list[Layer], feeds: list[dict[str, np.ndarray]]
                  ) -> list[np.ndarray]:
    """Each layer's ``G`` (groups, k, k), float64, over the ``feeds`` (one ONNX Runtime run
    per feed with every layer input as an extra output)."""
    import onnx
    import onnxruntime as ort
    import torch

    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    present = {o.name for o in augmented.graph.output}
    for name in dict.fromkeys(layer.input for layer in layers):
        if name not in present:
            augmented.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    with tempfile.TemporaryDirectory(prefix="edgepack-moments-") as tmp:
        path = Path(tmp) / "augmented.onnx"
        onnx.save(augmented, str(path), save_as_external_data=augmented.ByteSize() > 2**30)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    sums = [np.zeros((lay.groups, lay.rows.shape[2], lay.rows.shape[2])) for lay in layers]
    counts = [0] * len(layers)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small products: threads only wait for each other on a busy host
    try:
        _accumulate(session, feeds, layers, sums, counts)
    finally:
        torch.set_num_threads(threads)
    return [s / max(n, 1) for s, n in zip(sums, counts, strict=True)]


def _accumulate(session: Any, feeds: list[dict[str, np.ndarray]], layers: list[Layer],
                sums: list[np.ndarray], counts: list[int]) -> None:
    """Add each feed's layer-input products to ``sums`` and their column counts to ``counts``."""
    import torch

    names = [o.name for o in session.get_outputs()]
    for feed in feeds:
        values = dict(zip(names, session.run(None, feed), strict=True))
        with torch.no_grad():
            for i, layer in enumerate(layers):
                cols = _columns(layer, torch.from_numpy(np.asarray(values[layer.input],
                                                                  dtype=np.float32)))
                sums[i] += torch.bmm(cols, cols.transpose(1, 2)).double().numpy()
                counts[i] += cols.shape[2]


def _columns(layer: Layer, x: Any) -> Any:
    """The layer's input as (groups, inputs per group, positions): what each row multiplies."""
    import torch.nn.functional as F  # noqa: N812

    if layer.node.op_type != "Conv":
        flat = x.reshape(-1, x.shape[-1])
        return flat.T[None].contiguous()
    node, w = layer.node, layer.weight
    if w.ndim == 3:  # 1-D convolution as a 2-D one of height 1
        x, kernel = x.unsqueeze(2), (1, w.shape[2])
        pads = attr(node, "pads", [0, 0])
        pads, strides = [0, pads[0], 0, pads[1]], [1, *attr(node, "strides", [1])]
        dilations = [1, *attr(node, "dilations", [1])]
    else:
        kernel = tuple(w.shape[2:])
        pads = attr(node, "pads", [0, 0, 0, 0])
        strides, dilations = attr(node, "strides", [1, 1]), attr(node, "dilations", [1, 1])
    x = F.pad(x, (pads[1], pads[3], pads[0], pads[2]))
    cols = F.unfold(x, kernel, dilation=tuple(dilations), stride=tuple(strides))
    n, k, positions = cols.shape
    cols = cols.reshape(n, layer.groups, k // layer.groups, positions)
    return cols.permute(1, 2, 0, 3).reshape(layer.groups, k // layer.groups, n * positions)
