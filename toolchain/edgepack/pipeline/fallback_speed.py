"""The speed step: int8 op kinds that the format's runtime runs slower than float stay float.

An int8 file can run slower than its fp32 reference when some of its int8 ops fall outside
the runtime's fast kernels. LiteRT showed it on real models (docs/benchmarks.md): an int8
TRANSPOSE_CONV ran a 1,505-parameter decoder 5x slower than the whole fp32 file; the int8
HARD_SWISH and AVERAGE_POOL_2D that ai-edge-quantizer writes are not delegated to XNNPACK and
split MediaPipe's selfie segmenter into 17 partitions. Which kinds are slow depends on the
runtime's version and the CPU (the int8 TRANSPOSE_CONV is slow on an Intel host with
AVX512-VNNI, not on an AMD EPYC), so it is measured, not listed: when plain int8 runs slower
than the fp32 reference, each kind of int8 op is tried in float (on top of the kinds kept so
far), and kept float only if the file then runs clearly faster, until it is no longer the
slower file; the kinds that each made it a little faster are then tried together, and plain
int8, the kept file and fp32 are timed again together before anything is kept. The files
are timed in turns in one process, so a load that comes and goes slows them alike: on the
build's first ``--device`` board, where the file will run, unless that board is emulated;
else on the build host. Each format names its int8 ops by kind as its quantizer takes them
(compress/layer_order.py: TFLite tensor names, ONNX Runtime's node names, NNCF's op names).

What stays float is part of the recipe every accuracy-fallback attempt starts from, and only
while the file stays within the profile's size allowance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..cache.keys import build_key, host_facts, model_digest
from ..compress.layer_order import INT8_KINDS
from ..compress.sensitivity import FLOAT_GROWTH, WEIGHT_PARAMS
from ..converters.converter import ConvertedFile
from ..errors import ConversionError
from ..formats import get_format
from ..runtimes import get_runtime
from ..runtimes.base import RuntimeOptions, Session
from ..validate.latency import time_in_turns, time_runs
from ..validate.outputs import feed_for
from .fallback_attempts import FallbackSetup, Recipe, artifact_bytes, keep_files

if TYPE_CHECKING:
    from ..devices.inventory import Device

#: plain int8 this much slower than its fp32 reference (host p50) is searched for slow kinds
SLOWER = 1.1
#: a kind stays float when the file then runs in at most this share of the best time so far
#: (the median over the rounds of each round's ratio)
FASTER = 0.9
#: ... and saves at least this much: below it, run-to-run noise on a sub-millisecond model
#: decides, and a user cannot tell the difference
MIN_SAVED_MS = 0.2
#: a kind that made the file run in at most this share of the best time, but not
#: ``FASTER``, is a near miss: the near misses are tried together after the others
NEAR = 0.97
#: files compared are timed in turns, this many rounds of this many runs each
ROUNDS, RUNS, WARMUP = 5, 10, 3
#: where the files are timed when the build names no board (or an emulated one)
HOST = "this host"
#: runtime options of every file timed: ONNX Runtime's idle threads spin-wait after each run,
#: taking the cores the next file's run needs (selfie's int8/fp32 ratio ranged 1.36-2.78 over
#: 5 rounds with spinning, 1.92-2.33 without)
TIMING_OPTIONS: dict[str, Any] = {"allow_spinning": False}


@dataclass
class SpeedVerdict:
    """What the step timed (host p50s in ms) and chose; a step-cache record, so a rebuild of
    the same plain int8 on the same kind of host keeps the same kinds without timing again."""

    plain_ms: float
    fp32_ms: float
    best_ms: float
    runtime: str
    #: the kinds kept in float, and their op counts
    chosen: dict[str, int] = field(default_factory=dict)
    #: the kinds whose weights the size allowance could not pay for
    unaffordable: list[str] = field(default_factory=list)
    cached: bool = False
    #: where the files were timed: "this host", or "board <name>" (the build's --device)
    place: str = HOST
    #: kinds the search kept that were not faster when timed again (plain int8 shipped)
    retracted: list[str] = field(default_factory=list)
    #: the kinds of ``chosen`` kept only as a group, each too small a gain alone
    together: list[str] = field(default_factory=list)

    @property
    def slower(self) -> bool:
        return self.plain_ms >= SLOWER * self.fp32_ms and \
            self.plain_ms - self.fp32_ms >= MIN_SAVED_MS

    def notes(self, growth: float) -> list[str]:
        """The report's notes on what was timed and kept (none when plain int8 was not the
        slower file); ``growth``: the profile's size allowance."""
        if not self.slower and not self.chosen:
            return []
        like = "a host like this one" if self.place == HOST else self.place
        how = f"timed in turns on {like} by an earlier build of this file" \
            if self.cached else f"timed in turns on {self.place}"
        notes = [f"speed: int8 {', '.join(self.unaffordable)} not kept in float: the weights "
                 f"would grow the file past {growth:g}x plain int8"] if self.unaffordable else []
        if not self.chosen:
            seemed = f" ({', '.join(self.retracted)} seemed to in the search, not when timed " \
                     "again)" if self.retracted else ""
            return [*notes, f"speed: plain int8 runs slower than fp32 on {self.place} (p50 "
                            f"{self.plain_ms:.3f} ms vs {self.fp32_ms:.3f} ms, {how}) and no "
                            f"kind of int8 op made it faster in float{seemed}"]
        counts = ", ".join(f"{kind} x{n}" for kind, n in self.chosen.items()
                           if kind not in self.together)
        if self.together:
            group = ", ".join(f"{kind} x{self.chosen[kind]}" for kind in self.together)
            counts = f"{counts + '; ' if counts else ''}together, each too small a gain alone: " \
                     f"{group}"
        return [*notes, f"speed: int8 ops kept in float because {self.place}'s {self.runtime} "
                        f"ran them slower in int8 ({counts}): p50 {self.plain_ms:.3f} ms -> "
                        f"{self.best_ms:.3f} ms (fp32 {self.fp32_ms:.3f} ms, {how})"]


