"""`edgepack inspect` on every readable format, and refusals of broken or unsafe files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from edgepack.cli import cli
from edgepack.errors import ModelError

from tests.model_files import save_onnx


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """x[N,3,4,4] -> Conv(2 filters) -> Relu -> Flatten -> Gemm -> y[N,5], batch named 'N'."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((2, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(2, np.float32), "b")
    g = numpy_helper.from_array(rng.standard_normal((8, 5)).astype(np.float32), "g")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Gemm", ["f", "g"], ["y"])]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], [w, b, g])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def int8_tflite(tiny_savedmodel: Path, tiny_data: dict[str, Path],
                tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgepack.quiet import captured, import_tensorflow

    tf = import_tensorflow()
    x = np.load(tiny_data["calibration"])["image"]
    with captured():
        conv = tf.lite.TFLiteConverter.from_saved_model(str(tiny_savedmodel))
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([s[None]] for s in x[:20])
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        data = conv.convert()
    path = tmp_path_factory.mktemp("tfl") / "tiny.int8.tflite"
    path.write_bytes(data)
    return path


def _inspect(path: Path) -> dict:
    result = CliRunner().invoke(cli, ["inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_keras(tiny_keras: Path) -> None:
    d = _inspect(tiny_keras)
    assert d["format"] == "keras"
    assert d["inputs"][0] == {"name": "image", "shape": ["batch", 8, 8, 1], "dtype": "float32",
                              "layout": "NHWC", "quantization": None, "normalization": None}
    assert d["outputs"][0]["name"] == "probs" and d["outputs"][0]["shape"] == ["batch", 10]
    # Conv2D 3x3x1x8 + 8 bias, Dense 288x10 + 10 bias
    assert d["parameters"] == 3 * 3 * 8 + 8 + 6 * 6 * 8 * 10 + 10
    assert d["operators"] == {"Conv2D": 1, "Dense": 1, "Flatten": 1}
    assert d["size_bytes"] == tiny_keras.stat().st_size


def test_h5(tiny_keras: Path, tmp_path: Path) -> None:
    from edgepack.formats.keras import KerasFormat

    h5 = tmp_path / "tiny.h5"
    KerasFormat().load(tiny_keras).save(h5)
    d = _inspect(h5)
    assert d["format"] == "keras" and d["details"]["container"] == "h5"
    assert d["inputs"][0]["shape"] == ["batch", 8, 8, 1]
    assert d["parameters"] == 2970


def test_savedmodel(tiny_savedmodel: Path) -> None:
    d = _inspect(tiny_savedmodel)
    assert d["format"] == "savedmodel"
    assert d["inputs"][0]["shape"] == ["batch", 8, 8, 1]
    assert d["outputs"][0]["shape"] == ["batch", 10]
    assert d["parameters"] == 2970
    assert d["operators"]["Conv2D"] == 1 and d["operators"]["MatMul"] == 1
    assert "Placeholder" not in d["operators"]


def test_onnx(onnx_model: Path) -> None:
    d = _inspect(onnx_model)
    assert d["format"] == "onnx"
    assert d["inputs"] == [{"name": "x", "shape": ["N", 3, 4, 4], "dtype": "float32",
                            "layout": "NCHW", "quantization": None, "normalization": None}]
    assert d["outputs"][0]["shape"] == ["N", 5]
    assert d["parameters"] == 2 * 3 * 3 * 3 + 2 + 8 * 5
    assert d["operators"] == {"Conv": 1, "Relu": 1, "Flatten": 1, "Gemm": 1}
    assert d["details"]["opsets"] == {"ai.onnx": 17}


def test_onnx_external_data_is_counted_and_only_from_the_models_folder(
        onnx_model: Path, tmp_path: Path) -> None:
    """A model's external data counts in its size and its cache keys; a location outside its
    folder names no part of it, and a file that is not ONNX has none (its loader refuses it
    with its own message)."""
    import onnx
    from edgepack.cache.keys import model_files
    from edgepack.formats.onnx import external_data_files

    model = onnx.load(str(onnx_model))
    path = tmp_path / "m" / "m.onnx"
    path.parent.mkdir()
    onnx.save(model, str(path), save_as_external_data=True, location="m.onnx.data",
              size_threshold=0)
    data = path.with_name("m.onnx.data")
    assert external_data_files(path) == [data] and model_files(path) == [path, data]
    info = json.loads(CliRunner().invoke(cli, ["inspect", str(path), "--json"]).output)
    assert info["size_bytes"] == path.stat().st_size + data.stat().st_size
    (tmp_path / "outside.bin").write_bytes(b"\0" * 64)
    for location in ("../outside.bin", str(tmp_path / "outside.bin")):
        escaping = onnx.load(str(path), load_external_data=False)
        escaping.graph.initializer[0].external_data[0].value = location
        onnx.save(escaping, str(path))
        assert external_data_files(path) == [data]  # the other initializers' file only
    path.write_bytes(b"not a protobuf")
    assert external_data_files(path) == []


def test_onnx_weights_in_constant_nodes_are_parameters(tmp_path: Path) -> None:
    """PP-OCR and silero-vad keep every weight in Constant nodes, some inside If branches:
    they count as parameters like initializers do."""
    from onnx import TensorProto, helper, numpy_helper

    def constant(name: str, shape: tuple[int, ...]) -> object:
        value = numpy_helper.from_array(np.ones(shape, np.float32), name)
        return helper.make_node("Constant", [], [name], value=value)

    def branch(name: str) -> object:
        return helper.make_graph(
            [constant(f"{name}_w", (4, 4)), helper.make_node("MatMul", ["x", f"{name}_w"],
                                                             [f"{name}_y"])],
            name, [], [helper.make_tensor_value_info(f"{name}_y", TensorProto.FLOAT, [1, 4])])

    nodes = [constant("w", (4, 4)), constant("flag", ()),
             helper.make_node("Cast", ["flag"], ["cond"], to=TensorProto.BOOL),
             helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("If", ["cond"], ["b"], then_branch=branch("then"),
                              else_branch=branch("else")),
             helper.make_node("Add", ["h", "b"], ["y"])]
    graph = helper.make_graph(
        nodes, "constants", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    d = _inspect(save_onnx(graph, tmp_path / "constants.onnx"))
    assert d["parameters"] == 16 + 1 + 16 + 16


def test_onnx_symbolic_output_shape_is_named_by_the_input_dims(tmp_path: Path) -> None:
    """Ultralytics exports name an output dim by a 300-character formula of the input's
    height and width: inspect shows which dims it comes from, not the formula."""
    from onnx import TensorProto, helper

    formula = "+".join(f"(floor(floor(height/{2 ** k} - 1/2)/2) + 1)*(floor(width/{2 ** k}) + 1)"
                       for k in range(1, 5))
    assert len(formula) > 200
    graph = helper.make_graph(
        [helper.make_node("ReduceMax", ["images"], ["out"], axes=[1], keepdims=1),
         helper.make_node("Identity", ["images"], ["same"])], "yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height",
                                                                     "width"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 1, formula, "?x"]),
         helper.make_tensor_value_info("same", TensorProto.FLOAT,
                                       ["batch", 3, "Divsentence_embedding_dim_1", "width"])])
    d = _inspect(save_onnx(graph, tmp_path / "yolo.onnx", opset=17))
    assert d["outputs"][0]["shape"] == ["batch", 1, "f(height,width)", "?"]
    assert d["outputs"][1]["shape"][2] == "Divsentence_embedding_dim_1"  # a name stays
    table = CliRunner().invoke(cli, ["inspect", str(tmp_path / "yolo.onnx")])
    assert "floor" not in table.output and "f(height,width)" in table.output


