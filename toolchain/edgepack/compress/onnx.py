"""ONNX compression with ONNX Runtime's and onnxconverter-common's own tools.

- int8: ``quantize_static`` to QDQ (runs in ONNX Runtime and OpenVINO alike; QOperator
  per-channel does not load in OpenVINO), int8 weights, int8 or uint8 activations as the profile
  says, per-channel weights as the profile says, calibrated on the profile's seeded sample with
  its method. ``quant_pre_process`` (shape inference, graph optimisation) runs first, as ONNX
  Runtime recommends, as far as the graph allows (compress/onnx_prepare.py). Layers the
  accuracy fallback keeps in float really compute in float in ONNX Runtime (see
  ``float_inputs``). Then each layer's bias is corrected for the shift its
  weights' rounding makes (compress/onnx_bias.py). Methods ``mse`` and ``percentile`` set each
  activation's range to its least-squared-error clipping or its percentile range, what reaches
  the outputs left unclipped (compress/onnx_ranges.py); a transformer gets its own
  recipe (compress/onnx_transformer.py).
- dynamic-int8: ``quantize_dynamic``, int8 weights only.
- fp16: ``convert_float_to_float16`` with float32 model I/O kept, so apps feed the same arrays,
  and an overflow guard: nodes whose weights or activations leave the fp16 range stay fp32.
  (ONNX Runtime's CPU provider runs many fp16 nodes in fp32 behind inserted casts, so a host
  run does not reveal an overflow a GPU would hit: the guard measures the fp32 activations.)

Fixed input shapes (``--input-shape``, a static-shape target) are written into the model
before any of these, so the compressed file has them; without them its dynamic dims are kept.

Calibration samples are fed to ONNX Runtime's calibrator a few at a time
(``CALIBRATION_STRIDE``), so neither min/max nor histogram calibration holds every sample's
activations at once.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..cache.keys import file_digest
from ..data.dataset import Dataset
from ..errors import ConversionError, DataError
from ..formats.onnx import write_with_shapes
from . import onnx_transformer
from .activations import following
from .bias import BIAS_SAMPLES, cached
from .context import ConvertContext
from .fp16_range import FP16_MAX, beyond_fp16
from .onnx_bias import apply as apply_shifts
from .onnx_bias import measure as measure_shifts
from .onnx_guard import blind_spots
from .onnx_guard import notes as guard_notes
from .onnx_prepare import prepare
from .onnx_ranges import own_calibration
from .qdq import drop_unread
from .transformer import onnx_graph_of

#: ONNX Runtime's histogram calibrator (entropy) is slow per sample on an ImageNet-size CNN
#: (docs/benchmarks.md): it gets at most this many samples
HISTOGRAM_MAX_SAMPLES = 32

#: samples the calibrator sees at once. Given all at once it keeps every activation of every
#: sample before building histograms (gigabytes for ImageNet-size images); ``CalibStridedMinMax``
#: makes ``quantize_static`` feed any calibrator a stride at a time, which the histogram ones
#: fold into their histograms before the next (docs/benchmarks.md)
CALIBRATION_STRIDE = {"minmax": 16, "entropy": 4, "percentile": 16, "mse": 16}

#: methods that see every sample asked for: min/max, and edgepack's streamed histograms
STREAMED = ("minmax", "mse", "percentile")


def compress(src: Path, out: Path, ctx: ConvertContext) -> None:
    if ctx.input_shapes:
        with tempfile.TemporaryDirectory(prefix="edgepack-shapes-") as tmp:
            fixed = write_with_shapes(src, Path(tmp) / src.name, ctx.input_shapes)
            _compress(fixed, out, ctx)
    else:
        _compress(src, out, ctx)


def _compress(src: Path, out: Path, ctx: ConvertContext) -> None:
    if ctx.precision == "fp16":
        _fp16(src, out, ctx)
    elif ctx.precision == "dynamic-int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quant = ctx.quantization
        quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8,
                         per_channel=quant is not None and quant.per_channel,
                         nodes_to_exclude=list(ctx.keep_float),
                         op_types_to_quantize=onnx_transformer.dynamic_op_types(
                             _graph(src), quant.model_type if quant else "auto"))
    elif ctx.precision == "int8":
        _static_int8(src, out, ctx)
    else:
        raise ValueError(f"ONNX compression has no precision {ctx.precision}")


def _fp16(src: Path, out: Path, ctx: ConvertContext) -> None:
    """fp16 with the overflow guard: nodes that make or take values beyond the fp16 range on
    the sample inputs (or hold such weights) stay in fp32, and the report says which."""
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(src))
    blocked = fp16_overflow_nodes(src, ctx.samples)
    if blocked:
        ctx.notes.append(f"fp16 overflow guard: {len(blocked)} node(s) kept in fp32 because "
                         f"their values exceed the fp16 range (|x| > {FP16_MAX:g}): "
                         + ", ".join(blocked))
    # max_finite_val: the converter would otherwise clamp weights to 1e4 without a word
    model = float16.convert_float_to_float16(model, keep_io_types=True,
                                             max_finite_val=FP16_MAX,
                                             node_block_list=blocked or None)
    onnx.save(model, str(out))


def fp16_overflow_nodes(src: Path, samples: Dataset | None) -> list[str]:
    """Nodes whose weights, or whose input/output activations on ``samples``, exceed fp16."""
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        modify_model_output_intermediate_tensors,
    )

    model = onnx.load(str(src))
    big: set[str] = {i.name for i in model.graph.initializer
                     if beyond_fp16(numpy_helper.to_array(i))}
    if samples is not None:
        with tempfile.TemporaryDirectory(prefix="edgepack-fp16-") as tmp:
            aug = Path(tmp) / "all.onnx"
            modify_model_output_intermediate_tensors(str(src), str(aug))
            acts = collect_activations(str(aug), _Reader(samples.head(32).samples(),
                                                         model.graph))
        big |= {t for t, values in acts.items() if any(beyond_fp16(v) for v in values)}
    return [n.name or n.output[0] for n in model.graph.node
            if big & set(n.input) or big & set(n.output)]


def _static_int8(src: Path, out: Path, ctx: ConvertContext) -> None:
    quant = ctx.quantization
    if ctx.calibration is None or quant is None:
        raise DataError("full-integer int8 needs calibration data")
    settings = quant.calibration
    wanted = settings.samples if settings.method in STREAMED \
        else min(settings.samples, HISTOGRAM_MAX_SAMPLES)
    samples = ctx.calibration.take(wanted, settings.seed)
    if len(samples) < min(settings.samples, len(ctx.calibration)):
        ctx.notes.append(f"{settings.method} calibration on {len(samples)} of the "
                         f"{settings.samples} samples asked for: ONNX Runtime's histograms "
                         f"take about 0.3 s a sample on an ImageNet-size CNN")
    # the pre-processed model is the quantizer's input only: it never reaches the output folder
    with tempfile.TemporaryDirectory(prefix="edgepack-int8-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        prepare(src, pre, ctx.notes)
        corrected = _quantize(src, pre, out, samples, ctx)
    graph = _graph(out)
    if not any(n.op_type == "QuantizeLinear" for n in graph.node):
        out.unlink()  # a float file is no int8 deliverable, even one named so
        bodies = sum(n.op_type in ("If", "Loop", "Scan") for n in graph.node)
        raise ConversionError(
            "ONNX Runtime's quantizer quantized no tensor of this graph"
            + (f": its weights sit inside the bodies of {bodies} If/Loop/Scan node(s), which "
               "it does not enter" if bodies else ""), path=src,
            hint="export the model without If/Loop control flow to quantize it, or ship fp32")
    ctx.notes.append(f"calibrated on {len(samples)} samples of {ctx.calibration.source} "
                     f"(seed {settings.seed}, {settings.method}); QDQ, "
                     f"{'per-channel' if quant.per_channel else 'per-tensor'} int8 weights, "
                     f"{quant.activations} activations")
    ctx.notes.append(f"bias correction: {corrected} layer(s) corrected, measured on "
                     f"{min(len(samples), BIAS_SAMPLES)} calibration samples")


def _quantize(src: Path, pre: Path, out: Path, samples: Dataset, ctx: ConvertContext) -> int:
    """``quantize_static`` of the pre-processed ``pre`` to ``out``, then the layers the fallback
    keeps in float and the bias correction; returns the number of layers corrected."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quant = ctx.quantization
    assert quant is not None
    settings = quant.calibration
    # mse, percentile: edgepack's own ranges (compress/onnx_ranges.py), handed over as min/max
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.MinMax,
              "mse": CalibrationMethod.MinMax}[settings.method]
    graph = _graph(pre)
    recipe = onnx_transformer.recipe(graph, quant.model_type)
    keep = with_fused_activations(graph, ctx.keep_float)
    extra: dict[str, Any] = {"ActivationSymmetric": False, "WeightSymmetric": True}
    if keep:  # the float tensor before each Q must be the activation's output (see below)
        extra["QDQKeepRemovableActivations"] = True
    # ranges (or histograms) merged every few samples, not every activation held in memory
    extra["CalibStridedMinMax"] = max(d for d in range(1, CALIBRATION_STRIDE[settings.method] + 1)
                                      if len(samples) % d == 0)
    activations = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[quant.activations]
    ranges = _ranges_file(src, samples, settings.method, recipe.model_type, ctx) \
        or pre.with_name("ranges.json")
    coarse = own_calibration(pre, _Reader(samples.samples(), graph), settings.method, recipe,
                             ranges, ctx.scratch_file("onnx-coarse", src, samples, ".json"))

    def run(exclude: list[str]) -> None:
        quantize_static(str(pre), str(out), _Reader(samples.samples(), graph),
                        quant_format=QuantFormat.QDQ, per_channel=quant.per_channel,
                        activation_type=activations, weight_type=QuantType.QInt8,
                        calibrate_method=method, nodes_to_exclude=exclude + recipe.exclude,
                        op_types_to_quantize=recipe.op_types, extra_options=extra,
                        calibration_cache_path=ranges)

    # nodes int8 cannot represent (compress/onnx_guard.py) stay float, found in the ranges
    found = blind_spots(graph, ranges) if ranges.is_file() else {}
    run(keep + list(found))
    late = {n: why for n, why in blind_spots(graph, ranges).items()
            if n not in found and n not in keep}
    if late:  # calibrated just now: quantize again from the saved ranges, without them
        found.update(late)
        run(keep + list(found))
    ctx.notes.extend(guard_notes(found))
    if recipe.transformer:
        floated = onnx_transformer.float_outputs(out, coarse - {*keep, *found})
        ctx.notes.append(onnx_transformer.describe(recipe, floated))
    if keep or found:
        float_inputs(out, {*keep, *found})
    bias_samples = samples.head(BIAS_SAMPLES)
    # keyed by the QDQ file itself: its layers kept float, ranges and weights all move the
    # shifts (plain int8's shifts on MediaPipe pose's file with float Adds took its world
    # landmarks from cosine 0.90 to 0.57)
    shifts = cached(
        ctx.scratch_file("onnx-bias", out, bias_samples, ".npz", source=file_digest(src)),
        lambda: measure_shifts(out, pre, _Reader(bias_samples.samples(), graph)))
    return apply_shifts(out, shifts)


