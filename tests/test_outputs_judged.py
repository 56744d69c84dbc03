"""Every output judged, each by a measure that fits it (validate/fidelity.py, roles.py,
budget.py), per-output budgets from profiles and project files, and the input-rounding floor
(validate/floor.py). Models are tiny ONNX graphs run in ONNX Runtime; pure measures get numpy
arrays whose expected values are worked out by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from edgepack.config.catalog import load_catalog
from edgepack.config.profiles import ROLE_NAMES, Budget, OutputBudget
from edgepack.config.project import LoadedProject, Project
from edgepack.errors import ConfigError, UsageError
from edgepack.validate import budget, roles
from edgepack.validate.fidelity import FLAT, OutputFidelity, compare, compare_all
from edgepack.validate.floor import LEVELS, InputFloors, calibration_grids
from edgepack.validate.roles import BY_NAME, role_for

from tests import model_files

RNG = np.random.default_rng(0)


def _two_output_model(path: Path, w1: np.ndarray, w2: np.ndarray) -> Path:
    """x[N,8] -> y1 = x @ w1 [N,5] (class scores) and y2 = x @ w2 [N,6]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["y1"]),
         helper.make_node("MatMul", ["x", "w2"], ["y2"])], "two",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y1", TensorProto.FLOAT, ["N", 5]),
         helper.make_tensor_value_info("y2", TensorProto.FLOAT, ["N", 6])],
        [numpy_helper.from_array(w1.astype(np.float32), "w1"),
         numpy_helper.from_array(w2.astype(np.float32), "w2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _run(path: Path, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})


@pytest.fixture(scope="module")
def two_outputs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The source, an artifact whose second output is broken (half its weights' signs
    flipped), and one whose second output is a little off (cosine about 0.95)."""
    folder = tmp_path_factory.mktemp("two")
    w1, w2 = RNG.standard_normal((8, 5)), RNG.standard_normal((8, 6))
    broken = w2.copy()
    broken[:, :3] *= -1
    off = w2 + 0.3 * RNG.standard_normal(w2.shape)
    x = RNG.standard_normal((64, 8)).astype(np.float32)
    return {"x": x, "source": _run(_two_output_model(folder / "s.onnx", w1, w2), x),
            "broken": _run(_two_output_model(folder / "b.onnx", w1, broken), x),
            "off": _run(_two_output_model(folder / "o.onnx", w1, off), x)}


def test_a_broken_second_output_fails_the_gate(two_outputs: dict) -> None:
    """The first output is untouched, the second broken: judging the first alone passed it."""
    fid = compare_all(["y1", "y2"], two_outputs["source"], two_outputs["broken"])
    assert fid[0].cosine == pytest.approx(1.0) and fid[1].cosine < 0.5
    v = budget.evaluate("p", Budget(min_cosine=0.99, min_top1_agreement=0.97), fid, None, None)
    assert not v.passed
    assert [c.label() for c in v.failures()] == ["cosine of `y2`"]
    assert [(o.output, o.passed) for o in v.outputs] == [("y1", True), ("y2", False)]
    # only the first (the primary) is a classifier by shape: agreement is not read on y2
    assert [c.output for c in v.checks if c.name == "top1_agreement"] == ["y1"]


def test_a_per_output_budget_from_a_profile_is_applied(two_outputs: dict,
                                                       tmp_path: Path) -> None:
    """A profile may loosen one output by name (y2 at 0.9) and set limits per role; the
    other outputs keep the profile-wide limits. Unknown keys in an entry are refused."""
    fid = compare_all(["y1", "y2"], two_outputs["source"], two_outputs["off"])
    assert 0.9 < fid[1].cosine < 0.99
    recipe = ("name: loose-y2\ntitle: t\nprecision: fp32\nformats: [onnx]\nbudget:\n"
              "  min_cosine: 0.99\n  outputs:\n    y2: {min_cosine: 0.9}\n"
              "    classifier: {min_top1_agreement: 0.97}\n    y9: {min_cosine: 0.5}\n")
    (tmp_path / "loose-y2.yaml").write_text(recipe)
    spec = load_catalog([], [tmp_path]).profiles.get("loose-y2").budget
    v = budget.evaluate("loose-y2", spec, fid, None, None)
    assert v.passed, [c.reading() for c in v.checks]
    by_output = {(c.output, c.name): c.limit for o in v.outputs for c in o.checks}
    assert by_output == {("y1", "cosine"): 0.99, ("y1", "top1_agreement"): 0.97,
                         ("y2", "cosine"): 0.9}
    assert v.unmatched == ["y9"]  # a name no output has is reported, not silently dropped
    assert not budget.evaluate("p", Budget(min_cosine=0.99), fid, None, None).passed
    (tmp_path / "loose-y2.yaml").write_text(recipe.replace("{min_cosine: 0.9}",
                                                           "{min_cosin: 0.9}"))
    with pytest.raises(ConfigError, match="min_cosin"):
        load_catalog([], [tmp_path])


def test_an_output_whose_budget_does_not_gate_is_measured_only(two_outputs: dict) -> None:
    fid = compare_all(["y1", "y2"], two_outputs["source"], two_outputs["broken"])
    spec = Budget(min_cosine=0.99, outputs={"y2": OutputBudget(gating=False)})
    v = budget.evaluate("p", spec, fid, None, None)
    miss = next(c for c in v.outputs[1].checks)
    assert v.passed and not miss.passed and miss.outcome().startswith("missed, not gating")


def _detector(n: int = 8, classes: int = 3, anchors: int = 60) -> np.ndarray:
    """[N, 4 + classes, anchors]: cx, cy, w, h in pixels of a 320 image, then sigmoid scores
    (mostly near 0, one anchor in ten sure of a class)."""
    boxes = RNG.uniform(10, 310, (n, 4, anchors))
    scores = 1 / (1 + np.exp(-RNG.normal(-6, 1, (n, classes, anchors))))
    hits = RNG.random((n, anchors)) < 0.1
    cls = RNG.integers(0, classes, (n, anchors))
    for i, a in zip(*np.nonzero(hits), strict=True):
        scores[i, cls[i, a], a] = RNG.uniform(0.6, 0.95)
    return np.concatenate([boxes, scores], axis=1)


def test_a_detector_with_broken_scores_and_good_boxes_fails() -> None:
    """A YOLO-style head mixes boxes (0-320) with scores (0-1): as one vector its cosine is
    the boxes', which hold; judged per channel group the broken scores fail it."""
    ref = _detector()
    out = ref.copy()
    out[:, :4] += RNG.normal(0, 0.5, out[:, :4].shape)  # boxes: half a pixel off
    out[:, 4:] = np.clip(1.6 * RNG.permutation(out[:, 4:].ravel()).reshape(
        out[:, 4:].shape) - 0.05, 0, 1.3)  # scores: shuffled, stretched past 1
    f = compare("output0", ref, out)
    assert f.role == "detector" and f.cosine > 0.999  # the whole vector hides it
    groups = {g.name: g for g in f.groups}
    assert groups["boxes"].cosine > 0.999 and groups["scores"].cosine < 0.5
    assert groups["scores"].channels == "4: of axis 1"
    assert f.readings["detections_kept"] < 0.3 and f.readings["extra_detections"] > 0.5
    v = budget.evaluate("p", Budget(min_cosine=0.99), [f], None, None)
    assert not v.passed and [c.output for c in v.failures()] == ["output0[scores]"]
    good = ref.copy()
    good[:, :4] += RNG.normal(0, 0.5, good[:, :4].shape)
    fine = compare("output0", ref, good)
    assert fine.readings["detections_kept"] == 1.0 and fine.readings["box_iou"] > 0.9
    assert budget.evaluate("p", Budget(min_cosine=0.99), [fine], None, None).passed


def _head(*dets: tuple[float, float, float, int]) -> np.ndarray:
    """A [1, 16 anchors, 4 box + 6 class scores] head with a detection (cx, score, width,
    class) on each of the first anchors; the rest score 0.01."""
    rows = np.zeros((1, 16, 4 + 6), np.float32)
    rows[0, :, :4] = [300, 300, 10, 10]
    rows[0, :, 4:] = 0.01
    for a, (cx, score, w, cls) in enumerate(dets):
        rows[0, a, :4] = [cx, 100, w, 40]
        rows[0, a, 4 + cls] = score
    return rows


def test_detections_are_counted_after_nms_as_an_app_sees_them() -> None:
    """Three anchors on one object (scores 0.9, 0.8, 0.3) are one detection after NMS: an
    artifact that drops the weakest below the 0.25 threshold keeps it; one that adds a box
    elsewhere has an extra; one that names another class, or misplaces the box, loses it."""
    ref = _head((100, 0.9, 40, 2), (102, 0.8, 40, 2), (98, 0.3, 40, 2))
    assert len(roles.detections(ref[0])[1]) == 1
    weaker = compare("out", ref, _head((101, 0.85, 40, 2), (102, 0.7, 40, 2), (98, 0.2, 40, 2)))
    assert weaker.readings["detections_kept"] == 1.0
    assert weaker.readings["extra_detections"] == 0.0 and weaker.readings["box_iou"] > 0.9
    more = compare("out", ref, _head((100, 0.9, 40, 2), (200, 0.5, 40, 2)))
    assert more.readings["detections_kept"] == 1.0 and more.readings["extra_detections"] == 1.0
    other = compare("out", ref, _head((100, 0.9, 40, 3)))
    assert other.readings["detections_kept"] == 0.0 and other.readings["extra_detections"] == 1.0
    moved = compare("out", ref, _head((130, 0.9, 40, 2)))  # IoU 1/7 with the source's box
    assert moved.readings["detections_kept"] == 0.0


@pytest.mark.parametrize("profile", ["int8-arm", "int8-openvino", "int8-edgetpu", "dynamic-int8",
                                     "fp16-gpu"])
def test_every_shipped_profile_fails_a_detector_that_loses_or_adds_detections(
        profile: str) -> None:
    """A head whose scores still follow the source's (cosine over 0.999) but move one object
    below the 0.25 threshold, or another above it, fails every shipped recipe: an app shows
    one object fewer, or one more. Small moves that cross nothing pass."""
    spec = load_catalog([], []).profiles.get(profile).budget
    ref = _head((100, 0.9, 40, 2), (200, 0.27, 40, 1), (60, 0.23, 40, 4))
    verdicts = {case: budget.evaluate(profile, spec, [compare("out", ref, out)], None, None)
                for case, out in {
                    "same": _head((100, 0.89, 40, 2), (200, 0.265, 40, 1), (60, 0.235, 40, 4)),
                    "lost": _head((100, 0.9, 40, 2), (200, 0.24, 40, 1), (60, 0.23, 40, 4)),
                    "added": _head((100, 0.9, 40, 2), (200, 0.27, 40, 1), (60, 0.26, 40, 4)),
                }.items()}
    assert verdicts["same"].passed, [c.reading() for c in verdicts["same"].checks]
    assert [c.name for c in verdicts["lost"].failures()] == ["detections_kept"]
    assert [c.name for c in verdicts["added"].failures()] == ["extra_detections"]


def test_the_detector_head_is_found_in_either_layout() -> None:
    ref = _detector()
    f = compare("out", np.swapaxes(ref, 1, 2), np.swapaxes(ref, 1, 2))  # [N, anchors, 4+C]
    assert f.role == "detector" and f.groups[1].channels == "4: of axis 2"
    assert f.readings["detections_kept"] == 1.0 and f.readings["extra_detections"] == 0.0


def test_an_all_zero_reference_does_not_zero_a_good_score() -> None:
    """A ReLU map that is all zero on one sample: a good int8 file (values on a grid of the
    map's range/255) keeps cosine >= 0.99 there; one that draws on the empty sample does not.
    Each flat sample scores 1 - rms error / range (the module's docstring)."""
    ref = np.maximum(RNG.normal(0, 1, (4, 1, 16, 16)), 0)
    ref[0] = 0
    step = ref.max() / 255
    good = np.round(ref / step) * step + step * (RNG.random(ref.shape) < 0.05)
    f = compare("mask", ref, good)
    assert f.role == "map" and f.flat_samples == 1
    assert f.cosine >= 0.99 and f.readings["iou"] > 0.9
    assert budget.evaluate("p", Budget(min_cosine=0.99), [f], None, None).passed
    bad = good.copy()
    bad[0] = ref.max() / 2  # a flat reference, an artifact that fills it
    assert compare("mask", ref, bad).cosine < 0.9
    # a sample flat only to within FLAT of the range counts too (a sigmoid map where
    # nothing is): its rms is well under 1% of the range
    nearly = ref.copy()
    nearly[0] = FLAT * ref.max() * 0.5
    assert compare("mask", nearly, good).flat_samples == 1


def test_identical_all_zero_outputs_agree_fully() -> None:
    zero = np.zeros((3, 4))
    f = compare("y", zero, zero)
    assert f.cosine == 1.0 and f.range_error is None
    assert compare("y", zero, zero + 1e-3).cosine == 0.0


def test_roles_come_from_the_declaration_then_the_name_then_the_data() -> None:
    assert set(BY_NAME) == set(ROLE_NAMES)  # config/profiles.py spells the same roles
    emb = RNG.normal(size=(8, 32))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    assert role_for("sentence_embedding", RNG.normal(size=(8, 32))).name == "embedding"
    assert role_for("out", emb).name == "embedding"  # L2-normalised rows
    assert role_for("logits", emb).name == "classifier"  # the name wins over the data
    assert role_for("out", RNG.normal(size=(8, 32)), primary=True).name == "classifier"
    assert role_for("out", RNG.normal(size=(8, 32))).name == "generic"  # not the first
    assert role_for("out", RNG.normal(size=(2, 64, 64, 39))).name == "generic"
    assert role_for("x", RNG.normal(size=(2, 8, 8)), declared="map").name == "map"
    with pytest.raises(UsageError, match="declared a detector"):
        role_for("out", RNG.normal(size=(2, 32)), declared="detector")


def test_a_first_output_of_mixed_quantities_is_not_read_as_class_scores() -> None:
    """Landmarks as MediaPipe pose gives them, per point x and y in pixels, a depth and a
    visibility logit, and a hand's, whose largest value is its wrist's y in every sample:
    which of those is largest is no class, so they are judged by the generic measures; the
    same as softmax probabilities, however rare some classes are, or
    scaled by a name that says so, are class scores."""
    n, points = 16, 24
    xy = RNG.uniform(0, 256, size=(n, points, 2))
    depth = RNG.normal(0, 40, size=(n, points, 1))
    visibility = RNG.normal(0, 3, size=(n, points, 1))
    landmarks = np.concatenate([xy, depth, visibility], axis=2).reshape(n, -1)
    assert role_for("Identity", landmarks, primary=True).name == "generic"
    assert role_for("landmark_logits", landmarks, primary=True).name == "classifier"
    # hand landmarks: x, y and z in pixels (scales within 10x), the wrist's y the largest
    hand = np.concatenate([RNG.normal(100, 15, size=(n, 21, 2)),
                           RNG.normal(0, 20, size=(n, 21, 1))], axis=2)
    hand[:, 0, 1] = RNG.normal(175, 5, size=n)
    hand = hand.reshape(n, -1)
    rms = np.sqrt(np.mean(hand ** 2, axis=0))
    assert np.percentile(rms, 90) < 10 * np.percentile(rms, 10)  # not told by the scales
    assert role_for("Identity", hand, primary=True).name == "generic"
    logits = RNG.normal(size=(n, 100)) + np.linspace(-6, 6, 100)  # common and rare classes
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert role_for("Identity", probs, primary=True).name == "classifier"


def test_role_readings_by_hand() -> None:
    """Embedding: 4 vectors in two tight pairs; the artifact moves vector 2 next to the first
    pair, so its nearest neighbour becomes 1 (cosine 0.89 over 0.55 to vector 3) while the
    other three keep theirs (3 still nearest to 2): 3 of 4 agree. Map: 4 pixels on in the
    source, 2 of them and none else in the artifact: IoU 2/4."""
    ref = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0.9, 0.1]])
    out = np.array([[1, 0, 0], [0.9, 0.1, 0], [0.6, 0.4, 0], [0, 0.9, 0.1]])
    f = compare("embedding", ref, out)
    assert f.readings["neighbour_agreement"] == pytest.approx(0.75)
    assert f.readings["worst_cosine"] == pytest.approx(
        0.4 / np.linalg.norm([0.6, 0.4]), abs=1e-12)  # sample 2: [0, 1, 0] vs [.6, .4, 0]
    m = np.zeros((1, 1, 8, 8))
    m[0, 0, 0, :4] = 1
    o = np.zeros_like(m)
    o[0, 0, 0, :2] = 1
    assert compare("mask", m, o).readings["iou"] == 0.5