def test_onnx_token_inputs_have_no_layout(tmp_path: Path) -> None:
    """Token ids and a mask (int64 [batch, seq]) are not image or signal tensors, and the
    [batch, seq, hidden] they become is one vector per token, not NCW."""
    from onnx import TensorProto, helper, numpy_helper

    table = numpy_helper.from_array(np.ones((10, 8), np.float32), "table")
    nodes = [helper.make_node("Gather", ["table", "input_ids"], ["emb"]),
             helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["m", "axis"], ["m3"]),
             helper.make_node("Mul", ["emb", "m3"], ["hidden"])]
    axis = numpy_helper.from_array(np.array([2], np.int64), "axis")
    graph = helper.make_graph(
        nodes, "encoder",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"])
         for n in ("input_ids", "attention_mask")],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "seq", 8])],
        [table, axis])
    d = _inspect(save_onnx(graph, tmp_path / "encoder.onnx"))
    assert [s["layout"] for s in d["inputs"]] == ["", ""]
    assert d["outputs"][0]["layout"] == ""


def test_onnx_state_with_batch_on_axis_1_has_no_layout(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["state"], ["stateN"])], "rnn",
        [helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "batch", 128])],
        [helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, "batch", 128])])
    d = _inspect(save_onnx(graph, tmp_path / "rnn.onnx"))
    assert d["inputs"][0]["layout"] == "" and d["outputs"][0]["layout"] == ""


