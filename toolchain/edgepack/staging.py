"""Atomic output folders that survive ``kill -9``.

A build is assembled in a hidden sibling ``.NAME.tmp-PID-XXXXXXXX`` and published by swapping it
with ``NAME`` in one ``renameat2(RENAME_EXCHANGE)`` (Linux 3.15+); elsewhere by two renames
through ``.NAME.old-PID``. At every instant ``NAME`` is therefore either the previous complete
folder or the new complete one (with the fallback there is a moment with no ``NAME``, and the
old folder waits under ``.NAME.old-PID``).

A killed build cannot clean up after itself, so the policy is: hidden folders carry the pid
that made them; the next build of the same output (``clean_stale``) removes those whose process
is gone, and restores ``.NAME.old-PID`` to ``NAME`` when a kill fell between the fallback's two
renames. Folders of a live process (a concurrent build) are never touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import re
import shutil
import tempfile
from pathlib import Path

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def staging_dir(output: Path) -> Path:
    """A new private ``.NAME.tmp-PID-XXXXXXXX`` next to ``output``."""
    parent = output.resolve().parent
    return Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-{os.getpid()}-", dir=parent))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def stale(output: Path) -> list[Path]:
    """Hidden staging/old folders of ``output`` left by processes that no longer run."""
    parent = output.resolve().parent
    if not parent.is_dir():
        return []
    pattern = re.compile(rf"^\.{re.escape(output.name)}\.(?:tmp|old)-(\d+)(?:-.*)?$")
    found = []
    for entry in parent.iterdir():
        m = pattern.match(entry.name)
        if m and not _alive(int(m.group(1))):
            found.append(entry)
    return sorted(found)


def clean_stale(output: Path) -> list[Path]:
    """Apply the policy of the module doc; return what was removed or restored."""
    done = []
    out = output.resolve()
    for entry in stale(output):
        if ".old-" in entry.name and not out.exists():
            with contextlib.suppress(OSError):
                entry.rename(out)  # the previous complete build, put back
                done.append(entry)
                continue
        shutil.rmtree(entry, ignore_errors=True)
        done.append(entry)
    return done


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; False where the system cannot."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def publish(staging: Path, output: Path) -> None:
    """Put the finished ``staging`` folder at ``output``, replacing what is there atomically."""
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp made it private; a build folder is not
    if output.exists() and _exchange(staging, output):
        shutil.rmtree(staging, ignore_errors=True)  # now holds the previous build
        return
    old = None
    if output.exists():
        old = output.with_name(f".{output.name}.old-{os.getpid()}")
        output.rename(old)
    staging.rename(output)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def out_of_space(folder: Path, margin_bytes: int = 1 << 20) -> bool:
    """Whether the filesystem of ``folder`` is (nearly) full: a tool that failed to write
    there (OpenVINO says "iostream error", converters say less) failed because of it."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < margin_bytes
