"""What each structural stage produced: size, parameters, fidelity/accuracy vs the ORIGINAL
model, and latency, all measured on that stage's source file with edgepack's own adapters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.dataset import Dataset
from ..formats import get_format
from ..runtimes import get_runtime
from ..runtimes.base import RuntimeOptions
from ..signature import Signature
from ..validate.accuracy import Accuracy
from ..validate.fidelity import compare_all
from ..validate.latency import measure_isolated

AccuracyFn = Callable[[list[np.ndarray], Dataset], Accuracy | None]
#: what unstructured pruning does not do, said wherever it ran
UNSTRUCTURED_NOTE = ("unstructured zeros shrink the file only once compressed; runtimes still "
                     "compute densely")


def sparsity_details(masks: dict[str, Any]) -> dict[str, Any]:
    """The fraction of zeroed weights per pruned layer, for the prune stage's details."""
    return {"sparsity": {n: float(1 - np.mean(m)) for n, m in masks.items()}}


@dataclass
class Evaluation:
    """The yardstick every stage is held against: the original model's outputs on the eval
    inputs, and how to time a model (runs 0: no latency, e.g. in fast tests)."""

    evals: Dataset
    refs: list[np.ndarray]
    signature: Signature
    accuracy: AccuracyFn
    threads: int = 1
    warmup: int = 10
    runs: int = 100


@dataclass
class StageReport:
    stage: str  # "original", "prune", "lowrank", "distill"
    file: str
    format: str
    parameters: int
    nonzero_parameters: int
    size_bytes: int
    #: deflated size: what an app download carries (sparsity shows here)
    zipped_bytes: int | None = None
    #: multiply-accumulates of one batch-1 inference (None: no counter for the format)
    macs: int | None = None
    cosine: float | None = None
    top1_agreement: float | None = None
    max_abs_error: float | None = None
    top1_accuracy: float | None = None
    p50_ms: float | None = None
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # per-layer decisions

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def measure(stage: str, path: Path, fmt: str, counts: tuple[int, int], ev: Evaluation,
            notes: list[str] | None = None, details: dict[str, Any] | None = None) -> StageReport:
    """Run ``path`` on the eval inputs with its runtime, compare with the original's outputs."""
    runtime = get_runtime(get_format(fmt).runtime)
    session = runtime.load(str(path), RuntimeOptions(threads=ev.threads))
    outs = list(session.run(ev.evals.inputs).values())
    fid = compare_all(ev.signature.output_names, ev.refs, outs)[0]
    acc = ev.accuracy(outs, ev.evals)
    p50 = None
    if ev.runs:
        latency = measure_isolated(runtime.name, path, ev.evals.head(1).inputs,
                                   RuntimeOptions(threads=ev.threads), warmup=ev.warmup,
                                   runs=ev.runs)
        p50 = latency.p50_ms
    from .cost import macs, zipped_bytes

    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() \
        else path.stat().st_size
    return StageReport(stage=stage, file=path.name, format=fmt, parameters=counts[0],
                       nonzero_parameters=counts[1], size_bytes=size,
                       zipped_bytes=zipped_bytes(path), macs=macs(path, fmt),
                       cosine=fid.cosine, top1_agreement=fid.top1_agreement,
                       max_abs_error=fid.max_abs_error,
                       top1_accuracy=acc.top1 if acc is not None else None, p50_ms=p50,
                       notes=notes or [], details=details or {})
