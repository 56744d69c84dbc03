"""Dynamic int8 in the accuracy fallback: a transformer whose static int8 misses the budget is
quantized again with its activations' ranges taken per inference, where the profile allows it.

The model is a one-layer transformer encoder (tests/model_files.py) calibrated on quiet
sentences and judged on sentences ten to a hundred times louder, as an app meets inputs its
calibration set did not hold: static ranges set on the quiet ones clip the loud ones, while a
range taken per inference follows them. Real transformers miss for other reasons (MiniLM:
outlier channels, and float softmax and normalization between int8 products); this one misses
by construction, so the test can tell the fallback's dynamic step from its absence.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edgepack.validate.attempts import DYNAMIC_FIX

from tests import model_files

pytestmark = pytest.mark.slow

PROFILE = """
name: int8-tx
title: int8 for a transformer, its fallback free to quantize activations at run time
precision: int8
formats: [onnx]
quantization: {{per_channel: true, calibration: {{method: minmax, samples: 64, seed: 0}}}}
budget: {{min_cosine: 0.99}}
fallback_max_size_growth: 1.1
fallback_dynamic: {dynamic}
"""


def _sentences(n: int, seed: int, loudness: tuple[float, float]) -> dict[str, np.ndarray]:
    """Token vectors scaled by 10 ** U(``loudness``), with 0 to 3 padded positions."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 8, 16)) * 10.0 ** rng.uniform(*loudness, (n, 1, 1))
    mask = np.ones((n, 8), np.float32)
    for i in range(n):
        mask[i, 8 - i % 4:] = 0
    return {"x": x.astype(np.float32), "mask": mask}


def _build(tmp: Path, dynamic: bool, conv_head: bool = False
           ) -> tuple[int, dict[str, Any], Path]:
    from click.testing import CliRunner
    from edgepack.cli import cli

    from tests.test_compress import TARGET

    for d in ("t", "p", "data"):
        (tmp / d).mkdir()
    (tmp / "t" / "onnx-board.yaml").write_text(TARGET.format(name="onnx-board",
                                                             profile="int8-tx"))
    (tmp / "p" / "int8-tx.yaml").write_text(PROFILE.format(dynamic=str(dynamic).lower()))
    np.savez(tmp / "data" / "calib.npz", **_sentences(64, 0, (-1.0, -0.5)))
    np.savez(tmp / "data" / "eval.npz", **_sentences(32, 1, (0.0, 0.5)))
    src = model_files.tiny_transformer(tmp / "encoder.onnx")
    if conv_head:
        _add_conv_head(src)
    out = tmp / "out"
    res = CliRunner().invoke(cli, [
        "--targets-dir", str(tmp / "t"), "--profiles-dir", str(tmp / "p"), "build", str(src),
        "-t", "onnx-board", "-o", str(out), "--runs", "3",
        "--calibration", str(tmp / "data" / "calib.npz"),
        "--eval", str(tmp / "data" / "eval.npz")])
    art = next(a for a in json.loads((out / "report.json").read_text())["artifacts"]
               if a["role"] == "deliverable")
    return res.exit_code, art, out


