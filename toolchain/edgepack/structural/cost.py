"""What a structural stage costs an app: the multiply-accumulates (MACs) of one batch-1
inference, and the bytes a download carries (the model deflated, as an APK, an IPA or a zip
bundle stores it: unstructured sparsity shows here, not in the file size).

MACs are counted from each source format's own graph (convolutions, depthwise convolutions,
dense/linear/matmul layers: the ops that dominate the compute of the models edgepack
compresses); a format without a counter reports None and the report shows "-".
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def zipped_bytes(path: Path) -> int:
    """Deflated (level 9) bytes of a model file, or of every file of a model folder."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return sum(len(zlib.compress(f.read_bytes(), 9)) for f in files)


def macs(path: Path, fmt: str) -> int | None:
    counter = COUNTERS.get(fmt)
    return counter(path) if counter is not None else None


def _keras(path: Path) -> int:
    import keras

    from ..formats.keras import KerasFormat

    def count(model: Any) -> int:
        total = 0
        for layer in model.layers:
            if isinstance(layer, keras.Model):
                total += count(layer)
                continue
            if not hasattr(layer, "kernel_size") and not isinstance(layer, keras.layers.Dense):
                continue
            out = int(np.prod(layer.output.shape[1:]))
            cin = int(layer.input.shape[-1])
            if isinstance(layer, keras.layers.Dense):
                total += out * cin
            elif isinstance(layer, keras.layers.DepthwiseConv2D):
                total += out * int(np.prod(layer.kernel_size))
            elif hasattr(layer, "groups"):  # ConvND
                total += out * int(np.prod(layer.kernel_size)) * cin // layer.groups
        return total

    return count(KerasFormat().load(path))


def _onnx(path: Path) -> int:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    for value in model.graph.input:  # batch 1 for the count
        for dim in value.type.tensor_type.shape.dim[:1]:
            if not dim.HasField("dim_value"):
                dim.dim_value = 1
    model = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*model.graph.value_info, *model.graph.output, *model.graph.input]}
    shapes.update({i.name: list(numpy_helper.to_array(i).shape)
                   for i in model.graph.initializer})
    total = 0
    for node in model.graph.node:
        out = shapes.get(node.output[0])
        if not out or not all(out):
            continue
        if node.op_type == "Conv" and node.input[1] in shapes:
            total += int(np.prod(out)) * int(np.prod(shapes[node.input[1]][1:]))
        elif node.op_type == "Gemm" and node.input[0] in shapes:
            total += int(np.prod(out)) * int(shapes[node.input[0]][-1])
        elif node.op_type == "MatMul" and shapes.get(node.input[0]):
            total += int(np.prod(out)) * int(shapes[node.input[0]][-1])
    return total


def _torch(path: Path) -> int:
    import torch

    from ..formats.torch import TorchExportFormat

    aten = torch.ops.aten
    convs = {aten.convolution.default, aten.conv1d.default, aten.conv2d.default}
    dense = {aten.linear.default, aten.addmm.default, aten.mm.default, aten.matmul.default}
    total = 0
    for node in TorchExportFormat().load(path).graph.nodes:  # checked unless trusted
        if node.op != "call_function" or "val" not in node.meta:
            continue
        per_sample = int(np.prod([int(d) for d in node.meta["val"].shape[1:]]))
        if node.target in convs:
            total += per_sample * int(np.prod([int(d) for d in node.args[1].meta["val"].shape[1:]]))
        elif node.target in dense:
            x = node.args[1] if node.target == aten.addmm.default else node.args[0]
            total += per_sample * int(x.meta["val"].shape[-1])
    return total


def _tflite(path: Path) -> int:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    shapes = {t["index"]: tuple(int(d) for d in t["shape"]) for t in interp.get_tensor_details()}
    total = 0
    # the op list has no public accessor; the quantization debugger's tooling reads it so too
    for op in interp._get_ops_details():  # noqa: SLF001
        ins, outs = op["inputs"], op["outputs"]
        if op["op_name"] == "CONV_2D":
            total += int(np.prod(shapes[outs[0]])) * int(np.prod(shapes[ins[1]][1:]))
        elif op["op_name"] == "DEPTHWISE_CONV_2D":
            total += int(np.prod(shapes[outs[0]])) * int(np.prod(shapes[ins[1]][1:3]))
        elif op["op_name"] == "FULLY_CONNECTED":
            total += int(np.prod(shapes[outs[0]][:-1])) * int(np.prod(shapes[ins[1]]))
    return total


COUNTERS: dict[str, Callable[[Path], int]] = {"keras": _keras, "onnx": _onnx, "torch": _torch,
                                               "tflite": _tflite}
