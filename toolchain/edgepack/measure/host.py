"""``bench``: the latency of model files as an app on this machine would see it.

Each artifact is timed in its own fresh process (``validate.latency.measure_isolated``), one after
the other, so no runtime's threads, caches or memory skew another's, and peak RSS is the model's
own. Every file is checked (format, runtime, inputs) before the first one is timed: a typo in
the third path fails in a second, not after minutes of timing.

Inputs come from a data file (the first ``batch`` samples, in real values: an int8-I/O model's
inputs are quantized by the adapter, as in an app) or are seeded random values of the model's
input shapes. Random values need static shapes apart from the batch: a dynamic height or width
would have to be guessed, and the timing would describe the guess.

OpenVINO runs at its own default precision unless a hint is given (bf16 for an f32 model on a
CPU with AVX512_BF16/AMX): what a device runs is what is measured, and the precision the runtime
chose is recorded in ``LatencyStats.precision``.

The module is called ``benchmark`` and not ``bench`` on purpose: importing a submodule named
``edgepack.bench`` would replace the ``edgepack.bench`` function with the module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..data.dataset import load_dataset
from ..data.random_inputs import random_inputs
from ..errors import DataError, MissingDependencyError, UsageError
from ..formats import detect
from ..progress import Progress
from ..runtimes import RUNTIMES, Runtime, RuntimeOptions, get_runtime, runtime_for_format
from ..signature import Signature
from ..validate.latency import LatencyStats, measure_isolated

DEFAULT_RUNS = 100
PRECISION_HINTS = ("f32", "bf16", "f16")
DEVICE_TYPES = ("CPU", "GPU", "NPU")
#: runtimes that take ``device`` and ``precision_hint`` (the others run on the CPU as they are)
_DEVICE_RUNTIMES = ("openvino",)


@dataclass(frozen=True)
class BenchJob:
    """One artifact, ready to time: which runtime, with which options, on which inputs."""

    path: Path
    format: str
    runtime: str
    options: RuntimeOptions
    feed: dict[str, np.ndarray]


def bench(paths: Sequence[str | Path], *, threads: int | None = None, runs: int | None = None,
          duration_s: float | None = None, warmup: int = 10, batch: int | None = None,
          runtime: str | None = None, device: str = "CPU", precision_hint: str | None = None,
          inputs: str | Path | None = None, seed: int = 0,
          progress: Progress | None = None) -> list[LatencyStats]:
    """Time each of ``paths`` in its own process; one LatencyStats per path, in order.

    ``runs`` (default 100) and ``duration_s`` are exclusive. ``batch`` is the batch size of a
    model with a dynamic (or static 1) batch; default 1. ``device`` and ``precision_hint`` apply
    to the artifacts OpenVINO runs. ``inputs`` is an .npz or a folder of .npy as in ``build``.
    """
    jobs = plan(paths, threads=threads, runs=runs, duration_s=duration_s, warmup=warmup,
                batch=batch, runtime=runtime, device=device, precision_hint=precision_hint,
                inputs=inputs, seed=seed)
    progress = progress or Progress()
    results = []
    for job in jobs:
        with progress.step(f"Timing {job.path.name} ({job.runtime}, own process)"):
            results.append(measure_isolated(
                job.runtime, job.path, job.feed, job.options, warmup=warmup,
                runs=DEFAULT_RUNS if runs is None else runs, duration_s=duration_s))
    return results


def plan(paths: Sequence[str | Path], *, threads: int | None, runs: int | None,
         duration_s: float | None, warmup: int, batch: int | None, runtime: str | None,
         device: str, precision_hint: str | None, inputs: str | Path | None,
         seed: int) -> list[BenchJob]:
    """Check the arguments and every artifact; raise before anything is timed."""
    _check_numbers(threads=threads, runs=runs, duration_s=duration_s, warmup=warmup,
                   batch=batch)
    if not paths:
        raise UsageError("no artifact to benchmark", hint="give one or more model files")
    device = device.upper()
    if device not in DEVICE_TYPES:
        raise UsageError(f"unknown device type '{device}'", hint=f"one of {DEVICE_TYPES}")
    if precision_hint is not None and precision_hint not in PRECISION_HINTS:
        raise UsageError(f"unknown precision hint '{precision_hint}'",
                         hint=f"one of {PRECISION_HINTS}")
    jobs = []
    for raw in paths:
        path = Path(raw)
        fmt = detect(path)  # ModelError: missing, unknown format
        rt = _runtime(fmt.name, runtime)
        takes_device = rt.name in _DEVICE_RUNTIMES
        options = RuntimeOptions(threads=threads, device=device if takes_device else "CPU",
                                 precision_hint=precision_hint if takes_device else None)
        signature = fmt.read_signature(path)  # ModelError: corrupt, unreadable
        feed = inputs_for(signature, path, batch=batch, inputs=inputs, seed=seed)
        jobs.append(BenchJob(path, fmt.name, rt.name, options, feed))
    if (device != "CPU" or precision_hint) and \
            not any(j.runtime in _DEVICE_RUNTIMES for j in jobs):
        raise UsageError("--device-type and --precision-hint apply to OpenVINO, and no "
                         "artifact here runs on it", hint="pass an OpenVINO .xml or "
                                                          "--runtime openvino for an .onnx")
    return jobs


def _check_numbers(*, threads: int | None, runs: int | None, duration_s: float | None,
                   warmup: int, batch: int | None) -> None:
    if runs is not None and duration_s is not None:
        raise UsageError("--runs and --duration are mutually exclusive",
                         hint="time a number of runs or for a duration, not both")
    for name, value, low in (("threads", threads, 1), ("runs", runs, 1), ("batch", batch, 1),
                             ("warmup", warmup, 0)):
        if value is not None and value < low:
            raise UsageError(f"--{name} must be at least {low}, got {value}")
    if duration_s is not None and not duration_s > 0:
        raise UsageError(f"--duration must be more than 0 seconds, got {duration_s}")


def _runtime(format_name: str, name: str | None) -> Runtime:
    """The runtime asked for (checked against the format), or the format's default one."""
    if name is None:
        try:
            return runtime_for_format(format_name)
        except KeyError:
            raise UsageError(f"no runtime adapter runs {format_name} models") from None
    try:
        rt = get_runtime(name)
    except KeyError:
        raise UsageError(f"unknown runtime '{name}'",
                         hint=f"one of {', '.join(r.name for r in RUNTIMES)}") from None
    if format_name not in rt.formats:
        raise UsageError(f"runtime {name} does not run {format_name} models",
                         hint=f"it runs {', '.join(rt.formats)}")
    if not rt.available():
        raise MissingDependencyError(f"runtime {name} is not installed here")
    return rt


