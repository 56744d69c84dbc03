"""Read a build's report.json back into a Report.

``compare`` (and anything else that works from a finished build) needs the same typed objects
the build had in memory, not a dict: the renderings take a Report.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UsageError
from .model import Report


def load_report(path: str | Path) -> Report:
    """The Report in ``path``: a build folder, or its report.json."""
    p = Path(path)
    file = p / "report.json" if p.is_dir() else p
    if not file.is_file():
        raise UsageError("no report.json here: not an edgepack build folder", path=p,
                         hint="give the folder `edgepack build` wrote")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"not a readable report ({exc})", path=file) from None
    return Report.from_dict(data, source=file)
