"""The real `edgepack` executable: start-up cost, exit codes, clean stderr, --debug."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import EXAMPLE

BIN = Path(sys.executable).parent / "edgepack"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env={**os.environ, "COLUMNS": "200"})


def test_help_imports_no_framework() -> None:
    """--help must stay instant: no framework, no rich/pydantic on the start-up path."""
    code = ("import sys; from click.testing import CliRunner; from edgepack.cli import cli; "
            "r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0; "
            "heavy = ('tensorflow', 'keras', 'onnx', 'onnxruntime', 'openvino', 'ai_edge_litert',"
            " 'rich', 'pydantic', 'numpy'); print([m for m in heavy if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_lists_commands_and_exit_codes() -> None:
    res = run("--help")
    assert res.returncode == 0
    for text in ("build", "inspect", "targets", "profiles", "Exit codes", "6  calibration"):
        assert text in res.stdout


def test_bad_model_one_line_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "random.tflite"
    bad.write_bytes(np.random.default_rng(0).bytes(1000))
    res = run("inspect", bad)
    assert res.returncode == 5
    assert res.stdout == ""
    assert res.stderr.strip().count("\n") == 0 and "Traceback" not in res.stderr
    assert str(bad) in res.stderr


def test_debug_shows_traceback(tmp_path: Path) -> None:
    res = run("--debug", "inspect", tmp_path / "missing.onnx")
    assert res.returncode == 5
    assert "Traceback" in res.stderr and "no such file" in res.stderr


def test_usage_error_exit_2() -> None:
    res = run("targets", "show", "jetsn-orin-nano")
    assert res.returncode == 2
    assert "did you mean" in res.stderr and "jetson-orin-nano" in res.stderr


@pytest.mark.slow
def test_build_shows_progress_and_stays_quiet(tmp_path: Path) -> None:
    """Progress lines for the long steps on stderr; no framework log noise anywhere."""
    res = run("build", EXAMPLE, "-o", tmp_path / "out", "--runs", "5")
    assert res.returncode == 0, res.stderr
    for step in ("Loading keras model", "Converting savedmodel -> tflite (int8)",
                 "Measuring host latency"):
        assert step in res.stderr, res.stderr
    noise = ("XNNPACK", "oneDNN", "WARNING:absl", "fully_quantize", "I0000", "W0000",
             "tensorflow/", "UserWarning")
    for word in noise:
        assert word not in res.stderr + res.stdout, word
    assert "digits.int8.tflite" in res.stdout and "passed" in res.stdout