def inputs_for(signature: Signature, path: Path, *, batch: int | None,
               inputs: str | Path | None, seed: int) -> dict[str, np.ndarray]:
    """One batch of inputs in real values: the first samples of ``inputs``, or random ones."""
    real = real_valued(signature)
    n = batch_size(real, path, batch)
    if inputs is not None:
        data = load_dataset(inputs, real)  # DataError: unreadable, does not fit the model
        if len(data) < n:
            raise DataError(f"holds {len(data)} samples; a batch of {n} needs more",
                            path=inputs)
        return data.head(n).inputs
    return random_inputs(real, path, n, seed)


def real_valued(signature: Signature) -> Signature:
    """The signature as callers feed it: quantized int8/uint8 inputs take float32 real values
    (the adapter quantizes them with the tensor's scale and zero point)."""
    return replace(signature, inputs=tuple(
        replace(s, dtype="float32", quantization=None) if s.quantization else s
        for s in signature.inputs))


def batch_size(signature: Signature, path: Path, batch: int | None) -> int:
    """``batch`` (default 1) for a dynamic or static-1 batch; a static batch N > 1 is N."""
    fixed = {s.shape[0] for s in signature.inputs
             if s.shape and isinstance(s.shape[0], int) and s.shape[0] != 1}
    if not fixed:
        return batch or 1
    size = max(fixed)
    if batch is not None and batch != size:
        raise UsageError(f"the model's batch is fixed at {size}; --batch {batch} cannot run",
                         path=path, hint=f"drop --batch or pass --batch {size}")
    return size


