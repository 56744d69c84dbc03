"""scripts/bench/zoo.py, run for real on a tiny zoo: a dynamic-shape ONNX CNN with its data and
meta.json, and a model file that is not a model. Every cell yields a row (the broken one with
its exit code and reason), the dynamic input is fixed from meta.json, wall time and peak memory
are real, and ``--anchors`` puts ONNX Runtime's and NNCF's defaults next to edgepack's int8."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import model_files

REPO = Path(__file__).resolve().parents[1]


def zoo_folder(zoo: Path, name: str, model: str, rows: dict[str, int]) -> Path:
    folder = zoo / name
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in rows.items():
        np.savez(folder / f"{split}.npz", x=rng.random((n, 3, 8, 8), dtype=np.float32))
    meta = {"name": name, "model": model, "format": "onnx",
            "inputs": [{"name": "x", "dtype": "float32", "shape": ["N", 3, "H", "W"],
                        "batch_axis": 0, "data_shape": [3, 8, 8]}]}
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


@pytest.fixture(scope="module")
def zoo_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("zoo")
    model_files.onnx_cnn(zoo_folder(tmp / "zoo", "tiny-cnn", "tiny-cnn.onnx",
                                    {"calib": 32, "eval": 16}) / "tiny-cnn.onnx",
                         height="H", width="W", output="logits")
    broken = zoo_folder(tmp / "zoo", "broken", "broken.onnx", {"calib": 4, "eval": 4})
    (broken / "broken.onnx").write_bytes(b"not a model")
    env = {**os.environ, "PYTHONPATH": str(REPO / "toolchain"),
           "EDGEPACK_CACHE": str(tmp / "cache")}
    out = tmp / "zoo.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench" / "zoo.py"), "--zoo", str(tmp / "zoo"),
         "--targets", "intel-cpu", "--out", str(tmp / "builds"), "--json", str(out),
         "--runs", "3", "--warmup", "1", "--anchors", "--jobs", "2"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"json": json.loads(out.read_text()), "stdout": proc.stdout}


def test_every_cell_is_a_row_with_real_time_and_memory(zoo_run: dict) -> None:
    cells = {c["model"]: c for c in zoo_run["json"]["cells"]}
    assert set(cells) == {"tiny-cnn", "broken"}
    tiny = cells["tiny-cnn"]
    assert tiny["target"] == "intel-cpu" and tiny["status"] in ("passed", "failed")
    assert tiny["exit_code"] == (0 if tiny["status"] == "passed" else 3)
    # intel-cpu's formats, each delivered
    assert {(d["format"], d["precision"]) for d in tiny["delivered"]} == {
        ("openvino", "int8"), ("onnx", "int8")}
    assert tiny["not_delivered"] == []
    for d in tiny["delivered"]:
        assert 0 < d["size_ratio"] and d["p50_ms"] > 0 and d["speedup"] > 0
        assert d["fidelity"] and d["fidelity"][0]["output"] == "logits"
        assert d["fidelity"][0]["value"] is not None
    assert tiny["wall_s"] > 0 and tiny["peak_rss_mb"] > 50
    assert "x:1x3x8x8" in tiny["command"]  # the dynamic H, W fixed from meta.json
    bad = cells["broken"]
    assert bad["exit_code"] not in (0, 3) and bad["delivered"] == [] and bad["error"]
    assert bad["wall_s"] > 0


def test_the_table_shows_each_cell(zoo_run: dict) -> None:
    lines = zoo_run["stdout"].splitlines()
    assert lines[0].split()[:3] == ["model", "target", "exit"]
    assert any(ln.startswith("tiny-cnn") and "openvino int8" in ln for ln in lines)
    assert any(ln.startswith("broken") and "error:" in ln for ln in lines)
    assert any(ln.startswith("tiny-cnn") and "NNCF defaults" in ln and "top-1" in ln
               for ln in lines)


def test_anchors_stand_beside_edgepacks_int8(zoo_run: dict) -> None:
    by_model = {a["model"]: a for a in zoo_run["json"]["anchors"]}
    assert by_model["broken"]["error"] and not by_model["broken"]["rows"]
    anchors = by_model["tiny-cnn"]
    rows = {r["name"]: r for r in anchors["rows"]}
    assert not [r for r in anchors["rows"] if "error" in r]
    ort, nncf = rows["ORT quantize_static defaults"], rows["NNCF defaults"]
    assert ort["format"] == "onnx" and nncf["format"] == "openvino"
    for row in (ort, nncf):
        assert row["precision"] == "int8" and row["speedup"] > 0
        (out,) = row["outputs"]
        assert out["role"] == "classifier" and 0 <= out["top1_agreement"] <= 1
        lo, hi = out["top1_interval"]
        assert lo <= out["top1_agreement"] <= hi
    ours = [r for r in anchors["rows"] if r["name"] == "edgepack intel-cpu"]
    assert all(r["speedup_kept"] == pytest.approx(r["speedup"] / rows[PLAIN[r["format"]]][
        "speedup"], abs=1e-3) for r in ours)
    assert {r["format"] for r in anchors["rows"] if r["name"] == "edgepack intel-cpu"} == {
        d["format"] for d in cells_of(zoo_run, "tiny-cnn")["delivered"]}


PLAIN = {"onnx": "ORT quantize_static defaults", "openvino": "NNCF defaults"}


def cells_of(zoo_run: dict, model: str) -> dict:
    return next(c for c in zoo_run["json"]["cells"] if c["model"] == model)


def test_a_detector_line_shows_what_an_app_sees() -> None:
    """An anchor's line carries the role's readings (detections kept, extra), which its
    cosine hides: ONNX Runtime's defaults on nudenet read cosine 0.9989 and keep 3% of
    the detections."""
    sys.path.insert(0, str(REPO / "scripts" / "bench"))
    try:
        import zoo
    finally:
        sys.path.remove(str(REPO / "scripts" / "bench"))
    line = zoo.reading({"output": "output0", "role": "detector", "cosine": 0.9989,
                        "snr_db": 26.4, "readings": {"detections_kept": 0.034,
                                                     "extra_detections": 0.0}})
    assert line.endswith("cosine 0.9989 SNR 26.4 dB, detections_kept 0.034, "
                         "extra_detections 0.000")


def test_the_size_column_lines_up_for_every_precision(capsys: pytest.CaptureFixture) -> None:
    """"openvino dynamic-int8", the longest format and precision, does not push the numbers
    out from under their headings."""
    sys.path.insert(0, str(REPO / "scripts" / "bench"))
    try:
        import zoo
    finally:
        sys.path.remove(str(REPO / "scripts" / "bench"))
    rows = [zoo.CellRow("m", "intel-cpu", 0, 1.0, 100.0, delivered=[
        zoo.Delivered(fmt, precision, "f", 0.256, 1.5, 2.0, 1.33, True)
        for fmt, precision in (("openvino", "dynamic-int8"), ("onnx", "int8"))])]
    zoo.print_table(rows)
    header, *lines = capsys.readouterr().out.splitlines()
    end = header.index("size") + len("size")
    assert all(line[end - 5:end] == "0.256" for line in lines), lines


def test_a_limit_from_the_floor_is_printed_short(capsys: pytest.CaptureFixture) -> None:
    """A limit stated against the input-rounding floor is a computed number: the table prints
    it to four digits (pose landmark's read 'vs 0.9889352178967318')."""
    sys.path.insert(0, str(REPO / "scripts" / "bench"))
    try:
        import zoo
    finally:
        sys.path.remove(str(REPO / "scripts" / "bench"))
    fidelity = [{"output": "Identity", "measure": "cosine", "value": 0.9556,
                 "limit": 0.9889352178967318, "passed": False},
                {"output": "Identity_1", "measure": "cosine", "value": 0.9952, "limit": 0.99,
                 "passed": True}]
    rows = [zoo.CellRow("m", "raspberrypi", 3, 1.0, 100.0, delivered=[
        zoo.Delivered("tflite", "int8", "f", 0.658, 8.4, 9.3, 1.11, False, fidelity)])]
    zoo.print_table(rows)
    line = capsys.readouterr().out.splitlines()[1]
    assert line.endswith("Identity cosine 0.9556 vs 0.9889 FAIL; "
                         "Identity_1 cosine 0.9952 vs 0.99"), line
