"""Runtime adapters on tiny real models built here: LiteRT (fp32, int8 with int8 I/O, static
batch 1, a multi-input/multi-output signature), ONNX Runtime and OpenVINO (fp32 and QDQ int8,
dynamic and static batch), TensorFlow SavedModel and Keras.

Tolerances, and why:
* fp32 against fp32 (the same weights run by another engine): 1e-5 absolute on softmax
  outputs / 1e-4 relative on unbounded logits. Engines reorder float sums (XNNPACK, MLAS and
  oneDNN use different blockings), which moves results by a few ULP per accumulation, i.e.
  ~1e-6 here; 1e-5 leaves 10x room and still catches any real difference (a wrong layout or a
  missed bias is >1e-2).
* int8 against fp32: quantization error is expected, so the comparison is what survives it:
  top-1 agreement and cosine similarity of the outputs, with thresholds stated at each check.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from edgepack.errors import DataError, ModelError
from edgepack.quiet import captured
from edgepack.runtimes import RUNTIMES, InputError, RuntimeOptions, get_runtime, runtime_for_format
from edgepack.runtimes.base import dequantize, quantize
from edgepack.signature import Quantization

FP32_ATOL = 1e-5  # see module docstring: a few ULP of reordered float sums, 10x margin

RNG_SEED = 1234
N_CLASSES = 10


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _centered_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of per-sample deviations from the mean: softmax outputs all share a large common
    component (they sum to 1), which would make a plain cosine look good for any output."""
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    return _cosine(a, b)


# ------------------------------------------------------------------------------------------------
# fixtures: tiny real models
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def tf():
    from edgepack.quiet import import_tensorflow

    return import_tensorflow()


@pytest.fixture(scope="session")
def images() -> np.ndarray:
    """Evaluation inputs in [0, 1], shape (16, 8, 8, 1)."""
    return np.random.default_rng(RNG_SEED).random((16, 8, 8, 1), dtype=np.float32)


@pytest.fixture(scope="session")
def cnn(tf, tmp_path_factory):
    """Input(8,8,1) -> Conv2D(4,3) relu -> Flatten -> Dense(10) softmax, saved as .keras and
    exported as a SavedModel. The Dense kernel is drawn wide (stddev 0.5) so that the softmax is
    confident: top-1 agreement between fp32 and int8 then measures something."""
    import keras

    keras.utils.set_random_seed(RNG_SEED)
    inp = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    x = keras.layers.Flatten(name="flatten")(x)
    out = keras.layers.Dense(
        N_CLASSES, activation="softmax", name="probs",
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.5, seed=RNG_SEED))(x)
    model = keras.Model(inp, out, name="tiny_cnn")
    root = tmp_path_factory.mktemp("cnn")
    keras_path = root / "cnn.keras"
    model.save(keras_path)
    savedmodel = root / "savedmodel"
    model.export(str(savedmodel), verbose=False)
    return {"model": model, "keras": keras_path, "savedmodel": savedmodel, "root": root}


@pytest.fixture(scope="session")
def reference(cnn, images) -> np.ndarray:
    """The fp32 Keras model's outputs on ``images``: what every other engine is compared to."""
    return np.asarray(cnn["model"](images, training=False))


def _convert(tf, saved_model: Path, out: Path, int8_data: np.ndarray | None = None) -> Path:
    with captured():
        conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
        if int8_data is not None:
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = lambda: ([x[None]] for x in int8_data)
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
        out.write_bytes(conv.convert())
    return out


@pytest.fixture(scope="session")
def tflite_models(tf, cnn, images, tmp_path_factory):
    root = tmp_path_factory.mktemp("tflite")
    calib = np.random.default_rng(RNG_SEED + 1).random((32, 8, 8, 1), dtype=np.float32)
    model = cnn["model"]

    # the same network (same weights) with a static batch of 1, as static-shape targets get it
    static_dir = root / "static_sm"
    model.export(str(static_dir), verbose=False,
                 input_signature=[tf.TensorSpec([1, 8, 8, 1], tf.float32, name="image")])

    # two inputs and three outputs whose names are not in tensor order
    multi_dir = root / "multi_sm"

    class Multi(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="zin"),
                                      tf.TensorSpec([None, 4], tf.float32, name="ain")])
        def serve(self, zin, ain):
            return {"zeta": zin * 2.0, "alpha": ain + 1.0, "mid": zin - ain}

    multi = Multi()
    tf.saved_model.save(multi, str(multi_dir), signatures=multi.serve)

    # two signatures; the converter puts "aa" in subgraph 0 and "serving_default" in subgraph 1,
    # whose tensor indices overlap subgraph 0's
    class Two(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="a")])
        def aa(self, a):
            return {"out": a * 3.0}

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serving_default(self, x):
            return {"y": x + 1.0}

    two = Two()
    with captured():
        two_bytes = tf.lite.TFLiteConverter.from_concrete_functions(
            [two.serving_default.get_concrete_function(), two.aa.get_concrete_function()],
            two).convert()
    (root / "two.tflite").write_bytes(two_bytes)

    return {
        "two": root / "two.tflite",
        "fp32": _convert(tf, cnn["savedmodel"], root / "fp32.tflite"),
        "int8": _convert(tf, cnn["savedmodel"], root / "int8.tflite", int8_data=calib),
        "static": _convert(tf, static_dir, root / "static.tflite"),
        "multi": _convert(tf, multi_dir, root / "multi.tflite"),
        "multi_sm": multi_dir,
    }


