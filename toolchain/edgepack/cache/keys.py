"""Hashing and cache keys: content digests of files, folders, models, arrays and datasets;
the tool versions and host facts every key covers."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..data.dataset import Dataset

#: distributions whose version changes what a build produces
TOOLS = ("tensorflow-cpu", "keras", "tf2onnx", "onnx", "onnxruntime", "onnxconverter-common",
         "openvino", "nncf", "ai-edge-litert", "torch", "onnx2tf", "numpy")


def file_digest(path: Path) -> str:
    """sha256 of a file, or of a folder's files (names included), streamed."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def json_digest(value: Any) -> str:
    """sha256 of a JSON-serialisable value, independent of dict order."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@functools.cache
def _code_digest() -> str:
    """sha256 of edgepack's own modules: a checkout changes between releases without its
    version changing, and a cached result of the old code must not outlive the edit."""
    package = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for f in sorted(package.rglob("*.py")):
        h.update(str(f.relative_to(package)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


@functools.cache
def tool_versions() -> dict[str, str]:
    """Versions of edgepack (with its code digest) and of every tool it drives; read once per
    process, from the installed distributions' metadata (no framework is imported)."""
    versions = {"edgepack": f"{__version__}+{_code_digest()}"}
    for dist in TOOLS:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "-"
    return versions


@functools.cache
def host_facts() -> dict[str, Any]:
    """CPU model, core count and machine type: a cached latency holds on this kind of host
    only, so every key that covers one covers these."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "machine": platform.machine()}


def build_key(parts: dict[str, Any]) -> str:
    """The key of a build or step from its (JSON-serialisable) inputs and the tool versions."""
    return json_digest({"inputs": parts, "tools": tool_versions()})


def model_files(path: Path) -> list[Path]:
    """Every file a model consists of: a folder's files, an IR's .xml and .bin, an ONNX file
    and its external data. A key that covers only the first would outlive new weights in
    the others (an exporter rewrites the weights and leaves the graph's bytes as they were)."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    if path.suffix == ".onnx":
        from ..formats.onnx import external_data_files

        return [path, *external_data_files(path)]
    weights = path.with_suffix(".bin")
    return [path, weights] if path.suffix == ".xml" and weights.is_file() else [path]


def model_digest(path: Path) -> str:
    """A converter output's content digest, independent of its file name."""
    if path.is_dir():
        return file_digest(path)
    return json_digest([file_digest(p) for p in model_files(path)])


def arrays_digest(arrays: Sequence[np.ndarray], h: Any = None) -> str:
    """sha256 of arrays' dtypes, shapes and bytes, in order."""
    h = h or hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def dataset_digest(data: Dataset) -> str:
    """sha256 of a Dataset's inputs (by name) and labels; its source path is not part of it."""
    names = sorted(data.inputs)
    h = hashlib.sha256(json_digest(names).encode())
    labels = [] if data.labels is None else [data.labels]
    return arrays_digest([*(data.inputs[n] for n in names), *labels], h)
