"""Real models' shapes and inputs: dynamic dims ONNX Runtime's symbolic shape inference gives
up on, ``--input-shape`` for an ONNX source, an opset-12 graph quantized per channel, int64
token ids with an attention mask, a detector head joining boxes and scores, and an RNN step
(state batched on axis 1, a scalar sample rate) built end to end. Every model is built here
with ``onnx.helper``.

Tolerances: int8 is judged by cosine against the float model (0.99: what the int8 profiles
ask of a model with no near-ties); fp32 copies by float rounding (1e-5).
"""

from __future__ import annotations

from pathlib import Path

import edgepack
import numpy as np
import pytest
from edgepack.compress.context import ConvertContext
from edgepack.config.profiles import Calibration, Quantization
from edgepack.data.dataset import Dataset

from tests.model_files import onnx_rnn_step, save_onnx

TARGET = """
name: onnx-board
title: A board that runs ONNX only
device: {vendor: ACME, cpu: 4x Cortex-A53, cores: 4}
arch: aarch64
runtimes: [{name: onnxruntime, version: "1.20"}]
formats: [onnx]
default_profile: fp32
limits: {memory_mb: 1024, storage_mb: 8000, max_model_mb: 100}
"""


def _unet(path: Path, opset: int = 17) -> Path:
    """x[N,1,L] -> MaxPool /2 -> Resize x2 -> + x -> Conv(3 filters) -> y[N,3,L]: the
    skip connection adds floor(L/2)*2 to L, which symbolic shape inference cannot merge
    ("Incomplete symbolic shape inference", as on PP-OCR's and YOLO's feature pyramids)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    init = [numpy_helper.from_array(rng.standard_normal((3, 1, 3)).astype(np.float32), "w"),
            numpy_helper.from_array(np.array([1, 1, 2], np.float32), "scales"),
            numpy_helper.from_array(np.zeros(0, np.float32), "roi")]
    nodes = [helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[2], strides=[2]),
             helper.make_node("Resize", ["p", "roi", "scales"], ["u"], mode="nearest"),
             helper.make_node("Add", ["u", "x"], ["s"], name="skip"),
             helper.make_node("Conv", ["s", "w"], ["y"], name="conv", pads=[1, 1])]
    graph = helper.make_graph(
        nodes, "unet", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, "L"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "L"])], init)
    return save_onnx(graph, path, opset)


def _int8(src: Path, out: Path, data: dict[str, np.ndarray], **ctx_args: object) -> list[str]:
    """``src`` quantized to int8 QDQ at ``out`` as the int8 profiles do; the notes."""
    from edgepack.compress.onnx import compress

    ctx = ConvertContext(workdir=out.parent, stem=out.stem, precision="int8",
                         quantization=Quantization(calibration=Calibration(samples=32)),
                         calibration=Dataset("calib", data), **ctx_args)
    compress(src, out, ctx)
    return ctx.notes


def _dims(path: Path) -> list[list[int | str]]:
    import onnx

    return [[d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]
            for v in onnx.load(path).graph.input]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a.ravel(), b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _run(path: Path, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    """``path`` run as edgepack's validation runs it (validate/outputs.py ``exact_options``)."""
    from edgepack.runtimes import get_runtime
    from edgepack.validate.outputs import exact_options

    session = get_runtime("onnxruntime").load(path, exact_options("onnxruntime"))
    return list(session.run(feed).values())


def _op_count(path: Path, op: str) -> int:
    import onnx

    return sum(n.op_type == op for n in onnx.load(path).graph.node)


def test_int8_of_a_graph_symbolic_shape_inference_gives_up_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The symbolic step is routed around: the int8 file is made, keeps N and L dynamic, is
    really quantized, and the report says what pre-processing was left out. Nothing lands in
    the working directory (ONNX Runtime saves its partial model there when it gives up)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    src = _unet(tmp_path / "unet.onnx")
    x = np.random.default_rng(1).standard_normal((32, 1, 16)).astype(np.float32)
    notes = _int8(src, tmp_path / "unet.int8.onnx", {"x": x})
    out = tmp_path / "unet.int8.onnx"
    assert _dims(out) == [["N", 1, "L"]]
    assert _op_count(out, "QuantizeLinear") > 0
    assert any("(Incomplete symbolic shape inference); done with" in n for n in notes)
    test = np.random.default_rng(2).standard_normal((4, 1, 24)).astype(np.float32)  # other L
    assert _cosine(_run(src, {"x": test})[0], _run(out, {"x": test})[0]) > 0.99
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "unet.int8.onnx", "unet.onnx"]
    assert not any(cwd.iterdir())


