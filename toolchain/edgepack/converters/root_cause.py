"""The root cause of a converter's exception, as one line.

TensorFlow wraps what went wrong in layers of context: "Exception encountered when calling layer
... (type TFOpLambda)." before it and "Call arguments received by layer ..." after it; graph
functions say "in user code:" followed by a traceback of the converter's own source and only
then the error; runtime errors carry "{{function_node ...}}" and "[[{{node ...}}]]" markers. The
first line of such a text says nothing; this keeps the last paragraph that is not context.
"""

from __future__ import annotations

import re

#: context lines that never say what went wrong
_CONTEXT = re.compile(r"^(Exception encountered when calling layer .*|in user code:|"
                      r"Traceback \(most recent call last\):|During handling of .*|"
                      r"The above exception was the direct cause .*)$")
#: TensorFlow's graph-node markers, noise in a message for people
_MARKERS = re.compile(r"\s*\[\[.*?\]\]|\{\{function_node [^}]*\}\}\s*|\s*\[Op:[^\]]*\]|"
                      r"\s+for '\{\{node [^']*'(?= with)")
#: the most of a cause kept in a message
LIMIT = 400


def root_cause(exc: BaseException) -> str:
    """``ExceptionType: what went wrong`` in one line, context and markers dropped."""
    text = cause_text(str(exc))
    name = type(exc).__name__
    return f"{name}: {text}" if text and not text.startswith(f"{name}:") else text or name


def cause_text(text: str) -> str:
    """The last paragraph of ``text`` that is not context, on one line (at most LIMIT chars)."""
    text = text.split("Call arguments received by", 1)[0]
    paragraphs: list[list[str]] = [[]]
    skip_code = False
    for raw in text.splitlines():
        line = raw.strip()
        if skip_code and line:  # the source line under a traceback's 'File ...' line
            skip_code = False
            continue
        if line.startswith('File "'):
            skip_code = True
            continue
        if not line or _CONTEXT.match(line):
            paragraphs.append([])
            continue
        paragraphs[-1].append(line)
    kept = [p for p in paragraphs if p]
    cause = " ".join(kept[-1]) if kept else ""
    cause = _MARKERS.sub("", cause).strip()
    return cause if len(cause) <= LIMIT else cause[:LIMIT - 3] + "..."
