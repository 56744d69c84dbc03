"""The accuracy-aware fallback: an int8 artifact over budget is quantized again, composing
what helps, until one meets the budget.

Plain int8 that runs slower than its fp32 reference first has the kinds of int8 op its runtime
runs slowly kept in float (fallback_speed.py; not for a transformer over budget, which goes
dynamic); every attempt starts from that. The artifact
is then measured against the profile's budget on the eval set. If it is over, the cheap fixes
come first (per-channel weights, percentile calibration where the tool has it and the
profile's method is not already a better one, twice the calibration samples):
each costs nothing in size or speed, and one that brings the file closer stays in the recipe
the later attempts start from; then the residual adds and elementwise products, a kind at a
time, in float (fallback_kinds.py: no weights, so no size). If none is enough, the kinds of
attempt of fallback_search.py keep layers in float with the format's own mechanism (ONNX
Runtime ``nodes_to_exclude``, the TFLite quantizer's denylist, NNCF's ignored scope), or
give them 16-bit activations where the target's runtime runs those fast, the fewest that
meet the budget, on that recipe. Still over, each cheap fix and each float kind is judged
again on the best attempt's layers (kept ones taken out, the others put in): what a change
does to plain int8 does not say what it does once layers are float. What ships is the best
attempt overall (fallback_rank.py): passing ones first and the cheapest of them, else the
closest, never one another attempt beats on every measure. Every attempt (what it changed,
what it started from, what it measured, its size) is recorded for the report, so a user sees
the price of the accuracy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial

from ..compress.transformer import file_graph, resolve
from ..config.profiles import Quantization
from ..converters.converter import ConvertedFile
from ..errors import ConversionError, first_line
from ..validate.attempts import DYNAMIC_FIX, kind_fix
from .fallback_attempts import FallbackSetup, Ledger, Recipe, Tried, artifact_bytes
from .fallback_kinds import ACCURACY_KINDS, kind_toggled, kinds_in_float
from .fallback_search import ATTEMPT_KINDS, Start
from .fallback_speed import faster_int8


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


def fit_budget(setup: FallbackSetup, produced: ConvertedFile,
               reference: ConvertedFile) -> ConvertedFile:
    """``produced`` if within budget; else the best attempt of the fallback (or, when none
    meets the budget, the one closest to it: the budget gate then fails the build and the
    recorded attempts explain why)."""
    ledger = Ledger(setup, plain_size=artifact_bytes(produced.path))
    quant = setup.profile.quantization
    transformer = quant is not None and resolve(
        quant.model_type, file_graph(setup.fmt, reference.path)) == "transformer"
    recipe, speed_notes = Recipe(quant), []
    if not (transformer and setup.profile.fallback_dynamic
            and not setup.meter.verdict(produced)[0].passed):
        # a transformer over budget goes dynamic next, which drops static int8's float kinds:
        # timing them would be wasted (MiniLM's TFLite: 12 kinds, the build took twice as long)
        produced, recipe, speed_notes = faster_int8(setup, produced, reference, recipe)
    plain = ledger.record(produced, recipe)
    if plain.attempt.passed:
        produced.notes += speed_notes
        return produced
    _cheap_fixes(ledger)
    if not transformer and setup.calibration is not None:
        kinds_in_float(ledger)
    notes = _dynamic(ledger, transformer)
    # what the speed step's float kinds added to plain int8 is spent from the allowance
    start = Start(ledger, ledger.best(), reference,
                  setup.profile.fallback_max_size_growth * ledger.plain_bytes
                  - plain.attempt.size_bytes, transformer)
    if not ledger.passed and setup.calibration is None:
        start.notes.append("over budget, and no calibration data to quantize again with "
                           "layers kept in float")
    elif not ledger.passed:
        for kind in ATTEMPT_KINDS:
            kind.run(start)
            if ledger.passed:
                break
        notes += _changes_judged_again(ledger, transformer)
    chosen = ledger.best()
    shipped = ledger.ship(chosen)
    if chosen.recipe.wide_layers or chosen.recipe.precision != "int8":
        shipped.plain_int8 = plain.kept
    shipped.notes += [*speed_notes, *notes, *start.notes,
                      _shipped_note(ledger, chosen, start.ranked_count)]
    return shipped


def _cheap_fixes(ledger: Ledger) -> None:
    """Each quantization change that costs nothing in size or speed, tried on the best recipe
    so far (one that helped stays in), until one meets the budget."""
    setup = ledger.setup
    if setup.profile.quantization is None:
        return
    for what, formats, change in CHEAP_FIXES:
        base = ledger.best().recipe
        quant = _fixed(setup, base.quantization, what, formats, change)
        if quant is None:
            continue
        tried = ledger.attempt(replace(base, quantization=quant, fixes=(*base.fixes, what)),
                               what, change=what)
        if tried.attempt.passed:
            return


def _fixed(setup: FallbackSetup, quant: Quantization, what: str, formats: tuple[str, ...],
           change: Callable[[Quantization], Quantization | None]) -> Quantization | None:
    """``quant`` with the cheap fix ``what``; None where there is no calibration data, it is
    not this format's tool's knob, is so already, or (twice the samples) the calibration set
    has no more to take."""
    if setup.fmt not in formats or setup.calibration is None:
        return None
    if what.startswith("twice") and len(setup.calibration) <= quant.calibration.samples:
        return None
    return change(quant)


def _changes_judged_again(ledger: Ledger, transformer: bool) -> list[str]:
    """Each cheap fix and each kind of weightless op in float judged again on the best
    attempt, layers and all, while none meets the budget: a change kept is taken out, one
    left out is put in, one attempt each. A change is kept or left on what it does before
    any layer is float, and once layers are float it can do the opposite (docs/benchmarks.md:
    mse calibration helped silero-vad's plain int8 and cost its layer search the pass; float
    ADDs brought nudenet's TFLite closer and cost its first 4 float layers the pass). The
    notes: an attempt that could not be made."""
    best, setup = ledger.best(), ledger.setup
    if ledger.passed or best.recipe.precision != "int8" or not best.recipe.wide_layers:
        return []
    kinds = () if transformer or setup.calibration is None else ACCURACY_KINDS.get(setup.fmt, ())
    toggles = [*((what, partial(_fix_toggled, setup, best.recipe, what))
                 for what, _, _ in CHEAP_FIXES),
               *((kind_fix(k), partial(kind_toggled, ledger, best, k)) for k in kinds)]
    for what, toggled in toggles:
        recipe = toggled()
        if recipe is None or ledger.find(recipe) is not None:
            continue
        change = ("without " if what in best.recipe.fixes else "") + what
        try:
            tried = ledger.attempt(recipe, f"the best attempt's layers, {change}",
                                   change=change, order=best.attempt.order,
                                   first_layers=best.attempt.first_layers)
        except ConversionError as exc:  # the attempts made stand
            return [f"accuracy fallback: the best attempt's layers {change} could not be "
                    f"made: {exc.bare}"]
        if tried.attempt.passed:
            break
    return []


def _fix_toggled(setup: FallbackSetup, recipe: Recipe, what: str) -> Recipe | None:
    """``recipe`` with the cheap fix ``what`` taken out where it holds it, else put in; None
    where the profile has no quantization or the fix cannot be made (``_fixed``)."""
    profile = setup.profile.quantization
    fixes = tuple(f for f in recipe.fixes if f != what) if what in recipe.fixes \
        else (*recipe.fixes, what)
    quant: Quantization | None = profile
    for fix, formats, change in CHEAP_FIXES:  # the fixes in the order first tried
        if fix in fixes and quant is not None:
            quant = _fixed(setup, quant, fix, formats, change)
    return None if quant is None else replace(recipe, quantization=quant, fixes=fixes)


def _dynamic(ledger: Ledger, transformer: bool) -> list[str]:
    """A transformer's activations quantized at run time (int8 weights, each activation's
    range taken per inference), tried on the best recipe so far where static int8 missed and
    the profile allows it; the layer searches then start from it if it is the best. Static
    ranges fail a transformer where a CNN's hold: one range per tensor for every sentence
    length and every outlier channel, and float softmax and normalization between int8
    products that cost more than they save (MiniLM's static int8 TFLite: cosine 0.64, 0.26x
    fp32's speed; dynamic: 0.993, faster than fp32). The notes: why it was not made."""
    if ledger.passed or not ledger.setup.profile.fallback_dynamic or not transformer:
        return []
    base = ledger.best().recipe
    # the speed step's kinds were timed in static int8
    recipe = replace(base, precision="dynamic-int8", fixes=(*base.fixes, DYNAMIC_FIX),
                     speed_float=())
    try:
        ledger.attempt(recipe, "activations quantized at run time", change=DYNAMIC_FIX)
    except ConversionError as exc:  # the static files stand: this is one more attempt
        return [f"accuracy fallback: {DYNAMIC_FIX} not made: {first_line(str(exc))}"]
    return []


def _shipped_note(ledger: Ledger, chosen: Tried, ranked: int) -> str:
    """What the fallback shipped and why: the fixes and layers it holds, whether it meets the
    budget, and the last attempt the size allowance rejected."""
    a, fixes = chosen.attempt, chosen.recipe.fixes
    with_fixes = f" with {' and '.join(fixes)}" if fixes else ""
    if a.int16_layers:
        first = (f", the first {a.first_layers} layer(s) kept in float "
                 f"({', '.join(a.kept_float)})" if a.first_layers else "")
        text = (f"accuracy fallback: {len(a.int16_layers)} ranked layer(s) given 16-bit "
                f"activations with int8 weights (the target's 16x8 kernels){with_fixes} "
                f"({', '.join(a.int16_layers)}){first}"
                + ("" if a.passed else "; still over budget, the closest attempt shipped"))
    elif not a.kept_float:
        what = (f"accuracy fallback: {' and '.join(fixes)}" if fixes
                else "accuracy fallback: plain int8")
        verb = " brought it within budget" if a.passed else \
            " shipped, still over budget: the closest attempt"
        text = what + verb
    else:
        how = (f"the first {len(a.kept_float)} layer(s) in execution order" if a.order == "first"
               else f"the first {a.first_layers} layer(s) in execution order and "
               f"{len(a.kept_float) - a.first_layers} of {ranked} ranked layer(s)"
               if a.first_layers else f"{len(a.kept_float)} of {ranked} ranked layer(s)")
        text = (f"accuracy fallback: {how} kept in float{with_fixes} "
                f"({', '.join(a.kept_float)})"
                + ("" if a.passed else "; still over budget, the closest attempt shipped"))
    rejected = [t.attempt for t in ledger.tried if t.attempt.rejected is not None]
    if rejected:
        last = rejected[-1]
        held = f"{len(last.kept_float)} float layer(s)" if last.kept_float else last.change
        text += f"; the attempt with {held} was rejected: {last.rejected}"
    return text