def test_input_shape_fixes_the_int8_file_of_an_onnx_source(tmp_path: Path) -> None:
    src = _unet(tmp_path / "unet.onnx")
    x = np.random.default_rng(1).standard_normal((32, 1, 16)).astype(np.float32)
    _int8(src, tmp_path / "unet.int8.onnx", {"x": x}, input_shapes={"x": (1, 1, 16)})
    assert _dims(tmp_path / "unet.int8.onnx") == [[1, 1, 16]]


def test_input_shape_fixes_the_delivered_onnx_of_an_onnx_source(tmp_path: Path) -> None:
    """``--input-shape`` (or the project's input_shape) reaches an ONNX source delivered as
    ONNX: its inputs and the shapes inside are fixed, and the report says so."""
    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / "onnx-board.yaml").write_text(TARGET)
    src = _unet(tmp_path / "unet.onnx")
    np.savez(tmp_path / "eval.npz", x=np.ones((4, 1, 16), np.float32))
    report = edgepack.build(src, "onnx-board", evaluation=tmp_path / "eval.npz", runs=2, warmup=0,
                            output=tmp_path / "out", input_shapes={"x": (1, 1, 16)},
                            targets_dirs=(tmp_path / "targets",))
    assert _dims(tmp_path / "out" / "unet.fp32.onnx") == [[1, 1, 16]]
    assert report.deliverables[0].signature["outputs"][0]["shape"] == [1, 3, 16]
    assert any("fixed to x 1x1x16" in n for n in report.notes)


def test_an_opset_12_graph_quantized_per_channel_loads(tmp_path: Path) -> None:
    """Per-channel DequantizeLinear needs opset 13 (its ``axis``): PP-OCR is opset 12, and its
    int8 file did not load ("Unrecognized attribute: axis for operator DequantizeLinear")."""
    src = _unet(tmp_path / "unet12.onnx", opset=12)
    x = np.random.default_rng(1).standard_normal((32, 1, 16)).astype(np.float32)
    notes = _int8(src, tmp_path / "unet12.int8.onnx", {"x": x})
    test = x[:4]
    assert _cosine(_run(src, {"x": test})[0], _run(tmp_path / "unet12.int8.onnx",
                                                   {"x": test})[0]) > 0.99
    assert any("opset 12 to 13" in n for n in notes)


def _attention(path: Path) -> Path:
    """A one-head self-attention over token embeddings, masked as Hugging Face exports do:
    masked keys get float32's lowest value added before the softmax. ``input_ids`` and
    ``attention_mask`` are int64 [batch, seq]; ``hidden`` is [batch, seq, 8]."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    init = [numpy_helper.from_array(rng.standard_normal((50, 8)).astype(np.float32), "table"),
            numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32) * 0.5, "wq"),
            numpy_helper.from_array(np.array(1.0, np.float32), "one"),
            numpy_helper.from_array(np.array(np.finfo(np.float32).min, np.float32), "lowest"),
            numpy_helper.from_array(np.array([1], np.int64), "axis1")]
    nodes = [helper.make_node("Gather", ["table", "input_ids"], ["emb"]),
             helper.make_node("MatMul", ["emb", "wq"], ["q"], name="query"),
             helper.make_node("Transpose", ["emb"], ["kt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["q", "kt"], ["scores"], name="scores"),
             helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
             helper.make_node("Sub", ["one", "m"], ["masked"]),
             helper.make_node("Mul", ["masked", "lowest"], ["bias2"], name="mask"),
             helper.make_node("Unsqueeze", ["bias2", "axis1"], ["bias"]),
             helper.make_node("Add", ["scores", "bias"], ["logits"], name="masked_scores"),
             helper.make_node("Softmax", ["logits"], ["attn"], axis=-1, name="softmax"),
             helper.make_node("MatMul", ["attn", "emb"], ["hidden"], name="context")]
    tokens = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"])
              for n in ("input_ids", "attention_mask")]
    graph = helper.make_graph(
        nodes, "attention", tokens,
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "seq", 8])], init)
    return save_onnx(graph, path)


def _tokens(n: int, seed: int) -> dict[str, np.ndarray]:
    """Padded sentences: ids in 1..49, a mask of 1 on 4..12 of the 12 positions."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, 13, n)
    mask = (np.arange(12)[None, :] < lengths[:, None]).astype(np.int64)
    return {"input_ids": rng.integers(1, 50, (n, 12)) * mask, "attention_mask": mask}


