"""Empirical bias correction for full-integer int8 TFLite files (why: compress/bias.py; what it
gains: docs/benchmarks.md).

How: the converter's own quantizer makes a debug copy of the int8 file
(``enable_numeric_verify``), in which a float twin of every quantized op runs on the same
dequantized input, compared by a NumericVerify op. On the calibration samples, each weighted
op's mean shift against its twin is measured (``measure``) and subtracted from the op's int32
bias (``apply``), in the file measured or in a re-quantization of the same model.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .bias import ChannelShift, Shifts, corrected

#: fused activations that are linear on an interval, where a bias shift moves the output as is
LINEAR_ON = {0: (-np.inf, np.inf), 1: (0.0, np.inf), 2: (-1.0, 1.0), 3: (0.0, 6.0)}
#: TFLite builtin ops with a bias input (index 2) whose output channel is the last axis
BIASED_OPS = {"CONV_2D": "Conv2DOptions", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
              "FULLY_CONNECTED": "FullyConnectedOptions"}


@dataclass
class _Bias:
    """An op's int32 bias in the flatbuffer: where its bytes are and their scale."""

    op: str  # the op's output tensor name, what the converter's denylist also takes
    offset: int
    channels: int
    scales: np.ndarray  # per output channel, or one for all
    output_scale: float
    #: where the op's fused activation is linear; None: nowhere (tanh), or the bias's bytes
    #: are shared with another tensor: left as it is
    linear: tuple[float, float] | None


def measure(quantized: bytes, debug: bytes,
            feeds: Iterable[dict[str, np.ndarray] | list[np.ndarray]]) -> Shifts:
    """Each weighted op's mean shift per output channel in ``quantized``, measured on
    ``feeds`` by the NumericVerify ops of ``debug`` (the same quantization, made with
    ``enable_numeric_verify``). A feed keyed by the signature's input names goes to those
    inputs; a list goes to the graph's inputs in order."""
    from tensorflow.lite.python.interpreter import Interpreter

    interp = Interpreter(model_content=debug, experimental_preserve_all_tensors=True)
    tensors = interp.get_tensor_details()
    ops = interp._get_ops_details()  # noqa: SLF001 (the debugger reads NumericVerify this way)
    verified = {op["inputs"][0]: op["inputs"][1] for op in ops
                if op["op_name"] == "NumericVerify"}
    # the debug copy's quantized ops come in the plain file's order, but their output names
    # get a digit appended (which one varies): ops are matched by order, checked by output
    # quantization and channel count
    quantized_ops = [(op["outputs"][0], verified[op["outputs"][0]]) for op in ops
                     if op["op_name"] in BIASED_OPS and op["outputs"][0] in verified]
    pairs = []  # (bias, quantized output index, twin output index, its scale and zero point)
    for bias, (q, f) in zip(_biases(quantized), quantized_ops, strict=False):
        params = tensors[q]["quantization_parameters"]
        if len(params["scales"]) != 1 or float(params["scales"][0]) != bias.output_scale \
                or tensors[q]["shape"][-1] != bias.channels:
            break  # not the same op: the orders differ from here on
        if bias.linear is not None:
            pairs.append((bias, q, f, float(params["scales"][0]),
                          int(params["zero_points"][0])))
    shifts = [ChannelShift(bias.channels, bias.linear, -1) for bias, *_ in pairs]
    inputs = interp.get_input_details()
    by_name = interp.get_signature_runner().get_input_details() \
        if interp.get_signature_list() else {}
    shapes: list[tuple[int, ...]] = []
    for given in feeds:
        if isinstance(given, dict) and set(given) == set(by_name):
            feed = [(by_name[name], given[name]) for name in by_name]
        else:
            values = list(given.values()) if isinstance(given, dict) else given
            feed = list(zip(inputs, values, strict=True))
        if [tuple(a.shape) for _, a in feed] != shapes:
            shapes = [tuple(a.shape) for _, a in feed]
            for detail, array in feed:
                interp.resize_tensor_input(detail["index"], array.shape)
            interp.allocate_tensors()
        for detail, array in feed:
            interp.set_tensor(detail["index"], array.astype(detail["dtype"]))
        interp.invoke()
        for shift, (_, q, f, scale, zero) in zip(shifts, pairs, strict=True):
            shift.add((interp.get_tensor(q).astype(np.float64) - zero) * scale,
                      interp.get_tensor(f))
    return {bias.op: shift.mean() for shift, (bias, *_) in zip(shifts, pairs, strict=True)}


def apply(quantized: bytes, shifts: Shifts) -> tuple[bytes, int]:
    """(``quantized`` with the int32 bias of each op in ``shifts`` corrected; how many)."""
    out = bytearray(quantized)
    count = 0
    for bias in _biases(quantized):
        shift = shifts.get(bias.op)
        if shift is None or bias.linear is None:
            continue
        view = np.frombuffer(memoryview(out)[bias.offset:bias.offset + 4 * bias.channels],
                             dtype="<i4")
        fixed = corrected(view, shift, bias.scales)
        if fixed is not None:
            view[:] = fixed
            count += 1
    return bytes(out), count


def _biases(model: bytes) -> list[_Bias]:
    """The int32 bias of each op with one, in execution order."""
    from tensorflow.lite.python import schema_py_generated as schema

    root = schema.Model.GetRootAs(model, 0)
    graph = root.Subgraphs(0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    users: dict[int, int] = {}
    for t in range(graph.TensorsLength()):
        users[graph.Tensors(t).Buffer()] = users.get(graph.Tensors(t).Buffer(), 0) + 1
    found = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = root.OperatorCodes(op.OpcodeIndex())
        kind = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
        if kind not in BIASED_OPS or op.InputsLength() < 3 or op.Inputs(2) < 0:
            continue
        bias = graph.Tensors(op.Inputs(2))
        buffer = root.Buffers(bias.Buffer())
        quant = bias.Quantization()
        output = graph.Tensors(op.Outputs(0)).Quantization()
        if bias.Type() != schema.TensorType.INT32 or quant is None or output is None \
                or output.ScaleLength() != 1 or buffer.DataLength() == 0:
            continue  # a layer kept in float
        shared = users[bias.Buffer()] > 1  # the flatbuffer deduplicated equal biases
        found.append(_Bias(
            op=graph.Tensors(op.Outputs(0)).Name().decode(),
            offset=buffer._tab.Vector(buffer._tab.Offset(4)),  # noqa: SLF001 (no accessor)
            channels=buffer.DataLength() // 4,
            scales=quant.ScaleAsNumpy().astype(np.float64),
            output_scale=float(output.ScaleAsNumpy()[0]),
            linear=None if shared else LINEAR_ON.get(_activation(schema, op, BIASED_OPS[kind]))))
    return found


def _activation(schema: Any, op: Any, options: str) -> int:
    """The op's fused activation (ActivationFunctionType)."""
    table = op.BuiltinOptions()
    if table is None:
        return 0
    parsed = getattr(schema, options)()
    parsed.Init(table.Bytes, table.Pos)
    return int(parsed.FusedActivationFunction())
