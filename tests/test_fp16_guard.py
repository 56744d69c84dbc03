"""The fp16 overflow guard of OpenVINO IR and TFLite (ONNX's is in test_compress.py).

fp16 holds at most 65504: a GPU computing in fp16 turns larger activations or weights into inf.
Each guard measures the fp32 values on the eval inputs and keeps what overflows in fp32 as far
as the format allows, and says so. Tolerance: fp16 artifacts are judged like the fp16-gpu
profile judges them, cosine >= 0.999 against the fp32 source (half precision keeps ~3 digits).
"""

from __future__ import annotations

from pathlib import Path

import edgepack
import numpy as np
import pytest
from edgepack.report.model import Artifact

pytestmark = pytest.mark.slow

TARGET = """
name: {name}
title: A GPU board running {fmt} at fp16
device: {{vendor: ACME, cpu: 4x Cortex-A78, cores: 4}}
arch: aarch64
runtimes: [{{name: {runtime}, version: "{version}"}}]
formats: [{fmt}]
default_profile: fp16-gpu
limits: {{memory_mb: 1024, storage_mb: 8000, max_model_mb: 100}}
"""


def _targets(tmp_path: Path, fmt: str, runtime: str, version: str) -> Path:
    folder = tmp_path / "targets"
    folder.mkdir()
    (folder / "gpu-board.yaml").write_text(
        TARGET.format(name="gpu-board", fmt=fmt, runtime=runtime, version=version))
    return folder


def _fp16_build(tmp_path: Path, src: Path, x: np.ndarray, fmt: str, runtime: str,
                version: str) -> Artifact:
    """Build ``src`` for a board taking ``fmt`` at fp16, checked on ``x``: the deliverable,
    within the fp16-gpu budget's cosine."""
    np.savez(tmp_path / "eval.npz", x=x)
    report = edgepack.build(src, "gpu-board", evaluation=tmp_path / "eval.npz",
                            output=tmp_path / "out", runs=3,
                            targets_dirs=(_targets(tmp_path, fmt, runtime, version),))
    art = report.deliverables[0]
    assert art.format == fmt and art.precision == "fp16"
    assert art.fidelity[0].cosine >= 0.999
    return art


def _guard_names(note: str) -> set[str]:
    """The names a guard note lists after its last colon."""
    return set(note.rsplit(": ", 1)[1].split(", "))


def _layers(note: str) -> set[str]:
    """The Keras layers of the TFLite tensors a guard note lists."""
    return {name.split("/")[1] for name in _guard_names(note)}


