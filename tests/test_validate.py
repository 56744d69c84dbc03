"""Each validation metric against a value computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from edgepack.config.profiles import Budget
from edgepack.report.tables import fidelity_lines
from edgepack.validate import accuracy, budget
from edgepack.validate.fidelity import compare, compare_all, topk_overlap
from edgepack.validate.latency import summarize


def test_fidelity_by_hand() -> None:
    ref = np.array([[1.0, 0.0], [0.0, 2.0]])
    out = np.array([[1.0, 1.0], [0.0, 2.0]])
    f = compare("y", ref, out)
    assert f.max_abs_error == 1.0
    assert f.mean_abs_error == 0.25
    # sample 0: cos([1,0],[1,1]) = 1/sqrt(2); sample 1: identical -> 1
    assert f.cosine == pytest.approx((1 / math.sqrt(2) + 1) / 2, abs=1e-12)
    # signal 1 + 4 = 5, noise 1 -> 10 log10(5)
    assert f.snr_db == pytest.approx(10 * math.log10(5), abs=1e-12)
    # argmax: sample 0 ref 0, out tie -> argmax 0: agree; sample 1 agree
    assert f.top1_agreement == 1.0


def test_identical_outputs_have_undefined_snr() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    f = compare("y", x, x.copy())
    assert f.snr_db is None and f.max_abs_error == 0 and f.cosine == pytest.approx(1.0)


def test_top1_disagreement() -> None:
    ref = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    out = np.array([[0.1, 0.9], [0.2, 0.8], [0.6, 0.4]])
    assert compare("y", ref, out).top1_agreement == pytest.approx(2 / 3)


def test_topk_overlap_counts_ties_as_in() -> None:
    ref = np.array([[0.5, 0.2, 0.15, 0.1, 0.05, 0.0]])
    out = np.array([[0.5, 0.0, 0.0, 0.0, 0.0, 0.5]])  # int8-like: small scores collapse to 0
    # top-2 of ref = {0, 1}; out's 2nd largest is 0.5: class 0 in, class 1 (0.0) out -> 1/2
    assert topk_overlap(ref, out, 2) == 0.5
    # top-5: out's 5th largest is 0.0, so every ref top-5 class ties in -> 1.0
    assert topk_overlap(ref, out, 5) == 1.0


def test_classification_accuracy() -> None:
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.4, 0.35, 0.25]])
    labels = np.array([1, 1, 2, 2])
    a = accuracy.classification(scores, labels)
    assert a.top1 == 0.5  # samples 0 and 2
    assert a.top5 == 1.0  # k = min(5, 3) = 3 covers everything


def test_user_metric_by_import_path() -> None:
    fn = accuracy.load_metric("numpy:dot")
    assert fn is np.dot
    with pytest.raises(Exception, match="package.module:function"):
        accuracy.load_metric("numpy.dot")


def test_latency_summary() -> None:
    s = summarize([0.001, 0.002, 0.003, 0.004], batch=2)
    assert s["p50_ms"] == pytest.approx(2.5)
    assert s["mean_ms"] == pytest.approx(2.5)
    assert s["min_ms"] == pytest.approx(1.0) and s["max_ms"] == pytest.approx(4.0)
    assert s["throughput_per_s"] == pytest.approx(2 * 1000 / 2.5)


def test_budget_gate() -> None:
    ref = np.eye(4)
    out = np.eye(4)[[0, 1, 2, 0]]  # one of four predictions flips
    fid = [compare("y", ref, out)]
    src = accuracy.Accuracy(samples=4, top1=1.0)
    art = accuracy.Accuracy(samples=4, top1=0.75)
    v = budget.evaluate("p", Budget(max_top1_drop=0.01, min_top1_agreement=0.7,
                                    min_cosine=0.5), fid, src, art)
    by_name = {c.name: c for c in v.checks}
    assert not by_name["top1_drop"].passed and by_name["top1_drop"].value == pytest.approx(0.25)
    assert by_name["top1_agreement"].passed and by_name["cosine"].passed
    assert not v.passed


def test_labelled_accuracy_decides_the_budget_when_labels_exist() -> None:
    """Labels and a top-1 drop in the profile: the drop decides. An artifact that flips two of
    eight predictions, one right -> wrong and one wrong -> right, loses no accuracy: it passes,
    its agreement below the bound recorded but not gating. Without labels agreement decides."""
    ref = np.eye(4)[[0, 1, 2, 3, 0, 1, 2, 3]]
    out = np.eye(4)[[1, 1, 2, 3, 0, 1, 2, 0]]
    fid = [compare("y", ref, out)]
    spec = Budget(max_top1_drop=0.01, min_top1_agreement=0.97)
    src = accuracy.Accuracy(samples=8, top1=0.75)
    art = accuracy.Accuracy(samples=8, top1=0.75)
    v = budget.evaluate("p", spec, fid, src, art)
    agreement = next(c for c in v.checks if c.name == "top1_agreement")
    assert v.passed and not agreement.passed and not agreement.gating
    assert agreement.outcome().startswith("missed, not gating") and v.shortfall() == 0.0
    unlabelled = budget.evaluate("p", spec, fid, None, None)
    assert not unlabelled.passed and [c.outcome() for c in unlabelled.checks] == ["FAIL"]


def test_attempts_that_fail_are_ranked_by_their_misses_in_units_of_what_each_limit_allows(
        ) -> None:
    """nudenet's OpenVINO int8 kept 0.862 of the fp32 detections and added 0.114 (two checks
    failed); percentile calibration kept 0.557 and added 0.018 (one failed). Counted by failed
    checks first, the second read closer and the fallback built on it; each miss as a multiple
    of the error its limit allows, the first is closer (1.76 + 1.28 against 7.86). An SNR 3 dB
    short counts as a cosine at 0.98 against 0.99 (twice the error allowed)."""

    def verdict(**readings: float) -> budget.BudgetVerdict:
        limits = {"detections_kept": (0.95, True), "extra_detections": (0.05, False),
                  "cosine": (0.99, True), "snr_db": (20.0, True)}
        checks = [budget.BudgetCheck(name, limits[name][0], value,
                                     value >= limits[name][0] if limits[name][1]
                                     else value <= limits[name][0], at_least=limits[name][1])
                  for name, value in readings.items()]
        return budget.BudgetVerdict("p", outputs=[budget.OutputVerdict("y", "detector", checks)])

    plain = verdict(detections_kept=0.862, extra_detections=0.114)
    percentile = verdict(detections_kept=0.557, extra_detections=0.018)
    assert plain.shortfall() == pytest.approx(0.138 / 0.05 - 1 + 0.114 / 0.05 - 1)
    assert percentile.shortfall() == pytest.approx(0.443 / 0.05 - 1)
    assert plain.shortfall() < percentile.shortfall()
    assert verdict(snr_db=17.0).shortfall() == pytest.approx(
        verdict(cosine=0.98).shortfall(), rel=0.01)
    assert verdict(detections_kept=0.96, extra_detections=0.0).shortfall() == 0.0


def test_an_agreement_check_says_when_its_eval_set_cannot_settle_the_limit() -> None:
    """Top-1 agreement is a share of samples: the check carries its 95% interval, and the
    report says so when the limit lies inside it (97 of 100 agree, limit 0.97: another 100
    samples could as well give 0.95 or 0.99); with 2000 samples at 0.99 it is settled."""

    def check(agree: int, n: int) -> budget.BudgetCheck:
        ref = np.eye(4)[np.arange(n) % 4]
        out = ref.copy()
        out[agree:] = np.roll(out[agree:], 1, axis=1)
        v = budget.evaluate("p", Budget(min_top1_agreement=0.97), [compare("y", ref, out)],
                            None, None)
        return v.checks[0]

    near = check(97, 100)
    assert near.passed and near.samples == 100
    assert near.interval == pytest.approx((0.9153, 0.9897), abs=5e-4)  # Wilson, 95%
    assert near.caveat().startswith("the limit lies inside the interval")
    assert near.reading() == "0.9700 (limit 0.97; 95% interval 0.915-0.990 over 100 samples)"
    far = check(1980, 2000)
    assert far.passed and not far.caveat() and far.interval[0] > 0.98


def test_warns_when_the_fallbacks_float_layers_make_int8_slower_than_fp32() -> None:
    """ONNX Runtime pays a layout change around each layer kept in float: an int8 file that met
    its budget with 19 of them ran 6.4 ms where fp32 runs 4.7 ms. The report warns then, and
    not for a deliverable that is slower within noise (10%) or that kept no layer in float
    (plain int8's speed is the runtime's business, shown in the speed-up column)."""
    from edgepack.pipeline.validate import slower_than_fp32
    from edgepack.report.model import Artifact
    from edgepack.validate.attempts import FallbackAttempt
    from edgepack.validate.latency import LatencyStats

    def art(role: str, p50: float, kept: int | None = None) -> Artifact:
        stats = summarize([p50 / 1e3] * 5, batch=1)
        latency = LatencyStats(runtime="onnxruntime", runtime_version="1.32.0", threads=2,
                               warmup=1, runs=5, batch=1, load_ms=1.0, first_inference_ms=1.0,
                               **stats)
        attempts = [] if kept is None else [
            FallbackAttempt([], False, 1), FallbackAttempt(["n"] * kept, True, 1, chosen=True)]
        return Artifact(role=role, format="onnx", precision="int8" if kept is not None
                        else "fp32", file=f"m.{role}.onnx", size_bytes=1, sha256="0", path=[],
                        signature={}, latency=latency, fallback=attempts)

    warned = slower_than_fp32([art("deliverable", 6.4, kept=19), art("reference", 4.7)])
    assert len(warned) == 1 and "m.deliverable.onnx runs slower than its fp32" in warned[0]
    assert "19 layer(s)" in warned[0] and "6.400 ms vs 4.700 ms" in warned[0]
    assert slower_than_fp32([art("deliverable", 5.0, kept=19), art("reference", 4.7)]) == []
    assert slower_than_fp32([art("deliverable", 6.4, kept=0), art("reference", 4.7)]) == []


def test_warns_when_a_compressed_file_is_not_smaller_than_fp32() -> None:
    """MediaPipe's selfie segmenter (about 100k weights, stored in fp16 by its TFLite source)
    gave an int8 OpenVINO IR of 536 KB next to an fp32 one of 503 KB: the report says so
    rather than letting the user believe int8 made the file smaller."""
    from edgepack.pipeline.validate import not_smaller_than_fp32
    from edgepack.report.model import Artifact

    def art(role: str, size: int, fmt: str = "openvino") -> Artifact:
        return Artifact(role=role, format=fmt, precision="fp32" if role == "reference"
                        else "int8", file=f"m.{role}.{fmt}", size_bytes=size, sha256="0",
                        path=[], signature={})

    warned = not_smaller_than_fp32([art("deliverable", 536 * 1024),
                                    art("reference", 503 * 1024)])
    assert len(warned) == 1
    assert "m.deliverable.openvino (int8) is not smaller than its fp32 reference " \
           "(536.0 KB vs 503.0 KB)" in warned[0]
    assert not_smaller_than_fp32([art("deliverable", 300), art("reference", 503)]) == []
    # a reference in another format is no yardstick for this file
    assert not_smaller_than_fp32([art("deliverable", 536), art("reference", 503, "onnx")]) == []


def test_validation_runs_every_runtime_on_every_core() -> None:
    """LiteRT's own default is one thread: the accuracy fallback's evaluations (hundreds of eval
    samples per attempt) ask for every core instead, and OpenVINO for f32 as the file says."""
    import os

    from edgepack.validate.outputs import exact_options

    for runtime in ("litert", "onnxruntime", "openvino"):
        assert exact_options(runtime).threads == os.cpu_count()
    assert exact_options("litert", 3).threads == 3
    assert exact_options("openvino").precision_hint == "f32"
    assert exact_options("litert").precision_hint is None


def test_outputs_differing_only_by_unit_axes_are_compared() -> None:
    ref = np.arange(12, dtype=np.float32).reshape(4, 1, 3)
    f = compare("y", ref, ref.reshape(4, 3) + 1)
    assert f.mismatch is None and f.max_abs_error == pytest.approx(1.0)


def test_outputs_of_another_size_fail_that_output_without_raising() -> None:
    """A model whose artifact returns other values than the source (here (T, 1, C) against
    (1, T, 2C)) fails that output with what each returned; no reshape error escapes, and the
    budget fails whatever its limits."""
    ref = np.ones((1, 5, 8), np.float32)
    f = compare("logits", ref, np.ones((5, 1, 4), np.float32))
    assert f.mismatch == "the source returns shape (1, 5, 8), the artifact (5, 1, 4)"
    assert f.cosine == 0.0 and f.max_abs_error == 1.0
    v = budget.evaluate("p", Budget(), [f], None, None)
    assert not v.passed and [c.label() for c in v.failures()] == ["output_shape of `logits`"]
    assert fidelity_lines(f) == [(0, "Fidelity `logits`: FAILED, cannot be compared: the "
                                     "source returns shape (1, 5, 8), the artifact (5, 1, 4)")]


def test_a_declared_output_shape_the_model_does_not_return_is_validated_as_returned(
        tmp_path) -> None:
    """The graph declares ``1 x seqlen`` and returns (T, 1, C): a static-batch-1 run over N
    samples joins the runs on the axis of size 1 the model returns (T, N, C), as its dynamic
    twin returns it, and fidelity compares the two."""
    import onnx
    from edgepack.runtimes import get_runtime
    from onnx import TensorProto, helper

    def model(batch: int | str, declared: list) -> str:
        graph = helper.make_graph(
            [helper.make_node("Transpose", ["x"], ["y"], perm=[1, 0, 2])], "seq",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 7, 5])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, declared)])
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        path = tmp_path / f"seq_{batch}.onnx"
        onnx.save(m, path)
        return str(path)

    x = np.random.default_rng(0).standard_normal((4, 7, 5)).astype(np.float32)
    ort = get_runtime("onnxruntime")
    ref = ort.load(model("N", [7, "N", 5])).run({"x": x})["y"]
    out = ort.load(model(1, [1, "seqlen"])).run({"x": x})["y"]
    assert ref.shape == out.shape == (7, 4, 5)
    f = compare("y", ref, out)
    assert f.mismatch is None and f.max_abs_error == 0.0


def test_an_output_batched_on_axis_1_is_compared_per_sample() -> None:
    """An RNN's state [2, N, 3] next to its output [N, 1]: N samples, not 2."""
    rng = np.random.default_rng(0)
    out, state = rng.random((10, 1)), rng.standard_normal((2, 10, 3))
    noisy = state.copy()
    noisy[:, 4] *= -1  # one sample's state flipped: its cosine is -1, the others' 1
    fids = compare_all(["output", "stateN"], [out, state], [out, noisy])
    assert fids[1].samples == 10 and fids[1].cosine == pytest.approx((9 - 1) / 10)