def test_a_class_the_source_ties_with_its_best_is_no_disagreement() -> None:
    """Row 0's two best logits differ by 1e-4 of the row's spread: the source decides nothing
    between them, and an artifact that picks the other agrees. Row 1's differ by 0.04 (the
    margin of an int8 flip on EfficientNet): picking the other is a disagreement."""
    ref = np.array([[5.0, 5.0 - 3e-4, 1.0, -3.0, 0.0, 2.0],
                    [5.0, 5.0 - 0.11, 1.0, -3.0, 0.0, 2.0]])
    margins = (ref[:, 0] - ref[:, 1]) / ref.std(1)
    assert margins[0] < 1.1e-4 and 0.039 < margins[1] < 0.041, margins
    swapped = ref[:, [1, 0, 2, 3, 4, 5]]
    assert compare("logits", ref, swapped).top1_agreement == 0.5
    assert compare("logits", ref, ref).top1_agreement == 1.0


def test_fidelity_round_trips_through_a_dict() -> None:
    """The step cache stores fidelity as JSON and reads it back with its channel groups."""
    ref = _detector(n=3)
    f = compare("output0", ref, ref + 0.01)
    back = OutputFidelity.from_dict(f.to_dict())
    assert back == f and back.groups[1].name == "scores"


def test_the_project_file_gives_roles_and_per_output_limits() -> None:
    spec = Project.model_validate({"model": "m.onnx", "outputs": {
        "output0": {"role": "detector", "min_cosine": 0.98},
        "embedding": {"min_neighbour_agreement": 0.9}}})
    project = LoadedProject(Path("p/edgepack.yaml"), spec)
    assert project.output_roles() == {"output0": "detector"}
    merged = Budget(min_cosine=0.99, min_top1_agreement=0.97).with_outputs(
        project.output_budgets())
    assert merged.for_output("output0", "detector").min_cosine == 0.98
    assert merged.for_output("output0", "detector").min_top1_agreement == 0.97
    assert merged.for_output("s", "embedding").min_neighbour_agreement == 0.9
    with pytest.raises(ValueError, match="another role"):
        Project.model_validate({"model": "m", "outputs": {"map": {"role": "detector"}}})
    with pytest.raises(ValueError, match="role"):
        Project.model_validate({"model": "m", "outputs": {"y": {"role": "segmenter"}}})


