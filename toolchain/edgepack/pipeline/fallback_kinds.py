"""Weightless int8 ops kept float for accuracy, a kind at a time: the residual adds and the
elementwise products, whose int8 output is requantized onto one grid for inputs of different
ranges.

An Add that joins a skip connection to a block's output rounds their sum to the grid of its
widest input: MediaPipe pose's 28 residual Adds in float took its world landmarks from cosine
0.42 to 0.89 in ONNX (docs/benchmarks.md); elsewhere such kinds moved fidelity by 0.001-0.04.
They hold no weights, so the file keeps its size; their speed is paid like a float layer's
(the report states what the shipped attempt gained per ms lost). Each kind is a toggle of
the recipe like a cheap fix (fallback_changes.py): kept when it brings the file closer, taken
out again when that does; not for a transformer, whose recipe already keeps its residual adds
float (compress/transformer.py).
"""

from __future__ import annotations

from dataclasses import replace

from ..validate.attempts import kind_fix
from .fallback_attempts import Ledger, Recipe, Tried

#: per format, the op kinds (as compress/layer_order.py names them) tried in float, in order
ACCURACY_KINDS: dict[str, tuple[str, ...]] = {
    "onnx": ("Add", "Mul"), "openvino": ("Add", "Multiply"), "tflite": ("ADD", "MUL")}


def kind_toggled(ledger: Ledger, tried: Tried, kind: str) -> Recipe | None:
    """``tried``'s recipe with the ops of ``kind`` back in int8 where it keeps them float for
    accuracy, else with those its file computes in int8 kept float; None when there are none.
    The ops a kind kept float are found in the first attempt's file, where they are all still
    int8 (only the speed step's are float there)."""
    recipe, fix = tried.recipe, kind_fix(kind)
    if fix in recipe.fixes:
        ops = set(ledger.int8_ops(ledger.tried[0]).get(kind, []))
        return replace(recipe, kinds_float=tuple(o for o in recipe.kinds_float if o not in ops),
                       fixes=tuple(f for f in recipe.fixes if f != fix))
    ops = ledger.int8_ops(tried).get(kind, [])
    return replace(recipe, kinds_float=(*recipe.kinds_float, *ops),
                   fixes=(*recipe.fixes, fix)) if ops else None
