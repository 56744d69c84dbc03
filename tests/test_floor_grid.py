"""Each int8 file's input-rounding floor is measured on the grid the file itself applies to its
float inputs, read from it (formats/input_grid.py, onnx_grid, tflite_grid, openvino_grid;
validate/floor.py): a file that quantizes a clipped input on a narrow grid is held to the
floor of that grid, not to the calibration range's, and a file that rounds no input has no
floor. Tiny real models, quantized by ONNX Runtime, the TFLite converter and NNCF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from edgepack.config.catalog import load_catalog
from edgepack.formats import onnx_grid, openvino_grid, tflite_grid
from edgepack.formats.input_grid import InputGrid
from edgepack.validate import budget
from edgepack.validate.fidelity import compare_all
from edgepack.validate.floor import InputFloors

from tests import model_files


def _clip_matmul(path: Path) -> Path:
    """x[N,8] -> Clip(-2, 2) -> MatMul -> logits[N,5]."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(3).standard_normal((8, 5)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Clip", ["x", "lo", "hi"], ["xc"], name="clip"),
         helper.make_node("MatMul", ["xc", "w"], ["logits"], name="matmul")], "clip",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.float32(-2), "lo"),
         numpy_helper.from_array(np.float32(2), "hi")])
    return model_files.save_onnx(graph, path)


def _project(tmp_path: Path, profile: str = "int8-arm", fmt: str = "onnx") -> Path:
    """The Clip -> MatMul model with calibration data whose first feature has outliers (the
    raw input's range is 60 wide, the Clip's output 4) and 300 eval samples."""
    proj = tmp_path / "proj"
    (proj / "targets").mkdir(parents=True)
    _clip_matmul(proj / "m.onnx")
    rng = np.random.default_rng(3)
    calib = rng.standard_normal((64, 8)).astype(np.float32)
    calib[:4, 0] = [60, -60, 60, -60]
    np.savez(proj / "calib.npz", x=calib)
    np.savez(proj / "eval.npz", x=rng.standard_normal((300, 8)).astype(np.float32))
    target = model_files.onnx_host_target(proj / "targets")
    target.write_text(target.read_text().replace("formats: [onnx]", f"formats: [{fmt}]")
                      .replace("default_profile: int8-arm", f"default_profile: {profile}"))
    (proj / "edgepack.yaml").write_text(
        "model: m.onnx\ncalibration: calib.npz\neval: eval.npz\ntargets_dir: [targets]\n")
    return proj


def _floors(proj: Path) -> tuple[InputFloors, np.ndarray, list[np.ndarray]]:
    """The floors of the fp32 model (in ONNX Runtime) on the project's eval inputs."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(proj / "m.onnx"), providers=["CPUExecutionProvider"])
    x = np.load(proj / "eval.npz")["x"]
    refs = session.run(None, {"x": x})
    return InputFloors(lambda feed: session.run(None, feed), {"x": x}, refs, ["logits"],
                       ["classifier"]), x, refs


def _coarser_weights(src: Path, out: Path, k: int) -> Path:
    """The int8 file with its MatMul weights rounded to every ``k``-th int8 value: the same
    input grid, a worse network."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    (w,) = [t for t in model.graph.initializer if t.name == "w_quantized"]
    q = numpy_helper.to_array(w).astype(np.int32)
    w.CopyFrom(numpy_helper.from_array(
        (np.round(q / k) * k).clip(-127, 127).astype(np.int8), w.name))
    onnx.save(model, str(out))
    return out


def _agreement(path: Path, x: np.ndarray, refs: list[np.ndarray]) -> list:
    from edgepack.runtimes import get_runtime
    from edgepack.validate.outputs import exact_options

    session = get_runtime("onnxruntime").load(path, exact_options("onnxruntime"))
    return compare_all(["logits"], refs, list(session.run({"x": x}).values()), ["classifier"])


def _check(verdict: budget.BudgetVerdict, name: str) -> budget.BudgetCheck:
    return next(c for c in verdict.checks if c.name == name)