def test_a_transformer_static_int8_cannot_hold_ships_dynamic_int8(tmp_path: Path) -> None:
    """Static int8 misses (the loud sentences are clipped); the fallback's dynamic attempt
    meets the budget and ships, named for its precision, with what it costs against plain
    int8 stated; the static files leave the output folder."""
    code, art, out = _build(tmp_path, dynamic=True)
    assert code == 0, art
    plain, *rest = art["fallback"]
    assert not plain["passed"] and plain["cosine"] < 0.9, plain
    dynamic = next(a for a in rest if a.get("change") == DYNAMIC_FIX)
    assert dynamic["passed"] and dynamic["chosen"] and dynamic["cosine"] > 0.999, dynamic
    assert art["precision"] == "dynamic-int8" and art["file"] == "encoder.dynamic-int8.onnx"
    assert art["budget"]["passed"]
    assert sorted(p.name for p in out.glob("encoder.*.onnx")) == [
        "encoder.dynamic-int8.onnx", "encoder.fp32.onnx"]
    cost = next(n for n in art["notes"] if n.startswith("accuracy fallback cost"))
    assert cost.startswith("accuracy fallback cost: the activations quantized at run time "
                           "make the file"), cost
    import onnx

    kinds = {n.op_type for n in onnx.load(str(out / art["file"])).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= kinds and "QuantizeLinear" not in kinds


def test_a_profile_that_forbids_it_keeps_static_int8(tmp_path: Path) -> None:
    """Without ``fallback_dynamic`` (hardware that runs integer ops only), no attempt is
    dynamic and the closest static file ships over budget. The layer searches are the ranked
    ones: a transformer's first layers in execution order are not tried in float."""
    code, art, out = _build(tmp_path, dynamic=False)
    assert code == 3
    assert art["precision"] == "int8" and all(
        a.get("change") != DYNAMIC_FIX and DYNAMIC_FIX not in a.get("based_on", [])
        for a in art["fallback"]), art["fallback"]
    assert not list(out.glob("*.dynamic-int8.*"))
    searched = [a for a in art["fallback"] if a.get("kept_float")]
    assert searched and all(a["order"] == "ranked" for a in searched), art["fallback"]


def test_a_dynamic_file_mostly_float_is_rejected_for_its_size(tmp_path: Path) -> None:
    """A transformer whose weights sit mostly in a convolution: dynamic int8 quantizes only
    its matrix products (dynamic convolutions cost more time than they save), so that file
    holds the convolution in float, over the profile's size allowance against plain int8: the
    fallback says so and never ships it; no dynamic file is left behind."""
    code, art, out = _build(tmp_path, dynamic=True, conv_head=True)
    assert code == 3
    dynamic = next(a for a in art["fallback"] if a.get("change") == DYNAMIC_FIX)
    assert dynamic["cosine"] > 0.99 and not dynamic["passed"], dynamic
    growth = float(dynamic["rejected"].split("x the size of plain int8")[0])
    assert growth > 2, dynamic  # the convolution's weights stayed float32
    assert art["precision"] == "int8" and not list(out.glob("*.dynamic-int8.*"))
    shipped = next(n for n in art["notes"] if n.startswith("accuracy fallback:")
                   and "rejected" in n)
    assert f"the attempt with {DYNAMIC_FIX} was rejected" in shipped, shipped


def _add_conv_head(path: Path) -> None:
    """y[N,8,32] -> channels first -> Conv(32 -> 256, kernel 3) -> z[N,256,8], the model's
    output: three quarters of its weights in one convolution."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    weight = np.random.default_rng(1).standard_normal((256, 32, 3)) / np.sqrt(96)
    model.graph.initializer.append(numpy_helper.from_array(weight.astype(np.float32), "wc"))
    model.graph.node.extend([
        helper.make_node("Transpose", ["y"], ["yt"], name="channels_first", perm=[0, 2, 1]),
        helper.make_node("Conv", ["yt", "wc"], ["z"], name="head", pads=[1, 1])])
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("z", TensorProto.FLOAT,
                                                            ["N", 256, 8]))
    onnx.save(model, str(path))


def _keras_encoder(path: Path, conv: bool = False) -> Path:
    """token ids[N,12] -> Embedding(2000 x 32) -> LayerNorm -> 2-head self-attention ->
    Dense(32) (a Conv1D(32, 3) with ``conv``) -> mean over tokens -> y[N,32], as a float
    TFLite file: its embedding table holds most of its weights, as a small transformer's
    does."""
    from edgepack.quiet import captured, import_tensorflow

    tf = import_tensorflow()
    tf.keras.utils.set_random_seed(0)
    ids = tf.keras.Input((12,), dtype="int32", batch_size=1)
    h = tf.keras.layers.LayerNormalization()(tf.keras.layers.Embedding(2000, 32)(ids))
    h = tf.keras.layers.MultiHeadAttention(num_heads=2, key_dim=16)(h, h)
    head = tf.keras.layers.Conv1D(32, 3) if conv else tf.keras.layers.Dense(32)
    y = tf.keras.layers.GlobalAveragePooling1D()(head(h))
    with captured():
        path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(
            tf.keras.Model(ids, y)).convert())
    return path


def test_a_tflite_transformer_is_read_and_its_embedding_lookup_gets_int8_too(
        tmp_path: Path) -> None:
    """The TFLite graph reader finds the attention and normalization (the fallback's test for
    a transformer); dynamic int8 with calibration data makes the embedding table's lookup int8
    (ai-edge-quantizer's dynamic recipe alone leaves it float: most of the file), and the
    file still follows the float one."""
    from ai_edge_litert.interpreter import Interpreter
    from edgepack.compress import tflite_quantizer
    from edgepack.compress.context import ConvertContext
    from edgepack.compress.transformer import file_graph, is_transformer
    from edgepack.config.profiles import Quantization
    from edgepack.data.dataset import Dataset

    src = _keras_encoder(tmp_path / "encoder.tflite")
    assert is_transformer(file_graph("tflite", src))
    assert not is_transformer(file_graph("tflite", model_files.tflite(
        _dense_savedmodel(tmp_path / "dense"), tmp_path / "dense.tflite")))
    rng = np.random.default_rng(0)
    name = Interpreter(str(src)).get_input_details()[0]["name"]
    calib = Dataset("calib", {name: rng.integers(0, 2000, (32, 12)).astype(np.int32)})
    sizes = {}
    for label, data in (("calibrated", calib), ("bare", None)):
        out = tmp_path / f"{label}.tflite"
        tflite_quantizer.compress(src, out, ConvertContext(
            workdir=tmp_path, stem=label, precision="dynamic-int8",
            quantization=Quantization(), calibration=data, scratch=tmp_path))
        sizes[label] = out.stat().st_size / src.stat().st_size
    assert sizes["calibrated"] < 0.35 < 0.9 < sizes["bare"], sizes
    feeds = rng.integers(0, 2000, (16, 12)).astype(np.int32)
    ref, got = (_tflite_outputs(p, feeds) for p in (src, tmp_path / "calibrated.tflite"))
    cos = np.sum(ref * got, 1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    assert cos.min() > 0.99, cos


def test_a_transformer_dynamic_int8_quantizes_its_matrix_products_alone(
        tmp_path: Path) -> None:
    """In a transformer, dynamic int8 makes the fully connected layers' weights int8 and leaves
    its convolution float (LiteRT's dynamic convolutions are slower than fp32's); a model
    with no attention gets every weight int8, convolutions included."""
    from edgepack.compress import tflite_quantizer
    from edgepack.compress.context import ConvertContext
    from edgepack.config.profiles import Quantization
    from edgepack.quiet import captured, import_tensorflow

    tf = import_tensorflow()
    x = tf.keras.Input((12, 12, 3), batch_size=1)
    cnn = tf.keras.Model(x, tf.keras.layers.Dense(4)(tf.keras.layers.Flatten()(
        tf.keras.layers.Conv2D(8, 3)(x))))
    with captured():
        (tmp_path / "cnn.tflite").write_bytes(
            tf.lite.TFLiteConverter.from_keras_model(cnn).convert())
    _keras_encoder(tmp_path / "encoder.tflite", conv=True)
    types = {}
    for name in ("encoder", "cnn"):
        out = tmp_path / f"{name}.dynamic.tflite"
        tflite_quantizer.compress(tmp_path / f"{name}.tflite", out, ConvertContext(
            workdir=tmp_path, stem=name, precision="dynamic-int8",
            quantization=Quantization(), scratch=tmp_path))
        types[name] = _weight_types(out)
    assert types["encoder"]["FULLY_CONNECTED"] == {"INT8"}, types
    assert types["encoder"]["CONV_2D"] == {"FLOAT32"}, types
    assert types["cnn"]["CONV_2D"] == {"INT8"} and types["cnn"]["FULLY_CONNECTED"] == {"INT8"}


def _weight_types(path: Path) -> dict[str, set[str]]:
    """The element types of the constant weights each kind of op reads in a TFLite file."""
    from ai_edge_litert.schema_py_generated import BuiltinOperator, TensorType
    from edgepack.compress import tflite_graph as flat

    model = flat.read(path.read_bytes())
    ops = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
    kinds = {v: k for k, v in vars(TensorType).items() if not k.startswith("_")}
    found: dict[str, set[str]] = {}
    for sub in model.subgraphs:
        for op in sub.operators:
            if len(op.inputs) > 1 and op.inputs[1] >= 0:
                weight = sub.tensors[op.inputs[1]]
                if model.buffers[weight.buffer].data is not None:
                    found.setdefault(ops[flat.op_code(model, op)], set()).add(
                        kinds[weight.type])
    return found


def _dense_savedmodel(path: Path) -> Path:
    """A two-layer perceptron as a SavedModel: no attention, no transformer."""
    from edgepack.quiet import captured, import_tensorflow

    tf = import_tensorflow()
    x = tf.keras.Input((8,), batch_size=1)
    model = tf.keras.Model(x, tf.keras.layers.Dense(4)(tf.keras.layers.Dense(16)(x)))
    with captured():
        model.export(str(path))
    return path


def _tflite_outputs(path: Path, feeds: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(str(path))
    interp.allocate_tensors()
    i, o = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]
    rows = []
    for row in feeds:
        interp.set_tensor(i, row[None])
        interp.invoke()
        rows.append(interp.get_tensor(o)[0].copy())
    return np.stack(rows)


def test_a_dynamic_int8_files_layers_are_ranked_by_their_error_per_channel(
        tmp_path: Path) -> None:
    """The layer ranking of a dynamic int8 ONNX file (the fallback's searches start from it
    when it is the best attempt) scores each integer product against a float twin, channel by
    channel: the feed-forward output whose one massive channel crushes the others' range
    ranks first. Attention's products of two activations, float already, are not ranked, and
    the weights each ranked layer would add in float are counted."""
    from edgepack.compress.sensitivity import onnx_weight_params, rank_onnx
    from edgepack.data.dataset import Dataset
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = model_files.tiny_transformer(tmp_path / "encoder.onnx")
    dynamic = tmp_path / "encoder.dynamic-int8.onnx"
    quantize_dynamic(str(src), str(dynamic), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul", "Gather"])
    data = _sentences(16, 0, (0.0, 0.0))
    data["x"][::2, 3, 0] = 12  # the marker token that fires the massive channel
    ranked = rank_onnx(src, src, dynamic, Dataset("calib", data), None)
    assert ranked[0] == "ffn2", ranked
    assert sorted(ranked) == ["attention_out", "embed", "ffn1", "ffn2", "key", "query",
                              "value"], ranked
    assert onnx_weight_params(dynamic, ranked) == {
        "embed": 512, "query": 1024, "key": 1024, "value": 1024, "attention_out": 1024,
        "ffn1": 2048, "ffn2": 2048}


def test_the_zoo_anchors_hold_a_dynamic_file_against_ort_dynamic_defaults(
        tmp_path: Path) -> None:
    """scripts/bench/anchors.py puts an ONNX dynamic-int8 deliverable beside ONNX Runtime's
    ``quantize_dynamic`` defaults (its own kind of plain int8), not only the static anchors."""
    import shutil
    import sys
    from types import SimpleNamespace

    code, art, out = _build(tmp_path, dynamic=True)
    assert code == 0 and art["precision"] == "dynamic-int8"
    (tmp_path / "builds").mkdir()
    shutil.move(out, tmp_path / "builds" / "encoder-onnx-board")
    folder = tmp_path / "zoo" / "encoder"
    folder.mkdir(parents=True)
    shutil.copy(tmp_path / "encoder.onnx", folder / "encoder.onnx")
    for split in ("calib", "eval"):
        shutil.copy(tmp_path / "data" / f"{split}.npz", folder / f"{split}.npz")
    meta = {"name": "encoder", "model": "encoder.onnx", "format": "onnx",
            "inputs": [{"name": "x", "batch_axis": 0}, {"name": "mask", "batch_axis": 0}]}
    cell = SimpleNamespace(model="encoder", target="onnx-board", delivered=[
        SimpleNamespace(format="onnx", precision="dynamic-int8", file=art["file"])])
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "bench"))
    try:
        import anchors
    finally:
        sys.path.pop(0)
    result = anchors.model_anchors(folder, meta, [cell], tmp_path / "builds" / "anchors" /
                                   "encoder", folder / "eval.npz", runs=3, warmup=1, threads=1)
    rows = {r["name"]: r for r in result["rows"]}
    assert not [r for r in result["rows"] if "error" in r], result
    plain, ours = rows["ORT quantize_dynamic defaults"], rows["edgepack onnx-board"]
    assert plain["format"] == ours["format"] == "onnx"
    assert plain["size_ratio"] < 0.6 and ours["size_ratio"] < 0.6
    assert ours["outputs"][0]["cosine"] > 0.999, ours
