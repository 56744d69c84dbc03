"""MediaPipe's custom op Convolution2DTransposeBias rewritten as the builtin TRANSPOSE_CONV.

The models are one-op flatbuffers written with LiteRT's schema objects: odd input sizes with a
kernel larger than the stride, so SAME padding is uneven and would show any offset error.
Tolerance: fp32 1e-5 against a numpy transposed convolution (float rounding of a sum of at most
a few dozen products); the custom op itself runs only through LiteRT's XNNPACK delegate.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from edgepack.compress import tflite_builtins
from edgepack.compress import tflite_graph as graph
from edgepack.converters.source_fixes import fixed_source

#: TfLitePadding as MediaPipe's op reads it
SAME, VALID = 1, 2


def _custom_op_model(size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
                     padding: int, channels: tuple[int, int] = (3, 2)) -> tuple[bytes, dict]:
    """A one-op TFLite file: input [1, H, W, Cin] -> Convolution2DTransposeBias with constant
    OHWI weights and bias; the flatbuffer and the op's weights, bias and settings."""
    from ai_edge_litert.schema_py_generated import (
        BufferT,
        BuiltinOperator,
        ModelT,
        OperatorCodeT,
        OperatorT,
        SubGraphT,
        TensorT,
    )

    rng = np.random.default_rng(0)
    c_in, c_out = channels
    weights = rng.standard_normal((c_out, *kernel, c_in)).astype(np.float32)
    bias = rng.standard_normal(c_out).astype(np.float32)
    out_shape = [1, *(_out_size(n, k, s, padding) for n, k, s in zip(size, kernel, stride,
                                                                      strict=True)), c_out]
    model, sub = ModelT(), SubGraphT()
    model.version, model.buffers, model.subgraphs = 3, [BufferT()], [sub]
    sub.tensors = []
    for name, shape, data in (("image", [1, *size, c_in], None), ("kernel", weights.shape, weights),
                              ("bias", bias.shape, bias), ("upsampled", out_shape, None)):
        buffer = BufferT()
        if data is not None:
            buffer.data = np.frombuffer(data.astype("<f4").tobytes(), np.uint8)
        model.buffers.append(buffer)
        tensor = TensorT()
        tensor.name, tensor.shape = name.encode(), np.array(shape, np.int32)
        tensor.buffer = len(model.buffers) - 1
        sub.tensors.append(tensor)
    code = OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = BuiltinOperator.CUSTOM
    code.customCode, code.version = tflite_builtins.TransposeConvBias.code, 1
    model.operatorCodes = [code]
    op = OperatorT()
    op.inputs, op.outputs = np.array([0, 1, 2], np.int32), np.array([3], np.int32)
    op.customOptions = np.frombuffer(struct.pack("<3i", padding, stride[1], stride[0]), np.uint8)
    sub.operators, sub.inputs, sub.outputs = [op], np.array([0]), np.array([3])
    return graph.write(model), {"weights": weights, "bias": bias, "stride": stride,
                                "same": padding == SAME}


def _out_size(n: int, k: int, s: int, padding: int) -> int:
    pad = max(0, k - 1 - (n - 1) % s) if padding == SAME else 0
    return s * (n - 1) + k - pad


def _reference(x: np.ndarray, weights: np.ndarray, bias: np.ndarray, stride: tuple[int, int],
               same: bool) -> np.ndarray:
    """Transposed convolution in numpy: every input pixel scatters kernel x value into the full
    output, which is then cropped by MediaPipe's padding (half of it before)."""
    _, h, w, _ = x.shape
    c_out, kh, kw, _ = weights.shape
    full = np.zeros((1, stride[0] * (h - 1) + kh, stride[1] * (w - 1) + kw, c_out), np.float64)
    for i in range(h):
        for j in range(w):
            full[0, i * stride[0]:i * stride[0] + kh, j * stride[1]:j * stride[1] + kw] += \
                np.einsum("c,okwc->kwo", x[0, i, j], weights)
    pads = [max(0, k - 1 - (n - 1) % s) if same else 0
            for n, k, s in ((h, kh, stride[0]), (w, kw, stride[1]))]
    top, left = pads[0] // 2, pads[1] // 2
    out = full[:, top:top + full.shape[1] - pads[0], left:left + full.shape[2] - pads[1]]
    return (out + bias).astype(np.float32)


