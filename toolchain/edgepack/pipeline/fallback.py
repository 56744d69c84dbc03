"""The accuracy-aware fallback: an int8 artifact over budget keeps some layers in float.

After quantizing, the artifact is measured against the profile's budget on the eval set. If it
is over, the cheap fixes come first (per-channel weights, percentile calibration where the tool
has it, twice the calibration samples): each costs nothing in size or speed. If none is enough,
layers are kept in float with the format's own mechanism (ONNX Runtime ``nodes_to_exclude``,
the TFLite quantizer's denylist, NNCF's ignored scope), the fewest that meet the budget: first
the first layers in execution order (one float region at the input, the cheapest kind for a
runtime: compress/layer_order.py), then, if up to 8 of those are not enough, the layers int8
hurts most wherever they are (compress/sensitivity.py). Each search keeps 1, 2, 4, ... layers
until an attempt meets the budget, then bisects the counts between it and the last one that
missed, since every float layer costs speed on the device. Every attempt — which layers, what
it measured, what it cost in size — is recorded for the report, so a user sees the price of
the accuracy."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cache.keys import build_key, model_digest, model_files
from ..cache.records import BuildSteps
from ..compress.layer_order import LAYERS_IN_ORDER
from ..compress.sensitivity import FLOAT_GROWTH, RANKERS, WEIGHT_PARAMS
from ..config.profiles import Profile, Quantization
from ..converters.converter import ConvertedFile, Converter
from ..data.dataset import Dataset
from ..data.layout import in_layouts
from ..errors import first_line
from ..validate import budget as budget_gate
from ..validate.attempts import FallbackAttempt
from ..validate.outputs import AccuracyFn, measure_fidelity
from .context import Yardstick
from .measurement import open_session


@dataclass
class BudgetMeter:
    """Measures an artifact against the source and the profile's budget.

    With ``steps`` and ``key``, an attempt's numbers come from the step cache when the very
    same file was judged on the same data before (a rebuild runs the same attempts); ``key``
    gives None where that must not be trusted (a user metric whose code cannot be located).
    """

    yardstick: Yardstick
    profile: Profile
    accuracy: AccuracyFn
    steps: BuildSteps | None = None
    key: Callable[[ConvertedFile], str | None] | None = None

    def verdict(self, produced: ConvertedFile) -> tuple[budget_gate.BudgetVerdict, dict[str, Any]]:
        """The budget's verdict on ``produced`` and its checks' readings by name."""
        steps, y = self.steps, self.yardstick
        key = self.key(produced) if steps is not None and self.key is not None else None
        hit = steps.fetch_fidelity(key) if steps is not None and key else None
        if hit is not None:
            fidelity, accuracy = hit
        else:
            fidelity, accuracy = measure_fidelity(
                open_session(produced), y.evaluation, y.outputs, y.signature,
                (produced.input_layouts, produced.output_layouts), self.accuracy)
            if steps is not None and key:
                steps.store_fidelity(key, fidelity, accuracy)
        verdict = budget_gate.evaluate(self.profile.name, self.profile.budget, fidelity,
                                       y.accuracy, accuracy, y.floor)
        numbers = {c.name: round(c.value, 6) for c in verdict.checks}
        return verdict, numbers


@dataclass
class FallbackSetup:
    """What every attempt of one format's fallback needs: how to quantize it again (the
    converter, its settings and data, where the file goes) and how to judge the result."""

    converter: Converter
    fmt: str
    profile: Profile
    calibration: Dataset | None
    out_dir: Path
    stem: str
    meter: BudgetMeter
    progress: Any

    def quantize(self, quantization: Quantization | None,
                 keep_float: tuple[str, ...] = ()) -> ConvertedFile:
        return self.converter.produce(self.fmt, "int8", self.out_dir, self.stem, quantization,
                                      self.calibration, keep_float=keep_float)


#: (what, formats whose tool honours it, how the profile's quantization changes)
CHEAP_FIXES: list[tuple[str, tuple[str, ...], Callable[[Quantization], Quantization | None]]] = [
    ("per-channel weights", ("tflite", "onnx"),
     lambda q: None if q.per_channel else q.model_copy(update={"per_channel": True})),
    ("percentile calibration", ("onnx",),
     lambda q: None if q.calibration.method == "percentile" else q.model_copy(update={
         "calibration": q.calibration.model_copy(update={"method": "percentile"})})),
    ("twice the calibration samples", ("tflite", "onnx", "openvino"),
     lambda q: q.model_copy(update={"calibration": q.calibration.model_copy(
         update={"samples": 2 * q.calibration.samples})})),
]


#: how many of the ranked layers the size allowance left out the report names
NAMED_UNAFFORDABLE = 5


def fit_budget(setup: FallbackSetup, produced: ConvertedFile,
               reference: ConvertedFile) -> ConvertedFile:
    """``produced`` if within budget; else the int8 artifact with the fewest float layers that
    is (or, when none is, the attempt closest to the budget: the budget gate then fails the
    build and the recorded attempts explain why)."""
    verdict, numbers = setup.meter.verdict(produced)
    attempts = [FallbackAttempt([], verdict.passed, artifact_bytes(produced.path), numbers)]
    if verdict.passed:
        return produced
    # every attempt writes the file ``produced`` names: plain int8 is kept aside, to rank its
    # layers and to compare the shipped attempt's latency with
    plain = keep_plain(produced.path, setup.converter.workdir / "plain-int8")
    fixed = _cheap_fixes(setup, attempts)
    if fixed is not None:
        return fixed
    restore_plain(plain, produced.path)  # a cheap fix's attempt may have replaced it
    if setup.calibration is None:
        produced.notes.append("over budget, and no calibration data to quantize again with "
                              "layers kept in float")
        produced.fallback = attempts
        return produced
    search = _Search(setup, attempts, artifact_bytes(produced.path), produced,
                     verdict.shortfall())
    return _float_layers(search, plain, produced, reference)


def _cheap_fixes(setup: FallbackSetup,
                 attempts: list[FallbackAttempt]) -> ConvertedFile | None:
    """The first quantization change that costs nothing in size or speed and meets the
    budget (its attempts recorded), or None."""
    quantization, calibration = setup.profile.quantization, setup.calibration
    if quantization is None or calibration is None:
        return None
    for what, formats, change in CHEAP_FIXES:
        quant = change(quantization)
        if setup.fmt not in formats or quant is None or (
                what.startswith("twice") and len(calibration) <= quantization.calibration.samples):
            continue  # not this tool's knob, already so, or no more samples to take
        with setup.progress.step(f"Re-quantizing {setup.fmt} with {what}"):
            candidate = setup.quantize(quant)
            verdict, numbers = setup.meter.verdict(candidate)
        attempts.append(FallbackAttempt([], verdict.passed, artifact_bytes(candidate.path),
                                         numbers, change=what))
        if verdict.passed:
            candidate.notes.append(f"accuracy fallback: {what} brought it within budget")
            candidate.fallback = attempts
            return candidate
    return None


def _float_layers(search: _Search, plain: Path, produced: ConvertedFile,
                  reference: ConvertedFile) -> ConvertedFile:
    """Layers kept in float: first the first ones in execution order (one float region at the
    input, the cheapest kind for a runtime, and where a CNN's int8 error starts), else the
    ones int8 hurts most, wherever they are."""
    setup = search.setup
    allowance = (setup.profile.fallback_max_size_growth - 1) * search.plain_bytes
    order = LAYERS_IN_ORDER.get(setup.fmt)
    first = order(plain)[:MAX_FIRST_LAYERS] if order is not None else []
    fits, left = affordable(setup.fmt, plain, first, allowance)
    search.run(first[:first.index(left[0])] if left else fits, "first")
    ranked: list[str] = []
    unaffordable: list[str] = []
    notes = []
    if not search.passed:  # the ranking reads plain int8's copy: the attempts rewrite its file
        layers, failure = _ranking(setup, plain, produced, reference)
        if failure is not None:
            notes.append(f"over budget; ranking layers failed ({failure}), so no ranked "
                         "layer was kept in float")
        elif layers is None:
            notes.append(f"over budget and no layer ranking for {setup.fmt}")
        else:
            ranked, unaffordable = affordable(setup.fmt, plain, layers, allowance)
            search.run(ranked, "ranked")
    best = search.best
    if not search.best_keep:  # plain int8 is the closest: its kept copy, not a re-quantization
        restore_plain(plain, produced.path)
    elif search.last_keep != search.best_keep:  # every attempt writes one file: make it again
        best = setup.quantize(setup.profile.quantization, keep_float=search.best_keep)
    best.notes += notes
    if unaffordable:
        best.notes.append(unaffordable_note(unaffordable, setup.profile.fallback_max_size_growth))
    return _chosen(search, best, plain, len(ranked))


def _chosen(search: _Search, best: ConvertedFile, plain: Path, ranked: int) -> ConvertedFile:
    """``best`` with its attempt marked chosen, the attempts and a note saying what was kept."""
    attempts = search.attempts
    chosen = next(a for a in attempts if a.change is None
                  and tuple(a.kept_float) == search.best_keep)
    chosen.chosen = True
    kept = chosen.kept_float
    if kept:
        best.plain_int8 = plain
    how = (f"the first {len(kept)} layer(s) in execution order" if chosen.order == "first"
           else f"{len(kept)} of {ranked} ranked layer(s)")
    best.notes.append(
        f"accuracy fallback: {how} kept in float ({', '.join(kept) or 'none'})"
        + ("" if chosen.passed else "; still over budget, the closest attempt shipped")
        + (f"; the attempt with {len(attempts[-1].kept_float)} float layer(s) was rejected: "
           + attempts[-1].rejected if attempts[-1].rejected is not None else ""))
    best.fallback = attempts
    return best


#: how many of the first layers the fallback tries in float before ranking layers: the stem
#: and the first blocks (EfficientNet-Lite0 in ONNX Runtime: 0.87 -> 0.95 agreement with its
#: first 5 convolutions); a model that int8 hurts deeper goes on to the ranked search
MAX_FIRST_LAYERS = 8


class _Search:
    """Attempts with the first k layers of an order kept in float, and the best so far.

    k doubles (1, 2, 4, ...) until an attempt meets the budget, then the counts between it
    and the last one that missed are bisected: every float layer costs speed on the device.
    """

    def __init__(self, setup: FallbackSetup, attempts: list[FallbackAttempt], plain_bytes: int,
                 plain: ConvertedFile, plain_score: tuple[int, float]):
        self.setup, self.attempts, self.plain_bytes = setup, attempts, plain_bytes
        self.best, self.best_keep, self.best_score = plain, (), plain_score
        self.last_keep: tuple[str, ...] = ()  # what the attempts' file holds now
        self.tried: dict[frozenset[str], bool] = {}  # whether each set met the budget
        self.passed = False

    def run(self, layers: list[str], order: str) -> None:
        setup = self.setup
        limit = setup.profile.fallback_max_size_growth
        k, failing = 1, 0
        passing: int | None = None
        while layers:
            keep = tuple(layers[:k])
            passed = self.tried.get(frozenset(keep))  # the other order tried the same layers
            if passed is None:
                self.last_keep = keep
                with setup.progress.step(f"Re-quantizing {setup.fmt} with {len(keep)} layer(s) "
                                         f"kept in float"):
                    candidate = setup.quantize(setup.profile.quantization, keep_float=keep)
                    verdict, numbers = setup.meter.verdict(candidate)
                size = artifact_bytes(candidate.path)
                attempt = FallbackAttempt(list(keep), verdict.passed, size, numbers, order=order)
                self.attempts.append(attempt)
                if size > limit * self.plain_bytes:
                    # so much in float that it is no longer an int8 model: say so, never ship it
                    attempt.passed = False
                    attempt.rejected = (f"{size / self.plain_bytes:.2f}x the size of plain int8 "
                                        f"(profile allows {limit:g}x)")
                    break
                # more float layers do not always help (quantization noise is not additive):
                # the attempt closest to the budget wins, the one with fewer float layers on a tie
                score = verdict.shortfall()
                if score < self.best_score or (score == self.best_score
                                               and len(keep) < len(self.best_keep)):
                    self.best, self.best_keep, self.best_score = candidate, keep, score
                passed = self.tried[frozenset(keep)] = verdict.passed
            if passed:
                passing, self.passed = k, True
            else:
                failing = k
            if passing is None:
                if k >= len(layers):
                    break
                k = min(2 * k, len(layers))
            else:
                if passing - failing <= 1:
                    break
                k = (failing + passing) // 2


def _ranking(setup: FallbackSetup, plain: Path, produced: ConvertedFile,
             reference: ConvertedFile) -> tuple[list[str] | None, str | None]:
    """(the layers of plain int8 ``plain``, worst first (compress/sensitivity.py), from the
    step cache when this very file was ranked before, or None when the format has no ranker;
    why the tool's ranking failed, or None)."""
    ranker = RANKERS.get(setup.fmt)
    if ranker is None or setup.calibration is None:
        return None, None
    quantization, steps = setup.profile.quantization, setup.meter.steps
    settings = quantization.calibration if quantization else None
    samples = in_layouts(setup.calibration.take(min(settings.samples if settings else 32, 32),
                                                settings.seed if settings else 0),
                         setup.meter.yardstick.signature, produced.input_layouts)
    parent = produced.parent or reference.path
    key = None
    if steps is not None:
        key = build_key({"step": "ranking", "format": setup.fmt,
                         "files": [model_digest(p) for p in (parent, reference.path, plain)],
                         "samples": steps.digest(samples),
                         "quantization": quantization.model_dump() if quantization else None})
    layers = steps.fetch_ranking(key) if steps is not None and key else None
    if layers is not None:
        return layers, None
    try:
        with setup.progress.step(f"Ranking {setup.fmt} layers by int8 sensitivity"):
            layers = ranker(parent, reference.path, plain, samples, quantization)
    except Exception as exc:  # noqa: BLE001 (a tool's debugger refusing this graph)
        return None, first_line(exc)
    if steps is not None and key:
        steps.store_ranking(key, layers)
    return layers, None


def unaffordable_note(layers: list[str], limit: float) -> str:
    """The note on ranked layers the size allowance left out, naming the best-ranked few
    (they say what the allowance cost; EfficientNet's TFLite ranking leaves out 39)."""
    more = len(layers) - NAMED_UNAFFORDABLE
    return (f"accuracy fallback: {len(layers)} ranked layer(s) not tried, their float weights "
            f"would grow the file past {limit:g}x plain int8: "
            + ", ".join(layers[:NAMED_UNAFFORDABLE])
            + (f" and {more} lower-ranked" if more > 0 else ""))


def affordable(fmt: str, int8: Path, layers: list[str],
               allowance: float) -> tuple[list[str], list[str]]:
    """(ranked layers whose float weights fit in ``allowance`` bytes together, in rank order;
    the ones left out). A big layer high in the ranking (EfficientNet's 1280x1000 classifier)
    would otherwise end the search with a rejected attempt while smaller layers further down
    fix the accuracy; layers whose size the format cannot tell are assumed free."""
    counter = WEIGHT_PARAMS.get(fmt)
    try:
        params = counter(int8, layers) if counter is not None else {}
    except Exception:  # noqa: BLE001 (a size estimate only orders the search)
        params = {}
    kept, left, spent = [], [], 0
    for name in layers:
        cost = FLOAT_GROWTH * params.get(name, 0)
        if spent + cost > allowance:
            left.append(name)
            continue
        kept.append(name)
        spent += cost
    return kept, left


def keep_plain(path: Path, folder: Path) -> Path:
    """A copy of the plain int8 file(s) in ``folder`` (every attempt rewrites ``path``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in model_files(path):
        shutil.copy2(f, folder / f.name)
    return folder / path.name


def restore_plain(plain: Path, path: Path) -> None:
    """Put the kept plain int8 file(s) back where the attempts write."""
    for f in model_files(plain):
        shutil.copy2(f, path.parent / f.name)


def artifact_bytes(path: Path) -> int:
    """Bytes of a model file with its weights file (an OpenVINO IR is .xml + .bin)."""
    size = path.stat().st_size
    weights = path.with_suffix(".bin")
    return size + weights.stat().st_size if path.suffix == ".xml" and weights.is_file() else size
