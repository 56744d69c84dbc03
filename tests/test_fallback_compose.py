"""The accuracy fallback composes what helps and ships the best attempt overall.

The ranking is a pure function (pipeline/fallback_rank.py), tested on plain records; the
composition on a real build of the digits example through ONNX Runtime, with a budget no
int8 file meets, so every kind of attempt runs (tests/test_compress.py has the report's line on
what float layers buy per ms).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from edgepack.config.profiles import Quantization
from edgepack.pipeline.fallback_changes import CHEAP_FIXES
from edgepack.pipeline.fallback_rank import Scored, best, dominates
from edgepack.validate.attempts import FallbackAttempt, latency_trade


def _scored(agreement: float, cosine: float, size: int, floats: int = 0,
            passed: bool = False, **kw: Any) -> Scored:
    margins = {"top1_agreement": agreement - 0.97, "cosine": cosine - 0.99}
    # each miss in units of the error its limit allows (validate/budget.py)
    shortfall = 0.0 if passed else (max(0.0, (1 - agreement) / 0.03 - 1)
                                    + max(0.0, (1 - cosine) / 0.01 - 1))
    return Scored(passed, shortfall, size, floats, margins, **kw)


def test_a_dominated_attempt_is_never_shipped() -> None:
    """The issue's case: percentile calibration at 0.80 agreement and cosine 0.980 beats a
    float-layer attempt at 0.73 and 0.979 on both measures and size, though the latter's
    summed shortfall alone would rank it closer (its agreement shortfall counts less than
    its cosine one here): the dominated one is not shipped."""
    percentile = _scored(0.80, 0.980, 1000)
    floats = Scored(False, 0.0, 1100, 3, {"top1_agreement": 0.73 - 0.97,
                                               "cosine": 0.979 - 0.99})
    assert dominates(percentile, floats) and not dominates(floats, percentile)
    assert best([floats, percentile]) == 1
    # not dominated (better agreement, worse cosine): the closer one wins
    assert best([_scored(0.96, 0.985, 1000), _scored(0.90, 0.989, 1000)]) == 0


def test_ties_go_to_the_smaller_then_the_faster_file() -> None:
    """Equal readings: the 1.029x file ships, not the 1.092x one; at equal size the one with
    fewer float layers; every one equal: the earlier attempt."""
    assert best([_scored(0.95, 0.99, 1092, 4), _scored(0.95, 0.99, 1029, 6)]) == 1
    assert best([_scored(0.95, 0.99, 1000, 4), _scored(0.95, 0.99, 1000, 2)]) == 1
    assert best([_scored(0.95, 0.99, 1000, 2), _scored(0.95, 0.99, 1000, 2)]) == 0


def test_passing_attempts_come_first_and_the_cheapest_of_them() -> None:
    """A passing attempt beats any failing one; among passing ones the smaller file wins even
    when a bigger one reads better; a rejected attempt is never chosen."""
    attempts = [_scored(0.96, 0.995, 1000), _scored(0.99, 0.999, 1300, 8, passed=True),
                _scored(0.975, 0.991, 1100, 2, passed=True),
                _scored(1.0, 1.0, 1000, 1, passed=True, rejected=True)]
    assert best(attempts) == 2
    assert best([_scored(1.0, 1.0, 1, rejected=True)]) is None


def test_an_mse_profile_does_not_try_percentile() -> None:
    """Percentile clipping only approximates what mse searches for: a profile already on mse
    (or on percentile) skips it; on min/max it is tried."""
    percentile = next(change for what, _, change in CHEAP_FIXES
                      if what == "percentile calibration")
    for method, tried in (("minmax", True), ("mse", False), ("percentile", False)):
        q = Quantization.model_validate({"calibration": {"method": method}})
        assert (percentile(q) is not None) is tried, method


def test_the_latency_trade_is_stated_per_ms() -> None:
    """Agreement gained per ms lost, against plain int8; no line for plain int8 shipped."""
    plain = FallbackAttempt([], False, 1000, {"top1_agreement": 0.90}, p50_ms=2.0)
    shipped = FallbackAttempt(["a", "b"], True, 1050, {"top1_agreement": 0.98}, chosen=True,
                              p50_ms=2.5, order="first")
    assert latency_trade([plain, shipped]) == (
        "top1_agreement gained per ms of host latency lost: +0.16 (+0.08 for +0.500 ms "
        "p50 over plain int8's 2.000 ms)")
    plain.chosen, shipped.chosen = True, False
    assert latency_trade([plain, shipped]) is None


PROFILE = """
name: int8-exact
title: per-tensor int8 that must match float almost exactly
precision: int8
formats: [onnx]
# 100 of the example's 200 calibration samples: percentile helps, twice the samples on top
# of it too, and the second round finds the file closer without percentile again
quantization: {per_channel: false, calibration: {method: minmax, samples: 100, seed: 0}}
budget: {min_cosine: 0.9999999}
fallback_max_size_growth: 1.5
# the digits CNN is no transformer: no attempt quantizes its activations at run time
fallback_dynamic: true
"""


@pytest.fixture(scope="module")
def composed(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, Any], Path]:
    """The digits example built for an ONNX board with per-tensor min/max int8 and a cosine no
    int8 file reaches: (exit code, its int8 artifact in report.json, the output folder)."""
    from click.testing import CliRunner
    from edgepack.cli import cli

    from tests.conftest import EXAMPLE
    from tests.test_compress import TARGET

    tmp = tmp_path_factory.mktemp("compose")
    (tmp / "t").mkdir()
    (tmp / "t" / "onnx-board.yaml").write_text(TARGET.format(name="onnx-board",
                                                             profile="int8-exact"))
    (tmp / "p").mkdir()
    (tmp / "p" / "int8-exact.yaml").write_text(PROFILE)
    out = tmp / "out"
    res = CliRunner().invoke(cli, ["--targets-dir", str(tmp / "t"), "--profiles-dir",
                                   str(tmp / "p"), "build", str(EXAMPLE), "-t", "onnx-board",
                                   "-o", str(out), "--runs", "3"])
    art = next(a for a in json.loads((out / "report.json").read_text())["artifacts"]
               if a["role"] == "deliverable")
    return res.exit_code, art, out


@pytest.mark.slow
def test_a_change_that_helps_stays_in_the_later_attempts(composed: Any) -> None:
    """Before any layer is float, each change (a cheap fix, a kind of op in float) is toggled
    on the best recipe so far: one that brings the file closer (a higher cosine, or the same
    in a smaller file) stays, in or out, in every later attempt, the float-layer searches
    included; one that does not is left as it was. Round after round: a fix is tried again
    once the recipe changed."""
    code, art, _ = composed
    plain, *rest = art["fallback"]
    first = next(i for i, a in enumerate(rest) if a["kept_float"])
    toggles = rest[:first]
    floats = [a for a in rest[first:] if a["kept_float"] and "change" not in a]
    assert code == 3 and toggles and floats, art["fallback"]
    best, holds = (plain["cosine"], -plain["size_bytes"]), []
    for a in toggles:
        # what the attempt holds besides its change: a change taken out is held no more
        held = [f for f in holds if f"without {f}" != a["change"]]
        assert sorted(a.get("based_on", [])) == sorted(held), art["fallback"]
        if (a["cosine"], -a["size_bytes"]) > best:
            best, change = (a["cosine"], -a["size_bytes"]), a["change"]
            holds = [f for f in holds if f"without {f}" != change] \
                if change.startswith("without ") else [*holds, change]
    assert holds, "no change helped this build: the test shows nothing"
    tried = [a["change"] for a in toggles]
    # drawn again from the calibration file, which holds more than the profile takes
    assert "twice the calibration samples" in holds, art["fallback"]
    assert len(set(tried)) < len(tried), "no second round: the test shows nothing"
    assert all(sorted(a.get("based_on", [])) == sorted(holds) for a in floats), art["fallback"]


@pytest.mark.slow
def test_the_shipped_attempt_is_dominated_by_none(composed: Any) -> None:
    """No attempt reads at least as well as the shipped one at no greater size without
    being its equal, and on a tie the smaller file ships; the file shipped is the shipped
    attempt's, not the last attempt's."""
    code, art, _ = composed
    chosen = [a for a in art["fallback"] if a.get("chosen")]
    assert len(chosen) == 1
    shipped = chosen[0]
    for a in art["fallback"]:
        if a is shipped or "rejected" in a:
            continue
        assert not (a["cosine"] > shipped["cosine"] and a["size_bytes"] <= shipped["size_bytes"])
        assert not (a["cosine"] >= shipped["cosine"] and a["size_bytes"] < shipped["size_bytes"])
    assert art["fidelity"][0]["cosine"] == pytest.approx(shipped["cosine"], abs=1e-6)
