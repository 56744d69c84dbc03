"""Each validation metric against a value computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from edgepack.profiles import Budget
from edgepack.validate import accuracy, budget
from edgepack.validate.fidelity import compare, topk_overlap
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