def test_token_ids_calibrate_as_int64_and_an_attention_mask_stays_float(tmp_path: Path) -> None:
    """int64 token ids and mask reach the calibrator as int64; the tensors that carry the
    mask's -3.4e38 stay float (one int8 step of that range would zero every attention score
    and flatten the softmax), and the int8 model follows the float one on real tokens."""
    src = _attention(tmp_path / "attn.onnx")
    notes = _int8(src, tmp_path / "attn.int8.onnx", _tokens(32, 0))
    test = _tokens(8, 1)
    ref, out = _run(src, test)[0], _run(tmp_path / "attn.int8.onnx", test)[0]
    kept = test["attention_mask"].astype(bool)  # padded positions carry nothing anyone uses
    assert _cosine(ref[kept], out[kept]) > 0.99
    assert any("kept in float" in n and "masked_scores" in n for n in notes)
    assert _op_count(tmp_path / "attn.int8.onnx", "QuantizeLinear") > 0


def _detector_head(path: Path) -> Path:
    """A YOLO-style head: x[N,8,L] -> boxes (sigmoid x 320, pixels) and 2 class scores
    (sigmoid, 0..1), joined on axis 1 into ``output0`` [N, 6, L], as Ultralytics exports."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(6)
    init = [numpy_helper.from_array(rng.standard_normal((4, 8, 1)).astype(np.float32), "wb"),
            numpy_helper.from_array(rng.standard_normal((2, 8, 1)).astype(np.float32), "ws"),
            numpy_helper.from_array(np.array(320.0, np.float32), "pixels")]
    nodes = [helper.make_node("Conv", ["x", "wb"], ["b0"], name="box_conv"),
             helper.make_node("Sigmoid", ["b0"], ["b1"], name="box_sigmoid"),
             helper.make_node("Mul", ["b1", "pixels"], ["boxes"], name="box_scale"),
             helper.make_node("Conv", ["x", "ws"], ["s0"], name="score_conv"),
             helper.make_node("Sigmoid", ["s0"], ["scores"], name="score_sigmoid"),
             helper.make_node("Concat", ["boxes", "scores"], ["output0"], axis=1, name="head")]
    graph = helper.make_graph(
        nodes, "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, "L"])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", 6, "L"])], init)
    return save_onnx(graph, path)


def test_a_concat_of_boxes_in_pixels_and_scores_stays_float(tmp_path: Path) -> None:
    """Boxes (0..320) and scores (0..1) joined in one output share no int8 scale: the scores
    would get one step or two. The Concat stays float, each input quantized on its own."""
    src = _detector_head(tmp_path / "head.onnx")
    x = np.random.default_rng(7).standard_normal((32, 8, 20)).astype(np.float32)
    notes = _int8(src, tmp_path / "head.int8.onnx", {"x": x})
    ref, out = _run(src, {"x": x[:8]})[0], _run(tmp_path / "head.int8.onnx", {"x": x[:8]})[0]
    assert np.abs(out[:, 4:] - ref[:, 4:]).max() < 0.02  # scores: a few 1/255 steps
    assert np.abs(out[:, :4] - ref[:, :4]).mean() < 320 * 0.01  # boxes: int8 noise
    assert any("kept in float" in n and "head" in n and "32x" in n for n in notes)


def _magnitude(path: Path) -> Path:
    """A spectrum's magnitude as silero-vad computes it: two filters (real, imaginary) of
    x[N,4,L], sqrt(re^2 + im^2), then a 1x1 convolution."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(8)
    init = [numpy_helper.from_array(rng.standard_normal((1, 4, 1)).astype(np.float32), n)
            for n in ("w_re", "w_im")]
    init += [numpy_helper.from_array(rng.standard_normal((3, 1, 1)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array(2.0, np.float32), "two")]
    nodes = [helper.make_node("Conv", ["x", "w_re"], ["re"], name="real"),
             helper.make_node("Conv", ["x", "w_im"], ["im"], name="imag"),
             helper.make_node("Pow", ["re", "two"], ["re2"], name="re_squared"),
             helper.make_node("Pow", ["im", "two"], ["im2"], name="im_squared"),
             helper.make_node("Add", ["re2", "im2"], ["power"], name="power"),
             helper.make_node("Sqrt", ["power"], ["mag"], name="magnitude"),
             helper.make_node("Conv", ["mag", "w"], ["y"], name="features")]
    graph = helper.make_graph(
        nodes, "mag", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, "L"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "L"])], init)
    return save_onnx(graph, path)