def test_tflite_int8_io(int8_tflite: Path) -> None:
    d = _inspect(int8_tflite)
    assert d["format"] == "tflite"
    inp = d["inputs"][0]
    assert inp["dtype"] == "int8" and inp["shape"] == ["batch", 8, 8, 1]
    assert inp["quantization"]["scale"] > 0
    assert d["outputs"][0]["dtype"] == "int8"
    assert d["operators"].get("CONV_2D") == 1 and d["operators"].get("FULLY_CONNECTED") == 1
    assert "FULLY_CONNECTED" in d["details"]["operator_versions"]
    # the same 2970 weights, stored as int8 (plus int32 biases)
    assert d["parameters"] >= 2970
    assert d["quantization"] == "int8"  # a build keeps it, rather than quantizing again
    shown = CliRunner().invoke(cli, ["inspect", str(int8_tflite)])
    assert "quantized (int8 weights and activations)" in shown.output


def test_a_float_model_is_not_quantized(tiny_keras: Path, onnx_model: Path) -> None:
    assert _inspect(tiny_keras)["quantization"] is None
    assert _inspect(onnx_model)["quantization"] is None


def test_openvino(onnx_model: Path, tmp_path: Path) -> None:
    import openvino as ov

    xml = tmp_path / "tiny.xml"
    ov.save_model(ov.convert_model(str(onnx_model)), str(xml), compress_to_fp16=False)
    d = _inspect(xml)
    assert d["format"] == "openvino"
    assert d["inputs"][0]["shape"] == ["batch", 3, 4, 4]
    assert d["outputs"][0]["shape"] == ["batch", 5]
    assert d["parameters"] >= 2 * 3 * 3 * 3 + 8 * 5
    assert "Convolution" in d["operators"]
    assert d["size_bytes"] == xml.stat().st_size + xml.with_suffix(".bin").stat().st_size


def test_table_output(tiny_keras: Path) -> None:
    result = CliRunner().invoke(cli, ["inspect", str(tiny_keras)])
    assert result.exit_code == 0
    for text in ("keras", "2,970 parameters", "image", "batchx8x8x1", "NHWC", "Conv2D"):
        assert text in result.output


# ------------------------------------------------------------------------------ bad files

def _refused(path: Path, *needles: str) -> None:
    result = CliRunner().invoke(cli, ["inspect", str(path)])
    assert result.exit_code == ModelError.exit_code, result.output
    line = result.output.strip()
    assert line.count("\n") == 0, f"expected one line, got: {line}"
    assert str(path) in line
    for needle in needles:
        assert needle in line
    assert "Traceback" not in result.output


def test_missing_file(tmp_path: Path) -> None:
    _refused(tmp_path / "nope.onnx", "no such file")


def test_truncated_onnx(onnx_model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "cut.onnx"
    bad.write_bytes(onnx_model.read_bytes()[:100])
    _refused(bad, "not a valid ONNX model")


def test_random_bytes_tflite(tmp_path: Path) -> None:
    bad = tmp_path / "random.tflite"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    _refused(bad, "TFL3")


def test_truncated_tflite(int8_tflite: Path, tmp_path: Path) -> None:
    bad = tmp_path / "cut.tflite"
    bad.write_bytes(int8_tflite.read_bytes()[:600])
    _refused(bad)


def test_garbage_keras_zip(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.keras"
    bad.write_bytes(b"PK\x03\x04" + np.random.default_rng(1).bytes(2000))
    _refused(bad, ".keras")


def test_keras_zip_without_config(tmp_path: Path) -> None:
    import zipfile

    bad = tmp_path / "other.keras"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("hello.txt", "not a model")
    _refused(bad, "config.json")


def test_unknown_suffix(tmp_path: Path) -> None:
    odd = tmp_path / "model.pkl"
    odd.write_bytes(b"\x80\x04")
    _refused(odd, "unknown suffix", "accepted")


def test_openvino_without_bin(tmp_path: Path) -> None:
    xml = tmp_path / "lonely.xml"
    xml.write_text("<net name='x' version='11'></net>")
    _refused(xml, "lonely.bin", "missing")


def test_lambda_layer_refused(tmp_path: Path) -> None:
    """safe_mode: a Lambda layer's Python code is never deserialised, let alone run."""
    from edgepack.quiet import import_tensorflow

    import_tensorflow()
    import keras

    marker = tmp_path / "pwned"
    inp = keras.Input((4,))
    out = keras.layers.Lambda(lambda t: t * 2)(inp)
    path = tmp_path / "lambda.keras"
    keras.Model(inp, out).save(path)
    _refused(path, "refused", "Lambda")
    assert not marker.exists()
