"""Which kinds of int8 op the speed step keeps in float (pipeline/fallback_speed.py
``choose_kinds``), decided on given timings.

The step's end-to-end test (test_tflite_sources.py) times real files, whose noise no test can
fix in place; the decision itself is checked here on a file whose time is a product of each
kind's saving, the same in every round.
"""

from __future__ import annotations

import numpy as np
from edgepack.pipeline.fallback_speed import (
    ROUNDS,
    SLOWER,
    KindChoice,
    SpeedVerdict,
    Timing,
    choose_kinds,
)


class Product:
    """A file that runs in ``plain_ms`` times each float kind's share; fp32 runs in
    ``fp32_ms``. ``unmakeable``: kinds whose file the quantizer or the size allowance refuses."""

    def __init__(self, plain_ms: float, fp32_ms: float, shares: dict[str, float],
                 unmakeable: tuple[str, ...] = ()):
        self.plain_ms, self.fp32_ms, self.shares = plain_ms, fp32_ms, shares
        self.unmakeable = unmakeable
        self.kept: list[str] = []
        self.best_ms = plain_ms
        self.timed: list[list[str]] = []
        self._last: tuple[list[str], float] | None = None

    def _ms(self, kinds: list[str]) -> float:
        return self.plain_ms * float(np.prod([self.shares[k] for k in kinds]))

    def slower(self) -> bool:
        return self.best_ms >= SLOWER * self.fp32_ms

    def time(self, kinds: list[str]) -> Timing | None:
        self.timed.append(list(kinds))
        if any(k in self.unmakeable for k in kinds):
            return None
        ms = self._ms([*self.kept, *kinds])
        self._last = (kinds, ms)
        return Timing(np.full(ROUNDS, ms), np.full(ROUNDS, self.best_ms))

    def keep(self) -> None:
        assert self._last is not None
        kinds, self.best_ms = self._last
        self.kept += kinds


def test_a_kind_clearly_faster_in_float_stays_and_one_that_is_not_goes() -> None:
    file = Product(10.0, 4.0, {"TRANSPOSE_CONV": 0.5, "ADD": 1.0, "PAD": 1.02})
    assert choose_kinds(["TRANSPOSE_CONV", "ADD", "PAD"], file).alone == ["TRANSPOSE_CONV"]
    assert file.best_ms == 5.0


def test_kinds_that_each_save_a_little_are_kept_together() -> None:
    """Seven kinds at 0.93 each: none passes 0.9 alone, all seven run the file in 0.60 of
    its time (MediaPipe's selfie segmenter's ONNX, about 10% a kind)."""
    kinds = [f"K{i}" for i in range(7)]
    file = Product(10.0, 4.0, {**dict.fromkeys(kinds, 0.93), "Neutral": 1.0})
    choice = choose_kinds([*kinds[:3], "Neutral", *kinds[3:]], file)
    assert choice.alone == [] and choice.together == kinds
    assert file.timed[-1] == kinds  # the group, without the kind that saved nothing
    assert np.isclose(file.best_ms, 10.0 * 0.93 ** 7)
    verdict = SpeedVerdict(10.0, 4.0, file.best_ms, "onnxruntime 1.32.0",
                           chosen={"TRANSPOSE_CONV": 1, **dict.fromkeys(kinds, 2)},
                           together=kinds)
    (note,) = verdict.notes(1.5)
    assert "(TRANSPOSE_CONV x1; together, each too small a gain alone: K0 x2, K1 x2" in note


def test_near_misses_that_are_not_faster_together_stay_int8() -> None:
    file = Product(10.0, 4.0, {"A": 0.96, "B": 0.96, "C": 1.1})
    assert choose_kinds(["A", "B", "C"], file).kinds == []
    assert file.timed == [["A"], ["B"], ["C"], ["A", "B"]]
    assert file.best_ms == 10.0


def test_the_search_stops_once_the_file_is_no_longer_the_slower() -> None:
    """Each further kind costs a quantization: none is tried after the file beats fp32 by
    less than the step's margin, and no group either."""
    file = Product(10.0, 6.0, {"A": 0.6, "B": 0.95, "C": 0.95, "D": 0.5})
    assert choose_kinds(["A", "B", "C", "D"], file) == KindChoice(["A"], [])
    assert file.timed == [["A"]]


def test_a_kind_that_cannot_be_made_is_passed_over() -> None:
    file = Product(10.0, 4.0, {"A": 0.94, "B": 0.5, "C": 0.94}, unmakeable=("B",))
    assert choose_kinds(["A", "B", "C"], file).kinds == ["A", "C"]


def test_kinds_not_faster_when_timed_again_are_retracted_in_the_note() -> None:
    """A search under a passing load can keep a kind that is no faster when plain int8, the
    kept file and fp32 are timed again together; plain int8 then ships, and the note says
    which kinds only seemed faster (nudenet's ONNX on a loaded host: Sigmoid and MaxPool
    kept, 59.38 ms -> 59.48 ms when timed again)."""
    verdict = SpeedVerdict(59.4, 30.9, 59.4, "onnxruntime", retracted=["Sigmoid", "MaxPool"])
    (note,) = verdict.notes(1.1)
    assert note.startswith("speed: plain int8 runs slower than fp32 on this host")
    assert note.endswith("no kind of int8 op made it faster in float (Sigmoid, MaxPool "
                         "seemed to in the search, not when timed again)")
    assert Timing(np.full(ROUNDS, 59.48), np.full(ROUNDS, 59.38)).faster is False