# ONNX: y = softmax(relu(x @ W1 + b1) @ W2 + b2), x: (N, 16) -> (N, 10)
@pytest.fixture(scope="session")
def mlp_weights():
    rng = np.random.default_rng(RNG_SEED + 2)
    return {"W1": rng.normal(0, 0.5, (16, 32)).astype(np.float32),
            "b1": rng.normal(0, 0.1, (32,)).astype(np.float32),
            "W2": rng.normal(0, 0.5, (32, N_CLASSES)).astype(np.float32),
            "b2": rng.normal(0, 0.1, (N_CLASSES,)).astype(np.float32)}


def _mlp_reference(w, x: np.ndarray) -> np.ndarray:
    h = np.maximum(x.astype(np.float64) @ w["W1"] + w["b1"], 0.0)
    z = h @ w["W2"] + w["b2"]
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def _mlp_onnx(w, batch: int | str):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h0"]),
             helper.make_node("Add", ["h0", "b1"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["h2"]),
             helper.make_node("Gemm", ["h2", "W2", "b2"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probs"], axis=-1)]
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 16])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [batch, N_CLASSES])],
        initializer=[numpy_helper.from_array(v, k) for k, v in w.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="session")
def vectors() -> np.ndarray:
    return np.random.default_rng(RNG_SEED + 3).normal(0, 1, (16, 16)).astype(np.float32)


@pytest.fixture(scope="session")
def onnx_models(mlp_weights, vectors, tmp_path_factory):
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    root = tmp_path_factory.mktemp("onnx")
    paths = {"fp32": root / "mlp.onnx", "static": root / "mlp_b1.onnx",
             "int8": root / "mlp_int8.onnx"}
    onnx.save(_mlp_onnx(mlp_weights, "N"), paths["fp32"])
    onnx.save(_mlp_onnx(mlp_weights, 1), paths["static"])

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(RNG_SEED + 4)
            self._it = iter([{"x": rng.normal(0, 1, (1, 16)).astype(np.float32)}
                             for _ in range(32)])

        def get_next(self):
            return next(self._it, None)

    # QDQ int8 (float I/O, int8 weights and activations inside), as edgepack's ONNX path makes
    quantize_static(str(paths["fp32"]), str(paths["int8"]), Reader(),
                    quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8)
    return paths


@pytest.fixture(scope="session")
def openvino_models(onnx_models, tmp_path_factory):
    import openvino as ov

    root = tmp_path_factory.mktemp("openvino")
    out = {}
    for key in ("fp32", "static", "int8"):
        xml = root / f"{key}.xml"
        # save_model stores weights as fp16 unless told not to (moving outputs by ~5e-4):
        # keep fp32 so the IR computes what the ONNX model does
        ov.save_model(ov.convert_model(str(onnx_models[key])), str(xml), compress_to_fp16=False)
        out[key] = xml
    return out


@pytest.fixture(scope="session")
def corrupt(tmp_path_factory) -> dict[str, Path]:
    """One broken model per runtime: right suffix / layout, garbage content."""
    root = tmp_path_factory.mktemp("corrupt")
    junk = bytes(range(256)) * 8
    tfl = root / "bad.tflite"
    tfl.write_bytes(b"\x1c\x00\x00\x00TFL3" + junk)  # right identifier, garbage flatbuffer
    onnx_path = root / "bad.onnx"
    onnx_path.write_bytes(junk)
    xml = root / "bad.xml"
    xml.write_text("<net name='x' version='11'><layers><layer id='0'")  # truncated
    xml.with_suffix(".bin").write_bytes(junk)
    sm = root / "bad_sm"
    sm.mkdir()
    (sm / "saved_model.pb").write_bytes(junk)
    keras_path = root / "bad.keras"
    keras_path.write_bytes(junk)
    return {"litert": tfl, "onnxruntime": onnx_path, "openvino": xml, "tensorflow": sm,
            "keras": keras_path}


