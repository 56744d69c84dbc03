"""MSE-optimal activation ranges for NNCF's int8 OpenVINO IR (calibration method ``mse``).

NNCF's range estimators aggregate per-sample minima, maxima or quantiles; none minimizes a
tensor's own quantization error. Here NNCF quantizes with min/max ranges first, then each
activation FakeQuantize's range is scaled by the factor in (0, 1] that minimizes the squared
int8 error of the values it receives on the calibration samples (compress/ranges.py). Scaling
keeps the range's shape: NNCF's symmetric or unsigned ranges stay so, and their zero point
with them. The values are those of the quantized model with every activation FakeQuantize
bypassed (its weights are already int8; SmoothQuant's scales are in), streamed a sample at a
time into fixed-size histograms.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .ranges import Histogram, mse_scale
from .transformer import openvino_graph

#: FakeQuantize inputs: data, input low, input high, output low, output high
RANGE_PORTS = (1, 2, 3, 4)


def activation_quantizers(model: Any) -> list[Any]:
    """The FakeQuantize ops of ``model`` that quantize activations (not constants), with one
    range per tensor."""
    constants = openvino_graph(model).constants
    found = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "FakeQuantize":
            continue
        source = op.input_value(0)
        if f"{source.get_node().get_friendly_name()}:{source.get_index()}" in constants:
            continue
        if all(_constant(op, port) is not None and _constant(op, port).size == 1
               for port in RANGE_PORTS):
            found.append(op)
    return found


def apply_mse_ranges(model: Any, feeds: list[dict[str, np.ndarray]]) -> int:
    """Scale every activation range of ``model`` (in place) to its least-squared-error factor
    on ``feeds``; how many ranges changed."""
    import openvino as ov

    quantizers = activation_quantizers(model)
    if not quantizers:
        return 0
    hists = _histograms(model, [q.get_friendly_name() for q in quantizers], feeds)
    changed = 0
    for fq in quantizers:
        low, high = (float(_constant(fq, p).reshape(-1)[0]) for p in (1, 2))
        factor = mse_scale(hists[fq.get_friendly_name()], low, high)
        if factor >= 1.0:
            continue
        for port in RANGE_PORTS:
            old = _constant(fq, port)
            value = np.asarray(old * factor, dtype=np.float32).reshape(old.shape)
            fq.input(port).replace_source_output(ov.op.Constant(value).output(0))
        changed += 1
    return changed


def _histograms(model: Any, names: list[str],
                feeds: list[dict[str, np.ndarray]]) -> dict[str, Histogram]:
    """The values each named FakeQuantize receives, with every one of them bypassed."""
    import openvino as ov

    twin = model.clone()
    by_name = {op.get_friendly_name(): op for op in twin.get_ordered_ops()}
    sources: dict[tuple[str, int], Any] = {}  # one output per tensor, however many read it
    tensor_of = {}
    for name in names:
        fq = by_name[name]
        source = fq.input_value(0)
        for target in list(fq.output(0).get_target_inputs()):
            target.replace_source_output(source)
        key = (source.get_node().get_friendly_name(), source.get_index())
        sources.setdefault(key, source)
        tensor_of[name] = list(sources).index(key)
    # a tensor that is already a model output is not added again: find each one's Result
    added = twin.add_outputs(list(sources.values()))
    position = {o.get_node().get_friendly_name(): i for i, o in enumerate(twin.outputs)}
    index = [position[o.get_node().get_friendly_name()] for o in added]
    compiled = ov.Core().compile_model(twin, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    hists = [Histogram() for _ in sources]
    for feed in feeds:
        request.infer(feed)
        for k, hist in enumerate(hists):
            hist.add(request.get_output_tensor(index[k]).data)
    return {name: hists[k] for name, k in tensor_of.items()}


def _constant(op: Any, port: int) -> np.ndarray | None:
    node = op.input_value(port).get_node()
    return node.get_data() if node.get_type_name() == "Constant" else None
