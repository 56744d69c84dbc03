"""Latency as a careful engineer would measure it by hand.

Load time and the first inference are reported on their own (they are what an app's start-up
pays); then warm-up runs, then timed runs (a count, or a duration). Every timed call is the same
``Session.run`` an app-facing caller makes, so the numbers include the (de)quantization of I/O
that an app also pays. ``measure_isolated`` runs all of it in a fresh Python process, so one
runtime's threads, caches and memory cannot skew another's and peak RSS is the model's own.

Only numpy and the standard library are imported here: this module runs on devices too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import errors
from ..errors import EdgepackError, InternalError
from ..limits import run_child
from ..runtimes.base import RuntimeOptions, Session


@dataclass
class LatencyStats:
    runtime: str
    runtime_version: str
    threads: int | None
    warmup: int
    runs: int
    batch: int
    load_ms: float
    first_inference_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    throughput_per_s: float  # samples per second at this batch size, from the mean
    peak_rss_mb: float | None = None
    rss_before_load_mb: float | None = None
    isolated: bool = False
    samples_ms: list[float] | None = None  # every timed run, for distributions
    device: str = "CPU"  # the device the runtime was asked to run on
    precision_hint: str | None = None  # what was asked (OpenVINO INFERENCE_PRECISION_HINT)
    #: what the runtime says it computes in (OpenVINO: "bf16" by default on AVX512_BF16/AMX
    #: CPUs); None when the runtime does not say, i.e. the artifact's own precision
    precision: str | None = None
    #: taken from the step cache: measured by an earlier build of the byte-identical file on
    #: a host with the same CPU model and core count, with the same options; not re-measured
    cached: bool = False

    def to_dict(self, with_samples: bool = True) -> dict[str, Any]:
        d = asdict(self)
        if not with_samples:
            d.pop("samples_ms")
        return d


def summarize(times_s: list[float], batch: int) -> dict[str, float]:
    """Percentiles and moments of per-run times (seconds in, milliseconds out)."""
    ms = np.asarray(times_s, np.float64) * 1e3
    mean = float(ms.mean())
    return {
        "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)), "mean_ms": mean, "std_ms": float(ms.std()),
        "min_ms": float(ms.min()), "max_ms": float(ms.max()),
        "throughput_per_s": batch * 1e3 / mean if mean > 0 else 0.0,
    }


def time_runs(session: Session, feed: dict[str, np.ndarray], warmup: int, runs: int,
              duration_s: float | None = None) -> list[float]:
    """Warm up, then time ``runs`` calls (or as many as fit in ``duration_s``, at least 1)."""
    for _ in range(warmup):
        session.run(feed)
    times: list[float] = []
    clock = time.perf_counter
    deadline = clock() + duration_s if duration_s else None
    while True:
        t0 = clock()
        session.run(feed)
        times.append(clock() - t0)
        if deadline is not None:
            if clock() >= deadline:
                break
        elif len(times) >= runs:
            break
    return times


def time_in_turns(loaded: Sequence[tuple[Session, dict[str, np.ndarray]]], rounds: int,
                  runs: int) -> np.ndarray:
    """Each file's p50 in ms in each round (rows: files, each a warmed-up session and its
    feed), the files timed in turns: a load that comes and goes falls on every file of a
    round alike. How the speed step compares files, on this host and on a board."""
    p50 = np.zeros((len(loaded), rounds))
    for r in range(rounds):
        for i, (session, feed) in enumerate(loaded):
            p50[i, r] = np.median(time_runs(session, feed, 0, runs)) * 1e3
    return p50


def _status_mb(field: str) -> float | None:
    """A memory figure of this process from /proc (Linux; None elsewhere).

    VmHWM, not getrusage's ru_maxrss: ru_maxrss survives execve, so a worker forked from a
    large parent (the build process holding TensorFlow) would report the parent's peak.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def _rss_mb() -> float | None:
    return _status_mb("VmRSS")


def _peak_rss_mb() -> float | None:
    return _status_mb("VmHWM")


