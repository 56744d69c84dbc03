"""An ONNX If decided by a fixed sample rate (silero-vad's) folded before conversion.

The model (tests/model_files.py ``onnx_vad_if``) steps an LSTM state at 16 kHz; its 8 kHz
branch only type-checks for other input sizes, so once the build fixes ``input`` at 1x8 ONNX
Runtime refuses the whole fixed-shape copy, OpenVINO and onnx2tf build both branches. Folded,
``sr`` (16000 in every row of the data) is frozen and the LSTM branch inlined.

Tolerances: fp32 files reproduce the source to float rounding (1e-5); OpenVINO int8 by cosine
(0.9: a 228-parameter LSTM's int8 on 40 samples, well above what a wrong state axis or a
mis-fed input gives).
"""

from __future__ import annotations

from pathlib import Path

import edgepack
import numpy as np
import pytest
from edgepack.converters.onnx_control_flow import fold_control_flow
from edgepack.data.dataset import Dataset

from tests.model_files import onnx_vad_if

FP32 = 1e-5
SHAPES = {"input": (1, 8), "state": (2, 1, 4)}

TARGET = """
name: {name}-board
title: A board that runs {name} only
device: {{vendor: ACME, cpu: 4x Cortex-A53, cores: 4}}
arch: aarch64
runtimes: [{{name: {runtime}, version: "1"}}]
formats: [{name}]
default_profile: {profile}
limits: {{memory_mb: 1024, storage_mb: 8000, max_model_mb: 100}}
"""


def _data(n: int, rates: list[int] | None = None, seed: int = 0,
          hidden: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"input": rng.standard_normal((n, 8)).astype(np.float32),
            "state": rng.standard_normal((2, n, hidden)).astype(np.float32),
            "sr": np.array(rates or [16000] * n, np.int64)}


def _project(tmp_path: Path, fmt: str, runtime: str, profile: str, hidden: int = 4) -> Path:
    """A project folder: the model (an LSTM of ``hidden`` units), calibration and eval data
    (state batched on axis 1), ``input`` fixed at 1x8, a board that takes ``fmt`` only."""
    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / f"{fmt}-board.yaml").write_text(
        TARGET.format(name=fmt, runtime=runtime, profile=profile))
    onnx_vad_if(tmp_path / "vad.onnx", hidden)
    for name, n in (("calib", 40), ("eval", 24)):  # a data file stacks samples on axis 0
        data = _data(n, seed=n, hidden=hidden)
        np.savez(tmp_path / f"{name}.npz", **{**data, "state": data["state"].transpose(1, 0, 2)})
    (tmp_path / "edgepack.yaml").write_text(
        "model: vad.onnx\ncalibration: calib.npz\neval: eval.npz\ntargets_dir: [targets]\n"
        f"batch_axis: {{state: 1}}\ninput_shape: {{input: [1, 8], state: [2, 1, {hidden}]}}\n")
    return tmp_path


def test_the_sample_rate_is_frozen_and_its_branch_inlined(tmp_path: Path) -> None:
    """The fixed-shape copy ONNX Runtime refuses becomes, folded, a graph without If or
    ``sr`` that it loads and that answers as the source does at 16 kHz."""
    import onnx
    import onnxruntime as ort
    from edgepack.formats.onnx import write_with_shapes

    src = onnx_vad_if(tmp_path / "vad.onnx")
    with pytest.raises(Exception, match="Reshape"):  # what the fold is for
        ort.InferenceSession(str(write_with_shapes(src, tmp_path / "fixed.onnx", SHAPES)))
    data = _data(6)
    folded = fold_control_flow(src, tmp_path / "folded.onnx", SHAPES,
                               [Dataset("calib", data, batch_axes={"state": 1, "sr": None})])
    assert folded is not None and folded.frozen == {"sr": 16000} and folded.inlined == 1
    model = onnx.load(str(tmp_path / "folded.onnx"))
    assert "If" not in {n.op_type for n in model.graph.node}
    assert [i.name for i in model.graph.input] == ["input", "state"]
    source, made = ort.InferenceSession(str(src)), ort.InferenceSession(str(tmp_path /
                                                                          "folded.onnx"))
    for i in range(6):
        feed = {"input": data["input"][i:i + 1], "state": data["state"][:, i:i + 1]}
        want = source.run(None, {**feed, "sr": np.array(16000, np.int64)})
        for a, b in zip(want, made.run(None, feed), strict=True):
            np.testing.assert_allclose(b, a, rtol=0, atol=FP32)


