"""Can this LiteRT runtime run these TFLite operator versions? Answered from data, not guessed.

A converter writes each operator with a version; a runtime built before that version existed
refuses the whole file ("Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'").
``tflite_op_versions.json`` (its ``about`` says where every number comes from) holds:

* ``min_runtime``: (operator, version) -> the oldest TensorFlow / tflite-runtime release that
  runs it. Those packages share TensorFlow's numbering, so a declared "2.14" compares directly.
* ``ai_edge_litert``: per operator, the highest version each ai-edge-litert release registers.
  That package numbers its releases on its own (1.x, 2.x), so it gets its own table.

An operator version missing from the data is unknown, not refused (that is also what the
converter does when it computes ``min_runtime_version``).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

#: packages numbered like TensorFlow: the min_runtime table applies to them directly
TF_NUMBERED = ("tflite-runtime", "tensorflow", "tensorflow-cpu")


def version_key(version: str) -> tuple[int, ...]:
    """"2.14" -> (2, 14, 0): missing parts are zero, so "2.14" sorts as 2.14.0."""
    parts = [int(p) for p in version.split(".")[:3] if p.isdigit()]
    return tuple(parts + [0] * (3 - len(parts)))


@functools.cache
def _data() -> dict:
    return json.loads(Path(__file__).with_name("tflite_op_versions.json").read_text())


def op_problems(ops: dict[str, list[int]], package: str, version: str) -> list[str]:
    """Why ``package`` ``version`` cannot run these operator versions ([] when it can)."""
    if package in TF_NUMBERED:
        return _tf_numbered(ops, package, version)
    if package == "ai-edge-litert":
        return _ai_edge_litert(ops, version)
    return []


def metadata_problem(min_runtime_version: str | None, package: str, version: str) -> str | None:
    """The file's own ``min_runtime_version`` against a TensorFlow-numbered runtime."""
    if not min_runtime_version or package not in TF_NUMBERED:
        return None
    if version_key(min_runtime_version) > version_key(version):
        return (f"the file's min_runtime_version is {min_runtime_version}, newer than "
                f"{package} {version}")
    return None


def _tf_numbered(ops: dict[str, list[int]], package: str, version: str) -> list[str]:
    table = _data()["min_runtime"]
    have = version_key(version)
    problems = []
    for op, versions in sorted(ops.items()):
        known = table.get(op, {})
        for v in versions:
            need = known.get(str(v))
            if need and version_key(need) > have:
                runs = [int(k) for k, rt in known.items() if version_key(rt) <= have]
                upto = f"it runs {op} up to v{max(runs)}" if runs else f"it has no {op}"
                problems.append(f"{op} v{v} needs {package} >= {need}; {upto}")
    return problems


def _ai_edge_litert(ops: dict[str, list[int]], version: str) -> list[str]:
    data = _data()
    history: dict[str, list[list]] = data["ai_edge_litert"]
    releases = sorted({rel for changes in history.values() for rel, _ in changes},
                      key=version_key)
    have = version_key(version)
    known = [r for r in releases if version_key(r) <= have]
    if not known:  # older than any release the data covers: cannot tell
        return []
    release = known[-1]
    problems = []
    for op, versions in sorted(ops.items()):
        if op not in history and op not in data["min_runtime"]:
            continue  # a custom operator, or one the data does not know
        upto = max((mx for rel, mx in history.get(op, []) if version_key(rel) <=
                    version_key(release)), default=0)
        for v in versions:
            if v > upto:
                runs = f"it runs {op} up to v{upto}" if upto else f"it has no {op}"
                problems.append(f"{op} v{v} is newer than ai-edge-litert {version} knows; {runs}")
    return problems


def read_tflite(path: Path) -> tuple[dict[str, list[int]], str | None]:
    """(operator -> versions used, the ``min_runtime_version`` metadata) of a .tflite file."""
    from ai_edge_litert import schema_py_generated as schema

    from ..formats.tflite import TFLiteFormat

    ops = TFLiteFormat().inspect(path).details["operator_versions"]
    data = path.read_bytes()
    model = schema.Model.GetRootAs(data, 0)
    min_version = None
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == b"min_runtime_version" and entry.Buffer() < model.BuffersLength():
            raw = model.Buffers(entry.Buffer()).DataAsNumpy()
            if not isinstance(raw, int):  # an empty buffer reads as 0
                min_version = bytes(raw).rstrip(b"\0").decode("ascii", "replace") or None
    return ops, min_version
