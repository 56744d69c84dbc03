"""onnx2tf is installed on first use, without its declared dependencies, never touching the main
pins; where pip cannot install it, the edge fails with the exact command to run.

Every pip run here is real: against the already-installed pinned set (pip only checks), or
offline against a distribution that does not exist (pip fails at once)."""

from __future__ import annotations

import contextlib
import subprocess
import tomllib
from pathlib import Path

import numpy as np
import pytest
from edgepack.converters.provision import AUTO_INSTALL_ENV, ONNX2TF, ToolSet
from edgepack.errors import ConversionError, MissingDependencyError

from tests import model_files

ROOT = Path(__file__).resolve().parents[1]
ABSENT = ToolSet("absent-tool", ("edgepack-absent-distribution==1.0",))


def _dist(requirement: str) -> str:
    return requirement.split("==")[0].lower().replace("_", "-")


def test_the_pinned_set_is_what_pip_installs() -> None:
    """ensure() leaves nothing missing (installing it on a fresh environment), and the command
    it runs is a real pip run that finds every pin satisfied here."""
    ONNX2TF.ensure()
    assert ONNX2TF.missing() == []
    done = subprocess.run(ONNX2TF.command(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "--no-deps" in ONNX2TF.command()
    said = done.stdout.lower().replace("_", "-")
    for requirement in ONNX2TF.requirements:
        assert f"requirement already satisfied: {_dist(requirement)}" in said, done.stdout


def test_the_main_pins_are_never_changed() -> None:
    """The provisioned set names none of the package's own dependencies (installing it with
    --no-deps can then change no main pin), and it ships inside the package."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    main = {_dist(d.split(";")[0].split("[")[0].split("=")[0].split("<")[0].split(">")[0])
            for d in project["dependencies"]}
    provisioned = {_dist(r) for r in ONNX2TF.requirements}
    assert "onnx2tf" in provisioned and not provisioned & main
    assert all("==" in r for r in ONNX2TF.requirements)  # pinned, as tested


def test_a_failed_install_names_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline (no index) pip fails; the error quotes pip and says exactly what to run."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    with pytest.raises(MissingDependencyError) as caught:
        ABSENT.ensure()
    message = str(caught.value)
    assert "absent-tool is not installed and pip could not install it" in message
    assert "ERROR" in message and "\n" not in message
    assert message.endswith("-m pip install --no-deps --disable-pip-version-check --no-input "
                            "--retries 2 edgepack-absent-distribution==1.0)")


def test_auto_install_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AUTO_INSTALL_ENV, "0")
    with pytest.raises(MissingDependencyError, match=f"{AUTO_INSTALL_ENV}=0 turns off .*"
                                                     "install it with: .*pip install --no-deps"):
        ABSENT.ensure()
    assert ONNX2TF.ensure() == []  # an installed set needs no pip at all


def test_a_tool_that_cannot_be_installed_fails_its_edge(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The onnx2tf edges fail with the command to run, and the build routes around them: the
    same ONNX model still reaches OpenVINO."""
    import onnxruntime as ort
    from edgepack.converters.converter import Converter
    from edgepack.converters.onnx_to_tflite import _Onnx2tf
    from edgepack.data.dataset import Dataset
    from edgepack.formats import get_format

    monkeypatch.setattr(_Onnx2tf, "tools", ABSENT)  # the class every onnx2tf edge is
    monkeypatch.setenv(AUTO_INSTALL_ENV, "0")
    src = model_files.onnx_cnn(tmp_path / "cnn.onnx", 8, 8)
    x = np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)
    refs = [ort.InferenceSession(str(src)).run(None, {"x": x})[0]]
    converter = Converter(src, "onnx", get_format("onnx").read_signature(src),
                          Dataset("eval", {"x": x}), refs, tmp_path,
                          lambda text: contextlib.nullcontext(), None)
    with pytest.raises(ConversionError) as caught:
        converter.produce("tflite", "fp32", tmp_path, "cnn")
    message = str(caught.value)
    assert "every path to tflite (fp32) failed: onnx2tf (onnx -> savedmodel): absent-tool is " \
           "not installed" in message, message
    assert "install it with: " in message and "edgepack-absent-distribution==1.0" in message
    assert converter.produce("openvino", "fp32", tmp_path, "cnn").format == "openvino"