def test_the_input_rounding_floor(two_outputs: dict, tmp_path: Path) -> None:
    """The fp32 model fed its input rounded to 256 steps over the calibration range (widened
    to hold 0, which stays exact) follows itself closely but not exactly; integer inputs
    have no int8 grid, so a model with only those has no floor."""
    w1, w2 = RNG.standard_normal((8, 5)), RNG.standard_normal((8, 6))
    model = _two_output_model(tmp_path / "m.onnx", w1, w2)
    x = two_outputs["x"]
    calib = {"x": RNG.uniform(0.5, 2.0, (16, 8)).astype(np.float32)}
    (grid,) = calibration_grids(calib)
    assert grid.zero_point == 0 and grid.scale == pytest.approx(calib["x"].max() / (LEVELS - 1))
    on_grid = grid.round(x)
    assert np.allclose(on_grid / grid.scale, np.round(on_grid / grid.scale), atol=1e-3)
    assert on_grid.min() == 0.0  # negative inputs clip to the calibrated range's 0
    floor = InputFloors(lambda inputs: _run(model, inputs["x"]), {"x": x}, _run(model, x),
                        ["y1", "y2"]).at([grid])
    assert floor is not None and [f.name for f in floor.fidelity] == ["y1", "y2"]
    assert 0 < floor.fidelity[0].cosine < 1 and "`x` step" in floor.summary()
    assert calibration_grids({"ids": np.arange(4)}) == []