def _graph(path: Path) -> Any:
    import onnx

    return onnx.load(str(path), load_external_data=False).graph


def _ranges_file(src: Path, samples: Dataset, method: str, model_type: str,
                 ctx: ConvertContext) -> Path | None:
    """Where this build keeps the activation ranges calibrated for ``src`` on ``samples``:
    the accuracy fallback quantizes the same model again with other layers kept in float, and
    calibration (a pass over every sample) is the same each time. Keyed by the model's and the
    samples' bytes, the method and the recipe (which says what is calibrated)."""
    path = ctx.scratch_file("onnx-ranges", src, samples, ".json", method=method,
                            model_type=model_type)
    if path is not None and path.is_file():
        import json

        try:
            json.loads(path.read_text())
        except ValueError:  # cut short (a killed attempt): calibrate again and rewrite it
            path.unlink()
    return path


def with_fused_activations(graph: Any, nodes: tuple[str, ...]) -> list[str]:
    """``nodes`` plus their activations (compress/activations.py): an op kept in float keeps
    its activation in float too."""
    return [*nodes, *following(onnx_graph_of(graph).ops, set(nodes))]


def float_inputs(path: Path, nodes: set[str]) -> None:
    """Feed each kept-float node the float tensor its input was quantized from.

    ``nodes_to_exclude`` alone leaves an excluded Conv/Gemm reading a DequantizeLinear output
    with float weights, and ONNX Runtime's WeightBiasQuantization optimizer (on by default,
    so in every app) then quantizes those weights per-tensor when the session loads: a
    depthwise convolution "kept in float" came out far worse than int8. Reading the float
    tensor (the Q's input, which is the activation's output because removable activations were
    kept) leaves nothing for that optimizer to match; Q/DQ pairs no node reads are dropped.
    """
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    constants = {i.name for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    for node in graph.node:
        if node.name not in nodes:
            continue
        for k, tensor in enumerate(node.input):
            dq = producer.get(tensor)
            if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] in constants:
                continue
            q = producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[k] = q.input[0]
    drop_unread(graph)
    onnx.save(model, str(path))


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over per-sample feeds, renamed
    positionally to the ONNX graph's input names (converters rename inputs) and cast to their
    element types (float images, int64 token ids and sample rates alike); ``set_range`` lets
    the strided MinMax calibration read it a slice at a time."""

    def __init__(self, feeds: list[dict[str, np.ndarray]], graph: Any):
        from onnx import helper

        self._feeds = feeds
        self._it = iter(feeds)
        constants = {i.name for i in graph.initializer}
        inputs = [i for i in graph.input if i.name not in constants]
        self._names = [i.name for i in inputs]
        self._dtypes = [helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)
                        if i.type.tensor_type.elem_type else np.dtype(np.float32)
                        for i in inputs]

    def __len__(self) -> int:
        return len(self._feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._it = iter(self._feeds[start_index:end_index])

    def get_next(self) -> dict[str, Any] | None:
        feed = next(self._it, None)
        if feed is None:
            return None
        return {n: np.asarray(v).astype(t, copy=False)
                for n, t, v in zip(self._names, self._dtypes, feed.values(), strict=True)}

    def __iter__(self):  # the quantization debugger iterates readers
        return iter(self.get_next, None)
