"""`edgepack compare`: a build folder's report, and artifacts measured against their source.

Tolerances: an fp32 TFLite file computes what the Keras source computes up to float rounding
(1e-5 on softmax outputs: reordered sums move results by ~1e-7, and a real error is > 1e-3);
int8 is judged by what survives quantization (top-1 agreement >= 90% and cosine >= 0.98 on the
tiny model, whose int8 build passes the int8-arm budget of 97% / 0.99 on the same data).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from edgepack.cli import cli
from edgepack.errors import DataError, UsageError
from edgepack.formats import inspect
from edgepack.measure.compare import precision_of

from tests import model_files

pytestmark = pytest.mark.slow

FP32_ATOL = 1e-5


def invoke(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def tflites(tiny_savedmodel: Path, tiny_data: dict[str, Path],
            tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("compare")
    calib = np.load(tiny_data["calibration"])["image"]
    return {"fp32": model_files.tflite(tiny_savedmodel, folder / "tiny.fp32.tflite"),
            "int8": model_files.tflite(tiny_savedmodel, folder / "tiny.int8.tflite", calib)}


@pytest.fixture(scope="module")
def measured(tflites: dict[str, Path], tiny_keras: Path, tiny_data: dict[str, Path]) -> dict:
    result = invoke("compare", tflites["int8"], tflites["fp32"], "--source", tiny_keras,
                    "--eval", tiny_data["eval"], "--runs", 10, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


# ------------------------------------------------------------------------------ build folder

def test_build_folder_rows_are_the_reports_numbers(tiny_build: Path) -> None:
    report = json.loads((tiny_build / "report.json").read_text())
    result = invoke("compare", tiny_build, "--json")
    assert result.exit_code == 0, result.output
    c = json.loads(result.output)
    arts = report["artifacts"]
    assert [r["artifact"] for r in c["rows"]] == [a["file"] for a in arts]
    for row, art in zip(c["rows"], arts, strict=True):
        assert row["size"] == art["size_bytes"]
        assert row["max_abs_err"] == art["fidelity"][0]["max_abs_error"]
        assert row["top1_acc"] == art["accuracy"]["top1"]
        assert row["p50_ms"] == art["latency"]["p50_ms"]
        # speed-up against the fp32 artifact of the same runtime, size against the same format
        fast = next(a for a in arts if a["precision"] == "fp32"
                    and a["latency"]["runtime"] == art["latency"]["runtime"])
        big = next(a for a in arts if a["precision"] == "fp32" and a["format"] == art["format"])
        assert row["speedup"] == pytest.approx(fast["latency"]["p50_ms"]
                                               / art["latency"]["p50_ms"], rel=1e-12)
        assert row["smaller"] == pytest.approx(big["size_bytes"] / art["size_bytes"])
        if art["precision"] == "fp32":
            assert row["speedup"] == 1.0 and row["smaller"] == 1.0
    assert c["source_accuracy"]["top1"] == report["source_accuracy"]["top1"]


def test_build_folder_table_markdown_html(tiny_build: Path, tmp_path: Path) -> None:
    md, page = tmp_path / "c.md", tmp_path / "c.html"
    result = invoke("compare", tiny_build, "--markdown", md, "--html", page)
    assert result.exit_code == 0, result.output
    arts = json.loads((tiny_build / "report.json").read_text())["artifacts"]
    for a in arts:
        assert a["file"] in result.output
    text = md.read_text()
    assert "| artifact | format | precision | runtime | size |" in text
    for a in arts:
        assert f"| {a['file']} | {a['format']} | {a['precision']} |" in text
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and 'id="artifacts"' in html
    assert html.count("<svg") == 2


def test_build_folder_refuses_source(tiny_build: Path, tiny_keras: Path) -> None:
    result = invoke("compare", tiny_build, "--source", tiny_keras)
    assert result.exit_code == UsageError.exit_code
    assert "--source and --eval apply to artifacts" in result.output


# ------------------------------------------------------------------------------ artifacts

def test_artifacts_against_source(measured: dict) -> None:
    int8, fp32 = measured["rows"]
    assert (int8["precision"], fp32["precision"]) == ("int8", "fp32")
    assert fp32["max_abs_err"] < FP32_ATOL and fp32["cosine"] == pytest.approx(1, abs=1e-9)
    assert fp32["top1_agree"] == 1.0
    assert int8["top1_agree"] >= 0.90 and int8["cosine"] >= 0.98
    assert int8["max_abs_err"] > FP32_ATOL  # it is quantized: the check can tell them apart
    assert fp32["speedup"] == 1.0 and fp32["smaller"] == 1.0
    assert int8["smaller"] > 1.5  # int8 weights: the tiny model shrinks about 2.5x
    assert measured["eval"]["labelled"] and measured["eval"]["samples"] == 200
    for row, entry in zip(measured["rows"], measured["entries"], strict=True):
        assert entry["latency"]["runs"] == 10 and entry["latency"]["isolated"]
        assert 0 <= row["top1_acc"] <= 1
    src = measured["source_accuracy"]["top1"]
    assert abs(fp32["top1_acc"] - src) < 1e-9  # same predictions, same accuracy


def test_artifacts_without_eval_use_random_inputs(tflites: dict[str, Path],
                                                  tiny_keras: Path) -> None:
    result = invoke("compare", tflites["fp32"], "--source", tiny_keras, "--runs", 3, "--json")
    assert result.exit_code == 0, result.output
    c = json.loads(result.output)
    assert c["eval"]["labelled"] is False and "random" in c["eval"]["source"]
    assert any("no evaluation data" in n for n in c["notes"])
    assert c["rows"][0]["top1_acc"] is None and c["rows"][0]["max_abs_err"] < FP32_ATOL


def test_artifacts_need_a_source(tflites: dict[str, Path]) -> None:
    result = invoke("compare", tflites["fp32"])
    assert result.exit_code == UsageError.exit_code
    assert "--source MODEL" in result.output


def test_artifact_with_other_inputs_is_named(tflites: dict[str, Path], tiny_keras: Path,
                                             tmp_path: Path) -> None:
    other = model_files.onnx_cnn(tmp_path / "nchw.onnx")
    result = invoke("compare", tflites["fp32"], other, "--source", tiny_keras, "--runs", 2)
    assert result.exit_code == DataError.exit_code, result.output
    assert f"{other}: does not take the source model's inputs" in result.output


def test_precision_from_name_or_io(tflites: dict[str, Path], tmp_path: Path) -> None:
    assert precision_of(tflites["int8"], inspect(tflites["int8"])) == "int8"
    assert precision_of(Path("m.dynamic-int8.tflite"), inspect(tflites["fp32"])) == \
        "dynamic-int8"
    renamed = tmp_path / "model.tflite"
    renamed.write_bytes(tflites["int8"].read_bytes())
    assert precision_of(renamed, inspect(renamed)) == "int8"  # int8 I/O
    renamed.write_bytes(tflites["fp32"].read_bytes())
    assert precision_of(renamed, inspect(renamed)) == "?"  # float I/O, no name: unknown


# ------------------------------------------------------- NHWC TFLite next to an NCHW source

@pytest.fixture(scope="module")
def nchw_build(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An NCHW ONNX model x[1,3,8,8] -> Conv -> Relu -> r[1,2,8,8] (a 4-D output) and
    -> GlobalAveragePool -> Flatten -> Gemm -> y[1,5], built for raspberrypi: its TFLite
    files (onnx2tf) take and give NHWC."""
    import edgepack
    import onnx
    from onnx import TensorProto, helper

    folder = tmp_path_factory.mktemp("nchw")
    model = onnx.load(model_files.onnx_cnn(folder / "cnn.onnx", 8, 8))
    model.graph.output.insert(0, helper.make_tensor_value_info("r", TensorProto.FLOAT,
                                                               ["N", 2, 8, 8]))
    onnx.save(model, folder / "cnn.onnx")
    rng = np.random.default_rng(0)
    np.savez(folder / "calib.npz", x=rng.random((16, 3, 8, 8), dtype=np.float32))
    np.savez(folder / "eval.npz", x=rng.random((8, 3, 8, 8), dtype=np.float32))
    report = edgepack.build(folder / "cnn.onnx", "raspberrypi",
                            calibration=folder / "calib.npz", evaluation=folder / "eval.npz",
                            output=folder / "build", runs=2)
    tflite = folder / "build" / "cnn.fp32.tflite"
    assert inspect(tflite).signature.inputs[0].shape[1:] == (8, 8, 3), report.artifacts
    return {"source": folder / "cnn.onnx", "eval": folder / "eval.npz", "tflite": tflite}


