"""A float TFLite file as the source: int8 and fp16 TFLite by ai-edge-quantizer, int8 OpenVINO.

The source mirrors MediaPipe's float models: float32 activations, weights stored as fp16 and
expanded by DEQUANTIZE ops, no SignatureDef, operator codes in the schema's deprecated field.

Tolerances: int8 by the profile's budget (cosine >= 0.99 to the source) and fp16 by cosine >=
0.999; the expanded fp16 weights must reproduce the source exactly (fp16 is exact in fp32).
"""

from __future__ import annotations

from pathlib import Path

import edgepack
import numpy as np
import pytest
from edgepack.compress.context import ConvertContext
from edgepack.config.profiles import Quantization
from edgepack.converters import plan_path
from edgepack.converters.compression_passes import TFLiteCompress
from edgepack.data.dataset import Dataset

pytestmark = pytest.mark.slow

#: the weighted ops whose weight tensors (input 1) say how a file was quantized
WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV")


def _keras_segmenter():
    """A small MobileNet-style segmenter, 32x32x3 -> 32x32x1 (about 30k parameters): a strided
    stem, depthwise and pointwise convolutions with BatchNorm, an upsampling transpose conv."""
    from edgepack.quiet import import_tensorflow

    import_tensorflow()
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3), batch_size=1, name="image")
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="hard_swish")(inp)
    for channels in (32, 64, 96):
        x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
        x = keras.layers.Conv2D(channels, 1, activation="hard_swish")(x)
        x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2DTranspose(32, 2, strides=2)(x)
    out = keras.layers.Conv2D(1, 1, activation="sigmoid", name="mask")(x)
    model = keras.Model(inp, out)
    model.compile("adam", "mse")  # non-trivial BatchNorm statistics
    rng = np.random.default_rng(0)
    model.fit(rng.random((32, 32, 32, 3), np.float32), rng.random((32, 32, 32, 1), np.float32),
              epochs=1, verbose=0)
    return model


def _keras_relu_net():
    """32x32x3 -> 16x16x8: convolutions, a depthwise one and a residual ADD, each followed by a
    ReLU (every op XNNPACK runs in int8)."""
    import keras

    keras.utils.set_random_seed(1)
    inp = keras.Input((32, 32, 3), batch_size=1, name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    y = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    y = keras.layers.Conv2D(8, 1)(y)
    x = keras.layers.ReLU()(keras.layers.Add()([x, y]))
    return keras.Model(inp, keras.layers.Conv2D(8, 1, name="features")(x))


def _as_mediapipe_ships_it(flatbuffer: bytes) -> bytes:
    """No SignatureDef and every operator code in the deprecated field only (older converters)."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    model.signatureDefs = []
    for code in model.operatorCodes:
        if code.builtinCode < 127:
            code.deprecatedBuiltinCode, code.builtinCode = code.builtinCode, 0
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _with_mediapipe_custom_op(flatbuffer: bytes) -> bytes:
    """The TRANSPOSE_CONV made MediaPipe's custom op Convolution2DTransposeBias (inputs: input,
    weights, bias; options: padding and strides as raw int32s), which LiteRT runs only through
    its default XNNPACK delegate."""
    import struct

    from ai_edge_litert.schema_py_generated import BuiltinOperator, OperatorCodeT
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    code = OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = BuiltinOperator.CUSTOM
    code.customCode, code.version = b"Convolution2DTransposeBias", 1
    model.operatorCodes.append(code)
    for op in model.subgraphs[0].operators:
        kind = model.operatorCodes[op.opcodeIndex]
        if max(kind.builtinCode, kind.deprecatedBuiltinCode) == BuiltinOperator.TRANSPOSE_CONV:
            o = op.builtinOptions  # TfLitePadding (1 SAME, 2 VALID) is the schema's + 1
            op.customOptions = np.frombuffer(struct.pack("<iii", o.padding + 1, o.strideW,
                                                         o.strideH), np.uint8)
            op.builtinOptions, op.builtinOptionsType = None, 0
            op.inputs = [op.inputs[2], op.inputs[1], op.inputs[3]]
            op.opcodeIndex = len(model.operatorCodes) - 1
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _with_standalone_relus(flatbuffer: bytes) -> bytes:
    """Each op's fused ReLU made a RELU op of its own, as MediaPipe's face detector applies
    them: the op writes a new tensor, which the RELU reads."""
    import copy

    from ai_edge_litert.schema_py_generated import (
        ActivationFunctionType,
        BuiltinOperator,
        OperatorCodeT,
        OperatorT,
    )
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    code = OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = BuiltinOperator.RELU
    code.version = 1
    model.operatorCodes.append(code)
    sub = model.subgraphs[0]
    for op in list(sub.operators):
        options = op.builtinOptions
        if getattr(options, "fusedActivationFunction", None) != ActivationFunctionType.RELU:
            continue
        options.fusedActivationFunction = ActivationFunctionType.NONE
        before = copy.deepcopy(sub.tensors[op.outputs[0]])
        before.name += b"/before_relu"
        sub.tensors.append(before)
        relu = OperatorT()
        relu.opcodeIndex, relu.inputs = len(model.operatorCodes) - 1, [len(sub.tensors) - 1]
        relu.outputs = list(op.outputs)
        op.outputs = [len(sub.tensors) - 1]
        sub.operators.insert(sub.operators.index(op) + 1, relu)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``fp16``: the segmenter as MediaPipe ships float models (fp16-stored weights);
    ``fp32``: the same with float32 weights; ``custom``: ``fp16`` with MediaPipe's custom
    transpose convolution; ``sparse``: the segmenter with most of its pointwise weights zero,
    stored sparse in fp16 and expanded by DENSIFY then DEQUANTIZE, as MediaPipe's pose detector
    ships; ``relus``: a residual ReLU network with its fused ReLUs as ops of their own, as
    MediaPipe's face detector has them; calibration.npz (48) and eval.npz (16)."""
    from edgepack.quiet import captured, import_tensorflow

    tf = import_tensorflow()
    folder = tmp_path_factory.mktemp("tflite-sources")
    model = _keras_segmenter()
    files = {}
    for kind in ("fp32", "fp16"):
        with captured():
            converter = tf.lite.TFLiteConverter.from_keras_model(model)
            if kind == "fp16":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                converter.target_spec.supported_types = [tf.float16]
            flatbuffer = converter.convert()
        files[kind] = folder / f"seg_{kind}.tflite"
        files[kind].write_bytes(_as_mediapipe_ships_it(flatbuffer))
    files["custom"] = folder / "seg_custom.tflite"
    files["custom"].write_bytes(_with_mediapipe_custom_op(files["fp16"].read_bytes()))
    with captured():
        relu_net = tf.lite.TFLiteConverter.from_keras_model(_keras_relu_net()).convert()
    files["relus"] = folder / "relus.tflite"
    files["relus"].write_bytes(_with_standalone_relus(_as_mediapipe_ships_it(relu_net)))
    files["sparse"] = folder / "seg_sparse.tflite"
    files["sparse"].write_bytes(_as_mediapipe_ships_it(_sparse(tf, model)))
    rng = np.random.default_rng(1)
    name = _input_name(files["fp16"])
    for split, n in (("calibration", 48), ("eval", 16)):
        files[split] = folder / f"{split}.npz"
        np.savez(files[split], **{name: rng.random((n, 32, 32, 3), np.float32)})
    return files


