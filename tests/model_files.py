"""Tiny artifacts of every runtime's format, made on the fly for the bench and compare tests.

Plain functions (the test modules wrap them in fixtures): TFLite fp32 and full-integer int8
with int8 I/O from the ``tiny_savedmodel`` fixture, an ONNX graph written with ``onnx.helper``
(optionally with dynamic height and width), OpenVINO IR converted from that ONNX, a stateful
RNN step shaped like silero-vad's (state batched on axis 1, a scalar sample rate),
``save_onnx`` for graphs a test writes itself, ``onnx_host_target``, a target to build
them for quickly, and a one-layer transformer encoder in ONNX.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tflite(saved_model: Path, out: Path, int8_samples: np.ndarray | None = None) -> Path:
    """fp32, or full-integer int8 with int8 input and output when samples are given."""
    from edgepack.quiet import captured, import_tensorflow

    tf = import_tensorflow()
    with captured():
        conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
        if int8_samples is not None:
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = lambda: ([s[None]] for s in int8_samples[:32])
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
        data = conv.convert()
    out.write_bytes(data)
    return out


def onnx_cnn(out: Path, height: int | str = 4, width: int | str = 4, output: str = "y") -> Path:
    """x[N,3,H,W] -> Conv(2 filters, 3x3) -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> y[N,5].

    Global pooling makes H and W free, so ``height``/``width`` may be dimension names; ``output``
    names y (its random weights pick nearly the same class for every input, so only a name
    such as "logits" makes it read as class scores).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((2, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(2, np.float32), "b")
    g = numpy_helper.from_array(rng.standard_normal((2, 5)).astype(np.float32), "g")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "g"], [output])]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, height, width])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", 5])], [w, b, g])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, out)
    return out


def onnx_two_convs(out: Path) -> Path:
    """x[1,3,8,8] -> Conv "stem" (8 filters) -> Relu -> Conv "late" (4 filters) -> y: every op
    a layer or its activation, so with both layers in float nothing is left to quantize."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    init = [numpy_helper.from_array((0.3 * rng.standard_normal(s)).astype(np.float32), k)
            for k, s in (("w1", (8, 3, 3, 3)), ("w2", (4, 8, 3, 3)))]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="stem", pads=[1] * 4),
             helper.make_node("Relu", ["c1"], ["r1"], name="stem_relu"),
             helper.make_node("Conv", ["r1", "w2"], ["y"], name="late", pads=[1] * 4)]
    graph = helper.make_graph(
        nodes, "two_convs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, out)
    return out


def openvino_ir(onnx_path: Path, out: Path) -> Path:
    import openvino as ov

    ov.save_model(ov.convert_model(str(onnx_path)), str(out), compress_to_fp16=False)
    return out


def onnx_rnn_step(out: Path, batch: int | str = "batch") -> Path:
    """One step of a tiny stateful model shaped like silero-vad: ``input`` [B, 6], ``state``
    [2, B, 3] (batch on axis 1), ``sr`` an int64 scalar -> ``output`` [B, 1] (scaled by
    sr / 16000) and ``stateN`` [2, B, 3]. ``rnn_step_reference`` computes it in numpy."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    consts = [numpy_helper.from_array(np.array(v, np.float32), k)
              for k, v in (("half", 0.5), ("tenth", 0.1), ("rate", 16000.0))]
    consts += [numpy_helper.from_array(np.array(v, np.int64), k)
               for k, v in (("one", [1]), ("zero", [0]), ("outer", [0, 2]))]
    nodes = [helper.make_node("ReduceSum", ["input", "one"], ["s"], keepdims=1),
             helper.make_node("Unsqueeze", ["s", "zero"], ["s3"]),
             helper.make_node("Mul", ["s3", "tenth"], ["drive"]),
             helper.make_node("Mul", ["state", "half"], ["kept"]),
             helper.make_node("Add", ["kept", "drive"], ["pre"]),
             helper.make_node("Tanh", ["pre"], ["stateN"]),
             helper.make_node("ReduceMean", ["stateN", "outer"], ["m"], keepdims=0),
             helper.make_node("Unsqueeze", ["m", "one"], ["m2"]),
             helper.make_node("Cast", ["sr"], ["srf"], to=TensorProto.FLOAT),
             helper.make_node("Div", ["srf", "rate"], ["k"]),
             helper.make_node("Mul", ["m2", "k"], ["output"])]
    graph = helper.make_graph(
        nodes, "rnn_step",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 6]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, batch, 3]),
         helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, 1]),
         helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, batch, 3])], consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, out)
    return out


