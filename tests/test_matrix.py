"""The build matrix: several models x several targets from one edgepack.yaml, with a cache
that reuses unchanged cells, rebuilds what a change touches, and never trusts a corrupt entry."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from edgepack.cache.store import BuildCache
from edgepack.cli import cli

from tests.conftest import EXAMPLE

pytestmark = pytest.mark.slow

PROJECT = """
models:
  - name: digits
    model: digits.keras
    calibration: calibration.npz
    eval: eval.npz
    labels: labels.txt
  - name: tiny
    model: tiny.keras
    calibration: tiny_calib.npz
    eval: tiny_eval.npz
targets: [raspberrypi, x86-host]
profiles_dir: [profiles]
"""


@pytest.fixture
def zoo(tmp_path: Path, tiny_keras: Path, tiny_data: dict[str, Path],
        monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "zoo"
    root.mkdir()
    shutil.copy(EXAMPLE / "model.keras", root / "digits.keras")
    for name in ("calibration.npz", "eval.npz", "labels.txt"):
        shutil.copy(EXAMPLE / name, root / name)
    shutil.copy(tiny_keras, root / "tiny.keras")
    shutil.copy(tiny_data["calibration"], root / "tiny_calib.npz")
    shutil.copy(tiny_data["eval"], root / "tiny_eval.npz")
    (root / "profiles").mkdir()
    (root / "edgepack.yaml").write_text(PROJECT)
    monkeypatch.setenv("EDGEPACK_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(root)
    return root


def matrix(*args: str) -> list[dict]:
    res = CliRunner().invoke(cli, ["build", "--runs", "3", "--json", *args])
    assert res.exit_code == 0, res.output
    return json.loads(res.output[res.output.index("["):])


def status(cells: list[dict]) -> dict[tuple[str, str], str]:
    return {(c["model"], c["target"]): c["status"] for c in cells}


def test_matrix_builds_reuses_and_rebuilds_what_changed(zoo: Path) -> None:
    cold = matrix()
    assert status(cold) == {("digits", "raspberrypi"): "built", ("digits", "x86-host"): "built",
                            ("tiny", "raspberrypi"): "built", ("tiny", "x86-host"): "built"}
    digits_pi = next(c for c in cold if c["model"] == "digits" and c["target"] == "raspberrypi")
    assert {d["format"] for d in digits_pi["deliverables"]} == {"tflite", "onnx"}
    assert (zoo / "build" / "digits-raspberrypi" / "report.json").is_file()

    warm = matrix()
    assert set(status(warm).values()) == {"up-to-date"}

    # a changed profile rebuilds only the cells that use it (the Pi's int8-arm)
    profile = (Path(__file__).parents[1] / "profiles" / "int8-arm.yaml").read_text()
    (zoo / "profiles" / "int8-arm.yaml").write_text(profile.replace("samples: 200",
                                                                    "samples: 100"))
    changed = matrix()
    assert status(changed) == {("digits", "raspberrypi"): "built",
                               ("digits", "x86-host"): "up-to-date",
                               ("tiny", "raspberrypi"): "built",
                               ("tiny", "x86-host"): "up-to-date"}
    # inside a rebuilt cell, every step the calibration change does not touch is reused
    rebuilt = json.loads((zoo / "build" / "tiny-raspberrypi" / "report.json").read_text())
    assert rebuilt["step_cache"]["reused"] > 0
    assert all(h["cached"] for a in rebuilt["artifacts"] if a["role"] == "reference"
               for h in a["path"])

    # a deleted output comes back from the cache; a corrupted entry is rebuilt, not used
    shutil.rmtree(zoo / "build" / "tiny-x86-host")
    assert status(matrix("--model", "tiny", "--target", "x86-host")) == {
        ("tiny", "x86-host"): "cached"}
    cache = BuildCache()
    for entry in cache.builds.iterdir():
        model = next(entry.glob("*.tflite"), None)
        if model is not None:
            data = bytearray(model.read_bytes())
            data[len(data) // 2] ^= 0xFF
            model.write_bytes(bytes(data))
    shutil.rmtree(zoo / "build" / "tiny-x86-host")
    assert status(matrix("-m", "tiny", "-t", "x86-host")) == {("tiny", "x86-host"): "built"}


def test_parallel_matrix_and_summary_table(zoo: Path) -> None:
    res = CliRunner().invoke(cli, ["build", "-j", "2", "--runs", "3", "-t", "x86-host"])
    assert res.exit_code == 0, res.output
    for text in ("build matrix", "digits", "tiny", "x86-host", "built", "digits.fp32.onnx"):
        assert text in res.output


def test_unknown_model_in_matrix(zoo: Path) -> None:
    res = CliRunner().invoke(cli, ["build", "--model", "nosuch"])
    assert res.exit_code == 2 and "no model nosuch" in res.output


def test_cache_info_and_clear(zoo: Path) -> None:
    matrix("-m", "tiny", "-t", "x86-host")
    info = json.loads(CliRunner().invoke(cli, ["cache", "info", "--json"]).output)
    assert info["builds"]["entries"] == 1 and info["builds"]["bytes"] > 0
    steps = info["steps"]["entries"]  # the cell's hops and validations, cached one by one
    assert steps > 0
    assert f"removed 1 cached builds and {steps} cached steps" in \
        CliRunner().invoke(cli, ["cache", "clear"]).output
    assert BuildCache().info().entries == 0


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """A real Ray head on loopback for the module's tests, stopped afterwards."""
    import socket
    import subprocess
    import sys

    ray_bin = Path(sys.executable).parent / "ray"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([str(ray_bin), "start", "--head", "--node-ip-address=127.0.0.1",
                    f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                    "--disable-usage-stats"],  # default temp dir: drivers look for it there
                   check=True, capture_output=True, timeout=180)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(ray_bin), "stop", "--force"], capture_output=True, timeout=120)


def test_matrix_on_a_ray_cluster(zoo: Path, ray_head: str) -> None:
    """The cells run as Ray tasks; the build folders come back into the local build dir.

    Through the real executable: ray.init inside click's CliRunner (which swaps sys.stdout for
    an in-memory buffer) never returns."""
    import os
    import subprocess
    import sys

    exe = str(Path(sys.executable).parent / "edgepack")
    done = subprocess.run([exe, "build", "--executor", "ray", "--address", ray_head,
                           "--no-cache", "--runs", "3", "--json"], cwd=zoo, capture_output=True,
                          text=True, timeout=600, env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-2000:]
    cells = json.loads(done.stdout[done.stdout.index("["):])
    assert set(status(cells).values()) == {"built"} and len(cells) == 4
    for c in cells:
        report = json.loads((zoo / "build" / f"{c['model']}-{c['target']}" /
                             "report.json").read_text())
        assert report["status"] == "passed"
    bad = subprocess.run([exe, "build", "--executor", "ray", "--address", "127.0.0.1:1",
                          "--runs", "3"], cwd=zoo, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "cannot join the Ray cluster" in bad.stderr
