"""Activation ranges beyond min/max for TFLite int8 (calibration methods ``mse``, ``percentile``),
and the true min/max at the edges where ai-edge-quantizer's own clips them.

Both TFLite quantizers take their activation ranges from a calibration that can be edited
before they quantize: the TFLite converter's calibrated float flatbuffer (each tensor's min/max
in its quantization parameters, which its MLIR quantizer reads) and ai-edge-quantizer's
calibration statistics (a min/max per tensor name). Here the float model is run one sample at
a time, each calibrated tensor's values streamed into a fixed-size histogram
(compress/ranges.py), and its min/max replaced by the least-squared-error range (``mse``) or
the range that holds all but a sliver of the values (``percentile``), so either
quantizer quantizes with those ranges and everything else stays its own (op coverage, kernels,
bias correction, the fallback's float layers).

What reaches the model's outputs keeps its min/max, as in compress/onnx_ranges.py: what the app
reads is never clipped (a classifier's top logit clipped to its neighbours' value ties them).
That is the true min/max, not ai-edge-quantizer's own statistics (an average of each sample's
min/max). With method ``minmax`` those statistics are kept inside the model, and the model's
inputs and what reaches its outputs get their true min/max (``true_edges``), as the TFLite
converter and ONNX Runtime give them: ai-edge-quantizer's own quantized MediaPipe pose's input
[0, 1] over [0, 0.966], and face landmark's presence score over the single value 7.61 (its
true range [-10.7, 30.1]). Inside the model they hold better than the true min/max (pose's
world landmarks: cosine 0.83 with theirs, 0.38 with the true ones).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..data.dataset import Dataset
from . import tflite_graph as graph
from .ranges import PERCENTILE, Histogram, mse_range, percentile_range

#: the range each calibration method beyond min/max gives a histogram, and how it is said
METHODS: dict[str, tuple[Callable[[Histogram], tuple[float, float]], str]] = {
    "mse": (mse_range, "each activation's least-squared-error int8 clipping range"),
    "percentile": (percentile_range, f"each activation's {PERCENTILE}th-percentile range"),
}


#: what the report says of ai-edge-quantizer's min/max with the true one at the edges
EDGES_NOTE = ("activation ranges: ai-edge-quantizer's (each sample's min/max averaged) inside "
              "the model; its inputs and outputs over their true min/max, never clipped")


def note(method: str) -> str:
    """What the report says of the ranges ``method`` set."""
    return f"activation ranges: {METHODS[method][1]} (calibration method {method}; what " \
        "reaches the model's outputs keeps its min/max)"


def searched_ranges(flatbuffer: bytes, names: set[str], samples: Dataset, method: str,
                    path: Path | None) -> dict[str, tuple[float, float]]:
    """The ``method`` range of each activation of ``flatbuffer`` named in ``names`` over
    ``samples`` (min/max for what reaches the model's outputs), kept in ``path`` when given."""
    def searched() -> dict[str, tuple[float, float]]:
        outputs = output_names(flatbuffer)
        choose = METHODS[method][0]
        return {name: hist.finite_range if name in outputs else choose(hist)
                for name, hist in histograms(flatbuffer, names, samples).items()}

    return _kept(path, searched)


def histograms(flatbuffer: bytes, names: set[str], samples: Dataset) -> dict[str, Histogram]:
    """A histogram of each float tensor named in ``names`` over ``samples``, one at a time."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # the builtin kernels without XNNPACK: a delegated graph keeps no intermediate values
    builtin = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interp = Interpreter(model_content=flatbuffer, experimental_preserve_all_tensors=True,
                             experimental_op_resolver_type=builtin)
        interp.allocate_tensors()
    except (RuntimeError, ValueError):  # a custom op only the default delegate provides
        interp = Interpreter(model_content=flatbuffer, experimental_preserve_all_tensors=True)
        interp.allocate_tensors()
    made = {int(t) for op in interp._get_ops_details() for t in op["outputs"]}  # noqa: SLF001
    made |= {int(d["index"]) for d in interp.get_input_details()}
    index = {t["name"]: int(t["index"]) for t in interp.get_tensor_details()
             if t["name"] in names and int(t["index"]) in made
             and np.dtype(t["dtype"]).kind == "f"}
    key, feeds = signature_feeds(flatbuffer, samples)
    runner = interp.get_signature_runner(key)
    hists = {name: Histogram() for name in index}
    for feed in feeds:
        runner(**feed)
        for name, i in index.items():
            hists[name].add(interp.get_tensor(i))
    return hists


def signature_feeds(flatbuffer: bytes,
                    samples: Dataset) -> tuple[str, list[dict[str, np.ndarray]]]:
    """The samples as the file's signature takes them: the serving signature's key (else the
    first signature's, as formats/tflite.py reads a file) and the feeds keyed by its input
    names: by name when the data's names are the signature's, else in order (a file an earlier
    hop renamed the inputs of)."""
    signatures = graph.read(flatbuffer).signatureDefs
    signature = next((s for s in signatures if s.signatureKey.decode() == graph.SERVING_KEY),
                     signatures[0])
    names = [item.name.decode() for item in signature.inputs]
    feeds = []
    for feed in samples.samples():
        by_name = set(feed) == set(names)
        feeds.append({name: feed[name] if by_name else value
                      for name, value in zip(names, feed.values(), strict=True)})
    return signature.signatureKey.decode(), feeds


def true_edges(flatbuffer: bytes, names: set[str], samples: Dataset,
               path: Path | None) -> dict[str, tuple[float, float]]:
    """The true min/max over ``samples`` of the model's inputs and of what reaches its
    outputs, of those named in ``names``, kept in ``path`` when given."""
    return _kept(path, lambda: {
        name: hist.finite_range
        for name, hist in histograms(flatbuffer, names & edge_names(flatbuffer), samples).items()})


def _kept(path: Path | None, ranges: Callable[[], dict[str, tuple[float, float]]]
          ) -> dict[str, tuple[float, float]]:
    """The ranges kept in ``path`` by an earlier attempt of this build, else ``ranges()``,
    kept there (the accuracy fallback quantizes the same file again: the ranges are the
    same)."""
    if path is not None and path.is_file():
        return {name: (low, high) for name, (low, high) in json.loads(path.read_text()).items()}
    made = ranges()
    if path is not None:  # written whole, then renamed: a killed build leaves no torn file
        part = path.with_suffix(".part")
        part.write_text(json.dumps(made))
        part.replace(path)
    return made


def edge_names(flatbuffer: bytes) -> set[str]:
    """The names of the main graph's input tensors and ``output_names``: what the app feeds
    and reads, never clipped."""
    sub = graph.read(flatbuffer).subgraphs[0]
    return {sub.tensors[i].name.decode() for i in sub.inputs} | output_names(flatbuffer)


def output_names(flatbuffer: bytes) -> set[str]:
    """The names of the main graph's output tensors and of the tensors whose values reach one
    unchanged (through reshapes, transposes, slices, concatenations): a quantizer gives those
    the output's scale, so clipping them would clip the output."""
    from ai_edge_litert.schema_py_generated import BuiltinOperator

    moving = {getattr(BuiltinOperator, kind) for kind in VALUE_MOVING}
    model = graph.read(flatbuffer)
    sub = model.subgraphs[0]
    reached = {int(i) for i in sub.outputs}
    for op in reversed(sub.operators):  # graph order: a consumer comes after its producers
        if graph.op_code(model, op) in moving and reached.intersection(op.outputs):
            reached |= {int(i) for i in op.inputs
                        if i >= 0 and not _constant(model, sub.tensors[i])}
    return {sub.tensors[i].name.decode() for i in reached}


#: ops whose outputs hold their inputs' values, moved: a range set on one holds for the other
VALUE_MOVING = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE", "CONCATENATION", "PACK",
                "SLICE", "STRIDED_SLICE", "GATHER", "QUANTIZE", "DEQUANTIZE")


def _constant(model: Any, tensor: Any) -> bool:
    data = model.buffers[tensor.buffer].data
    return data is not None and len(data) > 0


def set_calibrated_ranges(flatbuffer: bytes, ranges: dict[str, tuple[float, float]]) -> bytes:
    """The TFLite converter's calibrated float flatbuffer with the min/max of each tensor in
    ``ranges`` replaced (what its MLIR quantizer turns into scales and zero points)."""
    model = graph.read(flatbuffer)
    for sub in model.subgraphs:
        for tensor in sub.tensors:
            span = ranges.get(tensor.name.decode())
            if span is not None and tensor.quantization is not None \
                    and tensor.quantization.min is not None:
                tensor.quantization.min = np.array([span[0]], np.float32)
                tensor.quantization.max = np.array([span[1]], np.float32)
    return graph.write(model)


def calibrated_names(flatbuffer: bytes) -> set[str]:
    """The tensors of the TFLite converter's calibrated flatbuffer that carry a min/max."""
    return {t.name.decode() for sub in graph.read(flatbuffer).subgraphs for t in sub.tensors
            if t.quantization is not None and t.quantization.min is not None
            and len(t.quantization.min) == 1}
