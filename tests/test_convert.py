"""The converter graph end to end: every source kind to TFLite, ONNX and OpenVINO, hops checked.

Tolerance: every artifact here is fp32, so it must reproduce the source to float rounding:
max abs error <= 1e-5 on softmax/linear outputs of these small models (what the hop check
itself enforces, relative to each output's spread, is validate/rounding.py's).
"""

from __future__ import annotations

import json
from pathlib import Path

import edgepack
import numpy as np
import pytest
from click.testing import CliRunner
from edgepack.cli import cli
from edgepack.converters import EDGES, edge_id, edges_toward, plan_path
from edgepack.errors import ConversionError

from tests import model_files

pytestmark = pytest.mark.slow
FP32 = 1e-5


# ------------------------------------------------------------------------------ models

@pytest.fixture(scope="module")
def keras_cnn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Conv/BatchNorm/DepthwiseConv/Pool/Dense classifier, 12x12x3 -> 6 classes."""
    from edgepack.quiet import import_tensorflow

    import_tensorflow()
    import keras

    keras.utils.set_random_seed(1)
    inp = keras.Input((12, 12, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same")(inp)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(6, activation="softmax", name="probs")(x)
    model = keras.Model(inp, out)
    # give BatchNorm non-trivial statistics, as a trained model has
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    model.fit(rng.random((64, 12, 12, 3), np.float32), rng.integers(0, 6, 64), epochs=2,
              verbose=0)
    path = tmp_path_factory.mktemp("kcnn") / "cnn.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def keras_two_io(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two inputs (a: 6 features, b: 4x4x2 image) and two outputs (class scores, a value)."""
    from edgepack.quiet import import_tensorflow

    import_tensorflow()
    import keras

    keras.utils.set_random_seed(2)
    a = keras.Input((6,), name="a")
    b = keras.Input((4, 4, 2), name="b")
    fb = keras.layers.Flatten()(keras.layers.Conv2D(3, 2, activation="relu")(b))
    h = keras.layers.Concatenate()([keras.layers.Dense(5, activation="relu")(a), fb])
    cls = keras.layers.Dense(3, activation="softmax", name="cls")(h)
    val = keras.layers.Dense(1, name="val")(h)
    path = tmp_path_factory.mktemp("k2io") / "two.keras"
    keras.Model([a, b], [cls, val]).save(path)
    return path


