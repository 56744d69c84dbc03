"""The fp16 overflow guard for TFLite: weights beyond the fp16 range stay float32, and ops whose
values leave it are named with the runtime setting that keeps them right.

The TFLite converter's float16 quantization stores each float weight as a FLOAT16 constant read
through a DEQUANTIZE op, and silently clamps values beyond 65504 (a Dense with 1e5 weights gave
3.1e8 instead of 4.8e8 on the CPU interpreter). Those weights are put back: the constant becomes
float32 with its true values, taken from the float32 conversion of the same model (the weight
its consumer reads at the same input there), and the consumer reads it directly. The file is
rewritten with TensorFlow's own flatbuffer tools, as the converter rewrites a file whose I/O
types it changes.

Activations cannot be kept in fp32 op by op inside a TFLite file: a runtime picks fp16 compute
per delegate (the GPU delegate when precision loss is allowed, XNNPACK's fp16 mode), not per op.
So the ops that make or take values beyond the range on the build's check samples (measured in
fp32 on the host), or that read such weights, are named in the report, with the remedy: run the
GPU delegate at full precision.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..data.dataset import Dataset
from ..errors import DataError
from .fp16_range import FP16_MAX, beyond_fp16

#: the remedy for fp16 values out of range on a TFLite runtime, in the two APIs apps use
GPU_REMEDY = ("run the GPU delegate without precision loss "
              "(TFLITE_GPU_INFERENCE_PRIORITY_MAX_PRECISION as its first inference priority; "
              "on Android GpuDelegate.Options().setPrecisionLossAllowed(false))")


def guard(fp16: bytes, fp32: Callable[[], bytes], samples: Dataset | None,
          notes: list[str]) -> bytes:
    """The fp16 flatbuffer with its clamped weights restored to float32, and a note for each
    kind of overflow found; ``fp32`` makes the float32 flatbuffer of the same model (called
    only when a weight was clamped)."""
    fixed, restored, missing = restore_weights(fp16, fp32)
    if restored:
        notes.append(f"fp16 overflow guard: {len(restored)} weight tensor(s) kept in float32 "
                     f"because their values exceed the fp16 range (|x| > {FP16_MAX:g}; the "
                     f"TFLite converter would clamp them): " + ", ".join(restored))
    if missing:
        notes.append(f"fp16 overflow guard: {len(missing)} weight tensor(s) clamped to "
                     f"+-{FP16_MAX:g} by the TFLite converter could not be restored (no "
                     f"float32 counterpart found): " + ", ".join(missing))
    ops = overflow_ops(fixed, samples)
    if ops:
        notes.append(f"fp16 overflow guard: {len(ops)} op(s) read weights or make or take "
                     f"activations beyond the fp16 range (|x| > {FP16_MAX:g}) and overflow "
                     f"on a runtime computing in fp16; a TFLite file cannot keep single ops "
                     f"in fp32, so {GPU_REMEDY}: " + ", ".join(ops))
    return fixed


def restore_weights(fp16: bytes, fp32: Callable[[], bytes]) -> tuple[bytes, list[str], list[str]]:
    """``fp16`` with every FLOAT16 weight whose true values leave the fp16 range made a FLOAT32
    constant with those values, read without DEQUANTIZE; the names of the weights restored,
    and of those left clamped because the float32 file has no counterpart for them."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(fp16))
    # a weight the converter clamped reads +-65504 (or inf) in the fp16 file
    clamped = [(g, op) for g, graph in enumerate(model.subgraphs) for op in graph.operators
               if _is_dequantize(model, op)
               and graph.tensors[op.inputs[0]].type == schema.TensorType.FLOAT16
               and _at_limit(_values(model, graph.tensors[op.inputs[0]], np.float16))]
    if not clamped:
        return fp16, [], []
    reference = flatbuffer_utils.read_model_from_bytearray(bytearray(fp32()))
    twins = [_twins(model, graph, reference, theirs)
             for graph, theirs in zip(model.subgraphs, reference.subgraphs, strict=False)]
    restored, missing = [], []
    for g, op in clamped:
        graph = model.subgraphs[g]
        half = graph.tensors[op.inputs[0]]
        twin = twins[g].get(int(op.outputs[0])) if g < len(twins) else None
        true = _values(reference, twin, np.float32) if twin is not None else None
        if true is None or not np.array_equal(twin.shape, half.shape) \
                or true.size != _values(model, half, np.float16).size:
            missing.append(half.name.decode())
            continue
        if not beyond_fp16(true):  # a true value that merely rounds to 65504
            continue
        half.type = schema.TensorType.FLOAT32
        model.buffers[half.buffer].data = np.frombuffer(true.astype("<f4").tobytes(), np.uint8)
        graph.operators.remove(op)
        old, new = op.outputs[0], op.inputs[0]
        for reader in graph.operators:  # tensor indices are int32 vectors in the flatbuffer
            reader.inputs = np.where(reader.inputs == old, new, reader.inputs).astype(np.int32)
        graph.outputs = np.where(graph.outputs == old, new, graph.outputs).astype(np.int32)
        restored.append(half.name.decode())
    if not restored:
        return fp16, [], missing
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), restored, missing