def faster_int8(setup: FallbackSetup, produced: ConvertedFile, reference: ConvertedFile,
                recipe: Recipe) -> tuple[ConvertedFile, Recipe, list[str]]:
    """``produced`` (plain int8, made by ``recipe``) with the int8 op kinds that the runtime
    runs slower than float kept in float, the recipe that makes it, and the notes saying what
    was kept and what it bought; unchanged when plain int8 is not slower than its reference
    or the format has no reader of its op kinds."""
    reader = INT8_KINDS.get(setup.fmt)
    if reader is None or setup.calibration is None:
        return produced, recipe, []
    board, where, emulated = _where(setup)
    steps = setup.meter.steps
    key = build_key({"step": "speed", "format": setup.fmt,
                     "files": [model_digest(produced.path), model_digest(reference.path)],
                     "quantization": recipe.quantization.model_dump()
                     if recipe.quantization else None,
                     "growth": setup.profile.fallback_max_size_growth,
                     "threads": setup.threads, "where": where,
                     "rules": [SLOWER, FASTER, NEAR, MIN_SAVED_MS, ROUNDS, RUNS]}) \
        if steps is not None else None
    record = steps.fetch_speed(key) if steps is not None and key else None
    if record is not None:
        verdict = replace(SpeedVerdict(**record), cached=True)
        if verdict.chosen:
            kinds = reader(produced.path)
            recipe = replace(recipe, speed_float=tuple(
                name for kind in verdict.chosen for name in kinds.get(kind, [])))
            with setup.progress.step(f"Re-quantizing {setup.fmt} with "
                                     f"{', '.join(verdict.chosen)} in float (cached timing)"):
                produced = setup.quantize(recipe)
    else:
        produced, recipe, verdict = _search(setup, produced, reference, recipe, reader, board)
        if steps is not None and key:
            steps.store_speed(key, {k: v for k, v in asdict(verdict).items() if k != "cached"})
    notes = verdict.notes(setup.profile.fallback_max_size_growth)
    return produced, recipe, [*emulated, *notes] if notes else notes