def _torch_cnn():
    import torch

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(8)
            self.dw = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.pool = torch.nn.AvgPool2d(2)
            self.fc = torch.nn.Linear(8 * 4 * 4, 5)

        def forward(self, x):
            y = torch.relu(self.bn(self.conv(x)))
            y = self.pool(torch.relu(self.dw(y)))
            return torch.softmax(self.fc(torch.flatten(y, 1)), -1)

    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _torch_two_io():
    import torch

    class TwoIO(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fa = torch.nn.Linear(6, 5)
            self.conv = torch.nn.Conv2d(2, 3, 2)
            self.cls = torch.nn.Linear(5 + 27, 3)
            self.val = torch.nn.Linear(5 + 27, 1)

        def forward(self, a, b):
            h = torch.cat([torch.relu(self.fa(a)), torch.flatten(torch.relu(self.conv(b)), 1)], 1)
            return torch.softmax(self.cls(h), -1), self.val(h)

    torch.manual_seed(3)
    return TwoIO().eval()


def _check_all_three(report: edgepack.Report, n_outputs: int = 1) -> None:
    formats = sorted(a.format for a in report.deliverables)
    assert formats == ["onnx", "openvino", "tflite"], report.skipped
    for art in report.deliverables:
        assert len(art.fidelity) == n_outputs
        for f in art.fidelity:
            assert f.max_abs_error <= FP32, (art.file, f)
        for hop in art.path:
            assert hop.check_max_abs_error is not None and hop.check_max_abs_error <= FP32


# ------------------------------------------------------------------------------ builds

def test_keras_to_all_three(keras_cnn: Path, tmp_path: Path) -> None:
    report = edgepack.build(keras_cnn, "x86-host", output=tmp_path / "out", runs=5)
    _check_all_three(report)
    paths = {a.format: a.conversion_path for a in report.deliverables}
    assert paths == {"tflite": "keras -> savedmodel -> tflite",
                     "onnx": "keras -> savedmodel -> onnx",
                     "openvino": "keras -> savedmodel -> openvino"}
    onnx_art = next(a for a in report.deliverables if a.format == "onnx")
    assert onnx_art.signature["inputs"][0]["layout"] == "NHWC"  # tf2onnx keeps TF's layout
    xml = next(a for a in report.deliverables if a.format == "openvino")
    assert xml.extra_files == [xml.file.replace(".xml", ".bin")]


def test_savedmodel_to_all_three(tiny_savedmodel: Path, tiny_data: dict, tmp_path: Path) -> None:
    report = edgepack.build(tiny_savedmodel, "x86-host", evaluation=tiny_data["eval"],
                            output=tmp_path / "out", runs=5)
    _check_all_three(report)
    assert report.deliverables[0].accuracy is not None


def test_keras_augmentation_layers_are_inert_in_every_format(tmp_path: Path) -> None:
    """A RandomFlip left in an inference model (Keras 3's own default for it is training) is
    inert in the source run and in every format built from it: each fp32 file reproduces the
    source to float rounding. Exported with ``keras.Model.export``, the flip stayed on (max abs
    error 0.03) and no format was built."""
    from edgepack.quiet import import_tensorflow

    import_tensorflow()
    import keras

    keras.utils.set_random_seed(2)
    inp = keras.Input((12, 12, 3), name="image")
    # every layer named: an unnamed one would move the names other tests' models get
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="scale")(inp)
    x = keras.layers.RandomFlip(name="flip")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="c")(x)
    x = keras.layers.Flatten(name="flat")(x)
    out = keras.layers.Dense(6, name="scores")(x)
    path = tmp_path / "augmented.keras"
    keras.Model(inp, out).save(path)
    report = edgepack.build(path, "x86-host", output=tmp_path / "out", runs=5)
    _check_all_three(report)


def test_keras_two_inputs_two_outputs(keras_two_io: Path, tmp_path: Path) -> None:
    report = edgepack.build(keras_two_io, "x86-host", output=tmp_path / "out", runs=5)
    _check_all_three(report, n_outputs=2)
    tfl = next(a for a in report.deliverables if a.format == "tflite")
    assert [s["name"] for s in tfl.signature["inputs"]] == ["a", "b"]


def test_torch_module_to_all_three(tmp_path: Path) -> None:
    """NCHW PyTorch -> NHWC TFLite: the signature records it and validation transposes."""
    import torch

    report = edgepack.build(_torch_cnn(), "x86-host", example_inputs=(torch.randn(2, 3, 8, 8),),
                            output=tmp_path / "out", runs=5, name="net")
    _check_all_three(report)
    by_fmt = {a.format: a for a in report.deliverables}
    assert by_fmt["tflite"].conversion_path == "torch -> onnx -> savedmodel -> tflite"
    assert by_fmt["tflite"].signature["inputs"][0]["layout"] == "NHWC"
    assert by_fmt["tflite"].signature["inputs"][0]["shape"] == ["batch", 8, 8, 3]
    assert by_fmt["onnx"].signature["inputs"][0]["layout"] == "NCHW"
    assert by_fmt["openvino"].signature["inputs"][0]["shape"] == ["batch", 3, 8, 8]
    assert any("batch dimension exported as dynamic" in n for n in report.notes)


