"""Custom ops of a TFLite file that a builtin op computes exactly, rewritten as that builtin.

MediaPipe's float models (selfie segmentation, hair segmentation, ...) upsample with the custom
op ``Convolution2DTransposeBias``: a transposed convolution with a bias, written when TFLite's
TRANSPOSE_CONV had no bias input. LiteRT runs it only through its XNNPACK delegate; OpenVINO's
and tf2onnx's TFLite readers refuse it, and ai-edge-quantizer leaves it float. TRANSPOSE_CONV
takes a bias as its fourth input since op version 3 (TF 2.3), so the op becomes a builtin that
every tool reads, quantizes and runs with its own kernels.

One class per custom op, in a registry keyed by the op's custom code; an op whose options or
shapes a rewrite does not recognise is left as it is.
"""

from __future__ import annotations

import struct
from collections import Counter
from typing import Any

import numpy as np

from . import tflite_graph as graph

#: TfLitePadding, the C enum MediaPipe's op reads its options as (the schema's Padding differs)
_C_SAME, _C_VALID = 1, 2


class TransposeConvBias:
    """MediaPipe's ``Convolution2DTransposeBias`` (inputs: data, OHWI weights, bias) ->
    TRANSPOSE_CONV (inputs: output shape, weights, data, bias).

    Its custom options are a raw TfLiteTransposeConvParams: int32 padding (1 SAME, 2 VALID),
    stride width, stride height. MediaPipe sizes the output itself: ``stride * (in - 1) +
    kernel - pad`` per axis, with ``pad = max(0, kernel - 1 - (in - 1) % stride)`` for SAME (0
    for VALID) and ``pad // 2`` before. TRANSPOSE_CONV given that output size computes the same
    padding (both before and in total), so the two ops agree to float rounding.
    """

    code = b"Convolution2DTransposeBias"
    builtin = "TRANSPOSE_CONV"

    def rewrite(self, model: Any, sub: Any, op: Any) -> bool:
        """Make ``op`` of subgraph ``sub`` a TRANSPOSE_CONV in place; whether it was."""
        from ai_edge_litert.schema_py_generated import (
            BuiltinOperator,
            BuiltinOptions,
            Padding,
            TransposeConvOptionsT,
        )

        params = _transpose_conv_params(op.customOptions)
        if params is None or len(op.inputs) != 3 or len(op.outputs) != 1:
            return False
        padding, stride_w, stride_h = params
        data, weights, bias = (sub.tensors[i] for i in op.inputs)
        shape = _output_shape(data, weights, padding == _C_SAME, (stride_h, stride_w))
        out = sub.tensors[op.outputs[0]]
        if shape is None or not _agrees(out, shape) or len(_dims(bias)) != 1:
            return False
        options = TransposeConvOptionsT()
        options.padding = Padding.SAME if padding == _C_SAME else Padding.VALID
        options.strideW, options.strideH = stride_w, stride_h
        shape_tensor = _int32_constant(model, sub, out.name + b"/output_shape", shape)
        op.opcodeIndex = _builtin_code(model, BuiltinOperator.TRANSPOSE_CONV, version=3)
        op.inputs = np.array([shape_tensor, op.inputs[1], op.inputs[0], op.inputs[2]], np.int32)
        op.builtinOptionsType, op.builtinOptions = BuiltinOptions.TransposeConvOptions, options
        op.customOptions, op.customOptionsFormat = None, 0
        return True


#: custom code -> its rewrite
REWRITES = {r.code: r for r in (TransposeConvBias(),)}


def rewritable(flatbuffer: bytes) -> list[str]:
    """The custom codes of ``flatbuffer`` that a rewrite knows (read without unpacking the
    file, so a model without them costs nothing)."""
    from ai_edge_litert.schema_py_generated import Model

    model = Model.GetRootAs(flatbuffer, 0)
    codes = (model.OperatorCodes(i).CustomCode() for i in range(model.OperatorCodesLength()))
    return sorted({c.decode() for c in codes if c in REWRITES})


def rewritten(flatbuffer: bytes) -> tuple[bytes, Counter[str]]:
    """``flatbuffer`` with its known custom ops rewritten, and how many were (rewrite's
    count; the bytes unchanged when none was)."""
    if not rewritable(flatbuffer):
        return flatbuffer, Counter()
    model = graph.read(flatbuffer)
    done = rewrite(model)
    return (graph.write(model) if done else flatbuffer), done


