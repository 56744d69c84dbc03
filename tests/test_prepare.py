"""Float-domain preparation before int8 (compress/prepare/): batch-norm folding and cross-layer
equalization change no output; learned rounding puts weights on the int8 grid every format's
quantizer recomputes, with less layer output error than rounding to nearest; the profile's
``quantization.prepare`` runs them in a real build.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
from click.testing import CliRunner
from edgepack.cli import cli
from edgepack.compress.context import ConvertContext
from edgepack.compress.prepare import PASSES, prepare, run
from edgepack.compress.prepare.adaround import QMAX, learn_rounding, row_errors
from edgepack.compress.prepare.graph import Graph
from edgepack.compress.prepare.layers import input_moments, weight_layers
from edgepack.config.profiles import PreparePass, Quantization
from edgepack.data.dataset import Dataset

pytestmark = pytest.mark.slow


def _cnn(path: Path, act: str = "Relu") -> Path:
    """x[N,3,16,16] -> Conv -> BatchNormalization -> ``act`` -> Conv(depthwise) -> Relu ->
    Conv(1x1) -> GlobalAveragePool -> Flatten -> Gemm -> y[N,6]. Channel ranges differ by
    orders of magnitude, as in real depthwise stacks."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    spread = np.logspace(-2, 1, 8).reshape(8, 1, 1, 1)
    weights = {"w1": rng.standard_normal((8, 3, 3, 3)) * spread, "b1": rng.standard_normal(8),
               "gamma": rng.uniform(0.5, 2, 8), "beta": rng.standard_normal(8),
               "mean": rng.standard_normal(8), "var": rng.uniform(0.5, 2, 8),
               "w2": rng.standard_normal((8, 1, 3, 3)), "w3": rng.standard_normal((12, 8, 1, 1)),
               "w4": rng.standard_normal((12, 6)) / 4, "b4": np.zeros(6)}
    n = helper.make_node
    activation = n("Clip", ["bn", "lo", "hi"], ["a1"], name="act1") if act == "Clip" \
        else n(act, ["bn"], ["a1"], name="act1")
    nodes = [n("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1] * 4),
             n("BatchNormalization", ["c1", "gamma", "beta", "mean", "var"], ["bn"], name="bn"),
             activation,
             n("Conv", ["a1", "w2"], ["c2"], name="conv2", pads=[1] * 4, group=8),
             n("Relu", ["c2"], ["a2"], name="act2"),
             n("Conv", ["a2", "w3"], ["c3"], name="conv3"),
             n("GlobalAveragePool", ["c3"], ["p"], name="pool"),
             n("Flatten", ["p"], ["f"], name="flat"),
             n("Gemm", ["f", "w4", "b4"], ["y"], name="head")]
    inits = [numpy_helper.from_array(w.astype(np.float32), k) for k, w in weights.items()]
    inits += [numpy_helper.from_array(np.float32(v), k) for k, v in (("lo", 0), ("hi", 6))]
    graph = helper.make_graph(
        nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _data(n: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    return Dataset("calib", {"x": rng.standard_normal((n, 3, 16, 16)).astype(np.float32)})


def _outputs(path: Path, data: Dataset) -> np.ndarray:
    import onnx

    return run(onnx.load(str(path)), data)[0]


def _weights(path: Path) -> dict[str, np.ndarray]:
    import onnx

    graph = Graph(onnx.load(str(path)))
    return {name: graph.weight(name) for name in graph.inits}


def test_profile_names_are_the_registry() -> None:
    assert set(get_args(PreparePass)) == set(PASSES)


def test_batchnorm_folding_is_exact(tmp_path: Path) -> None:
    import onnx

    src, out = _cnn(tmp_path / "cnn.onnx"), tmp_path / "folded.onnx"
    notes: list[str] = []
    prepare(src, out, ["fold-batchnorm"], _data(8, 0), notes)
    assert all(node.op_type != "BatchNormalization" for node in onnx.load(str(out)).graph.node)
    assert "1 batch normalization(s) folded" in notes[0], notes
    ref = _outputs(src, _data(8, 1))
    np.testing.assert_allclose(_outputs(out, _data(8, 1)), ref, rtol=1e-5,
                               atol=1e-5 * np.abs(ref).max())


def test_equalization_is_exact_through_relu(tmp_path: Path) -> None:
    src, out = _cnn(tmp_path / "cnn.onnx"), tmp_path / "eq.onnx"
    notes: list[str] = []
    prepare(src, out, ["fold-batchnorm", "equalize"], _data(8, 0), notes)
    assert "2 convolution pair(s) equalized" in notes[1], notes
    w1 = _weights(out)["w1"]
    ranges = np.abs(w1.reshape(8, -1)).max(axis=1)
    before = np.abs(_weights(src)["w1"].reshape(8, -1)).max(axis=1)
    # equalized: the conv's channel ranges spread far less than the source's 1000x
    assert ranges.max() / ranges.min() < (before.max() / before.min()) / 10
    ref = _outputs(src, _data(8, 1))
    np.testing.assert_allclose(_outputs(out, _data(8, 1)), ref, rtol=1e-5,
                               atol=1e-5 * np.abs(ref).max())


def test_equalization_refuses_relu6(tmp_path: Path) -> None:
    """ReLU6 (Clip 0..6) is not homogeneous: the pair through it is left as it is, and only
    the depthwise -> ReLU -> 1x1 pair after it is equalized."""
    src, out = _cnn(tmp_path / "cnn.onnx", act="Clip"), tmp_path / "eq.onnx"
    notes: list[str] = []
    prepare(src, out, ["fold-batchnorm", "equalize"], _data(8, 0), notes)
    assert "1 convolution pair(s) equalized" in notes[1], notes
    folded = tmp_path / "folded.onnx"
    prepare(src, folded, ["fold-batchnorm"], _data(8, 0), [])
    np.testing.assert_array_equal(_weights(out)["w1"], _weights(folded)["w1"])


@pytest.fixture(scope="module")
def rounded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    folder = tmp_path_factory.mktemp("adaround")
    src, out = _cnn(folder / "cnn.onnx"), folder / "rounded.onnx"
    notes: list[str] = []
    prepare(src, out, ["fold-batchnorm", "adaround"], _data(32, 0), notes)
    return src, out, notes


def test_adaround_weights_sit_on_the_int8_grid(rounded: tuple[Path, Path, list[str]],
                                               tmp_path: Path) -> None:
    _, out, notes = rounded
    src = tmp_path / "folded.onnx"
    prepare(_cnn(tmp_path / "cnn.onnx"), src, ["fold-batchnorm"], _data(8, 0), [])
    assert "4 layer(s) rounded" in notes[1], notes
    before, after = _weights(src), _weights(out)
    for name, axis in (("w1", 0), ("w2", 0), ("w3", 0), ("w4", 1)):
        w, old = np.moveaxis(after[name], axis, 0), np.moveaxis(before[name], axis, 0)
        peak = np.abs(w.reshape(len(w), -1)).max(axis=1)
        np.testing.assert_array_equal(peak, np.abs(old.reshape(len(old), -1)).max(axis=1))
        steps = w.reshape(len(w), -1) / (peak / QMAX)[:, None]
        np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)
        if name != "w1":  # the folded one's grid is the folded weights'
            assert not np.array_equal(w, old)


def test_adaround_lowers_layer_error_below_nearest(tmp_path: Path) -> None:
    import onnx

    model = onnx.load(str(_cnn(tmp_path / "cnn.onnx")))
    layers = weight_layers(Graph(model))
    moments = input_moments(model, layers, _data(32, 0).samples())
    gains = []
    for layer, g in zip(layers, moments, strict=True):
        result = learn_rounding(layer.rows, g)
        assert result.learned_error <= result.nearest_error
        assert row_errors(result.rows - layer.rows, g).sum() == pytest.approx(
            result.learned_error)
        gains.append(result.learned_error / result.nearest_error)
    assert min(gains) < 0.9, gains


def test_onnx_int8_reproduces_the_learned_grid(rounded: tuple[Path, Path, list[str]],
                                                tmp_path: Path) -> None:
    """ONNX Runtime's per-channel quantizer, given the prepared floats, dequantizes every
    weight back to exactly those floats: the learned integers are what ships."""
    import onnx
    from edgepack.compress import onnx as onnx_compress
    from onnx import numpy_helper

    _, prepared, _ = rounded
    out = tmp_path / "int8.onnx"
    ctx = ConvertContext(workdir=tmp_path, stem="int8", precision="int8",
                         quantization=Quantization(), calibration=_data(32, 0))
    onnx_compress.compress(prepared, out, ctx)
    model = onnx.load(str(out))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    made = {o: n for n in model.graph.node for o in n.output}
    floats = _weights(prepared)
    checked = 0
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        dq = made[node.input[1]]
        q, scale = inits[dq.input[0]], inits[dq.input[1]]
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        shape = [1] * q.ndim
        shape[axis] = -1
        want = floats[{"conv1": "w1", "conv2": "w2", "conv3": "w3", "head": "w4"}[node.name]]
        # equal up to float32 rounding of the product (about 1e-8 of the channel's peak)
        np.testing.assert_allclose(q.astype(np.float32) * scale.reshape(shape), want,
                                   rtol=0, atol=1e-6 * np.abs(want).max())
        checked += 1
    assert checked == 4


def test_profile_prepare_runs_in_a_build(tmp_path: Path) -> None:
    """A profile listing every pass builds ONNX and OpenVINO int8 from the prepared model and
    the report says what each pass did."""
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    text = (Path(__file__).parents[1] / "profiles" / "int8-openvino.yaml").read_text()
    text = text.replace("name: int8-openvino", "name: int8-prepared")
    text = text.replace("  model_type: auto\n",
                        "  model_type: auto\n  prepare: [fold-batchnorm, equalize, adaround]\n")
    (profiles / "int8-prepared.yaml").write_text(text)
    np.savez(tmp_path / "calib.npz", x=_data(48, 0).inputs["x"])
    np.savez(tmp_path / "eval.npz", x=_data(16, 1).inputs["x"])
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [str(a) for a in (
        "--profiles-dir", profiles, "build", _cnn(tmp_path / "cnn.onnx"), "-t", "x86-host",
        "-p", "int8-prepared", "--calibration", tmp_path / "calib.npz", "--eval",
        tmp_path / "eval.npz", "-o", out, "--runs", "3", "--allow-accuracy-drop")])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    notes = {a["format"]: " ".join(a["notes"]) for a in report["artifacts"]
             if a["precision"] == "int8"}
    assert set(notes) == {"onnx", "openvino"}, notes
    for text in notes.values():
        for name in ("fold-batchnorm", "equalize", "adaround"):
            assert f"prepare {name}:" in text, text