# ------------------------------------------------------------------------------------------------
# numpy helpers and the registry
# ------------------------------------------------------------------------------------------------

def test_quantize_matches_hand_computed_values():
    q = Quantization(scale=0.5, zero_point=-3)
    x = np.array([0.0, 1.0, -1.26, 0.25, 100.0, -100.0], np.float32)
    # round(x / 0.5) - 3: 0 -> -3; 2 -> -1; -2.52 -> -3 -> -6; 0.5 rounds half to even (0) -> -3;
    # 197 clips to 127; -203 clips to -128
    got = quantize(x, q, "int8")
    assert got.dtype == np.int8
    assert got.tolist() == [-3, -1, -6, -3, 127, -128]
    qu = Quantization(scale=1 / 255, zero_point=0)
    # x * 255: 0, 51, 255, 510 -> 255 and -255 -> 0 (clipped at both ends)
    assert quantize(np.array([0.0, 0.2, 1.0, 2.0, -1.0]), qu, "uint8").tolist() == \
        [0, 51, 255, 255, 0]


def test_dequantize_matches_hand_computed_values():
    q = Quantization(scale=0.5, zero_point=-3)
    got = dequantize(np.array([-3, -1, 127, -128], np.int8), q)
    assert got.dtype == np.float32
    # (q + 3) * 0.5, all exactly representable: compared exactly
    assert got.tolist() == [0.0, 1.0, 65.0, -62.5]


def test_registry_names_and_formats():
    assert [rt.name for rt in RUNTIMES] == ["litert", "onnxruntime", "openvino", "tensorflow",
                                            "keras", "torch"]
    assert {rt.name: rt.formats for rt in RUNTIMES} == {
        "litert": ("tflite",), "onnxruntime": ("onnx",), "openvino": ("openvino", "onnx"),
        "tensorflow": ("savedmodel",), "keras": ("keras",), "torch": ("torch", "torchscript")}
    assert get_runtime("openvino").name == "openvino"
    with pytest.raises(KeyError):
        get_runtime("tensorrt")


def test_runtime_for_format():
    assert runtime_for_format("tflite").name == "litert"
    assert runtime_for_format("onnx").name == "onnxruntime"  # ORT is preferred for ONNX
    assert runtime_for_format("openvino").name == "openvino"
    assert runtime_for_format("savedmodel").name == "tensorflow"
    assert runtime_for_format("keras").name == "keras"
    with pytest.raises(KeyError):
        runtime_for_format("caffe")


def test_runtime_for_format_skips_unavailable(monkeypatch):
    monkeypatch.setattr(type(get_runtime("onnxruntime")), "available", lambda self: False)
    assert runtime_for_format("onnx").name == "openvino"


def test_versions_name_the_package():
    for rt in RUNTIMES:
        assert rt.available()
        assert rt.version().split()[0] in ("ai-edge-litert", "onnxruntime", "openvino",
                                           "tensorflow", "keras", "torch")


def test_adapters_import_no_framework():
    """The adapters must import on a board with numpy and one runtime: importing them pulls in
    no framework."""
    code = ("import edgepack.runtimes.litert, edgepack.runtimes.onnxruntime, "
            "edgepack.runtimes.openvino, edgepack.runtimes.tensorflow, edgepack.runtimes.keras, "
            "sys; print([m for m in ('tensorflow','onnxruntime','openvino','keras') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------------------
# LiteRT
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 5])
def test_litert_fp32_matches_keras(tflite_models, images, reference, n):
    s = get_runtime("litert").load(tflite_models["fp32"])
    assert s.runtime == "litert"
    assert s.runtime_version.startswith("ai-edge-litert ")
    assert s.signature.input_names == ["image"] and s.signature.output_names == ["output_0"]
    assert s.signature.inputs[0].shape == ("batch", 8, 8, 1)
    out = s.run({"image": images[:n]})
    assert list(out) == ["output_0"]
    assert out["output_0"].shape == (n, N_CLASSES)
    # fp32 vs fp32: FP32_ATOL (module docstring)
    np.testing.assert_allclose(out["output_0"], reference[:n], rtol=0, atol=FP32_ATOL)


