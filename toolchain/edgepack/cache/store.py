"""A content-addressed cache of finished builds and of every build step.

The key covers everything a result depends on: the bytes of the model and of its data, the
target and profile definitions or the step's settings, and the versions of edgepack (its code
included) and of every tool it drives. Same key, same result: it is reused.

Two stores share one entry format: ``builds/<key>`` holds a finished build folder (a matrix
cell), ``steps/<key>`` the output files of one step (a conversion hop) and/or its result
record (what a validation measured). An entry lists the sha256 of each of its files and is
sealed by a keyed MAC (HMAC-SHA256) of that list, its record, its key and its kind; files are
checked as they are copied out, so a corrupted, edited or forged entry is discarded and rebuilt
with a warning, never used. Whoever can write to a cache folder cannot make entries for the
machines that read it without the MAC key: ``$EDGEPACK_CACHE_KEY`` (a shared secret, for a
cache several users or machines share), else a key made on first use in ``<root>/.mac-key``,
readable by its owner only and used only when it is. File names in an entry are relative
paths without '..', backslashes or control characters, and no link is followed in or out.
Entries are written to a temporary folder and renamed into place, so a crash never leaves half
an entry; a cache that cannot be written only makes the next build slower.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import EdgepackWarning
from .keys import file_digest

ENTRY = "cache-entry.json"
KEY_ENV = "EDGEPACK_CACHE_KEY"
KEY_FILE = ".mac-key"
#: a shared key shorter than this is refused (it could be guessed)
MIN_KEY_CHARS = 16
_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class CacheWarning(EdgepackWarning):
    """A cache entry or key that was not used, and why; the build goes on without it."""


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
        """The entry's sealed content, None on a miss; an entry that fails its check is
        discarded (with a warning) and None returned, as for a miss."""
        mac_key = mac_key_of(self.root)
        if mac_key is None or not _KEY_NAME.fullmatch(key):
            return None
        try:
            data = json.loads(_read_nofollow(self.folder / key, ENTRY))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            return self._reject(key, f"unreadable ({exc})")
        problem = _entry_problem(data, key, self.kind, mac_key)
        if problem:
            return self._reject(key, problem)
        return data

    def _reject(self, key: str, why: str) -> None:
        warnings.warn(f"cache entry {self.kind}/{key[:16]} discarded and rebuilt: {why}",
                      CacheWarning, stacklevel=3)
        self._discard(key)

    def _copy_out(self, key: str, files: Mapping[str, str], dest: Path,
                  rename: Callable[[str], str]) -> bool:
        """Copy the entry's files into ``dest`` (as ``rename(name)``), checking each copy's
        sha256; on any mismatch the copies are removed, the entry discarded, and False."""
        entry = self.folder / key
        written: list[Path] = []
        try:
            for name, digest in files.items():
                new_name = rename(name)
                if not safe_entry_name(new_name):
                    raise ValueError(f"{name} would be copied to {new_name!r}")
                target = dest / new_name
                target.parent.mkdir(parents=True, exist_ok=True)
                written.append(target)
                if _copy_nofollow(entry, name, target) != digest:
                    raise ValueError(f"{name} does not match its sha256")
        except (OSError, ValueError) as exc:
            for f in written:
                f.unlink(missing_ok=True)
            self._reject(key, str(exc))
            return False
        return True

    def _put(self, key: str, files: Mapping[str, Path], record: Any = None) -> None:
        """Add an entry (atomically; an existing entry wins, as does a concurrent writer)."""
        mac_key = mac_key_of(self.root)
        final = self.folder / key
        if mac_key is None or final.exists() or not _KEY_NAME.fullmatch(key) or \
                not all(safe_entry_name(n) for n in files):
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
            (staging / ENTRY).write_text(json.dumps(
                {**data, "mac": _mac(mac_key, self.kind, data)}, indent=1, sort_keys=True))
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


def safe_entry_name(name: object) -> bool:
    """A file name an entry may hold: relative, '/'-separated, no empty, '.' or '..' part, no
    backslash or control character (so it cannot point outside the entry or its copy)."""
    if not isinstance(name, str) or not name or len(name) > 1024 or "\\" in name:
        return False
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def _entry_problem(data: Any, key: str, kind: str, mac_key: bytes) -> str | None:
    """Why the parsed entry ``data`` must not be used (None: it may)."""
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        return "not an entry"
    mac = data.pop("mac", None)
    if not isinstance(mac, str) or not hmac.compare_digest(mac, _mac(mac_key, kind, data)):
        return "its MAC does not check (changed, or made without this cache's key)"
    if data.get("key") != key:
        return "it is filed under another key"
    bad = [n for n in data["files"] if not safe_entry_name(n)]
    if bad:
        return f"it names a file outside itself ({str(bad[0])[:60]!r})"
    return None


def _mac(mac_key: bytes, kind: str, data: dict[str, Any]) -> str:
    text = json.dumps({"kind": kind, **data}, sort_keys=True, default=str)
    return hmac.new(mac_key, text.encode(), hashlib.sha256).hexdigest()


def _read_nofollow(folder: Path, name: str) -> bytes:
    fd = _open_nofollow(folder, name)
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


def _copy_nofollow(folder: Path, name: str, target: Path) -> str:
    """Copy ``folder/name`` to ``target`` following no link on either side; its sha256."""
    h = hashlib.sha256()
    with os.fdopen(_open_nofollow(folder, name), "rb") as src, os.fdopen(
            os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644),
            "wb") as out:
        for chunk in iter(lambda: src.read(1 << 20), b""):
            h.update(chunk)
            out.write(chunk)
    return h.hexdigest()


def _open_nofollow(folder: Path, name: str) -> int:
    """A read descriptor of the regular file ``folder/name``; OSError when ``folder`` or any
    part of ``name`` is a link or the file is not regular."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in name.split("/")[:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
        leaf = os.open(name.split("/")[-1], os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(leaf).st_mode):
        os.close(leaf)
        raise OSError(f"{name} is not a regular file")
    return leaf


