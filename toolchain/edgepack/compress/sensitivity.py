"""Which layers int8 hurts most: the ranking the accuracy fallback keeps in float, worst first.

One ranker per format, each with the format's own tooling:

- ONNX (QDQ): every Conv/MatMul/Gemm of the QDQ model gets a float twin reading the same
  dequantized input; each is scored by the RMSE between its int8 output and its twin's over the
  output's quantization step (the TFLite debugger's measure, below), worst first; returned as
  node names, which is what ``quantize_static(nodes_to_exclude=...)`` takes.

- TFLite: the TFLite converter's QuantizationDebugger runs float and quantized ops side by side
  on the calibration samples; layers are ranked by RMSE of the quantized output over its
  quantization step (about 0.29 for pure rounding noise; much more means the layer's range or
  its inputs quantize badly). Returned as tensor names, which is what the converter's
  quantizer (``mlir_quantize(denylisted_nodes=...)``) takes to keep those ops in float. A file
  ai-edge-quantizer quantized from a TFLite source (no SavedModel, no debugger) gets float twins
  in the flatbuffer instead, the ONNX ranker's measure (compress/tflite_twins.py).

- OpenVINO: every Convolution/MatMul of NNCF's int8 IR gets a float twin (the fp32 IR's
  weights) on the same FakeQuantize'd input; scored by the RMSE between them over the step of
  the next quantization, worst first. Returned as op names, which is what
  ``nncf.IgnoredScope(names=...)`` takes.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config.profiles import Quantization
from ..data.dataset import Dataset
from ..runtimes.integer_semantics import OPENVINO_SETTINGS, kernels_saturate, rewritten
from .layer_order import INTEGER_OPS, OPENVINO_RANKED, RANKED_OPS, float_name, is_layer
from .openvino_weights import expand_fp16_weights

#: a layer whose float twin's output RMS is below this share of the median layer's is silent
#: (its input is dead, or int8 upstream rounded it to nothing): it has nothing int8 can lose,
#: and float rounding noise over it must not read as a 100% error (with NNCF's asymmetric
#: activations a dead input is the zero point's value, not exactly 0, and the noise of
#: removing that offset is 1e-7 of the tensor's range)
SILENT = 1e-5


def rank_onnx(parent: Path, fp32: Path, int8: Path, samples: Dataset,
              quantization: Quantization | None) -> list[str]:
    """Each Conv/MatMul/Gemm of the QDQ model scored by the error it makes itself.

    A float twin of every ranked node (float weights and bias from the float graph, and the
    Relu/Clip the quantizer folded into its output range) is added to the QDQ model, reading
    the same dequantized input; the score is the RMSE between the twin's output and the
    node's dequantized int8 output, over that output's quantization step (about 0.29 for pure
    rounding). This is the TFLite quantization debugger's measure. Comparing each tensor of
    the QDQ model with the float model's instead (ONNX Runtime's qdq_loss_debug) mixes in the
    error every earlier layer made, and ranks far worse (docs/benchmarks.md).
    """
    import onnx

    from ..runtimes.onnxruntime import dtype_of
    from .onnx_prepare import prepare

    with tempfile.TemporaryDirectory(prefix="edgepack-sens-") as tmp:
        # the QDQ model was made from the pre-processed graph: its float weights and node names
        pre = Path(tmp) / "pre.onnx"
        prepare(fp32, pre, [])
        model = onnx.load(str(int8))
        # a dynamic int8 model was made from the float file itself, not the pre-processed
        # one; its float MatMuls (attention's products of two activations) are float already
        dynamic = any(n.op_type in INTEGER_OPS for n in model.graph.node)
        order = [float_name(n) for n in model.graph.node  # not the twins
                 if (n.op_type in INTEGER_OPS if dynamic else is_layer(n))]
        probes = dynamic_twins(model.graph, onnx.load(str(parent)).graph) if dynamic \
            else float_twins(model.graph, onnx.load(str(pre)).graph)
        session = twins_session(model)
        names = [i.name for i in session.get_inputs()]
        types = [dtype_of(i.type) for i in session.get_inputs()]
        wanted = [t for p in probes for t in (p.twin, p.quantized)]
        errors = [Error(p) for p in probes]
        for feed in samples.samples():
            outs = session.run(wanted, {n: np.asarray(v).astype(t) for n, t, v in
                                        zip(names, types, feed.values(), strict=True)})
            for i, error in enumerate(errors):
                error.add(outs[2 * i], outs[2 * i + 1])
    scored = {e.probe.node: e.score() for e in errors}
    # unprobed nodes (output not quantized) come last, in graph order
    return sorted(order, key=lambda n: (-scored.get(n, -1.0), order.index(n)))


def twins_session(model: Any) -> Any:
    """An ONNX Runtime session of a QDQ model with float twins, run as written: the default
    optimizer would quantize the twins' float weights."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="edgepack-twins-") as tmp:
        path = Path(tmp) / "twins.onnx"
        onnx.save(model, str(path))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.log_severity_level = 3
        # a dynamic file's integer ops, as written where this host's int8 kernels saturate
        written = rewritten(path) if kernels_saturate() else None
        return ort.InferenceSession(written or str(path), options,
                                    providers=["CPUExecutionProvider"])