def rnn_step_reference(x: np.ndarray, state: np.ndarray,
                       sr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``onnx_rnn_step`` in numpy: x [N, 6], state [2, N, 3], sr [N] -> ([N, 1], [2, N, 3])."""
    new = np.tanh(0.5 * state + 0.1 * x.sum(axis=1)[None, :, None])
    return new.mean(axis=(0, 2))[:, None] * (np.asarray(sr, np.float32) / 16000)[:, None], new


def save_onnx(graph: object, path: Path, opset: int = 17) -> Path:
    """``graph`` (made with ``onnx.helper``) as a checked model file at ``path``."""
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def onnx_host_target(targets_dir: Path) -> Path:
    """The x86-host target narrowed to ONNX with int8-arm by default, as ``onnx-host`` in
    ``targets_dir`` (a project's ``targets_dir``): int8 builds without the TFLite hops. Its
    CPU has VNNI, so its int8 sums exactly and is judged as written on any host, as an ARM
    target's is (runtimes/integer_semantics.py)."""
    host = (Path(__file__).parents[1] / "targets" / "x86-host.yaml").read_text()
    path = targets_dir / "onnx-host.yaml"
    path.write_text(host.replace("name: x86-host", "name: onnx-host").replace(
        "aliases: [host, local]\n", "").replace("formats: [tflite, onnx, openvino]",
                                                "formats: [onnx]").replace(
        "default_profile: fp32", "default_profile: int8-arm").replace(
        "isa: [x86-64, sse4.2, avx]", "isa: [x86-64-v3, avx2, fma, avx_vnni]"))
    return path


def onnx_vad_if(out: Path, hidden: int = 4) -> Path:
    """A voice-activity step shaped like silero-vad, with its sample-rate If: ``input``
    [B, 8] at 16 kHz (declared [?, ?]), ``state`` [2, B, hidden] (LSTM h and c, batch on
    axis 1), ``sr`` an int64 scalar -> ``output`` [B, 1], ``stateN`` [2, B, hidden]. At 16 kHz
    an LSTM (228 parameters at hidden 4) steps the state; the 8 kHz branch frames the input in
    16-sample windows, so it only type-checks for other input sizes: with ``input`` fixed at
    1x8 ONNX Runtime refuses the whole model."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)

    def const(name: str, value: np.ndarray) -> object:
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value))

    weights = {"W": (1, 4 * hidden, 8), "R": (1, 4 * hidden, hidden), "B": (1, 8 * hidden),
               "Wo": (hidden, 1)}
    then = helper.make_graph(
        [*(const(k, (0.5 * rng.standard_normal(s)).astype(np.float32))
           for k, s in weights.items()),
         const("axis0", np.array([0], np.int64)), const("i0", np.array(0, np.int64)),
         const("i1", np.array(1, np.int64)),
         helper.make_node("Unsqueeze", ["input", "axis0"], ["x3"]),
         helper.make_node("Gather", ["state", "i0"], ["h"]),
         helper.make_node("Gather", ["state", "i1"], ["c"]),
         helper.make_node("Unsqueeze", ["h", "axis0"], ["h3"]),
         helper.make_node("Unsqueeze", ["c", "axis0"], ["c3"]),
         helper.make_node("LSTM", ["x3", "W", "R", "B", "", "h3", "c3"], ["y", "yh", "yc"],
                          hidden_size=hidden),
         helper.make_node("Concat", ["yh", "yc"], ["state16"], axis=0),
         helper.make_node("Squeeze", ["yh", "axis0"], ["h2"]),
         helper.make_node("MatMul", ["h2", "Wo"], ["logit"]),
         helper.make_node("Sigmoid", ["logit"], ["out16"])],
        "sr16k", [], [helper.make_tensor_value_info("out16", TensorProto.FLOAT, None),
                      helper.make_tensor_value_info("state16", TensorProto.FLOAT, None)])
    other = helper.make_graph(
        [const("frames", np.array([-1, 16], np.int64)),
         helper.make_node("Reshape", ["input", "frames"], ["x16"]),
         helper.make_node("ReduceMean", ["x16"], ["m"], axes=[1], keepdims=1),
         helper.make_node("Sigmoid", ["m"], ["out8"]),
         helper.make_node("Identity", ["state"], ["state8"])],
        "sr8k", [], [helper.make_tensor_value_info("out8", TensorProto.FLOAT, None),
                     helper.make_tensor_value_info("state8", TensorProto.FLOAT, None)])
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["rate"],
                          value=numpy_helper.from_array(np.array(16000, np.int64))),
         helper.make_node("Equal", ["sr", "rate"], ["is16k"]),
         helper.make_node("If", ["is16k"], ["output", "stateN"], then_branch=then,
                          else_branch=other)],
        "vad_if",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["", ""]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "", hidden]),
         helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["", 1]),
         helper.make_tensor_value_info("stateN", TensorProto.FLOAT, ["", "", ""])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, out)
    return out


def tiny_transformer(path: Path) -> Path:
    """A one-layer transformer encoder: x[N,8,16] -> embedding MatMul -> LayerNorm ->
    single-head attention (query x key, scaled, an additive -1e9 padding mask from
    ``mask``[N,8], Softmax, x value) -> output MatMul -> residual Add -> LayerNorm -> MatMul ->
    GELU (Erf) -> MatMul -> residual Add -> LayerNorm -> y[N,8,32].

    Its feed-forward unit 0 fires only on a marker token (x[..., 0] = 12), and writes a value
    hundreds of times the others' into one output channel: the sparse "massive activation"
    real transformers have."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    dims, hidden, inner = 16, 32, 64

    def dense(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape) / np.sqrt(shape[0])

    embed = dense(dims, hidden)
    w1, b1, w2 = dense(hidden, inner), np.zeros(inner), dense(inner, hidden)
    w1[:, 0] = embed[0] / np.linalg.norm(embed[0]) * 30  # reads the marker's direction
    b1[0], w2[0, 1] = -105, 10  # off unless the marker is there, then huge in channel 1
    weights = {"we": embed, "wq": dense(hidden, hidden), "wk": dense(hidden, hidden),
               "wv": dense(hidden, hidden), "wo": dense(hidden, hidden), "w1": w1, "b1": b1,
               "w2": w2, "gamma": np.ones(hidden), "beta": np.zeros(hidden),
               "scale": np.sqrt(hidden), "one": 1.0, "neg": -1e9, "half": 0.5,
               "root2": np.sqrt(2)}
    n = helper.make_node

    def norm(x: str, y: str) -> object:
        return n("LayerNormalization", [x, "gamma", "beta"], [y], name=f"norm_{y}", axis=-1)

    nodes = [n("MatMul", ["x", "we"], ["e"], name="embed"), norm("e", "h"),
             n("MatMul", ["h", "wq"], ["q"], name="query"),
             n("MatMul", ["h", "wk"], ["k"], name="key"),
             n("MatMul", ["h", "wv"], ["v"], name="value"),
             n("Transpose", ["k"], ["kt"], name="key_t", perm=[0, 2, 1]),
             n("MatMul", ["q", "kt"], ["s"], name="scores"),
             n("Div", ["s", "scale"], ["s_scaled"], name="scaled"),
             n("Sub", ["one", "mask"], ["pad"], name="pad"),
             n("Mul", ["pad", "neg"], ["pad_bias"], name="pad_bias"),
             n("Unsqueeze", ["pad_bias", "axis1"], ["pad_bias3"], name="pad_bias3"),
             n("Add", ["s_scaled", "pad_bias3"], ["s_masked"], name="masked"),
             n("Softmax", ["s_masked"], ["p"], name="softmax", axis=-1),
             n("MatMul", ["p", "v"], ["a"], name="context"),
             n("MatMul", ["a", "wo"], ["o"], name="attention_out"),
             n("Add", ["h", "o"], ["r1"], name="residual1"), norm("r1", "h1"),
             n("MatMul", ["h1", "w1"], ["f1"], name="ffn1"),
             n("Add", ["f1", "b1"], ["f1b"], name="ffn1_bias"),
             n("Div", ["f1b", "root2"], ["f1s"], name="gelu_div"),
             n("Erf", ["f1s"], ["erf"], name="gelu_erf"),
             n("Add", ["erf", "one"], ["erf1"], name="gelu_add"),
             n("Mul", ["f1b", "erf1"], ["gm"], name="gelu_mul"),
             n("Mul", ["gm", "half"], ["gelu"], name="gelu"),
             n("MatMul", ["gelu", "w2"], ["f2"], name="ffn2"),
             n("Add", ["h1", "f2"], ["r2"], name="residual2"), norm("r2", "y")]
    init = [numpy_helper.from_array(np.asarray(w, np.float32), k) for k, w in weights.items()]
    init.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
    graph = helper.make_graph(
        nodes, "tiny_transformer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, dims]),
         helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, hidden])], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path
