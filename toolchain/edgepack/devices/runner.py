"""The self-contained runner the board executes: a zipapp of edgepack's numpy-only modules.

What goes in is exactly what ``board.py`` needs: the package root (lazy, stdlib only), errors,
signature, quiet, limits (the child-process waits), every runtime adapter and the latency
validator (outputs are compared on the host). Each of them imports only numpy and the standard
library at module level (their frameworks only inside ``load``), so the board needs python3,
numpy and one runtime, and nothing is installed there. The archive is deterministic (sorted,
fixed timestamps): the same sources give the same bytes.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
#: modules of the edgepack package the runner carries (paths relative to the package)
MODULES = ("__init__.py", "errors.py", "signature.py", "quiet.py", "limits.py",
           "validate/__init__.py", "validate/latency.py")
_EPOCH = (1980, 1, 1, 0, 0, 0)


def runner_sources() -> dict[str, Path]:
    """Archive name -> source file, ``__main__.py`` included."""
    files = {f"edgepack/{m}": PACKAGE / m for m in MODULES}
    for adapter in sorted((PACKAGE / "runtimes").glob("*.py")):
        files[f"edgepack/runtimes/{adapter.name}"] = adapter
    files["__main__.py"] = PACKAGE / "devices" / "board.py"
    return files


def build_runner(dest: Path) -> Path:
    """Write the runner zipapp to ``dest`` (a file path) and return it."""
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, source in sorted(runner_sources().items()):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, source.read_bytes())
    return dest