def test_openvino_fp16_keeps_overflowing_ops_in_fp32(tmp_path: Path) -> None:
    """x -> "pre" -> "huge" (activations ~1e5) -> "shrink" -> softmax: the ops that make and
    take the overflowing values carry OpenVINO's keep-fp32 attribute in the IR, and the CPU
    plugin asked to compute in bf16 (f16 on a CPU with FP16 arithmetic) keeps them in f32.
    That an unmarked op ("pre") does run in the lower precision is checked only where the CPU
    lists BF16 or FP16 in OPTIMIZATION_CAPABILITIES (elsewhere every op runs f32 anyway)."""
    import onnx
    import openvino as ov
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    w0 = (rng.standard_normal((8, 8)) * 0.5).astype(np.float32)
    w1 = (rng.standard_normal((8, 6)) * 3e3).astype(np.float32)  # weights fit fp16
    w2 = (rng.standard_normal((6, 4)) * 1e-5).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["p"], name="pre"),
             helper.make_node("MatMul", ["p", "w1"], ["h"], name="huge"),
             helper.make_node("MatMul", ["h", "w2"], ["logits"], name="shrink"),
             helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1)]
    graph = helper.make_graph(
        nodes, "overflow", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(w, n) for w, n in ((w0, "w0"), (w1, "w1"), (w2, "w2"))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    src = tmp_path / "overflow.onnx"
    onnx.save(model, src)
    x = (rng.standard_normal((50, 8)) * 30).astype(np.float32)
    assert np.abs(x @ w0).max() < 65504 < np.abs(x @ w0 @ w1).max()  # the premise
    art = _fp16_build(tmp_path, src, x, "openvino", "openvino", "2026.4")
    guard = [n for n in art.notes if "fp16 overflow guard" in n]
    assert len(guard) == 1 and _guard_names(guard[0]) == {"huge", "shrink"}, guard
    xml = tmp_path / "out" / art.file
    core = ov.Core()
    marked = {op.get_friendly_name() for op in core.read_model(xml).get_ordered_ops()
              if "DisablePrecisionConversion_0" in op.get_rt_info()}
    assert marked == {"huge", "shrink"}
    caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    lower = ov.Type.f16 if "FP16" in caps and "BF16" not in caps else ov.Type.bf16
    compiled = core.compile_model(xml, "CPU", {"INFERENCE_PRECISION_HINT": lower})
    # the precision an op computes in is that of the values it writes (its runtimePrecision
    # reads "f16" for a FullyConnected whose weights are stored f16, whatever it computes in)
    runs = {op.get_rt_info()["originalLayersNames"].astype(str): op.get_output_element_type(0)
            for op in compiled.get_runtime_model().get_ordered_ops()}
    assert runs["huge"] == runs["shrink"] == ov.Type.f32, runs
    if "BF16" in caps or "FP16" in caps:
        assert runs["pre"] == lower, runs


def test_openvino_guard_blocks_readers_of_weights_beyond_fp16() -> None:
    """A MatMul whose constant holds 1e5 is kept in fp32 without any sample (a GPU plugin
    would convert that constant to f16: inf); its neighbours and a model that fits are not."""
    import openvino as ov
    import openvino.opset13 as ops
    from edgepack.compress.openvino_fp16 import overflow_ops

    def model(scale: float) -> ov.Model:
        x = ops.parameter([-1, 4], np.float32, name="x")
        wide = ops.matmul(x, ops.constant(np.full((4, 4), scale, np.float32)), False, False)
        wide.set_friendly_name("wide")
        act = ops.relu(wide)
        act.set_friendly_name("act")
        return ov.Model([act], [x])

    assert overflow_ops(model(1e5), None) == ["wide"]
    assert overflow_ops(model(1.0), None) == []


def test_tflite_fp16_restores_clamped_weights_and_names_overflowing_ops(tmp_path: Path) -> None:
    """x -> "pre" -> "bigw" (weights ~1e5) -> "bigact" (activations ~4e5) -> "head" (softmax).

    The TFLite converter clamps bigw's weights to 65504 (outputs unrelated to the model's:
    cosine ~0.005 on these inputs); the guard stores them float32 with their true values. A
    TFLite file cannot keep single ops in fp32, so the ops reading those weights or making or
    taking the overflowing activations are named, with the GPU-delegate setting that keeps them
    right; "pre" and the softmax are not. Tolerance: probabilities within 1e-2 of Keras' (fp16
    rounds the other weights by ~5e-4 relative; the logits reach ~80)."""
    from edgepack.quiet import import_tensorflow

    import_tensorflow()
    import keras
    from ai_edge_litert.interpreter import Interpreter

    rng = np.random.default_rng(0)
    inp = keras.Input((8,), name="x")
    h = keras.layers.Dense(8, name="pre")(inp)
    h = keras.layers.Dense(6, name="bigw")(h)
    h = keras.layers.Dense(6, name="bigact")(h)
    model = keras.Model(inp, keras.layers.Dense(4, activation="softmax", name="head")(h))
    scales = {"pre": ((8, 8), 0.3), "bigw": ((8, 6), 1e5), "bigact": ((6, 6), 20.0),
              "head": ((6, 4), 1e-4)}
    for name, (shape, scale) in scales.items():
        model.get_layer(name).set_weights([
            (rng.standard_normal(shape) * scale).astype(np.float32),
            np.zeros(shape[1], np.float32)])
    src = tmp_path / "overflow.keras"
    model.save(src)
    x = (rng.standard_normal((40, 8)) * 1e-2).astype(np.float32)
    w = [model.get_layer(n).get_weights()[0] for n in scales]
    assert np.abs(x @ w[0] @ w[1]).max() < 65504 < np.abs(x @ w[0] @ w[1] @ w[2]).max()
    art = _fp16_build(tmp_path, src, x, "tflite", "litert", "2.3")
    interp = Interpreter(model_path=str(tmp_path / "out" / art.file))
    weights = {t["name"]: np.dtype(t["dtype"]) for t in interp.get_tensor_details()
               if t["name"].endswith("_1/MatMul")}  # the kernels, as the converter names them
    assert {n.split("/")[1]: d.name for n, d in weights.items()} == {
        "pre_1": "float16", "bigw_1": "float32", "bigact_1": "float16", "head_1": "float16"}
    interp.resize_tensor_input(interp.get_input_details()[0]["index"], x.shape)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    got = interp.get_tensor(interp.get_output_details()[0]["index"])
    assert np.abs(got - model.predict(x, verbose=0)).max() <= 1e-2
    kept, ops = [n for n in art.notes if "fp16 overflow guard" in n]
    # names read "<model>/<layer>_1/...", the model's name numbered per process by Keras
    assert "kept in float32" in kept and _layers(kept) == {"bigw_1"}
    assert "setPrecisionLossAllowed(false)" in ops
    assert "TFLITE_GPU_INFERENCE_PRIORITY_MAX_PRECISION" in ops
    assert _layers(ops) == {"bigw_1", "bigact_1", "head_1"}, ops


def test_onnx2tf_fp16_restores_clamped_weights(tmp_path: Path) -> None:
    """onnx2tf's own float16 file (the route around a failing SavedModel -> TFLite hop) gets
    the same guard: a channels-first Conv with 1e5 weights, checked on NCHW samples moved to
    the file's channels-last input. The second Conv is named only because of the first one's
    activations, so naming it shows the samples reached the file. Tolerance: 2e-3 of the
    largest output (fp16 rounds the second Conv's weights by ~5e-4 relative)."""
    import onnx
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter
    from edgepack.compress.context import ConvertContext
    from edgepack.converters.onnx_to_tflite import OnnxToTFLite
    from edgepack.data.dataset import Dataset
    from edgepack.formats import get_format
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    init = [numpy_helper.from_array((rng.standard_normal((4, 3, 3, 3)) * 1e5)
                                    .astype(np.float32), "w1"),
            numpy_helper.from_array((rng.standard_normal((2, 4, 1, 1)) * 1e-2)
                                    .astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="wide", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c1", "w2"], ["y"], name="narrow")]
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 6, 6])], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    src = tmp_path / "wide.onnx"
    onnx.save(model, src)
    x = rng.standard_normal((4, 3, 6, 6)).astype(np.float32)
    ctx = ConvertContext(workdir=tmp_path, stem="wide", precision="fp16",
                         source_signature=get_format("onnx").read_signature(src),
                         samples=Dataset("eval", {"x": x}))
    out = OnnxToTFLite().convert(src, ctx)
    kept, ops = [n for n in ctx.notes if "fp16 overflow guard" in n]
    assert "kept in float32" in kept and len(_guard_names(kept)) == 1
    assert len(_guard_names(ops)) == 2 and "setPrecisionLossAllowed(false)" in ops
    session = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    interp = Interpreter(model_path=str(out))
    interp.allocate_tensors()
    for sample in x:
        ref = session.run(None, {"x": sample[None]})[0].transpose(0, 2, 3, 1)
        interp.set_tensor(interp.get_input_details()[0]["index"],
                          sample.transpose(1, 2, 0)[None])
        interp.invoke()
        got = interp.get_tensor(interp.get_output_details()[0]["index"])
        assert np.abs(got - ref).max() <= 2e-3 * np.abs(ref).max()