def _sparse(tf, model) -> bytes:
    """``model`` (changed in place) with 80% of each pointwise convolution's weights zero,
    converted with fp16 weights and the converter's sparse encoding."""
    import keras

    rng = np.random.default_rng(3)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and layer.kernel_size == (1, 1):
            kernel, *rest = layer.get_weights()
            kernel[rng.random(kernel.shape) < 0.8] = 0
            layer.set_weights([kernel, *rest])
    from edgepack.quiet import captured

    with captured():
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT,
                                   tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
        converter.target_spec.supported_types = [tf.float16]
        return converter.convert()


def _op_counts(path: Path) -> dict[str, int]:
    from collections import Counter

    from ai_edge_litert.interpreter import Interpreter

    ops = Interpreter(model_path=str(path))._get_ops_details()  # noqa: SLF001
    return dict(Counter(op["op_name"] for op in ops))


def _input_name(path: Path) -> str:
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path)).get_input_details()[0]["name"]


def _weight_types(path: Path) -> dict[str, set[str]]:
    """The dtype names of the weights each kind of weighted op reads in a TFLite file (the
    tensor a DEQUANTIZE expands, when the op reads one)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    tensors = interp.get_tensor_details()
    ops = interp._get_ops_details()  # noqa: SLF001 (no public accessor)
    made_by = {int(t): op for op in ops for t in op["outputs"]}
    types: dict[str, set[str]] = {}
    for op in ops:
        if op["op_name"] in WEIGHTED:
            weight = int(op["inputs"][1])
            producer = made_by.get(weight)
            if producer is not None and producer["op_name"] == "DEQUANTIZE":
                weight = int(producer["inputs"][0])
            types.setdefault(op["op_name"], set()).add(np.dtype(tensors[weight]["dtype"]).name)
    return types


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


# ------------------------------------------------------------------------------ builds

def test_float_tflite_source_builds_int8_tflite_for_raspberrypi(sources: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    """Full-integer int8 with float I/O, every weight int8, within the int8-arm budget; the
    board's other format, ONNX, through tf2onnx's TFLite frontend."""
    report = edgepack.build(sources["fp16"], "raspberrypi", calibration=sources["calibration"],
                            evaluation=sources["eval"], output=tmp_path / "out", runs=5)
    assert sorted(a.format for a in report.deliverables) == ["onnx", "tflite"], report.skipped
    onnx_art = next(a for a in report.deliverables if a.format == "onnx")
    assert [h.tool for h in onnx_art.path] == ["tf2onnx", "onnxruntime.quantization"]
    art = next(a for a in report.deliverables if a.format == "tflite")
    assert (art.format, art.precision) == ("tflite", "int8"), report.skipped
    assert [h.tool for h in art.path] == ["ai-edge-quantizer"]
    assert report.passed, art.budget
    path = tmp_path / "out" / art.file
    assert _weight_types(path) == {k: {"int8"} for k in WEIGHTED}
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    assert interp.get_input_details()[0]["dtype"] == np.float32  # the profile's io_dtype
    assert interp.get_input_details()[0]["name"] == _input_name(sources["fp16"])
    assert art.size_bytes < 0.8 * sources["fp16"].stat().st_size  # int8 vs fp16 weights
    assert any("calibrated on 48 samples" in n for n in art.notes), art.notes


def test_float_tflite_source_builds_fp16_tflite_for_android_gpu(sources: dict[str, Path],
                                                                tmp_path: Path) -> None:
    """fp16 weights read through DEQUANTIZE, about half the float32 file, cosine >= 0.999."""
    report = edgepack.build(sources["fp32"], "android-gpu", evaluation=sources["eval"],
                            output=tmp_path / "out", runs=5)
    (art,) = report.deliverables
    assert (art.format, art.precision) == ("tflite", "fp16"), report.skipped
    assert report.passed, art.budget
    assert min(f.cosine for f in art.fidelity) >= 0.999
    assert _weight_types(tmp_path / "out" / art.file) == {k: {"float16"} for k in WEIGHTED}
    assert art.size_bytes < 0.6 * sources["fp32"].stat().st_size


def test_float_tflite_source_builds_openvino_int8_smaller_than_fp32(sources: dict[str, Path],
                                                                    tmp_path: Path) -> None:
    """NNCF quantizes every weight of an IR whose weights the source stored in fp16 (they are
    expanded first): the int8 IR is smaller than the fp32 one and keeps no fp16 constant."""
    import openvino as ov

    report = edgepack.build(sources["fp16"], "intel-cpu", calibration=sources["calibration"],
                            evaluation=sources["eval"], output=tmp_path / "out", runs=5)
    by_precision = {a.precision: a for a in report.artifacts if a.format == "openvino"}
    int8, fp32 = by_precision["int8"], by_precision["fp32"]
    assert report.passed, int8.budget
    assert int8.size_bytes < 0.9 * fp32.size_bytes, (int8.size_bytes, fp32.size_bytes)
    model = ov.Core().read_model(str(tmp_path / "out" / int8.file))
    constants = {op.get_output_element_type(0).get_type_name() for op in model.get_ordered_ops()
                 if op.get_type_name() == "Constant"}
    assert "f16" not in constants
    assert any("expanded to float32" in n for n in int8.notes), int8.notes


# ------------------------------------------------------------------------------ the pass

def _compress(src: Path, data: Path, folder: Path, precision: str,
              keep_float: tuple[str, ...] = (), int16_layers: tuple[str, ...] = (),
              notes: list[str] | None = None, **settings: object) -> Path:
    """``src`` through the ai-edge-quantizer pass, as a build's last hop runs it (its notes
    appended to ``notes``)."""
    samples = Dataset("calibration", dict(np.load(data)))
    folder.mkdir(exist_ok=True)
    ctx = ConvertContext(workdir=folder, stem="seg", precision=precision,
                         quantization=Quantization(**settings), calibration=samples,
                         samples=samples.head(4), scratch=folder, keep_float=keep_float,
                         int16_layers=int16_layers)
    out = TFLiteCompress().convert(src, ctx)
    if notes is not None:
        notes.extend(ctx.notes)
    return out


def _activations(path: Path) -> dict[str, tuple[np.dtype, float]]:
    """The dtype and scale of every tensor an op other than QUANTIZE/DEQUANTIZE makes."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    tensors = interp.get_tensor_details()
    return {tensors[t]["name"]: (np.dtype(tensors[t]["dtype"]), tensors[t]["quantization"][0])
            for op in interp._get_ops_details()  # noqa: SLF001 (no public accessor)
            if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE") for t in op["outputs"]}


def test_tflite_sources_plan_the_quantizer_pass() -> None:
    """A TFLite file reaches int8, dynamic int8 and fp16 TFLite in one ai-edge-quantizer pass;
    a SavedModel still goes through the TFLite converter."""
    for precision in ("int8", "dynamic-int8", "fp16"):
        assert [e.tool for e in plan_path("tflite", "tflite", precision)] == \
            ["ai-edge-quantizer"]
    assert [e.tool for e in plan_path("savedmodel", "tflite", "int8")] == \
        ["tf.lite.TFLiteConverter"]


def test_fp16_weights_are_expanded_exactly(sources: dict[str, Path]) -> None:
    """The expanded file holds no DEQUANTIZE and computes bit for bit what the source does."""
    from edgepack.compress import tflite_graph

    model = tflite_graph.read(sources["fp16"].read_bytes())
    # 9 weighted ops (weights and biases) and 3 BatchNorms (scale and shift)
    assert tflite_graph.fold_fp16_weights(model) == 24
    tflite_graph.fill_builtin_codes(model)
    expanded = sources["fp16"].with_name("expanded.tflite")
    expanded.write_bytes(tflite_graph.write(model))
    assert _weight_types(expanded) == {k: {"float32"} for k in WEIGHTED}
    x = np.load(sources["eval"])[_input_name(sources["fp16"])][:1]
    np.testing.assert_array_equal(_run(expanded, x), _run(sources["fp16"], x))


def test_int8_follows_the_profiles_io_type_and_per_tensor_weights(sources: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    """uint8 I/O (the QUANTIZE/DEQUANTIZE at the edges removed) and one scale per weight."""
    from ai_edge_litert.interpreter import Interpreter

    out = _compress(sources["fp16"], sources["calibration"], tmp_path / "q", "int8",
                    io_dtype="uint8", per_channel=False)
    interp = Interpreter(model_path=str(out))
    assert interp.get_input_details()[0]["dtype"] == np.uint8
    assert interp.get_output_details()[0]["dtype"] == np.uint8
    tensors = interp.get_tensor_details()
    for op in interp._get_ops_details():  # noqa: SLF001
        if op["op_name"] in WEIGHTED:
            scales = tensors[op["inputs"][1]]["quantization_parameters"]["scales"]
            assert len(scales) == 1, op


def test_layers_kept_in_float_stay_float(sources: dict[str, Path], tmp_path: Path) -> None:
    """The accuracy fallback's denylist: the named layer keeps float32 weights, the rest int8."""
    from edgepack.compress.layer_order import tflite_layers

    plain = _compress(sources["fp16"], sources["calibration"], tmp_path / "plain", "int8")
    first = tflite_layers(plain)[0]
    kept = _compress(sources["fp16"], sources["calibration"], tmp_path / "kept", "int8",
                     keep_float=(first,))
    types = _weight_types(kept)
    assert types["CONV_2D"] == {"float32", "int8"} and types["DEPTHWISE_CONV_2D"] == {"int8"}
    assert tflite_layers(kept)[0] == first  # the name survives, so the fallback can grow it


def test_mse_ranges_narrow_the_activation_scales_and_keep_the_file_integer(
        sources: dict[str, Path], tmp_path: Path) -> None:
    """Calibration method mse: ai-edge-quantizer quantizes with each activation's
    least-squared-error range instead of its own statistics (a moving average of each
    sample's min/max), so activation scales change; every op stays int8 and the profile's
    method is said to be applied."""
    notes: list[str] = []
    minmax = _activations(_compress(sources["fp16"], sources["calibration"], tmp_path / "a",
                                    "int8"))
    path = _compress(sources["fp16"], sources["calibration"], tmp_path / "b", "int8",
                     notes=notes, calibration={"method": "mse"})
    mse = _activations(path)
    assert minmax.keys() == mse.keys()
    assert {dtype for dtype, _ in mse.values()} == {np.dtype(np.int8)}
    assert sum(abs(mse[n][1] / minmax[n][1] - 1) > 0.01 for n in mse) >= 3
    assert any("least-squared-error" in n for n in notes), notes
    assert not any("does not apply" in n for n in notes), notes
    x = np.load(sources["eval"])[_input_name(sources["fp16"])][:1]
    a, b = _run(path, x).ravel(), _run(sources["fp16"], x).ravel()
    assert a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) >= 0.99


def test_mse_ranges_leave_what_reaches_an_output_unclipped(tmp_path: Path) -> None:
    """A convolution whose output reaches the model's output through a reshape and a
    transpose keeps its min/max (the quantizer gives it the output's scale); the input before
    it gets its least-squared-error range."""
    import keras
    from edgepack.compress.tflite_ranges import histograms, output_names, searched_ranges
    from edgepack.quiet import captured, import_tensorflow

    tf = import_tensorflow()
    inp = keras.Input((6, 6, 3), batch_size=1, name="x")
    hidden = keras.layers.Conv2D(4, 3, padding="same", name="hidden")(inp)
    final = keras.layers.Conv2D(4, 1, name="last")(hidden)
    out = keras.layers.Permute((2, 1))(keras.layers.Reshape((36, 4))(final))
    with captured():
        flatbuffer = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inp, out)).convert()
    reaching = output_names(flatbuffer)
    last = next(n for n in reaching if "last" in n)
    assert not any("hidden" in n for n in reaching)
    x = np.random.default_rng(0).standard_normal((32, 6, 6, 3)).astype(np.float32)
    x[0, 0, 0] = 40.0  # an outlier: any clipping of it saves more rounding error than it costs
    data = Dataset("c", {"x": x})
    first = next(n for n in histograms(flatbuffer, {"serving_default_x:0"}, data))
    hists = histograms(flatbuffer, {first, last}, data)
    searched = searched_ranges(flatbuffer, {first, last}, data, "mse", None)
    assert searched[last] == hists[last].finite_range
    assert searched[first][1] < hists[first].finite_range[1] == 40.0


