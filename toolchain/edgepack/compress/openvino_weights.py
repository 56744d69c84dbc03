"""fp16-stored weights of an OpenVINO model made float32 constants before NNCF quantizes it.

An IR whose weights are stored in fp16 (``save_model``'s default, and what a TFLite source with
fp16 weights converts to) reads each weight through Constant(f16) -> Convert(f32), which OpenVINO
keeps unfolded so the weight stays compressed, along with every op that reshapes it (the TFLite
frontend's Reshape/Transpose of depthwise kernels, Unsqueeze of biases). NNCF then leaves the
weights it does not recognise as constants in fp16 (depthwise convolutions) and the int8 IR
carries those ops and its quantizers: a small model's int8 IR came out larger than its fp32 one.
Replacing each such pair by a float32 Constant (the same values: fp16 is exact in fp32) and
folding what follows gives NNCF plain constants to quantize, all of them to int8.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def expand_fp16_weights(model: Any) -> int:
    """Replace every Constant(f16) -> Convert(f32) in ``model`` by a float32 Constant
    and fold the constant subgraphs that frees; how many were replaced."""
    import openvino.opset13 as ops
    from openvino.passes import ConstantFolding, Manager

    replaced = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Convert" or op.get_output_element_type(0).get_type_name() \
                != "f32":
            continue
        source = op.input_value(0).get_node()
        if source.get_type_name() != "Constant" \
                or source.get_output_element_type(0).get_type_name() != "f16":
            continue
        weight = ops.constant(np.asarray(source.get_data(), np.float32))
        weight.set_friendly_name(source.get_friendly_name())
        op.output(0).replace(weight.output(0))
        replaced += 1
    if replaced:
        manager = Manager()
        manager.register_pass(ConstantFolding())
        manager.run_passes(model)
    return replaced
