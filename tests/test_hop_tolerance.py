"""The fp32 hop check's tolerance (validate/rounding.py): relative to each output's spread, so
float rounding amplified on outputs reaching hundreds passes (MediaPipe pose after tflite ->
onnx: segmentation logits up to 1796, one value 9.53 apart, mean error about 0.02, which the
former 1e-4 x (1 + max|ref|) = 0.18 failed), while a real conversion bug on the same outputs
still fails. The outputs are a tiny real ONNX model's, run by ONNX Runtime; the bugs are real
graphs with a converter's mistakes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from edgepack.validate.fidelity import compare
from edgepack.validate.rounding import beyond_rounding


def _conv_model(path: Path, pads: list[int], lose_bias: bool = False) -> Path:
    """x[1,3,16,16] -> 3x3 Conv to 8 channels with large weights (outputs reach hundreds)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = (rng.standard_normal((8, 3, 3, 3)) * 60).astype(np.float32)
    b = (rng.standard_normal(8) * 20).astype(np.float32)
    if lose_bias:  # the bias of one channel lost, the others kept
        b[np.argmax(np.abs(b))] = 0
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], pads=pads)],
        "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.save(model, path)
    return path


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"x": s[None]})[0] for s in x])


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray]:
    """The inputs and the source model's outputs (reaching several hundred)."""
    folder = tmp_path_factory.mktemp("tolerance")
    x = np.random.default_rng(1).random((4, 3, 16, 16)).astype(np.float32)
    return x, _run(_conv_model(folder / "source.onnx", [1, 1, 1, 1]), x)


def test_rounding_amplified_on_large_outputs_passes(source: tuple) -> None:
    """Errors of the pose's size on outputs of the pose's size: within rounding (and beyond
    the former limit)."""
    _, ref = source
    ref = ref * (1796 / np.abs(ref).max())
    noise = np.random.default_rng(2).standard_normal(ref.shape) * 0.02
    out = (ref + noise).astype(np.float32)
    out.flat[np.argmin(ref)] += 9.53
    fid = compare("y", ref, out)
    assert fid.max_abs_error > 1e-4 * (1 + 1796)  # what the former check failed
    assert beyond_rounding(ref, fid) is None


@pytest.mark.parametrize(("pads", "lose_bias"), [
    ([0, 0, 2, 2], False),  # SAME padding put on the wrong side
    ([1, 1, 1, 1], True),  # one channel's bias lost
])
def test_a_real_conversion_bug_still_fails(tmp_path: Path, source: tuple, pads: list[int],
                                           lose_bias: bool) -> None:
    x, ref = source
    out = _run(_conv_model(tmp_path / "converted.onnx", pads, lose_bias), x)
    why = beyond_rounding(ref, compare("y", ref, out))
    assert why is not None, "a conversion bug passed as rounding"
