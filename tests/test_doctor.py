"""``edgepack doctor``: every converter edge and runtime, whether it is here, and what to
install for the rest."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from edgepack.cli import cli
from edgepack.converters import EDGES
from edgepack.converters.keras_to_savedmodel import KerasToSavedModel
from edgepack.converters.onnx_to_tflite import _Onnx2tf
from edgepack.converters.provision import ToolSet
from edgepack.runtimes import RUNTIMES


def _doctor() -> dict:
    res = CliRunner().invoke(cli, ["doctor", "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def test_doctor_lists_every_edge_and_runtime_with_versions() -> None:
    report = _doctor()
    assert [(e["src"], e["dst"], e["tool"]) for e in report["edges"]] == \
        [(e.src, e.dst, e.tool) for e in EDGES]
    onnx2tf = next(e for e in report["edges"] if (e["src"], e["dst"], e["tool"]) ==
                   ("onnx", "tflite", "onnx2tf"))
    assert onnx2tf["state"] == "ready" and onnx2tf["versions"][0].startswith("onnx2tf 1.")
    assert [r["name"] for r in report["runtimes"]] == [r.name for r in RUNTIMES]
    litert = next(r for r in report["runtimes"] if r["name"] == "litert")
    assert litert["state"] == "ready" and litert["version"].startswith("ai-edge-litert")
    table = CliRunner().invoke(cli, ["doctor"], terminal_width=200)
    assert table.exit_code == 0 and "converter edges" in table.output
    assert "onnx2tf" in table.output and "runtimes" in table.output


def test_doctor_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing module: the pip command (pinned as edgepack pins it where it does); onnx2tf
    not installed yet: installed on first use, and the --no-deps command that does it."""
    monkeypatch.setattr(KerasToSavedModel, "requires", ("keras", "edgepack_absent_module"))
    monkeypatch.setattr(_Onnx2tf, "requires", ("onnx2tf", "edgepack_absent_tool"))
    monkeypatch.setattr(_Onnx2tf, "tools",
                        ToolSet("onnx2tf", ("onnx2tf==1.29.24", "edgepack-absent-tool==2.0")))
    report = _doctor()
    keras = next(e for e in report["edges"] if e["src"] == "keras")
    assert keras["state"] == "missing"
    assert keras["install"] == "pip install edgepack_absent_module"
    assert keras["versions"][0].startswith("keras ")
    first_use = [e for e in report["edges"] if e["tool"].startswith("onnx2tf")]
    assert len(first_use) == 4 and all(e["state"] == "installed on first use" for e in first_use)
    assert all(e["install"].endswith("--no-deps --disable-pip-version-check --no-input "
                                     "--retries 2 edgepack-absent-tool==2.0") for e in first_use)


def test_doctor_install_provisions_onnx2tf_now() -> None:
    """``--install`` runs the first-use install ahead of time (e.g. before going offline);
    with the set installed it says so and changes nothing."""
    res = CliRunner().invoke(cli, ["doctor", "--install"], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "onnx2tf: already installed" in res.output or "installed: onnx2tf==" in res.output
