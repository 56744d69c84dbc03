"""Open an untrusted zip or tar.gz without letting it write anywhere it should not.

A zip is first read as a layout (``formats.zip_layout``): its local entries must match its
central directory one to one, so a streaming unzipper sees exactly the files checked here.
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

Opening is two steps, so a caller decides before anything large reaches the disk: ``opened``
checks every header and keeps a few small members in memory (a bundle's manifest and its
signature); ``Archive.extract`` then writes the regular files, hashing each as it is written.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
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
from ..formats.zip_layout import ZipLayoutError, ZipTruncatedError, check_layout

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


@dataclass(frozen=True)
class Extracted:
    """A regular file written by ``Archive.extract``: where, and the sha256 of what was
    written."""

    path: Path
    sha256: str


class Archive:
    """An archive whose every header passed the checks; small members kept in ``kept``."""

    def __init__(self, path: Path, kind: str, limits: ArchiveLimits, members: list[Member],
                 kept: dict[str, bytes], root: Path):
        self.path, self.kind, self.limits = path, kind, limits
        self.members, self.kept, self._root = members, kept, root

    @property
    def root(self) -> Path:
        """The private folder ``extract`` writes into."""
        return self._root

    def extract(self) -> dict[str, Extracted]:
        """Write every regular file into a private temporary folder (removed when the ``with
        opened(...)`` block ends); name -> where it is and its sha256."""
        with _corrupt_is_tampering(self.path, self.kind):
            if self.kind == "zip":
                return _extract_zip(self.path, self._root, self.members)
            return _extract_tar_gz(self.path, self._root, self.members, self.limits)


@contextlib.contextmanager
def opened(path: Path, limits: ArchiveLimits | None = None, keep: frozenset[str] = frozenset(),
           keep_max_bytes: int = 16 << 20) -> Iterator[Archive]:
    """Check ``path``'s layout and every member's header, read the regular members named in
    ``keep`` (each up to ``keep_max_bytes``, else BundleTamperedError) into memory, and yield
    the Archive; nothing is written to disk until ``Archive.extract``."""
    limits = limits or ArchiveLimits()
    kind = archive_kind(path)
    with _corrupt_is_tampering(path, kind):
        if kind == "zip":
            members, kept = _check_zip(path, limits, keep, keep_max_bytes)
        else:
            members, kept = _check_tar_gz(path, limits, keep, keep_max_bytes)
    root = Path(tempfile.mkdtemp(prefix="edgepack-verify-"))
    try:
        yield Archive(path, kind, limits, members, kept, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def _corrupt_is_tampering(path: Path, kind: str) -> Iterator[None]:
    try:
        yield
    except _CORRUPT as exc:
        raise BundleTamperedError(f"corrupt {kind} archive: {exc}", path=path,
                                  hint="the download is truncated or was modified; get it "
                                       "again") from exc


def _kept_too_large(path: Path, member: Member, limit: int) -> BundleTamperedError:
    return BundleTamperedError(f"{member.name} declares {member.size:,} bytes, more than the "
                               f"{limit:,} a bundle's {member.name} may hold", path=path,
                               hint="do not use this bundle")


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

def _check_zip(path: Path, limits: ArchiveLimits, keep: frozenset[str],
               keep_max: int) -> tuple[list[Member], dict[str, bytes]]:
    try:
        with path.open("rb") as fh:
            check_layout(fh, path.stat().st_size)
    except ZipTruncatedError as exc:
        raise zipfile.BadZipFile(str(exc)) from exc
    except ZipLayoutError as exc:
        raise UnsafeArchiveError(f"unsafe archive: its local entries do not match its central "
                                 f"directory ({exc}), so a streaming unzipper would read "
                                 "other files than the ones checked; refused before extracting "
                                 "anything", path=path, hint="do not use this archive") from exc
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        checker = _Checker(path, limits)
        members = [checker.add(_zip_member(path, info, limits)) for info in infos]
        checker.check_names()
        kept = {}
        for info, member in zip(infos, members, strict=True):
            if member.name in keep and not member.is_dir:
                if member.size > keep_max:
                    raise _kept_too_large(path, member, keep_max)
                with _open_zip_member(zf, info, member) as src:
                    kept[member.name] = _read_capped(path, member, src)
    return members, kept


def _extract_zip(path: Path, root: Path, members: list[Member]) -> dict[str, Extracted]:
    written = {}
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if [_zip_member(path, i, ArchiveLimits()).name for i in infos] != \
                [m.name for m in members]:
            raise BundleTamperedError("the archive changed while it was being read", path=path)
        for info, member in zip(infos, members, strict=True):
            if not member.is_dir:
                with _open_zip_member(zf, info, member) as src:
                    written[member.name] = _write(path, root, member, src)
    return written


def _open_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, member: Member) -> IO[bytes]:
    try:
        return zf.open(info)
    except OSError as exc:  # a header offset before the file's start: seek fails
        raise zipfile.BadZipFile(f"member {member.name}: header offset "
                                 f"{info.header_offset} ({exc.strerror})") from exc


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

def _check_tar_gz(path: Path, limits: ArchiveLimits, keep: frozenset[str],
                  keep_max: int) -> tuple[list[Member], dict[str, bytes]]:
    """One pass over the stream: every header checked, the ``keep`` members read."""
    checker = _Checker(path, limits)
    kept = {}
    with _tar_stream(path, limits) as tar:
        members = []
        for info in tar:
            member = checker.add(_tar_member(path, info))
            members.append(member)
            if member.name in keep and info.isreg():
                if member.size > keep_max:
                    raise _kept_too_large(path, member, keep_max)
                src = tar.extractfile(info)
                assert src is not None  # regular members always have data
                kept[member.name] = _read_capped(path, member, src)
    checker.check_names()
    return members, kept


def _extract_tar_gz(path: Path, root: Path, members: list[Member],
                    limits: ArchiveLimits) -> dict[str, Extracted]:
    """A second pass over the stream, extracting the regular files."""
    written = {}
    with _tar_stream(path, limits) as tar:
        for index, info in enumerate(tar):
            # the file is read twice: it must say the same thing the second time
            if index >= len(members) or _tar_member(path, info) != members[index]:
                raise BundleTamperedError("the archive changed while it was being read",
                                          path=path)
            if info.isreg():
                src = tar.extractfile(info)
                assert src is not None  # regular members always have data
                written[members[index].name] = _write(path, root, members[index], src)
    return written


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


def _write(bundle: Path, root: Path, member: Member, src: IO[bytes]) -> Extracted:
    """Create ``member`` under ``root`` exclusively and copy at most its declared size."""
    target = root.joinpath(*member.name.split("/"))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    digest = hashlib.sha256()
    with os.fdopen(fd, "wb") as out:
        for chunk in _capped_chunks(bundle, member, src):
            digest.update(chunk)
            out.write(chunk)
    return Extracted(target, digest.hexdigest())


def _read_capped(bundle: Path, member: Member, src: IO[bytes]) -> bytes:
    return b"".join(_capped_chunks(bundle, member, src))


def _capped_chunks(bundle: Path, member: Member, src: IO[bytes]) -> Iterator[bytes]:
    """``src`` in chunks, refusing a member that holds more than it declares."""
    written = 0
    for chunk in iter(lambda: src.read(1 << 20), b""):
        written += len(chunk)
        if written > member.size:
            raise UnsafeArchiveError(
                f"unsafe archive: member {member.name!r} holds more than the "
                f"{member.size:,} bytes it declares; extraction stopped, nothing kept",
                path=bundle, hint="do not use this archive")
        yield chunk


def _refuse(bundle: Path, name: str, why: str) -> NoReturn:
    raise UnsafeArchiveError(f"unsafe archive: member {name!r} {why}; refused before "
                             "extracting anything", path=bundle, hint="do not use this archive")