def describe(done: Counter[str]) -> str:
    """The source fix's note."""
    counts = ", ".join(f"{what} x{n}" for what, n in sorted(done.items()))
    return ("custom op(s) rewritten as the builtin that computes the same, for every tool to "
            f"read: {counts}")


def rewrite(model: Any) -> Counter[str]:
    """Rewrite every custom op of ``model`` (the object form, tflite_graph.read) that a
    registered rewrite recognises; how many were, per "CUSTOM_CODE -> BUILTIN"."""
    done: Counter[str] = Counter()
    for sub in model.subgraphs:
        for op in sub.operators:
            known = REWRITES.get(model.operatorCodes[op.opcodeIndex].customCode)
            if known is not None and known.rewrite(model, sub, op):
                done[f"{known.code.decode()} -> {known.builtin}"] += 1
    if done:
        _drop_unused_codes(model)
    return done


def _transpose_conv_params(options: Any) -> tuple[int, int, int] | None:
    """(padding, stride width, stride height) of a raw TfLiteTransposeConvParams, or None."""
    if options is None or len(options) != 12:
        return None
    padding, stride_w, stride_h = struct.unpack("<3i", bytes(bytearray(options)))
    if padding not in (_C_SAME, _C_VALID) or stride_w < 1 or stride_h < 1:
        return None
    return padding, stride_w, stride_h


def _dims(tensor: Any) -> list[int]:
    """A tensor's dimensions, -1 for each dynamic one (the shape signature's)."""
    shape = [int(d) for d in (tensor.shape if tensor.shape is not None else [])]
    signature = tensor.shapeSignature
    if signature is not None and len(signature) == len(shape):
        shape = [int(s) if s < 0 else d for d, s in zip(shape, signature, strict=True)]
    return shape


def _output_shape(data: Any, weights: Any, same: bool,
                  strides: tuple[int, int]) -> list[int] | None:
    """The NHWC output shape MediaPipe's op gives (None: a dynamic or unexpected shape)."""
    dims, kernel = _dims(data), _dims(weights)
    if len(dims) != 4 or len(kernel) != 4 or min(dims + kernel) < 1 or dims[3] != kernel[3]:
        return None
    sizes = []
    for size, k, stride in zip(dims[1:3], kernel[1:3], strides, strict=True):
        pad = max(0, k - 1 - (size - 1) % stride) if same else 0
        sizes.append(stride * (size - 1) + k - pad)
    return [dims[0], *sizes, kernel[0]]


def _agrees(tensor: Any, shape: list[int]) -> bool:
    """Whether an output tensor's stated shape (when it states one) is ``shape``."""
    dims = _dims(tensor)
    return not dims or dims == shape


def _int32_constant(model: Any, sub: Any, name: bytes, values: list[int]) -> int:
    """A new int32 constant tensor in ``sub``; its index."""
    from ai_edge_litert.schema_py_generated import BufferT, TensorT, TensorType

    buffer = BufferT()
    buffer.data = np.frombuffer(np.asarray(values, "<i4").tobytes(), np.uint8)
    model.buffers.append(buffer)
    tensor = TensorT()
    tensor.shape = np.array([len(values)], np.int32)
    tensor.type, tensor.buffer, tensor.name = TensorType.INT32, len(model.buffers) - 1, name
    sub.tensors.append(tensor)
    return len(sub.tensors) - 1


def _builtin_code(model: Any, builtin: int, version: int) -> int:
    """The index of ``builtin``'s operator code at ``version`` or later (added if missing)."""
    from ai_edge_litert.schema_py_generated import OperatorCodeT

    for i, code in enumerate(model.operatorCodes):
        if not code.customCode and max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            code.version = max(int(code.version), version)
            return i
    code = OperatorCodeT()
    # codes past 127 live only in the newer field; the deprecated one is an int8
    code.builtinCode, code.deprecatedBuiltinCode = builtin, min(builtin, 127)
    code.version = version
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _drop_unused_codes(model: Any) -> None:
    """Remove the operator codes no op uses any more, renumbering the ops' code indices."""
    used = sorted({int(op.opcodeIndex) for sub in model.subgraphs for op in sub.operators})
    index = {old: new for new, old in enumerate(used)}
    model.operatorCodes = [model.operatorCodes[i] for i in used]
    for sub in model.subgraphs:
        for op in sub.operators:
            op.opcodeIndex = index[int(op.opcodeIndex)]