def test_torch_model_to_int8_tflite(tmp_path: Path) -> None:
    """NCHW PyTorch -> calibrated full-integer int8 NHWC TFLite: onnx2tf's SavedModel is
    quantized by the TFLite converter on the NCHW calibration data moved to NHWC, and the fp32
    reference comes from the same SavedModel (onnx2tf runs once)."""
    import torch

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", x=rng.standard_normal((64, 3, 8, 8)).astype(np.float32))
    np.savez(tmp_path / "eval.npz", x=rng.standard_normal((100, 3, 8, 8)).astype(np.float32))
    report = edgepack.build(_torch_cnn(), "raspberrypi", example_inputs=(torch.randn(2, 3, 8, 8),),
                            calibration=tmp_path / "calib.npz", evaluation=tmp_path / "eval.npz",
                            output=tmp_path / "out", runs=3, name="net")
    tfl = next(a for a in report.deliverables if a.format == "tflite")
    assert tfl.precision == "int8"
    assert tfl.conversion_path == "torch -> onnx -> savedmodel -> tflite"
    assert tfl.signature["inputs"][0]["layout"] == "NHWC"
    # calibrated on the right layout: int8 agrees with float (NCHW data fed to an NHWC graph
    # would calibrate the wrong ranges and fail the budget)
    assert tfl.fidelity[0].top1_agreement >= 0.95 and tfl.budget.passed, tfl.fidelity
    ref = report.reference_for(tfl)
    assert ref is not None and ref.conversion_path == tfl.conversion_path
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(tmp_path / "out" / tfl.file))
    inputs = {d["index"] for d in interp.get_input_details()}
    four_d = [d for d in interp.get_tensor_details() if len(d["shape"]) == 4]
    # full integer: every 4-D tensor but the float input the app feeds is int8
    assert all(d["dtype"] == np.int8 for d in four_d if d["index"] not in inputs), four_d
    onnx2tf_runs = [h for a in (tfl, ref) for h in a.path
                    if h.tool == "onnx2tf" and h.check_samples]
    assert len({h.seconds for h in onnx2tf_runs}) == 1  # the same hop, made once


def test_static_shapes_reach_the_nhwc_savedmodel(tmp_path: Path) -> None:
    """A target with static shapes (android-arm64) fixes the NCHW ONNX input at 1x3x8x8; the
    SavedModel onnx2tf makes takes 1x8x8x3. The TFLite converter must fix it in that layout:
    given the source's, it failed and the build fell back to onnx2tf's own float TFLite, which
    has no int8 (the int8-arm deliverable was lost)."""
    import torch

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", x=rng.standard_normal((64, 3, 8, 8)).astype(np.float32))
    np.savez(tmp_path / "eval.npz", x=rng.standard_normal((100, 3, 8, 8)).astype(np.float32))
    onnx_file = tmp_path / "net.onnx"
    torch.onnx.export(_torch_cnn(), (torch.randn(1, 3, 8, 8),), str(onnx_file), dynamo=True,
                      external_data=False, dynamic_shapes={"x": {0: "batch"}}, verbose=False)
    report = edgepack.build(onnx_file, "android-arm64", calibration=tmp_path / "calib.npz",
                            evaluation=tmp_path / "eval.npz", output=tmp_path / "out", runs=3)
    tfl = report.deliverables[0]
    assert tfl.format == "tflite" and tfl.precision == "int8", report.skipped
    assert tfl.conversion_path == "onnx -> savedmodel -> tflite"
    assert tfl.signature["inputs"][0]["shape"] == [1, 8, 8, 3]
    assert report.reference_for(tfl).conversion_path == "onnx -> savedmodel -> tflite"


