"""The step cache: each conversion hop and validation of ``edgepack build`` is reused when its
input, settings and tools did not change, rebuilt when they did, and never used corrupted.

The builds are of the tiny Keras CNN for a one-format Pi (int8 TFLite and its fp32 reference):
loading the model and its outputs on the eval inputs, three hops (keras -> savedmodel,
savedmodel -> tflite fp32 and int8), the accuracy budget's judgment of the int8 file, and two
validations.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from edgepack.api import build
from edgepack.cache.store import ENTRY, StepCache, cache_info
from edgepack.cli import cli
from edgepack.progress import Progress
from edgepack.report.model import Report

from tests.conftest import REPO

pytestmark = pytest.mark.slow

STEPS = 10  # load, source outputs (as given, and rounded to int8 input steps: the input-rounding
#            floor), three hops, the speed step's timing of plain int8 against fp32, the int8
#            file's judgment, two validations


class Recorder(Progress):
    """Keeps the progress lines a build shows."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    @contextlib.contextmanager
    def step(self, text: str) -> Iterator[None]:
        self.lines.append(text)
        yield


@dataclass
class Cold:
    out: Path
    cache: Path
    report: Report
    targets: Path


@pytest.fixture(scope="module")
def targets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Pi that takes TFLite only: the smallest build with an fp32 and an int8 hop."""
    folder = tmp_path_factory.mktemp("targets")
    text = (REPO / "targets" / "raspberrypi4.yaml").read_text()
    text = text.replace("name: raspberrypi4", "name: tiny-pi").replace(
        "aliases: [raspberrypi, rpi4]", "aliases: []").replace(
        "formats: [tflite, onnx]", "formats: [tflite]")
    (folder / "tiny-pi.yaml").write_text(text)
    return folder


def tiny_build(model: Path, data: dict[str, Path], targets: Path, out: Path,
               **options: object) -> Report:
    return build(model, "tiny-pi", calibration=data["calibration"], evaluation=data["eval"],
                 output=out, runs=3, warmup=1, targets_dirs=(targets,), **options)


@pytest.fixture(scope="module")
def cold(tiny_keras: Path, tiny_data: dict[str, Path], targets_dir: Path,
         tmp_path_factory: pytest.TempPathFactory) -> Cold:
    """One build into an empty cache; each test starts from a copy of that cache."""
    root = tmp_path_factory.mktemp("cold")
    report = tiny_build(tiny_keras, tiny_data, targets_dir, root / "out",
                        cache_dir=root / "cache")
    return Cold(root / "out", root / "cache", report, targets_dir)


@pytest.fixture
def cache(cold: Cold, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    copy = tmp_path / "cache"
    shutil.copytree(cold.cache, copy)
    monkeypatch.setenv("EDGEPACK_CACHE", str(copy))
    return copy


def entries(cache: Path) -> dict[str, dict]:
    """Each step entry's content by key."""
    return {p.name: json.loads((p / ENTRY).read_text())
            for p in sorted((cache / "steps").iterdir()) if (p / ENTRY).is_file()}


def by_precision(report: Report) -> dict[str, object]:
    return {a.precision: a for a in report.artifacts}


def test_cold_build_runs_every_step(cold: Cold) -> None:
    assert cold.report.passed and cold.report.step_cache == {"reused": 0, "built": STEPS}
    assert [a.conversion_path for a in cold.report.artifacts] == \
        ["keras -> savedmodel -> tflite"] * 2
    for art in cold.report.artifacts:
        assert not any(h.cached for h in art.path) and not art.latency.cached
    assert len(entries(cold.cache)) == STEPS