def test_min_max_int8_feeds_and_reads_the_true_ranges(tmp_path: Path) -> None:
    """Calibration method minmax: the model's input and output are quantized over their true
    min/max, not ai-edge-quantizer's average of each sample's (which quantized MediaPipe
    pose's input [0, 1] over [0, 0.966], and face landmark's presence score over one value).
    Here one calibration sample in 16 reaches 1.0, the others 0.5: the average would clip
    the input at ~0.53."""
    import keras
    from edgepack.quiet import captured, import_tensorflow

    tf = import_tensorflow()
    inp = keras.Input((8,), batch_size=1, name="x")
    score = keras.layers.Dense(1, name="score")(keras.layers.Dense(6, activation="relu")(inp))
    with captured():
        flatbuffer = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inp, score)).convert()
    (tmp_path / "src.tflite").write_bytes(flatbuffer)
    x = np.random.default_rng(0).uniform(0.0, 0.5, (16, 8)).astype(np.float32)
    x[3, 2] = 1.0
    np.savez(tmp_path / "calib.npz", x=x)
    notes: list[str] = []
    path = _compress(tmp_path / "src.tflite", tmp_path / "calib.npz", tmp_path / "q", "int8",
                     notes=notes, calibration={"method": "minmax", "samples": 16})
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    tensors = interp.get_tensor_details()
    ops = interp._get_ops_details()  # noqa: SLF001 (no public accessor)

    def span(op_name: str, side: str) -> tuple[float, float]:
        op = next(o for o in ops if o["op_name"] == op_name)
        scale, zero = tensors[op[side][0]]["quantization"]
        return (-128 - zero) * scale, (127 - zero) * scale

    assert span("QUANTIZE", "outputs")[1] >= 0.99  # the input's 1.0 is not clipped
    out = np.concatenate([_run(tmp_path / "src.tflite", x[i:i + 1]).ravel() for i in range(16)])
    low, high = span("DEQUANTIZE", "inputs")
    assert low <= min(out.min(), 0.0) + 0.01 and high >= max(out.max(), 0.0) - 0.01, (low, high)
    assert any("inputs and outputs over their true min/max" in n for n in notes), notes


