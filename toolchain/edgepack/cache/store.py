"""A content-addressed cache of finished builds and of every build step.

The key covers everything a result depends on: the bytes of the model and of its data, the
target and profile definitions or the step's settings, and the versions of edgepack (its code
included) and of every tool it drives. Same key, same result: it is reused.

Two stores share one entry format: ``builds/<key>`` holds a finished build folder (a matrix
cell), ``steps/<key>`` the output files of one step (a conversion hop) and/or its result
record (what a validation measured). An entry lists the sha256 of each of its files and is
sealed by the sha256 of that list and its record; files are checked as they are copied out, so
a corrupted or edited entry is discarded and rebuilt, never used. Entries are written to a
temporary folder and renamed into place, so a crash never leaves half an entry; a cache that
cannot be written only makes the next build slower.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .keys import file_digest, json_digest

ENTRY = "cache-entry.json"


def cache_root() -> Path:
    """``$EDGEPACK_CACHE``, else ``~/.cache/edgepack`` (XDG_CACHE_HOME honoured)."""
    env = os.environ.get("EDGEPACK_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgepack"


@dataclass
class StoreInfo:
    entries: int
    bytes: int


@dataclass
class CacheInfo:
    root: str
    builds: StoreInfo
    steps: StoreInfo


class _Store:
    """Entries under ``<root>/<kind>/<key>``: files plus a record, sealed and verified."""

    kind = ""

    def __init__(self, root: Path | None = None):
        self.root = root or cache_root()
        self.folder = self.root / self.kind

    def _open(self, key: str) -> dict[str, Any] | None:
        """The entry's sealed content, None on a miss; a broken seal discards the entry."""
        try:
            data = json.loads((self.folder / key / ENTRY).read_text())
            seal = data.pop("sha256")
            if seal != json_digest(data) or data["key"] != key or \
                    not isinstance(data["files"], dict):
                raise ValueError("broken seal")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self._discard(key)
            return None
        return data

    def _copy_out(self, key: str, files: Mapping[str, str], dest: Path,
                  rename: Callable[[str], str]) -> bool:
        """Copy the entry's files into ``dest`` (as ``rename(name)``), checking each copy's
        sha256; on any mismatch the copies are removed, the entry discarded, and False."""
        entry = self.folder / key
        written: list[Path] = []
        try:
            for name, digest in files.items():
                target = dest / rename(name)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(entry / name, target)
                written.append(target)
                if file_digest(target) != digest:
                    raise ValueError(f"{name} does not match its sha256")
        except (OSError, ValueError):
            for f in written:
                f.unlink(missing_ok=True)
            self._discard(key)
            return False
        return True

    def _put(self, key: str, files: Mapping[str, Path], record: Any = None) -> None:
        """Add an entry (atomically; an existing entry wins, as does a concurrent writer)."""
        final = self.folder / key
        if final.exists():
            return
        staging = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{key[:12]}.tmp-", dir=self.folder))
            digests = {}
            for name, src in sorted(files.items()):
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, staging / name)
                digests[name] = file_digest(staging / name)
            data = {"key": key, "files": digests, "record": record}
            (staging / ENTRY).write_text(json.dumps({**data, "sha256": json_digest(data)},
                                                    indent=1, sort_keys=True))
            staging.rename(final)
        except OSError:  # full, read-only, or another process stored the same key first
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)

    def _discard(self, key: str) -> None:
        """Remove an entry that failed its check: renamed away first, so no reader ever sees
        it half deleted."""
        doomed = self.folder / f".{key[:12]}.bad-{os.getpid()}"
        try:
            (self.folder / key).rename(doomed)
        except OSError:
            return  # already gone (another process discarded it)
        shutil.rmtree(doomed, ignore_errors=True)

    def info(self) -> StoreInfo:
        entries = [p for p in self.folder.glob("*") if (p / ENTRY).is_file()] \
            if self.folder.is_dir() else []
        size = sum(f.stat().st_size for e in entries for f in e.rglob("*") if f.is_file())
        return StoreInfo(len(entries), size)

    def clear(self) -> StoreInfo:
        """Remove every entry; returns what there was."""
        there = self.info()
        shutil.rmtree(self.folder, ignore_errors=True)
        return there


class BuildCache(_Store):
    """Finished build folders (the matrix's cells)."""

    kind = "builds"

    @property
    def builds(self) -> Path:
        return self.folder

    def fetch(self, key: str, dest: Path) -> bool:
        """Copy entry ``key`` to ``dest`` (a folder that must not exist); False on a miss or
        a corrupted entry (which is then removed)."""
        data = self._open(key)
        if data is None:
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
        try:
            if not self._copy_out(key, data["files"], staging, str):
                shutil.rmtree(staging, ignore_errors=True)
                return False
            staging.rename(dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return True

    def recorded_digest(self, key: str, name: str) -> str | None:
        """The sha256 entry ``key`` records for its file ``name`` (None: no such entry)."""
        data = self._open(key)
        return None if data is None else data["files"].get(name)

    def store(self, key: str, folder: Path) -> None:
        """Add a finished build folder under ``key``."""
        self._put(key, {str(f.relative_to(folder)): f for f in sorted(folder.rglob("*"))
                        if f.is_file()})


@dataclass
class StepHit:
    """A step's files, copied out and checked, and the record it stored with them."""

    record: Any


class StepCache(_Store):
    """The output files and result record of single build steps (keys.py keys them)."""

    kind = "steps"

    def fetch(self, key: str, dest: Path | None = None,
              rename: Callable[[str], str] = str) -> StepHit | None:
        """Entry ``key``'s record, its files copied into the folder ``dest`` (each under
        ``rename(name)``, replacing what is there); None on a miss or a corrupted entry (which
        is then removed). A step whose result is only numbers has no files and needs no dest.
        """
        data = self._open(key)
        if data is None:
            return None
        if data["files"] and (dest is None or
                              not self._copy_out(key, data["files"], dest, rename)):
            return None
        return StepHit(data["record"])

    def store(self, key: str, files: Mapping[str, Path], record: Any) -> None:
        """Add a step's files (entry name -> path) and its JSON-serialisable record."""
        self._put(key, files, record)


def cache_info(root: Path | None = None) -> CacheInfo:
    root = root or cache_root()
    return CacheInfo(str(root), BuildCache(root).info(), StepCache(root).info())


def clear_cache(root: Path | None = None) -> CacheInfo:
    """Remove every cached build and step; returns what there was."""
    root = root or cache_root()
    return CacheInfo(str(root), BuildCache(root).clear(), StepCache(root).clear())
