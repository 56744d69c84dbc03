"""The accuracy budget gate: does an artifact still compute what the source computed?

A profile states its limits (top-1 drop with labels; agreement, cosine and the like without);
every limit is checked on every output it applies to (validate/fidelity.py measures each
output, and each channel group of an output whose channels mix meanings), and the worst one
gates: an int8 detector whose boxes hold while its class scores break fails. Each check is
recorded, pass or fail, so the report shows how close to the edge each output is and not only
a verdict. When the eval data has labels and the profile states a top-1 drop, that drop
decides for the output the labels score (the first): what the app loses is accuracy, and an
int8 model that flips near-ties both ways (agreement below the bound) at the same accuracy is
not worse. That output's fidelity checks are then recorded but do not gate.

Without labels, a profile's own bounds may be stated against the model's input-rounding floor
(validate/floor.py; Budget.relative_to_floor): where the floor measured a reading, its bar is
the lower of the profile's number and the floor's reading less the margin (for an upper bound,
the higher of the number and the floor's reading plus it). A bar thus moves only as far as the
model's own input rounding forces, and a file further from the source than the floor plus the
margin still fails. Bounds the user set stay absolute; each check says where its bar came from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

from ..config.profiles import ROLE_NAMES, Budget, FloorMargins, OutputBudget
from .accuracy import Accuracy
from .fidelity import OutputFidelity
from .floor import InputFloor

#: the least error a limit is taken to allow when it asks for a perfect reading (no extra
#: detection at all): a miss is then counted in thousandths, not divided by zero
MIN_ALLOWED_ERROR = 1e-3

#: why a measured check does not gate, when it is the labels' top-1 drop that decides
LABELS_DECIDE = "labelled top-1 drop decides"


class Limit(NamedTuple):
    """A limit of config/profiles.py Limits: its field, the reading it bounds, whether it is a
    lower bound, and whether it reads each part of an output (its channel groups, else the
    whole) or the output as a whole (a role's readings)."""

    field: str
    reading: str
    at_least: bool
    per_part: bool


#: every limit, in the order the report lists them
LIMITS: list[Limit] = [
    Limit("min_top1_agreement", "top1_agreement", True, False),
    Limit("min_cosine", "cosine", True, True), Limit("min_snr_db", "snr_db", True, True),
    Limit("max_range_error", "range_error", False, True),
    Limit("min_detections_kept", "detections_kept", True, False),
    Limit("max_extra_detections", "extra_detections", False, False),
    Limit("min_neighbour_agreement", "neighbour_agreement", True, False),
    Limit("min_iou", "iou", True, False)]


@dataclass
class BudgetCheck:
    name: str
    limit: float
    value: float
    passed: bool
    #: False: measured and shown, but not deciding (``reason`` says why: labelled accuracy
    #: decides, or the output's budget says it does not gate)
    gating: bool = True
    #: a share of samples (top-1 agreement): its 95% interval and the sample count, so the
    #: report shows whether an eval set of this size can settle the limit at all (a photo
    #: classifier's near-ties move its agreement 4 points between two sets of 312 crops)
    interval: tuple[float, float] | None = None
    samples: int | None = None
    #: the output (and channel group, as ``name[group]``) it was read on: for a check of the
    #: whole artifact, the output that is furthest from (or over) its limit
    output: str | None = None
    #: a lower bound (the value must reach the limit); False: an upper bound
    at_least: bool = True
    #: why it does not gate, when ``gating`` is False ("": the labels decide, as reports
    #: written before outputs had budgets of their own mean)
    reason: str = ""
    #: where the limit came from ("= floor 0.9470 - 0.02", "from the project file", the
    #: profile's default and why the floor did not move it); "": not recorded
    basis: str = ""

    def margin(self) -> float:
        """How far inside its limit the value is (negative: outside)."""
        return self.value - self.limit if self.at_least else self.limit - self.value

    def excess(self) -> float:
        """How many times the error its limit allows the value carries, less one (0.0 within
        the limit): one unit for every kind of check, so misses of different checks add up.
        The error is the distance from a perfect reading: 1 for a lower bound (agreements,
        cosines, detections kept, IoU), 0 for an upper one (extra detections, range error,
        top-1 drop); an SNR in dB is a log ratio of errors already (3 dB short: twice the
        noise allowed, as a cosine at 0.98 against 0.99)."""
        if self.passed:
            return 0.0
        if self.name == "snr_db":
            return 10 ** ((self.limit - self.value) / 10) - 1
        perfect = 1.0 if self.at_least else 0.0
        allowed = max(abs(perfect - self.limit), MIN_ALLOWED_ERROR)
        return abs(perfect - self.value) / allowed - 1

    def label(self) -> str:
        """Its name, and the output it was read on when known."""
        return self.name + (f" of `{self.output}`" if self.output else "")

    def reading(self) -> str:
        """The value against its limit and where the limit came from, with its interval
        where it has one."""
        text = f"{self.value:.4f} (limit {self.limit:.6g}"
        if self.basis:
            text += " " + self.basis
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
        return "FAIL" if self.gating else f"missed, not gating ({self.reason or LABELS_DECIDE})"


@dataclass
class OutputVerdict:
    """One output's checks against the limits that apply to it (role: validate/roles.py)."""

    output: str
    role: str
    checks: list[BudgetCheck] = field(default_factory=list)
    passed: bool = True  # every gating check passed


@dataclass
class BudgetVerdict:
    profile: str
    checks: list[BudgetCheck] = field(default_factory=list)
    passed: bool = True  # every check passed (no check: nothing could be evaluated)
    #: each output's verdict; ``checks`` holds the worst of them per measure
    outputs: list[OutputVerdict] = field(default_factory=list)
    #: keys of the budget's ``outputs`` that name no output of the model and no role
    unmatched: list[str] = field(default_factory=list)

    def failures(self) -> list[BudgetCheck]:
        return [c for c in self.checks if c.gating and not c.passed]

    def shortfall(self) -> float:
        """How far from passing, for choosing between attempts that all fail: the failed
        checks' excesses (BudgetCheck.excess) summed over every output, 0.0 when passed.
        Counting failed checks first ranked a detector's int8 that kept 0.56 of the source's
        detections (one check failed) closer than one that kept 0.86 and added 0.11 (two
        failed), and the fallback built on the worse (nudenet's OpenVINO file)."""
        failed = [c for c in self.checks if c.name == "top1_drop" and c.gating and not c.passed]
        failed += [c for o in self.outputs for c in o.checks if c.gating and not c.passed]
        return sum(c.excess() for c in failed)


def evaluate(profile: str, budget: Budget, fidelity: list[OutputFidelity],
             source: Accuracy | None, artifact: Accuracy | None,
             floor: InputFloor | None = None) -> BudgetVerdict:
    """Check every output against the limits stated for it, the profile's moved by the
    input-rounding ``floor`` where the budget says so; per measure, the worst gates."""
    verdict = BudgetVerdict(profile=profile)
    labelled = budget.max_top1_drop is not None and source is not None \
        and artifact is not None and source.top1 is not None and artifact.top1 is not None
    if labelled:
        drop = source.top1 - artifact.top1
        verdict.checks.append(BudgetCheck("top1_drop", budget.max_top1_drop, drop,
                                          drop <= budget.max_top1_drop + 1e-12))
    floors = None if floor is None else {f.name: _readings(f) for f in floor.fidelity}
    for i, f in enumerate(fidelity):
        bars = Bars(budget.for_output(f.name, f.role), budget.set_by_user(f.name, f.role),
                    budget.relative_to_floor, None if floors is None else floors.get(f.name, {}))
        verdict.outputs.append(_judge_output(f, bars, labels_decide=labelled and i == 0))
        if f.mismatch:  # an output that cannot even be compared fails whatever the limits
            check = BudgetCheck("output_shape", 0, 1, False, output=f.name, at_least=False)
            verdict.outputs[-1].checks.append(check)
            verdict.outputs[-1].passed = False
            verdict.checks.append(check)
    for lim in LIMITS:
        verdict.checks += _worst([c for o in verdict.outputs for c in o.checks
                                  if c.name == lim.reading])
    names = {f.name for f in fidelity}
    verdict.unmatched = [k for k in budget.outputs if k not in names and k not in ROLE_NAMES]
    verdict.passed = not verdict.failures()
    return verdict


@dataclass
class Bars:
    """One output's limits, and where each comes from: the user's stay as set; the profile's
    move to the floor's reading less the margin (plus it, for an upper bound) where that is
    looser, so no bar is looser than the floor and the margin allow."""

    limits: OutputBudget
    #: the limits the user set (Budget.set_by_user)
    user: frozenset[str]
    margins: FloorMargins | None
    #: the floor's readings on this output, by where they were read (None: no floor measured)
    floor: dict[str, dict[str, float | None]] | None

    def bar(self, lim: Limit, where: str) -> tuple[float, str] | None:
        """The limit ``lim`` on the reading at ``where`` and where it came from; None when
        the output has no such limit."""
        limit = getattr(self.limits, lim.field)
        margin = getattr(self.margins, lim.reading, None) if self.margins else None
        if limit is None or lim.field in self.user:
            return None if limit is None else (limit, "from the project file")
        if margin is None:
            return limit, ""
        if self.floor is None:
            return limit, "from the profile; no input-rounding floor was measured"
        at = self.floor.get(where, {}).get(lim.reading)
        if at is None or not math.isfinite(at):
            return limit, f"from the profile; the floor measured no {lim.reading} here"
        moved, sign = (at - margin, "-") if lim.at_least else (at + margin, "+")
        basis = f"floor {at:.4f} {sign} {margin:g}"
        if moved < limit if lim.at_least else moved > limit:
            return moved, "= " + basis
        return limit, f"from the profile; {basis} is stricter"


def _parts(f: OutputFidelity) -> list[tuple[str, dict[str, float | None]]]:
    """The per-part readings: of each channel group, else of the whole output."""
    return [(f"{f.name}[{g.name}]", {"cosine": g.cosine, "snr_db": g.snr_db,
                                      "range_error": g.range_error}) for g in f.groups] or \
        [(f.name, {"cosine": f.cosine, "snr_db": f.snr_db, "range_error": f.range_error})]


def _whole(f: OutputFidelity) -> list[tuple[str, dict[str, float | None]]]:
    """The readings of the output as a whole (top-1 agreement, its role's)."""
    return [(f.name, {"top1_agreement": f.top1_agreement, **f.readings})]


def _readings(f: OutputFidelity) -> dict[str, dict[str, float | None]]:
    """Every reading of an output by where it was read (the floor's, to set bars by)."""
    found: dict[str, dict[str, float | None]] = {}
    for where, values in _parts(f) + _whole(f):
        found.setdefault(where, {}).update(values)
    return found


def _judge_output(f: OutputFidelity, bars: Bars, labels_decide: bool) -> OutputVerdict:
    """One output's checks: the part measures on each channel group (else the whole output),
    the role's readings on the output."""
    gating = bars.limits.gating and not labels_decide
    reason = "" if gating else LABELS_DECIDE if labels_decide \
        else "this output's budget does not gate"
    result = OutputVerdict(output=f.name, role=f.role)
    for lim in LIMITS:
        for where, values in _parts(f) if lim.per_part else _whole(f):
            value, bar = values.get(lim.reading), bars.bar(lim, where)
            if bar is None or value is None:
                continue
            limit, basis = bar
            passed = value >= limit if lim.at_least else value <= limit
            interval = wilson(value, f.samples) if lim.reading == "top1_agreement" else None
            result.checks.append(BudgetCheck(
                lim.reading, limit, value, passed, gating=gating, interval=interval,
                samples=f.samples if interval else None, output=where,
                at_least=lim.at_least, reason=reason, basis=basis))
    result.passed = all(c.passed for c in result.checks if c.gating)
    return result


def _worst(checks: list[BudgetCheck]) -> list[BudgetCheck]:
    """The check furthest from (or over) its limit, preferring gating ones; [] for none."""
    if not checks:
        return []
    return [min(checks, key=lambda c: (not c.gating, c.margin()))]


def wilson(share: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95% Wilson score interval of a share measured on ``n`` samples (it stays inside
    [0, 1] and is honest near 0 and 1, where an agreement bound sits)."""
    if n <= 0:
        return 0.0, 1.0
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
