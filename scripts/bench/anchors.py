"""The int8 anchors edgepack is measured against, and the measuring helpers the benchmarks share.

Anchors are the field's plain post-training quantization with every default: ONNX Runtime's
``quantize_static`` (QDQ, MinMax, per-tensor weights) and NNCF's ``nncf.quantize`` on an
OpenVINO model, both calibrated on the samples edgepack gets. Used by ``quantization.py``
(EfficientNet-Lite0, Fashion-MNIST) and ``zoo.py`` (the model zoo), which import this file
from beside them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from edgepack.quiet import captured

#: one batch-of-one feed: input name -> array
Feed = dict[str, np.ndarray]
#: opens a model file: (run one feed, close)
Opener = Callable[[Path], tuple[Callable[[Any], Any], Callable[[], None]]]


def wilson(k: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n: edgepack's own, as its budget reports it."""
    from edgepack.validate.budget import wilson as share_interval

    return share_interval(k / n, n) if n else (math.nan, math.nan)


def file_size(path: Path) -> int:
    """Bytes of a model, with OpenVINO's .bin beside its .xml."""
    size = path.stat().st_size
    if path.suffix == ".xml":
        size += path.with_suffix(".bin").stat().st_size
    return size


def onnx_feeds(src: Path, calib: np.ndarray | list[Feed]) -> list[Feed]:
    """Batch-of-one feeds: ``calib`` as given, or the rows of one array for the model's only
    input."""
    if not isinstance(calib, np.ndarray):
        return calib
    import onnx

    name = onnx.load(str(src), load_external_data=False).graph.input[0].name
    return [{name: calib[i:i + 1].astype(np.float32)} for i in range(len(calib))]


class Reader:
    """ONNX Runtime CalibrationDataReader over batch-of-one feeds."""

    def __init__(self, feeds: list[Feed]):
        self.feeds, self.i = feeds, 0

    def get_next(self) -> Feed | None:
        if self.i >= len(self.feeds):
            return None
        self.i += 1
        return self.feeds[self.i - 1]

    def rewind(self) -> None:
        self.i = 0

    def __iter__(self):
        return iter(self.get_next, None)


def ort_quant(src: Path, out: Path, calib: np.ndarray | list[Feed], *, pre: bool = False,
              **kwargs: Any) -> Path:
    """``quantize_static(src, out)`` on ``calib`` (kwargs: options beyond the defaults;
    ``pre``: run ``quant_pre_process`` first). Kept when ``out`` exists."""
    if out.exists():
        return out
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    feeds = onnx_feeds(src, calib)
    model = src
    if pre:
        model = out.with_name(out.stem + ".pre.onnx")
        with captured():
            quant_pre_process(str(src), str(model))
    tmp = out.with_name(out.stem + ".tmp.onnx")
    try:
        with captured():
            quantize_static(str(model), str(tmp), Reader(feeds), **kwargs)
    finally:
        if pre:
            model.unlink(missing_ok=True)
    tmp.rename(out)
    return out


def nncf_ov(src: Path, out: Path, calib: np.ndarray | list[Any], **kwargs: Any) -> Path:
    """``nncf.quantize`` of the OpenVINO model ``src`` (an IR or an ONNX file) on ``calib``
    (rows of one array, or what OpenVINO's infer takes per sample: a feed dict); saved as an
    fp32-weight IR. Kept when ``out`` exists."""
    if out.exists():
        return out
    import logging

    import nncf
    import openvino as ov

    nncf.set_log_level(logging.ERROR)
    model = ov.Core().read_model(str(src))
    items = [calib[i:i + 1] for i in range(len(calib))] if isinstance(calib, np.ndarray) \
        else calib
    with captured():
        q = nncf.quantize(model, nncf.Dataset(items), subset_size=len(items), **kwargs)
    ov.save_model(q, str(out), compress_to_fp16=False)
    return out


def time_interleaved(paths: dict[str, Path], x1: Any, rounds: int, runs: int, warmup: int,
                     opener: Opener) -> dict[str, dict[str, Any]]:
    """p50 per model, the median over rounds of its p50 ratio to the first (fp32) model, and
    each round's ratio. In each round every model is opened (one live at a time), warmed up
    and timed on ``x1``, in an order that rotates: a noisy phase slows both sides of a pair."""
    names = list(paths)
    per_round: dict[str, list[float]] = {n: [] for n in names}
    pooled: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            run, close = opener(paths[n])
            with captured():
                for _ in range(warmup):
                    run(x1)
                times = []
                for _ in range(runs):
                    t = time.perf_counter()
                    run(x1)
                    times.append(time.perf_counter() - t)
            close()
            del run
            per_round[n].append(float(np.median(times)))
            pooled[n].extend(times)
    ref = names[0]
    out: dict[str, dict[str, Any]] = {}
    for n in names:
        ratios = np.array(per_round[n]) / np.array(per_round[ref])
        out[n] = {"p50_ms": 1e3 * float(np.median(pooled[n])), "ratio": float(np.median(ratios)),
                  "rounds": [float(r) for r in ratios]}
    return out
