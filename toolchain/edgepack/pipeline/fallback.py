"""The accuracy-aware fallback: an int8 artifact over budget is quantized again, composing
what helps, until one meets the budget.

Plain int8 that runs slower than its fp32 reference first has the kinds of int8 op its runtime
runs slowly kept in float (fallback_speed.py; not for a transformer over budget, which goes
dynamic); every attempt starts from that. The artifact is then measured against the
profile's budget on the eval set. If it is over, the changes that cost no size come first
(fallback_changes.py): the cheap fixes (per-channel weights, percentile calibration where the
tool has it and the profile's method is not already a better one, twice the calibration
samples) and the residual adds and elementwise products in float, a kind at a time, each
toggled on the best recipe so far, round after round while a round changes it. If none is
enough, the kinds of attempt of fallback_search.py keep layers in float with the format's
own mechanism (ONNX Runtime ``nodes_to_exclude``, the TFLite quantizer's denylist, NNCF's
ignored scope), or give them 16-bit activations where the target's runtime runs those fast,
the fewest that meet the budget, on that recipe. Still over, each of those changes is judged
again on the best attempt's layers: what a change does to plain int8 does not say what it
does once layers are float. What ships is the best attempt overall (fallback_rank.py):
passing ones first and the cheapest of them, else the closest, never one another attempt
beats on every measure. Every attempt (what it changed, what it started from, what it
measured, its size) is recorded for the report, so a user sees the price of the accuracy."""

from __future__ import annotations

from dataclasses import replace

from ..compress.transformer import file_graph, resolve
from ..converters.converter import ConvertedFile
from ..errors import ConversionError, first_line
from ..validate.attempts import DYNAMIC_FIX
from .fallback_attempts import FallbackSetup, Ledger, Recipe, Tried, artifact_bytes
from .fallback_changes import compose, judged_again
from .fallback_search import ATTEMPT_KINDS, Start
from .fallback_speed import faster_int8


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
    compose(ledger, transformer)
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
        notes += judged_again(ledger, transformer)
    chosen = ledger.best()
    shipped = ledger.ship(chosen)
    if chosen.recipe.wide_layers or chosen.recipe.precision != "int8":
        shipped.plain_int8 = plain.kept
    shipped.notes += [*speed_notes, *notes, *start.notes,
                      _shipped_note(ledger, chosen, start.ranked_count)]
    return shipped


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