def measure(runtime_name: str, path: str, feed: dict[str, np.ndarray],
            options: RuntimeOptions, warmup: int = 10, runs: int = 100,
            duration_s: float | None = None, isolated: bool = False) -> LatencyStats:
    """Load ``path`` with ``runtime_name`` in this process and time it on ``feed``."""
    from ..runtimes import get_runtime

    runtime = get_runtime(runtime_name)
    before = _rss_mb()
    t0 = time.perf_counter()
    session = runtime.load(path, options)
    load_ms = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    session.run(feed)
    first_ms = (time.perf_counter() - t0) * 1e3
    times = time_runs(session, feed, warmup, runs, duration_s)
    batch = len(next(iter(feed.values())))
    return LatencyStats(
        runtime=runtime_name, runtime_version=session.runtime_version, threads=options.threads,
        warmup=warmup, runs=len(times), batch=batch, load_ms=load_ms, first_inference_ms=first_ms,
        **summarize(times, batch), peak_rss_mb=_peak_rss_mb() if isolated else None,
        rss_before_load_mb=before if isolated else None, isolated=isolated,
        samples_ms=[t * 1e3 for t in times], device=options.device,
        precision_hint=options.precision_hint, precision=session.precision or None)


def measure_isolated(runtime_name: str, path: str | Path, feed: dict[str, np.ndarray],
                     options: RuntimeOptions, warmup: int = 10, runs: int = 100,
                     duration_s: float | None = None, timeout_s: float = 600) -> LatencyStats:
    """``measure`` in a fresh Python process; the result comes back as JSON.

    An EdgepackError in the worker (a model the runtime refuses, inputs that do not fit) is
    raised here again as the same class with the same message, so a caller sees exit code 5 or
    6 and not "internal error"; a worker that crashes, is killed or hangs is an InternalError.
    """
    with tempfile.TemporaryDirectory(prefix="edgepack-bench-") as tmp:
        inputs = Path(tmp) / "inputs.npz"
        np.savez(inputs, **feed)
        spec = {"runtime": runtime_name, "path": str(path), "inputs": str(inputs),
                "options": asdict(options), "warmup": warmup, "runs": runs,
                "duration_s": duration_s}
        spec_file = Path(tmp) / "spec.json"
        spec_file.write_text(json.dumps(spec))
        result_file = Path(tmp) / "result.json"
        try:
            proc = run_child(
                [sys.executable, "-m", "edgepack.validate.latency", str(spec_file),
                 str(result_file)], timeout=timeout_s, text=True, env=_worker_env())
        except subprocess.TimeoutExpired:
            raise InternalError(f"latency worker for {path} did not finish in {timeout_s:g} s",
                                hint="lower --runs or --duration") from None
        result = _read_result(result_file)
        if proc.returncode == 0 and result is not None:
            return LatencyStats(**result)
        if result is not None and "error" in result:
            raise _worker_error(result["error"])
        raise InternalError(f"latency worker for {path} {_how_it_ended(proc.returncode)}"
                            + _stderr_tail(proc.stderr))


def _read_result(path: Path) -> dict[str, Any] | None:
    """The worker's JSON, or None when it died before writing it whole."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _how_it_ended(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"failed (exit {returncode})"


def _stderr_tail(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return f": {' | '.join(lines[-3:])}" if lines else ""


def _worker_error(error: dict[str, str]) -> EdgepackError:
    """The worker's EdgepackError, rebuilt as the same class (InternalError if unknown)."""
    cls = getattr(errors, error.get("class", ""), None)
    if not (isinstance(cls, type) and issubclass(cls, EdgepackError)):
        cls = InternalError
    return cls(error.get("message", "latency worker failed"))


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    return env


def _worker(spec_file: str, result_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    with np.load(spec["inputs"], allow_pickle=False) as npz:
        feed = {k: npz[k] for k in npz.files}
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # runtimes print C++ notices; the result goes to a file
    try:
        stats = measure(spec["runtime"], spec["path"], feed, RuntimeOptions(**spec["options"]),
                        warmup=spec["warmup"], runs=spec["runs"],
                        duration_s=spec["duration_s"], isolated=True)
    except EdgepackError as exc:
        # the nearest class the parent can rebuild: errors.py's (InputError -> DataError)
        cls = next(c for c in type(exc).__mro__ if getattr(errors, c.__name__, None) is c)
        Path(result_file).write_text(json.dumps(
            {"error": {"class": cls.__name__, "message": str(exc)}}))
        sys.exit(3)
    Path(result_file).write_text(json.dumps(stats.to_dict()))


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
