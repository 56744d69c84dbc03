"""The speed step: int8 op kinds that the format's runtime runs slower than float stay float.

An int8 file can run slower than its fp32 reference when some of its int8 ops fall outside
the runtime's fast kernels. LiteRT showed it on real models (docs/benchmarks.md): an int8
TRANSPOSE_CONV ran a 1,505-parameter decoder 5x slower than the whole fp32 file; the int8
HARD_SWISH and AVERAGE_POOL_2D that ai-edge-quantizer writes are not delegated to XNNPACK and
split MediaPipe's selfie segmenter into 17 partitions. Which kinds are slow depends on the
runtime's version and the CPU, so it is measured, not listed: when plain int8 runs slower than
the fp32 reference on the build host, each kind of int8 op is tried in float (on top of the
kinds kept so far), and kept float only if the file then runs clearly faster, until it is no
longer the slower file. The files are timed in turns in this process, so a load that comes
and goes slows them alike. Each format names its int8 ops by kind as its quantizer takes them
(compress/layer_order.py: TFLite tensor names, ONNX Runtime's node names, NNCF's op names).

What stays float is part of the recipe every accuracy-fallback attempt starts from, and only
while the file stays within the profile's size allowance. Measured on the build host: with
``--device`` the report has the device's own latency for the file shipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..cache.keys import build_key, host_facts, model_digest
from ..compress.layer_order import INT8_KINDS
from ..compress.sensitivity import FLOAT_GROWTH, WEIGHT_PARAMS
from ..converters.converter import ConvertedFile
from ..errors import ConversionError
from ..formats import get_format
from ..runtimes import get_runtime
from ..runtimes.base import RuntimeOptions, Session
from ..validate.latency import time_runs
from ..validate.outputs import feed_for
from .fallback_attempts import FallbackSetup, Recipe, artifact_bytes, keep_files

#: plain int8 this much slower than its fp32 reference (host p50) is searched for slow kinds
SLOWER = 1.1
#: a kind stays float when the file then runs in at most this share of the best time so far
#: (the median over the rounds of each round's ratio)
FASTER = 0.9
#: ... and saves at least this much: below it, run-to-run noise on a sub-millisecond model
#: decides, and a user cannot tell the difference
MIN_SAVED_MS = 0.2
#: files compared are timed in turns, this many rounds of this many runs each
ROUNDS, RUNS, WARMUP = 5, 10, 3


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

    @property
    def slower(self) -> bool:
        return self.plain_ms >= SLOWER * self.fp32_ms and \
            self.plain_ms - self.fp32_ms >= MIN_SAVED_MS

    def notes(self, growth: float) -> list[str]:
        """The report's notes on what was timed and kept (none when plain int8 was not the
        slower file); ``growth``: the profile's size allowance."""
        if not self.slower and not self.chosen:
            return []
        how = "timed in turns by an earlier build of this file on a host like this one" \
            if self.cached else "timed in turns on this host"
        notes = [f"speed: int8 {', '.join(self.unaffordable)} not kept in float: the weights "
                 f"would grow the file past {growth:g}x plain int8"] if self.unaffordable else []
        if not self.chosen:
            return [*notes, f"speed: plain int8 runs slower than fp32 on this host (p50 "
                            f"{self.plain_ms:.3f} ms vs {self.fp32_ms:.3f} ms, {how}) and no "
                            "kind of int8 op made it faster in float"]
        counts = ", ".join(f"{kind} x{n}" for kind, n in self.chosen.items())
        return [*notes, f"speed: int8 ops kept in float because this host's {self.runtime} "
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
    steps = setup.meter.steps
    key = build_key({"step": "speed", "format": setup.fmt,
                     "files": [model_digest(produced.path), model_digest(reference.path)],
                     "quantization": recipe.quantization.model_dump()
                     if recipe.quantization else None,
                     "growth": setup.profile.fallback_max_size_growth,
                     "threads": setup.threads, "host": host_facts(),
                     "rules": [SLOWER, FASTER, MIN_SAVED_MS, ROUNDS, RUNS]}) \
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
        produced, recipe, verdict = _search(setup, produced, reference, recipe, reader)
        if steps is not None and key:
            steps.store_speed(key, {k: v for k, v in asdict(verdict).items() if k != "cached"})
    return produced, recipe, verdict.notes(setup.profile.fallback_max_size_growth)


def _search(setup: FallbackSetup, produced: ConvertedFile, reference: ConvertedFile,
            recipe: Recipe, reader: Callable[[Path], dict[str, list[str]]]
            ) -> tuple[ConvertedFile, Recipe, SpeedVerdict]:
    """Plain int8 and its reference timed; if plain int8 is the slower, each kind of its
    int8 ops tried in float on top of the kinds kept so far."""
    folder = setup.converter.workdir / f"speed-{setup.fmt}"
    best_path = keep_files(produced.path, folder / "plain")
    stopwatch = _Stopwatch(setup, produced)
    plain = best = stopwatch.load(best_path)
    fp32 = stopwatch.load(reference.path)
    plain_ms, fp32_ms = np.median(stopwatch.rounds(plain, fp32), axis=1)
    verdict = SpeedVerdict(float(plain_ms), float(fp32_ms), float(plain_ms),
                           stopwatch.runtime.name)
    if not verdict.slower:
        return produced, recipe, verdict
    kinds = reader(best_path)
    limit = setup.profile.fallback_max_size_growth * artifact_bytes(best_path)
    allowance = limit - artifact_bytes(best_path)
    params = _weights(setup.fmt, best_path, kinds)
    best_made = produced
    best_ms = plain_ms
    # kinds without weights first (float costs them no size), each group in execution order
    for i, kind in enumerate(sorted(kinds, key=lambda k: any(n in params for n in kinds[k]))):
        if best_ms < SLOWER * fp32_ms:
            break  # no longer the slower file: each further kind costs a quantization
        layers = [name for k in (*verdict.chosen, kind) for name in kinds[k]]
        if FLOAT_GROWTH * sum(params.get(n, 0) for n in layers) > allowance:
            verdict.unaffordable.append(kind)
            continue
        trial = replace(recipe, speed_float=tuple(layers))
        try:
            with setup.progress.step(f"Re-quantizing {setup.fmt} with {kind} in float "
                                     "(int8 runs slower than fp32 here)"):
                made = setup.quantize(trial)
                path = keep_files(made.path, folder / str(i))
        except ConversionError:
            continue  # this kind cannot be left float by the quantizer: the others still can
        if artifact_bytes(path) > limit:
            # weights the estimate did not count (a Gather reads its table as its first input)
            verdict.unaffordable.append(kind)
            continue
        session = stopwatch.load(path)
        trial_rounds, best_rounds = stopwatch.rounds(session, best)
        # the median of the rounds' ratios: two rounds a burst of load hit cannot decide
        if np.median(trial_rounds / best_rounds) <= FASTER \
                and np.median(best_rounds) - np.median(trial_rounds) >= MIN_SAVED_MS:
            verdict.chosen[kind] = len(kinds[kind])
            best, best_path, best_made, recipe = session, path, made, trial
            best_ms = float(np.median(trial_rounds))
    for f in best_path.parent.iterdir():  # the last attempt's file is where they all write
        f.replace(best_made.path.parent / f.name)
    if verdict.chosen:  # the note's three numbers from the same rounds
        verdict.plain_ms, verdict.best_ms, verdict.fp32_ms = (
            float(ms) for ms in np.median(stopwatch.rounds(plain, best, fp32), axis=1))
    return best_made, recipe, verdict


def _weights(fmt: str, int8: Path, kinds: dict[str, list[str]]) -> dict[str, int]:
    """Weight parameters of every op of ``kinds`` (an estimate: a format without a counter,
    or one that cannot read the file, counts none; the real size is checked after)."""
    counter = WEIGHT_PARAMS.get(fmt)
    try:
        return counter(int8, [n for names in kinds.values() for n in names]) \
            if counter is not None else {}
    except Exception:  # noqa: BLE001 (an estimate only orders and filters the search)
        return {}


class _Stopwatch:
    """Times files of one format on the first eval sample, with the build's thread count."""

    def __init__(self, setup: FallbackSetup, produced: ConvertedFile):
        self.setup, self.produced = setup, produced
        self.runtime = get_runtime(get_format(produced.format).runtime)

    def load(self, path: Path) -> tuple[Session, dict[str, np.ndarray]]:
        """``path`` loaded as the build's latency measurement loads it (OpenVINO at its own
        precision: an fp32 IR runs bf16 where the CPU has it; ONNX Runtime without spinning),
        warmed up, with its feed."""
        # ONNX Runtime's idle threads spin-wait after each run, taking the cores the next
        # file's run needs: selfie's int8/fp32 ratio ranged 1.36-2.78 over 5 rounds with
        # spinning, 1.92-2.33 without
        session = self.runtime.load(str(path), RuntimeOptions(
            threads=self.setup.threads, extra={"allow_spinning": False}))
        y = self.setup.meter.yardstick
        feed = feed_for(session, y.evaluation.head(1).inputs, y.signature,
                        self.produced.input_layouts)
        time_runs(session, feed, WARMUP, 0)
        return session, feed

    @staticmethod
    def rounds(*loaded: tuple[Session, dict[str, np.ndarray]]) -> np.ndarray:
        """Each file's p50 in ms in each round (rows: files), the files timed in turns: a load
        that comes and goes falls on every file of a round alike."""
        p50 = np.zeros((len(loaded), ROUNDS))
        for r in range(ROUNDS):
            for i, (session, feed) in enumerate(loaded):
                p50[i, r] = np.median(time_runs(session, feed, 0, RUNS)) * 1e3
        return p50