def test_int16_layers_get_16_bit_activations_and_the_file_runs(sources: dict[str, Path],
                                                               tmp_path: Path) -> None:
    """The named layer computes with int16 activations and int8 weights (LiteRT's 16x8
    kernels), the others stay int8, and LiteRT runs the mixed file close to the float one."""
    from edgepack.compress.layer_order import tflite_layers

    plain = _compress(sources["fp16"], sources["calibration"], tmp_path / "plain", "int8")
    first = tflite_layers(plain)[0]
    notes: list[str] = []
    mixed = _compress(sources["fp16"], sources["calibration"], tmp_path / "mixed", "int8",
                      int16_layers=(first,), notes=notes)
    dtypes = {name: dtype for name, (dtype, _) in _activations(mixed).items()}
    assert dtypes[first] == np.int16
    assert sum(d == np.int16 for d in dtypes.values()) == 1
    assert sum(d == np.int8 for d in dtypes.values()) >= 10
    assert _weight_types(mixed) == _weight_types(plain)  # int8 weights throughout
    assert any("16x8" in n and "in 1 of the 1" in n for n in notes), notes
    x = np.load(sources["eval"])[_input_name(sources["fp16"])][:1]
    a, b = _run(mixed, x).ravel(), _run(sources["fp16"], x).ravel()
    assert a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) >= 0.99


