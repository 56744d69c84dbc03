"""The accuracy fallback's attempts: quantize with a recipe, judge the file against the budget,
record it, and keep its file aside so the best attempt ships whichever came last.

Every attempt writes the same file (the converter's output for the format); each one's file is
copied to the converter's workdir, so shipping an earlier attempt is a copy back, not a
re-quantization that must come out byte-identical.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..cache.keys import model_files
from ..cache.records import BuildSteps
from ..compress.layer_order import INT8_KINDS
from ..config.profiles import Precision, Profile, Quantization
from ..converters.converter import ConvertedFile, Converter
from ..data.dataset import Dataset
from ..validate import budget as budget_gate
from ..validate.attempts import FallbackAttempt
from ..validate.outputs import AccuracyFn, measure_fidelity
from .context import Yardstick
from .fallback_rank import Scored, best
from .measurement import open_session

if TYPE_CHECKING:
    from ..devices.inventory import Device


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
    #: int8 judged as written (``BuildContext.int8_as_written``); None: as this host decides
    as_written: bool | None = None

    def verdict(self, produced: ConvertedFile) -> tuple[budget_gate.BudgetVerdict, dict[str, Any]]:
        """The budget's verdict on ``produced`` and its checks' readings by name."""
        steps, y = self.steps, self.yardstick
        key = self.key(produced) if steps is not None and self.key is not None else None
        hit = steps.fetch_fidelity(key) if steps is not None and key else None
        if hit is not None:
            fidelity, accuracy = hit
        else:
            fidelity, accuracy = measure_fidelity(
                open_session(produced, as_written=self.as_written), y.evaluation, y.outputs,
                y.signature, (produced.input_layouts, produced.output_layouts), self.accuracy)
            if steps is not None and key:
                steps.store_fidelity(key, fidelity, accuracy)
        own = y.floors.of_file(produced.format, produced.path) if y.floors else None
        verdict = _as_reported(budget_gate.evaluate(
            self.profile.name, self.profile.budget, fidelity, y.accuracy, accuracy,
            own.floor if own else None))
        return verdict, {c.name: c.value for c in verdict.checks}


#: the digits an attempt's readings are reported with
DIGITS = 6


def _as_reported(verdict: budget_gate.BudgetVerdict) -> budget_gate.BudgetVerdict:
    """``verdict`` with each check's value rounded as the report prints it (pass or fail as
    measured): attempts are ranked on the numbers a user reads, so a file shown equal to a
    smaller one is not shipped over it for a difference in the seventh digit."""
    def rounded(checks: list[budget_gate.BudgetCheck]) -> list[budget_gate.BudgetCheck]:
        return [replace(c, value=round(c.value, DIGITS)) for c in checks]

    return replace(verdict, checks=rounded(verdict.checks), outputs=[
        replace(o, checks=rounded(o.checks)) for o in verdict.outputs])


@dataclass(frozen=True)
class Recipe:
    """What one attempt quantizes with: the quantization (the profile's, with the cheap fixes
    that helped, named in ``fixes``), the layers kept in float and those given 16-bit
    activations with int8 weights (TFLite's 16x8); ``precision`` is dynamic-int8 where the
    activations are quantized at run time (fallback.py). ``speed_float``: the ops of the
    kinds the runtime runs slower in int8 than in float (fallback_speed.py), float in every
    attempt; ``kinds_float``: the weightless ops of the kinds whose int8 cost accuracy
    (fallback_kinds.py), float while the recipe holds their kind's change."""

    quantization: Quantization | None
    fixes: tuple[str, ...] = ()
    keep_float: tuple[str, ...] = ()
    int16_layers: tuple[str, ...] = ()
    precision: Precision = "int8"
    speed_float: tuple[str, ...] = ()
    kinds_float: tuple[str, ...] = ()

    @property
    def wide_layers(self) -> int:
        """How many layers and ops the recipe keeps out of int8 for accuracy."""
        return len(self.keep_float) + len(self.int16_layers) + len(self.kinds_float)


@dataclass
class FallbackSetup:
    """What every attempt of one format's fallback needs: how to quantize it again (the
    converter, its settings and data, where the file goes) and how to judge the result;
    ``int16x8``: the target's runtime runs 16x8 layers fast (targets/*.yaml), so the fallback
    may give layers 16-bit activations."""

    converter: Converter
    fmt: str
    profile: Profile
    calibration: Dataset | None
    out_dir: Path
    stem: str
    meter: BudgetMeter
    progress: Any
    int16x8: bool = False
    #: the build's thread count for the speed step's timings (None: the runtime's default)
    threads: int | None = None
    #: the build's first --device board: the speed step times files there (fallback_speed.py)
    board: Device | None = None
    trust_new_host: bool = False
    #: the calibration drawn again with more samples (pipeline/data.py); None: only
    #: ``calibration`` is there
    more_calibration: Callable[[int], Dataset] | None = None
    _drawn: dict[int, Dataset] = field(default_factory=dict, repr=False)

    def calibration_rows(self) -> int:
        """How many calibration samples an attempt can have: all the data holds when more
        can be drawn, else those loaded."""
        data = self.calibration
        if data is None:
            return 0
        if self.more_calibration is None:
            return len(data)
        return data.drawn_from or len(data)

    def _calibration_for(self, recipe: Recipe) -> Dataset | None:
        """The calibration ``recipe`` asks for: the build's, or drawn again with more
        samples (twice the calibration samples) once, for every attempt that asks."""
        want = recipe.quantization.calibration.samples if recipe.quantization else 0
        data, more = self.calibration, self.more_calibration
        if data is None or more is None or want <= len(data) or (data.drawn_from or 0) <= len(data):
            return data
        if want not in self._drawn:
            self._drawn[want] = more(want)
        return self._drawn[want]

    def quantize(self, recipe: Recipe) -> ConvertedFile:
        return self.converter.produce(self.fmt, recipe.precision, self.out_dir, self.stem,
                                      recipe.quantization, self._calibration_for(recipe),
                                      keep_float=tuple(dict.fromkeys(
                                          (*recipe.speed_float, *recipe.kinds_float,
                                           *recipe.keep_float))),
                                      int16_layers=recipe.int16_layers, replan=False)


@dataclass
class Tried:
    """One attempt: its record, what ranks it, the file it made, the recipe that made it and
    where its file was kept."""

    attempt: FallbackAttempt
    scored: Scored
    produced: ConvertedFile
    recipe: Recipe
    kept: Path


@dataclass
class Ledger:
    """Every attempt of one format's fallback, in the order made; the best so far is the one
    the next attempts start from and, at the end, the one shipped."""

    setup: FallbackSetup
    tried: list[Tried] = field(default_factory=list)
    #: the size of plain int8 when the first attempt is not it (the speed step kept op kinds
    #: in float): the size allowance stays relative to plain int8
    plain_size: int | None = None
    #: each kept file's int8 ops by kind, read once (the kinds are toggled round after round)
    _int8_ops: dict[Path, dict[str, list[str]]] = field(default_factory=dict, repr=False)

    @property
    def attempts(self) -> list[FallbackAttempt]:
        return [t.attempt for t in self.tried]

    @property
    def plain_bytes(self) -> int:
        return self.plain_size or self.tried[0].attempt.size_bytes

    @property
    def passed(self) -> bool:
        return any(t.attempt.passed for t in self.tried)

    def best(self) -> Tried:
        """The best attempt so far (fallback_rank.py); plain int8 when all were rejected."""
        i = best([t.scored for t in self.tried])
        return self.tried[i or 0]

    def int8_ops(self, tried: Tried) -> dict[str, list[str]]:
        """The ops ``tried``'s file computes in int8, by kind (compress/layer_order.py)."""
        if tried.kept not in self._int8_ops:
            self._int8_ops[tried.kept] = INT8_KINDS[self.setup.fmt](tried.kept)
        return self._int8_ops[tried.kept]

    def find(self, recipe: Recipe) -> Tried | None:
        """The attempt made with ``recipe`` before (the same layers in another order), if any."""
        def layers(r: Recipe) -> tuple[Any, ...]:
            return (r.quantization, r.precision, frozenset(r.keep_float),
                    frozenset(r.int16_layers), frozenset(r.speed_float),
                    frozenset(r.kinds_float))

        return next((t for t in self.tried if layers(t.recipe) == layers(recipe)), None)

    def record(self, produced: ConvertedFile, recipe: Recipe, **what: Any) -> Tried:
        """Judge ``produced`` (made by ``recipe``), keep its file aside and record it;
        ``what`` are the attempt's own fields (``change``, ``order``)."""
        verdict, numbers = self.setup.meter.verdict(produced)
        size = artifact_bytes(produced.path)
        attempt = FallbackAttempt(list(recipe.keep_float), verdict.passed, size, numbers,
                                  based_on=[f for f in recipe.fixes if f != what.get("change")],
                                  int16_layers=list(recipe.int16_layers), **what)
        limit = self.setup.profile.fallback_max_size_growth
        if (recipe.keep_float or recipe.precision != "int8") and size > limit * self.plain_bytes:
            # so much in float (layers kept, or ops a dynamic recipe leaves) that it is no
            # longer an int8 model: say so, never ship it
            attempt.passed = False
            attempt.rejected = (f"{size / self.plain_bytes:.2f}x the size of plain int8 "
                                f"(profile allows {limit:g}x)")
        scored = Scored(attempt.passed, verdict.shortfall(), size, recipe.wide_layers,
                        {c.name: c.margin() for c in verdict.checks},
                        rejected=attempt.rejected is not None)
        kept = keep_files(produced.path, self.setup.converter.workdir
                          / f"fallback-{self.setup.fmt}-{len(self.tried)}")
        self.tried.append(Tried(attempt, scored, produced, recipe, kept))
        return self.tried[-1]

    def attempt(self, recipe: Recipe, what: str, **fields: Any) -> Tried:
        """Quantize with ``recipe`` and record the attempt; ``what`` is the progress line."""
        with self.setup.progress.step(f"Re-quantizing {self.setup.fmt} with {what}"):
            return self.record(self.setup.quantize(recipe), recipe, **fields)

    def ship(self, tried: Tried) -> ConvertedFile:
        """``tried``'s file back where the attempts write, marked chosen; the files other
        attempts wrote under other names (another precision) leave the output folder."""
        for f in model_files(tried.kept):
            shutil.copy2(f, tried.produced.path.parent / f.name)
        for other in {t.produced.path for t in self.tried} - {tried.produced.path}:
            for f in model_files(other) if other.exists() else []:
                f.unlink()
        tried.attempt.chosen = True
        tried.produced.fallback = self.attempts
        return tried.produced


def keep_files(path: Path, folder: Path) -> Path:
    """A copy of the model file(s) at ``path`` in ``folder`` (every attempt rewrites
    ``path``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in model_files(path):
        shutil.copy2(f, folder / f.name)
    return folder / path.name


def artifact_bytes(path: Path) -> int:
    """Bytes of a model file with its weights file (an OpenVINO IR is .xml + .bin)."""
    size = path.stat().st_size
    weights = path.with_suffix(".bin")
    return size + weights.stat().st_size if path.suffix == ".xml" and weights.is_file() else size
