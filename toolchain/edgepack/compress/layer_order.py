"""An int8 model's compute layers in execution order, named as its quantizer takes them, and its
int8 ops grouped by kind.

The accuracy fallback first keeps the first layers in float: the stem and the early,
high-resolution layers, where a CNN's int8 error starts and then compounds. Together they form
one float region at the input, which a runtime enters once, where float layers scattered through
the network each cost a layout change and a (de)quantization (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

#: the op types whose outputs are ranked (where int8 error is made and where it pays to undo it)
RANKED_OPS = ("Conv", "MatMul", "Gemm", "ConvTranspose")
#: the same layers as OpenVINO names their ops
OPENVINO_RANKED = ("Convolution", "GroupConvolution", "MatMul", "ConvolutionBackpropData")

#: TFLite's layers with weights, whose output tensor names the converter's denylist takes
TFLITE_LAYERS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


#: ONNX Runtime's dynamic quantizer's integer ops, named after the node they replace
#: with this suffix (which is what its ``nodes_to_exclude`` takes)
INTEGER_OPS = {"ConvInteger": "_quant", "MatMulInteger": "_quant"}


def float_name(node: Any) -> str:
    """The name of the float node an ONNX int8 model's ``node`` stands for."""
    suffix = INTEGER_OPS.get(node.op_type)
    return node.name.removesuffix(suffix) if suffix else node.name


def is_layer(node: Any) -> bool:
    """Whether ``node`` of a QDQ or dynamic int8 ONNX model is a ranked layer."""
    return node.op_type in RANKED_OPS or node.op_type in INTEGER_OPS


def onnx_layers(int8: Path) -> list[str]:
    """Conv/MatMul/Gemm node names of a QDQ or dynamic int8 model (its nodes are in
    topological order), as the quantizer named the float node."""
    import onnx

    return [float_name(n) for n in onnx.load(str(int8)).graph.node if is_layer(n)]


def tflite_layers(int8: Path) -> list[str]:
    """Output tensor names of a TFLite model's weighted ops, in execution order."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(int8))
    tensors = interp.get_tensor_details()
    # the op list has no public accessor; the debugger's own tooling reads it the same way
    return [tensors[op["outputs"][0]]["name"] for op in interp._get_ops_details()  # noqa: SLF001
            if op["op_name"] in TFLITE_LAYERS]


def onnx_int8_kinds(int8: Path) -> dict[str, list[str]]:
    """The nodes of a QDQ model that compute in int8 (a dequantized input, a quantized
    output: ONNX Runtime runs them as one int8 kernel), by op type, as the quantizer's
    ``nodes_to_exclude`` takes them; types in the order they first run."""
    import onnx

    graph = onnx.load(str(int8)).graph
    made_by = {o: n.op_type for n in graph.node for o in n.output}
    read_by: dict[str, list[str]] = {}
    for n in graph.node:
        for i in n.input:
            read_by.setdefault(i, []).append(n.op_type)
    kinds: dict[str, list[str]] = {}
    for n in graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") or not n.output:
            continue
        if any(made_by.get(i) == "DequantizeLinear" for i in n.input) \
                and "QuantizeLinear" in read_by.get(n.output[0], []):
            kinds.setdefault(n.op_type, []).append(float_name(n))
    return kinds


def tflite_int8_kinds(int8: Path) -> dict[str, list[str]]:
    """The output tensor names of a TFLite model's ops that compute in int8, by op kind, kinds
    in the order they first run (QUANTIZE and DEQUANTIZE aside: they are the int8 edges)."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(int8))
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    kinds: dict[str, list[str]] = {}
    for op in interp._get_ops_details():  # noqa: SLF001 (as in tflite_layers)
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE") or not len(op["outputs"]):
            continue
        out = tensors.get(op["outputs"][0])
        if out is not None and out["dtype"] == np.int8:
            kinds.setdefault(op["op_name"], []).append(out["name"])
    return kinds


def openvino_layers(int8: Path) -> list[str]:
    """Convolution/MatMul op names of an IR, in topological order (NNCF's ignored scope)."""
    import openvino as ov

    return [op.get_friendly_name() for op in ov.Core().read_model(str(int8)).get_ordered_ops()
            if op.get_type_name() in OPENVINO_RANKED]


def openvino_int8_kinds(int8: Path) -> dict[str, list[str]]:
    """The ops of an int8 IR that read an activation through a FakeQuantize (the CPU plugin
    runs them in int8), by op type, under the names NNCF's ignored scope takes; types in the
    order they first run."""
    import openvino as ov

    kinds: dict[str, list[str]] = {}
    for op in ov.Core().read_model(str(int8)).get_ordered_ops():
        if op.get_type_name() in ("FakeQuantize", "Result"):
            continue
        for port in op.inputs():
            fq = port.get_source_output().get_node()
            if fq.get_type_name() == "FakeQuantize" \
                    and fq.input_value(0).get_node().get_type_name() != "Constant":
                kinds.setdefault(op.get_type_name(), []).append(op.get_friendly_name())
                break
    return kinds


LAYERS_IN_ORDER: dict[str, Callable[[Path], list[str]]] = {
    "onnx": onnx_layers, "tflite": tflite_layers, "openvino": openvino_layers}

#: per format: its int8 ops by kind (the speed step keeps kinds the runtime runs slowly in float)
INT8_KINDS: dict[str, Callable[[Path], dict[str, list[str]]]] = {
    "onnx": onnx_int8_kinds, "openvino": openvino_int8_kinds, "tflite": tflite_int8_kinds}
