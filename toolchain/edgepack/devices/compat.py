"""Can this artifact run on this device? Checked before anything is uploaded.

Each refusal is a ``DeviceCompatibilityError`` naming the device, the artifact and the fix:
no python/numpy/runtime on the board, a runtime too old for the file's operator versions (the
runtime found on the board and any the inventory declares for the fleet are both checked),
not enough free memory or disk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DeviceCompatibilityError, UsageError
from . import opversions
from .facts import DeviceFacts
from .inventory import RUNTIME_PACKAGES, Device

#: artifact suffix -> (runtime adapter, packages that provide it, in the adapter's order)
FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    ".tflite": ("litert", ("ai-edge-litert", "tflite-runtime", "tensorflow", "tensorflow-cpu")),
    ".onnx": ("onnxruntime", ("onnxruntime",)),
    ".xml": ("openvino", ("openvino",)),
}
INSTALL_HINT = {"litert": "pip install ai-edge-litert (or tflite-runtime)",
                "onnxruntime": "pip install onnxruntime", "openvino": "pip install openvino"}
#: the runner's oldest Python (zip(strict=...), PEP 604 unions at run time)
MIN_PYTHON = (3, 10)
#: memory a runtime and the runner take besides the model (measured: 40-60 MB for LiteRT/ORT)
RUNTIME_OVERHEAD_MB = 64


@dataclass
class Compatibility:
    """What the device will run the artifact with, and what was checked."""

    runtime: str
    package: str
    version: str
    checked: list[str] = field(default_factory=list)


def runtime_for(artifact: Path) -> tuple[str, tuple[str, ...]]:
    try:
        return FORMATS[artifact.suffix.lower()]
    except KeyError:
        raise UsageError(f"cannot run a '{artifact.suffix}' file on a device", path=artifact,
                         hint=f"on-device runs take {', '.join(FORMATS)} artifacts") from None


def check_artifact(device: Device, facts: DeviceFacts, artifact: Path,
                   upload_bytes: int, memory_limit_mb: float | None = None) -> Compatibility:
    """Refuse (DeviceCompatibilityError) an artifact the device cannot run; else say how it will.

    ``upload_bytes``: everything that goes to the board (runner, artifact, inputs);
    ``memory_limit_mb``: the target's max_model_mb, when the device names a target.
    """
    name = device.name
    runtime, packages = runtime_for(artifact)
    py = tuple(int(p) for p in facts.python.split(".")[:2])
    if py < MIN_PYTHON:
        raise DeviceCompatibilityError(
            f"{name}: Python {facts.python} is too old for the runner (needs "
            f"{'.'.join(map(str, MIN_PYTHON))}+)", hint="install a newer python3 on the board")
    if "numpy" not in facts.packages:
        raise DeviceCompatibilityError(f"{name}: numpy is not installed on the board",
                                       hint="pip install numpy there")
    installed = [p for p in packages if p in facts.packages]
    if not installed:
        raise DeviceCompatibilityError(
            f"{name}: no {runtime} runtime on the board to run {artifact.name} "
            f"(looked for {', '.join(packages[:2])})", hint=f"{INSTALL_HINT[runtime]} there")
    package = installed[0]
    result = Compatibility(runtime, package, facts.packages[package])
    if runtime == "litert":
        _check_tflite(device, artifact, result)
    _check_resources(device, facts, artifact, upload_bytes, memory_limit_mb, result)
    return result


def _check_tflite(device: Device, artifact: Path, result: Compatibility) -> None:
    ops, min_version = opversions.read_tflite(artifact)
    runtimes = [(result.package, result.version, "installed")]
    runtimes += [(p, v, "declared for this device") for p, v in device.spec.runtimes.items()
                 if RUNTIME_PACKAGES[p] == "litert"]
    for package, version, how in runtimes:
        problems = opversions.op_problems(ops, package, version)
        meta = opversions.metadata_problem(min_version, package, version)
        if not problems and meta:
            problems = [meta]
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise DeviceCompatibilityError(
                f"{device.name}: {artifact.name} cannot run on {package} {version} ({how}): "
                f"{problems[0]}{more}",
                hint="upgrade the board's runtime, or build for this device's target so the "
                     "converter avoids these operator versions")
        result.checked.append(f"operator versions vs {package} {version} ({how})")


def _check_resources(device: Device, facts: DeviceFacts, artifact: Path, upload_bytes: int,
                     memory_limit_mb: float | None, result: Compatibility) -> None:
    size_mb = _artifact_bytes(artifact) / 2**20
    if memory_limit_mb is not None and size_mb > memory_limit_mb:
        raise DeviceCompatibilityError(
            f"{device.name}: {artifact.name} is {size_mb:.0f} MB, over the target's "
            f"max_model_mb {memory_limit_mb:g}", hint="compress it further or pick a bigger board")
    # the runtime holds the file's weights and the runner reads the file: about twice its size
    need_mb = math.ceil(2 * size_mb + upload_bytes / 2**20 + RUNTIME_OVERHEAD_MB)
    if facts.memory_available_mb is not None and need_mb > facts.memory_available_mb:
        raise DeviceCompatibilityError(
            f"{device.name}: running {artifact.name} needs about {need_mb} MB of memory, the "
            f"board has {facts.memory_available_mb} MB available",
            hint="stop other programs there or use a smaller model")
    need_disk = math.ceil(upload_bytes / 2**20) + 16
    if facts.disk_free_mb is not None and need_disk > facts.disk_free_mb:
        raise DeviceCompatibilityError(
            f"{device.name}: {facts.tmp_dir} has {facts.disk_free_mb} MB free, the run needs "
            f"about {need_disk} MB", hint="free some space on the board")
    result.checked.append(f"memory ({need_mb} MB of {facts.memory_available_mb} available) "
                          "and disk")


def artifact_files(artifact: Path) -> list[Path]:
    """The files that make up an artifact: an OpenVINO IR is its .xml and its .bin."""
    files = [artifact]
    if artifact.suffix.lower() == ".xml":
        files.append(artifact.with_suffix(".bin"))
    return files


def _artifact_bytes(artifact: Path) -> int:
    return sum(p.stat().st_size for p in artifact_files(artifact) if p.is_file())