def test_a_square_before_its_root_stays_float(tmp_path: Path) -> None:
    """A magnitude over signals whose loudness spans two decades: on an int8 grid over the
    squares, every quiet frame's square rounds to 0 (its magnitude with it). The nodes from
    each Pow to the Sqrt stay float; the filters before and the convolution after are int8."""
    src = _magnitude(tmp_path / "mag.onnx")
    rng = np.random.default_rng(9)
    loudness = 10 ** rng.uniform(-2, 0, (48, 1, 1))
    x = (rng.standard_normal((48, 4, 30)) * loudness).astype(np.float32)
    notes = _int8(src, tmp_path / "mag.int8.onnx", {"x": x[:32]})
    ref, out = _run(src, {"x": x[32:]})[0], _run(tmp_path / "mag.int8.onnx", {"x": x[32:]})[0]
    quiet = (loudness[32:, 0, 0] < 0.1)
    assert quiet.sum() >= 4 and _cosine(ref[quiet], out[quiet]) > 0.99
    assert any("kept in float" in n and "square" in n and "power" in n for n in notes)
    assert _op_count(tmp_path / "mag.int8.onnx", "QuantizeLinear") > 0


def test_a_graph_whose_weights_sit_in_if_branches_is_no_int8_deliverable(
        tmp_path: Path) -> None:
    """ONNX Runtime's quantizer does not enter If bodies (silero-vad keeps every weight there):
    a file with nothing quantized is refused, not delivered as int8 (it came out larger than
    the float file), and nothing is left behind."""
    from edgepack.compress.onnx import compress
    from edgepack.errors import ConversionError
    from onnx import TensorProto, helper, numpy_helper

    def branch(name: str, scale: float) -> object:
        w = numpy_helper.from_array(np.full((4, 4), scale, np.float32), f"{name}_w")
        return helper.make_graph(
            [helper.make_node("Constant", [], [f"{name}_w"], value=w),
             helper.make_node("MatMul", ["x", f"{name}_w"], [f"{name}_y"])],
            name, [], [helper.make_tensor_value_info(f"{name}_y", TensorProto.FLOAT, ["N", 4])])

    zero = numpy_helper.from_array(np.array(0, np.float32), "zero")
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
         helper.make_node("Greater", ["total", "zero"], ["positive"]),
         helper.make_node("If", ["positive"], ["y"], then_branch=branch("up", 0.5),
                          else_branch=branch("down", -0.5))],
        "branches", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], [zero])
    src = save_onnx(graph, tmp_path / "branches.onnx")
    x = np.random.default_rng(8).standard_normal((16, 4)).astype(np.float32)
    out = tmp_path / "branches.int8.onnx"
    with pytest.raises(ConversionError, match="quantized no tensor.*1 If/Loop/Scan"):
        compress(src, out, ConvertContext(
            workdir=tmp_path, stem="branches", precision="int8", quantization=Quantization(),
            calibration=Dataset("calib", {"x": x})))
    assert not out.exists()