@pytest.mark.parametrize("where", ["build folder", "alone"])
def test_nhwc_tflite_is_compared_with_its_nchw_source(nchw_build: dict[str, Path],
                                                      tmp_path: Path, where: str) -> None:
    """Fed NHWC samples and its NHWC output moved back: fp32 agrees with the source to float
    rounding. In its build folder the report's layouts decide; copied out alone, the shapes."""
    tflite = nchw_build["tflite"]
    if where == "alone":
        tflite = tmp_path / tflite.name
        tflite.write_bytes(nchw_build["tflite"].read_bytes())
    result = invoke("compare", tflite, "--source", nchw_build["source"], "--eval",
                    nchw_build["eval"], "--runs", 2, "--json")
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)["rows"][0]
    assert row["max_abs_err"] < 1e-4, row  # both outputs, the 4-D one included


def test_a_layout_the_shapes_cannot_tell_is_refused_in_one_line(tmp_path: Path) -> None:
    """Dynamic H, W and C: NCHW samples fit an NHWC-named input as they are and transposed."""
    from edgepack.measure.compare_layouts import from_shapes
    from edgepack.signature import Signature, TensorSpec

    source = Signature((TensorSpec("x", (-1, 3, 8, 8), "float32", "NCHW"),), ())
    artifact = Signature((TensorSpec("x", (-1, -1, -1, -1), "float32", "NHWC"),), ())
    samples = {"x": np.zeros((2, 3, 8, 8), np.float32)}
    with pytest.raises(DataError, match="cannot tell whether input 'x'") as err:
        from_shapes(tmp_path / "m.tflite", artifact, source, samples)
    assert "\n" not in str(err.value)
    fixed = Signature((TensorSpec("x", (1, 8, 8, 3), "float32", "NHWC"),), ())
    assert from_shapes(tmp_path / "m.tflite", fixed, source, samples).inputs == ["NHWC"]
    same = Signature((TensorSpec("x", (-1, 3, -1, -1), "float32", "NCHW"),), ())
    assert from_shapes(tmp_path / "m.onnx", same, source, samples).inputs == ["NCHW"]
