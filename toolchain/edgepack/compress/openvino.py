"""OpenVINO IR compression with NNCF, OpenVINO's own post-training tool.

- int8: ``nncf.quantize`` on the fp32 IR with the profile's seeded calibration sample; layers
  the accuracy fallback chose, and ops no int8 scale can represent (compress/openvino_guard.py),
  stay float through ``ignored_scope``. Four settings differ from
  NNCF's defaults, which measured worse (docs/benchmarks.md):

  * activations asymmetric (NNCF's ``MIXED`` preset; weights stay symmetric), as TFLite and
    ONNX Runtime quantize them: NNCF's default centres a signed activation's range on zero, so
    a tensor in [-0.28, 6] (after a swish) gets a step of 12/255 where it needs 6.3/255. On
    the zoo's fp32 IRs it raised plain int8's fidelity on 7 of 8 models (cosine: PP-OCR det
    0.977 -> 0.987, rec 0.973 -> 0.984, the selfie segmenter 0.918 -> 0.947; nudenet's
    detections kept 0.84 -> 0.86) at the same CPU latency; MediaPipe pose's worst output
    gained, its presence score lost (0.947 -> 0.893).

  * BiasCorrection, not FastBiasCorrection: it measures each layer's output shift on the
    calibration samples, as the other formats' corrections do (compress/bias.py); the fast one
    estimates it and skips layers whose shift is large next to the bias.
  * activation ranges per tensor, the min/max over every sample (the profile's ``minmax``):
    NNCF averages per-sample ranges, and its per-channel ranges on a depthwise input clip
    channels that were quiet on the calibration data. With ``mse`` each range is then
    narrowed to its least-squared-error clipping (compress/openvino_ranges.py); with
    ``percentile``, NNCF's mean of each sample's 0.01% and 99.99% quantiles; entropy is ONNX
    Runtime's and is reported, not mapped.
  * the overflow fix (the first layer's weights on 7 bits, so CPUs summing u8 x s8 pairs into
    int16 cannot saturate) only on targets without an int8 dot-product instruction (VNNI, AMX).

  A transformer (compress/transformer.py, or the profile's ``model_type``) gets NNCF's
  transformer model type: SmoothQuant moves activation outliers into the weights, and
  normalization, softmax and the residual adds stay float. Its bias correction is NNCF's
  fast one, as NNCF's transformer default: BiasCorrection measured far worse there
  (docs/benchmarks.md).

- dynamic-int8: ``nncf.compress_weights`` (int8 weights, float activations), which needs no data.
- fp16 is not here: ``save_model(compress_to_fp16=True)`` does it in the conversion edge.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..formats.openvino_ir import save_ir
from .context import ConvertContext
from .fp16_range import expanded_note
from .onnx_guard import notes
from .openvino_guard import GUARD_SAMPLES, blind_spots
from .openvino_ranges import apply_mse_ranges
from .openvino_weights import expand_fp16_weights
from .transformer import openvino_graph, resolve

#: ``isa`` features (targets/*.yaml) whose int8 dot products accumulate in int32: no int16
#: saturation, so no overflow fix (AVX-VNNI on Alder Lake, AVX512-VNNI, AMX on Xeons)
INT8_DOT_PRODUCT_ISA = frozenset({"avx_vnni", "avx512_vnni", "amx_int8"})
#: recurrent cells left float: NNCF's bias correction compiles sub-models in which their
#: weights are no constants, which OpenVINO's CPU plugin refuses (ONNX Runtime's static int8
#: leaves them float too)
RECURRENT_OPS = frozenset({"LSTMSequence", "GRUSequence", "RNNSequence", "LSTMCell",
                           "GRUCell", "RNNCell"})


def _nncf():
    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "0")
    import nncf

    nncf.set_log_level(logging.ERROR)
    return nncf


def compress(src: Path, out: Path, ctx: ConvertContext) -> None:
    import openvino as ov

    nncf = _nncf()
    model = ov.Core().read_model(str(src))
    expanded = expand_fp16_weights(model)
    if expanded:
        ctx.notes.append(expanded_note(expanded))
    if ctx.precision == "dynamic-int8":
        ignored = nncf.IgnoredScope(names=list(ctx.keep_float)) \
            if ctx.keep_float else None
        model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM,
                                      ignored_scope=ignored)
    elif ctx.precision == "int8":
        model = _static_int8(model, src, ctx)
    else:
        raise ValueError(f"OpenVINO compression has no precision {ctx.precision}")
    save_ir(model, out, compress_to_fp16=False)


def _static_int8(model: Any, src: Path, ctx: ConvertContext) -> Any:
    nncf = _nncf()
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        QuantizationParameters,
    )
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    samples = ctx.minmax_sample("NNCF post-training quantization",
                                applies=("minmax", "mse", "percentile"))
    quant, settings = ctx.quantization, ctx.quantization.calibration
    # each input as the model takes it: float images, int64 token ids
    types = [(p.get_any_name(), p.get_element_type().to_dtype()) for p in model.inputs]
    feeds = [{n: np.asarray(v).astype(t) for (n, t), v in zip(types, f.values(), strict=True)}
             for f in samples.samples()]
    recurrent = sorted({op.get_type_name() for op in model.get_ops()} & RECURRENT_OPS)
    found = blind_spots(model, feeds[:GUARD_SAMPLES])
    ctx.notes.extend(notes(found))
    names = [*ctx.keep_float, *(n for n in found if n not in ctx.keep_float)]
    scope = nncf.IgnoredScope(names=names, types=recurrent) if names or recurrent else None
    if recurrent:
        ctx.notes.append(f"{', '.join(recurrent)} left float (NNCF's bias correction cannot "
                         "compile them with quantized weights)")
    vnni = sorted(INT8_DOT_PRODUCT_ISA & set(ctx.isa))
    ranges = AdvancedQuantizationParameters(
        activations_range_estimator_params=RangeEstimatorParametersSet.MEAN_QUANTILE
        if settings.method == "percentile" else RangeEstimatorParametersSet.MINMAX,
        activations_quantization_params=QuantizationParameters(per_channel=False),
        overflow_fix=nncf.OverflowFix.DISABLE if vnni else nncf.OverflowFix.FIRST_LAYER)
    model_type = resolve(quant.model_type, openvino_graph(model))
    stats = ctx.scratch_file("openvino-statistics", src, samples, ".pickle",
                             quantile=settings.method == "percentile",
                             per_channel=quant.per_channel, model_type=model_type)
    model = _quantize(model, nncf.Dataset(feeds), scope, ranges, stats,
                      nncf.ModelType.TRANSFORMER if model_type == "transformer" else None)
    if model_type == "transformer":
        ctx.notes.append("transformer recipe: NNCF's transformer model type (SmoothQuant; "
                         "normalization, softmax and residual adds left float)")
    ctx.notes.append(f"first layer's weights on the full int8 range: the target has {vnni[0]}"
                     if vnni else "first layer's weights on 7 bits (NNCF's overflow fix: "
                     "the target declares no int8 dot-product instruction such as VNNI)")
    if settings.method == "mse":
        changed = apply_mse_ranges(model, feeds)
        ctx.notes.append(f"activation ranges: {changed} narrowed to their least-squared-error "
                         f"clipping on the same samples (mse)")
    return model


def _quantize(model: Any, dataset: Any, scope: Any, advanced: Any,
              statistics: Path | None, model_type: Any = None) -> Any:
    """What ``nncf.quantize`` does to an OpenVINO model, with the calibration statistics
    collected once per build.

    The accuracy fallback quantizes the same fp32 IR again with other layers in
    ``ignored_scope``, and NNCF would run the float model over every calibration sample each
    time (most of an attempt's time). The statistics are the float model's, the same whatever
    is ignored: the first quantization (nothing ignored) keeps them in ``statistics`` and the
    attempts reuse them, which gives the very IR nncf.quantize gives (tests/test_compress.py).
    The steps are nncf.quantize's for OpenVINO (NNCF 3.4: ``quantize_impl`` /
    ``native_quantize_impl``); a model with If operations, which NNCF quantizes per branch,
    goes through ``nncf.quantize`` itself.
    """
    nncf = _nncf()
    from nncf.openvino.graph.model_utils import remove_friendly_name_duplicates
    from nncf.openvino.graph.node_utils import get_number_if_op

    preset = nncf.QuantizationPreset.MIXED  # asymmetric activations: the module's docstring
    subset = dataset.get_length()
    fast = model_type is not None  # see the module's docstring
    if statistics is None or get_number_if_op(model) > 0:
        return nncf.quantize(model, dataset, subset_size=subset, ignored_scope=scope,
                             preset=preset, fast_bias_correction=fast,
                             model_type=model_type, advanced_parameters=advanced)
    from nncf.openvino.graph.nncf_graph_builder import GraphConverter
    from nncf.openvino.quantization.backend_parameters import is_weight_compression_needed
    from nncf.openvino.rt_info import dump_parameters
    from nncf.parameters import TargetDevice
    from nncf.quantization.advanced_parameters import convert_to_dict_recursively
    from nncf.quantization.algorithms.post_training.algorithm import PostTrainingQuantization
    from openvino._offline_transformations import compress_quantize_weights_transformation

    model = remove_friendly_name_duplicates(model)
    algorithm = PostTrainingQuantization(preset=preset, subset_size=subset,
                                         fast_bias_correction=fast, ignored_scope=scope,
                                         model_type=model_type, advanced_parameters=advanced)
    graph = GraphConverter.create_nncf_graph(model)
    points = _statistics(algorithm.get_statistic_points(model, graph), model, graph, dataset,
                         statistics)
    quantized = algorithm.apply(model, graph, statistic_points=points, dataset=dataset)
    if is_weight_compression_needed(advanced):
        compress_quantize_weights_transformation(quantized)
    # the IR's rt_info records how it was quantized, as nncf.quantize writes it
    dump_parameters(quantized, {
        "preset": preset, "target_device": TargetDevice.ANY.value, "subset_size": subset,
        "fast_bias_correction": fast, "model_type": model_type, "ignored_scope": scope,
        "advanced_parameters": convert_to_dict_recursively(advanced)})
    return quantized


def _statistics(points: Any, model: Any, graph: Any, dataset: Any, path: Path) -> Any:
    """``points`` (NNCF's statistic points for one quantization) with their statistics: the ones
    a first quantization of this build collected and pickled to ``path`` (in the build's own
    scratch folder: written and read by this build only) when they cover every point, else
    collected on ``dataset`` now (and pickled, when ``path`` does not exist yet).

    A statistic is matched by the tensor it reads, not by where NNCF hooks it: keeping a layer
    in float moves the quantizer of an Add's input from the producer's output to the Add's
    input port, which is the same tensor. NNCF also keys statistics by the algorithm instance
    that asked for them (``MMQ_<hash>``), so they are matched by kind of algorithm, and by the
    collector's reducers and aggregators. (NNCF's own dump/load of statistics cannot load its
    bias-correction statistics.)
    """
    import pickle

    from nncf.common.factory import StatisticsAggregatorFactory

    if path.is_file():
        wanted = _by_tensor(points, graph)
        kept = _by_tensor(pickle.loads(path.read_bytes()), graph)
        if all(len(kept.get(key, ())) >= len(c) for key, c in wanted.items()):
            for key, collectors in wanted.items():
                for collector, full in zip(collectors, kept[key], strict=False):
                    collector.set_cache(full.get_statistics())
            return points
    aggregator = StatisticsAggregatorFactory.create(model, dataset)
    aggregator.register_statistic_points(points)
    aggregator.collect_statistics(model, graph)
    if not path.exists():  # written whole, then renamed: a killed build leaves no torn file
        part = path.with_suffix(".part")
        part.write_bytes(pickle.dumps(aggregator.statistic_points))
        part.replace(path)
    return aggregator.statistic_points


def _by_tensor(points: Any, graph: Any) -> dict[tuple[Any, ...], list[Any]]:
    """The tensor collectors of NNCF statistic points by (the tensor they read; the kind of
    algorithm, ``MMQ`` of ``MMQ_<hash>``; the collector's reducers and aggregators)."""
    from nncf.common.graph.transformations.commands import TargetType

    out: dict[tuple[Any, ...], list[Any]] = {}
    for algorithm, point, collector in points.get_tensor_collectors():
        target = point.target_point
        tensor: tuple[Any, ...] = (target.type, target.target_node_name, target.port_id)
        if target.type == TargetType.PRE_LAYER_OPERATION:  # an input: its producer's output
            node = graph.get_node_by_name(target.target_node_name)
            edge = next((e for e in graph.get_input_edges(node)
                         if e.input_port_id == target.port_id), None)
            if edge is not None:
                tensor = (TargetType.POST_LAYER_OPERATION, edge.from_node.node_name,
                          edge.output_port_id)
        key = (tensor, algorithm.split("_")[0], frozenset(collector.aggregators))
        out.setdefault(key, []).append(collector)
    return out
