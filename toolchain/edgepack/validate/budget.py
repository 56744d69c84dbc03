"""The accuracy budget gate: does an artifact still compute what the source computed?

A profile states its limits (top-1 drop with labels; top-1 agreement and cosine without); every
limit that can be evaluated on the data at hand is checked and recorded, pass or fail, so the
report shows how close to the edge a build is and not only a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..profiles import Budget
from .accuracy import Accuracy
from .fidelity import OutputFidelity


@dataclass
class BudgetCheck:
    name: str
    limit: float
    value: float
    passed: bool


@dataclass
class BudgetVerdict:
    profile: str
    checks: list[BudgetCheck] = field(default_factory=list)
    passed: bool = True  # every check passed (no check: nothing could be evaluated)

    def failures(self) -> list[BudgetCheck]:
        return [c for c in self.checks if not c.passed]

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
    if budget.max_top1_drop is not None and source and artifact \
            and source.top1 is not None and artifact.top1 is not None:
        drop = source.top1 - artifact.top1
        verdict.checks.append(BudgetCheck("top1_drop", budget.max_top1_drop, drop,
                                          drop <= budget.max_top1_drop + 1e-12))
    if budget.min_top1_agreement is not None and primary and primary.top1_agreement is not None:
        verdict.checks.append(BudgetCheck("top1_agreement", budget.min_top1_agreement,
                                          primary.top1_agreement,
                                          primary.top1_agreement >= budget.min_top1_agreement))
    if budget.min_cosine is not None and primary:
        verdict.checks.append(BudgetCheck("cosine", budget.min_cosine, primary.cosine,
                                          primary.cosine >= budget.min_cosine))
    verdict.passed = all(c.passed for c in verdict.checks)
    return verdict
