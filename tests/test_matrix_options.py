"""Every build option reaches every cell of a project's matrix: the request is made once and
each cell gets it narrowed to its model, target and folder. The cells' cache key covers every
option that changes what a cell holds; a cell with --device is never taken from the cache; a
cell folder that is not an earlier build of that cell is replaced only with --force; the
global --project is built.

One matrix of a tiny Keras model for two tiny TFLite-only targets is built once for the
module with every option that changes the build, and each test reads what its option did."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result
from edgepack.cli import cli

from tests.conftest import REPO

pytestmark = pytest.mark.slow

PROJECT = """
name: tiny
model: tiny.keras
calibration: calib.npz
eval: eval.npz
targets: [tiny-a, tiny-b]
targets_dir: [targets]
profiles_dir: [profiles]
"""
METRIC = "zoometric:true_class_prob"
CELLS = ("tiny-tiny-a", "tiny-tiny-b")


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory, tiny_keras: Path,
        tiny_data: dict[str, Path]) -> Iterator[Path]:
    """The project, a second calibration and eval set, a loose and a strict profile, and a
    user metric importable by name."""
    root = tmp_path_factory.mktemp("zoo")
    shutil.copy(tiny_keras, root / "tiny.keras")
    shutil.copy(tiny_data["calibration"], root / "calib.npz")
    shutil.copy(tiny_data["eval"], root / "eval.npz")
    with np.load(tiny_data["eval"]) as ev:
        np.savez(root / "other_calib.npz", image=ev["image"][100:150])
        np.savez(root / "other_eval.npz", image=ev["image"][:100], y=ev["y"][:100])
    (root / "targets").mkdir()
    pi = (REPO / "targets" / "raspberrypi4.yaml").read_text()
    for name in ("tiny-a", "tiny-b"):
        (root / "targets" / f"{name}.yaml").write_text(
            pi.replace("name: raspberrypi4", f"name: {name}")
            .replace("aliases: [raspberrypi, rpi4]", "aliases: []")
            .replace("formats: [tflite, onnx]", "formats: [tflite]"))
    (root / "profiles").mkdir()
    arm = (REPO / "profiles" / "int8-arm.yaml").read_text()
    budget = arm[arm.index("budget:"):]  # the budget and the fallback's size allowance
    (root / "profiles" / "int8-loose.yaml").write_text(
        arm.replace("name: int8-arm", "name: int8-loose")
        .replace(budget, "budget:\n  max_top1_drop: 1.0"))
    (root / "profiles" / "int8-strict.yaml").write_text(
        arm.replace("name: int8-arm", "name: int8-strict")
        .replace(budget, "budget:\n  min_cosine: 1.0\nfallback_max_size_growth: 1.0"))
    (root / "zoometric.py").write_text(
        "import numpy as np\n"
        "def true_class_prob(outputs, labels):\n"
        "    return float(outputs[np.arange(len(labels)), labels].mean())\n")
    (root / "edgepack.yaml").write_text(PROJECT)
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(root))
        yield root


@pytest.fixture(scope="module")
def every_option(zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The matrix built once through the Python API with every option that changes a build;
    each cell's report by target."""
    import edgepack

    out = tmp_path_factory.mktemp("every-option")
    result = edgepack.build(
        zoo, calibration=zoo / "other_calib.npz", evaluation=zoo / "other_eval.npz",
        metric=METRIC, input_shapes={"image": (1, 8, 8, 1)}, threads=1, runs=2, warmup=1,
        profile="int8-loose", prune=0.5, cache=False, cache_dir=out / "cache",
        output=out / "build")
    assert [c.status for c in result.cells] == ["built", "built"], result.to_list()
    return {"out": out, **{c: json.loads((out / "build" / c / "report.json").read_text())
                           for c in CELLS}}


def _reports(built: dict[str, Any]) -> list[dict[str, Any]]:
    return [built[c] for c in CELLS]