def test_a_sample_rate_that_varies_is_left_an_input(tmp_path: Path) -> None:
    """Data with 8 and 16 kHz rows decides nothing: no file is written."""
    src = onnx_vad_if(tmp_path / "vad.onnx")
    data = Dataset("calib", _data(4, [16000, 8000, 16000, 16000]),
                   batch_axes={"state": 1, "sr": None})
    assert fold_control_flow(src, tmp_path / "folded.onnx", SHAPES, [data]) is None
    assert not (tmp_path / "folded.onnx").exists()


def test_the_build_delivers_the_folded_model_as_onnx(tmp_path: Path) -> None:
    """ONNX fp32 at fixed shapes, which the fixed-shape copy made unloadable: delivered,
    without ``sr``, reproducing the source; the report says what was frozen."""
    report = edgepack.build(_project(tmp_path, "onnx", "onnxruntime", "fp32"), "onnx-board",
                            output=tmp_path / "out", runs=2, warmup=0)
    art = report.deliverables[0]
    assert art.format == "onnx"
    assert [s["name"] for s in art.signature["inputs"]] == ["input", "state"]
    assert all(f.max_abs_error <= FP32 and f.mismatch is None for f in art.fidelity)
    assert any("'sr' = 16000 frozen" in n for n in report.notes)


def test_compare_feeds_a_folded_file_all_but_its_frozen_input(tmp_path: Path) -> None:
    """``edgepack compare`` of the delivered file against the source: the source takes
    ``sr`` (a scalar per sample), the file does not; fed the rest, it matches. On samples
    whose ``sr`` varies it is refused in one line: the file was made with ``sr`` frozen."""
    from edgepack.errors import DataError
    from edgepack.measure.compare import compare_artifacts
    from edgepack.progress import Progress
    from edgepack.runtimes import RuntimeOptions, get_runtime
    from edgepack.validate.outputs import feed_for

    report = edgepack.build(_project(tmp_path, "onnx", "onnxruntime", "fp32"), "onnx-board",
                            output=tmp_path / "out", runs=2, warmup=0)
    delivered = tmp_path / "out" / report.deliverables[0].file
    data = _data(12, seed=3)
    np.savez(tmp_path / "same.npz", **{**data, "state": data["state"].transpose(1, 0, 2)},
             **{"state.batch_axis": np.array(1)})
    comp = compare_artifacts([tmp_path / "vad.onnx", delivered], tmp_path / "vad.onnx",
                             evaluation=tmp_path / "same.npz", runs=1, warmup=0, threads=1,
                             seed=0, progress=Progress())
    assert all(f.max_abs_error <= FP32 for e in comp.entries for f in e.fidelity)
    runtime = get_runtime("onnxruntime")
    source = runtime.load(str(tmp_path / "vad.onnx"), RuntimeOptions()).signature
    session = runtime.load(str(delivered), RuntimeOptions())
    mixed = {**data, "sr": np.array([16000, 8000] * 6, np.int64)}
    with pytest.raises(DataError, match="takes no input 'sr'.*frozen"):
        feed_for(session, mixed, source, [s.layout for s in source.inputs])


@pytest.mark.slow
def test_the_folded_model_reaches_tflite_with_its_state_as_given(tmp_path: Path) -> None:
    """onnx2tf keeps the [2, 1, 4] state input as fed (it would move its last axes) and its
    [1, 2, 4] stateN is read back on the source's batch axis: fp32 TFLite within rounding."""
    report = edgepack.build(_project(tmp_path, "tflite", "litert", "fp32"), "tflite-board",
                            output=tmp_path / "out", runs=2, warmup=0)
    art = report.deliverables[0]
    assert art.format == "tflite"
    assert all(f.max_abs_error <= FP32 and f.mismatch is None for f in art.fidelity)


