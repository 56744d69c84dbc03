"""Every OpenVINO IR edgepack writes is as small as its content allows and computes the same.

A small model's IR is mostly .xml, so these decide whether its int8 IR is smaller than its fp32
one (the zoo's selfie segmenter). The graphs are real OpenVINO conversions of tiny ONNX models,
run by OpenVINO's CPU plugin in f32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov
from edgepack.formats import metadata
from edgepack.formats.openvino_ir import MIN_FP16_SAVING, save_ir


def _conv_model(tmp_path: Path, weights: dict[str, np.ndarray]) -> Path:
    """image (1x8x10x10) -> Conv(w1) + b1 -> Relu -> Conv(w2) -> out, as an ONNX file."""
    import onnx
    from onnx import helper, numpy_helper

    nodes = [helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["out"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(
        nodes, "convs", [helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT,
                                                       [1, 8, 10, 10])],
        [helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, [1, 16, 10, 10])],
        [numpy_helper.from_array(w, n) for n, w in weights.items()])
    path = tmp_path / "convs.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _weights() -> dict[str, np.ndarray]:
    """w1 holds fp16 values (as an fp16 source's weights expanded for quantization), w2 does
    not, b1 holds fp16 values but is too small to pay for a Convert node."""
    rng = np.random.default_rng(0)
    return {"w1": rng.standard_normal((16, 8, 3, 3)).astype(np.float16).astype(np.float32),
            "b1": rng.standard_normal(16).astype(np.float16).astype(np.float32),
            "w2": rng.standard_normal((16, 16, 3, 3)).astype(np.float32)}


def _run(xml: Path, image: np.ndarray) -> np.ndarray:
    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return compiled([image])[0]


def _constants(xml: Path) -> dict[tuple[int, ...], str]:
    model = ov.Core().read_model(str(xml))
    return {tuple(op.get_output_shape(0)): op.get_output_element_type(0).get_type_name()
            for op in model.get_ordered_ops() if op.get_type_name() == "Constant"}


def test_save_ir_stores_weights_exact_in_fp16_as_fp16_and_computes_the_same(
        tmp_path: Path) -> None:
    weights = _weights()
    source = str(_conv_model(tmp_path, weights))
    plain, small = tmp_path / "plain.xml", tmp_path / "small.xml"
    ov.save_model(ov.convert_model(source), str(plain), compress_to_fp16=False)
    save_ir(ov.convert_model(source), small, compress_to_fp16=False)  # it changes the model

    kinds = _constants(small)
    assert kinds[(16, 8, 3, 3)] == "f16"  # exact in fp16: half the bytes, the same values
    assert kinds[(16, 16, 3, 3)] == "f32"  # fp16 would change it
    assert weights["b1"].nbytes // 2 < MIN_FP16_SAVING
    assert "f32" in {k for shape, k in kinds.items() if np.prod(shape) == 16}  # the bias
    assert small.with_suffix(".bin").stat().st_size \
        == plain.with_suffix(".bin").stat().st_size - weights["w1"].nbytes // 2
    image = np.random.default_rng(1).standard_normal((1, 8, 10, 10)).astype(np.float32)
    np.testing.assert_array_equal(_run(small, image), _run(plain, image))


def test_save_ir_writes_the_xml_without_indentation_and_metadata_keeps_it_so(
        tmp_path: Path) -> None:
    """The indentation save_model adds is a sixth of a small IR's .xml; OpenVINO reads the
    compact file, and embedding edgepack's metadata (which saves the IR again) keeps it
    compact."""
    model = ov.convert_model(str(_conv_model(tmp_path, _weights())))
    plain, small = tmp_path / "plain.xml", tmp_path / "small.xml"
    ov.save_model(model, str(plain), compress_to_fp16=False)
    save_ir(model, small, compress_to_fp16=False)
    assert "\n\t" in plain.read_text()
    assert len(small.read_text().splitlines()) == 2  # the declaration, then the whole net
    assert small.stat().st_size < plain.stat().st_size  # though it has one Convert more

    metadata.embed("openvino", small, {"producer": "edgepack", "labels": ["a", "b"]})
    text = small.read_text()
    assert len(text.splitlines()) == 2 and "edgepack" in text
    read = ov.Core().read_model(str(small))
    assert read.get_rt_info(["model_info", "labels"]).astype(str) == "a b"
    image = np.random.default_rng(2).standard_normal((1, 8, 10, 10)).astype(np.float32)
    np.testing.assert_array_equal(_run(small, image), _run(plain, image))