def mac_key_of(root: Path) -> bytes | None:
    """The key that seals entries under ``root``: ``$EDGEPACK_CACHE_KEY``, else ``root``'s
    key file (made on first use, owner-only). None (with a warning, once): the cache is not
    used, because no key can be trusted."""
    shared = os.environ.get(KEY_ENV)
    if shared is not None:
        if len(shared) < MIN_KEY_CHARS:
            _warn_once(f"{KEY_ENV} is shorter than {MIN_KEY_CHARS} characters: the cache is "
                       "not used (choose a long random secret)")
            return None
        return hashlib.sha256(b"edgepack-cache\0" + shared.encode()).digest()
    return _key_file(str(root))


@functools.cache
def _key_file(root: str) -> bytes | None:
    path = Path(root) / KEY_FILE
    try:
        return _read_key(path)
    except (FileNotFoundError, NotADirectoryError):
        pass  # made below (or, for a cache that cannot be written, not at all)
    except OSError as exc:
        _warn_once(f"the cache key {path} cannot be used ({exc}): the cache is not used; "
                   f"set {KEY_ENV} to share a cache")
        return None
    try:
        Path(root).mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".mac-key.", dir=root)  # mode 0600
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)  # all at once, and never over a key that is there
        except FileExistsError:
            pass  # another process made it first: use theirs
        finally:
            os.unlink(tmp)
        return _read_key(path)
    except OSError:
        return None  # an unwritable cache: nothing is stored, nothing to check


def _read_key(path: Path) -> bytes:
    """The key in ``path`` if it is a regular file of this user's, readable by no one else."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "r") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or \
                info.st_mode & 0o077:
            raise PermissionError("it is not a file of this user's, private to them")
        text = fh.read(200).strip()
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise OSError("it does not hold a key")
    return bytes.fromhex(text)


@functools.cache
def _warn_once(text: str) -> None:
    warnings.warn(text, CacheWarning, stacklevel=4)


def cache_info(root: Path | None = None) -> CacheInfo:
    root = root or cache_root()
    return CacheInfo(str(root), BuildCache(root).info(), StepCache(root).info())


def clear_cache(root: Path | None = None) -> CacheInfo:
    """Remove every cached build and step; returns what there was."""
    root = root or cache_root()
    return CacheInfo(str(root), BuildCache(root).clear(), StepCache(root).clear())
