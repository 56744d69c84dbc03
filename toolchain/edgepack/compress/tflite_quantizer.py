"""A float TFLite file compressed with ai-edge-quantizer, Google's quantizer for LiteRT models.

A TFLite source (MediaPipe's models, a file someone else converted) has no SavedModel the TFLite
converter could quantize again; ai-edge-quantizer quantizes the flatbuffer itself:

- int8: static-range int8, every op it has an int8 kernel configuration for: weights symmetric,
  per channel unless the profile says per tensor; activations asymmetric per tensor, their
  min/max calibrated on the profile's seeded sample of the build's calibration data (the
  model's inputs and outputs over their true min/max: tflite_ranges.py). Inputs and
  outputs stay float32 (a QUANTIZE / DEQUANTIZE at the edges) unless the profile asks for
  int8 or uint8, which TensorFlow's own I/O rewrite then gives them. Layers the accuracy
  fallback chose stay float (matched by their output tensor's name). The calibration is kept
  for the build, so the fallback's re-quantizations cost a quantizer pass only.
- dynamic-int8: int8 weights read by the op with float activations quantized on the fly; with
  calibration data, lookups in constant tables (embeddings) are int8 too.
- fp16: float16 weights (fp32 compute), through the fp16 overflow guard (tflite_fp16.py).

Weights stored as fp16 and expanded by DEQUANTIZE ops (MediaPipe's float models) are made float32
constants first (tflite_graph.py): the quantizer quantizes only the constants an op reads.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..data.dataset import Dataset
from . import onnx_guard, tflite_guard
from . import tflite_graph as graph
from . import tflite_ranges as ranged
from .activations import tflite_with_activations
from .context import ConvertContext
from .fp16_range import expanded_note
from .tflite_fp16 import guard
from .transformer import resolve, tflite_graph_of


def compress(src: Path, out: Path, ctx: ConvertContext) -> None:
    """Write ``src`` quantized at ``ctx.precision`` to ``out``."""
    from ai_edge_quantizer import quantizer

    model = graph.read(src.read_bytes())
    folded = graph.fold_fp16_weights(model)
    if folded:
        ctx.notes.append(expanded_note(folded))
    graph.fill_builtin_codes(model)
    ctx = replace(ctx, keep_float=tflite_with_activations(model, ctx.keep_float))
    names = graph.io_names(model)
    added = graph.add_signature(model)
    flatbuffer = graph.write(model)
    # an embedding table's lookup, left float by the dynamic recipe, takes most of a small
    # transformer's bytes (MiniLM: 47 MB of 90); its int8 needs the calibration's ranges
    tables = _table_lookups(model) \
        if ctx.precision == "dynamic-int8" and ctx.calibration is not None else ()
    quant = ctx.quantization
    products_only = ctx.precision == "dynamic-int8" and resolve(
        quant.model_type if quant else "auto", tflite_graph_of(model)) == "transformer"
    tool = quantizer.Quantizer(flatbuffer, _recipe(ctx, tables=tables,
                                                   products_only=products_only))
    calibration = None
    if tool.need_calibration:
        minmax, samples = _calibration(tool, flatbuffer, src, ctx)
        # judged on the true min/max: a method's range may clip the very sentinel it hides
        guarded = tflite_guard.blind_spots_in(flatbuffer, minmax)
        if guarded:
            ctx.notes.extend(onnx_guard.notes(guarded))
            tool = quantizer.Quantizer(flatbuffer, _recipe(ctx, tuple(guarded), tables,
                                                           products_only))
        calibration = _ranged(minmax, flatbuffer, src, ctx, samples)
    result = graph.read(tool.quantize(calibration, enable_progress_report=False).quantized_model)
    graph.rename_io(result, names)
    if added:
        result.signatureDefs = []
    quantized = graph.write(result)
    if ctx.precision == "int8":
        quantized = _io_types(quantized, ctx)
        floats = _float_ops(result, ctx.keep_float)
        if floats:
            ctx.notes.append("ai-edge-quantizer kept op(s) it has no int8 kernel for in float: "
                             + ", ".join(f"{name} x{n}" for name, n in floats.items()))
        if ctx.int16_layers:
            ctx.notes.append(f"16-bit activations, int8 weights (LiteRT's 16x8 kernels) in "
                             f"{_int16_layers(result)} of the {len(ctx.int16_layers)} "
                             "layer(s) asked")
    if ctx.precision == "fp16":
        # the float32 file, the true values of weights the cast clamped to the fp16 range
        quantized = guard(quantized, lambda: flatbuffer, ctx.samples, ctx.notes)
    out.write_bytes(quantized)


def _recipe(ctx: ConvertContext, guarded: tuple[str, ...] = (),
            tables: tuple[str, ...] = (), products_only: bool = False) -> list[dict[str, Any]]:
    """The quantization recipe for the context's precision and profile settings; the layers
    of ``ctx.keep_float`` and ``guarded`` (ops no int8 scale represents) stay float; with
    dynamic int8, the Gathers writing ``tables`` (lookups in constant tables) get static
    int8, which ai-edge-quantizer's dynamic recipe has no configuration for, and
    ``products_only`` (a transformer) quantizes its matrix products alone: LiteRT's dynamic
    convolutions ran PP-OCR rec 19x slower than fp32 (docs/benchmarks.md)."""
    from ai_edge_quantizer import qtyping, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    quant = ctx.quantization
    granularity = qtyping.QuantGranularity.CHANNELWISE \
        if quant is None or quant.per_channel else qtyping.QuantGranularity.TENSORWISE
    manager = recipe_manager.RecipeManager()
    everything = ".*"
    if ctx.precision == "int8":
        manager.add_static_config(everything, qtyping.TFLOperationName.ALL_SUPPORTED, 8, 8,
                                  granularity)
        for edge in (qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT):
            # float I/O; int8/uint8 I/O is made from it by TensorFlow's rewrite (_io_types)
            manager.add_quantization_config(everything, edge,
                                            algorithm_key=AlgorithmName.NO_QUANTIZE)
    elif ctx.precision == "dynamic-int8":
        ops = qtyping.TFLOperationName
        for op in (ops.FULLY_CONNECTED, ops.BATCH_MATMUL, ops.EMBEDDING_LOOKUP) \
                if products_only else (ops.ALL_SUPPORTED,):
            manager.add_dynamic_config(everything, op, 8, granularity)
        for name in tables:  # a lookup's int8 output is its int8 table's rows, exactly
            manager.add_static_config(_scope(name), qtyping.TFLOperationName.GATHER, 8, 8,
                                      qtyping.QuantGranularity.TENSORWISE)
    elif ctx.precision == "fp16":
        manager.add_quantization_config(
            everything, qtyping.TFLOperationName.ALL_SUPPORTED,
            qtyping.OpQuantizationConfig(
                weight_tensor_config=qtyping.TensorQuantizationConfig(
                    num_bits=16, dtype=qtyping.TensorDataType.FLOAT),
                compute_precision=qtyping.ComputePrecision.FLOAT, explicit_dequantize=True),
            algorithm_key=AlgorithmName.FLOAT_CASTING)
    else:
        raise ValueError(f"ai-edge-quantizer has no precision {ctx.precision}")
    for name in ctx.int16_layers:  # 16-bit activations, int8 weights: LiteRT's 16x8 kernels
        manager.add_static_config(_scope(name), qtyping.TFLOperationName.ALL_SUPPORTED, 16, 8,
                                  granularity)
    for name in (*ctx.keep_float, *guarded):  # float wins over int16 for a layer in both
        manager.add_quantization_config(_scope(name),
                                        qtyping.TFLOperationName.ALL_SUPPORTED,
                                        algorithm_key=AlgorithmName.NO_QUANTIZE)
    return manager.get_quantization_recipe()


def _table_lookups(model: Any) -> tuple[str, ...]:
    """Output names of the GATHERs that read rows of a constant table (an embedding)."""
    from ai_edge_litert.schema_py_generated import BuiltinOperator

    found = []
    for sub in model.subgraphs:
        for op in sub.operators:
            if graph.op_code(model, op) == BuiltinOperator.GATHER and op.inputs[0] >= 0 \
                    and model.buffers[sub.tensors[op.inputs[0]].buffer].data is not None:
                found.append(sub.tensors[op.outputs[0]].name.decode())
    return tuple(found)


def _scope(name: str) -> str:
    """The recipe scope of the layer whose output tensor is ``name`` (an op's scope is its
    output tensors' names, each followed by ';')."""
    return f"^{re.escape(name)};"


def _calibration(tool: Any, flatbuffer: bytes, src: Path,
                 ctx: ConvertContext) -> tuple[dict[str, Any], Dataset]:
    """Each tensor's min/max over the profile's sample of the calibration data (and that
    sample), kept in the build's scratch folder by the source's bytes and the samples' (the
    accuracy fallback quantizes the same file again with other layers in float: the ranges
    are the same)."""
    samples = ctx.minmax_sample("ai-edge-quantizer", applies=("minmax", *ranged.METHODS))
    path = ctx.scratch_file("tflite-aeq-ranges", src, samples, ".json",
                            shapes=ctx.input_shapes)
    if path is not None and path.is_file():
        stats = {name: {k: np.asarray(v, np.float32) for k, v in qsv.items()}
                 for name, qsv in json.loads(path.read_text()).items()}
    else:
        stats = tool.calibrate(_feeds(flatbuffer, samples))
        if path is not None:  # written whole, then renamed: a killed build leaves no torn file
            part = path.with_suffix(".part")
            part.write_text(json.dumps({name: {k: np.asarray(v).tolist()
                                               for k, v in qsv.items()}
                                        for name, qsv in stats.items()}))
            part.replace(path)
    return stats, samples


def _ranged(stats: dict[str, Any], flatbuffer: bytes, src: Path, ctx: ConvertContext,
            samples: Dataset) -> dict[str, Any]:
    """``stats`` with method ``mse`` or ``percentile`` replaced by that method's range, else
    with the model's inputs and what reaches its outputs given their true min/max
    (compress/tflite_ranges.py: ai-edge-quantizer's own average each sample's, which clips),
    except for the layers with 16-bit activations; kept in the scratch folder like the
    calibration."""
    method = ctx.quantization.calibration.method if ctx.quantization else "minmax"
    scratch = ctx.scratch_file(f"tflite-aeq-{method}", src, samples, ".json",
                               shapes=ctx.input_shapes)
    if method in ranged.METHODS:
        searched = ranged.searched_ranges(flatbuffer, set(stats), samples, method, scratch)
        ctx.notes.append(ranged.note(method))
    else:
        searched = ranged.true_edges(flatbuffer, set(stats), samples, scratch)
        ctx.notes.append(ranged.EDGES_NOTE)
    return {name: {"min": np.full_like(qsv["min"], searched[name][0]),
                   "max": np.full_like(qsv["max"], searched[name][1])}
            if name in searched and name not in ctx.int16_layers else qsv
            for name, qsv in stats.items()}


def _feeds(flatbuffer: bytes, samples: Dataset) -> dict[str, list[dict[str, np.ndarray]]]:
    """The samples as ai-edge-quantizer takes them: under the file's signature key."""
    key, feeds = ranged.signature_feeds(flatbuffer, samples)
    return {key: feeds}


def _io_types(flatbuffer: bytes, ctx: ConvertContext) -> bytes:
    """Integer inputs and outputs when the profile asks for them (the QUANTIZE and DEQUANTIZE
    at the edges removed, as the TFLite converter does for its own int8 files)."""
    quant = ctx.quantization
    if quant is None or quant.io_dtype == "float32":
        return flatbuffer
    from ..quiet import import_tensorflow

    tf = import_tensorflow()  # quietly, before its submodules
    from tensorflow.lite.python.util import modify_model_io_type

    io = {"int8": tf.int8, "uint8": tf.uint8}[quant.io_dtype]
    return bytes(modify_model_io_type(flatbuffer, io, io))


def _float_ops(model: Any, kept: tuple[str, ...]) -> dict[str, int]:
    """How many ops of each kind compute in float in the quantized model (their outputs are
    float32), QUANTIZE and DEQUANTIZE and the layers ``kept`` in float aside."""
    from ai_edge_litert.schema_py_generated import BuiltinOperator, TensorType

    names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
    counts: Counter[str] = Counter()
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            custom = model.operatorCodes[op.opcodeIndex].customCode
            kind = custom.decode() if custom else names.get(graph.op_code(model, op), "?")
            outputs = [subgraph.tensors[t] for t in op.outputs if t >= 0]
            if kind not in ("QUANTIZE", "DEQUANTIZE") and outputs \
                    and outputs[0].type == TensorType.FLOAT32 \
                    and outputs[0].name.decode() not in kept:
                counts[kind] += 1
    return dict(counts)


def _int16_layers(model: Any) -> int:
    """How many ops other than QUANTIZE make a 16-bit activation."""
    from ai_edge_litert.schema_py_generated import BuiltinOperator, TensorType

    return sum(1 for sub in model.subgraphs for op in sub.operators
               if graph.op_code(model, op) != BuiltinOperator.QUANTIZE and len(op.outputs)
               and sub.tensors[op.outputs[0]].type == TensorType.INT16)
