"""The accuracy budget gate: does an artifact still compute what the source computed?

A profile states its limits (top-1 drop with labels; top-1 agreement and cosine without); every
limit that can be evaluated on the data at hand is checked and recorded, pass or fail, so the
report shows how close to the edge a build is and not only a verdict. When the eval data has
labels and the profile states a top-1 drop, that drop decides: what the app loses is accuracy,
and an int8 model that flips near-ties both ways (agreement below the bound) at the same
accuracy is not worse. The fidelity checks are then recorded but do not gate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..config.profiles import Budget
from .accuracy import Accuracy
from .fidelity import OutputFidelity


@dataclass
class BudgetCheck:
    name: str
    limit: float
    value: float
    passed: bool
    #: False: measured and shown, but labelled accuracy decides (a fidelity bound on data
    #: that has labels)
    gating: bool = True
    #: a share of samples (top-1 agreement): its 95% interval and the sample count, so the
    #: report shows whether an eval set of this size can settle the limit at all (a photo
    #: classifier's near-ties move its agreement 4 points between two sets of 312 crops)
    interval: tuple[float, float] | None = None
    samples: int | None = None

    def reading(self) -> str:
        """The value against its limit, with its interval where it has one."""
        text = f"{self.value:.4f} (limit {self.limit}"
        if self.interval is not None:
            text += (f"; 95% interval {self.interval[0]:.3f}-{self.interval[1]:.3f} over "
                     f"{self.samples} samples")
        return text + ")"

    def caveat(self) -> str:
        """What the report adds when the limit lies inside the value's interval (another eval
        set of this size could well decide the other way); "" otherwise."""
        if self.interval is None or not self.interval[0] <= self.limit <= self.interval[1]:
            return ""
        return ("the limit lies inside the interval: an eval set this size cannot settle it "
                "(near-ties flip either way); more eval samples can")

    def outcome(self) -> str:
        """How the report says it: ok, FAIL, or missed without deciding anything."""
        if self.passed:
            return "ok"
        return "FAIL" if self.gating else "missed, not gating (labelled top-1 drop decides)"


@dataclass
class BudgetVerdict:
    profile: str
    checks: list[BudgetCheck] = field(default_factory=list)
    passed: bool = True  # every check passed (no check: nothing could be evaluated)

    def failures(self) -> list[BudgetCheck]:
        return [c for c in self.checks if c.gating and not c.passed]

    def shortfall(self) -> tuple[int, float]:
        """How far from passing, for choosing between attempts that all fail: the number of
        failed checks, then by how much they miss their limits (0, 0.0: passed)."""
        failed = self.failures()
        return len(failed), sum(abs(c.value - c.limit) for c in failed)


def evaluate(profile: str, budget: Budget, fidelity: list[OutputFidelity],
             source: Accuracy | None, artifact: Accuracy | None) -> BudgetVerdict:
    """Check the first output (the model's primary output) against each stated limit."""
    verdict = BudgetVerdict(profile=profile)
    primary = fidelity[0] if fidelity else None
    labelled = budget.max_top1_drop is not None and source is not None \
        and artifact is not None and source.top1 is not None and artifact.top1 is not None
    if labelled:
        drop = source.top1 - artifact.top1
        verdict.checks.append(BudgetCheck("top1_drop", budget.max_top1_drop, drop,
                                          drop <= budget.max_top1_drop + 1e-12))
    if budget.min_top1_agreement is not None and primary and primary.top1_agreement is not None:
        verdict.checks.append(BudgetCheck(
            "top1_agreement", budget.min_top1_agreement, primary.top1_agreement,
            primary.top1_agreement >= budget.min_top1_agreement, gating=not labelled,
            interval=wilson(primary.top1_agreement, primary.samples),
            samples=primary.samples))
    if budget.min_cosine is not None and primary:
        verdict.checks.append(BudgetCheck("cosine", budget.min_cosine, primary.cosine,
                                          primary.cosine >= budget.min_cosine,
                                          gating=not labelled))
    verdict.passed = not verdict.failures()
    return verdict


def wilson(share: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95% Wilson score interval of a share measured on ``n`` samples (it stays inside
    [0, 1] and is honest near 0 and 1, where an agreement bound sits)."""
    if n <= 0:
        return 0.0, 1.0
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