def test_litert_int8_io_takes_and_returns_real_values(tflite_models, images, reference):
    s = get_runtime("litert").load(tflite_models["int8"])
    spec_in, spec_out = s.signature.inputs[0], s.signature.outputs[0]
    assert spec_in.dtype == "int8" and spec_out.dtype == "int8"
    assert spec_in.quantization is not None and spec_out.quantization is not None
    # softmax output: the converter fixes int8 softmax to scale 1/256, zero point -128
    assert spec_out.quantization == Quantization(1 / 256, -128)
    for n in (1, 5, 16):
        out = s.run({"image": images[:n]})["output_0"]
        assert out.dtype == np.float32 and out.shape == (n, N_CLASSES)
    # int8 vs fp32 on 16 samples: top-1 must agree on >= 15/16 (one flip allowed for a sample
    # near a decision boundary), and the centred cosine must be >= 0.99 (measured ~0.9999; an
    # input fed without quantization, or outputs not dequantized, gives < 0.5)
    agree = float((out.argmax(1) == reference.argmax(1)).mean())
    assert agree >= 15 / 16, agree
    assert _centered_cosine(out, reference) >= 0.99
    # dequantized values: within a few int8 steps (1/256) of fp32; 0.05 = ~13 steps
    assert np.abs(out - reference).max() < 0.05


def test_integer_data_for_an_int8_input_is_fed_as_it_is(tflite_models, images):
    """Integer data (camera bytes, or values already on the tensor's grid) is the tensor's
    integers: cast, not quantized a second time (which saturated every value)."""
    s = get_runtime("litert").load(tflite_models["int8"])
    q = s.signature.inputs[0].quantization
    on_grid = quantize(images[:4], q, "int8")
    real = s.run({"image": images[:4]})["output_0"]
    np.testing.assert_array_equal(s.run({"image": on_grid})["output_0"], real)


def test_litert_signature_matches_the_format_reader(tflite_models):
    """Names, order and quantization as formats/tflite.py reads them from the flatbuffer."""
    from edgepack.formats.tflite import TFLiteFormat

    for key in ("fp32", "int8", "static", "multi"):
        s = get_runtime("litert").load(tflite_models[key])
        assert s.signature == TFLiteFormat().inspect(tflite_models[key]).signature, key


def test_litert_multi_io_by_name_and_order(tflite_models):
    s = get_runtime("litert").load(tflite_models["multi"])
    assert s.signature.input_names == ["ain", "zin"]
    assert s.signature.output_names == ["alpha", "mid", "zeta"]  # signature order: by name
    rng = np.random.default_rng(0)
    z, a = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(3, 4)).astype(np.float32)
    out = s.run({"zin": z, "ain": a})
    assert list(out) == ["alpha", "mid", "zeta"]
    # elementwise fp32 ops: exact up to one rounding, 1e-6 absolute on values of size ~1
    np.testing.assert_allclose(out["alpha"], a + 1, atol=1e-6)
    np.testing.assert_allclose(out["mid"], z - a, atol=1e-6)
    np.testing.assert_allclose(out["zeta"], z * 2, atol=1e-6)
    # by position when the caller's names differ (another format's names)
    pos = s.run({"first": a, "second": z})
    np.testing.assert_array_equal(pos["mid"], out["mid"])


def test_litert_signature_in_another_subgraph(tflite_models):
    """serving_default is preferred, and run through its own subgraph (not subgraph 0's
    tensors that happen to have the same indices)."""
    s = get_runtime("litert").load(tflite_models["two"])
    assert s.signature.input_names == ["x"] and s.signature.output_names == ["y"]
    for n in (3, 1):
        out = s.run({"x": np.ones((n, 4), np.float32)})["y"]
        np.testing.assert_array_equal(out, np.full((n, 4), 2.0))  # 1 + 1: exact


def test_litert_static_batch_1_loops_over_samples(tflite_models, images, reference):
    s = get_runtime("litert").load(tflite_models["static"])
    assert s.signature.inputs[0].shape == (1, 8, 8, 1)
    out = s.run({"image": images[:5]})["output_0"]
    assert out.shape == (5, N_CLASSES)
    np.testing.assert_allclose(out, reference[:5], rtol=0, atol=FP32_ATOL)  # fp32: docstring


def test_litert_resizes_only_when_the_shape_changes(tflite_models, images):
    s = get_runtime("litert").load(tflite_models["fp32"])
    calls = []
    resize = s.native.resize_tensor_input
    s.native.resize_tensor_input = lambda *a, **k: (calls.append(a[1]), resize(*a, **k))
    for _ in range(3):
        s.run({"image": images[:5]})
    assert len(calls) == 1
    s.run({"image": images[:1]})
    s.run({"image": images[:1]})
    assert len(calls) == 2