def test_layers_of_a_graph_symbolic_shape_inference_gives_up_on_are_ranked(
        tmp_path: Path) -> None:
    """The accuracy fallback's ranking pre-processes the graph as the quantizer did."""
    from edgepack.compress.sensitivity import rank_onnx

    src = _unet(tmp_path / "unet.onnx")
    x = np.random.default_rng(1).standard_normal((32, 1, 16)).astype(np.float32)
    _int8(src, tmp_path / "unet.int8.onnx", {"x": x})
    ranked = rank_onnx(src, src, tmp_path / "unet.int8.onnx", Dataset("calib", {"x": x[:8]}),
                       Quantization())
    assert ranked == ["conv"]


def test_an_rnn_step_builds_with_its_state_and_sample_rate(tmp_path: Path) -> None:
    """silero-vad's inputs, end to end: the state's rows (stored [N, 2, 3]) go to axis 1 as
    the project says, the sample rate is a scalar stored [N]; the hop check, validation and
    latency run, and the delivered copy matches the source."""
    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / "onnx-board.yaml").write_text(TARGET)
    onnx_rnn_step(tmp_path / "rnn.onnx", batch="")  # unnamed dims, as silero-vad's
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "eval.npz", input=rng.standard_normal((40, 6)).astype(np.float32),
             state=rng.standard_normal((40, 2, 3)).astype(np.float32),
             sr=np.full(40, 16000, np.int64), speech=np.ones(40, np.uint8))
    (tmp_path / "edgepack.yaml").write_text(
        "model: rnn.onnx\neval: eval.npz\ntargets_dir: [targets]\nbatch_axis: {state: 1}\n")
    report = edgepack.build(tmp_path, "onnx-board", output=tmp_path / "out", runs=2, warmup=0)
    art = report.deliverables[0]
    assert [f.name for f in art.fidelity] == ["output", "stateN"]
    assert all(f.max_abs_error <= 1e-5 and f.mismatch is None for f in art.fidelity)
    assert art.latency is not None


