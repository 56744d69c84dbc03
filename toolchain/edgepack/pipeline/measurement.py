"""Measuring one converted file: fidelity and accuracy on the eval set, then host latency in its
own process; from the step cache when this very file was measured so before (same data,
options and kind of host). The validate stage and the accuracy fallback both measure here.
"""

from __future__ import annotations

from pathlib import Path

from ..cache.keys import build_key, file_digest, host_facts
from ..cache.records import Measurement
from ..converters.converter import ConvertedFile
from ..formats import get_format
from ..runtimes import get_runtime
from ..runtimes.base import RuntimeOptions, Session
from ..validate.latency import measure_isolated
from ..validate.outputs import exact_options, feed_for, measure_fidelity
from .context import BuildContext, Yardstick


def open_session(produced: ConvertedFile, threads: int | None = None,
                 as_written: bool | None = None) -> Session:
    """``produced`` loaded by its format's runtime, computing what the file says
    (validate/outputs.py ``exact_options``; ``as_written``: the build's
    ``BuildContext.int8_as_written``)."""
    runtime = get_runtime(get_format(produced.format).runtime)
    return runtime.load(str(produced.path), exact_options(runtime.name, threads, as_written))


def measure(ctx: BuildContext, produced: ConvertedFile, files: list[Path],
            yardstick: Yardstick) -> Measurement:
    """Fidelity and accuracy of ``produced`` (whose files are ``files``), then its latency."""
    file = produced.path
    key = measure_key(ctx, produced, files, yardstick)
    cached = ctx.steps.fetch_measurement(key) if ctx.steps and key else None
    if cached is not None:
        with ctx.progress.step(f"Validating {file.name} (cached)"):
            return cached
    evals = yardstick.evaluation
    runtime = get_runtime(get_format(produced.format).runtime)
    with ctx.progress.step(f"Validating {file.name} on {len(evals)} eval samples"):
        session = open_session(produced, ctx.threads, ctx.int8_as_written)
        fidelity, accuracy = measure_fidelity(
            session, evals, yardstick.outputs, yardstick.signature,
            (produced.input_layouts, produced.output_layouts), ctx.accuracy)
    validation = ctx.request.validation
    with ctx.progress.step(f"Measuring host latency of {file.name} ({runtime.name})"):
        feed = feed_for(session, evals.head(1).inputs, yardstick.signature,
                        produced.input_layouts)
        latency = measure_isolated(runtime.name, file, feed, RuntimeOptions(threads=ctx.threads),
                                   warmup=validation.warmup, runs=validation.runs)
    m = Measurement(fidelity, accuracy, latency, session.runtime_version, session.signature,
                    session)
    if ctx.steps and key:
        ctx.steps.store_measurement(key, m)
    return m


def measure_key(ctx: BuildContext, produced: ConvertedFile, files: list[Path], yardstick: Yardstick,
                latency: bool = True) -> str | None:
    """What a validation's numbers depend on (``latency=False``: fidelity and accuracy only,
    the accuracy fallback's judging); None (not cached) without the step cache or with a user
    metric whose code cannot be located (it could change under its name)."""
    if ctx.steps is None:
        return None
    metric = None
    if ctx.metric is not None:
        code = ctx.metric.code_file()
        if code is None:
            return None
        metric = {"name": ctx.metric.spec, "code": file_digest(code)}
    validation = ctx.request.validation
    timing = {"threads": ctx.threads, "warmup": validation.warmup, "runs": validation.runs,
              "host": host_facts()} if latency else {}
    return build_key({
        "step": "validation" if latency else "fidelity",
        "files": {p.name: file_digest(p) for p in files},
        "format": produced.format,
        "layouts": [produced.input_layouts, produced.output_layouts],
        "signature": yardstick.signature.to_dict(), "eval": ctx.steps.digest(yardstick.evaluation),
        "refs": ctx.steps.digest(yardstick.outputs), "metric": metric,
        "int8_as_written": ctx.int8_as_written, **timing})