@pytest.mark.slow
def test_a_clipped_input_is_held_to_the_floor_of_the_grid_the_file_applies(
        tmp_path: Path) -> None:
    """ONNX Runtime quantizes the Clip's output over [-2, 2], not the raw input over the
    calibration data's 120-wide range: the file's floor is read from its QuantizeLinear (the
    grid equals that op's scale and zero point, after the Clip), the report says so, and the
    bar is the profile's 0.97, not the calibration range's floor less the margin. A file
    with the same grid and coarser weights, which that lower bar would pass, fails."""
    import edgepack
    import onnx
    from onnx import numpy_helper

    proj = _project(tmp_path)
    report = edgepack.build(proj, "onnx-host", output=tmp_path / "out", runs=3)
    (art,) = report.deliverables
    file = tmp_path / "out" / art.file
    old_floor = report.input_floor.fidelity[0].top1_agreement
    assert old_floor < 0.96  # the calibration range's floor: far under the file's

    consts = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(file)).graph.initializer}
    (quantize,) = [n for n in onnx.load(str(file)).graph.node
                   if n.op_type == "QuantizeLinear" and n.input[0] == "xc"]
    grid = onnx_grid.read(file).grids["x"]
    assert (grid.scale, grid.zero_point) == (float(consts[quantize.input[1]]),
                                             float(consts[quantize.input[2]]))
    assert (grid.qmin, grid.qmax, grid.clip_low, grid.clip_high) == (-128, 127, -2.0, 2.0)
    assert grid.read_from == f"QuantizeLinear `{quantize.name}`"
    md = (tmp_path / "out" / "report.md").read_text()
    assert "input-rounding floor on this file's own grid" in md
    assert "after clipping to [-2, 2] from QuantizeLinear" in md

    check = _check(art.budget, "top1_agreement")
    assert art.budget.passed and check.limit == 0.97 and check.value > 0.99
    assert check.basis.startswith("from the profile; floor ")

    floors, x, refs = _floors(proj)
    own = floors.of_file("onnx", file)
    assert own.floor is not None and own.floor.fidelity[0].top1_agreement > 0.99
    arm = load_catalog().profiles.get("int8-arm").budget
    old_bar = old_floor - 0.02
    for k in (12, 16, 24, 32, 48):  # the first weight coarsening that lands between the bars
        worse = _coarser_weights(file, tmp_path / f"worse{k}.onnx", k)
        fidelity = _agreement(worse, x, refs)
        if old_bar <= fidelity[0].top1_agreement < 0.97:
            break
    else:
        pytest.fail("no coarsening landed between the calibration floor's bar and 0.97")
    assert floors.of_file("onnx", worse).floor is own.floor  # one grid, measured once
    with_old = budget.evaluate("int8-arm", arm, fidelity, None, None, report.input_floor)
    assert with_old.passed  # what the calibration range's floor would have let through
    v = budget.evaluate("int8-arm", arm, fidelity, None, None, own.floor)
    assert not v.passed and _check(v, "top1_agreement").limit == 0.97


def test_rounding_on_the_read_grid_is_what_the_file_computes(tmp_path: Path) -> None:
    """Clip -> QuantizeLinear -> DequantizeLinear as ONNX Runtime runs it gives exactly the
    values the grid read from it rounds the raw input to; Relu then Min (tf2onnx's clip) read
    as one clip to [0, 0.5], through a Reshape."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    consts = [numpy_helper.from_array(np.array(v, dtype), n) for n, v, dtype in (
        ("lo", -2, np.float32), ("hi", 2, np.float32), ("s", 0.0157, np.float32),
        ("z", 3, np.int8), ("half", 0.5, np.float32), ("shape", [-1, 4], np.int64),
        ("s2", 0.5 / 255, np.float32), ("z2", 0, np.uint8))]
    nodes = [helper.make_node("Clip", ["x", "lo", "hi"], ["c"]),
             helper.make_node("QuantizeLinear", ["c", "s", "z"], ["q"], name="q1"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"]),
             helper.make_node("Relu", ["x2"], ["r"]), helper.make_node("Min", ["r", "half"], ["m"]),
             helper.make_node("Reshape", ["m", "shape"], ["rs"]),
             helper.make_node("QuantizeLinear", ["rs", "s2", "z2"], ["q2"], name="q2"),
             helper.make_node("DequantizeLinear", ["q2", "s2", "z2"], ["y2"])]
    graph = helper.make_graph(
        nodes, "qdq", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 8])
                       for n in ("x", "x2")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 8]),
         helper.make_tensor_value_info("y2", TensorProto.FLOAT, [None, 4])], consts)
    path = model_files.save_onnx(graph, tmp_path / "qdq.onnx", opset=13)
    reading = onnx_grid.read(path)
    grid, relu_min = reading.grids["x"], reading.grids["x2"]
    assert reading.inputs == ["x", "x2"] and not reading.missing
    assert (relu_min.clip_low, relu_min.clip_high, relu_min.qmin, relu_min.qmax) == (
        0.0, 0.5, 0, 255) and relu_min.exact
    assert not grid.exact  # [-128 - 3, 127 - 3] * 0.0157 reaches past -2
    x = np.random.default_rng(0).uniform(-3, 3, (256, 8)).astype(np.float32)
    y, y2 = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": x, "x2": x})
    np.testing.assert_allclose(grid.round(x), y, atol=1e-6)
    np.testing.assert_allclose(relu_min.round(x).reshape(-1, 4), y2, atol=1e-6)


def test_a_file_that_rounds_no_input_has_no_floor(tmp_path: Path) -> None:
    """An input read in float before any grid (the fp32 file here, as a first layer the
    fallback keeps in float) is fed unrounded: with no input rounded there is no floor, the
    note says why, and the profile's bounds hold."""
    proj = _project(tmp_path)
    floors, x, refs = _floors(proj)
    own = floors.of_file("onnx", proj / "m.onnx")
    assert own.floor is None
    assert own.note == ("no input-rounding floor: the file rounds no input; `x` reaches MatMul "
                        "`matmul` before any int8 grid (fed unrounded); the profile's bounds "
                        "hold")
    assert floors.of_file("keras", proj / "m.onnx").note.startswith(
        "no input-rounding floor: edgepack does not read the input grid of keras files")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not onnx")
    assert "could not be read" in floors.of_file("onnx", broken).note