def test_converter_produces_int16_layers_for_int8_tflite_only(sources: dict[str, Path],
                                                              tmp_path: Path) -> None:
    """``Converter.produce(..., int16_layers=)``: the build's int8 TFLite with the named layer
    at 16-bit activations; no other format or precision takes it."""
    import contextlib

    from edgepack.compress.layer_order import tflite_layers
    from edgepack.converters.converter import Converter
    from edgepack.formats import get_format

    src = sources["fp32"]
    name = _input_name(src)
    evals = Dataset("eval", {name: np.load(sources["eval"])[name][:4]})
    refs = [np.concatenate([_run(src, x[None]) for x in evals.inputs[name]])]
    converter = Converter(src, "tflite", get_format("tflite").read_signature(src), evals, refs,
                          tmp_path, lambda text: contextlib.nullcontext(), None, None)
    calibration = Dataset("calibration", dict(np.load(sources["calibration"])))
    plain = converter.produce("tflite", "int8", tmp_path, "plain", Quantization(), calibration)
    first = tflite_layers(plain.path)[0]
    mixed = converter.produce("tflite", "int8", tmp_path, "mixed", Quantization(), calibration,
                              int16_layers=(first,))
    assert _activations(mixed.path)[first][0] == np.int16
    with pytest.raises(ValueError, match="int16_layers"):
        converter.produce("onnx", "int8", tmp_path, "x", Quantization(), calibration,
                          int16_layers=(first,))


def test_dynamic_int8_quantizes_weights_only(sources: dict[str, Path], tmp_path: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    out = _compress(sources["fp16"], sources["calibration"], tmp_path / "q", "dynamic-int8")
    assert _weight_types(out)["CONV_2D"] == {"int8"}
    interp = Interpreter(model_path=str(out))
    assert interp.get_input_details()[0]["dtype"] == np.float32
    x = np.load(sources["eval"])[_input_name(sources["fp16"])][:1]
    a, b = _run(out, x).ravel(), _run(sources["fp16"], x).ravel()
    assert a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) >= 0.99


def test_ranking_finds_the_layer_whose_own_int8_error_is_largest(tmp_path: Path) -> None:
    """Layer "bad" has a huge weight on an input channel that is always zero: nothing changes
    in float, but its per-channel int8 scale rounds its real weights to zero. The float twins
    in the flatbuffer (no SavedModel, so no TFLite debugger) find it, named as the quantizer's
    denylist takes it."""
    import keras
    from edgepack.compress.sensitivity import RANKERS
    from edgepack.quiet import captured, import_tensorflow

    tf = import_tensorflow()
    rng = np.random.default_rng(6)
    inp = keras.Input((6, 6, 3), batch_size=1, name="x")
    first = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="first")
    bad = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="bad")
    last = keras.layers.Conv2D(4, 1, use_bias=False, name="last")
    model = keras.Model(inp, last(bad(first(inp))))
    w1, b1 = rng.standard_normal((3, 3, 3, 4)).astype(np.float32), np.zeros(4, np.float32)
    w1[..., 0], b1[0] = 0.0, -1.0  # channel 0 of the first layer is always relu(-1) = 0
    w2 = rng.standard_normal((3, 3, 4, 4)).astype(np.float32) * 0.1
    w2[1, 1, 0, :] = 1000.0  # reads that dead channel
    first.set_weights([w1, b1])
    bad.set_weights([w2])
    last.set_weights([rng.standard_normal((1, 1, 4, 4)).astype(np.float32)])
    with captured():
        src = tmp_path / "bad.tflite"
        src.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    calibration = tmp_path / "calibration.npz"
    np.savez(calibration, **{_input_name(src): rng.standard_normal((32, 6, 6, 3), np.float32)})
    int8 = _compress(src, calibration, tmp_path / "q", "int8")
    order = RANKERS["tflite"](src, src, int8, Dataset("c", dict(np.load(calibration))),
                              Quantization())
    assert "/bad" in order[0] and len(order) == 3, order