def test_unchanged_rebuild_reuses_every_step(cold: Cold, cache: Path, tiny_keras: Path,
                                             tiny_data: dict[str, Path], tmp_path: Path) -> None:
    seen = Recorder()
    warm = tiny_build(tiny_keras, tiny_data, cold.targets, tmp_path / "again", progress=seen)
    assert warm.passed and warm.step_cache == {"reused": STEPS, "built": 0}
    assert "Converting keras -> savedmodel (cached)" in seen.lines
    assert "Loading keras model (cached)" in seen.lines
    assert "Loading the source model" not in seen.lines  # the model itself is never opened
    assert "Converting savedmodel -> tflite (int8) (cached)" in seen.lines
    for art, before in zip(warm.artifacts, cold.report.artifacts, strict=True):
        assert all(h.cached for h in art.path) and art.latency.cached
        # the hop checks and the measurements are the recorded ones, not new numbers
        assert [h.check_max_abs_error for h in art.path] == \
            [h.check_max_abs_error for h in before.path]
        assert art.latency.p50_ms == before.latency.p50_ms
        assert art.fidelity == before.fidelity and art.accuracy == before.accuracy
        assert art.sha256 == before.sha256
        for name in (art.file, *art.extra_files):
            assert (tmp_path / "again" / name).read_bytes() == (cold.out / name).read_bytes()
    markdown = (tmp_path / "again" / "report.md").read_text()
    assert "(from the step cache)" in markdown and "not measured again" in markdown
    assert len(entries(cache)) == STEPS  # nothing new stored


