"""`edgepack targets` / `profiles`: tables, details, user folders, project files, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from edgepack.cli import cli

REQUIRED = ["raspberrypi4", "raspberrypi5", "jetson-orin-nano", "android-arm64", "android-gpu",
            "coral-edgetpu", "intel-cpu", "intel-gpu", "x86-host"]

USER_TARGET = """
name: my-board
title: My custom board
device: {vendor: ACME, cpu: 2x Cortex-A53 @ 1.2 GHz, cores: 2}
arch: aarch64
runtimes: [{name: litert, version: "2.14"}]
formats: [tflite]
default_profile: int8-arm
limits: {memory_mb: 512, storage_mb: 4096, max_model_mb: 64}
"""


def invoke(*args: str) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_targets_table_lists_builtins() -> None:
    res = invoke("targets")
    assert res.exit_code == 0
    for name in REQUIRED:
        assert name in res.output
    assert "litert 2.14" in res.output and "int8-arm" in res.output


def test_targets_json() -> None:
    res = invoke("targets", "--json")
    names = {t["name"] for t in json.loads(res.output)}
    assert set(REQUIRED) <= names


def test_show_alias() -> None:
    res = invoke("targets", "show", "raspberrypi")
    assert res.exit_code == 0
    for text in ("raspberrypi4", "Cortex-A72", "aarch64", "litert", "2.14", "onnxruntime",
                 "tflite, onnx", "int8-arm"):
        assert text in res.output, text
    data = json.loads(invoke("targets", "show", "raspberrypi", "--json").output)
    assert data["name"] == "raspberrypi4" and data["default_profile"] == "int8-arm"


def test_profiles_table_and_show() -> None:
    res = invoke("profiles")
    assert res.exit_code == 0
    for name in ("int8-arm", "fp16-gpu", "int8-openvino", "dynamic-int8", "fp32"):
        assert name in res.output
    show = invoke("profiles", "show", "int8-arm")
    assert "per-channel" in show.output and "minmax" in show.output


def test_targets_dir_adds_a_target(tmp_path: Path) -> None:
    (tmp_path / "my-board.yaml").write_text(USER_TARGET)
    res = invoke("--targets-dir", tmp_path, "targets")
    assert res.exit_code == 0 and "my-board" in res.output and "raspberrypi4" in res.output


def test_project_file_names_a_targets_dir(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "boards").mkdir()
    (tmp_path / "boards" / "my-board.yaml").write_text(USER_TARGET)
    (tmp_path / "edgepack.yaml").write_text("model: m.keras\ntargets_dir: [boards]\n")
    monkeypatch.chdir(tmp_path)
    res = invoke("targets", "show", "my-board")
    assert res.exit_code == 0, res.output
    assert "My custom board" in res.output


@pytest.mark.parametrize("mutation,field", [
    (("cores: 2", "cores: two"), "device.cores"),
    (("formats: [tflite]", "formats: [tflite]\nflavour: spicy"), "flavour"),
    (("arch: aarch64", "arch: sparc"), "arch"),
])
def test_bad_target_file_names_file_and_field(tmp_path: Path, mutation: tuple[str, str],
                                              field: str) -> None:
    (tmp_path / "bad.yaml").write_text(USER_TARGET.replace(*mutation))
    res = invoke("--targets-dir", tmp_path, "targets")
    assert res.exit_code == 2
    line = res.output.strip()
    assert "\n" not in line and "bad.yaml" in line and field in line, line


def test_mistyped_target_suggests() -> None:
    res = invoke("targets", "show", "androd-gpu")
    assert res.exit_code == 2 and "did you mean" in res.output and "android-gpu" in res.output