def test_tflite_to_onnx_keeps_the_names_edgepack_reads(tmp_path: Path) -> None:
    """A TFLite file with a SignatureDef is read under the signature's names: the ONNX made
    from it takes and gives the same names, and computes the same values (fp32: 1e-5)."""
    import keras
    import onnxruntime as ort
    from edgepack.converters.tflite_to_onnx import TFLiteToOnnx
    from edgepack.formats import get_format
    from edgepack.quiet import captured, import_tensorflow

    tf = import_tensorflow()
    keras.utils.set_random_seed(0)
    inp = keras.Input((6,), name="x")
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="probs")(inp))
    with captured():
        src = tmp_path / "mlp.tflite"
        src.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    signature = get_format("tflite").read_signature(src)
    onnx_file = TFLiteToOnnx().convert(src, ConvertContext(workdir=tmp_path, stem="mlp"))
    session = ort.InferenceSession(str(onnx_file))
    assert [i.name for i in session.get_inputs()] == signature.input_names
    assert [o.name for o in session.get_outputs()] == signature.output_names
    x = np.random.default_rng(0).standard_normal((1, 6)).astype(np.float32)
    np.testing.assert_allclose(session.run(None, {signature.input_names[0]: x})[0],
                               _run(src, x), atol=1e-5)


def test_mediapipe_custom_op_source(sources: dict[str, Path], tmp_path: Path) -> None:
    """A custom op only LiteRT's XNNPACK delegate runs is rewritten as the builtin
    TRANSPOSE_CONV before any converter reads the source: OpenVINO and ONNX (tf2onnx) are built
    from it, and the int8 TFLite quantizes its weights like every other op's."""
    cpu = edgepack.build(sources["custom"], "intel-cpu", calibration=sources["calibration"],
                         evaluation=sources["eval"], output=tmp_path / "cpu", runs=3)
    assert sorted(a.format for a in cpu.deliverables) == ["onnx", "openvino"], cpu.skipped
    assert cpu.passed, [a.budget for a in cpu.deliverables]
    rewritten = "Convolution2DTransposeBias -> TRANSPOSE_CONV x1"
    assert all(any(rewritten in n for n in a.notes) for a in cpu.deliverables)
    pi = edgepack.build(sources["custom"], "raspberrypi", calibration=sources["calibration"],
                        evaluation=sources["eval"], output=tmp_path / "pi", runs=3)
    art = next(a for a in pi.deliverables if a.format == "tflite")
    assert pi.passed, art.budget
    assert _weight_types(tmp_path / "pi" / art.file) == {k: {"int8"} for k in WEIGHTED}


def test_sparse_weights_are_stored_dense_for_every_tool(sources: dict[str, Path],
                                                        tmp_path: Path) -> None:
    """Weights stored sparse (read through DENSIFY) are made the dense constants LiteRT expands
    them to, computing exactly the same; then tf2onnx converts the file (its TFLite reader
    reshapes sparse values as dense ones and fails) and ai-edge-quantizer quantizes every weight
    to int8 (it takes a DENSIFY's output for an activation, and LiteRT refuses the asymmetric
    weights it writes), so the board gets both formats."""
    from edgepack.compress.tflite_sparse import densified

    src = sources["sparse"]
    assert _op_counts(src).get("DENSIFY", 0) >= 3
    dense, count = densified(src.read_bytes())
    assert count == _op_counts(src)["DENSIFY"]
    (tmp_path / "dense.tflite").write_bytes(dense)
    assert "DENSIFY" not in _op_counts(tmp_path / "dense.tflite")
    x = np.random.default_rng(4).random((1, 32, 32, 3), np.float32)
    np.testing.assert_array_equal(_run(tmp_path / "dense.tflite", x), _run(src, x))
    report = edgepack.build(src, "raspberrypi", calibration=sources["calibration"],
                            evaluation=sources["eval"], output=tmp_path / "out", runs=3)
    assert sorted((a.format, a.precision) for a in report.deliverables) == [
        ("onnx", "int8"), ("tflite", "int8")], report.skipped
    art = next(a for a in report.deliverables if a.format == "tflite")
    assert any(f"{count} sparse weight(s) stored dense" in n for n in art.notes), art.notes
    assert _weight_types(tmp_path / "out" / art.file) == {k: {"int8"} for k in WEIGHTED}
    assert report.passed, [a.budget for a in report.deliverables]