def _twins(model: Any, graph: Any, reference: Any, theirs: Any) -> dict[int, Any]:
    """The float32 file's tensor for each tensor that the fp16 file's compute ops read, by
    position: both files hold the same compute ops in the same order (the fp16 one adds the
    DEQUANTIZEs), so what the k-th op reads at input p is the same weight in both. (Tensor
    names do not match: the converter numbers names in the order it makes tensors.) Empty when
    the op lists differ."""
    ours = [op for op in graph.operators if not _is_dequantize(model, op)]
    their_ops = [op for op in theirs.operators if not _is_dequantize(reference, op)]
    if [_code(model, op) for op in ours] != [_code(reference, op) for op in their_ops]:
        return {}
    twins: dict[int, Any] = {}
    for mine, twin in zip(ours, their_ops, strict=True):
        for a, b in zip(mine.inputs, twin.inputs, strict=False):
            if a >= 0 and b >= 0:
                twins.setdefault(int(a), theirs.tensors[b])
    return twins


def _code(model: Any, op: Any) -> int:
    from tensorflow.lite.python.schema_util import get_builtin_code_from_operator_code

    return get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex])


def _is_dequantize(model: Any, op: Any) -> bool:
    from tensorflow.lite.python.schema_py_generated import BuiltinOperator

    return _code(model, op) == BuiltinOperator.DEQUANTIZE


def overflow_ops(flatbuffer: bytes, samples: Dataset | None) -> list[str]:
    """Output tensor names of the ops that read a float constant beyond the fp16 range or make
    or take an activation beyond it (or not finite) on ``samples``, in graph order."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from ..runtimes.litert import LiteRTSession

    # the builtin kernels without XNNPACK: a delegated graph keeps no intermediate values
    builtin = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interp = Interpreter(model_content=flatbuffer, experimental_preserve_all_tensors=True,
                             experimental_op_resolver_type=builtin)
        interp.allocate_tensors()
    except (RuntimeError, ValueError):
        # a custom op only the default delegate provides (MediaPipe's
        # Convolution2DTransposeBias): LiteRT 2.3 keeps the intermediate values with it too
        interp = Interpreter(model_content=flatbuffer, experimental_preserve_all_tensors=True)
        interp.allocate_tensors()
    ops = interp._get_ops_details()  # noqa: SLF001 (no public accessor; see sensitivity.py)
    made = {int(t) for op in ops for t in op["outputs"]}
    read = {int(t) for op in ops for t in op["inputs"] if t >= 0}
    floats = {int(t["index"]): t["name"] for t in interp.get_tensor_details()
              if np.dtype(t["dtype"]).kind == "f"}
    inputs = {int(d["index"]) for d in interp.get_input_details()}
    constants = [i for i in floats if i in read and i not in made and i not in inputs]
    big = {i for i in constants if beyond_fp16(interp.get_tensor(i))}
    if samples is not None:
        session = LiteRTSession(interp, "")
        activations = [i for i in floats if i in made]
        for feed in samples.samples():
            try:
                session.run(feed)
            except DataError:
                # samples not in the file's layout or shapes (an onnx2tf file whose input
                # could not be moved to channels-last): the weights are still guarded
                break
            big |= {i for i in activations if i not in big and beyond_fp16(interp.get_tensor(i))}
    names = []
    for op in ops:
        touched = {int(t) for t in [*op["inputs"], *op["outputs"]] if t >= 0}
        if touched & big and op["op_name"] != "DEQUANTIZE":
            names.append(floats.get(int(op["outputs"][0]), f"op {op['index']}"))
    return names


def _values(model: Any, tensor: Any, dtype: type) -> np.ndarray:
    data = model.buffers[tensor.buffer].data
    return np.zeros(0, dtype) if data is None else np.frombuffer(bytes(data), dtype)


def _at_limit(values: np.ndarray) -> bool:
    """What a weight the converter clamped reads in the fp16 file: +-65504 (or inf, NaN)."""
    wide = values.astype(np.float32)
    return bool(not np.isfinite(wide).all() or np.abs(wide).max(initial=0) >= FP16_MAX)