@dataclass
class Probe:
    node: str
    twin: str  # the float twin's output (after the folded activation)
    quantized: str  # the node's int8 output, dequantized
    step: float  # that output's quantization scale
    #: where the folded activation is linear; None: bounds the graph does not state as numbers
    linear: tuple[float, float] | None
    #: a dynamic int8 layer's output channel axis (its output is float: no step)
    channel_axis: int | None = None


class Error:
    """What one probe's int8 output got wrong over the samples, and its score.

    A static layer's error is measured in steps of its output's quantization. A dynamic
    layer's output is float, and one range per inference over all its input's channels is
    what hurts it: an output whose channels differ in scale by orders of magnitude (a
    transformer's feed-forward output) hides the small channels' error under the big ones',
    yet the residual and the normalization after it read every channel. So its score is the
    mean over output channels of the error relative to that channel's own magnitude (MiniLM's
    dynamic ONNX: the three layers this ranks first are the three whose float copy helps
    most; the step measure ranked them last, docs/benchmarks.md)."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.squared: Any = 0.0  # per channel for a dynamic layer
        self.signal: Any = 0.0
        self.count = 0

    def add(self, twin: np.ndarray, quantized: np.ndarray) -> None:
        diff = quantized.astype(np.float64) - twin
        axis = self.probe.channel_axis
        if axis is None:
            self.squared += float(np.sum(diff ** 2))
            self.count += diff.size
            return
        others = tuple(a for a in range(twin.ndim) if a != axis % twin.ndim)
        self.squared = self.squared + np.sum(diff ** 2, axis=others)
        self.signal = self.signal + np.sum(twin.astype(np.float64) ** 2, axis=others)

    def score(self) -> float:
        if self.probe.channel_axis is None:
            return float(np.sqrt(self.squared / max(self.count, 1)) / self.probe.step)
        return float(np.mean(np.sqrt(self.squared / np.maximum(self.signal, 1e-30))))


class FloatWeights:
    """The float graph's initializers, each added to an int8 graph once, under a name of its
    own (in the int8 graph the original name is a DequantizeLinear's output or an int8
    tensor): what a float twin reads."""

    def __init__(self, graph: Any, floats: dict[str, Any]) -> None:
        self.graph, self.floats = graph, floats
        self.added: set[str] = set()

    def copy(self, name: str) -> str:
        import onnx

        copy = f"edgepack_float/{name}"
        if copy not in self.added:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(self.floats[name])
            tensor.name = copy
            self.graph.initializer.append(tensor)
            self.added.add(copy)
        return copy


def float_twins(qdq: Any, float_graph: Any) -> list[Probe]:
    """Add a float twin of every ranked QDQ node whose output is quantized; the probes."""
    from onnx import helper, numpy_helper

    floats = {i.name: i for i in float_graph.initializer}
    names = Counter(n.name for n in float_graph.node)
    # a node pairs with its float original by name: only a name the float graph gives once
    float_nodes = {n.name: n for n in float_graph.node if n.name and names[n.name] == 1}
    float_consumers: dict[str, list[Any]] = {}
    for n in float_graph.node:
        for t in n.input:
            float_consumers.setdefault(t, []).append(n)
    consumers: dict[str, list[Any]] = {}
    for n in qdq.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    scales = {i.name: numpy_helper.to_array(i) for i in qdq.initializer}
    float_copy = FloatWeights(qdq, floats).copy

    probes = []
    for node in [n for n in qdq.node if n.op_type in RANKED_OPS]:
        original = float_nodes.get(node.name)
        quant = next((c for c in consumers.get(node.output[0], [])
                      if c.op_type == "QuantizeLinear"), None)
        if original is None or original.op_type != node.op_type or quant is None \
                or scales.get(quant.input[1]) is None \
                or scales[quant.input[1]].size != 1:
            continue
        dequant = next((c for c in consumers.get(quant.output[0], [])
                        if c.op_type == "DequantizeLinear"), None)
        if dequant is None:
            continue
        inputs = [node.input[0]]
        for t in original.input[1:]:  # weights and bias as the float graph has them
            if t not in floats:
                break
            inputs.append(float_copy(t))
        else:
            twin = f"edgepack_twin_{len(probes)}"
            qdq.node.append(helper.make_node(original.op_type, inputs, [twin], name=twin,
                                             domain=original.domain))
            qdq.node[-1].attribute.extend(original.attribute)
            out = twin
            linear: tuple[float, float] | None = (-np.inf, np.inf)
            for act in float_consumers.get(original.output[0], []):
                if act.op_type in ("Relu", "Clip"):  # folded into the int8 output's range
                    bounds = [float_copy(t) if t in floats else t for t in act.input[1:]]
                    out = f"{twin}_act"
                    qdq.node.append(helper.make_node(act.op_type, [twin, *bounds],
                                                     [out], name=out))
                    qdq.node[-1].attribute.extend(act.attribute)
                    linear = _linear_range(act, floats)
                    break
            qdq.output.append(helper.make_empty_tensor_value_info(out))
            qdq.output.append(helper.make_empty_tensor_value_info(dequant.output[0]))
            probes.append(Probe(node.name, out, dequant.output[0],
                                float(scales[quant.input[1]].reshape(-1)[0]), linear))
    return probes


def dynamic_twins(model: Any, float_graph: Any) -> list[Probe]:
    """Add a float twin of every integer op of a dynamic int8 model (ONNX Runtime's
    ``quantize_dynamic``: DynamicQuantizeLinear -> MatMulInteger/ConvInteger -> scale back to
    the float node's output); each reads the float activation the op quantizes at run time,
    with the float graph's weights. The probes have no step (the output has no fixed one):
    their error is judged per output channel (``Error``)."""
    from onnx import helper

    floats = {i.name: i for i in float_graph.initializer}
    float_copy = FloatWeights(model, floats).copy
    float_nodes = {n.name: n for n in float_graph.node if n.name}
    producer = {o: n for n in model.node for o in n.output}
    outputs = {o.name for o in model.output}
    probes = []
    for node in [n for n in model.node if n.op_type in INTEGER_OPS]:
        original = float_nodes.get(float_name(node))
        quantize = producer.get(node.input[0])
        if original is None or quantize is None \
                or quantize.op_type != "DynamicQuantizeLinear" \
                or original.output[0] not in producer \
                or any(t not in floats for t in original.input[1:]):
            continue
        twin = f"edgepack_twin_dynamic_{len(probes)}"
        model.node.append(helper.make_node(
            original.op_type, [quantize.input[0], *map(float_copy, original.input[1:])],
            [twin], name=twin, domain=original.domain))
        model.node[-1].attribute.extend(original.attribute)
        for t in (twin, original.output[0]):
            if t not in outputs:
                model.output.append(helper.make_empty_tensor_value_info(t))
                outputs.add(t)
        probes.append(Probe(original.name, twin, original.output[0], 0.0, (-np.inf, np.inf),
                            channel_axis=1 if original.op_type == "Conv" else -1))
    return probes


def _linear_range(act: Any, floats: dict[str, Any]) -> tuple[float, float] | None:
    """Where a Relu or Clip passes its input through: Clip's bounds are inputs (opset 11+,
    empty when unbounded) or attributes; None when an input is not a constant."""
    from onnx import helper, numpy_helper

    if act.op_type == "Relu":
        return 0.0, np.inf
    attrs = {a.name: helper.get_attribute_value(a) for a in act.attribute}
    bounds = [float(attrs.get("min", -np.inf)), float(attrs.get("max", np.inf))]
    for k, name in enumerate(act.input[1:3]):
        if not name:
            continue
        if name not in floats:
            return None
        bounds[k] = float(numpy_helper.to_array(floats[name]).reshape(-1)[0])
    return bounds[0], bounds[1]


def rank_tflite(parent: Path, fp32: Path, int8: Path, samples: Dataset,
                quantization: Quantization | None) -> list[str]:
    """``parent``: the SavedModel the int8 file was converted from (the debugger needs the
    converter, configured as for the int8 file), or the float TFLite file ai-edge-quantizer
    quantized (compress/tflite_twins.py ranks those)."""
    if parent.suffix == ".tflite":
        from .tflite_twins import rank_tflite_file

        return rank_tflite_file(parent, int8, samples)
    from ..formats.savedmodel import SavedModelFormat
    from ..quiet import captured, import_tensorflow
    from .context import ConvertContext
    from .tflite import configure, debug_options

    SavedModelFormat().checked_note(parent)  # the converter runs its init functions
    tf = import_tensorflow()
    with captured():
        converter = tf.lite.TFLiteConverter.from_saved_model(str(parent))
        ctx = ConvertContext(workdir=int8.parent, stem="rank", precision="int8",
                             quantization=quantization, calibration=samples)
        configure(converter, tf, ctx)
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=converter.representative_dataset,
            debug_options=debug_options(tf))
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


def rank_openvino(parent: Path, fp32: Path, int8: Path, samples: Dataset,
                  quantization: Quantization | None) -> list[str]:
    """Each Convolution/MatMul of NNCF's int8 IR scored by the error its int8 weights make:
    a float twin (the fp32 IR's weights, same attributes) reads the same FakeQuantize'd input,
    and the RMSE between the two outputs is divided by the quantization step of the
    FakeQuantize that next quantizes that output (its RMS / 128 where none does), the measure
    the ONNX ranker uses. Returned as op names, which ``nncf.IgnoredScope(names=...)`` takes.
    """
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(int8))
    reference = core.read_model(str(fp32))
    expand_fp16_weights(reference)  # as the int8 IR was quantized: weights as constants
    weights = {op.get_friendly_name(): op for op in reference.get_ordered_ops()
               if op.get_type_name() in OPENVINO_RANKED}
    probes = _openvino_twins(model, weights)
    if not probes:
        return []
    compiled = core.compile_model(model, "CPU", {
        "INFERENCE_PRECISION_HINT": "f32", **(OPENVINO_SETTINGS if kernels_saturate() else {})})
    request = compiled.create_infer_request()
    inputs = [p.get_any_name() for p in model.inputs]
    # by the port each Result reads, not by position: a port that already fed a Result (a
    # ranked op giving the model's output) is not exposed a second time
    index = {_port_key(r.get_node().input_value(0)): i for i, r in enumerate(model.outputs)}
    exposed = [(compiled.outputs[index[_port_key(twin)]], compiled.outputs[index[_port_key(op)]])
               for _, _, twin, op in probes]
    squared = np.zeros(len(probes))
    power = np.zeros(len(probes))
    counts = np.zeros(len(probes))
    for feed in samples.samples():
        result = request.infer({n: v.astype(np.float32)
                                for n, v in zip(inputs, feed.values(), strict=True)})
        for i, (twin_port, op_port) in enumerate(exposed):
            twin = np.asarray(result[twin_port], np.float64)
            got = np.asarray(result[op_port], np.float64)
            squared[i] += float(np.sum((twin - got) ** 2))
            power[i] += float(np.sum(twin ** 2))
            counts[i] += twin.size
    rms, rmse = (np.sqrt(total / np.maximum(counts, 1)) for total in (power, squared))
    silent = rms < SILENT * np.median(rms)
    scores = []
    for i, (name, step, _, _) in enumerate(probes):
        step = step or rms[i] / 128
        scores.append((-rmse[i] / step if step > 0 and not silent[i] else 0.0, i, name))
    return [name for _, _, name in sorted(scores)]


def _openvino_twins(model: Any, float_ops: dict[str, Any]) -> list[tuple[str, float, Any, Any]]:
    """Add, for every ranked op with a float counterpart, a twin on the same input with the
    float weights, and expose both outputs; (op name, step of the next quantization, twin's
    output, op's output) each."""
    probes = []
    ports = []
    for op in [o for o in model.get_ordered_ops() if o.get_type_name() in OPENVINO_RANKED]:
        name = op.get_friendly_name()
        original = float_ops.get(name)
        weight = _constant(original.input_value(1).get_node()) if original is not None else None
        if weight is None:
            continue
        twin = _TWINS[op.get_type_name()](op, weight)
        ports += [twin.output(0), op.output(0)]
        probes.append((name, _next_step(op), twin.output(0), op.output(0)))
    if ports:
        model.add_outputs(ports)
    return probes


def _port_key(port: Any) -> tuple[int, int]:
    return port.get_node().get_instance_id(), port.get_index()


def _matmul_twin(op: Any, weight: np.ndarray) -> Any:
    import openvino.opset13 as ops

    attrs = op.get_attributes()
    return ops.matmul(op.input_value(0), ops.constant(weight), attrs["transpose_a"],
                      attrs["transpose_b"])


def _convolution_twin(op: Any, weight: np.ndarray) -> Any:
    import openvino.opset13 as ops

    a = op.get_attributes()
    make = ops.group_convolution if op.get_type_name() == "GroupConvolution" else ops.convolution
    return make(op.input_value(0), ops.constant(weight), a["strides"], a["pads_begin"],
                a["pads_end"], a["dilations"], a["auto_pad"])


def _transposed_twin(op: Any, weight: np.ndarray) -> Any:
    """A transposed convolution's filters are laid out (in, out, ...), so a plain
    Convolution on its input does not even type-check (the selfie segmenter's decoder):
    the twin is the same op, its optional output-shape input passed on."""
    import openvino.opset13 as ops

    a = op.get_attributes()
    shape = op.input_value(2) if op.get_input_size() > 2 else None
    return ops.convolution_backprop_data(
        op.input_value(0), ops.constant(weight), a["strides"], shape, a["pads_begin"],
        a["pads_end"], a["dilations"], a["auto_pad"], a["output_padding"])


#: how each ranked op type is rebuilt on the same input with float weights
_TWINS: dict[str, Callable[[Any, np.ndarray], Any]] = {
    "MatMul": _matmul_twin, "Convolution": _convolution_twin,
    "GroupConvolution": _convolution_twin, "ConvolutionBackpropData": _transposed_twin}


def _constant(node: Any) -> np.ndarray | None:
    """A weight's float values (a Constant: fp16-stored weights were expanded), or None."""
    if node.get_type_name() != "Constant":
        return None
    return np.asarray(node.get_data(), np.float32)


def _next_step(op: Any, hops: int = 4) -> float:
    """Quantization step of the first FakeQuantize after ``op`` through bias adds and
    activations; 0.0 when none is that close."""
    frontier = [op]
    for _ in range(hops):
        following = [t.get_node() for n in frontier for t in n.output(0).get_target_inputs()]
        for node in following:
            if node.get_type_name() == "FakeQuantize":
                low = np.asarray(node.input_value(3).get_node().get_data(), np.float64)
                high = np.asarray(node.input_value(4).get_node().get_data(), np.float64)
                return float(np.max(high - low)) / (node.get_attributes()["levels"] - 1)
        frontier = [n for n in following if n.get_type_name() in
                    ("Add", "Clamp", "Relu", "Multiply", "Swish", "HSwish")]
        if not frontier:
            break
    return 0.0


# ---------------------------------------------------------------- what a float layer costs
#: an int8 weight kept in float grows from 1 byte to 4
FLOAT_GROWTH = 3


def onnx_weight_params(int8: Path, layers: list[str]) -> dict[str, int]:
    """Weight parameters of each named node of a QDQ or dynamic int8 model (its int8 weight
    initializer)."""
    import onnx

    graph = onnx.load(str(int8)).graph
    sizes = {i.name: int(np.prod(i.dims)) for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    params = {}
    for node in graph.node:
        name = float_name(node)
        if name in layers and len(node.input) > 1:
            dq = producer.get(node.input[1])
            weight = dq.input[0] if dq is not None and dq.op_type == "DequantizeLinear" \
                else node.input[1]
            params[name] = sizes.get(weight, 0)
    return params


def tflite_weight_params(int8: Path, layers: list[str]) -> dict[str, int]:
    """Weight parameters of the op producing each named tensor of a TFLite model.

    With float I/O an output's name is on the DEQUANTIZE after the op that computes it (a
    classifier's output "PartitionedCall:0" names the int8 file's DEQUANTIZE): the count is the
    computing op's, found through (de)quantizations. Its second input is a weight when no op
    but a DEQUANTIZE makes it and the model is not fed it (an ADD of two activations has
    none).
    """
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(int8))
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    # the op list has no public accessor; the debugger's own tooling reads it the same way
    ops = interp._get_ops_details()  # noqa: SLF001
    producer = {out: op for op in ops for out in op["outputs"]}
    inputs = {d["index"] for d in interp.get_input_details()}
    params = {}
    for index, tensor in tensors.items():
        if tensor["name"] not in layers or index not in producer:
            continue
        op = producer[index]
        while op["op_name"] in ("DEQUANTIZE", "QUANTIZE") and op["inputs"][0] in producer:
            op = producer[op["inputs"][0]]
        weight = op["inputs"][1] if len(op["inputs"]) > 1 else -1
        if weight in producer and producer[weight]["op_name"] == "DEQUANTIZE":
            weight = producer[weight]["inputs"][0]  # weights stored narrower, expanded
        if weight in tensors and weight not in producer and weight not in inputs:
            params[tensor["name"]] = int(np.prod(tensors[weight]["shape"]))
    return params


def openvino_weight_params(int8: Path, layers: list[str]) -> dict[str, int]:
    """Weight parameters of each named op of an IR (the constant behind its weight input)."""
    import openvino as ov

    wanted = set(layers)
    params = {}
    for op in ov.Core().read_model(str(int8)).get_ordered_ops():
        if op.get_friendly_name() not in wanted or op.get_input_size() < 2:
            continue
        node = op.input_value(1).get_node()
        while node.get_type_name() != "Constant" and node.get_input_size():
            node = node.input_value(0).get_node()  # Multiply/Subtract/Convert back to the data
        if node.get_type_name() == "Constant":
            params[op.get_friendly_name()] = int(np.prod(list(node.get_output_shape(0))))
    return params


Ranker = Callable[[Path, Path, Path, Dataset, Quantization | None], list[str]]
RANKERS: dict[str, Ranker] = {"onnx": rank_onnx, "tflite": rank_tflite,
                              "openvino": rank_openvino}
#: per format: the weight parameters of ranked layers, read from the plain int8 file
WEIGHT_PARAMS: dict[str, Callable[[Path, list[str]], dict[str, int]]] = {
    "onnx": onnx_weight_params, "tflite": tflite_weight_params,
    "openvino": openvino_weight_params}
