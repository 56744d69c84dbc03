"""Standalone activations of a float TFLite file fused into the op that makes their input.

MediaPipe's float models apply some ReLUs as ops of their own (the selfie segmenter after 22
convolutions, the short-range face detector after 16 residual ADDs) where the TFLite converter
usually sets the producing op's fused activation. In float that is the same computation. In
int8 it is not the same file: a quantizer gives the standalone RELU its own output scale, and
LiteRT's XNNPACK delegate takes no int8 RELU that rescales, so each one splits the delegated
graph (the face detector's int8 ran in 17 partitions, 5.7x slower than its fp32 file). With the
activation fused, the op's output range is the activation's and the int8 op runs whole.

An activation is fused only where that cannot change anything else: a float32 producer with a
fused-activation option set to none, whose output the activation alone reads (no other op, no
graph output). The fused op takes the activation's output tensor, so names downstream stay.
"""

from __future__ import annotations

from collections import Counter

from . import tflite_graph as graph

#: the standalone activations, and the producers whose options carry a fused activation, by
#: their schema names (BuiltinOperator / ActivationFunctionType)
ACTIVATIONS = ("RELU", "RELU6", "RELU_N1_TO_1")
PRODUCERS = ("ADD", "SUB", "MUL", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def fused(flatbuffer: bytes) -> tuple[bytes, Counter[str]]:
    """``flatbuffer`` with every fusable standalone activation of its main subgraph fused, and
    how many were per "PRODUCER+ACTIVATION" (the bytes unchanged when none was, or when the
    fused file's outputs on one input are not the source's, bit for bit)."""
    from ai_edge_litert.schema_py_generated import (
        ActivationFunctionType,
        BuiltinOperator,
        TensorType,
    )

    if not graph.declares(flatbuffer, ACTIVATIONS):
        return flatbuffer, Counter()
    model = graph.read(flatbuffer)
    if not model.subgraphs:
        return flatbuffer, Counter()
    main = model.subgraphs[0]
    names = {getattr(BuiltinOperator, n): n for n in (*ACTIVATIONS, *PRODUCERS)}
    producer = {int(t): op for op in main.operators for t in op.outputs}
    readers = Counter(int(t) for op in main.operators for t in op.inputs if t >= 0)
    outputs = {int(t) for t in main.outputs}
    done: Counter[str] = Counter()
    for act in list(main.operators):
        kind = names.get(graph.op_code(model, act))
        if kind not in ACTIVATIONS:
            continue
        source = int(act.inputs[0])
        op = producer.get(source)
        maker = names.get(graph.op_code(model, op)) if op is not None else None
        options = getattr(op, "builtinOptions", None)
        if maker not in PRODUCERS or readers[source] != 1 or source in outputs \
                or main.tensors[source].type != TensorType.FLOAT32 \
                or getattr(options, "fusedActivationFunction", None) \
                != ActivationFunctionType.NONE:
            continue
        options.fusedActivationFunction = getattr(ActivationFunctionType, kind)
        op.outputs = act.outputs
        main.operators.remove(act)
        producer[int(act.outputs[0])] = op
        done[f"{maker}+{kind}"] += 1
    if not done:
        return flatbuffer, done
    graph.drop_unused(model, 0)
    result = graph.write(model)
    if not graph.same_outputs(flatbuffer, result):
        return flatbuffer, Counter()
    return result, done


def describe(done: Counter[str]) -> str:
    """The source fix's note."""
    counts = ", ".join(f"{what} x{n}" for what, n in sorted(done.items()))
    return ("standalone activation(s) fused into the op before them, so an int8 op runs "
            f"whole in XNNPACK (it delegates no int8 activation that rescales): {counts}")
