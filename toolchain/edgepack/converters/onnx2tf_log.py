"""What onnx2tf says when it fails: the ONNX node, the root cause, and its whole log kept.

onnx2tf raises TensorFlow's exception for the op it was building and prints, in its own log,
which ONNX node that op came from ("onnx_op_name: ..."). The error a user gets is one line:
the node, the root cause (converters/root_cause.py) and the path of a file holding onnx2tf's
full log; ``--debug`` prints that log too (it rides on the exception as a note).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ConversionError
from .base import failure_detail

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_NODE = re.compile(r"onnx_op_name:\s*(\S+)")
#: the most of the log a --debug traceback shows (the file holds all of it)
NOTE_LINES = 200
#: what a user can do when onnx2tf fails at control flow: it builds every branch of an If
#: (and the body of a Loop or Scan) as TensorFlow ops on the shapes it sees, so a branch
#: meant for other inputs (another sample rate, another rank) breaks the graph
CONTROL_FLOW = ("If", "Loop", "Scan")
CONTROL_FLOW_ADVICE = ("onnx2tf builds every branch of control flow, so export the model "
                       "without {op} on its inputs (the branch fixed at export, e.g. one "
                       "sample rate)")


def failed_node(log: str) -> str | None:
    """The ONNX node onnx2tf names in its error report, None when it names none."""
    found = _NODE.findall(_ANSI.sub("", log))
    if not found:
        return None
    # onnx2tf writes a leading "/" of a node name (torch's names) as "wa/"
    return "/" + found[-1][3:] if found[-1].startswith("wa/") else found[-1]


def onnx2tf_failed(what: str, exc: BaseException, log: str, src: Path, stem: str,
                   graph: Path) -> ConversionError:
    """The one-line error for an onnx2tf failure on ``graph`` (the copy it read, made from
    ``src``): the node it names, the root cause, and a file with its full log."""
    text = _ANSI.sub("", log)
    node = failed_node(text)
    op = _op_type(graph, node) if node else None
    where = f" at ONNX node '{node}'" + (f" ({op})" if op else "") if node else ""
    kept = keep_log(text, f"onnx2tf-{stem}") if text.strip() else None
    advice = f"; {CONTROL_FLOW_ADVICE.format(op=op)}" if op in CONTROL_FLOW else ""
    failure = ConversionError(f"{what} failed{where}: {failure_detail(exc, text)}{advice}",
                              path=src, hint=f"full onnx2tf log: {kept}" if kept else None)
    if text.strip():
        failure.add_note("onnx2tf's log:\n" + "\n".join(text.splitlines()[-NOTE_LINES:]))
    return failure


def keep_log(text: str, prefix: str) -> Path | None:
    """Write ``text`` to a new file in the temporary folder's edgepack-logs/; its path."""
    folder = Path(tempfile.gettempdir()) / "edgepack-logs"
    try:
        folder.mkdir(exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"{prefix}-", suffix=".log", dir=folder)
        with open(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError:
        return None
    return Path(name)


def _op_type(graph: Path, node: str) -> str | None:
    """The op type of the node called ``node`` in ``graph`` or its subgraphs (If, Loop), None
    when it is not there."""
    import onnx

    try:
        nodes = list(_nodes(onnx.load(str(graph), load_external_data=False).graph))
    except Exception:  # noqa: BLE001 - only a detail of an error message
        return None
    return next((n.op_type for n in nodes if n.name == node), None)


def _nodes(graph: Any) -> Iterator[Any]:
    for n in graph.node:
        yield n
        for attr in n.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                yield from _nodes(sub)