def test_standalone_relus_are_fused_so_int8_runs_in_one_xnnpack_graph(
        sources: dict[str, Path], tmp_path: Path) -> None:
    """A float file's standalone RELUs are fused into the op before them (the same outputs);
    left standalone, the quantizer gives each its own scale and XNNPACK delegates none of
    them, splitting the int8 file into one delegated graph per RELU."""
    from ai_edge_litert.interpreter import Interpreter
    from edgepack.compress.tflite_fuse import fused

    src = sources["relus"]
    assert _op_counts(src)["RELU"] == 3
    flatbuffer, done = fused(src.read_bytes())
    assert done == {"CONV_2D+RELU": 1, "DEPTHWISE_CONV_2D+RELU": 1, "ADD+RELU": 1}
    (tmp_path / "fused.tflite").write_bytes(flatbuffer)
    assert "RELU" not in _op_counts(tmp_path / "fused.tflite")
    x = np.random.default_rng(5).random((1, 32, 32, 3), np.float32)
    np.testing.assert_array_equal(_run(tmp_path / "fused.tflite", x), _run(src, x))
    assert _weight_types(src) == {"CONV_2D": {"float32"}, "DEPTHWISE_CONV_2D": {"float32"}}
    report = edgepack.build(src, "raspberrypi", calibration=sources["calibration"],
                            evaluation=sources["eval"], output=tmp_path / "out", runs=3)
    art = next(a for a in report.deliverables if a.format == "tflite")
    assert art.precision == "int8" and report.passed, art.budget
    interp = Interpreter(model_path=str(tmp_path / "out" / art.file))
    interp.allocate_tensors()
    nodes = [interp._interpreter.NodeName(i)  # noqa: SLF001 (the plan after delegation)
             for i in range(interp._interpreter.NumNodes())]  # noqa: SLF001
    assert nodes.count("DELEGATE") == 1, nodes
    assert any("ADD+RELU x1, CONV_2D+RELU x1, DEPTHWISE_CONV_2D+RELU x1" in n
               for n in art.notes), art.notes


# ------------------------------------------------------------------------ quantized sources

def _tf_int8(path: Path, io: str = "float32") -> Path:
    """The segmenter as TensorFlow's converter makes full-integer files (the I/O ``io``)."""
    from edgepack.quiet import captured, import_tensorflow

    tf = import_tensorflow()
    rng = np.random.default_rng(2)
    with captured():
        converter = tf.lite.TFLiteConverter.from_keras_model(_keras_segmenter())
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [rng.random((1, 32, 32, 3), np.float32)] for _ in range(16))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if io != "float32":
            converter.inference_input_type = converter.inference_output_type = getattr(tf, io)
        path.write_bytes(converter.convert())
    return path


def test_a_quantized_tflite_source_keeps_its_own_int8(sources: dict[str, Path],
                                                      tmp_path: Path) -> None:
    """A full-integer TFLite (a Coral or MediaPipe int8 model) is not quantized a second time:
    the TFLite file ships byte for byte as the source, ONNX is converted only (no quantizer
    hop), both named and reported int8 with no fp32 reference (there is none), and the user
    is told why. (Quantized again, the TFLite went through ai-edge-quantizer and the report
    called the int8 source its "fp32" reference.)"""
    int8 = _tf_int8(tmp_path / "seg.tflite")
    report = edgepack.build(int8, "raspberrypi", evaluation=sources["eval"],
                            output=tmp_path / "out", runs=5)
    assert sorted((a.format, a.precision, a.role) for a in report.artifacts) == [
        ("onnx", "int8", "deliverable"), ("tflite", "int8", "deliverable")], report.skipped
    tflite = next(a for a in report.artifacts if a.format == "tflite")
    onnx_art = next(a for a in report.artifacts if a.format == "onnx")
    assert tflite.file == "seg.int8.tflite" and onnx_art.file == "seg.int8.onnx"
    assert (tmp_path / "out" / tflite.file).read_bytes() == int8.read_bytes()
    assert [h.tool for h in onnx_art.path] == ["tf2onnx"]
    assert report.passed, onnx_art.budget
    assert any("seg.tflite is already quantized (int8 weights and activations)" in w
               and "keep that quantization instead of profile int8-arm's int8" in w
               for w in report.warnings), report.warnings


def test_a_uint8_io_source_converted_to_onnx_is_fed_and_read_in_real_values(
        sources: dict[str, Path], tmp_path: Path) -> None:
    """ONNX I/O has no scale: the ONNX converted from a uint8-I/O TFLite records its inputs'
    and outputs' scale and zero point in its metadata, and is fed and read in real values as
    the source is (read raw, its outputs were 255x the source's: max abs error 56.8 on a
    softmax). The eval data is real values (the session quantizes them) or bytes on the
    input's grid (fed as they are): both give the same result."""
    from edgepack.runtimes import get_runtime
    from edgepack.runtimes.io_quantization import KEY

    source = _tf_int8(tmp_path / "seg.tflite", io="uint8")
    real = np.load(sources["eval"])
    name = next(iter(real.keys()))
    grid = get_runtime("litert").load(source).signature.inputs[0].quantization
    np.savez(tmp_path / "bytes.npz", **{name: np.clip(
        np.round(real[name] / grid.scale) + grid.zero_point, 0, 255).astype(np.uint8)})
    for data in (sources["eval"], tmp_path / "bytes.npz"):
        out = tmp_path / data.stem
        report = edgepack.build(source, "raspberrypi", evaluation=data, output=out, runs=3)
        onnx_art = next(a for a in report.artifacts if a.format == "onnx")
        assert report.passed, onnx_art.budget
        session = get_runtime("onnxruntime").load(out / onnx_art.file)
        assert session.signature.outputs[0].quantization is not None
        assert KEY in session.native.get_modelmeta().custom_metadata_map
        (fidelity,) = onnx_art.fidelity
        assert fidelity.max_abs_error <= 2 / 256, fidelity  # a step or two of the output


