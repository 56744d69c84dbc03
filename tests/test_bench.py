"""`edgepack bench` and ``edgepack.bench``: every runtime's format, each timed in its own process.

Latency values are machine-dependent, so the checks are on what must hold anywhere: the count
of timed runs, the order of the statistics (min <= p50 <= p90 <= p99 <= max), that the
throughput follows from the mean and the batch, and that the worker is really another process
(its peak memory is far below this process's, which holds TensorFlow).
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from edgepack.cli import cli
from edgepack.errors import DataError, InternalError, ModelError, UsageError
from edgepack.runtimes import RuntimeOptions
from edgepack.validate.latency import LatencyStats, measure_isolated

from tests import model_files


def invoke(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def artifacts(tiny_savedmodel: Path, tiny_data: dict[str, Path],
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bench")
    calib = np.load(tiny_data["calibration"])["image"]
    onnx_path = model_files.onnx_cnn(folder / "tiny.onnx")
    return {
        "fp32": model_files.tflite(tiny_savedmodel, folder / "tiny.fp32.tflite"),
        "int8": model_files.tflite(tiny_savedmodel, folder / "tiny.int8.tflite", calib),
        "onnx": onnx_path,
        "openvino": model_files.openvino_ir(onnx_path, folder / "tiny.xml"),
    }


def _check_stats(s: dict, runs: int, batch: int = 1) -> None:
    assert s["runs"] == runs and len(s["samples_ms"]) == runs
    assert s["batch"] == batch and s["isolated"] is True
    assert 0 < s["min_ms"] <= s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= s["max_ms"]
    assert s["min_ms"] == pytest.approx(min(s["samples_ms"]))
    assert s["throughput_per_s"] == pytest.approx(batch * 1000 / s["mean_ms"], rel=1e-9)
    assert s["load_ms"] > 0 and s["first_inference_ms"] > 0
    assert s["peak_rss_mb"] > 0


def test_every_format_as_json(artifacts: dict[str, Path]) -> None:
    paths = [artifacts[k] for k in ("fp32", "int8", "onnx", "openvino")]
    result = invoke("bench", *paths, "--runs", 12, "--warmup", 2, "--threads", 1, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["artifact"] for r in rows] == [str(p) for p in paths]
    assert [r["format"] for r in rows] == ["tflite", "tflite", "onnx", "openvino"]
    assert [r["latency"]["runtime"] for r in rows] == ["litert", "litert", "onnxruntime",
                                                       "openvino"]
    for r in rows:
        _check_stats(r["latency"], runs=12)
        assert r["latency"]["threads"] == 1 and r["latency"]["warmup"] == 2
        assert r["latency"]["runtime_version"].split()[0] in (
            "ai-edge-litert", "onnxruntime", "openvino")
    ov = rows[3]["latency"]
    # no hint: OpenVINO's own choice, recorded (f32 or bf16 depending on the CPU)
    assert ov["precision_hint"] is None and ov["precision"] in ("f32", "bf16", "f16")
    assert rows[0]["latency"]["precision"] is None  # LiteRT runs the file's own precision


def test_table_output(artifacts: dict[str, Path]) -> None:
    result = invoke("bench", artifacts["int8"], artifacts["openvino"], "--runs", 5)
    assert result.exit_code == 0, result.output
    for text in ("tiny.int8.tflite", "tiny.xml", "p50", "peak RSS MB", "ai-edge-litert",
                 "openvino"):
        assert text in result.output


def test_precision_hint_reaches_openvino(artifacts: dict[str, Path]) -> None:
    result = invoke("bench", artifacts["onnx"], "--runtime", "openvino", "--precision-hint",
                    "f32", "--runs", 5, "--json")
    assert result.exit_code == 0, result.output
    lat = json.loads(result.output)[0]["latency"]
    assert lat["runtime"] == "openvino"
    assert lat["precision_hint"] == "f32" and lat["precision"] == "f32"


def test_duration_times_for_a_duration(artifacts: dict[str, Path]) -> None:
    import edgepack

    (stats,) = edgepack.bench([artifacts["fp32"]], duration_s=0.3, warmup=1)
    # a ~10 us model runs thousands of times in 0.3 s: far more than the default 100 runs
    assert stats.runs > 200 and len(stats.samples_ms) == stats.runs
    # the loop stops at the first run that ends past the deadline: the runs' sum cannot exceed
    # the duration by more than that one run
    assert sum(stats.samples_ms) <= 300 + stats.max_ms
    (counted,) = edgepack.bench([artifacts["fp32"]], runs=7, warmup=0)
    assert counted.runs == 7 and counted.warmup == 0


def test_runs_and_duration_are_exclusive(artifacts: dict[str, Path]) -> None:
    result = invoke("bench", artifacts["fp32"], "--runs", 5, "--duration", 1)
    assert result.exit_code == UsageError.exit_code
    assert "mutually exclusive" in result.output and result.output.count("\n") == 1


def test_worker_is_another_process(artifacts: dict[str, Path]) -> None:
    """In-process, peak RSS could not be below what this process (holding TensorFlow) uses."""
    from edgepack.quiet import import_tensorflow

    import_tensorflow()
    own_rss = _own_rss_mb()
    assert own_rss > 200, "this test needs TensorFlow loaded in the test process"
    stats = measure_isolated("litert", artifacts["fp32"], {"image": np.zeros((1, 8, 8, 1),
                                                                             np.float32)},
                             RuntimeOptions(threads=1), warmup=1, runs=3)
    assert stats.isolated and stats.peak_rss_mb is not None
    assert stats.rss_before_load_mb < stats.peak_rss_mb < own_rss / 2


def test_crashing_worker_is_an_internal_error(artifacts: dict[str, Path], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    crasher = tmp_path / "python"
    crasher.write_text("#!/bin/sh\nkill -SEGV $$\n")
    crasher.chmod(crasher.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(sys, "executable", str(crasher))
    with pytest.raises(InternalError, match=r"latency worker for .*tiny.fp32.tflite was killed "
                                            r"by SIGSEGV"):
        measure_isolated("litert", artifacts["fp32"], {"image": np.zeros((1, 8, 8, 1),
                                                                         np.float32)},
                         RuntimeOptions(), warmup=0, runs=1)


def test_worker_errors_keep_their_class(artifacts: dict[str, Path], tmp_path: Path) -> None:
    """Inputs the model refuses (in the worker) are a DataError here, not an internal error."""
    with pytest.raises(DataError, match="takes shape"):
        measure_isolated("litert", artifacts["fp32"], {"image": np.zeros((1, 5, 5, 1),
                                                                         np.float32)},
                         RuntimeOptions(), warmup=0, runs=1)
    # a file that passes format detection but no runtime can load: ModelError, exit 5
    bad = tmp_path / "bad.tflite"
    data = artifacts["fp32"].read_bytes()
    bad.write_bytes(data[:8] + b"\x00" * (len(data) - 8))
    with pytest.raises(ModelError):
        measure_isolated("litert", bad, {"image": np.zeros((1, 8, 8, 1), np.float32)},
                         RuntimeOptions(), warmup=0, runs=1)


@pytest.mark.parametrize("name, content", [("random.tflite", b"\x00\x01" * 300),
                                           ("missing.onnx", None)])
def test_bad_artifact_is_one_line_exit_5(tmp_path: Path, name: str,
                                         content: bytes | None) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    result = invoke("bench", path)
    assert result.exit_code == ModelError.exit_code, result.output
    assert result.output.count("\n") == 1 and str(path) in result.output
    assert "Traceback" not in result.output


def test_dynamic_batch_takes_batch(artifacts: dict[str, Path]) -> None:
    result = invoke("bench", artifacts["onnx"], "--batch", 3, "--runs", 4, "--json")
    assert result.exit_code == 0, result.output
    _check_stats(json.loads(result.output)[0]["latency"], runs=4, batch=3)


def test_dynamic_height_needs_inputs(tmp_path: Path) -> None:
    free = model_files.onnx_cnn(tmp_path / "free.onnx", height="H", width="W")
    result = invoke("bench", free)
    assert result.exit_code == UsageError.exit_code, result.output
    assert "dynamic dimensions" in result.output and "--inputs" in result.output
    np.savez(tmp_path / "x.npz", x=np.ones((4, 3, 6, 7), np.float32))
    result = invoke("bench", free, "--inputs", tmp_path / "x.npz", "--batch", 2, "--runs", 3,
                    "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["latency"]["batch"] == 2


def test_inputs_in_real_values_for_int8_io(artifacts: dict[str, Path],
                                           tiny_data: dict[str, Path]) -> None:
    """eval.npz holds float images; the int8-I/O model is fed them through the adapter."""
    result = invoke("bench", artifacts["int8"], "--inputs", tiny_data["eval"], "--batch", 4,
                    "--runs", 3, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["latency"]["batch"] == 4


def test_too_few_samples_for_the_batch(artifacts: dict[str, Path], tmp_path: Path) -> None:
    np.savez(tmp_path / "two.npz", image=np.zeros((2, 8, 8, 1), np.float32))
    result = invoke("bench", artifacts["fp32"], "--inputs", tmp_path / "two.npz", "--batch", 5)
    assert result.exit_code == DataError.exit_code, result.output
    assert "holds 2 samples" in result.output


@pytest.mark.parametrize("args, needle", [
    (["--runtime", "nope"], "unknown runtime 'nope'"),
    (["--runtime", "onnxruntime"], "does not run tflite"),
    (["--precision-hint", "f32"], "apply to OpenVINO"),
    (["--device-type", "TPU"], "unknown device type"),
])
def test_usage_errors(artifacts: dict[str, Path], args: list[str], needle: str) -> None:
    result = invoke("bench", artifacts["fp32"], *args)
    assert result.exit_code == UsageError.exit_code, result.output
    assert needle in result.output


def test_api_name_is_the_function() -> None:
    """``edgepack.bench`` stays the function after its module is imported (see benchmark.py)."""
    import edgepack
    import edgepack.measure.host  # noqa: F401

    assert callable(edgepack.bench) and edgepack.bench.__module__ == "edgepack.measure.host"
    assert LatencyStats.__dataclass_fields__["precision"].default is None


def _own_rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")