def test_calibration_reaches_every_cell(every_option: dict[str, Any], zoo: Path) -> None:
    for report in _reports(every_option):
        assert report["calibration"]["source"] == str(zoo / "other_calib.npz")
        assert report["calibration"]["samples_available"] == 50


def test_evaluation_reaches_every_cell(every_option: dict[str, Any], zoo: Path) -> None:
    for report in _reports(every_option):
        assert report["eval"]["source"] == str(zoo / "other_eval.npz")
        assert report["eval"]["samples"] == 100


def test_metric_reaches_every_cell(every_option: dict[str, Any]) -> None:
    for report in _reports(every_option):
        assert report["source_accuracy"]["metric"] == METRIC
        assert all(a["accuracy"]["metric"] == METRIC for a in report["artifacts"])


def test_input_shape_reaches_every_cell(every_option: dict[str, Any]) -> None:
    for report in _reports(every_option):
        assert "input shapes fixed to image 1x8x8x1 (given with --input-shape)" in \
            report["notes"]
        deliverable = next(a for a in report["artifacts"] if a["role"] == "deliverable")
        assert deliverable["signature"]["inputs"][0]["shape"] == [1, 8, 8, 1]


def test_threads_runs_and_warmup_reach_every_cell(every_option: dict[str, Any]) -> None:
    for report in _reports(every_option):
        for art in report["artifacts"]:
            latency = art["latency"]
            assert (latency["threads"], latency["runs"], latency["warmup"]) == (1, 2, 1)


def test_profile_reaches_every_cell(every_option: dict[str, Any]) -> None:
    for report in _reports(every_option):
        assert report["profile"]["name"] == "int8-loose"


def test_structural_flags_reach_every_cell(every_option: dict[str, Any]) -> None:
    for report in _reports(every_option):
        assert [s["stage"] for s in report["structural"]] == ["original", "prune"]


def test_no_cache_reaches_every_cell(every_option: dict[str, Any]) -> None:
    for report in _reports(every_option):
        assert report["step_cache"] is None
    cache = every_option["out"] / "cache"
    assert not cache.exists() or not any(cache.rglob("*")), "nothing is stored without cache"


def test_the_cell_key_covers_every_option_that_changes_a_cell(zoo: Path,
                                                              tmp_path: Path) -> None:
    from edgepack.config.project import load_project
    from edgepack.pipeline.cell import cell_key
    from edgepack.pipeline.matrix import cell_request
    from edgepack.request import BuildRequest

    cell = cell_request(BuildRequest.create(zoo), load_project(zoo), "tiny", "tiny-a")
    key = cell_key(cell)
    student = tmp_path / "student.keras"
    shutil.copy(zoo / "tiny.keras", student)
    changes: list[dict[str, Any]] = [
        {"calibration": zoo / "other_calib.npz"}, {"evaluation": zoo / "other_eval.npz"},
        {"input_shapes": {"image": (1, 8, 8, 1)}}, {"metric": METRIC}, {"threads": 1},
        {"runs": 7}, {"warmup": 2}, {"profile": "int8-loose"}, {"prune": 0.5},
        {"structured": True}, {"lowrank": 0.9}, {"distill": True}, {"student": student},
        {"train": zoo / "other_calib.npz"}]
    keys = [cell_key(cell.with_options(**change)) for change in changes]
    assert key not in keys and len(set(keys)) == len(keys)
    for same in ({"force": True}, {"jobs": 3}, {"allow_accuracy_drop": True},
                 {"trust_new_host": True}):
        assert cell_key(cell.with_options(**same)) == key
    # a data file is keyed by its contents, not its name
    moved = tmp_path / "calib.npz"
    shutil.copy(zoo / "other_calib.npz", moved)
    assert cell_key(cell.with_options(calibration=moved)) == keys[0]
    with np.load(moved) as data:
        np.savez(moved, image=data["image"][:40])
    assert cell_key(cell.with_options(calibration=moved)) != keys[0]