def test_a_tflite_concat_of_boxes_in_pixels_and_scores_stays_float(tmp_path: Path) -> None:
    """The same head through the TFLite converter: its calibrated ranges show the Concat
    joining 0..320 with 0..1, which stays float; without that the scores get one int8 step
    of 320/255 and every score under 0.6 reads 0 or 1.25."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter
    from edgepack.converters.savedmodel_to_tflite import SavedModelToTFLite

    rng = np.random.default_rng(8)
    wb, ws = (tf.constant(rng.standard_normal((8, n)).astype(np.float32)) for n in (4, 2))

    class Head(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 20, 8], tf.float32, name="x")])
        def __call__(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            boxes = tf.sigmoid(tf.matmul(x, wb)) * 320.0
            return {"output0": tf.concat([boxes, tf.sigmoid(tf.matmul(x, ws))], axis=-1)}

    tf.saved_model.save(Head(), str(tmp_path / "head"))
    x = rng.standard_normal((32, 1, 20, 8)).astype(np.float32)
    ctx = ConvertContext(workdir=tmp_path, stem="head", precision="int8",
                         quantization=Quantization(calibration=Calibration(samples=32)),
                         calibration=Dataset("calibration.npz", {"x": x}),
                         scratch=tmp_path / "scratch")
    interp = Interpreter(model_path=str(SavedModelToTFLite().convert(tmp_path / "head", ctx)))
    runner = interp.get_signature_runner()
    for sample in x[:8]:
        out = runner(x=sample)["output0"]
        boxes, scores = (sample[0] @ w.numpy() for w in (wb, ws))
        want = 1 / (1 + np.exp(-scores))
        assert np.abs(out[0, :, 4:] - want).max() < 0.02  # scores: a few 1/255 steps
        assert np.abs(out[0, :, :4] - 320 / (1 + np.exp(-boxes))).mean() < 320 * 0.01
    assert any("kept in float" in n and "32x" in n for n in ctx.notes), ctx.notes


def test_an_openvino_square_before_its_root_stays_float(tmp_path: Path) -> None:
    """The same magnitude through NNCF: the Power, Add and Sqrt are its ignored scope, the
    convolutions around them int8, and the quiet signals keep their magnitude."""
    import openvino as ov
    from edgepack.compress.openvino import compress

    ov.save_model(ov.convert_model(str(_magnitude(tmp_path / "mag.onnx"))),
                  str(tmp_path / "mag.xml"))
    rng = np.random.default_rng(9)
    loudness = 10 ** rng.uniform(-2, 0, (48, 1, 1))
    x = (rng.standard_normal((48, 4, 30)) * loudness).astype(np.float32)
    ctx = ConvertContext(workdir=tmp_path, stem="mag", precision="int8",
                         quantization=Quantization(calibration=Calibration(samples=32)),
                         calibration=Dataset("calib", {"x": x[:32]}))
    compress(tmp_path / "mag.xml", tmp_path / "mag.int8.xml", ctx)
    core = ov.Core()
    ref, out = (core.compile_model(str(tmp_path / f), "CPU")
                for f in ("mag.xml", "mag.int8.xml"))
    quiet = [i for i in range(32, 48) if loudness[i, 0, 0] < 0.1]
    assert len(quiet) >= 4 and _cosine(np.stack([ref(x[i:i + 1])[0] for i in quiet]),
                                       np.stack([out(x[i:i + 1])[0] for i in quiet])) > 0.99
    assert any("kept in float" in n and "power" in n for n in ctx.notes), ctx.notes
    kinds = [op.get_type_name() for op in core.read_model(str(tmp_path / "mag.int8.xml"))
             .get_ordered_ops()]
    assert "FakeQuantize" in kinds


def test_an_openvino_concat_of_boxes_in_pixels_and_scores_stays_float(tmp_path: Path) -> None:
    """The detector head through NNCF, which gives a Concat's inputs one shared scale: the
    fp32 model's ranges on the calibration samples show 0..320 beside 0..1, so the Concat is
    ignored and the scores keep their own scale."""
    import openvino as ov
    from edgepack.compress.openvino import compress

    ov.save_model(ov.convert_model(str(_detector_head(tmp_path / "head.onnx")),
                                   input=[("x", [1, 8, 20])]), str(tmp_path / "head.xml"))
    x = np.random.default_rng(7).standard_normal((32, 1, 8, 20)).astype(np.float32)
    ctx = ConvertContext(workdir=tmp_path, stem="head", precision="int8",
                         quantization=Quantization(calibration=Calibration(samples=32)),
                         calibration=Dataset("calib", {"x": x[:, 0]}))
    compress(tmp_path / "head.xml", tmp_path / "head.int8.xml", ctx)
    core = ov.Core()
    ref, out = (core.compile_model(str(tmp_path / f), "CPU")
                for f in ("head.xml", "head.int8.xml"))
    for sample in x[:8]:
        want, got = ref(sample)[0], out(sample)[0]
        # scores: the input's rounding noise through the sigmoid, about 3/1000 on average and
        # at most a few 1/255 steps (0.015-0.021 over these 40 scores with NNCF's symmetric or
        # asymmetric activations); one scale shared with the boxes' 0..320 would be 1.25 a step
        assert np.abs(got[:, 4:] - want[:, 4:]).mean() < 0.006
        assert np.abs(got[:, 4:] - want[:, 4:]).max() < 0.03
    assert any("kept in float" in n and "32x" in n for n in ctx.notes), ctx.notes


def test_a_tflite_square_before_its_root_stays_float(tmp_path: Path) -> None:
    """The magnitude through the TFLite converter: sqrt(re^2 + im^2) of two filters of
    signals whose loudness spans two decades keeps the quiet ones (as in ONNX)."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter
    from edgepack.converters.savedmodel_to_tflite import SavedModelToTFLite

    rng = np.random.default_rng(10)
    w = tf.constant(rng.standard_normal((4, 2)).astype(np.float32))

    class Magnitude(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 30, 4], tf.float32, name="x")])
        def __call__(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            parts = tf.matmul(x, w)
            return {"mag": tf.sqrt(tf.square(parts[..., :1]) + tf.square(parts[..., 1:]))}

    tf.saved_model.save(Magnitude(), str(tmp_path / "mag"))
    loudness = 10 ** rng.uniform(-2, 0, (48, 1, 1, 1))
    x = (rng.standard_normal((48, 1, 30, 4)) * loudness).astype(np.float32)
    ctx = ConvertContext(workdir=tmp_path, stem="mag", precision="int8",
                         quantization=Quantization(calibration=Calibration(samples=32)),
                         calibration=Dataset("calibration.npz", {"x": x[:32]}),
                         scratch=tmp_path / "scratch")
    interp = Interpreter(model_path=str(SavedModelToTFLite().convert(tmp_path / "mag", ctx)))
    runner = interp.get_signature_runner()
    quiet = [i for i in range(32, 48) if loudness[i, 0, 0, 0] < 0.1]
    parts = [x[i, 0] @ w.numpy() for i in quiet]
    ref = np.stack([np.sqrt((p ** 2).sum(-1, keepdims=True)) for p in parts])
    out = np.stack([runner(x=x[i])["mag"][0] for i in quiet])
    assert len(quiet) >= 4 and _cosine(ref, out) > 0.99
    assert any("kept in float" in n and "square" in n for n in ctx.notes), ctx.notes


@pytest.mark.parametrize(("method", "sentinel"), [("minmax", -1e9),
                                                   ("percentile", float(np.finfo(np.float32).min))])
def test_a_tflite_attention_mask_sentinel_stays_float(tmp_path: Path, method: str,
                                                      sentinel: float) -> None:
    """An attention mask made finite (-1e9, or float32's lowest as Hugging Face exports write
    it) where the scores are padded: one int8 step of that range is wider than every score, so
    the ops around it stay float in the TFLite converter's int8 as in ONNX Runtime's, the
    scores' own op too (SELECT_V2 takes one scale for its inputs and output), under min/max
    and percentile ranges alike, and attention still attends."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter
    from edgepack.converters.savedmodel_to_tflite import SavedModelToTFLite

    rng = np.random.default_rng(9)
    wq = tf.constant(rng.standard_normal((8, 8)).astype(np.float32))

    class Attention(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 6, 8], tf.float32, name="x"),
                                      tf.TensorSpec([1, 6], tf.float32, name="mask")])
        def __call__(self, x: tf.Tensor, mask: tf.Tensor) -> dict[str, tf.Tensor]:
            scores = tf.matmul(tf.matmul(x, wq), x, transpose_b=True)
            masked = tf.where(mask[:, None, :] > 0.5, scores, sentinel)
            return {"out": tf.matmul(tf.nn.softmax(masked), x)}

    tf.saved_model.save(Attention(), str(tmp_path / "attn"))
    x = rng.standard_normal((32, 1, 6, 8)).astype(np.float32)
    mask = np.ones((32, 1, 6), np.float32)
    mask[:, :, 4:] = 0
    ctx = ConvertContext(workdir=tmp_path, stem="attn", precision="int8",
                         quantization=Quantization(calibration=Calibration(samples=32,
                                                                       method=method)),
                         calibration=Dataset("calibration.npz", {"mask": mask, "x": x}),
                         scratch=tmp_path / "scratch")
    interp = Interpreter(model_path=str(SavedModelToTFLite().convert(tmp_path / "attn", ctx)))
    runner = interp.get_signature_runner()
    ref = tf.saved_model.load(str(tmp_path / "attn"))
    for i in range(8):
        out = runner(x=x[i], mask=mask[i])["out"]
        want = ref(tf.constant(x[i]), tf.constant(mask[i]))["out"].numpy()
        assert _cosine(out, want) > 0.99
    assert any("values beyond" in n for n in ctx.notes), ctx.notes


@pytest.mark.parametrize("quantizer", ["tf.lite.TFLiteConverter", "ai-edge-quantizer"])
def test_a_constant_mask_sentinel_unseen_in_calibration_stays_float(tmp_path: Path,
                                                                    quantizer: str) -> None:
    """The mask as all-MiniLM-L6-v2's converted graph builds it: ``where(mask, 0,
    float32.min)`` added to the scores, calibrated on sequences without padding. The select's
    output never shows the sentinel there, yet the select takes its constant's scale (1.3e36),
    which made LiteRT abort on the int8 file; the constant marks the path, so every op from it
    to the Softmax stays float in both TFLite quantizers, and padded inputs are still masked."""
    import tensorflow as tf
    from edgepack.compress import tflite_quantizer
    from edgepack.converters.savedmodel_to_tflite import SavedModelToTFLite
    from edgepack.runtimes import child_probe, get_runtime

    rng = np.random.default_rng(11)
    wq = tf.constant(rng.standard_normal((8, 8)).astype(np.float32))
    lowest = float(np.finfo(np.float32).min)

    class Attention(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 6, 8], tf.float32, name="x"),
                                      tf.TensorSpec([1, 6], tf.float32, name="mask")])
        def __call__(self, x: tf.Tensor, mask: tf.Tensor) -> dict[str, tf.Tensor]:
            scores = tf.matmul(tf.matmul(x, wq), x, transpose_b=True)
            bias = tf.where(mask[:, None, :] > 0.5, 0.0, lowest)
            return {"out": tf.matmul(tf.nn.softmax(scores + bias), x)}

    tf.saved_model.save(Attention(), str(tmp_path / "attn"))
    x = rng.standard_normal((40, 1, 6, 8)).astype(np.float32)
    mask = np.ones((40, 1, 6), np.float32)
    mask[32:, :, 3:] = 0  # padding only where it is judged, never in calibration
    settings = dict(workdir=tmp_path, stem="attn",
                    quantization=Quantization(calibration=Calibration(samples=32)),
                    calibration=Dataset("calibration.npz", {"x": x[:32], "mask": mask[:32]}),
                    scratch=tmp_path / "scratch")
    fp32 = SavedModelToTFLite().convert(tmp_path / "attn", ConvertContext(**settings))
    ctx = ConvertContext(precision="int8", **settings)
    if quantizer == "ai-edge-quantizer":
        made = tmp_path / "attn.aeq.int8.tflite"
        tflite_quantizer.compress(fp32, made, ctx)
    else:
        made = SavedModelToTFLite().convert(tmp_path / "attn", ctx)
    assert child_probe.killed_by("litert", made) == ""
    session = get_runtime("litert").load(str(made))
    ref = tf.saved_model.load(str(tmp_path / "attn"))
    masked, unmasked = [], []
    for i in range(32, 40):
        out = session.run({"x": x[i], "mask": mask[i]})["out"]
        masked.append(_cosine(out, ref(tf.constant(x[i]), tf.constant(mask[i]))["out"].numpy()))
        unmasked.append(_cosine(out, ref(tf.constant(x[i]), tf.constant(mask[0]))["out"].numpy()))
    assert np.mean(masked) > 0.98 and np.mean(unmasked) < 0.9, (masked, unmasked)
    assert any("values beyond" in n for n in ctx.notes), ctx.notes


def test_an_output_without_a_batch_axis_is_judged_per_sample(tmp_path: Path) -> None:
    """A model exported for one sample that returns its scores squeezed (``y[5]``, no batch
    axis) runs one sample at a time, and each run's output is one sample's: the outputs are
    stacked (8 x 5), in the source and in every format built, and judged per sample. They
    were joined end to end (40 values), and every format failed its check."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    g = numpy_helper.from_array(rng.standard_normal((4, 5)).astype(np.float32), "g")
    axes = numpy_helper.from_array(np.array([0], np.int64), "axes")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("GlobalAveragePool", ["r"], ["p"]),
         helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("Gemm", ["f", "g"], ["s"]),
         helper.make_node("Squeeze", ["s", "axes"], ["y"])], "squeezed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5])], [w, g, axes])
    src = save_onnx(graph, tmp_path / "squeezed.onnx")
    np.savez(tmp_path / "eval.npz", x=rng.standard_normal((8, 3, 8, 8)).astype(np.float32))
    report = edgepack.build(src, "x86-host", evaluation=tmp_path / "eval.npz",
                            output=tmp_path / "out", runs=3)
    assert sorted(a.format for a in report.deliverables) == ["onnx", "openvino", "tflite"]
    for art in report.deliverables:
        (fid,) = art.fidelity
        assert fid.samples == 8 and fid.max_abs_error <= 1e-5, (art.file, fid)
