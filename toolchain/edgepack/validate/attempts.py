"""One attempt of the accuracy fallback, as the build records it and report.json holds it.

The budget's readings (one per check: top-1 agreement, cosine, ...) are written beside the
attempt's own fields, as report.json always had them; it writes and reads itself for that
(``OWN_JSON``, report/decode.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar


@dataclass
class FallbackAttempt:
    """One attempt of the accuracy fallback: what it changed (a quantization setting, or layers
    kept in float, taken in ``order``), what the budget's checks read on it, its size, and
    whether it passed, was rejected, was shipped (``chosen``); its host p50 latency where
    measured (plain int8 and the shipped attempt)."""

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

    def to_dict(self) -> dict[str, Any]:
        """The attempt with its readings beside its fields (report.json's keys); a field
        that is not set is left out."""
        d: dict[str, Any] = {} if self.change is None else {"change": self.change}
        d["kept_float"] = list(self.kept_float)
        if self.order is not None:
            d["order"] = self.order
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
