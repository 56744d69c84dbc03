"""Activation ranges beyond min/max for ONNX Runtime's quantizer (calibration methods ``mse``
and ``percentile``), set by edgepack.

ONNX Runtime calibrates with min/max, entropy or percentile; none minimizes a tensor's own
quantization error, its histogram methods hold every sample's activations until the
histograms are built (docs/benchmarks.md), and its percentile clips the model's outputs with
the rest. Here the tensors ONNX Runtime would calibrate (its own selection, through its
histogram calibrator's augmented graph) are streamed one sample at a time into fixed-size
histograms (compress/ranges.py), each gets its least-squared-error range or the range that
holds all but a sliver of its values (the same ``percentile_range`` the TFLite path takes),
and the ranges are written as ONNX Runtime's calibration cache, which ``quantize_static``
reads instead of calibrating.

What reaches the model's outputs keeps its min/max: what the app reads is never clipped (a
classifier's top logit clipped to its neighbours' value ties them; ONNX Runtime's own
percentile clipped MediaPipe pose's presence score, a Sigmoid read through a Reshape).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .onnx_transformer import Recipe, coarse_products
from .ranges import Histogram, mse_range, percentile_range, snr_db

#: the range each method edgepack calibrates itself gives a histogram
METHODS: dict[str, Callable[[Histogram], tuple[float, float]]] = {
    "mse": mse_range, "percentile": percentile_range}

#: ops whose outputs hold their inputs' values, moved: ONNX Runtime gives their output's
#: scale to their input, so a range clipped before one clips what comes out of it
VALUE_MOVING = {"Reshape", "Squeeze", "Unsqueeze", "Flatten", "Transpose", "Concat", "Slice",
                "Split", "Gather", "Identity", "QuantizeLinear", "DequantizeLinear"}


def own_calibration(model: Path, reader: Any, method: str, recipe: Recipe, ranges: Path,
                    coarse_file: Path | None) -> set[str]:
    """What edgepack calibrates itself, in one streamed pass over ``reader``'s samples (ONNX
    Runtime's CalibrationDataReader protocol) when it is not known yet: with a method of
    ``METHODS`` the ranges, written to ``ranges`` (an ONNX Runtime calibration cache); with
    the transformer recipe, the matrix products whose output int8 cannot hold, returned, and
    kept in ``coarse_file`` (when given) for the build's next attempts."""
    import json

    import onnx

    need_ranges = method in METHODS and not ranges.is_file()
    known = coarse_file is not None and coarse_file.is_file()
    if not need_ranges and (not recipe.transformer or known):
        return set(json.loads(coarse_file.read_text())) if known else set()
    graph = onnx.load(str(model), load_external_data=False).graph
    hists = collect_histograms(model, reader, recipe.op_types)
    if need_ranges:
        write_ranges(hists, output_names(graph), METHODS[method], ranges)
    if not recipe.transformer:
        return set()
    snr = {name: snr_db(hist, *mse_range(hist)) for name, hist in hists.items()}
    coarse = coarse_products(graph, snr)
    if coarse_file is not None:
        part = coarse_file.with_suffix(".part")
        part.write_text(json.dumps(sorted(coarse)))
        part.replace(coarse_file)
    return coarse


def output_names(graph: Any) -> set[str]:
    """The graph's outputs and the tensors whose values reach one unchanged (through
    ``VALUE_MOVING`` ops; not their constant inputs, such as a Reshape's shape)."""
    producer = {o: n for n in graph.node for o in n.output}
    constant = {t.name for t in graph.initializer}
    reached = {o.name for o in graph.output}
    stack = list(reached)
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.op_type not in VALUE_MOVING:
            continue
        for name in node.input:
            if name and name not in reached and name not in constant:
                reached.add(name)
                stack.append(name)
    return reached


def write_ranges(hists: dict[str, Histogram], outputs: set[str],
                 method: Callable[[Histogram], tuple[float, float]], path: Path) -> None:
    """Write each tensor's ``method`` range (min/max for ``outputs``, what reaches the model's
    outputs) to ``path`` as ONNX Runtime's calibration cache."""
    from onnxruntime.quantization.calibrate import (
        CalibrationMethod,
        TensorData,
        TensorsData,
        save_tensors_data,
    )

    ranges = {}
    for name, hist in hists.items():
        low, high = hist.finite_range if name in outputs else method(hist)
        ranges[name] = TensorData(lowest=np.array(low, np.float32),
                                  highest=np.array(high, np.float32))
    save_tensors_data(TensorsData(CalibrationMethod.MinMax, ranges), path)


def collect_histograms(model: Path, reader: Any,
                       op_types: list[str] | None) -> dict[str, Histogram]:
    """A histogram per tensor ONNX Runtime's calibrators select, one sample at a time (its
    histogram calibrator adds them to the graph's outputs; the model's inputs among them)."""
    from onnxruntime.quantization.calibrate import HistogramCalibrater

    with tempfile.TemporaryDirectory(prefix="edgepack-mse-") as tmp:
        cal = HistogramCalibrater(str(model), op_types, use_external_data_format=True,
                                  augmented_model_path=str(Path(tmp) / "aug.onnx"))
        cal.augment_graph()
        cal.create_inference_session()
        session = cal.infer_session
        wanted = [o.name for o in session.get_outputs() if o.name in cal.tensors_to_calibrate]
        hists = {n: Histogram() for n in wanted}
        for feed in iter(reader.get_next, None):
            for name, value in zip(wanted, session.run(wanted, feed), strict=True):
                hists[name].add(value)
        del cal, session
    return hists
