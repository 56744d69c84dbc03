"""onnx2tf on graphs it cannot take as exported: edgepack's graph fixes, the static-shapes
variant it routes to when onnx2tf fails on (or miscomputes) a dynamic graph, and failures as
one complete line with onnx2tf's full log kept. Every model is a real tiny ONNX graph with the
idiom of a real model that failed (EfficientNet-Lite's pads, PP-OCR's bias Adds and Resize
scales), converted by the real onnx2tf; the hop check compares each file with the source."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from edgepack.cli import cli
from edgepack.converters import edge_id
from edgepack.converters.onnx_to_tflite import OnnxToSavedModel

pytestmark = pytest.mark.slow


def _save(nodes: list, inputs: list, outputs: list, inits: list, path: Path, opset: int) -> Path:
    import onnx
    from onnx import helper

    model = helper.make_model(helper.make_graph(nodes, path.stem, inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def torch_pad_model(path: Path) -> Path:
    """F.pad then a strided Conv, added to a second strided Conv: torch's exporter computes the
    pads with a ConstantOfShape/Concat/Slice/Transpose subgraph (EfficientNet-Lite's SAME
    padding); onnx2tf pads the wrong axes and fails at the Add unless it is folded first."""
    import torch

    class Padded(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Conv2d(3, 4, 3, stride=2)
            self.b = torch.nn.Conv2d(3, 4, 1, stride=2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(torch.nn.functional.pad(x, [0, 1, 0, 1])) + self.b(x)

    torch.manual_seed(0)
    with warnings.catch_warnings():  # torch: "Only steps=1 can be constant folded"
        warnings.simplefilter("ignore")
        torch.onnx.export(Padded().eval(), (torch.randn(1, 3, 8, 8),), str(path), dynamo=False,
                          opset_version=17, input_names=["x"], output_names=["y"])
    return path


def bias_add_model(path: Path) -> Path:
    """PP-OCR det's head: ConvTranspose without bias, the bias as an Add of a [1, C, 1, 1]
    constant, BatchNormalization, again to one channel, Sigmoid. On this square map onnx2tf
    takes the first Add channels-first and normalises the width: outputs off by up to 1."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    c, s = 24, 20

    def const(name: str, *shape: int, positive: bool = False) -> object:
        value = rng.standard_normal(shape).astype(np.float32)
        return numpy_helper.from_array(np.abs(value) + 0.5 if positive else value, name)

    inits = [const("w0", c, c, 2, 2), const("b0", 1, c, 1, 1), const("scale", c, positive=True),
             const("shift", c), const("mean", c), const("var", c, positive=True),
             const("w1", c, 1, 2, 2), const("b1", 1, 1, 1, 1)]
    up = {"kernel_shape": [2, 2], "strides": [2, 2]}
    nodes = [helper.make_node("ConvTranspose", ["x", "w0"], ["c0"], **up),
             helper.make_node("Add", ["c0", "b0"], ["a0"]),
             helper.make_node("BatchNormalization", ["a0", "scale", "shift", "mean", "var"],
                              ["n0"]),
             helper.make_node("Relu", ["n0"], ["r0"]),
             helper.make_node("ConvTranspose", ["r0", "w1"], ["c1"], **up),
             helper.make_node("Add", ["c1", "b1"], ["a1"]),
             helper.make_node("Sigmoid", ["a1"], ["y"])]
    return _save(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, s, s])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4 * s, 4 * s])],
                 inits, path, 12)


def gelu_model(path: Path) -> Path:
    """Linear -> exact GELU -> Linear on token states (a BERT feed-forward block): torch
    exports the GELU as Erf, which onnx2tf makes a Flex op LiteRT cannot load unless it is
    written with builtins first."""
    import torch

    torch.manual_seed(0)
    block = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(),
                                torch.nn.Linear(32, 8)).eval()
    torch.onnx.export(block, (torch.randn(1, 4, 16),), str(path), dynamo=False,
                      opset_version=17, input_names=["x"], output_names=["y"])
    return path