def _run(flatbuffer: bytes, x: np.ndarray, xnnpack: bool = True) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if xnnpack else \
        OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interp = Interpreter(model_content=flatbuffer, experimental_op_resolver_type=resolver)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


def _op_names(flatbuffer: bytes) -> list[str]:
    from ai_edge_litert.schema_py_generated import BuiltinOperator

    names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
    model = graph.read(flatbuffer)
    return [names[graph.op_code(model, op)] for op in model.subgraphs[0].operators]


@pytest.mark.parametrize(("size", "kernel", "stride", "padding"), [
    ((5, 7), (3, 3), (2, 2), SAME),  # uneven SAME padding: 2 in total, 1 before
    ((4, 5), (4, 3), (2, 3), SAME),  # per-axis kernels and strides
    ((3, 4), (3, 2), (2, 2), VALID),
])
def test_custom_transpose_conv_becomes_builtin_with_the_same_outputs(
        size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
        padding: int) -> None:
    """The rewritten file has one builtin TRANSPOSE_CONV (version 3: with bias), runs in
    LiteRT's own kernels without XNNPACK, and matches the custom op and numpy (1e-5)."""
    flatbuffer, op = _custom_op_model(size, kernel, stride, padding)
    x = np.random.default_rng(1).standard_normal((1, *size, 3)).astype(np.float32)
    expected = _reference(x, op["weights"], op["bias"], op["stride"], op["same"])
    np.testing.assert_allclose(_run(flatbuffer, x), expected, atol=1e-5)  # the custom op
    rewritten, done = tflite_builtins.rewritten(flatbuffer)
    assert done == {"Convolution2DTransposeBias -> TRANSPOSE_CONV": 1}
    assert _op_names(rewritten) == ["TRANSPOSE_CONV"]
    assert [c.version for c in graph.read(rewritten).operatorCodes] == [3]
    np.testing.assert_allclose(_run(rewritten, x, xnnpack=False), expected, atol=1e-5)
    np.testing.assert_allclose(_run(rewritten, x), expected, atol=1e-5)


def test_unrecognised_options_leave_the_op_alone() -> None:
    """Options that are not a TfLiteTransposeConvParams (padding 0: unknown) are not guessed."""
    flatbuffer, _ = _custom_op_model((4, 4), (2, 2), (2, 2), padding=0)
    assert tflite_builtins.rewritten(flatbuffer) == (flatbuffer, {})


def test_openvino_reads_the_fixed_tflite_source(tmp_path: Path) -> None:
    """A TFLite source is fixed once, in a private copy, before converters read it: OpenVINO's
    TFLite frontend refuses the custom op and converts the copy, computing the same (1e-5)."""
    import openvino as ov

    flatbuffer, op = _custom_op_model((5, 7), (3, 3), (2, 2), SAME)
    src = tmp_path / "up.tflite"
    src.write_bytes(flatbuffer)
    with pytest.raises(Exception, match="Convolution2DTransposeBias"):
        ov.convert_model(str(src))
    fixed, notes = fixed_source(src, "tflite", tmp_path / "fixed")
    assert fixed != src and src.read_bytes() == flatbuffer, "the source itself is untouched"
    assert notes == ["custom op(s) rewritten as the builtin that computes the same, for every "
                     "tool to read: Convolution2DTransposeBias -> TRANSPOSE_CONV x1"]
    x = np.random.default_rng(2).standard_normal((1, 5, 7, 3)).astype(np.float32)
    compiled = ov.Core().compile_model(ov.convert_model(str(fixed)), "CPU")
    np.testing.assert_allclose(compiled(x)[0],
                               _reference(x, op["weights"], op["bias"], op["stride"], True),
                               atol=1e-5)
    assert fixed_source(fixed, "onnx", tmp_path / "other") == (fixed, [])
