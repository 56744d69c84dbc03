"""int8 recipes beyond min/max: MSE-optimal activation ranges and the transformer recipe, in
the ONNX (ONNX Runtime's quantizer) and OpenVINO (NNCF) formats.

Tolerances: int8 is judged as the profiles judge it, by the error or cosine against the fp32
model on data the calibration never saw; where two recipes are compared, by a margin well
outside the run-to-run noise of these seeded tiny models (which is nil: same data, same file).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from edgepack.compress.context import ConvertContext
from edgepack.config.profiles import Calibration, Quantization
from edgepack.data.dataset import Dataset

from tests import model_files

pytestmark = pytest.mark.slow


def _classifier(path: Path) -> Path:
    """x[N,4,32,32] -> Conv -> Relu -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm ->
    logits[N,10]: a small CNN classifier."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = {"w1": rng.standard_normal((8, 4, 3, 3)) / 6,
               "w2": rng.standard_normal((8, 8, 3, 3)) / 8,
               "w3": rng.standard_normal((8, 10)), "b3": rng.standard_normal(10) * 0.1}
    n = helper.make_node
    nodes = [n("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1] * 4),
             n("Relu", ["c1"], ["r1"], name="relu1"),
             n("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1] * 4),
             n("Relu", ["c2"], ["r2"], name="relu2"),
             n("GlobalAveragePool", ["r2"], ["pooled"], name="pool"),
             n("Flatten", ["pooled"], ["flat"], name="flatten"),
             n("Gemm", ["flat", "w3", "b3"], ["logits"], name="head")]
    graph = helper.make_graph(
        nodes, "classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 64, 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(w.astype(np.float32), k) for k, w in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _images(n: int, seed: int, glitch: float | None = None) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, 4, 64, 64)).astype(np.float32)
    if glitch is not None:
        x[7, 0, 16, 16] = glitch  # one value in a million: a hot pixel, a corrupt sample
    return x


def _quantize(fmt: str, src: Path, out: Path, method: str, data: dict[str, np.ndarray],
              model_type: str = "auto") -> list[str]:
    from edgepack.compress import onnx as onnx_compress
    from edgepack.compress import openvino as openvino_compress

    quant = Quantization(model_type=model_type,
                         calibration=Calibration(method=method, samples=64))
    ctx = ConvertContext(workdir=out.parent, stem=out.stem, precision="int8",
                         quantization=quant, calibration=Dataset("calib", data))
    (onnx_compress if fmt == "onnx" else openvino_compress).compress(src, out, ctx)
    return ctx.notes


def _run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """``path`` run one sample at a time, as edgepack's validation runs it
    (validate/outputs.py ``exact_options``)."""
    from edgepack.runtimes import get_runtime
    from edgepack.validate.outputs import exact_options

    runtime = "onnxruntime" if path.suffix == ".onnx" else "openvino"
    session = get_runtime(runtime).load(path, exact_options(runtime))
    n = len(next(iter(feeds.values())))
    return np.concatenate([next(iter(session.run({k: v[i:i + 1] for k, v in feeds.items()})
                                     .values())) for i in range(n)])


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_mse_ranges_beat_min_max_on_an_outlier_activation(tmp_path: Path, fmt: str) -> None:
    """One calibration value 300 times the others' spread stretches the min/max ranges of the
    input and the activations after it: every other value rounds on steps tens of times too
    coarse. ``mse`` clips it (one value among a million costs less clipped than the rounding
    it saves everywhere else), and the int8 classifier follows the float one far more closely
    on new data."""
    src = _classifier(tmp_path / "cnn.onnx")
    if fmt == "openvino":
        src = model_files.openvino_ir(src, tmp_path / "cnn.xml")
    feeds = {"x": _images(32, 2)}
    ref = _run(src, feeds)
    errors = {}
    for method in ("minmax", "mse"):
        out = tmp_path / f"cnn-{method}{src.suffix}"
        notes = _quantize(fmt, src, out, method, {"x": _images(64, 1, glitch=300.0)})
        errors[method] = float(np.sqrt(np.mean((_run(out, feeds) - ref) ** 2)))
    assert errors["mse"] < errors["minmax"] / 2, errors
    if fmt == "openvino":
        assert any("least-squared-error" in n for n in notes), notes


def _reshaped_head(path: Path) -> Path:
    """x[N,3,32,32] -> Conv (hidden) -> Conv 1x1 (last) -> Reshape -> Transpose -> y[N,1024,8]:
    a head whose last activation reaches the output only through value-moving ops."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    init = [numpy_helper.from_array((rng.standard_normal(s) / 4).astype(np.float32), k)
            for k, s in (("w1", (8, 3, 3, 3)), ("w2", (8, 8, 1, 1)))]
    init.append(numpy_helper.from_array(np.array([0, 8, 1024], np.int64), "shape"))
    n = helper.make_node
    nodes = [n("Conv", ["x", "w1"], ["hidden"], name="conv1", pads=[1] * 4),
             n("Conv", ["hidden", "w2"], ["last"], name="conv2"),
             n("Reshape", ["last", "shape"], ["flat"], name="flatten"),
             n("Transpose", ["flat"], ["y"], name="swap", perm=[0, 2, 1])]
    graph = helper.make_graph(
        nodes, "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1024, 8])], init)
    return model_files.save_onnx(graph, path)


def test_onnx_percentile_ranges_leave_what_reaches_an_output_unclipped(tmp_path: Path) -> None:
    """Method percentile in ONNX: edgepack's streamed histograms set the ranges, on every
    sample asked for. An activation inside the model gets its percentile range (one hot pixel
    among 300k values is clipped off); the last convolution, read by the app through a
    Reshape and a Transpose, keeps its true min/max, where ONNX Runtime's own percentile
    clipped it with the rest."""
    from edgepack.compress.onnx_ranges import collect_histograms, output_names, own_calibration
    from edgepack.compress.onnx_transformer import Recipe
    from edgepack.compress.ranges import percentile_range
    from onnxruntime.quantization.calibrate import load_tensors_data

    src = _reshaped_head(tmp_path / "head.onnx")
    x = np.random.default_rng(0).standard_normal((160, 3, 32, 32)).astype(np.float32)
    x[7, 0, 8, 8] = 60.0  # one value in 491k: the percentile holds 99.999%

    def reader() -> object:
        class Reader:
            samples = iter({"x": x[i:i + 1]} for i in range(len(x)))

            def get_next(self) -> dict[str, np.ndarray] | None:
                return next(self.samples, None)
        return Reader()

    import onnx

    assert output_names(onnx.load(str(src)).graph) == {"y", "flat", "last"}
    cache = tmp_path / "ranges.json"
    own_calibration(src, reader(), "percentile", Recipe("generic"), cache, None)
    ranges = {k: (float(d.range_value[0]), float(d.range_value[1]))
              for k, d in load_tensors_data(cache).data.items()}
    hists = collect_histograms(src, reader(), None)
    for inside in ("x", "hidden"):
        assert ranges[inside] == pytest.approx(percentile_range(hists[inside]))
        assert ranges[inside][1] < hists[inside].finite_range[1]
    assert ranges["last"] == pytest.approx(hists["last"].finite_range)
    assert percentile_range(hists["last"])[1] < hists["last"].finite_range[1]
    notes = _quantize("onnx", src, tmp_path / "head.int8.onnx", "percentile", {"x": x})
    assert not any("of the" in n and "samples asked for" in n for n in notes), notes
    assert any("64 samples" in n and "percentile" in n for n in notes), notes


def _multi_head_encoder(path: Path) -> Path:
    """A BERT-style encoder layer as a dynamic-sequence export writes it: x[N,S,32] ->
    LayerNorm -> 4-head attention (query, key and value reshaped to [N,S,4,8] and transposed,
    scaled scores plus the padding mask times float32's lowest value, Softmax) -> output MatMul
    -> residual Add -> LayerNorm -> MatMul -> GELU -> MatMul -> residual Add -> y[N,S,32].
    OpenVINO's frontend fuses its attention into one ScaledDotProductAttention op (no Softmax
    left in the IR), as it does MiniLM's."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    hidden, heads, inner = 32, 4, 64

    def dense(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape) / np.sqrt(shape[0])

    weights = {"wq": dense(hidden, hidden), "wk": dense(hidden, hidden),
               "wv": dense(hidden, hidden), "wo": dense(hidden, hidden),
               "w1": dense(hidden, inner), "w2": dense(inner, hidden),
               "gamma": np.ones(hidden), "beta": np.zeros(hidden),
               "scale": 1 / np.sqrt(hidden // heads), "one": 1.0,
               "lowest": np.finfo(np.float32).min, "half": 0.5, "root2": np.sqrt(2)}
    init = [numpy_helper.from_array(np.asarray(w, np.float32), k) for k, w in weights.items()]
    init += [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in (
        ("split", [0, 0, heads, hidden // heads]), ("merge", [0, 0, hidden]), ("axes", [1, 2]))]
    n = helper.make_node

    def heads_of(t: str, perm: list[int]) -> list[object]:
        return [n("MatMul", ["h", f"w{t}"], [t], name=t),
                n("Reshape", [t, "split"], [f"{t}4"], name=f"{t}_split"),
                n("Transpose", [f"{t}4"], [f"{t}t"], name=f"{t}_t", perm=perm)]

    nodes = [n("LayerNormalization", ["x", "gamma", "beta"], ["h"], name="norm0", axis=-1),
             *heads_of("q", [0, 2, 1, 3]), *heads_of("k", [0, 2, 3, 1]),
             *heads_of("v", [0, 2, 1, 3]),
             n("MatMul", ["qt", "kt"], ["s"], name="scores"),
             n("Mul", ["s", "scale"], ["s_scaled"], name="scaled"),
             n("Sub", ["one", "mask"], ["pad"], name="pad"),
             n("Mul", ["pad", "lowest"], ["pad_bias"], name="pad_bias"),
             n("Unsqueeze", ["pad_bias", "axes"], ["pad_bias4"], name="pad_bias4"),
             n("Add", ["s_scaled", "pad_bias4"], ["s_masked"], name="masked"),
             n("Softmax", ["s_masked"], ["p"], name="softmax", axis=-1),
             n("MatMul", ["p", "vt"], ["c"], name="context"),
             n("Transpose", ["c"], ["ct"], name="context_t", perm=[0, 2, 1, 3]),
             n("Reshape", ["ct", "merge"], ["a"], name="merge_heads"),
             n("MatMul", ["a", "wo"], ["o"], name="attention_out"),
             n("Add", ["h", "o"], ["r1"], name="residual1"),
             n("LayerNormalization", ["r1", "gamma", "beta"], ["h1"], name="norm1", axis=-1),
             n("MatMul", ["h1", "w1"], ["f1"], name="ffn1"),
             n("Div", ["f1", "root2"], ["f1s"], name="gelu_div"),
             n("Erf", ["f1s"], ["erf"], name="gelu_erf"),
             n("Add", ["erf", "one"], ["erf1"], name="gelu_add"),
             n("Mul", ["f1", "erf1"], ["gm"], name="gelu_mul"),
             n("Mul", ["gm", "half"], ["gelu"], name="gelu"),
             n("MatMul", ["gelu", "w2"], ["f2"], name="ffn2"),
             n("Add", ["h1", "f2"], ["y"], name="residual2")]
    graph = helper.make_graph(
        nodes, "multi_head_encoder",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "S", hidden]),
         helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", "S"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "S", hidden])], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _sentences(n: int, seed: int) -> dict[str, np.ndarray]:
    """Token vectors and a padding mask (1 to 3 padded positions); one marker token."""
    x = np.random.default_rng(seed).standard_normal((n, 8, 16)).astype(np.float32)
    x[5, 3, 0] = 12.0
    mask = np.ones((n, 8), np.float32)
    for i in range(n):
        mask[i, 8 - i % 4:] = 0
    return {"x": x, "mask": mask}


def _cosine(path: Path, src: Path, feeds: dict[str, np.ndarray]) -> float:
    ref, got = (_run(p, feeds).reshape(len(feeds["x"]), -1) for p in (src, path))
    return float(np.mean(np.sum(ref * got, axis=1)
                         / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)))


def test_a_transformer_is_recognised_by_its_ops(tmp_path: Path) -> None:
    """Attention (a Softmax over a product of two activations) and a normalization make a
    transformer, in either format; a CNN classifier is none."""
    import openvino as ov
    from edgepack.compress.transformer import is_transformer, onnx_graph, openvino_graph

    for src, expected in ((model_files.tiny_transformer(tmp_path / "t.onnx"), True),
                          (_classifier(tmp_path / "cnn.onnx"), False)):
        assert is_transformer(onnx_graph(src)) is expected
        ir = model_files.openvino_ir(src, src.with_suffix(".xml"))
        assert is_transformer(openvino_graph(ov.Core().read_model(str(ir)))) is expected


def test_fused_attention_makes_a_transformer_too(tmp_path: Path) -> None:
    """OpenVINO fuses a dynamic-sequence export's attention into ScaledDotProductAttention:
    no Softmax is left to find, yet the IR is a transformer and gets NNCF's transformer model
    type (MiniLM's dynamic-shape IR, taken for a CNN, quantized to cosine 0.58)."""
    import openvino as ov
    from edgepack.compress.transformer import is_transformer, openvino_graph

    src = _multi_head_encoder(tmp_path / "e.onnx")
    ir = model_files.openvino_ir(src, tmp_path / "e.xml")
    kinds = {op.get_type_name() for op in ov.Core().read_model(str(ir)).get_ordered_ops()}
    assert "ScaledDotProductAttention" in kinds and "Softmax" not in kinds
    assert is_transformer(openvino_graph(ov.Core().read_model(str(ir))))
    rng = np.random.default_rng(0)
    calib, feeds = ({"x": rng.standard_normal((32, 8, 32)).astype(np.float32),
                     "mask": (np.arange(8) < rng.integers(5, 9, (32, 1))).astype(np.float32)}
                    for _ in range(2))
    notes = _quantize("openvino", ir, tmp_path / "e-int8.xml", "minmax", calib)
    assert any(n.startswith("transformer recipe: NNCF's transformer model type") for n in notes)
    assert _cosine(tmp_path / "e-int8.xml", ir, feeds) >= 0.999


def test_onnx_transformer_recipe_keeps_attention_and_massive_outputs_float(
        tmp_path: Path) -> None:
    """ONNX Runtime's quantizer on every op (the generic recipe; the mask's nodes kept float by
    the sentinel guard) rounds the feed-forward's massive activation with everything else:
    cosine 0.966. The transformer recipe, chosen from the graph, quantizes the products with
    weights only, leaves attention's products float, and lets the one product whose output
    int8 cannot hold (ffn2: 18 dB at its best range) write it in float: 0.988."""
    src = model_files.tiny_transformer(tmp_path / "t.onnx")
    feeds, calib = _sentences(64, 1), _sentences(64, 0)
    notes = _quantize("onnx", src, tmp_path / "t-auto.onnx", "minmax", calib)
    assert _cosine(tmp_path / "t-auto.onnx", src, feeds) >= 0.98
    recipe = next(n for n in notes if n.startswith("transformer recipe"))
    assert "2 attention product(s)" in recipe and "1 product(s) write float outputs" in recipe
    assert recipe.endswith(": ffn2"), recipe
    _quantize("onnx", src, tmp_path / "t-generic.onnx", "minmax", calib, model_type="generic")
    assert _cosine(tmp_path / "t-generic.onnx", src, feeds) < 0.975


def test_openvino_transformer_recipe_is_nncfs_transformer_model_type(tmp_path: Path) -> None:
    """The same transformer as an OpenVINO IR: NNCF's transformer model type (SmoothQuant,
    normalization and softmax float, its fast bias correction) where edgepack's CNN settings
    give cosine 0.92."""
    src = model_files.openvino_ir(model_files.tiny_transformer(tmp_path / "t.onnx"),
                                  tmp_path / "t.xml")
    feeds, calib = _sentences(64, 1), _sentences(64, 0)
    notes = _quantize("openvino", src, tmp_path / "t-auto.xml", "minmax", calib)
    assert _cosine(tmp_path / "t-auto.xml", src, feeds) >= 0.99
    assert any(n.startswith("transformer recipe: NNCF's transformer model type") for n in notes)
    _quantize("openvino", src, tmp_path / "t-generic.xml", "minmax", calib,
              model_type="generic")
    assert _cosine(tmp_path / "t-generic.xml", src, feeds) < 0.95


def test_profiles_choose_the_range_method_and_the_model_type() -> None:
    from edgepack.config.profiles import Profile
    from pydantic import ValidationError

    base = {"name": "int8-x", "title": "t", "precision": "int8", "formats": ["onnx"]}
    profile = Profile.model_validate({**base, "quantization": {
        "model_type": "transformer", "calibration": {"method": "mse"}}})
    assert profile.quantization.calibration.method == "mse"
    assert profile.quantization.model_type == "transformer"
    assert Profile.model_validate({**base, "quantization": {}}).quantization.model_type == "auto"
    for bad in ({"calibration": {"method": "median"}}, {"model_type": "cnn"}):
        with pytest.raises(ValidationError):
            Profile.model_validate({**base, "quantization": bad})


def _biased_cnn(path: Path) -> Path:
    """x[N,4,16,16] -> Conv+bias -> Relu -> Conv+bias -> Relu -> Conv+bias -> y: convolutions
    whose int32 biases the bias correction moves."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(2)
    shapes = {"w1": (8, 4, 3, 3), "b1": (8,), "w2": (8, 8, 3, 3), "b2": (8,),
              "w3": (4, 8, 1, 1), "b3": (4,)}
    init = [numpy_helper.from_array((rng.standard_normal(s) / 3).astype(np.float32), k)
            for k, s in shapes.items()]
    n = helper.make_node
    nodes = [n("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1] * 4),
             n("Relu", ["c1"], ["r1"], name="relu1"),
             n("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1] * 4),
             n("Relu", ["c2"], ["r2"], name="relu2"),
             n("Conv", ["r2", "w3", "b3"], ["y"], name="conv3")]
    graph = helper.make_graph(
        nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 16, 16])], init)
    return model_files.save_onnx(graph, path)


def test_onnx_bias_correction_is_measured_on_each_quantized_file(tmp_path: Path) -> None:
    """The accuracy fallback quantizes one model again and again in one scratch folder: each
    file gets the bias shifts measured on itself, not those of the first file made (plain
    int8's shifts on MediaPipe pose's file with float Adds cost its world landmarks 0.90 ->
    0.57 cosine). A file with a layer kept float is byte for byte the file made alone."""
    from edgepack.compress import onnx as onnx_compress

    src = _biased_cnn(tmp_path / "cnn.onnx")
    data = Dataset("calib", {"x": np.random.default_rng(0).standard_normal(
        (64, 4, 16, 16)).astype(np.float32)})
    quant = Quantization(calibration=Calibration(method="minmax", samples=64))

    def made(folder: str, keep: tuple[str, ...], scratch: Path) -> bytes:
        out = tmp_path / folder / "cnn.int8.onnx"
        out.parent.mkdir(exist_ok=True)
        ctx = ConvertContext(workdir=out.parent, stem="cnn", precision="int8",
                             quantization=quant, calibration=data, keep_float=keep,
                             scratch=scratch)
        onnx_compress.compress(src, out, ctx)
        return out.read_bytes()

    shared = tmp_path / "shared"
    made("plain", (), shared)
    after_plain = made("kept", ("conv1",), shared)
    alone = made("alone", ("conv1",), tmp_path / "own")
    assert after_plain == alone
    assert len(list((shared / "onnx-bias").glob("*.npz"))) == 2
