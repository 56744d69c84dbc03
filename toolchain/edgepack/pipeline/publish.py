"""Stage 8, publish: the output folder is checked before anything runs, the build is assembled
in a hidden staging folder beside it, and moved into place in one step when it is complete.
A failure at any point leaves no output folder behind (staging.py); a full disk, a quota or a
read-only location is said as such (exit 7).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from .. import staging as staging_mod
from ..errors import ConversionError, OutputError
from ..report.model import Report
from ..report.write import write_report
from .context import BuildContext

#: errors of a location that cannot take the build (reported as OutputError, exit 7)
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)
_FREE_SPACE = "free space there or choose another -o; nothing was left behind"


def check_output(ctx: BuildContext) -> None:
    """The output folder can be written (and replaced only with --force); hidden folders of
    killed builds of it are cleaned first."""
    out = ctx.output
    staging_mod.clean_stale(out)
    if out.exists() and not out.is_dir():
        raise OutputError("exists and is not a folder", path=out)
    if out.exists() and any(out.iterdir()) and not ctx.request.output.force:
        raise OutputError("output folder exists and is not empty", path=out,
                          hint="pass --force to replace it, or choose another -o")
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder's parent: {exc.strerror}",
                          path=parent) from exc
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError("not writable", path=parent,
                          hint="choose an output folder you can write with -o")


@contextlib.contextmanager
def staged(ctx: BuildContext) -> Iterator[Path]:
    """A private staging folder next to the output; removed (and a full disk said as such)
    when the build fails."""
    staging = staging_mod.staging_dir(ctx.output)
    try:
        yield staging
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if exc.errno in _NO_SPACE:  # disk full, quota, read-only: say where, exit 7
            where = exc.filename or ctx.output.resolve().parent
            raise OutputError(f"cannot write the build: {exc.strerror}", path=where,
                              hint=_FREE_SPACE) from exc
        raise
    except ConversionError as exc:  # a converter that could not write its file
        shutil.rmtree(staging, ignore_errors=True)
        parent = ctx.output.resolve().parent
        if staging_mod.out_of_space(parent):
            raise OutputError(f"cannot write the build: No space left on device ({exc})",
                              path=parent, hint=_FREE_SPACE) from exc
        raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def publish(ctx: BuildContext, report: Report, staging: Path) -> None:
    """Write the report into the finished folder and move it into place (an old one is
    swapped out, then removed)."""
    write_report(report, staging)
    staging_mod.publish(staging, ctx.output)