def test_which_files_come_quantized(sources: dict[str, Path], tmp_path: Path) -> None:
    """Integer weights with a scale make a file dynamic int8, activations on an integer grid
    make it int8, in each format edgepack reads; fp16-stored weights are no quantization."""
    from edgepack.formats.prequantized import quantization_of
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    from tests.model_files import onnx_cnn, openvino_ir

    assert quantization_of("tflite", sources["fp16"]) is None
    assert quantization_of("tflite", sources["fp32"]) is None
    for precision in ("int8", "dynamic-int8"):
        made = _compress(sources["fp16"], sources["calibration"], tmp_path / precision,
                         precision)
        assert quantization_of("tflite", made) == precision

    float_onnx = onnx_cnn(tmp_path / "cnn.onnx")
    rng = np.random.default_rng(0)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.rows = iter([{"x": rng.random((1, 3, 4, 4), np.float32)} for _ in range(8)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.rows, None)

    quantize_static(str(float_onnx), str(tmp_path / "qdq.onnx"), Reader())
    quantize_dynamic(str(float_onnx), str(tmp_path / "dyn.onnx"), weight_type=QuantType.QInt8)
    assert quantization_of("onnx", float_onnx) is None
    assert quantization_of("onnx", tmp_path / "qdq.onnx") == "int8"
    assert quantization_of("onnx", tmp_path / "dyn.onnx") == "dynamic-int8"
    assert quantization_of("openvino", openvino_ir(float_onnx, tmp_path / "cnn.xml")) is None
    assert quantization_of("openvino", openvino_ir(tmp_path / "qdq.onnx",
                                                   tmp_path / "qdq.xml")) == "int8"
    assert quantization_of("keras", tmp_path / "any.keras") is None  # not read


def _keras_hard_swish_net():
    """40x40x3 -> 40x40x1 (9,745 parameters): five convolutions, four followed by a
    HARD_SWISH, a sigmoid mask. The int8 HARD_SWISH that ai-edge-quantizer writes is not
    delegated to XNNPACK: LiteRT 2.3 runs this int8 file in five XNNPACK partitions, about 2x
    slower than with its HARD_SWISH in float, on an AMD EPYC host as on an Intel one with
    AVX512-VNNI (where the int8 TRANSPOSE_CONV is slow too: docs/benchmarks.md)."""
    import keras

    keras.utils.set_random_seed(2)
    inp = keras.Input((40, 40, 3), batch_size=1, name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inp)
    for _ in range(4):
        x = keras.layers.Activation("hard_swish")(keras.layers.Conv2D(16, 3, padding="same")(x))
    return keras.Model(inp, keras.layers.Conv2D(1, 1, activation="sigmoid", name="mask")(x))


def hard_swish_source(folder: Path) -> Path:
    """``_keras_hard_swish_net`` as a float TFLite in ``folder``, with calibration.npz (32
    samples) and eval.npz (8) beside it."""
    from edgepack.quiet import captured, import_tensorflow

    tf = import_tensorflow()
    with captured():
        flatbuffer = tf.lite.TFLiteConverter.from_keras_model(_keras_hard_swish_net()).convert()
    src = folder / "hard_swish.tflite"
    src.write_bytes(_as_mediapipe_ships_it(flatbuffer))
    rng = np.random.default_rng(3)
    name = _input_name(src)
    for split, n in (("calibration", 32), ("eval", 8)):
        np.savez(folder / f"{split}.npz", **{name: rng.random((n, 40, 40, 3), np.float32)})
    return src


def input_types(path: Path) -> dict[str, set[str]]:
    """The dtype names of the first input each kind of op reads in a TFLite file."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    tensors = interp.get_tensor_details()
    types: dict[str, set[str]] = {}
    for op in interp._get_ops_details():  # noqa: SLF001 (no public accessor)
        types.setdefault(op["op_name"], set()).add(
            np.dtype(tensors[int(op["inputs"][0])]["dtype"]).name)
    return types


def test_int8_op_kinds_the_runtime_runs_slower_stay_float(tmp_path: Path) -> None:
    """Plain int8 slower than fp32 on the host: the kind of int8 op that makes it so (the
    HARD_SWISH) is kept float in the file shipped, the convolutions stay int8, and the
    report says what was kept and what it bought; a rebuild keeps the same kinds from the
    step cache."""
    src = hard_swish_source(tmp_path)
    report = edgepack.build(src, "raspberrypi", calibration=tmp_path / "calibration.npz",
                            evaluation=tmp_path / "eval.npz", output=tmp_path / "out", runs=5)
    art = next(a for a in report.deliverables if a.format == "tflite")
    note = next((n for n in art.notes if n.startswith("speed: int8 ops kept in float")), None)
    assert note is not None and "HARD_SWISH x4" in note, art.notes
    path = tmp_path / "out" / art.file
    assert _weight_types(path) == {"CONV_2D": {"int8"}}
    assert input_types(path)["HARD_SWISH"] == {"float32"}
    # built again: the step cache's verdict keeps the same kinds float, without timing again
    again = edgepack.build(src, "raspberrypi", calibration=tmp_path / "calibration.npz",
                           evaluation=tmp_path / "eval.npz", output=tmp_path / "again", runs=5)
    redone = next(a for a in again.deliverables if a.format == "tflite")
    assert redone.sha256 == art.sha256
    assert any(n.startswith("speed: int8 ops kept in float") and "by an earlier build" in n
               for n in redone.notes), redone.notes
