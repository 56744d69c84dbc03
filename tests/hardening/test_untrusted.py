"""Untrusted model files never run code unless the user says --trust-model-code (or the project
does); see test_hostile.py for files built to run code."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from edgepack.cli import cli


@pytest.fixture(scope="module")
def lambda_keras(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgepack.quiet import import_tensorflow

    import_tensorflow()
    import keras

    inp = keras.Input((4,), name="x")
    out = keras.layers.Lambda(lambda t: t * 2.0, name="double")(inp)
    path = tmp_path_factory.mktemp("lambda") / "lambda.keras"
    keras.Model(inp, out).save(path)
    return path


def test_lambda_layer_refused_by_default(lambda_keras: Path) -> None:
    done = CliRunner().invoke(cli, ["inspect", str(lambda_keras)])
    assert done.exit_code == 5, done.output
    assert "refused: the model contains Python code" in done.output
    assert "--trust-model-code" in done.output


def test_lambda_layer_loads_with_trust_model_code(lambda_keras: Path) -> None:
    import os

    done = CliRunner().invoke(cli, ["--trust-model-code", "inspect", str(lambda_keras)])
    assert done.exit_code == 0, done.output
    assert "Lambda" in done.output
    assert "EDGEPACK_TRUST_MODEL_CODE" not in os.environ  # only for that command
    again = CliRunner().invoke(cli, ["inspect", str(lambda_keras)])
    assert again.exit_code == 5


def test_custom_object_naming_an_arbitrary_module_is_refused(tiny_keras: Path,
                                                             tmp_path: Path) -> None:
    """A config that names os.system as a layer class must never import or call it."""
    evil = tmp_path / "evil.keras"
    with zipfile.ZipFile(tiny_keras) as src, zipfile.ZipFile(evil, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "config.json":
                cfg = json.loads(data)
                layer = cfg["config"]["layers"][-1]
                layer.update({"module": "os", "class_name": "system", "registered_name": None})
                layer["config"] = {"command": "touch " + str(tmp_path / "PWNED")}
                data = json.dumps(cfg).encode()
            dst.writestr(item, data)
    done = CliRunner().invoke(cli, ["inspect", str(evil)])
    assert done.exit_code == 5, done.output
    assert not (tmp_path / "PWNED").exists()


def test_torch_pickle_refused_even_with_trust(tmp_path: Path) -> None:
    import torch

    path = tmp_path / "ckpt.pt"
    torch.save({"w": torch.zeros(2)}, path)
    for extra in ([], ["--trust-model-code"]):
        done = CliRunner().invoke(cli, [*extra, "inspect", str(path)])
        assert done.exit_code == 5, done.output
        assert "pickled PyTorch file" in done.output


def test_onnx_custom_domain_is_reported_not_loaded(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    def no_library(*args: object, **kwargs: object) -> None:
        raise AssertionError("a custom-op library was loaded")

    monkeypatch.setattr(ort.SessionOptions, "register_custom_ops_library", no_library,
                        raising=False)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Evil", ["x"], ["y"], domain="com.evil")],
                              "g", [x], [y])
    path = tmp_path / "custom.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                      helper.make_opsetid("com.evil", 1)]), path)
    done = CliRunner().invoke(cli, ["inspect", str(path), "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["details"]["custom_domains"] == ["com.evil"]
    bench = CliRunner().invoke(cli, ["bench", str(path), "--runs", "1", "--warmup", "0"])
    assert bench.exit_code == 5, bench.output
    assert "Traceback" not in bench.output


def test_openvino_extensions_are_never_loaded_implicitly(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """An IR with an operator of an unknown opset is refused; no extension is looked for."""
    import openvino as ov

    def no_extension(*args: object, **kwargs: object) -> None:
        raise AssertionError("an OpenVINO extension was loaded")

    monkeypatch.setattr(ov.Core, "add_extension", no_extension)
    xml = tmp_path / "m.xml"
    xml.write_text("""<?xml version="1.0"?>
<net name="m" version="11"><layers>
<layer id="0" name="x" type="Parameter" version="opset1"><data shape="1,4" element_type="f32"/>
<output><port id="0" precision="FP32"><dim>1</dim><dim>4</dim></port></output></layer>
<layer id="1" name="evil" type="Evil" version="evil_opset"><input><port id="0">
<dim>1</dim><dim>4</dim></port></input><output><port id="1" precision="FP32"><dim>1</dim>
<dim>4</dim></port></output></layer>
<layer id="2" name="y" type="Result" version="opset1"><input><port id="0"><dim>1</dim>
<dim>4</dim></port></input></layer></layers>
<edges><edge from-layer="0" from-port="0" to-layer="1" to-port="0"/>
<edge from-layer="1" from-port="1" to-layer="2" to-port="0"/></edges></net>""")
    xml.with_suffix(".bin").write_bytes(b"")
    done = CliRunner().invoke(cli, ["inspect", str(xml)])
    assert done.exit_code == 5, done.output
    assert "not a readable OpenVINO IR" in done.output


def test_a_project_can_trust_its_own_model_files(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``trust_model_code: true`` in edgepack.yaml is --trust-model-code for that folder."""
    import torch

    path = tmp_path / "net.pt"
    torch.jit.script(torch.nn.Linear(4, 2)).save(str(path))
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(cli, ["inspect", str(path)]).exit_code == 5
    (tmp_path / "edgepack.yaml").write_text("model: net.pt\ntrust_model_code: true\n")
    done = CliRunner().invoke(cli, ["inspect", str(path)])
    assert done.exit_code == 0, done.output
    (tmp_path / "edgepack.yaml").write_text("model: net.pt\ntrust_model_code: false\n")
    assert CliRunner().invoke(cli, ["inspect", str(path)]).exit_code == 5


def test_a_cache_warning_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shared cache key too short to be secret: the build runs without the cache and the
    CLI says why in one line."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import model_files
    from fuzzlib import TARGETS_DIR

    monkeypatch.setenv("EDGEPACK_CACHE_KEY", "short")
    model = model_files.onnx_cnn(tmp_path / "m.onnx")
    done = CliRunner().invoke(cli, ["--targets-dir", str(TARGETS_DIR), "build", str(model),
                                    "-t", "fuzz-onnx", "-o", str(tmp_path / "b"), "--runs", "2",
                                    "--warmup", "0"])
    assert done.exit_code == 0, done.output
    lines = [ln for ln in done.stderr.splitlines() if "EDGEPACK_CACHE_KEY" in ln]
    assert lines == ["edgepack: warning: EDGEPACK_CACHE_KEY is shorter than 16 characters: the "
                     "cache is not used (choose a long random secret)"]
