"""The accuracy fallback's changes that cost no size: the cheap fixes of the quantization
(per-channel weights, percentile calibration, twice the calibration samples) and the kinds of
weightless op kept float (fallback_kinds.py), composed on the best recipe before any layer is
kept float and judged again on the best attempt's layers after.

Each change is a toggle of a recipe: one it holds is taken out, one it lacks is put in. What a
change does depends on the rest of the recipe, so one round in a fixed order does not find
what composes (MediaPipe pose's ONNX: percentile calibration cost plain int8 0.42 -> 0.27 on
its worst output; with its residual adds float it helped, 0.56 -> 0.92 with layers, and the
first round had dropped it before the adds went float, docs/benchmarks.md). So the toggles run
round after round on the best recipe so far while a round changes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial

from ..config.profiles import Quantization
from ..errors import ConversionError
from ..validate.attempts import kind_fix
from .fallback_attempts import FallbackSetup, Ledger, Recipe, Tried
from .fallback_kinds import ACCURACY_KINDS, kind_toggled

#: rounds of toggles before any layer is kept float: each round is at most one attempt per
#: change, and a round that leaves the best recipe as it was ends them
ROUNDS = 3


def _percentile(q: Quantization) -> Quantization | None:
    """Percentile calibration, unless the profile already sets it or mse (a search of the
    clipping range that minimizes the error, which percentile only approximates)."""
    if q.calibration.method in ("percentile", "mse"):
        return None
    return q.model_copy(update={
        "calibration": q.calibration.model_copy(update={"method": "percentile"})})


#: (what, formats whose tool honours it, how the quantization changes: None when already so)
CHEAP_FIXES: list[tuple[str, tuple[str, ...], Callable[[Quantization], Quantization | None]]] = [
    ("per-channel weights", ("tflite", "onnx"),
     lambda q: None if q.per_channel else q.model_copy(update={"per_channel": True})),
    ("percentile calibration", ("tflite", "onnx", "openvino"), _percentile),
    ("twice the calibration samples", ("tflite", "onnx", "openvino"),
     lambda q: q.model_copy(update={"calibration": q.calibration.model_copy(
         update={"samples": 2 * q.calibration.samples})})),
]

#: a change named, and the recipe of an attempt with it toggled (None: it cannot be made)
Toggle = tuple[str, Callable[[Tried], Recipe | None]]


def changes(ledger: Ledger, transformer: bool) -> list[Toggle]:
    """The cheap fixes, then the kinds of weightless op in float (not for a transformer, whose
    recipe keeps its residual adds float already, nor without calibration data)."""
    setup = ledger.setup
    kinds = () if transformer or setup.calibration is None else ACCURACY_KINDS.get(setup.fmt, ())
    return [*((what, partial(_fix_toggled, setup, what=what)) for what, _, _ in CHEAP_FIXES),
            *((kind_fix(k), partial(kind_toggled, ledger, kind=k)) for k in kinds)]


def compose(ledger: Ledger, transformer: bool) -> None:
    """Each change toggled on the best recipe so far (one that brings the file closer stays,
    in or out), round after round while a round changes the best, until one meets the
    budget."""
    toggles = changes(ledger, transformer)
    for _ in range(ROUNDS):
        before = ledger.best()
        for what, toggled in toggles:
            if ledger.passed:
                return
            best = ledger.best()
            recipe = toggled(best)
            if recipe is not None and ledger.find(recipe) is None:
                change = _said(what, best)
                ledger.attempt(recipe, change, change=change)
        if ledger.best() is before:
            return


def judged_again(ledger: Ledger, transformer: bool) -> list[str]:
    """Each change toggled on the best attempt, layers and all, while none meets the budget,
    round after round while a round changes the best (as ``compose``). A change is kept or
    left on what it does before any layer is float, and once layers are float it can do the
    opposite (docs/benchmarks.md: mse calibration helped silero-vad's plain int8 and cost its
    layer search the pass; float ADDs brought nudenet's TFLite closer and cost its first 4
    float layers the pass); and one that helps there changes what the others do (the
    selfie segmenter's OpenVINO: float Multiply on the best layers 0.968 -> 0.976, then its
    Adds back in int8 on that 0.977). The notes: an attempt that could not be made."""
    for _ in range(ROUNDS):
        before = ledger.best()
        for what, toggled in changes(ledger, transformer):
            best = ledger.best()
            if ledger.passed or best.recipe.precision != "int8" or not best.recipe.wide_layers:
                return []
            recipe = toggled(best)
            if recipe is None or ledger.find(recipe) is not None:
                continue
            change = _said(what, best)
            try:
                ledger.attempt(recipe, f"the best attempt's layers, {change}", change=change,
                               order=best.attempt.order, first_layers=best.attempt.first_layers)
            except ConversionError as exc:  # the attempts made stand
                return [f"accuracy fallback: the best attempt's layers {change} could not be "
                        f"made: {exc.bare}"]
        if ledger.best() is before:
            break
    return []


def _said(what: str, tried: Tried) -> str:
    """The change ``what`` toggled on ``tried``, as the report names it."""
    return ("without " if what in tried.recipe.fixes else "") + what


def _fix_toggled(setup: FallbackSetup, tried: Tried, what: str) -> Recipe | None:
    """``tried``'s recipe with the cheap fix ``what`` taken out where it holds it, else put
    in; None where the profile has no quantization or the fix cannot be made (``_fixed``)."""
    recipe = tried.recipe
    fixes = tuple(f for f in recipe.fixes if f != what) if what in recipe.fixes \
        else (*recipe.fixes, what)
    quant: Quantization | None = setup.profile.quantization
    for fix, formats, change in CHEAP_FIXES:  # the fixes in the order first tried
        if fix in fixes and quant is not None:
            quant = _fixed(setup, quant, fix, formats, change)
    return None if quant is None else replace(recipe, quantization=quant, fixes=fixes)


def _fixed(setup: FallbackSetup, quant: Quantization, what: str, formats: tuple[str, ...],
           change: Callable[[Quantization], Quantization | None]) -> Quantization | None:
    """``quant`` with the cheap fix ``what``; None where there is no calibration data, it is
    not this format's tool's knob, is so already, or (twice the samples) the calibration set
    has no more to take."""
    if setup.fmt not in formats or setup.calibration is None:
        return None
    if what.startswith("twice") and setup.calibration_rows() <= quant.calibration.samples:
        return None
    return change(quant)
