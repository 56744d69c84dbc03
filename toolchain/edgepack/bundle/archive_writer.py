"""Deterministic zip and tar.gz writing, published atomically.

Same files in, same bytes out: entries sorted by name, one fixed timestamp for every entry (and
for the gzip header), permissions normalised to 0644, owner and group 0 with no names, no
directory entries, no extra fields. The archive is written to a hidden temporary file beside the
destination and renamed over it only when complete, so a failure never leaves a partial bundle.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import stat
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ..errors import OutputError
from .manifest import BundleFile

FORMATS = ("zip", "tar.gz")
FILE_MODE = 0o644
#: zip cannot store times before 1980-01-01 00:00:00 UTC
ZIP_EPOCH = 315532800


def write_archive(dest: Path, files: list[BundleFile], archive_format: str, mtime: int) -> None:
    """Write ``files`` into ``dest`` as ``archive_format`` ("zip" or "tar.gz")."""
    entries = sorted(files, key=lambda f: f.path)
    writer = _write_zip if archive_format == "zip" else _write_tar_gz
    try:
        with _atomic(dest) as fh:
            writer(fh, entries, mtime)
    except OSError as exc:
        raise OutputError(f"cannot write the bundle: {exc.strerror or exc}", path=dest) from exc


def _write_zip(fh: IO[bytes], files: list[BundleFile], mtime: int) -> None:
    date_time = time.gmtime(max(mtime, ZIP_EPOCH))[:6]
    with zipfile.ZipFile(fh, "w") as zf:
        for f in files:
            info = zipfile.ZipInfo(f.path, date_time=date_time)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so external_attr carries the mode bits below
            info.external_attr = (stat.S_IFREG | FILE_MODE) << 16
            with f.open() as src, \
                    zf.open(info, "w", force_zip64=f.size >= zipfile.ZIP64_LIMIT) as out:
                shutil.copyfileobj(src, out, 1 << 20)


def _write_tar_gz(fh: IO[bytes], files: list[BundleFile], mtime: int) -> None:
    # filename="" keeps the temporary file's name out of the gzip header
    with gzip.GzipFile(filename="", mode="wb", fileobj=fh, compresslevel=9, mtime=mtime) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for f in files:
            info = tarfile.TarInfo(f.path)
            info.size, info.mtime, info.mode = f.size, mtime, FILE_MODE
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with f.open() as src:
                tar.addfile(info, src)


@contextlib.contextmanager
def _atomic(dest: Path) -> Iterator[IO[bytes]]:
    """A temporary file beside ``dest``, renamed over it on success and removed on failure."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w+b") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)  # mkstemp made it private; a bundle is not
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