@pytest.mark.slow
def test_tflite_int8_that_cannot_be_calibrated_ships_as_dynamic_int8(tmp_path: Path) -> None:
    """TensorFlow's calibrator crashes (SIGSEGV) on the folded LSTM and ai-edge-quantizer
    cannot quantize its loop, so no static int8 TFLite can be made (as on silero-vad). The
    profile allows dynamic int8, so the board gets that, with int8 weights (smaller than
    fp32: 128x8 and 128x32 LSTM kernels), close to the source, and the warning says why."""
    report = edgepack.build(_project(tmp_path, "tflite", "litert", "int8-arm", hidden=32),
                            "tflite-board", output=tmp_path / "out", runs=2, warmup=0)
    art = report.deliverables[0]
    assert (art.format, art.precision) == ("tflite", "dynamic-int8")
    assert art.size_bytes < 0.8 * report.reference_for(art).size_bytes
    assert min(f.cosine for f in art.fidelity) >= 0.99
    assert any("dynamic int8 instead of static int8, which could not be made "
               "(every path to tflite (int8) failed: TFLite conversion (int8) failed: "
               "TensorFlow's calibrator crashed" in n for n in art.notes), art.notes
    assert any(w.startswith("tflite: static int8 could not be made, dynamic int8 delivered")
               for w in report.warnings), report.warnings


@pytest.mark.slow
def test_integer_only_hardware_gets_no_dynamic_int8(tmp_path: Path) -> None:
    """An Edge TPU runs integer ops only, so its profile allows no dynamic files: where static
    int8 cannot be made the build fails, saying why, and delivers nothing."""
    from edgepack.errors import ConversionError

    with pytest.raises(ConversionError, match="TensorFlow's calibrator crashed") as caught:
        edgepack.build(_project(tmp_path, "tflite", "litert", "int8-edgetpu", hidden=32),
                       "tflite-board", output=tmp_path / "out", runs=2, warmup=0)
    assert "dynamic int8" not in str(caught.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_folded_model_reaches_openvino_int8(tmp_path: Path) -> None:
    """OpenVINO: the state rows (axis 1) fed one at a time to the static model (as contiguous
    arrays, which its shared-memory tensors need), and NNCF's int8 with the LSTM left float
    (on silero-vad its bias correction could not compile the LSTM quantized)."""
    report = edgepack.build(_project(tmp_path, "openvino", "openvino", "int8-openvino"),
                            "openvino-board", output=tmp_path / "out", runs=2, warmup=0)
    art = report.deliverables[0]
    assert (art.format, art.precision) == ("openvino", "int8")
    assert any("LSTMSequence left float" in n for n in art.notes)
    assert min(f.cosine for f in art.fidelity) >= 0.9


TIGHT = """
name: int8-tight
title: int8 on 16 samples, held to a cosine no int8 file reaches
precision: int8
formats: [onnx]
quantization: {calibration: {method: minmax, samples: 16, seed: 0}}
budget: {min_cosine: 0.9999999}
fallback_max_size_growth: 1.5
"""


@pytest.mark.slow
def test_the_fallback_draws_more_calibration_without_the_frozen_input(tmp_path: Path) -> None:
    """The accuracy fallback's "twice the calibration samples" draws 32 of the 40 rows again
    and feeds them to the folded model as it fed the first 16: without the frozen ``sr``."""
    project = _project(tmp_path, "onnx", "onnxruntime", "int8-tight")
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "int8-tight.yaml").write_text(TIGHT)
    report = edgepack.build(project, "onnx-board", output=tmp_path / "out", runs=2, warmup=0,
                            profiles_dirs=(tmp_path / "profiles",))
    art = report.deliverables[0]
    assert (art.format, art.precision) == ("onnx", "int8") and not report.passed
    assert any(a.change == "twice the calibration samples" for a in art.fallback), art.fallback
