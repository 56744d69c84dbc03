"""The speed step: int8 op kinds that the format's runtime runs slower than float stay float.

An int8 file can run slower than its fp32 reference when some of its int8 ops fall outside
the runtime's fast kernels. LiteRT showed it on real models (docs/benchmarks.md): an int8
TRANSPOSE_CONV ran a 1,505-parameter decoder 5x slower than the whole fp32 file; the int8
HARD_SWISH and AVERAGE_POOL_2D that ai-edge-quantizer writes are not delegated to XNNPACK and
split MediaPipe's selfie segmenter into 17 partitions. Which kinds are slow depends on the
runtime's version and the CPU, so it is measured, not listed: when plain int8 runs slower than
the fp32 reference on the build host, each kind of int8 op is tried in float (on top of the
kinds kept so far), and kept float only if the file then runs clearly faster. The file and its
reference are timed in turns in this process, so a load that comes and goes slows both. Each
format names its int8 ops by kind as its quantizer takes them (compress/layer_order.py: TFLite
tensor names, ONNX Runtime's node names, NNCF's op names).

What stays float is part of the recipe every accuracy-fallback attempt starts from; a kind
with weights stays float only within the profile's size allowance. Measured on the build
host: with ``--device`` the report has the device's own latency for the file shipped.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ..compress.layer_order import INT8_KINDS
from ..compress.sensitivity import WEIGHT_PARAMS
from ..converters.converter import ConvertedFile
from ..errors import ConversionError
from ..formats import get_format
from ..runtimes import get_runtime
from ..runtimes.base import RuntimeOptions, Session
from ..validate.latency import time_runs
from ..validate.outputs import feed_for
from .fallback_attempts import FallbackSetup, Recipe, keep_files
from .fallback_search import affordable

#: plain int8 this much slower than its fp32 reference (host p50) is searched for slow kinds
SLOWER = 1.1
#: a kind stays float when the file then runs in at most this share of the best time so far
FASTER = 0.9
#: ... and saves at least this much: below it, run-to-run noise on a sub-millisecond model
#: decides, and a user cannot tell the difference
MIN_SAVED_MS = 0.2
#: the two files are timed in turns, this many rounds of this many runs each
ROUNDS, RUNS, WARMUP = 5, 10, 3


def faster_int8(setup: FallbackSetup, produced: ConvertedFile, reference: ConvertedFile,
                recipe: Recipe) -> tuple[ConvertedFile, Recipe, list[str]]:
    """``produced`` (plain int8, made by ``recipe``) with the int8 op kinds that the runtime
    runs slower than float kept in float, the recipe that makes it, and the notes saying what
    was kept and what it bought; unchanged when plain int8 is not slower than its reference
    or the format has no reader of its op kinds."""
    reader = INT8_KINDS.get(setup.fmt)
    if reader is None or setup.calibration is None:
        return produced, recipe, []
    folder = setup.converter.workdir / f"speed-{setup.fmt}"
    best_path = keep_files(produced.path, folder / "plain")
    stopwatch = _Stopwatch(setup, produced)
    best = stopwatch.load(best_path)
    plain_ms, fp32_ms = stopwatch.compare(best, stopwatch.load(reference.path))
    if plain_ms < SLOWER * fp32_ms or plain_ms - fp32_ms < MIN_SAVED_MS:
        return produced, recipe, []
    kinds = reader(best_path)
    allowance = (setup.profile.fallback_max_size_growth - 1) * produced.path.stat().st_size
    chosen: list[str] = []
    unaffordable: list[str] = []
    best_ms, best_made = plain_ms, produced
    for i, kind in enumerate(_order(setup.fmt, best_path, kinds)):
        layers = [name for k in (*chosen, kind) for name in kinds[k]]
        if affordable(setup.fmt, best_path, layers, allowance)[1]:
            unaffordable.append(kind)
            continue
        trial = replace(recipe, speed_float=tuple(layers))
        try:
            with setup.progress.step(f"Re-quantizing {setup.fmt} with {kind} in float "
                                     "(int8 runs slower than fp32 here)"):
                made = setup.quantize(trial)
                path = keep_files(made.path, folder / str(i))
        except ConversionError:
            continue  # this kind cannot be left float by the quantizer: the others still can
        session = stopwatch.load(path)
        trial_ms, best_ms = stopwatch.compare(session, best)
        if trial_ms <= FASTER * best_ms and best_ms - trial_ms >= MIN_SAVED_MS:
            chosen.append(kind)
            best, best_path, best_ms, best_made, recipe = session, path, trial_ms, made, trial
    notes = [f"speed: int8 {', '.join(unaffordable)} not tried in float: the weights would "
             f"grow the file past {setup.profile.fallback_max_size_growth:g}x plain int8"
             ] if unaffordable else []
    for f in best_path.parent.iterdir():  # the last attempt's file is where they all write
        f.replace(best_made.path.parent / f.name)
    if not chosen:
        return best_made, recipe, [
            *notes, f"speed: plain int8 runs slower than fp32 on this host (p50 {plain_ms:.3f} "
            f"ms vs {fp32_ms:.3f} ms) and no kind of int8 op made it faster in float"]
    counts = ", ".join(f"{kind} x{len(kinds[kind])}" for kind in chosen)
    return best_made, recipe, [*notes, (
        f"speed: int8 ops kept in float because this host's {stopwatch.runtime} ran them "
        f"slower in int8 ({counts}): p50 {plain_ms:.3f} ms -> {best_ms:.3f} ms "
        f"(fp32 {fp32_ms:.3f} ms, timed in turns on the build host)")]


def _order(fmt: str, int8: Path, kinds: dict[str, list[str]]) -> list[str]:
    """Kinds without weights first (float costs them no size), each group in execution
    order."""
    counter = WEIGHT_PARAMS.get(fmt)
    weighted = set(counter(int8, [n for names in kinds.values() for n in names])) \
        if counter is not None else set()
    return sorted(kinds, key=lambda k: any(n in weighted for n in kinds[k]))


class _Stopwatch:
    """Times files of one format on the first eval sample, with the build's thread count."""

    def __init__(self, setup: FallbackSetup, produced: ConvertedFile):
        self.setup, self.produced = setup, produced
        self.runtime = ""

    def load(self, path: Path) -> tuple[Session, dict[str, np.ndarray]]:
        """``path`` loaded as the build's latency measurement loads it (OpenVINO at its own
        precision: an fp32 IR runs bf16 where the CPU has it), warmed up, with its feed."""
        runtime = get_runtime(get_format(self.produced.format).runtime)
        session = runtime.load(str(path), RuntimeOptions(threads=self.setup.threads))
        self.runtime = session.runtime
        y = self.setup.meter.yardstick
        feed = feed_for(session, y.evaluation.head(1).inputs, y.signature,
                        self.produced.input_layouts)
        time_runs(session, feed, WARMUP, 0)
        return session, feed

    @staticmethod
    def compare(a: tuple[Session, dict[str, np.ndarray]],
                b: tuple[Session, dict[str, np.ndarray]]) -> tuple[float, float]:
        """The p50 of ``a`` and of ``b`` in ms, timed in turns."""
        times: tuple[list[float], list[float]] = ([], [])
        for _ in range(ROUNDS):
            for (session, feed), into in ((a, times[0]), (b, times[1])):
                into.extend(time_runs(session, feed, 0, RUNS))
        return (float(np.median(times[0]) * 1e3), float(np.median(times[1]) * 1e3))