def _conv_two_outputs(path: Path) -> Path:
    """x[N,3,8,8] -> Conv -> Relu -> r, then (pooled, Gemm) logits[N,5] and a 1-channel ReLU
    map y2[N,1,8,8] = Relu(Conv(r) - 1) (all zero where r is small)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in (
        ("w", rng.standard_normal((4, 3, 3, 3))), ("b", np.zeros(4)),
        ("g", rng.standard_normal((4, 5))), ("wm", np.abs(rng.standard_normal((1, 4, 3, 3)))),
        ("bm", -np.ones(1)))]
    nodes = [helper.make_node(op, ins, [out], name=out, **attrs) for op, ins, out, attrs in (
        ("Conv", ["x", "w", "b"], "c", {"pads": [1, 1, 1, 1]}), ("Relu", ["c"], "r", {}),
        ("GlobalAveragePool", ["r"], "p", {}), ("Flatten", ["p"], "f", {}),
        ("Gemm", ["f", "g"], "logits", {}),
        ("Conv", ["r", "wm", "bm"], "cm", {"pads": [1, 1, 1, 1]}), ("Relu", ["cm"], "y2", {}))]
    graph = helper.make_graph(
        nodes, "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5]),
         helper.make_tensor_value_info("y2", TensorProto.FLOAT, ["N", 1, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.mark.slow
def test_a_build_judges_every_output_and_reports_the_floor(tmp_path: Path) -> None:
    """An int8 ONNX build of a two-output model from a project file that names the second
    output's role and limit: the report judges both outputs (each verdict shown), applies
    the project's limit, and states the input-rounding floor. ``--metric ROLE`` names the
    first output's role."""
    import json

    import edgepack
    from edgepack.report.model import Report

    proj = tmp_path / "proj"
    (proj / "targets").mkdir(parents=True)
    _conv_two_outputs(proj / "two.onnx")
    rng = np.random.default_rng(2)
    data = rng.standard_normal((48, 3, 8, 8)).astype(np.float32)
    data[::8] *= 0.01  # the map is all zero on these
    np.savez(proj / "calib.npz", x=data[:32])
    np.savez(proj / "eval.npz", x=data[32:])
    model_files.onnx_host_target(proj / "targets")
    (proj / "edgepack.yaml").write_text(
        "model: two.onnx\ncalibration: calib.npz\neval: eval.npz\ntargets_dir: [targets]\n"
        "outputs:\n  y2: {role: map, min_iou: 0.5, min_cosine: 0.9}\n")
    out = tmp_path / "out"
    report = edgepack.build(proj, "onnx-host", output=out, runs=3)
    deliverable = report.deliverables[0]
    assert [(f.name, f.role) for f in deliverable.fidelity] == [("logits", "classifier"),
                                                               ("y2", "map")]
    assert deliverable.fidelity[1].flat_samples >= 1
    verdicts = {o.output: o for o in deliverable.budget.outputs}
    assert {c.name: c.limit for c in verdicts["y2"].checks} == {"cosine": 0.9, "iou": 0.5}
    assert {c.basis for c in verdicts["y2"].checks} == {"from the project file"}
    assert {c.name: c.limit for c in verdicts["logits"].checks} == {
        "top1_agreement": 0.97, "cosine": 0.99}
    floor = report.input_floor
    assert floor is not None and [f.name for f in floor.fidelity] == ["logits", "y2"]
    assert floor.fidelity[0].cosine > 0.99
    md = (out / "report.md").read_text()
    assert "Input-rounding floor" in md and "per output:" in md and "`y2` (map)" in md
    assert "Input-rounding floor" in (out / "report.html").read_text()
    back = Report.from_dict(json.loads((out / "report.json").read_text()))
    assert back.input_floor == floor
    assert [[(c.name, c.output, c.value) for c in o.checks]
            for o in back.deliverables[0].budget.outputs] == [
        [(c.name, c.output, c.value) for c in o.checks] for o in deliverable.budget.outputs]
    again = edgepack.build(proj, "onnx-host", output=tmp_path / "again", runs=3,
                           metric="embedding")
    first = again.deliverables[0].fidelity[0]
    assert first.role == "embedding" and first.top1_agreement is None
    assert "neighbour_agreement" in first.readings and again.source_accuracy is None