def _where(setup: FallbackSetup) -> tuple[Device | None, dict[str, Any], list[str]]:
    """Where the step times files: on the build's first board (--device) unless it is
    emulated, whose timings are an emulator's, else on this host; what the step cache keys
    the verdict on (the CPU and the packages that time it); and a note when an emulated
    board was passed over."""
    if setup.board is None:
        return None, {"host": host_facts()}, []
    from ..devices.remote import check_device

    facts = check_device(setup.board, trust_new_host=setup.trust_new_host)
    if facts.emulated:
        return None, {"host": host_facts()}, [
            f"speed: {setup.board.name} is emulated ({facts.emulation}), so int8's op kinds "
            "were timed on this host: an emulator's timings are not the board's"]
    return setup.board, {"board": {"arch": facts.arch, "cpu": facts.cpu, "cores": facts.cores,
                                   "packages": facts.packages}}, []


def _search(setup: FallbackSetup, produced: ConvertedFile, reference: ConvertedFile,
            recipe: Recipe, reader: Callable[[Path], dict[str, list[str]]],
            board: Device | None) -> tuple[ConvertedFile, Recipe, SpeedVerdict]:
    """Plain int8 and its reference timed; if plain int8 is the slower, the kinds of its int8
    ops tried in float (``choose_kinds``), those without weights first (float costs them no
    size), each group in execution order."""
    trials = _Trials(setup, _Stopwatch(setup, produced, board), produced, reference, recipe)
    verdict = SpeedVerdict(trials.best_ms, trials.fp32_ms, trials.best_ms,
                           trials.stopwatch.runtime_said, place=trials.stopwatch.place)
    if not verdict.slower:
        return produced, recipe, verdict
    kinds = trials.read(reader)
    order = sorted(kinds, key=lambda k: any(n in trials.params for n in kinds[k]))
    choice = choose_kinds(order, trials)
    verdict.chosen = {kind: len(kinds[kind]) for kind in choice.kinds}
    verdict.together = choice.together
    verdict.unaffordable = trials.unaffordable
    if verdict.chosen:  # timed again, all three in the same rounds: the note's numbers
        confirmed, (verdict.plain_ms, verdict.best_ms, verdict.fp32_ms) = trials.confirm()
        if not confirmed:  # a search under a passing load: plain int8 ships
            verdict.retracted, verdict.chosen, verdict.together = list(verdict.chosen), {}, []
            verdict.best_ms = verdict.plain_ms
    trials.finish()
    return trials.best_made, trials.recipe, verdict


@dataclass(frozen=True)
class Timing:
    """A trial file's p50 and the best file's so far in each round (ms), timed in turns."""

    trial: np.ndarray
    best: np.ndarray

    @property
    def ratio(self) -> float:
        """The median of the rounds' ratios: two rounds a burst of load hit cannot decide."""
        return float(np.median(self.trial / self.best))

    @property
    def faster(self) -> bool:
        return self.ratio <= FASTER and \
            float(np.median(self.best) - np.median(self.trial)) >= MIN_SAVED_MS


class Trials(Protocol):
    """What ``choose_kinds`` decides on: whether the best file so far is still slower than
    fp32, and a trial of more kinds in float on top of those kept, timed against it."""

    def slower(self) -> bool: ...

    def time(self, kinds: list[str]) -> Timing | None:
        """The file with ``kinds`` in float too, timed; None when it cannot be made or
        outgrows the size allowance."""

    def keep(self) -> None:
        """The file last timed becomes the best so far."""


@dataclass(frozen=True)
class KindChoice:
    """The kinds kept float: each clearly faster alone, and near misses kept as a group."""

    alone: list[str]
    together: list[str]

    @property
    def kinds(self) -> list[str]:
        return self.alone + self.together


