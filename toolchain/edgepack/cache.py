"""A content-addressed cache of finished builds.

The key covers everything a build's result depends on: the bytes of the model and of its data,
the target and profile definitions, the build options, and the versions of edgepack and of every
tool it drives. Same key, same build: the folder is reused. An entry records the sha256 of each
of its files; one that does not match any more (a corrupted or edited cache) is discarded and
rebuilt, never used. Entries are written to a temporary folder and renamed into place, so a
crash never leaves half an entry.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__

#: distributions whose version changes what a build produces
TOOLS = ("tensorflow-cpu", "keras", "tf2onnx", "onnx", "onnxruntime", "onnxconverter-common",
         "openvino", "nncf", "ai-edge-litert", "torch", "onnx2tf", "numpy")
ENTRY = "cache-entry.json"


def cache_root() -> Path:
    """``$EDGEPACK_CACHE``, else ``~/.cache/edgepack`` (XDG_CACHE_HOME honoured)."""
    env = os.environ.get("EDGEPACK_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgepack"


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


def tool_versions() -> dict[str, str]:
    versions = {"edgepack": __version__}
    for dist in TOOLS:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "-"
    return versions


def build_key(parts: dict[str, Any]) -> str:
    """The key of a build from its (JSON-serialisable) inputs and the tool versions."""
    text = json.dumps({"inputs": parts, "tools": tool_versions()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class CacheInfo:
    root: str
    entries: int
    bytes: int


class BuildCache:
    def __init__(self, root: Path | None = None):
        self.root = root or cache_root()
        self.builds = self.root / "builds"

    def fetch(self, key: str, dest: Path) -> bool:
        """Copy entry ``key`` to ``dest`` (a folder that must not exist); False on a miss or
        a corrupted entry (which is then removed)."""
        entry = self.builds / key
        record = entry / ENTRY
        if not record.is_file():
            return False
        try:
            files = json.loads(record.read_text())["files"]
            intact = all(file_digest(entry / name) == digest for name, digest in files.items())
        except (OSError, ValueError, KeyError):
            intact = False
        if not intact:
            shutil.rmtree(entry, ignore_errors=True)
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
        try:
            for name in files:
                target = staging / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(entry / name, target)
            staging.rename(dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return True

    def store(self, key: str, folder: Path) -> None:
        """Add a finished build folder under ``key`` (atomically; an existing entry wins)."""
        self.builds.mkdir(parents=True, exist_ok=True)
        final = self.builds / key
        if final.exists():
            return
        staging = Path(tempfile.mkdtemp(prefix=f".{key[:12]}.tmp-", dir=self.builds))
        try:
            files = {}
            for f in sorted(p for p in folder.rglob("*") if p.is_file()):
                rel = str(f.relative_to(folder))
                (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, staging / rel)
                files[rel] = file_digest(f)
            (staging / ENTRY).write_text(json.dumps({"key": key, "files": files}, indent=1))
            staging.rename(final)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)  # a cache that cannot be written is
            # only a slower rebuild next time, never a failed build

    def info(self) -> CacheInfo:
        entries = [p for p in self.builds.glob("*") if (p / ENTRY).is_file()] \
            if self.builds.is_dir() else []
        size = sum(f.stat().st_size for e in entries for f in e.rglob("*") if f.is_file())
        return CacheInfo(str(self.root), len(entries), size)

    def clear(self) -> int:
        n = self.info().entries
        shutil.rmtree(self.builds, ignore_errors=True)
        return n