def test_changed_calibration_rebuilds_only_the_int8_hop(cold: Cold, cache: Path,
                                                       tiny_keras: Path,
                                                       tiny_data: dict[str, Path],
                                                       tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    text = (REPO / "profiles" / "int8-arm.yaml").read_text()
    assert "samples: 200" in text
    (profiles / "int8-arm.yaml").write_text(text.replace("samples: 200", "samples: 40"))
    report = tiny_build(tiny_keras, tiny_data, cold.targets, tmp_path / "out",
                        profiles_dirs=(profiles,))
    arts = by_precision(report)
    int8, fp32 = arts["int8"], arts["fp32"]
    assert [h.cached for h in fp32.path] == [True, True] and fp32.latency.cached
    assert [h.cached for h in int8.path] == [True, False] and not int8.latency.cached
    assert any("calibrated on 40 samples" in n for n in int8.notes)
    assert int8.sha256 != by_precision(cold.report)["int8"].sha256
    # the source, the fp32 hops and validation reused; the int8 hop, the speed step's timing
    # of it, its judgment and validation rebuilt, and the input-rounding floor (its steps span
    # the calibration data)
    assert report.step_cache == {"reused": 5, "built": 5}


def test_corrupted_entries_are_rebuilt_never_used(cold: Cold, cache: Path, tiny_keras: Path,
                                                  tiny_data: dict[str, Path],
                                                  tmp_path: Path) -> None:
    steps = entries(cache)
    int8_hop = next(k for k, e in steps.items()
                    if e["record"] and e["record"].get("output") == "model.int8.tflite")
    model = cache / "steps" / int8_hop / "model.int8.tflite"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    # a validation record edited to look better: its seal no longer matches
    for key, e in steps.items():
        if e["record"] and "latency" in e["record"]:
            e["record"]["latency"]["p50_ms"] /= 10
            (cache / "steps" / key / ENTRY).write_text(json.dumps(e))

    report = tiny_build(tiny_keras, tiny_data, cold.targets, tmp_path / "out")
    # reused: the source (its outputs, as given and at the input-rounding floor), the two
    # good hops, and the speed step's timing and the judgment of the int8 file (rebuilt byte
    # for byte)
    assert report.passed and report.step_cache == {"reused": 7, "built": 3}
    before = by_precision(cold.report)
    for precision, art in by_precision(report).items():
        assert not art.latency.cached
        assert art.path[-1].cached == (precision == "fp32")
        assert art.sha256 == before[precision].sha256  # rebuilt: the same bytes as at first
    assert len(entries(cache)) == STEPS  # the bad entries were replaced by good ones


def test_no_cache_runs_every_step_and_stores_nothing(cold: Cold, cache: Path, tiny_keras: Path,
                                                     tiny_data: dict[str, Path],
                                                     tmp_path: Path) -> None:
    before = entries(cache)
    res = CliRunner().invoke(cli, [
        "--targets-dir", str(cold.targets), "build", str(tiny_keras), "-t", "tiny-pi",
        "--calibration", str(tiny_data["calibration"]), "--eval", str(tiny_data["eval"]),
        "-o", str(tmp_path / "out"), "--runs", "3", "--warmup", "1", "--no-cache", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output[res.output.index("{"):])
    assert report["step_cache"] is None
    for art in report["artifacts"]:
        assert not any(h["cached"] for h in art["path"]) and not art["latency"]["cached"]
    assert entries(cache) == before


def test_cache_info_and_clear_count_steps(cache: Path) -> None:
    info = json.loads(CliRunner().invoke(cli, ["cache", "info", "--json"]).output)
    assert info["root"] == str(cache)
    assert info["steps"]["entries"] == STEPS and info["steps"]["bytes"] > 0
    assert info["builds"]["entries"] == 0
    assert f"0 builds (0 B), {STEPS} steps" in CliRunner().invoke(cli, ["cache", "info"]).output
    cleared = CliRunner().invoke(cli, ["cache", "clear"]).output
    assert f"removed 0 cached builds and {STEPS} cached steps" in cleared
    assert cache_info().steps.entries == 0


# ------------------------------------------------------------------ the store on its own

def test_step_store_round_trip_and_checks(tmp_path: Path) -> None:
    store = StepCache(tmp_path / "cache")
    folder = tmp_path / "made"
    (folder / "x.savedmodel" / "variables").mkdir(parents=True)
    (folder / "x.savedmodel" / "saved_model.pb").write_bytes(b"graph")
    (folder / "x.savedmodel" / "variables" / "v.data").write_bytes(b"weights")
    files = {"model.savedmodel/saved_model.pb": folder / "x.savedmodel" / "saved_model.pb",
             "model.savedmodel/variables/v.data": folder / "x.savedmodel/variables/v.data"}
    store.store("k1", files, {"n": 1})
    store.store("k2", {}, {"p50_ms": 1.5})

    out = tmp_path / "out"
    hit = store.fetch("k1", out, rename=lambda name: "y" + name[len("model"):])
    assert hit is not None and hit.record == {"n": 1}
    assert (out / "y.savedmodel" / "variables" / "v.data").read_bytes() == b"weights"
    assert store.fetch("k2").record == {"p50_ms": 1.5}  # a record-only step needs no folder
    assert store.fetch("nope", out) is None

    (store.folder / "k1" / "model.savedmodel" / "saved_model.pb").write_bytes(b"grapH")
    assert store.fetch("k1", tmp_path / "out2") is None
    assert not (store.folder / "k1").exists()  # discarded, not kept for next time
    assert not (tmp_path / "out2" / "model.savedmodel" / "saved_model.pb").exists()

    entry = store.folder / "k2" / ENTRY
    entry.write_text(entry.read_text().replace("1.5", "0.5"))
    assert store.fetch("k2") is None and not (store.folder / "k2").exists()
    assert store.info().entries == 0


def test_an_unwritable_cache_only_costs_time(tmp_path: Path) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    store = StepCache(blocker)
    (tmp_path / "f").write_bytes(b"x")
    store.store("k", {"model.tflite": tmp_path / "f"}, {})  # no exception
    assert store.fetch("k", tmp_path / "o") is None


def test_the_accuracy_fallback_is_not_run_again(tiny_keras: Path, tiny_data: dict[str, Path],
                                                 targets_dir: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A budget plain int8 cannot meet sends the build through the layer ranking and several
    re-quantizations, each judged on the eval set: a rebuild takes the ranking and every
    judgment from the cache and ships the same file."""
    import edgepack.pipeline.fallback_attempts as fallback

    profiles = tmp_path / "profiles"
    profiles.mkdir()
    text = (REPO / "profiles" / "int8-arm.yaml").read_text()
    # no top-1 drop: with the eval labels it would decide, and the tiny model's int8 meets it
    # nor bounds against the floor: it would move the bar this test sets
    (profiles / "int8-arm.yaml").write_text(
        text.replace("  max_top1_drop: 0.01\n", "")
        .replace("  relative_to_floor: {top1_agreement: 0.02, cosine: 0.005}\n", "")
        .replace("min_cosine: 0.99", "min_cosine: 0.9999999"))
    judged: list[int] = []
    measure = fallback.measure_fidelity

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        judged.append(1)
        return measure(*args, **kwargs)

    monkeypatch.setattr(fallback, "measure_fidelity", counting)
    first_lines, again_lines = Recorder(), Recorder()
    first = tiny_build(tiny_keras, tiny_data, targets_dir, tmp_path / "a",
                       profiles_dirs=(profiles,), progress=first_lines)
    attempts = len(judged)
    assert attempts >= 3 and any(line.startswith("Ranking") for line in first_lines.lines)
    again = tiny_build(tiny_keras, tiny_data, targets_dir, tmp_path / "b",
                       profiles_dirs=(profiles,), progress=again_lines)
    assert len(judged) == attempts  # no attempt judged again
    assert not any(line.startswith("Ranking") for line in again_lines.lines)
    assert again.deliverables[0].fallback == first.deliverables[0].fallback
    assert again.deliverables[0].sha256 == first.deliverables[0].sha256


@pytest.mark.parametrize("kind", ["onnx", "openvino"])
def test_new_weights_beside_an_unchanged_graph_file_are_built_again(kind: str,
                                                                    tmp_path: Path) -> None:
    """An exporter that writes new weights for the same graph leaves the graph file's bytes
    as they were: an ONNX file whose weights are external data (``m.onnx.data``), an
    OpenVINO IR (``m.xml`` and ``m.bin``). The rebuild on the old model's cache delivers the
    new weights and judges them against the new model's outputs."""
    import onnx
    from onnx import numpy_helper

    from tests import model_files

    plain = onnx.load(str(model_files.onnx_cnn(tmp_path / "plain.onnx")))
    src = tmp_path / ("m.onnx" if kind == "onnx" else "m.xml")

    def export(seed: int) -> None:
        rng = np.random.default_rng(seed)
        model = onnx.ModelProto()
        model.CopyFrom(plain)
        for init in model.graph.initializer:
            shape = numpy_helper.to_array(init).shape
            init.CopyFrom(numpy_helper.from_array(
                rng.standard_normal(shape).astype(np.float32), init.name))
        if kind == "openvino":  # the graph's .xml kept, the new weights' .bin written
            onnx.save(model, str(tmp_path / "weights.onnx"))
            ir = model_files.openvino_ir(tmp_path / "weights.onnx", tmp_path / f"ir{seed}.xml")
            if not src.exists():
                shutil.copyfile(ir, src)
            shutil.copyfile(ir.with_suffix(".bin"), src.with_suffix(".bin"))
            return
        (tmp_path / "m.onnx.data").unlink(missing_ok=True)  # onnx.save appends to it
        onnx.save(model, str(src), save_as_external_data=True, location="m.onnx.data",
                  size_threshold=0)

    export(1)
    graph_bytes = src.read_bytes()
    first = build(src, "x86-host", output=tmp_path / "a", runs=3, warmup=1,
                  cache_dir=tmp_path / "cache")
    export(2)
    assert src.read_bytes() == graph_bytes  # only the weights' file changed
    again = build(src, "x86-host", output=tmp_path / "b", runs=3, warmup=1,
                  cache_dir=tmp_path / "cache")
    before = {a.format: a for a in first.deliverables}
    assert again.deliverables
    for art in again.deliverables:
        old = before[art.format]  # an IR's .xml is the same: its .bin is a sidecar
        assert (art.sha256, art.extra_sha256) != (old.sha256, old.extra_sha256), art.file
        assert all(f.max_abs_error <= 1e-5 for f in art.fidelity), art.fidelity
