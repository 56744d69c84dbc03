"""Open an untrusted zip or tar.gz without letting it write anywhere it should not.

Every member is inspected before anything is extracted: absolute paths, '..' components,
backslashes, links (zip marks them in the mode bits of ``external_attr``), device files, FIFOs,
sparse files, encrypted members, duplicate names (also ignoring case and Unicode normalisation,
since that is how macOS and Windows would unpack them, so what was verified is what a user gets),
a name that is both a file and a folder, too many members, a member or a total declared too
large, and a compression ratio only a zip bomb has. Only then are regular files extracted, into
a fresh private temporary folder, each created exclusively (``O_EXCL | O_NOFOLLOW``) and copied
with a cap: a member may not hold more than it declared, and a tar.gz is decompressed through a
counter that stops at ``max_ratio`` times its size, because a gzip stream declares no size of
its own. The temporary folder is removed when the caller is done, whatever happened.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import stat
import tarfile
import tempfile
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NoReturn

from ..errors import BundleTamperedError, UnsafeArchiveError

_CORRUPT = (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, gzip.BadGzipFile,
            NotImplementedError)


@dataclass(frozen=True)
class ArchiveLimits:
    """What an archive may hold. The defaults fit any edge model with room to spare."""

    max_members: int = 10_000
    max_member_bytes: int = 4 << 30
    max_total_bytes: int = 8 << 30
    #: uncompressed / compressed; model weights compress about 1.1:1, text 3-10:1
    max_ratio: float = 100.0
    #: data up to this size may compress arbitrarily well (small text files, tar padding)
    ratio_floor: int = 1 << 20


@dataclass(frozen=True)
class Member:
    name: str  # normalised: '/'-separated, no '.' components
    size: int
    is_dir: bool


@contextlib.contextmanager
def extracted(path: Path, limits: ArchiveLimits | None = None
              ) -> Iterator[tuple[Path, list[Member]]]:
    """Check ``path``'s members, extract its files into a private temporary folder, yield
    (folder, members); the folder is removed afterwards."""
    limits = limits or ArchiveLimits()
    kind = archive_kind(path)
    root = Path(tempfile.mkdtemp(prefix="edgepack-verify-"))
    try:
        try:
            if kind == "zip":
                members = _extract_zip(path, root, limits)
            else:
                members = _extract_tar_gz(path, root, limits)
        except _CORRUPT as exc:
            raise BundleTamperedError(f"corrupt {kind} archive: {exc}", path=path,
                                      hint="the download is truncated or was modified; get it "
                                           "again") from exc
        yield root, members
    finally:
        shutil.rmtree(root, ignore_errors=True)


def archive_kind(path: Path) -> str:
    """"zip" or "tar.gz", from the file's first bytes (never from its name)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise BundleTamperedError(f"cannot read: {exc.strerror}", path=path) from exc
    if head in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        return "tar.gz"
    raise BundleTamperedError("not a zip or tar.gz archive", path=path,
                              hint="pass a bundle made by edgepack package")


# ------------------------------------------------------------------------------------ zip

def _extract_zip(path: Path, root: Path, limits: ArchiveLimits) -> list[Member]:
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        checker = _Checker(path, limits)
        members = [checker.add(_zip_member(path, info, limits)) for info in infos]
        checker.check_names()
        for info, member in zip(infos, members, strict=True):
            if not member.is_dir:
                try:
                    src = zf.open(info)
                except OSError as exc:  # a header offset before the file's start: seek fails
                    raise zipfile.BadZipFile(f"member {member.name}: header offset "
                                             f"{info.header_offset} ({exc.strerror})") from exc
                with src:
                    _write(path, root, member, src)
    return members


def _zip_member(bundle: Path, info: zipfile.ZipInfo, limits: ArchiveLimits) -> Member:
    name = safe_name(bundle, info.filename)
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        _refuse(bundle, name, "is a symbolic link")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        _refuse(bundle, name, "is a device or special file")
    if info.flag_bits & 0x1:
        _refuse(bundle, name, "is encrypted")
    if (info.file_size > limits.ratio_floor
            and info.file_size > limits.max_ratio * max(info.compress_size, 1)):
        _refuse(bundle, name, f"expands {info.compress_size:,} bytes to {info.file_size:,} "
                              f"(over {limits.max_ratio:.0f}:1, a zip bomb)")
    return Member(name, info.file_size, info.is_dir() or kind == stat.S_IFDIR)


# ------------------------------------------------------------------------------------ tar.gz

def _extract_tar_gz(path: Path, root: Path, limits: ArchiveLimits) -> list[Member]:
    """Two passes over the stream: check every header, then extract the regular files."""
    checker = _Checker(path, limits)
    with _tar_stream(path, limits) as tar:
        members = [checker.add(_tar_member(path, info)) for info in tar]
    checker.check_names()
    with _tar_stream(path, limits) as tar:
        for index, info in enumerate(tar):
            # the file is read twice: it must say the same thing the second time
            if index >= len(members) or _tar_member(path, info) != members[index]:
                raise BundleTamperedError("the archive changed while it was being read",
                                          path=path)
            if info.isreg():
                src = tar.extractfile(info)
                assert src is not None  # regular members always have data
                _write(path, root, members[index], src)
    return members