def test_onnx2tf_never_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed-batch RGB image model: onnx2tf fetches sample images from GitHub for its own
    check unless they are in its working directory; offline (as here) that failed the edge."""
    import requests

    def offline(*args: object, **kwargs: object) -> None:
        raise requests.exceptions.ConnectionError("no network in this test")

    monkeypatch.setattr(requests, "get", offline)
    import onnx

    src = tmp_path / "cnn.onnx"
    model = onnx.load(model_files.onnx_cnn(src, 16, 16))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1  # batch fixed in the file
    onnx.save(model, src)
    res = CliRunner().invoke(cli, ["convert", str(src), "--to", "tflite",
                                   "-o", str(tmp_path / "cnn.tflite")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "cnn.tflite").is_file()


def test_torch_two_inputs_two_outputs(tmp_path: Path) -> None:
    import torch

    report = edgepack.build(_torch_two_io(), "x86-host",
                            example_inputs=(torch.randn(2, 6), torch.randn(2, 2, 4, 4)),
                            output=tmp_path / "out", runs=5, name="two")
    _check_all_three(report, n_outputs=2)


def test_onnx_tflite_and_openvino_sources(tmp_path: Path) -> None:
    """An ONNX file (from PyTorch) builds for every format; a TFLite file reaches OpenVINO."""
    import torch

    onnx_file = tmp_path / "net.onnx"
    torch.onnx.export(_torch_cnn(), (torch.randn(1, 3, 8, 8),), str(onnx_file), dynamo=True,
                      external_data=False, dynamic_shapes={"x": {0: "batch"}}, verbose=False)
    report = edgepack.build(onnx_file, "x86-host", output=tmp_path / "out", runs=5)
    _check_all_three(report)
    by_fmt = {a.format: a for a in report.deliverables}
    assert by_fmt["onnx"].conversion_path == "onnx -> onnx"  # the source, checked and tagged
    tfl = tmp_path / "out" / by_fmt["tflite"].file
    result = CliRunner().invoke(cli, ["convert", str(tfl), "--to", "openvino", "-o",
                                      str(tmp_path / "from_tflite.xml")])
    assert result.exit_code == 0, result.output
    assert "tflite -> openvino" in result.output


def test_an_onnx_source_with_external_data_is_delivered_whole(tmp_path: Path) -> None:
    """PyTorch's exporter keeps weights in ``net.onnx.data`` by default: every format builds
    from it, and the ONNX delivered holds its weights itself, so it loads and computes the
    same alone in another folder (a copy of the bare .onnx named data the build folder
    lacked, and ONNX was skipped)."""
    import onnxruntime as ort
    import torch

    src = tmp_path / "src" / "net.onnx"
    src.parent.mkdir()
    torch.onnx.export(_torch_cnn(), (torch.randn(1, 3, 8, 8),), str(src), dynamo=True,
                      dynamic_shapes={"x": {0: "batch"}}, verbose=False)
    assert (tmp_path / "src" / "net.onnx.data").is_file()  # the exporter's default
    report = edgepack.build(src, "x86-host", output=tmp_path / "out", runs=5)
    _check_all_three(report)
    delivered = next(a for a in report.deliverables if a.format == "onnx")
    assert not list((tmp_path / "out").glob("*.data"))
    alone = tmp_path / "alone" / "net.onnx"
    alone.parent.mkdir()
    alone.write_bytes((tmp_path / "out" / delivered.file).read_bytes())
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    want = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got = ort.InferenceSession(str(alone), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_allclose(got[0], want[0], atol=FP32)


def test_a_detector_head_exported_with_a_dynamic_batch_reaches_tflite(tmp_path: Path) -> None:
    """A YOLO-style head (two scales flattened and joined: N x 7 x 80) exported with a dynamic
    batch declares its output ``d0 x d1 x d2``: which layout onnx2tf left it in is read from
    the output as computed (N x 80 x 7 in the TFLite file), so TFLite is built and its values
    are the source's."""
    import torch

    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Conv2d(3, 8, 3, 2, 1)
            self.b = torch.nn.Conv2d(8, 8, 3, 2, 1)
            self.p = torch.nn.Conv2d(8, 7, 1)
            self.q = torch.nn.Conv2d(8, 7, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            f = torch.relu(self.a(x))
            g = torch.relu(self.b(f))
            return torch.cat([self.p(f).flatten(2), self.q(g).flatten(2)], 2)

    src = tmp_path / "head.onnx"
    torch.onnx.export(Head().eval(), (torch.randn(1, 3, 16, 16),), str(src), dynamo=False,
                      opset_version=17, input_names=["x"], output_names=["out"],
                      dynamic_axes={"x": {0: "batch"}})
    report = edgepack.build(src, "x86-host", output=tmp_path / "out", runs=5)
    _check_all_three(report)


def test_an_fp16_onnx_source_is_computed_in_fp32_for_every_format(tmp_path: Path) -> None:
    """A model converted to fp16 (fp16 weights, inputs and outputs) builds every format from
    an fp32 copy: onnx2tf's TFLite of it changed the outputs before (cosine -0.03), and ONNX
    Runtime's int8 of a detector head like this one did not load. Each file delivered takes
    float32 and matches the fp16 source within its rounding; an fp32 source is read as it
    is."""
    import onnx
    import torch
    from edgepack.converters.onnx_upcast import upcast_source
    from onnx import TensorProto
    from onnxconverter_common import float16

    fp32 = tmp_path / "net32.onnx"
    torch.onnx.export(_torch_cnn(), (torch.randn(1, 3, 8, 8),), str(fp32), dynamo=False,
                      opset_version=17, input_names=["x"], output_names=["y"])
    assert upcast_source(fp32, tmp_path / "unused.onnx") is None
    src = tmp_path / "net16.onnx"
    onnx.save(float16.convert_float_to_float16(onnx.load(str(fp32))), str(src))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "eval.npz", x=rng.standard_normal((8, 3, 8, 8)).astype(np.float16))
    report = edgepack.build(src, "x86-host", evaluation=tmp_path / "eval.npz",
                            output=tmp_path / "out", runs=3)
    assert sorted(a.format for a in report.deliverables) == ["onnx", "openvino", "tflite"]
    for art in report.deliverables:
        assert art.signature["inputs"][0]["dtype"] == "float32", art.file
        assert any("fp16 source is computed in fp32" in n for n in art.notes), art.notes
        assert all(f.cosine > 0.9999 for f in art.fidelity), (art.file, art.fidelity)
    delivered = onnx.load(str(tmp_path / "out" / next(
        a.file for a in report.deliverables if a.format == "onnx")))
    assert {t.data_type for t in delivered.graph.initializer} == {TensorProto.FLOAT}


