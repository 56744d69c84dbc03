"""The accuracy fallback's kinds of attempt that trade speed or size for accuracy, each tried
from the best recipe so far (the profile's quantization with the cheap fixes that helped).

``ATTEMPT_KINDS`` lists them in the order they are tried, while no attempt meets the budget:
the first layers in execution order kept in float (one float region at the input, the
cheapest kind for a runtime: compress/layer_order.py), then the layers int8 hurts most
wherever they are (compress/sensitivity.py), first given 16-bit activations with int8 weights
where the target's runtime has fast 16x8 kernels (targets/*.yaml ``kernels_int16x8``: the file
stays int8-sized), then kept in float. A kind is a plain class with ``run(start)``. Each layer
search keeps 1, 2, 4, ... layers out of int8 until an attempt meets the budget, then bisects
the counts between it and the last one that missed, since every such layer costs speed on the
device. The ranked searches add to the first layers when those were the best attempt so far:
EfficientNet-Lite1's TFLite (160 eval rows) read 0.956 agreement with its first 4 layers in
float and at best 0.944 with ranked layers alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from ..cache.keys import build_key, model_digest
from ..compress.layer_order import LAYERS_IN_ORDER
from ..compress.sensitivity import FLOAT_GROWTH, RANKERS, WEIGHT_PARAMS
from ..converters.converter import ConvertedFile
from ..data.layout import in_layouts
from ..errors import ConversionError, first_line
from .fallback_attempts import Ledger, Recipe, Tried

#: how many of the first layers the fallback tries in float before ranking layers: the stem
#: and the first blocks (EfficientNet-Lite0 in ONNX Runtime: 0.87 -> 0.95 agreement with its
#: first 5 convolutions); a model that int8 hurts deeper goes on to the ranked search
MAX_FIRST_LAYERS = 8

#: how many of the ranked layers the size allowance left out the report names
NAMED_UNAFFORDABLE = 5


@dataclass
class Start:
    """Where the kinds of attempt start: the best attempt after the changes that cost no size
    (its recipe, its int8 file, whose layers are read and ranked), the fp32 reference, and
    the bytes of float weights the profile's size allowance leaves; the notes the kinds leave
    for the shipped file."""

    ledger: Ledger
    base: Tried
    reference: ConvertedFile
    allowance: float
    #: the model is a transformer (compress/transformer.py), the profile's model type or found
    transformer: bool = False
    notes: list[str] = field(default_factory=list)
    #: how many ranked layers fit the allowance (the shipped note says "k of n")
    ranked_count: int = 0
    #: the ranking, once made: (layers or None,)
    _ranking: tuple[list[str] | None] | None = field(default=None, init=False, repr=False)

    @property
    def recipe(self) -> Recipe:
        return replace(self.base.recipe, keep_float=(), int16_layers=())

    def ranked_after_first(self) -> tuple[tuple[str, ...], list[str] | None]:
        """(the float layers of the best attempt so far when it is a first-layers one (it beat
        every cheap fix and plain int8), which the ranked searches keep and add to; the ranked
        layers without them, or None as ``ranked`` says)."""
        best = self.ledger.best()
        first = best.recipe.keep_float if best.attempt.order == "first" else ()
        layers = self.ranked()
        return first, None if layers is None else [n for n in layers if n not in first]

    def ranked(self) -> list[str] | None:
        """The base file's layers, worst first, ranked once for every kind that reads them;
        None (with a note saying why) when the format has no ranker or the ranking failed."""
        if self._ranking is None:
            layers, failure = _ranking(self)
            if failure is not None:
                self.notes.append(f"over budget; ranking layers failed ({failure}), so no "
                                  "ranked layer was kept in float")
            elif layers is None:
                self.notes.append(f"over budget and no layer ranking for "
                                  f"{self.ledger.setup.fmt}")
            self._ranking = (layers,)
        return self._ranking[0]


class AttemptKind(Protocol):
    """One kind of attempt: it makes its attempts through ``start.ledger``."""

    def run(self, start: Start) -> None: ...


class FirstLayersInFloat:
    """The first layers in execution order in float: one float region at the input, where a
    CNN's int8 error starts. Not for a transformer, whose error is not at its input (its
    first layers are an embedding lookup and a normalization; MiniLM's ONNX with its first
    1 to 8 layers in float: four attempts that changed nothing): the ranked search finds
    its layers wherever they are."""

    def run(self, start: Start) -> None:
        if start.transformer:
            return
        fmt, file = start.ledger.setup.fmt, start.base.kept
        order = LAYERS_IN_ORDER.get(fmt)
        first = order(file)[:MAX_FIRST_LAYERS] if order is not None else []
        fits, left = affordable(fmt, file, first, start.allowance)
        bisect(start, first[:first.index(left[0])] if left else fits, "first")


class RankedLayersInFloat:
    """The layers int8 hurts most in float, wherever they are, as many as the size allowance
    pays for."""

    def run(self, start: Start) -> None:
        first, layers = start.ranked_after_first()
        if layers is None:
            return
        setup = start.ledger.setup
        # the first layers' float weights are spent from the allowance before any ranked one
        fits, unaffordable = affordable(setup.fmt, start.base.kept, [*first, *layers],
                                        start.allowance)
        ranked = [n for n in fits if n not in first]
        if unaffordable:
            start.notes.append(unaffordable_note(unaffordable,
                                                 setup.profile.fallback_max_size_growth))
        start.ranked_count = len(ranked)
        bisect(start, ranked, "ranked", first=first)


class RankedLayersInt16:
    """The layers int8 hurts most given 16-bit activations with int8 weights (LiteRT's 16x8
    kernels), only where the target's runtime runs those about as fast as int8: elsewhere
    (XNNPACK) they run on reference kernels, slower than the same layer in float. The weights
    stay int8, so no size allowance applies."""

    def run(self, start: Start) -> None:
        if not start.ledger.setup.int16x8:
            return
        first, layers = start.ranked_after_first()
        if layers is not None:
            bisect(start, layers, "ranked", widen="int16_layers", first=first)


#: the kinds of attempt, in the order tried while no attempt meets the budget
ATTEMPT_KINDS: list[AttemptKind] = [FirstLayersInFloat(), RankedLayersInt16(),
                                    RankedLayersInFloat()]

#: how a layer search takes layers out of int8: the Recipe field it fills -> the progress line
WIDENINGS = {"keep_float": "kept in float", "int16_layers": "given 16-bit activations"}


def bisect(start: Start, layers: list[str], order: str, widen: str = "keep_float",
           first: tuple[str, ...] = ()) -> None:
    """Attempts with the first k of ``layers`` out of int8 (``widen``: a field of
    ``WIDENINGS``), on top of the ``first`` layers kept in float: k doubles until one meets
    the budget, then the counts between it and the last that missed are bisected. A set of
    layers tried before (by the other order) is not quantized again; an attempt over the size
    allowance, or one its quantizer cannot make, ends the search."""
    ledger = start.ledger
    base = replace(start.recipe, keep_float=first)
    after = f" after the first {len(first)} in float" if first else ""
    k, failing = 1, 0
    passing: int | None = None
    while layers:
        recipe = replace(base, **{widen: (*getattr(base, widen), *layers[:k])})
        try:
            tried = ledger.find(recipe) or ledger.attempt(
                recipe, f"{k} layer(s) {WIDENINGS[widen]}{after}", order=order,
                first_layers=len(first))
        except ConversionError as exc:  # e.g. nothing left for the quantizer to quantize
            start.notes.append(f"accuracy fallback: the attempt with {k} layer(s) "
                               f"{WIDENINGS[widen]}{after} could not be made: {exc.bare}")
            break
        if tried.attempt.rejected is not None:
            break
        if tried.attempt.passed:
            passing = k
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


def _ranking(start: Start) -> tuple[list[str] | None, str | None]:
    """(the layers of the base int8 file, worst first (compress/sensitivity.py), from the
    step cache when this very file was ranked before, or None when the format has no ranker;
    why the tool's ranking failed, or None)."""
    setup = start.ledger.setup
    ranker = RANKERS.get(setup.fmt)
    if ranker is None or setup.calibration is None:
        return None, None
    quantization, steps, int8 = start.recipe.quantization, setup.meter.steps, start.base.kept
    settings = quantization.calibration if quantization else None
    samples = in_layouts(setup.calibration.take(min(settings.samples if settings else 32, 32),
                                                settings.seed if settings else 0),
                         setup.meter.yardstick.signature, start.base.produced.input_layouts)
    parent = start.base.produced.parent or start.reference.path
    key = None
    if steps is not None:
        key = build_key({"step": "ranking", "format": setup.fmt,
                         "files": [model_digest(p) for p in (parent, start.reference.path, int8)],
                         "samples": steps.digest(samples),
                         "quantization": quantization.model_dump() if quantization else None})
    layers = steps.fetch_ranking(key) if steps is not None and key else None
    if layers is not None:
        return layers, None
    try:
        with setup.progress.step(f"Ranking {setup.fmt} layers by int8 sensitivity"):
            layers = ranker(parent, start.reference.path, int8, samples, quantization)
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
