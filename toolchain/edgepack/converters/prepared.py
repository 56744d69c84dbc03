"""The int8 paths of an ONNX source start from its prepared float model (compress/prepare/).

The profile's ``quantization.prepare`` passes (batch-norm folding, equalization, learned
rounding) rewrite the float ONNX model once per build; every format's int8 file is then made
from that model by the format's own path and quantizer, so each inherits the preparation. The
prepared model gets a converter of its own: its fp32 hops are checked against the prepared
model's outputs (learned rounding moves them slightly), while the fp32 reference files, made
from the source itself, stay what the int8 files are judged against.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..compress.prepare import prepare
from ..config.profiles import Quantization
from ..data.dataset import Dataset
from ..runtimes import get_runtime
from ..signature import Signature
from ..validate.outputs import exact_options, feed_for, outputs_in_source_order


def preparation_key(quantization: Quantization | None, calibration: Dataset | None,
                    src_format: str) -> tuple | None:
    """What a prepared model depends on, or None when no preparation applies."""
    if quantization is None or not quantization.prepare or calibration is None \
            or src_format != "onnx":
        return None
    settings = quantization.calibration
    return (*quantization.prepare, settings.samples, settings.seed)


@dataclass
class PreparedSource:
    """The prepared float model, its outputs on the hop-check samples, and the passes' notes."""

    path: Path
    refs: list[np.ndarray]
    notes: list[str]


def prepare_source(source: Path, folder: Path, signature: Signature, check: Dataset,
                   quantization: Quantization, calibration: Dataset,
                   step: Callable[[str], Any]) -> PreparedSource:
    """``source`` with the profile's passes applied, in ``folder``; its outputs on ``check``
    (the prepared model's fp32 hops are checked against them)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / source.name
    notes: list[str] = []
    settings = quantization.calibration
    with step(f"Preparing the float model for int8 ({', '.join(quantization.prepare)})"):
        prepare(source, path, list(quantization.prepare),
                calibration.take(settings.samples, settings.seed), notes)
    runtime = get_runtime("onnxruntime")
    session = runtime.load(str(path), exact_options(runtime.name))
    outs = session.run(feed_for(session, check.inputs, signature,
                                [s.layout for s in signature.inputs]))
    refs = outputs_in_source_order(session, outs, signature,
                                   [s.layout for s in signature.outputs])
    return PreparedSource(path, refs, notes)