def test_cli_torch_files(tmp_path: Path) -> None:
    """.pt2 needs nothing more; TorchScript is a program: it needs --trust-model-code, and
    --input-shape, and says so without either."""
    import torch

    net = _torch_cnn()
    pt2 = tmp_path / "net.pt2"
    torch.export.save(torch.export.export(net, (torch.randn(2, 3, 8, 8),),
                                          dynamic_shapes={"x": {0: torch.export.Dim("b")}}),
                      str(pt2))
    ts = tmp_path / "net_ts.pt"
    torch.jit.trace(net, torch.randn(1, 3, 8, 8)).save(str(ts))
    runner = CliRunner()
    res = runner.invoke(cli, ["convert", str(pt2), "--to", "onnx", "-o", str(tmp_path / "a.onnx")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["convert", str(ts), "--to", "openvino"])
    assert res.exit_code == 5 and "--trust-model-code" in res.output
    res = runner.invoke(cli, ["--trust-model-code", "convert", str(ts), "--to", "openvino"])
    assert res.exit_code == 5 and "--input-shape" in res.output
    res = runner.invoke(cli, ["--trust-model-code", "build", str(ts), "-t", "x86-host",
                              "--input-shape", "x:1x3x8x8", "-o", str(tmp_path / "b"),
                              "--runs", "3", "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output[res.output.index("{"):])
    assert sorted(a["format"] for a in rep["artifacts"]) == ["onnx", "openvino", "tflite"]


def test_pickled_torch_file_refused(tmp_path: Path) -> None:
    import torch

    bad = tmp_path / "weights.pt"
    torch.save(_torch_cnn().state_dict(), bad)
    res = CliRunner().invoke(cli, ["build", str(bad), "-t", "x86-host", "-o", str(tmp_path / "o")])
    assert res.exit_code == 5 and "refused" in res.output and "torch.export.save" in res.output
    assert not (tmp_path / "o").exists()


def test_static_shapes_for_mobile(keras_cnn: Path, tmp_path: Path) -> None:
    """android-arm64 needs static shapes: batch fixed to 1, and the report says so."""
    report = edgepack.build(keras_cnn, "android-gpu", output=tmp_path / "out", runs=3)
    art = report.deliverables[0]
    assert art.signature["inputs"][0]["shape"] == [1, 12, 12, 3]
    assert any("fixed to image 1x12x12x3" in n for n in report.notes)


def test_metadata_travels(tmp_path: Path) -> None:
    """Name, version, normalization and labels are in (or next to) every artifact."""
    from tests.conftest import EXAMPLE

    out = tmp_path / "out"
    edgepack.build(EXAMPLE, "x86-host", output=out, runs=3)
    for file in ("digits.fp32.onnx", "digits.fp32.xml", "digits.fp32.tflite"):
        info = edgepack.inspect(out / file)
        spec = info.signature.inputs[0]
        assert spec.layout == "NHWC", file
        assert spec.normalization is not None and spec.normalization.scale == 0.0625, file
    onnx_meta = json.loads(edgepack.inspect(out / "digits.fp32.onnx").details["metadata"]
                           ["edgepack"])
    assert onnx_meta["name"] == "digits" and onnx_meta["version"] == "1.0.0"
    assert onnx_meta["labels"] == [str(i) for i in range(10)]
    ov = edgepack.inspect(out / "digits.fp32.xml").details
    assert ov["model_info"]["labels"] == "0 1 2 3 4 5 6 7 8 9"
    sidecar = json.loads((out / "digits.fp32.tflite.json").read_text())
    assert sidecar["inputs"][0]["normalization"]["color_order"] == "GRAY"


# ------------------------------------------------------------------------------ failures

@pytest.fixture(scope="module")
def det_savedmodel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SavedModel using MatrixDeterminant: TFLite has no builtin for it, OpenVINO neither."""
    from edgepack.quiet import import_tensorflow

    tf = import_tensorflow()

    class Det(tf.Module):
        def __init__(self) -> None:
            self.w = tf.Variable(tf.random.stateless_normal((4, 9), seed=(1, 2)))

        @tf.function(input_signature=[tf.TensorSpec((None, 4), tf.float32, name="x")])
        def serve(self, x):
            m = tf.reshape(tf.matmul(x, self.w), (-1, 3, 3))
            return {"det": tf.reshape(tf.linalg.det(m), (-1, 1))}

    mod = Det()
    path = tmp_path_factory.mktemp("det") / "det_sm"
    tf.saved_model.save(mod, str(path), signatures={"serving_default": mod.serve})
    return path


def test_unsupported_op_named_with_its_edge(det_savedmodel: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["build", str(det_savedmodel), "-t", "android-arm64",
                                   "-p", "fp32", "-o", str(tmp_path / "o")])
    assert res.exit_code == 8, res.output
    line = res.output.strip().splitlines()[-1]
    assert "tf.MatrixDeterminant" in line and "TFLite conversion" in line
    assert not (tmp_path / "o").exists()


def test_failing_edge_is_routed_around(det_savedmodel: Path, tmp_path: Path) -> None:
    """x86-host: the direct SavedModel -> OpenVINO edge fails on the op, the planner tries
    SavedModel -> ONNX -> OpenVINO next; ONNX itself builds, so the build succeeds with the
    failures reported, each naming its edge and the operator."""
    report = edgepack.build(det_savedmodel, "x86-host", output=tmp_path / "o", runs=3)
    assert [a.format for a in report.deliverables] == ["onnx"]
    reasons = {s.format: s.reason for s in report.skipped}
    assert "savedmodel -> openvino" in reasons["openvino"]
    assert "onnx -> openvino" in reasons["openvino"]  # the next path was tried too
    assert "MatrixDeterminant" in reasons["openvino"] and "Det" in reasons["openvino"]
    assert "tf.MatrixDeterminant" in reasons["tflite"]
    assert any("openvino not built" in w for w in report.warnings)


def test_planner_skips_excluded_edges() -> None:
    first = plan_path("savedmodel", "openvino", "fp32")
    assert [(e.src, e.dst) for e in first] == [("savedmodel", "openvino")]
    second = plan_path("savedmodel", "openvino", "fp32", exclude={edge_id(first[0])})
    hops = [(e.src, e.dst) for e in second]
    assert hops[0][0] == "savedmodel" and hops[-1][1] == "openvino" and len(hops) == 2
    # int8 TFLite from ONNX: through onnx2tf's SavedModel, quantized by the TFLite converter
    assert [(e.src, e.dst) for e in plan_path("onnx", "tflite", "int8")] == [
        ("onnx", "savedmodel"), ("savedmodel", "tflite")]
    with pytest.raises(ConversionError, match="no converter path from openvino to onnx"):
        plan_path("openvino", "onnx", "fp32")
    # a TFLite source reaches ONNX through tf2onnx's TFLite frontend
    assert [(e.src, e.dst, e.tool) for e in plan_path("tflite", "onnx", "fp32")] == [
        ("tflite", "onnx", "tf2onnx")]


def test_a_format_is_explained_only_by_the_converters_on_its_routes() -> None:
    """Why TFLite could not be made lists onnx2tf's failure, not OpenVINO's: the edges on no
    route to a format do not explain it."""
    ids = {(e.src, e.dst, e.tool): edge_id(e) for e in EDGES}
    toward_tflite = edges_toward("onnx", "tflite")
    onnx2tf = next(i for (s, d, _), i in ids.items() if (s, d) == ("onnx", "savedmodel"))
    to_openvino = next(i for (s, d, _), i in ids.items() if (s, d) == ("onnx", "openvino"))
    assert onnx2tf in toward_tflite and to_openvino not in toward_tflite
    assert to_openvino in edges_toward("onnx", "openvino")


def test_an_artifact_made_by_another_path_says_why(tmp_path: Path) -> None:
    """When the cheapest path's converter failed earlier in the build, the file that another
    path made says which converter failed and why (it is slower or made by another tool)."""
    import contextlib

    import onnxruntime as ort
    from edgepack.converters.converter import Converter
    from edgepack.converters.onnx_to_tflite import OnnxToSavedModel
    from edgepack.data.dataset import Dataset
    from edgepack.formats import get_format

    src = model_files.onnx_cnn(tmp_path / "cnn.onnx", 16, 16)
    x = np.random.default_rng(0).standard_normal((8, 3, 16, 16)).astype(np.float32)
    refs = [ort.InferenceSession(str(src)).run(None, {"x": x})[0]]
    converter = Converter(src, "onnx", get_format("onnx").read_signature(src),
                          Dataset("eval", {"x": x}), refs, tmp_path,
                          lambda text: contextlib.nullcontext(), None, None)
    converter.failed[(edge_id(OnnxToSavedModel()), "fp32")] = \
        "onnx2tf (onnx -> savedmodel) failed: boom"
    produced = converter.produce("tflite", "fp32", tmp_path, "cnn")
    # next: the same edge with the dynamic batch fixed (onnx2tf's static-shapes variant)
    assert [h.tool for h in produced.hops] == ["onnx2tf (static shapes)",
                                               "tf.lite.TFLiteConverter"]
    assert produced.format == "tflite"
    assert any(n == "made by another path: the cheaper onnx -> savedmodel (onnx2tf) failed: "
                    "onnx2tf (onnx -> savedmodel) failed: boom" for n in produced.notes), \
        produced.notes
    fine = Converter(src, "onnx", get_format("onnx").read_signature(src),
                     Dataset("eval", {"x": x}), refs, tmp_path / "b",
                     lambda text: contextlib.nullcontext(), None, None)
    (tmp_path / "b").mkdir()
    assert not any("another path" in n
                   for n in fine.produce("openvino", "fp32", tmp_path / "b", "cnn").notes)