def choose_kinds(order: list[str], trials: Trials) -> KindChoice:
    """The kinds kept float: each in ``order``, alone on top of those kept, stays if the file
    then runs clearly faster (``Timing.faster``), while it is still the slower file; then the
    near misses, kinds that made it faster by less than that, all at once, judged the same way.
    A kind that saves a little is at the edge of the noise alone, and the greedy pass drops
    it: MediaPipe's selfie segmenter's ONNX has seven such kinds, about 10% each, and kept
    none, one or another in three builds of the same file (docs/benchmarks.md)."""
    chosen: list[str] = []
    near: list[str] = []
    for kind in order:
        if not trials.slower():
            return KindChoice(chosen, [])  # each further kind costs a quantization
        timing = trials.time([kind])
        if timing is None:
            continue
        if timing.faster:
            trials.keep()
            chosen.append(kind)
        elif timing.ratio <= NEAR:
            near.append(kind)
    if len(near) > 1 and trials.slower():
        timing = trials.time(near)
        if timing is not None and timing.faster:
            trials.keep()
            return KindChoice(chosen, near)
    return KindChoice(chosen, [])


class _Trials:
    """The plain int8 recipe quantized again with kinds of its ops in float, each file timed
    in turns against the best so far, within the profile's size allowance."""

    def __init__(self, setup: FallbackSetup, stopwatch: _Stopwatch, produced: ConvertedFile,
                 reference: ConvertedFile, recipe: Recipe):
        self.setup, self.recipe, self.best_made = setup, recipe, produced
        self.produced, self.plain_recipe = produced, recipe
        self.folder = setup.converter.workdir / f"speed-{setup.fmt}"
        self.stopwatch = stopwatch
        self.best_path = keep_files(produced.path, self.folder / "plain")
        self.plain = self.best = self.stopwatch.load(self.best_path)
        self.fp32 = self.stopwatch.load(reference.path)
        self.plain_ms, self.fp32_ms = (
            float(ms) for ms in np.median(self.stopwatch.rounds(self.plain, self.fp32), axis=1))
        self.best_ms = self.plain_ms
        self.plain_bytes = artifact_bytes(self.best_path)
        self.limit = setup.profile.fallback_max_size_growth * self.plain_bytes
        self._count = 0
        self.kinds: dict[str, list[str]] = {}
        self.params: dict[str, int] = {}
        self.kept: list[str] = []
        self.unaffordable: list[str] = []
        self._last: tuple[list[str], _Loaded, Path, ConvertedFile, Recipe, float] | None = None

    def read(self, reader: Callable[[Path], dict[str, list[str]]]) -> dict[str, list[str]]:
        """Plain int8's ops by kind, and their weights counted once for every trial."""
        self.kinds = reader(self.best_path)
        self.params = _weights(self.setup.fmt, self.best_path, self.kinds)
        return self.kinds

    def slower(self) -> bool:
        return self.best_ms >= SLOWER * self.fp32_ms

    def time(self, kinds: list[str]) -> Timing | None:
        setup = self.setup
        layers = [name for k in (*self.kept, *kinds) for name in self.kinds[k]]
        alone = kinds if len(kinds) == 1 else []  # a group's size says nothing of its kinds
        if FLOAT_GROWTH * sum(self.params.get(n, 0) for n in layers) > \
                self.limit - self.plain_bytes:
            self.unaffordable += alone
            return None
        trial = replace(self.recipe, speed_float=tuple(layers))
        try:
            with setup.progress.step(f"Re-quantizing {setup.fmt} with {', '.join(kinds)} in "
                                     "float (int8 runs slower than fp32 here)"):
                made = setup.quantize(trial)
                path = keep_files(made.path, self.folder / str(self._count))
                self._count += 1
        except ConversionError:
            return None  # these kinds cannot be left float by the quantizer: others still can
        if artifact_bytes(path) > self.limit:
            # weights the estimate did not count (a Gather reads its table as its first input)
            self.unaffordable += alone
            return None
        session = self.stopwatch.load(path)
        trial_rounds, best_rounds = self.stopwatch.rounds(session, self.best)
        self._last = (kinds, session, path, made, trial, float(np.median(trial_rounds)))
        return Timing(trial_rounds, best_rounds)

    def keep(self) -> None:
        assert self._last is not None, "keep() follows a time() that made a file"
        kinds, self.best, self.best_path, self.best_made, self.recipe, self.best_ms = self._last
        self.kept += kinds

    def finish(self) -> None:
        """The best file's files moved to where the quantizer wrote the last trial's (the
        last use of the kept files: a board reads them again for every timing)."""
        for f in self.best_path.parent.iterdir():
            f.replace(self.best_made.path.parent / f.name)

    def confirm(self) -> tuple[bool, tuple[float, float, float]]:
        """Plain int8, the best file and fp32 timed again in the same rounds: whether the
        best file is still clearly faster than plain int8 (``Timing.faster``; if not, plain
        int8 is the best file again), and the three p50s."""
        plain, best, fp32 = self.stopwatch.rounds(self.plain, self.best, self.fp32)
        confirmed = Timing(best, plain).faster
        if not confirmed:
            self.best, self.best_path = self.plain, self.plain.path
            self.best_made, self.recipe = self.produced, self.plain_recipe
        return confirmed, (float(np.median(plain)), float(np.median(best)),
                           float(np.median(fp32)))


