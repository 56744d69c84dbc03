"""Which layers int8 hurts most: the ranking the accuracy fallback keeps in float, worst first.

One ranker per format, each with the format's own tooling:

- ONNX (QDQ): ONNX Runtime's quantization debugger runs the float and the QDQ model with every
  Conv/MatMul/Gemm output exposed on the same calibration samples, and measures each output's
  signal-to-quantization-noise ratio in the QDQ model (``qdq_err``: the noise that layer's own
  quantization adds). Lowest SQNR first; returned as the producing node names, which is what
  ``quantize_static(nodes_to_exclude=...)`` takes.

- TFLite: the TFLite converter's QuantizationDebugger runs float and quantized ops side by side
  on the calibration samples; layers are ranked by RMSE of the quantized output over its
  quantization step (about 0.29 for pure rounding noise; much more means the layer's range or
  its inputs quantize badly). Returned as tensor names, which is what the debugger's
  ``denylisted_nodes`` takes to keep those ops in float.

- OpenVINO: the fp32 IR and NNCF's int8 IR run side by side on the calibration samples with the
  input of every Convolution/MatMul exposed (in the int8 IR, the FakeQuantize feeding it); each
  op is scored by the SQNR of its quantized input, worst first. Returned as op names, which is
  what ``nncf.IgnoredScope(names=...)`` takes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..data import Dataset
from ..profiles import Quantization

#: the op types whose outputs are ranked (where int8 error is made and where it pays to undo it)
RANKED_OPS = ("Conv", "MatMul", "Gemm", "ConvTranspose")


def rank_onnx(parent: Path, fp32: Path, int8: Path, samples: Dataset,
              quantization: Quantization | None) -> list[str]:
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    names = [i.name for i in onnx.load(str(fp32)).graph.input]
    with tempfile.TemporaryDirectory(prefix="edgepack-sens-") as tmp:
        # the QDQ model was made from the pre-processed graph (Conv+Relu fused, MatMul+Add as
        # Gemm): compare with that graph, whose node names nodes_to_exclude understands
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre))
        aug_f = Path(tmp) / "float.onnx"
        aug_q = Path(tmp) / "qdq.onnx"
        modify_model_output_intermediate_tensors(str(pre), str(aug_f), list(RANKED_OPS))
        modify_model_output_intermediate_tensors(str(int8), str(aug_q), list(RANKED_OPS))
        float_acts = collect_activations(str(aug_f), _Feeds(samples, names))
        qdq_acts = collect_activations(str(aug_q), _Feeds(samples, names))
        graph = onnx.load(str(pre)).graph
    errors = compute_activation_error(create_activation_matching(qdq_acts, float_acts))
    # Excluding a node from quantization removes the quantization of its *inputs*: score each
    # Conv/MatMul/Gemm by the worst SQNR among the activations it consumes (tensor names are
    # the float graph's; in the QDQ graph they feed a QuantizeLinear before the node).
    order = [n.name for n in graph.node if n.op_type in RANKED_OPS]
    score = {name: np.inf for name in order}
    for node in graph.node:
        if node.op_type in RANKED_OPS:
            for t in node.input:
                if t in errors:
                    score[node.name] = min(score[node.name], errors[t].get("qdq_err", np.inf))
    # unmatched nodes keep +inf and come last, in graph order
    return sorted(order, key=lambda n: (score[n], order.index(n)))


class _Feeds:
    """CalibrationDataReader over a dataset's samples, renamed to the graph's inputs."""

    def __init__(self, samples: Dataset, names: list[str]):
        self._it = iter(samples.samples())
        self._names = names

    def get_next(self) -> dict[str, np.ndarray] | None:
        feed = next(self._it, None)
        if feed is None:
            return None
        return {n: v.astype(np.float32) for n, v in zip(self._names, feed.values(), strict=True)}

    def __iter__(self):  # collect_activations iterates the reader
        return iter(self.get_next, None)


def rank_tflite(parent: Path, fp32: Path, int8: Path, samples: Dataset,
                quantization: Quantization | None) -> list[str]:
    """``parent``: the SavedModel the int8 file was converted from (the debugger needs the
    converter, configured as for the int8 file)."""
    from ..convert.base import ConvertContext
    from ..quiet import captured, import_tensorflow
    from .tflite import configure, debug_options

    tf = import_tensorflow()
    with captured():
        converter = tf.lite.TFLiteConverter.from_saved_model(str(parent))
        ctx = ConvertContext(workdir=int8.parent, stem="rank", precision="int8",
                             quantization=quantization, calibration=samples)
        configure(converter, tf, ctx)
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=converter.representative_dataset,
            debug_options=debug_options(tf, layer_scale=True))
        debugger.run()
    from ai_edge_litert.interpreter import Interpreter

    names = sorted({t["name"] for t in Interpreter(model_path=str(int8)).get_tensor_details()},
                   key=len, reverse=True)
    scored = []
    for order, (key, stats) in enumerate(debugger.layer_statistics.items()):
        scale = float(stats.get("scale", 0) or 0)
        mse = float(stats.get("mean_squared_error", 0))
        # keys read "NumericVerify/<tensor name><suffix>"; the longest tensor name it starts with
        body = key.split("/", 1)[1] if key.startswith("NumericVerify/") else key
        name = next((n for n in names if n and body.startswith(n)), None)
        if name is None:
            continue
        # The debugger feeds each quantized op the same quantized input as its float twin, so
        # an op downstream of a badly quantized tensor shows no error of its own although
        # keeping it in float is what removes that tensor's quantization: such ops follow the
        # scored ones, in graph order, rather than being dropped.
        score = -np.sqrt(mse) / scale if scale > 0 and mse > 0 else 0.0
        scored.append((score, order, name))
    return [name for _, _, name in sorted(scored)]


OPENVINO_RANKED = ("Convolution", "GroupConvolution", "MatMul", "ConvolutionBackpropData")


def rank_openvino(parent: Path, fp32: Path, int8: Path, samples: Dataset,
                  quantization: Quantization | None) -> list[str]:
    import openvino as ov

    core = ov.Core()
    models = {"f": core.read_model(str(fp32)), "q": core.read_model(str(int8))}
    ops = {k: {op.get_friendly_name(): op for op in m.get_ordered_ops()
               if op.get_type_name() in OPENVINO_RANKED} for k, m in models.items()}
    names = [n for n in ops["f"] if n in ops["q"]]
    if not names:
        return []
    acts: dict[str, list[np.ndarray]] = {}
    for key, model in models.items():
        ports = [ops[key][n].input(0).get_source_output() for n in names]
        model.add_outputs(ports)
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        request = compiled.create_infer_request()
        inputs = [p.get_any_name() for p in model.inputs]
        exposed = compiled.outputs[-len(ports):]  # add_outputs appends after the model's own
        outs: list[list[np.ndarray]] = [[] for _ in names]
        for feed in samples.samples():
            result = request.infer({n: v.astype(np.float32)
                                    for n, v in zip(inputs, feed.values(), strict=True)})
            for i, port in enumerate(exposed):
                outs[i].append(np.asarray(result[port]))
        acts[key] = [np.concatenate([o.reshape(-1) for o in seq]) for seq in outs]
    scores = []
    for i, name in enumerate(names):
        ref, got = acts["f"][i].astype(np.float64), acts["q"][i].astype(np.float64)
        noise = float(np.sum((ref - got) ** 2))
        sqnr = 10 * np.log10(float(np.sum(ref ** 2)) / noise) if noise > 0 else np.inf
        scores.append((sqnr, i, name))
    return [name for _, _, name in sorted(scores)]


Ranker = Callable[[Path, Path, Path, Dataset, Quantization | None], list[str]]
RANKERS: dict[str, Ranker] = {"onnx": rank_onnx, "tflite": rank_tflite,
                              "openvino": rank_openvino}