def test_litert_load_prints_nothing(tflite_models, capfd):
    capfd.readouterr()
    get_runtime("litert").load(tflite_models["fp32"], RuntimeOptions(threads=1)).run(
        {"image": np.zeros((2, 8, 8, 1), np.float32)})
    out, err = capfd.readouterr()
    assert "XNNPACK" not in out + err and out == "" and err == ""


def test_litert_falls_back_to_tensorflow_lite(tflite_models, images, reference, monkeypatch):
    from edgepack.runtimes import litert

    monkeypatch.setattr(litert, "_BACKENDS", litert._BACKENDS[1:])  # as if no ai-edge-litert
    s = get_runtime("litert").load(tflite_models["fp32"])
    assert s.runtime_version.startswith("tensorflow ")
    out = s.run({"image": images[:5]})["output_0"]
    np.testing.assert_allclose(out, reference[:5], rtol=0, atol=FP32_ATOL)  # fp32: docstring


# ------------------------------------------------------------------------------------------------
# ONNX Runtime
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 5])
def test_onnxruntime_fp32(onnx_models, vectors, mlp_weights, n):
    s = get_runtime("onnxruntime").load(onnx_models["fp32"])
    assert s.runtime_version.startswith("onnxruntime ")
    assert s.signature.inputs[0].shape == ("N", 16)
    out = s.run({"x": vectors[:n]})
    assert list(out) == ["probs"] and out["probs"].shape == (n, N_CLASSES)
    # fp32 vs a float64 numpy reference: FP32_ATOL (module docstring)
    np.testing.assert_allclose(out["probs"], _mlp_reference(mlp_weights, vectors[:n]),
                               rtol=0, atol=FP32_ATOL)


def test_onnxruntime_int8_qdq(onnx_models, vectors, mlp_weights):
    s = get_runtime("onnxruntime").load(onnx_models["int8"])
    out = s.run({"x": vectors})["probs"]
    ref = _mlp_reference(mlp_weights, vectors)
    # int8 vs fp32 on 16 samples: >= 15/16 top-1 agreement, centred cosine >= 0.99 (measured
    # ~0.9995); see test_litert_int8_io_takes_and_returns_real_values
    assert float((out.argmax(1) == ref.argmax(1)).mean()) >= 15 / 16
    assert _centered_cosine(out, ref) >= 0.99


def test_onnxruntime_static_batch_1_loops(onnx_models, vectors, mlp_weights):
    s = get_runtime("onnxruntime").load(onnx_models["static"])
    out = s.run({"x": vectors[:5]})["probs"]
    np.testing.assert_allclose(out, _mlp_reference(mlp_weights, vectors[:5]),
                               rtol=0, atol=FP32_ATOL)  # fp32: module docstring


def test_onnxruntime_options(onnx_models):
    s = get_runtime("onnxruntime").load(
        onnx_models["fp32"], RuntimeOptions(threads=2, extra={"graph_optimization_level": "basic"}))
    so = s.native.get_session_options()
    assert so.intra_op_num_threads == 2
    assert so.graph_optimization_level.name == "ORT_ENABLE_BASIC"
    assert s.native.get_providers() == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="graph_optimization_level"):
        get_runtime("onnxruntime").load(
            onnx_models["fp32"], RuntimeOptions(extra={"graph_optimization_level": "max"}))


# ------------------------------------------------------------------------------------------------
# OpenVINO (precision_hint="f32": this CPU may have AVX512_BF16, where the default is bf16)
# ------------------------------------------------------------------------------------------------

F32 = RuntimeOptions(precision_hint="f32")


@pytest.mark.parametrize("n", [1, 5])
@pytest.mark.parametrize("source", ["ir", "onnx"])
def test_openvino_fp32(openvino_models, onnx_models, vectors, mlp_weights, n, source):
    path = openvino_models["fp32"] if source == "ir" else onnx_models["fp32"]
    s = get_runtime("openvino").load(path, F32)
    assert s.runtime_version.startswith("openvino ")
    assert s.signature.input_names == ["x"] and s.signature.output_names == ["probs"]
    out = s.run({"x": vectors[:n]})["probs"]
    assert out.shape == (n, N_CLASSES)
    # fp32 vs float64 numpy: FP32_ATOL (module docstring); needs the f32 hint and fp32 weights
    np.testing.assert_allclose(out, _mlp_reference(mlp_weights, vectors[:n]),
                               rtol=0, atol=FP32_ATOL)