@pytest.fixture(scope="module")
def tflite_files(tiny_savedmodel: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny Keras CNN as full-integer TFLite with float I/O and with int8 I/O."""
    from edgepack.quiet import captured, import_tensorflow

    tf = import_tensorflow()
    folder = tmp_path_factory.mktemp("tflite")
    samples = np.random.default_rng(0).random((32, 8, 8, 1)).astype(np.float32)
    with captured():
        conv = tf.lite.TFLiteConverter.from_saved_model(str(tiny_savedmodel))
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([s[None]] for s in samples)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        (folder / "float_io.tflite").write_bytes(conv.convert())
    return {"float_io": folder / "float_io.tflite",
            "int8_io": model_files.tflite(tiny_savedmodel, folder / "int8_io.tflite", samples),
            "fp32": model_files.tflite(tiny_savedmodel, folder / "fp32.tflite")}


def _interpreter(path: Path):  # noqa: ANN202 - LiteRT's Interpreter
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    return interp


def test_a_tflite_files_grid_is_its_quantize_ops(tflite_files: dict) -> None:
    """Float I/O: the grid read from the file is what LiteRT says the output of the QUANTIZE
    op on the input has; int8 I/O: what it says the input tensor has; fp32: none."""
    interp = _interpreter(tflite_files["float_io"])
    (quantize,) = [op for op in interp._get_ops_details() if op["op_name"] == "QUANTIZE"]
    (detail,) = [t for t in interp.get_tensor_details() if t["index"] == quantize["outputs"][0]]
    reading = tflite_grid.read(tflite_files["float_io"])
    (name,) = reading.inputs
    grid = reading.grids[name]
    assert (grid.scale, grid.zero_point, grid.qmin, grid.qmax) == (
        pytest.approx(detail["quantization"][0], rel=1e-7), detail["quantization"][1], -128, 127)
    assert grid.read_from.startswith("QUANTIZE `") and grid.clip_low is None and grid.exact
    own = _interpreter(tflite_files["int8_io"]).get_input_details()[0]["quantization"]
    io = tflite_grid.read(tflite_files["int8_io"]).grids[name]
    assert (io.scale, io.zero_point) == (pytest.approx(own[0], rel=1e-7), own[1])
    assert io.read_from == "the int8 input's own quantization"
    fp32 = tflite_grid.read(tflite_files["fp32"])
    assert not fp32.grids and fp32.missing[name].startswith(f"`{name}` reaches CONV_2D")


@pytest.mark.slow
def test_an_openvino_ir_grid_is_its_input_fake_quantize(tmp_path: Path) -> None:
    """NNCF quantizes the Clip's output: the IR's grid is its FakeQuantize's bounds and levels
    after the Clamp, the report says so, and the floor is measured there."""
    import edgepack

    proj = _project(tmp_path, "int8-openvino", "openvino")
    report = edgepack.build(proj, "onnx-host", output=tmp_path / "out", runs=3)
    (art,) = report.deliverables
    grid: InputGrid = openvino_grid.read(tmp_path / "out" / art.file).grids["x"]
    assert grid.read_from.startswith("FakeQuantize `")
    assert (grid.clip_low, grid.clip_high, grid.qmin, grid.qmax) == (-2.0, 2.0, 0, 255)
    assert -2 - grid.scale <= grid.span[0] and grid.span[1] <= 2 + grid.scale  # NNCF: 4 wide
    assert any(n.startswith("input-rounding floor on this file's own grid") for n in art.notes)
    assert _check(art.budget, "top1_agreement").limit == 0.97


def test_rounding_a_large_eval_set_holds_a_few_samples_in_float64_at_a_time() -> None:
    """The floor rounds every eval input in float64: all at once, nudenet's 160 images (197 MB)
    took 1.6 GB of temporaries and a build's peak memory past 4 GB. Rounded a few samples at a
    time, the result is the same and the temporaries stay near one chunk's."""
    import tracemalloc

    from edgepack.formats import input_grid

    grid = InputGrid("x", scale=0.0123, zero_point=-7.0, qmin=-128, qmax=127, clip_low=-1.0)
    x = np.random.default_rng(0).normal(0, 1.5, (120, 3, 160, 160)).astype(np.float32)  # 37 MB
    v = np.clip(x.astype(np.float64), -1.0, None)
    one_go = ((np.clip(np.round(v / 0.0123 - 7.0), -128, 127) + 7.0) * 0.0123).astype(np.float32)
    tracemalloc.start()
    chunked = input_grid.InputGrid.round(grid, x)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    np.testing.assert_array_equal(chunked, one_go)
    assert chunked.dtype == np.float32 and chunked.shape == x.shape
    assert x.size > input_grid.ROUND_CHUNK
    # the float32 result plus one chunk's float64 temporaries, not several float64 copies
    assert peak < x.nbytes + 4 * input_grid.ROUND_CHUNK * 8, peak
    assert grid.round(np.float32(0.5)).shape == ()