def sample_rate_if_model(path: Path) -> Path:
    """x[1,4,T] and a scalar sample rate: If(sr == 16000) takes x as it is, else reshapes it
    by an outer constant (silero-vad's If on its ``sr`` input, each branch for one rate)."""
    from onnx import TensorProto, helper, numpy_helper

    def branch(op: str, inputs: list[str], out: str) -> object:
        return helper.make_graph([helper.make_node(op, inputs, [out])], out, [], [
            helper.make_tensor_value_info(out, TensorProto.FLOAT, [None, None, None])])

    nodes = [helper.make_node("Equal", ["sr", "rate"], ["is16k"]),
             helper.make_node("If", ["is16k"], ["y"], name="If_0",
                              then_branch=branch("Relu", ["x"], "t"),
                              else_branch=branch("Reshape", ["x", "half"], "e"))]
    inits = [numpy_helper.from_array(np.array(16000, np.int64), "rate"),
             numpy_helper.from_array(np.array([3, -1], np.int64), "half")]
    return _save(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, "T"]),
                         helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None, None])],
                 inits, path, 16)


def dynamic_resize_model(path: Path) -> Path:
    """x[N,4,H,W] -> strided Conv -> Resize x2 -> + x, with the Resize scales computed from the
    input's shape (PP-OCR det's FPN after a Paddle export): with H and W dynamic onnx2tf
    scales the wrong axes; the SavedModel builds and raises 'Incompatible shapes' when run."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array([], np.float32), "roi"),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "base"),
             numpy_helper.from_array(np.array(0, np.float32), "zero")]
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Cast", ["s"], ["sf"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMin", ["sf"], ["m"], keepdims=0),
             helper.make_node("Mul", ["m", "zero"], ["z"]),
             helper.make_node("Add", ["base", "z"], ["scales"]),  # [1, 1, 2, 2], not constant
             helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], strides=[2, 2],
                              pads=[1, 1, 1, 1]),
             helper.make_node("Resize", ["c", "roi", "scales"], ["r"], mode="nearest",
                              coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
             helper.make_node("Add", ["x", "r"], ["y"])]
    dims = ["N", 4, "H", "W"]
    return _save(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)], inits, path, 12)


@pytest.mark.parametrize("make", [torch_pad_model, bias_add_model, gelu_model])
def test_graph_fixes_let_onnx2tf_convert_exporter_idioms(tmp_path: Path, make) -> None:
    """Folded pads, fused bias Adds, Erf in builtins: the TFLite reproduces the source (the hop
    check's fp32 tolerance); without the fixes onnx2tf fails (pads), is off by up to 1 (bias
    Adds) or writes a file with a Flex op LiteRT cannot load (Erf)."""
    src = make(tmp_path / "model.onnx")
    res = CliRunner().invoke(cli, ["convert", str(src), "--to", "tflite",
                                   "-o", str(tmp_path / "model.tflite")])
    assert res.exit_code == 0, res.output
    assert "onnx -> savedmodel: onnx2tf" in res.output


def test_an_exception_in_a_hop_check_fails_that_edge(tmp_path: Path) -> None:
    """The SavedModel onnx2tf made from the dynamic graph raises when the check runs it: that
    fails the edge in one line, and the static-shapes variant makes the file instead."""
    import onnxruntime as ort
    from edgepack.converters.converter import Converter
    from edgepack.data.dataset import Dataset
    from edgepack.formats import get_format

    src = dynamic_resize_model(tmp_path / "resize.onnx")
    x = np.random.default_rng(0).standard_normal((4, 4, 8, 16)).astype(np.float32)
    refs = [ort.InferenceSession(str(src)).run(None, {"x": x})[0]]
    converter = Converter(src, "onnx", get_format("onnx").read_signature(src),
                          Dataset("eval", {"x": x}), refs, tmp_path / "work",
                          lambda text: contextlib.nullcontext(), None)
    (tmp_path / "work").mkdir()
    produced = converter.produce("tflite", "fp32", tmp_path, "resize")
    why = converter.failed[(edge_id(OnnxToSavedModel()), "fp32")]
    assert why.startswith("the check of onnx2tf's savedmodel file failed: InvalidArgumentError: "
                          "Incompatible shapes: "), why
    assert "[4,8,16,4]" in why and "[4,4,16,4]" in why, why
    assert "\n" not in why and "{{" not in why and "Call arguments" not in why
    assert [h.tool for h in produced.hops] == ["onnx2tf (static shapes)",
                                               "tf.lite.TFLiteConverter"]
    assert any(n.startswith("input shapes fixed for onnx2tf: x:1x4x8x16")
               for n in produced.notes), produced.notes


def test_an_onnx2tf_failure_is_one_line_with_its_log(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """onnx2tf on the unfolded pads (what it got before the fixes): the error names the ONNX
    node and the root cause, not TensorFlow's layer context, and points at the full log,
    which --debug prints too (a note on the exception)."""
    import shutil

    from edgepack.converters.onnx2tf_log import onnx2tf_failed
    from edgepack.converters.onnx_to_tflite import SAMPLE_IMAGES, _prints_to_fds
    from edgepack.quiet import captured

    src = torch_pad_model(tmp_path / "pad.onnx")
    # onnx2tf downloads its sample images unless they are in its working directory
    np.save(tmp_path / SAMPLE_IMAGES, np.zeros((20, 128, 128, 3), np.float32))
    monkeypatch.chdir(tmp_path)
    raw = shutil.copy(src, tmp_path / "raw.onnx")
    with pytest.raises(Exception) as caught, captured() as cap, _prints_to_fds():
        import onnx2tf

        onnx2tf.convert(input_onnx_file_path=str(raw), output_folder_path=str(tmp_path / "o"),
                        non_verbose=True, not_use_onnxsim=True, disable_model_save=True)
    error = onnx2tf_failed("onnx2tf (onnx -> tflite)", caught.value, cap.text, src, "pad",
                           Path(raw))
    message = str(error)
    assert message.startswith(f"{src}: onnx2tf (onnx -> tflite) failed at ONNX node '/Add' "
                              "(Add): ValueError: Dimensions must be equal, but are "), message
    assert "\n" not in message and "Exception encountered" not in message
    log = Path(message.rsplit("full onnx2tf log: ", 1)[1].rstrip(")"))
    assert "onnx_op_name: /Add" in log.read_text()
    assert "onnx_op_name: /Add" in error.__notes__[0]


def test_control_flow_onnx2tf_cannot_build_says_what_to_do(tmp_path: Path) -> None:
    """onnx2tf builds both branches of an If on an input: the failure is one line naming the
    node and its op, onnx2tf's reason, and what the user can do; each reason once."""
    src = sample_rate_if_model(tmp_path / "vad.onnx")
    data = tmp_path / "eval.npz"
    x = np.random.default_rng(0).standard_normal((4, 4, 8)).astype(np.float32)
    np.savez(data, x=x, sr=np.full(4, 16000, np.int64))
    res = CliRunner().invoke(cli, ["convert", str(src), "--to", "tflite", "--eval", str(data),
                                   "-o", str(tmp_path / "vad.tflite")])
    assert res.exit_code != 0
    line = res.output.strip().splitlines()[-1]
    assert "failed at ONNX node 'If_0' (If): " in line, res.output
    assert "export the model without If on its inputs" in line, line
    # the SavedModel and the TFLite edge build the same graph: their one failure said once
    assert line.count("onnx2tf (onnx -> savedmodel) failed") == 1, line
    assert line.count("onnx2tf (static shapes) (onnx -> savedmodel) failed") == 1, line