def test_openvino_int8(openvino_models, vectors, mlp_weights):
    s = get_runtime("openvino").load(openvino_models["int8"], F32)
    out = s.run({"x": vectors})["probs"]
    ref = _mlp_reference(mlp_weights, vectors)
    # int8 vs fp32: >= 15/16 top-1 agreement, centred cosine >= 0.99 (measured ~0.9996)
    assert float((out.argmax(1) == ref.argmax(1)).mean()) >= 15 / 16
    assert _centered_cosine(out, ref) >= 0.99


def test_openvino_static_batch_1_loops(openvino_models, vectors, mlp_weights):
    s = get_runtime("openvino").load(openvino_models["static"], F32)
    assert s.signature.inputs[0].shape == (1, 16)
    out = s.run({"x": vectors[:5]})["probs"]
    np.testing.assert_allclose(out, _mlp_reference(mlp_weights, vectors[:5]),
                               rtol=0, atol=FP32_ATOL)  # fp32: module docstring


def test_openvino_options(openvino_models):
    s = get_runtime("openvino").load(openvino_models["fp32"],
                                     RuntimeOptions(threads=2, precision_hint="f32"))
    assert int(s.native.get_property("INFERENCE_NUM_THREADS")) == 2
    assert str(s.native.get_property("PERFORMANCE_HINT")) == "LATENCY"
    assert "float32" in str(s.native.get_property("INFERENCE_PRECISION_HINT"))


def test_openvino_ir_without_weights(openvino_models, tmp_path):
    lone = tmp_path / "lone.xml"
    lone.write_bytes(openvino_models["fp32"].read_bytes())
    with pytest.raises(ModelError, match=r"lone\.bin is missing"):
        get_runtime("openvino").load(lone)


# ------------------------------------------------------------------------------------------------
# TensorFlow SavedModel and Keras
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 5])
def test_tensorflow_savedmodel(cnn, images, reference, n):
    s = get_runtime("tensorflow").load(cnn["savedmodel"])
    assert s.runtime_version.startswith("tensorflow ")
    assert s.signature.input_names == ["image"] and s.signature.output_names == ["output_0"]
    out = s.run({"image": images[:n]})["output_0"]
    # the same TF kernels as the Keras reference: FP32_ATOL (module docstring)
    np.testing.assert_allclose(out, reference[:n], rtol=0, atol=FP32_ATOL)


def test_tensorflow_outputs_sorted_like_the_format_reader(tflite_models):
    from edgepack.formats.savedmodel import SavedModelFormat

    s = get_runtime("tensorflow").load(tflite_models["multi_sm"])
    assert s.signature == SavedModelFormat().inspect(tflite_models["multi_sm"]).signature
    assert s.signature.output_names == ["alpha", "mid", "zeta"]
    z, a = np.ones((2, 4), np.float32), np.full((2, 4), 3.0, np.float32)
    out = s.run({"zin": z, "ain": a})
    assert list(out) == ["alpha", "mid", "zeta"]
    np.testing.assert_array_equal(out["mid"], z - a)  # small exact integers: exact


@pytest.mark.parametrize("n", [1, 5])
def test_keras(cnn, images, reference, n):
    s = get_runtime("keras").load(cnn["keras"])
    assert s.runtime_version.startswith("keras ")
    assert s.signature.input_names == ["image"] and s.signature.output_names == ["probs"]
    out = s.run({"image": images[:n]})["probs"]
    # same weights, same kernels, reloaded from file: FP32_ATOL (module docstring)
    np.testing.assert_allclose(out, reference[:n], rtol=0, atol=FP32_ATOL)


def test_keras_refuses_code_carrying_models(tmp_path):
    import keras

    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Lambda(lambda t: t * 2)(inp))
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ModelError, match="refused"):
        get_runtime("keras").load(path)


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("runtime", ["litert", "onnxruntime", "openvino", "tensorflow", "keras"])
def test_corrupt_file_is_a_model_error(runtime, corrupt, tf):
    path = corrupt[runtime]
    with pytest.raises(ModelError) as info:
        get_runtime(runtime).load(path)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message  # one line, for the CLI


@pytest.mark.parametrize("runtime,name", [("litert", "gone.tflite"), ("onnxruntime", "gone.onnx"),
                                          ("openvino", "gone.xml"), ("tensorflow", "gone_sm"),
                                          ("keras", "gone.keras")])
def test_missing_file_is_a_model_error(runtime, name, tmp_path, tf):
    with pytest.raises(ModelError, match="gone"):
        get_runtime(runtime).load(tmp_path / name)


