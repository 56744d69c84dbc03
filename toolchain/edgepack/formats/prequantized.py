"""Whether a model file comes already quantized, and how: a full-integer TFLite (a Coral or
MediaPipe int8 model, TensorFlow's converter with a representative dataset), a QDQ ONNX, an
IR from NNCF; or one with int8 weights and float activations (dynamic range, weight
compression).

Such a source is not quantized again: a second quantizer reads the first one's rounded weights
and ranges as float and rounds them onto grids of its own, which only adds error, and it adds
its quantize/dequantize pairs next to the source's (a QDQ ONNX quantized again grew 6.9 ->
11.7 KB). Its files keep the quantization it brings, and are named and reported by it; there
is no fp32 model to compare them with.

Which tensors count: quantized weights (an integer constant with a scale) make a file at least
``dynamic-int8``; activations on an integer grid (a quantized non-constant tensor, a
QuantizeLinear or QLinear op, a FakeQuantize of a computed value) make it ``int8``. Float16
weights are no quantization: an fp16 file is compressed further like any float file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..config.profiles import Precision

#: ONNX ops that put activations on an integer grid (standard and ONNX Runtime's contrib ops)
ONNX_ACTIVATION_OPS = frozenset({"QuantizeLinear", "QLinearConv", "QLinearMatMul",
                                 "QLinearAdd", "QLinearMul", "QLinearConcat",
                                 "QLinearAveragePool", "QLinearGlobalAveragePool",
                                 "QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax"})
#: ONNX ops of int8 weights with float activations (dynamic quantization, weight-only)
ONNX_WEIGHT_OPS = frozenset({"DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger",
                             "ConvInteger", "DynamicQuantizeMatMul", "MatMulNBits"})
#: each quantization a source can bring, in words
DESCRIBED = {"int8": "int8 weights and activations",
             "dynamic-int8": "int8 weights, float activations"}
#: OpenVINO constant types that hold compressed weights
OPENVINO_WEIGHT_TYPES = frozenset({"i8", "u8", "i4", "u4", "nf4", "f4e2m1"})


def quantization_of(fmt: str, path: Path) -> Precision | None:
    """``int8``, ``dynamic-int8``, or None for a float file (and for formats whose files
    edgepack does not read for this: Keras, SavedModel, PyTorch). A file that cannot be read
    is None too: the build plans before it loads the model, and loading says what is wrong
    with the file in the format's own words."""
    reader = READERS.get(fmt)
    try:
        return reader(path) if reader is not None else None
    except Exception:  # noqa: BLE001 - a corrupt file is the loader's to report
        return None


def _tflite(path: Path) -> Precision | None:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(path.read_bytes(), 0)
    integer = {schema.TensorType.INT8, schema.TensorType.UINT8, schema.TensorType.INT16,
               schema.TensorType.INT4}
    found: Precision | None = None
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            quant = tensor.Quantization()
            if tensor.Type() not in integer or quant is None or quant.ScaleLength() == 0:
                continue
            if model.Buffers(tensor.Buffer()).DataLength() == 0:
                return "int8"  # a computed value on an integer grid
            found = "dynamic-int8"
    return found


def _onnx(path: Path) -> Precision | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    ops = {node.op_type for node in model.graph.node}
    if ops & ONNX_ACTIVATION_OPS:
        return "int8"
    return "dynamic-int8" if ops & ONNX_WEIGHT_OPS else None


def _openvino(path: Path) -> Precision | None:
    import openvino as ov

    found: Precision | None = None
    for op in ov.Core().read_model(str(path)).get_ops():
        kind = op.get_type_name()
        if kind == "FakeQuantize" and op.input_value(0).get_node().get_type_name() != "Constant":
            return "int8"
        if kind == "Constant" and op.get_output_element_type(0).get_type_name() \
                in OPENVINO_WEIGHT_TYPES:
            found = "dynamic-int8"
    return found


READERS: dict[str, Callable[[Path], Precision | None]] = {
    "tflite": _tflite, "onnx": _onnx, "openvino": _openvino}