def _build(*args: str) -> tuple[Result, dict[str, dict[str, Any]]]:
    """``edgepack ... build ... --json``: the result and its cells by folder name."""
    res = CliRunner().invoke(cli, [*args[:args.index("build") + 1], "--runs", "1",
                                   "--warmup", "0", "--json", *args[args.index("build") + 1:]])
    text = res.output
    cells = json.JSONDecoder().raw_decode(text, text.index("["))[0] if "[" in text else []
    return res, {Path(c["output"]).name: c for c in cells}


def test_allow_accuracy_drop_reaches_the_cells(zoo: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(zoo)
    args = ("build", "-m", "tiny", "-t", "tiny-a", "-p", "int8-strict", "-o", str(tmp_path))
    allowed, cells = _build(*args, "--allow-accuracy-drop")
    assert allowed.exit_code == 0, allowed.output
    assert cells["tiny-tiny-a"]["status"] == "over budget"
    assert "accepted with --allow-accuracy-drop" in allowed.output
    refused, cells = _build(*args)  # the same cell again (from the cache): not allowed now
    assert refused.exit_code == 3 and cells["tiny-tiny-a"]["status"] == "over budget"


@pytest.fixture(scope="module")
def by_project(zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The project built from another folder with the global --project, into a folder whose
    tiny-a cell already holds something else."""
    where = tmp_path_factory.mktemp("elsewhere")
    out = where / "out"
    (out / "tiny-tiny-a").mkdir(parents=True)
    (out / "tiny-tiny-a" / "notes.txt").write_text("not a build")
    args = ("--project", str(zoo / "edgepack.yaml"), "build", "-p", "int8-loose", "-o",
            str(out))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(where)
        mp.setenv("EDGEPACK_CACHE", str(where / "cache"))
        res, cells = _build(*args)
        yield {"out": out, "args": args, "result": res, "cells": cells, "where": where}


@pytest.fixture
def elsewhere(by_project: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.chdir(by_project["where"])
    monkeypatch.setenv("EDGEPACK_CACHE", str(by_project["where"] / "cache"))
    return by_project


def test_the_global_project_is_built(elsewhere: dict[str, Any]) -> None:
    cells = elsewhere["cells"]
    assert cells["tiny-tiny-b"]["status"] == "built"
    report = json.loads((elsewhere["out"] / "tiny-tiny-b" / "report.json").read_text())
    assert report["model"]["name"] == "tiny" and report["target"]["name"] == "tiny-b"


def test_force_in_matrix_mode(elsewhere: dict[str, Any]) -> None:
    out, args = elsewhere["out"], elsewhere["args"]
    refused = elsewhere["cells"]["tiny-tiny-a"]
    assert elsewhere["result"].exit_code == 7, elsewhere["result"].output
    assert refused["status"] == "failed" and "not an earlier build of this cell" in \
        refused["error"] and "--force" in refused["error"]
    assert (out / "tiny-tiny-a" / "notes.txt").is_file()
    forced, cells = _build(*args, "--force")
    assert forced.exit_code == 0, forced.output
    assert cells["tiny-tiny-a"]["status"] == "built"
    assert cells["tiny-tiny-b"]["status"] == "up-to-date"
    assert not (out / "tiny-tiny-a" / "notes.txt").exists()
    again, cells = _build(*args)  # an earlier build of the same cell needs no --force
    assert again.exit_code == 0 and {c["status"] for c in cells.values()} == {"up-to-date"}


def test_a_device_cell_is_never_taken_from_the_cache(elsewhere: dict[str, Any]) -> None:
    res, cells = _build(*elsewhere["args"], "--force", "--device", "nosuch-board")
    assert res.exit_code == 2, res.output
    for cell in cells.values():
        assert cell["status"] == "failed" and "unknown device 'nosuch-board'" in cell["error"]
    assert cells["tiny-tiny-b"]["exit_code"] == 2  # it was up to date without --device