def test_litert_rejects_non_tflite_bytes(tmp_path):
    path = tmp_path / "text.tflite"
    path.write_text("hello")
    with pytest.raises(ModelError, match="TFL3"):
        get_runtime("litert").load(path)


@pytest.mark.parametrize("runtime,key", [("litert", "fp32"), ("keras", None),
                                         ("tensorflow", None)])
def test_wrong_input_shape_is_a_clear_error(runtime, key, tflite_models, cnn):
    path = {"litert": tflite_models["fp32"], "keras": cnn["keras"],
            "tensorflow": cnn["savedmodel"]}[runtime]
    s = get_runtime(runtime).load(path)
    with pytest.raises(InputError, match=r"input 'image' takes shape batchx8x8x1") as info:
        s.run({"image": np.zeros((2, 8, 7, 1), np.float32)})
    assert isinstance(info.value, DataError) and isinstance(info.value, ValueError)
    with pytest.raises(InputError, match="rank 4"):
        s.run({"image": np.zeros((8, 8, 1), np.float32)})
    with pytest.raises(InputError, match="takes 1 inputs"):
        s.run({"a": np.zeros((1, 8, 8, 1), np.float32), "b": np.zeros((1, 8, 8, 1), np.float32)})


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_wrong_input_shape_onnx(runtime, onnx_models):
    s = get_runtime(runtime).load(onnx_models["fp32"], F32)
    with pytest.raises(InputError, match=r"input 'x' takes shape .*x16"):
        s.run({"x": np.zeros((2, 15), np.float32)})


# -- an RNN step: state with its batch on axis 1, a scalar sample rate -------------------------
@pytest.fixture(scope="module")
def rnn_step(tmp_path_factory) -> dict[str, Path]:
    from tests.model_files import onnx_rnn_step

    root = tmp_path_factory.mktemp("rnn")
    return {"dynamic": onnx_rnn_step(root / "rnn.onnx"),
            "unnamed": onnx_rnn_step(root / "rnn_unnamed.onnx", batch=""),
            "static": onnx_rnn_step(root / "rnn_b1.onnx", batch=1)}


