"""Which attempt of the accuracy fallback is best: the one it ships, and the one the next
attempts start from.

Passing attempts come first, the cheapest of them (smaller file, then fewer float layers:
each costs speed on the device); among failing ones the closest to the budget
(validate/budget.py's shortfall). Never one that another attempt beats or equals on every
measure (each budget check's margin, and the file's size): a percentile calibration at 0.80
agreement and cosine 0.980 is not dropped for a float-layer attempt at 0.73 and 0.979.
Pure functions over plain records, so the rule is tested without building a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Scored:
    """What the ranking knows of one attempt."""

    passed: bool
    #: how far the failed checks miss, in units of the error each allows (0.0 when passed)
    shortfall: float
    size_bytes: int
    #: layers and ops kept out of int8, in float or with 16-bit activations (the speed an
    #: attempt gives up; a proxy for its latency)
    wide_layers: int = 0
    #: each budget check's margin: how far inside its limit the value is (bigger is better)
    margins: dict[str, float] = field(default_factory=dict)
    #: over the size allowance: never shipped, never started from
    rejected: bool = False


def dominates(a: Scored, b: Scored) -> bool:
    """``a`` is at least as good as ``b`` on every measure: each check's margin and size
    (both must have read the same checks)."""
    return a.margins.keys() == b.margins.keys() and a.size_bytes <= b.size_bytes \
        and all(a.margins[k] >= b.margins[k] for k in a.margins)


def _key(s: Scored) -> tuple[bool, float, int, int]:
    return not s.passed, 0.0 if s.passed else s.shortfall, s.size_bytes, s.wide_layers


def best(attempts: list[Scored]) -> int | None:
    """The index of the best attempt (None when every one was rejected): of those no other
    attempt strictly dominates, the first by (passing, closeness, size, float layers); an
    attempt equal on every measure to another loses to the smaller, then faster file, then to
    the earlier one."""
    live = [i for i, s in enumerate(attempts) if not s.rejected]
    front = [i for i in live if not any(
        dominates(attempts[j], attempts[i]) and not dominates(attempts[i], attempts[j])
        for j in live)]
    return min(front, key=lambda i: (_key(attempts[i]), i), default=None)
