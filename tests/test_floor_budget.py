"""Budgets stated against the model's input-rounding floor (validate/budget.py, floor.py;
Budget.relative_to_floor in config/profiles.py): a profile's unlabelled bound moves to the
floor's reading less the margin where the model's own input rounding puts the bound out of a
perfect file's reach, and nowhere else; the user's bounds stay absolute. The model is a tiny
ONNX classifier run in ONNX Runtime whose near-tie scores flip when its input is rounded."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from edgepack.config.catalog import load_catalog
from edgepack.config.profiles import Budget, FloorMargins, OutputBudget
from edgepack.validate import accuracy, budget
from edgepack.validate.fidelity import compare_all
from edgepack.validate.floor import InputFloor, InputFloors, calibration_grids

from tests import model_files


def _classifier(path: Path) -> Path:
    """x[N,8] -> logits[N,5] = x @ w, and y2[N,3] = x @ v."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["logits"]),
         helper.make_node("MatMul", ["x", "v"], ["y2"])], "clf",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5]),
         helper.make_tensor_value_info("y2", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(rng.standard_normal((8, 5)).astype(np.float32), "w"),
         numpy_helper.from_array(rng.standard_normal((8, 3)).astype(np.float32), "v")])
    return model_files.save_onnx(graph, path)


@pytest.fixture(scope="module")
def low_floor(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The model, its outputs on 400 eval samples, and its floor over a calibration range 40x
    wider than the eval data (coarse steps: many near-ties flip)."""
    import onnxruntime as ort

    path = _classifier(tmp_path_factory.mktemp("floor") / "m.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return session.run(None, inputs)

    rng = np.random.default_rng(4)
    x = rng.standard_normal((400, 8)).astype(np.float32)
    calib = {"x": rng.uniform(-40, 40, (64, 8)).astype(np.float32)}
    refs = run({"x": x})
    names = ["logits", "y2"]
    floor = InputFloors(run, {"x": x}, refs, names, ["classifier", "generic"]).at(
        calibration_grids(calib))
    grid = floor.grids[0]
    coarse = replace(grid, scale=grid.scale * 2, zero_point=grid.zero_point // 2)
    return {"run": run, "x": x, "refs": refs, "names": names, "floor": floor,
            "at_floor": compare_all(names, refs, run({"x": grid.round(x)})),
            "worse": compare_all(names, refs, run({"x": coarse.round(x)}))}


def _arm() -> Budget:
    return load_catalog().profiles.get("int8-arm").budget


def _check(verdict: budget.BudgetVerdict, name: str, output: str) -> budget.BudgetCheck:
    (found,) = [c for o in verdict.outputs for c in o.checks
                if c.name == name and c.output == output]
    return found


def test_a_file_at_a_low_floor_passes_against_a_bar_the_floor_sets(low_floor: dict) -> None:
    """The model's floor agreement is far under the profile's 0.97: a file that follows the
    source as closely as its rounded input allows fails the absolute bound and passes at the
    floor less the margin, the report saying where the bar came from. Where the floor less
    the margin is above the profile's number (a cosine of 0.9), the number holds."""
    floor: InputFloor = low_floor["floor"]
    agreement = floor.fidelity[0].top1_agreement
    assert agreement is not None and agreement < 0.95
    plain = budget.evaluate("int8-arm", _arm(), low_floor["at_floor"], None, None)
    assert not plain.passed
    assert _check(plain, "top1_agreement", "logits").basis == (
        "from the profile; no input-rounding floor was measured")
    v = budget.evaluate("int8-arm", _arm(), low_floor["at_floor"], None, None, floor)
    check = _check(v, "top1_agreement", "logits")
    assert v.passed and check.limit == pytest.approx(agreement - 0.02)
    assert check.basis == f"= floor {agreement:.4f} - 0.02"
    assert f"(limit {check.limit:.6g} = floor {agreement:.4f} - 0.02;" in check.reading()
    assert _check(v, "cosine", "y2").limit == pytest.approx(floor.fidelity[1].cosine - 0.005)
    loose = Budget(min_cosine=0.9, relative_to_floor=FloorMargins(cosine=0.005))
    y2 = _check(budget.evaluate("p", loose, low_floor["at_floor"], None, None, floor),
                "cosine", "y2")
    assert y2.limit == 0.9 and y2.basis == (
        f"from the profile; floor {floor.fidelity[1].cosine:.4f} - 0.005 is stricter")


def test_a_file_worse_than_the_floor_less_its_margin_still_fails(low_floor: dict) -> None:
    """Rounding the input to steps twice as coarse loses more than 0.02 agreement beyond the
    floor: the file fails, against the same floor-derived bar."""
    worse = low_floor["worse"]
    floor = low_floor["floor"]
    assert worse[0].top1_agreement < floor.fidelity[0].top1_agreement - 0.02
    v = budget.evaluate("int8-arm", _arm(), worse, None, None, floor)
    check = _check(v, "top1_agreement", "logits")
    assert not v.passed and not check.passed and check.basis.startswith("= floor")
    assert v.shortfall() > 0


def test_a_bound_the_user_sets_stays_absolute(low_floor: dict) -> None:
    """The project file's 0.97 on the logits is not moved by the floor (the file at the floor
    fails it), and the user's cosine on y2 neither; a per-output bound of the profile's own
    is moved per output, by that output's floor."""
    floor = low_floor["floor"]
    user = _arm().with_outputs({"logits": OutputBudget(min_top1_agreement=0.97),
                                "y2": OutputBudget(min_cosine=0.9999)})
    v = budget.evaluate("int8-arm", user, low_floor["at_floor"], None, None, floor)
    check = _check(v, "top1_agreement", "logits")
    assert check.limit == 0.97 and check.basis == "from the project file"
    assert not check.passed and not v.passed
    assert _check(v, "cosine", "y2").limit == 0.9999
    assert _check(v, "cosine", "logits").basis.startswith(("= floor", "from the profile;"))
    own = Budget(min_top1_agreement=0.97, relative_to_floor=FloorMargins(cosine=0.005),
                 outputs={"y2": OutputBudget(min_cosine=0.9999)})
    y2 = _check(budget.evaluate("p", own, low_floor["at_floor"], None, None, floor),
                "cosine", "y2")
    assert y2.limit == pytest.approx(floor.fidelity[1].cosine - 0.005)
    assert y2.limit < 0.9999 and y2.passed


def test_without_a_floor_or_margins_the_absolute_bounds_apply(low_floor: dict) -> None:
    """A model with no float input has no floor: the profile's numbers gate, and each check
    says so. A profile without margins never moves a bar, floor or not."""
    assert calibration_grids({"ids": np.arange(4)}) == []
    v = budget.evaluate("int8-arm", _arm(), low_floor["at_floor"], None, None, None)
    assert {c.limit for c in v.checks} == {0.97, 0.99}
    assert all(c.basis.endswith("no input-rounding floor was measured") for c in v.checks)
    fixed = Budget(min_top1_agreement=0.97, min_cosine=0.99)
    again = budget.evaluate("p", fixed, low_floor["at_floor"], None, None, low_floor["floor"])
    assert {c.limit for c in again.checks} == {0.97, 0.99}
    assert {c.basis for c in again.checks} == {""} and not again.passed


def test_with_labels_the_top1_drop_decides_whatever_the_floor(low_floor: dict) -> None:
    """Labels and a top-1 drop: the drop gates, the floor-derived agreement bar is recorded
    on the labelled output without gating."""
    src, art = accuracy.Accuracy(samples=400, top1=0.5), accuracy.Accuracy(samples=400, top1=0.45)
    v = budget.evaluate("int8-arm", _arm(), low_floor["at_floor"], src, art, low_floor["floor"])
    drop = next(c for c in v.checks if c.name == "top1_drop")
    assert not drop.passed and not v.passed and [c.name for c in v.failures()] == ["top1_drop"]
    assert not _check(v, "top1_agreement", "logits").gating


def test_profiles_show_states_the_bounds_against_the_floor() -> None:
    """`edgepack profiles show` writes a floor-relative bound as the rule the gate applies."""
    from click.testing import CliRunner
    from edgepack.cli import cli

    res = CliRunner().invoke(cli, ["profiles", "show", "int8-arm"], terminal_width=200)
    assert res.exit_code == 0
    assert "agreement >= min(0.97, floor - 0.02)" in res.output
    assert "cosine >= min(0.99, floor - 0.005)" in res.output


def _wide_input_classifier(path: Path) -> Path:
    """x[N,16] -> MatMul -> logits[N,5], the first input feature weighted 0.01: calibration
    outliers in that feature widen the input's int8 steps (rounding every feature coarsely:
    the floor is low) but not the range of the logits (their int8 steps stay fine)."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(5).standard_normal((16, 5)) / 4
    w[0] = 0.01
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["logits"])], "wide",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])],
        [numpy_helper.from_array(w.astype(np.float32), "w")])
    return model_files.save_onnx(graph, path)


@pytest.mark.slow
def test_an_int8_build_passes_against_its_floor_and_says_so(tmp_path: Path) -> None:
    """An int8 ONNX build of a model whose own floor is under 0.97: the shipped file passes
    at the floor less the margin, and report.md says where the bar came from."""
    import edgepack

    proj = tmp_path / "proj"
    (proj / "targets").mkdir(parents=True)
    _wide_input_classifier(proj / "m.onnx")
    rng = np.random.default_rng(6)
    calib = rng.standard_normal((64, 16)).astype(np.float32)
    calib[:4, 0] = [60, -60, 60, -60]  # the input's int8 step is 0.47
    np.savez(proj / "calib.npz", x=calib)
    np.savez(proj / "eval.npz", x=rng.standard_normal((300, 16)).astype(np.float32))
    model_files.onnx_host_target(proj / "targets")
    (proj / "edgepack.yaml").write_text(
        "model: m.onnx\ncalibration: calib.npz\neval: eval.npz\ntargets_dir: [targets]\n")
    report = edgepack.build(proj, "onnx-host", output=tmp_path / "out", runs=3)
    floor = report.input_floor.fidelity[0].top1_agreement
    (art,) = report.deliverables
    check = next(c for c in art.budget.checks if c.name == "top1_agreement")
    assert floor < 0.95 and art.budget.passed and not art.fallback
    assert check.limit == pytest.approx(floor - 0.02) and check.value < 0.97
    md = (tmp_path / "out" / "report.md").read_text()
    assert f"= floor {floor:.4f} - 0.02" in md