def _rnn_feed(n: int, sr: list[int] | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(RNG_SEED + 9)
    return {"input": rng.normal(0, 1, (n, 6)).astype(np.float32),
            "state": rng.normal(0, 1, (2, n, 3)).astype(np.float32),
            "sr": np.array(sr or [16000] * n, np.int64)}


@pytest.mark.parametrize("kind", ["dynamic", "unnamed", "static"])
@pytest.mark.parametrize("rates", ["same", "per-sample"])
def test_onnxruntime_state_on_axis_1_and_a_scalar_per_sample(rnn_step, kind, rates):
    """N samples of a [2, N, 3] state and N values of a scalar sample rate: run at once when
    the rates agree and the batch is dynamic, else once per sample, split and joined on
    axis 1 for the state; the same numbers either way."""
    from tests.model_files import rnn_step_reference

    feed = _rnn_feed(5, None if rates == "same" else [16000, 8000, 16000, 8000, 8000])
    s = get_runtime("onnxruntime").load(rnn_step[kind])
    out = s.run(feed)
    want_out, want_state = rnn_step_reference(feed["input"], feed["state"], feed["sr"])
    assert out["stateN"].shape == (2, 5, 3) and out["output"].shape == (5, 1)
    np.testing.assert_allclose(out["stateN"], want_state, rtol=0, atol=FP32_ATOL)
    np.testing.assert_allclose(out["output"], want_out, rtol=0, atol=FP32_ATOL)
    single = s.run({"input": feed["input"][:1], "state": feed["state"][:, :1],
                    "sr": np.int64(16000)})
    assert single["stateN"].shape == (2, 1, 3)


def test_a_scalar_input_refuses_rows_of_values(rnn_step):
    s = get_runtime("onnxruntime").load(rnn_step["dynamic"])
    with pytest.raises(InputError, match="'sr' is a scalar"):
        s.run({**_rnn_feed(2), "sr": np.zeros((2, 2), np.int64)})


def test_an_openvino_source_is_run_in_f32_for_its_reference_outputs(tmp_path: Path) -> None:
    """OpenVINO computes an f32 IR in bf16 on CPUs that have it unless told f32: the source's
    reference outputs are computed as the file says, as every artifact is validated (an int8
    IR source differed from its own byte-for-byte copy by 0.565 on EfficientNet-Lite0's
    logits on a bf16 host)."""
    import openvino as ov
    from edgepack.pipeline.source import open_source

    from tests.model_files import onnx_cnn, openvino_ir

    ir = openvino_ir(onnx_cnn(tmp_path / "cnn.onnx", 32, 32), tmp_path / "cnn.xml")
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32) * 100
    source = open_source(ir, None)
    got = source.session.run({"x": x})["y"]
    f32 = ov.Core().compile_model(str(ir), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    np.testing.assert_array_equal(got, f32(x)[0])


@pytest.mark.parametrize(("allow", "entry"), [(False, "0"), (True, "1")])
def test_onnxruntime_spinning_follows_the_option(tmp_path: Path, allow: bool, entry: str) -> None:
    """``extra["allow_spinning"]`` reaches the session (the speed step times files in turns
    with it off); without it, ONNX Runtime's own default stands."""
    from tests.model_files import onnx_cnn

    path = onnx_cnn(tmp_path / "m.onnx")
    runtime = get_runtime("onnxruntime")
    session = runtime.load(str(path), RuntimeOptions(threads=1, extra={"allow_spinning": allow}))
    options = session.native.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == entry
    default = runtime.load(str(path), RuntimeOptions(threads=1)).native
    with pytest.raises(RuntimeError, match="does not have configuration"):
        default.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")


def _matmul_integer(path: Path, weights: np.ndarray) -> Path:
    """Y = MatMulInteger(A, W): u8 activations [n, K] by s8 weights [K, N], int32 out, as ONNX
    Runtime's dynamic int8 writes a layer (zero points 128 and 0)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "w", "a_zero", "w_zero"], ["y"])], "mmi",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, ["n", weights.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, ["n", weights.shape[1]])],
        [numpy_helper.from_array(weights, "w"),
         numpy_helper.from_array(np.array(128, np.uint8), "a_zero"),
         numpy_helper.from_array(np.array(0, np.int8), "w_zero")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_integer_semantics_computes_an_int8_file_as_written(tmp_path: Path) -> None:
    """Full-range u8 activations times s8 weights: pairs of products reach 64,770, past 16
    bits. ``integer_semantics`` gives the exact int32 sums that ARM and VNNI CPUs compute, on
    any host; on an x86 host without VNNI (this one, where ``kernels_saturate``), ONNX
    Runtime's own kernels do not, which is why the validation asks for it there."""
    from edgepack.runtimes.integer_semantics import kernels_saturate

    rng = np.random.default_rng(0)
    weights = rng.integers(-128, 128, (64, 8)).astype(np.int8)
    weights[:, 0] = 127  # a column every pair of products of a bright input saturates
    a = rng.integers(0, 256, (4, 64)).astype(np.uint8)
    a[0] = 255
    exact = (a.astype(np.int64) - 128) @ weights.astype(np.int64)
    path = _matmul_integer(tmp_path / "mmi.onnx", weights)
    ort = get_runtime("onnxruntime")
    written = ort.load(path, RuntimeOptions(extra={"integer_semantics": True}))
    assert np.array_equal(next(iter(written.run({"a": a}).values())), exact)
    if kernels_saturate():
        kernels = next(iter(ort.load(path, RuntimeOptions()).run({"a": a}).values()))
        assert not np.array_equal(kernels, exact)


def test_int8_kernels_saturate_on_x86_without_vnni_only() -> None:
    from edgepack.runtimes.integer_semantics import saturating

    assert saturating("x86_64", ["sse2", "avx2", "fma"])
    assert saturating("x86_64", ["avx2", "avx512f", "avx512bw"])  # Skylake-SP: no VNNI
    assert not saturating("x86_64", ["avx2", "avx_vnni"])  # Alder Lake
    assert not saturating("x86_64", ["avx512f", "avx512_vnni"])  # Cascade Lake, Zen 4
    assert not saturating("aarch64", ["asimd", "asimddp"])


def test_a_target_whose_int8_kernels_saturate_is_judged_through_them() -> None:
    """A build judges int8 as written only where this host saturates and the target does not
    (its ``isa`` in targets/*.yaml): x86-host, an x86 CPU without VNNI, runs what this host's
    kernels compute."""
    from edgepack.config.catalog import load_catalog
    from edgepack.runtimes.integer_semantics import as_written_for, kernels_saturate

    targets = load_catalog().targets
    for name, saturates in (("x86-host", True), ("intel-cpu", False), ("raspberrypi", False)):
        target = targets.get(name)
        assert as_written_for(target.arch, target.isa) == (kernels_saturate() and not saturates)