@contextlib.contextmanager
def _tar_stream(path: Path, limits: ArchiveLimits) -> Iterator[tarfile.TarFile]:
    cap = max(limits.ratio_floor, int(limits.max_ratio * path.stat().st_size))
    with path.open("rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz, \
            tarfile.open(fileobj=_Capped(gz, cap, path, limits.max_ratio), mode="r|") as tar:
        yield tar


def _tar_member(bundle: Path, info: tarfile.TarInfo) -> Member:
    name = safe_name(bundle, info.name)
    if info.issym() or info.islnk():
        _refuse(bundle, name, f"is a {'symbolic' if info.issym() else 'hard'} link to "
                              f"{info.linkname!r}")
    if info.ischr() or info.isblk() or info.isfifo():
        _refuse(bundle, name, "is a device or special file")
    if info.issparse() or not (info.isreg() or info.isdir()):
        _refuse(bundle, name, f"has an unsupported member type {info.type!r}")
    return Member(name, info.size if info.isreg() else 0, info.isdir())


class _Capped:
    """A read-only stream that refuses to produce more than ``cap`` bytes."""

    def __init__(self, raw: IO[bytes], cap: int, bundle: Path, ratio: float):
        self._raw, self._cap, self._bundle, self._ratio = raw, cap, bundle, ratio
        self._count = 0

    def read(self, n: int) -> bytes:
        data = self._raw.read(min(n, self._cap - self._count + 1))
        self._count += len(data)
        if self._count > self._cap:
            raise UnsafeArchiveError(
                f"unsafe archive: decompresses to more than {self._cap:,} bytes (over "
                f"{self._ratio:.0f}:1, a gzip bomb); extraction stopped, nothing kept",
                path=self._bundle, hint="do not use this archive")
        return data


# ------------------------------------------------------------------------------------ shared

def safe_name(bundle: Path, raw: str) -> str:
    """``raw`` as a relative '/'-separated path, or UnsafeArchiveError."""
    if not raw or any(ord(c) < 32 for c in raw):
        _refuse(bundle, raw, "has an empty name or control characters")
    if "\\" in raw:
        _refuse(bundle, raw, "contains a backslash (a path separator on Windows)")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        _refuse(bundle, raw, "is an absolute path")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        _refuse(bundle, raw, "has a '..' component (path traversal)")
    if not parts:
        _refuse(bundle, raw, "names the archive's root")
    return "/".join(parts)


class _Checker:
    """Counts and sizes as members are listed; names once all are known."""

    def __init__(self, bundle: Path, limits: ArchiveLimits):
        self.bundle, self.limits = bundle, limits
        self.members: list[Member] = []
        self.total = 0

    def add(self, member: Member) -> Member:
        lim = self.limits
        self.members.append(member)
        self.total += member.size
        if len(self.members) > lim.max_members:
            _refuse(self.bundle, member.name, f"is past the limit of {lim.max_members:,} members")
        if member.size > lim.max_member_bytes:
            _refuse(self.bundle, member.name, f"declares {member.size:,} bytes (limit "
                                              f"{lim.max_member_bytes:,})")
        if self.total > lim.max_total_bytes:
            _refuse(self.bundle, member.name, f"brings the archive to {self.total:,} bytes "
                                              f"(limit {lim.max_total_bytes:,})")
        return member

    def check_names(self) -> None:
        seen: dict[str, str] = {}
        dirs = {m.name for m in self.members if m.is_dir}
        for m in self.members:
            parents = m.name.split("/")[:-1]
            dirs.update("/".join(parents[:i + 1]) for i in range(len(parents)))
        for m in self.members:
            if m.is_dir:
                continue
            key = unicodedata.normalize("NFC", m.name).casefold()
            if key in seen:
                same = "" if seen[key] == m.name else f" (as {seen[key]!r}, ignoring case)"
                _refuse(self.bundle, m.name, f"appears twice{same}")
            seen[key] = m.name
            if m.name in dirs:
                _refuse(self.bundle, m.name, "is both a file and a folder")


def _write(bundle: Path, root: Path, member: Member, src: IO[bytes]) -> None:
    """Create ``member`` under ``root`` exclusively and copy at most its declared size."""
    target = root.joinpath(*member.name.split("/"))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    written = 0
    with os.fdopen(fd, "wb") as out:
        for chunk in iter(lambda: src.read(1 << 20), b""):
            written += len(chunk)
            if written > member.size:
                raise UnsafeArchiveError(
                    f"unsafe archive: member {member.name!r} holds more than the "
                    f"{member.size:,} bytes it declares; extraction stopped, nothing kept",
                    path=bundle, hint="do not use this archive")
            out.write(chunk)


def _refuse(bundle: Path, name: str, why: str) -> NoReturn:
    raise UnsafeArchiveError(f"unsafe archive: member {name!r} {why}; refused before "
                             "extracting anything", path=bundle, hint="do not use this archive")
