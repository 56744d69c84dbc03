"""One attempt of the accuracy fallback, as the build records it and report.json holds it.

The budget's readings (one per check: top-1 agreement, cosine, ...) are written beside the
attempt's own fields, as report.json always had them; it writes and reads itself for that
(``OWN_JSON``, report/decode.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

#: the accuracy fallback's change that quantizes activations at run time (pipeline/fallback.py)
DYNAMIC_FIX = "dynamic int8 activations"
#: the accuracy fallback's change that keeps every int8 op of one weightless kind float
#: (pipeline/fallback_kinds.py), for a kind's name
KIND_FIX = "int8 {} ops in float"


def kind_fix(kind: str) -> str:
    """The change that keeps the int8 ops of ``kind`` float, named."""
    return KIND_FIX.format(kind)


def kind_fixes(changes: list[str]) -> list[str]:
    """Those of ``changes`` that kept the int8 ops of a kind float."""
    head, tail = KIND_FIX.split("{}")
    return [c for c in changes if c.startswith(head) and c.endswith(tail)]


@dataclass
class FallbackAttempt:
    """One attempt of the accuracy fallback: what it changed (a quantization setting, or layers kept
    in float or given 16-bit activations, taken in ``order``), the cheap fixes of the recipe it
    started from (``based_on``: those that helped before it), what the budget's checks read on it,
    its size, and whether it passed, was rejected, was shipped (``chosen``); its host p50 latency
    where measured (plain int8 and the shipped attempt)."""

    OWN_JSON: ClassVar[bool] = True

    kept_float: list[str]
    passed: bool
    size_bytes: int
    readings: dict[str, float] = field(default_factory=dict)  # budget check -> value
    change: str | None = None
    order: str | None = None  # "first" (execution order) or "ranked" (worst first)
    rejected: str | None = None
    chosen: bool = False
    p50_ms: float | None = None
    based_on: list[str] = field(default_factory=list)
    #: layers given 16-bit activations with int8 weights (TFLite's 16x8)
    int16_layers: list[str] = field(default_factory=list)
    #: a ranked attempt made on top of the best first-layers attempt: how many of
    #: ``kept_float`` are those first layers (the rest are ranked ones)
    first_layers: int = 0

    @property
    def changes(self) -> list[str]:
        """Every change the attempt holds: the fixes it started from and its own."""
        return [*self.based_on, *([self.change] if self.change else [])]

    def widened(self) -> bool:
        """Whether it keeps layers or ops out of int8 for accuracy (they cost speed)."""
        return bool(self.kept_float or self.int16_layers or kind_fixes(self.changes))

    def out_of_int8(self) -> str:
        """The layers the attempt keeps out of int8, said (for the report's notes)."""
        said = [f"{len(layers)} layer(s) {how}" for layers, how in (
            (self.kept_float, "kept in float"),
            (self.int16_layers, "given 16-bit activations")) if layers]
        said[:0] = kind_fixes(self.changes)
        if DYNAMIC_FIX in self.changes:
            said.insert(0, "activations quantized at run time")
        return " and ".join(said) or "no layer kept out of int8"

    def layers_said(self) -> str:
        """How a layer attempt took layers out of int8, the first layers it built on included
        (the report's table)."""
        if self.int16_layers:
            first = f"first {self.first_layers} layer(s) in float + " if self.first_layers else ""
            return f"{first}{len(self.int16_layers)} worst-ranked layer(s) with 16-bit activations"
        if self.order == "first":
            return f"first {len(self.kept_float)} layer(s) in float"
        first = f"first {self.first_layers} + " if self.first_layers else ""
        return f"{first}{len(self.kept_float) - self.first_layers} worst-ranked layer(s) in float"

    def to_dict(self) -> dict[str, Any]:
        """The attempt with its readings beside its fields (report.json's keys); a field
        that is not set is left out."""
        d: dict[str, Any] = {} if self.change is None else {"change": self.change}
        if self.based_on:
            d["based_on"] = list(self.based_on)
        d["kept_float"] = list(self.kept_float)
        if self.int16_layers:
            d["int16_layers"] = list(self.int16_layers)
        if self.order is not None:
            d["order"] = self.order
        if self.first_layers:
            d["first_layers"] = self.first_layers
        d.update(self.readings)
        d.update(passed=self.passed, size_bytes=self.size_bytes)
        d.update({k: v for k, v in (("rejected", self.rejected), ("chosen", self.chosen or None),
                                    ("p50_ms", self.p50_ms)) if v is not None})
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FallbackAttempt:
        if not isinstance(d, dict):
            raise ValueError(f"a fallback attempt must be an object, got {type(d).__name__}")
        own = {f.name for f in fields(cls)} - {"readings"}
        readings = {k: v for k, v in d.items() if k not in own}
        if not all(isinstance(v, (int, float)) for v in readings.values()):
            raise ValueError(f"a fallback attempt has unknown fields {sorted(readings)}")
        return cls(**{k: v for k, v in d.items() if k in own}, readings=readings)


#: the measures a trade is stated in, the first both attempts read wins (what an app sees
#: first), with the sign that makes a gain positive
TRADE_MEASURES: list[tuple[str, int]] = [
    ("top1_drop", -1), ("top1_agreement", 1), ("neighbour_agreement", 1),
    ("detections_kept", 1), ("iou", 1), ("cosine", 1), ("snr_db", 1)]


def latency_trade(attempts: list[FallbackAttempt]) -> str | None:
    """What the shipped attempt's layers out of int8 buy per ms of host latency they cost,
    against plain int8 (the first attempt), in the first measure of ``TRADE_MEASURES`` both
    read; None when the shipped attempt is plain int8 or either latency was not measured."""
    plain = attempts[0] if attempts else None
    chosen = next((a for a in attempts if a.chosen), None)
    if plain is None or chosen is None or chosen is plain or plain.p50_ms is None \
            or chosen.p50_ms is None:
        return None
    measure, sign = next(((m, s) for m, s in TRADE_MEASURES
                          if m in plain.readings and m in chosen.readings), (None, 1))
    if measure is None:
        return None
    gain = sign * (chosen.readings[measure] - plain.readings[measure])
    lost = chosen.p50_ms - plain.p50_ms
    said = "lower " + measure if sign < 0 else measure
    if lost <= 0:
        return (f"{said} {gain:+.4g} over plain int8 at no host latency cost "
                f"(p50 {chosen.p50_ms:.3f} ms vs {plain.p50_ms:.3f} ms)")
    return (f"{said} gained per ms of host latency lost: {gain / lost:+.4g} "
            f"({gain:+.4g} for +{lost:.3f} ms p50 over plain int8's {plain.p50_ms:.3f} ms)")