def _weights(fmt: str, int8: Path, kinds: dict[str, list[str]]) -> dict[str, int]:
    """Weight parameters of every op of ``kinds`` (an estimate: a format without a counter,
    or one that cannot read the file, counts none; the real size is checked after)."""
    counter = WEIGHT_PARAMS.get(fmt)
    try:
        return counter(int8, [n for names in kinds.values() for n in names]) \
            if counter is not None else {}
    except Exception:  # noqa: BLE001 (an estimate only orders and filters the search)
        return {}


@dataclass(frozen=True)
class _Loaded:
    """A file loaded and its feed (the first eval sample, in the file's own layout)."""

    path: Path
    session: Session
    feed: dict[str, np.ndarray]


class _Stopwatch:
    """Times files of one format on the first eval sample, with the build's thread count, in
    turns: on this host, or on ``board`` in one run of the board's runner per comparison."""

    def __init__(self, setup: FallbackSetup, produced: ConvertedFile, board: Device | None):
        self.setup, self.produced, self.board = setup, produced, board
        self.runtime = get_runtime(get_format(produced.format).runtime)
        self.place = HOST if board is None else f"board {board.name}"
        self.runtime_said = self.runtime.name

    def load(self, path: Path) -> _Loaded:
        """``path`` loaded as the build's latency measurement loads it (OpenVINO at its own
        precision: an fp32 IR runs bf16 where the CPU has it; ONNX Runtime without spinning),
        warmed up when it is timed here, with its feed."""
        session = self.runtime.load(str(path), RuntimeOptions(threads=self.setup.threads,
                                                              extra=TIMING_OPTIONS))
        y = self.setup.meter.yardstick
        feed = feed_for(session, y.evaluation.head(1).inputs, y.signature,
                        self.produced.input_layouts)
        if self.board is None:
            time_runs(session, feed, WARMUP, 0)
        return _Loaded(path, session, feed)

    def rounds(self, *loaded: _Loaded) -> np.ndarray:
        """Each file's p50 in ms in each round (rows: files), the files timed in turns: a load
        that comes and goes falls on every file of a round alike."""
        if self.board is None:
            return time_in_turns([(f.session, f.feed) for f in loaded], ROUNDS, RUNS)
        from ..devices.remote import time_in_turns_on_device

        result = time_in_turns_on_device(
            self.board, [f.path for f in loaded], [f.feed for f in loaded], rounds=ROUNDS,
            runs=RUNS, warmup=WARMUP, threads=self.setup.threads, extra=TIMING_OPTIONS,
            trust_new_host=self.setup.trust_new_host)
        self.runtime_said = result.runtime_version
        return result.p50_ms
