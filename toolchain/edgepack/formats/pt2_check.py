"""Read a ``.pt2`` (torch.export) archive without loading it, and tell whether torch can load
and run it without running anything but the graph's computation.

``torch.export.load`` is not a data reader: it unpickles weights and constants marked
``use_pickle`` (and retries the sample inputs with full pickle when the safe unpickler
refuses them), ``sympify``s (``eval``s) every shape expression, ``exec``s the guard code, loads
AOTInductor libraries, and the graph may call any torch function (``torch.save``,
``aten.from_file``). It is safe only on archives that hold none of that, so ``unsafe_reason``
requires, of the bytes torch will be handed:

* a zip whose local entries match its central directory (``zip_layout``), every entry under one
  root folder and named as torch.export.save names them, nothing else (no AOTInductor, no
  legacy pickles);
* weights and tensor constants stored raw (``use_pickle`` false, no custom or opaque objects),
  sample inputs that torch's ``weights_only`` unpickler accepts;
* guard code only of the form torch writes (comparisons of inputs' sizes and strides with
  integers, checked on its syntax tree); every shape expression in a small grammar of sympy
  constructors (no attribute access, no ``Pow``, short numbers); every name a plain dotted
  name; no control characters in any text;
* every operator in ``safe_ops.json``: computation in the aten, prims and quantized_decomposed
  namespaces (minus the few that touch files) and a short list of Python arithmetic.
"""

from __future__ import annotations

import ast
import io
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ModelError
from .zip_layout import ZipLayoutError, check_layout

MODEL_JSON = "models/model.json"
WEIGHTS_CONFIG = "data/weights/model_weights_config.json"
CONSTANTS_CONFIG = "data/constants/model_constants_config.json"
SAMPLE_INPUTS = "data/sample_inputs/model.pt"
_FIXED = {"archive_format", "archive_version", "byteorder", ".data/version",
          ".data/serialization_id", MODEL_JSON, WEIGHTS_CONFIG, CONSTANTS_CONFIG, SAMPLE_INPUTS}
#: JSON documents and sample inputs larger than this are not read
MAX_DOCUMENT_BYTES = 256 << 20
_TOP_LEVEL = {"graph_module", "opset_version", "range_constraints", "schema_version",
              "verifiers", "torch_version", "guards_code"}
_PLAIN = re.compile(r"[A-Za-z0-9_.:\-]*")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029\x85]")
#: text fields free to hold any printable character (torch repr()s or only logs them)
_TEXT_KEYS = {"as_string", "as_strings", "in_spec", "out_spec", "torch_version"}
_EXPR_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<num>\d{1,20}(?:\.\d{1,20})?"
                         r"(?:e-?\d{1,3})?)|(?P<str>'[A-Za-z_][A-Za-z0-9_]*')"
                         r"|(?P<op>[-+*/(),=]))")
_EXPR_NAMES = frozenset({
    "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Mod", "Max", "Min", "Abs",
    "FloorDiv", "CeilToInt", "FloorToInt", "ModularIndexing", "Where", "PythonMod", "CleanDiv",
    "IntTrueDiv", "FloatTrueDiv", "ToFloat", "TruncToInt", "TruncToFloat", "OpaqueUnaryFn_sqrt",
    "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not", "floor", "ceiling",
    "true", "false", "oo", "True", "False", "integer", "positive", "negative", "nonnegative",
    "nonpositive", "nonzero", "real", "finite", "even", "odd", "commutative"})
_MAX_EXPR_CHARS = 1000


@dataclass(frozen=True)
class Pt2Archive:
    """A .pt2 file read as data: its bytes (what torch is handed), entry names relative to
    the archive's root folder, and its JSON documents."""

    data: bytes
    names: frozenset[str]
    program: dict[str, Any]
    weights: dict[str, Any]
    constants: dict[str, Any]
    sample_inputs: bytes


@cache
def _policy() -> dict[str, Any]:
    text = (resources.files("edgepack.formats") / "safe_ops.json").read_text("utf-8")
    return json.loads(text)["torch"]


def read_archive(path: Path) -> Pt2Archive:
    """The archive at ``path``, read once into memory, its layout and documents parsed; a
    ModelError when it is not a torch.export archive."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read: {exc.strerror}", path=path) from exc
    try:
        check_layout(io.BytesIO(data), len(data))
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            roots = {i.filename.split("/", 1)[0] for i in infos}
            if len(roots) != 1 or any("/" not in i.filename for i in infos):
                raise ModelError("not an ExportedProgram archive (its entries are not under one "
                                 "folder)", path=path)
            names = {i.filename.split("/", 1)[1]: i for i in infos}
            if len(names) != len(infos):  # readers differ on which copy they take
                raise ModelError("corrupt PyTorch archive: an entry name appears twice",
                                 path=path)
            if "archive_format" not in names:
                raise ModelError("not an ExportedProgram archive (no archive_format entry)",
                                 path=path, hint="save models with "
                                                 "torch.export.save(torch.export.export(...))")
            docs = {n: _document(zf, names.get(n), path)
                    for n in (MODEL_JSON, WEIGHTS_CONFIG, CONSTANTS_CONFIG, SAMPLE_INPUTS)}
    except ZipLayoutError as exc:
        raise ModelError(f"not a well-formed zip archive: {exc}", path=path,
                         hint="the file may be truncated or was modified") from exc
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ModelError(f"corrupt PyTorch archive: {exc}", path=path) from exc
    try:
        program, weights, constants = (json.loads(docs[n] or b"{}") for n in
                                       (MODEL_JSON, WEIGHTS_CONFIG, CONSTANTS_CONFIG))
    except (ValueError, RecursionError) as exc:
        raise ModelError(f"corrupt ExportedProgram: a JSON document does not parse ({exc})",
                         path=path) from exc
    if not isinstance(program, dict) or "graph_module" not in program:
        raise ModelError(f"not an ExportedProgram archive (no {MODEL_JSON})", path=path)
    return Pt2Archive(data, frozenset(names), program, weights, constants,
                      docs[SAMPLE_INPUTS] or b"")


def _document(zf: zipfile.ZipFile, info: zipfile.ZipInfo | None, path: Path) -> bytes | None:
    if info is None:
        return None
    if info.file_size > MAX_DOCUMENT_BYTES:
        raise ModelError(f"{info.filename} declares {info.file_size:,} bytes (limit "
                         f"{MAX_DOCUMENT_BYTES:,})", path=path)
    with zf.open(info) as fh:
        return fh.read(MAX_DOCUMENT_BYTES + 1)[:MAX_DOCUMENT_BYTES]


def unsafe_reason(archive: Pt2Archive) -> str | None:
    """None when torch can load ``archive.data`` and run its graph without running anything
    else (see the module doc); else one line saying the first thing that could."""
    for check in (_entries, _payloads, _sample_inputs, _program):
        reason = check(archive)
        if reason:
            return reason
    return None


def _entries(archive: Pt2Archive) -> str | None:
    listed = {f"data/weights/{m.get('path_name')}" for m in _configs(archive.weights)} | \
        {f"data/constants/{m.get('path_name')}" for m in _configs(archive.constants)}
    for name in sorted(archive.names):
        if name in _FIXED or name in listed or name.endswith("/"):
            continue
        if name.startswith("extra/") and _PLAIN.fullmatch(name[len("extra/"):]):
            continue
        return f"it holds {name!r}, which torch would load and edgepack cannot check"
    return None


def _configs(config: Any) -> list[dict[str, Any]]:
    entries = config.get("config", {}) if isinstance(config, dict) else {}
    return [m for m in entries.values() if isinstance(m, dict)] if isinstance(entries,
                                                                                dict) else []


def _payloads(archive: Pt2Archive) -> str | None:
    for what, config, prefix in (("weight", archive.weights, "weight_"),
                                 ("constant", archive.constants, "tensor_")):
        for meta in _configs(config):
            name = str(meta.get("path_name"))
            if meta.get("use_pickle") is not False or not name.startswith(prefix):
                return (f"a {what} ({name!r}) is a pickled object, which torch unpickles with "
                        "arbitrary code")
    return _strings(archive.weights, "weights config") or \
        _strings(archive.constants, "constants config")


def _sample_inputs(archive: Pt2Archive) -> str | None:
    """torch retries sample inputs its weights_only unpickler refuses with a full unpickler:
    they must pass the safe one."""
    if not archive.sample_inputs:
        return None
    import torch

    try:
        torch.load(io.BytesIO(archive.sample_inputs), weights_only=True)
    except Exception as exc:  # the safe unpickler's refusal, whatever its type
        return f"its sample inputs are not plain tensors ({str(exc).splitlines()[0][:120]})"
    return None


def _program(archive: Pt2Archive) -> str | None:
    program = archive.program
    unknown = sorted(set(program) - _TOP_LEVEL)
    if unknown:
        return f"its program has fields edgepack does not know ({', '.join(unknown)})"
    guards = program.get("guards_code") or []
    if not isinstance(guards, list):
        return "its guard code is not a list"
    for guard in guards:
        if not isinstance(guard, str) or not _harmless_guard(guard):
            return f"it holds guard code beyond size checks, which torch runs with exec() " \
                   f"({str(guard)[:60]!r})"
    return _strings({k: v for k, v in program.items() if k != "guards_code"}, "program")


_GUARD_NODES = (ast.Expression, ast.Compare, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not,
                ast.USub, ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.FloorDiv, ast.Mod,
                ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Load)
_GUARD_METHODS = {"size", "stride", "storage_offset", "dim"}


def _harmless_guard(code: str) -> bool:
    """A guard torch.export wrote: arithmetic comparisons of integers and of
    ``L['input'].size()[i]`` (stride, storage_offset, dim), nothing else. Checked on the
    syntax tree, which parsing builds without running anything."""
    if len(code) > _MAX_EXPR_CHARS:
        return False
    try:
        tree = ast.parse(code, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return _guard_ok(tree)


def _guard_ok(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return type(node.value) is int
    if isinstance(node, ast.Subscript):  # L['x'] or <size call>[0]
        index = node.slice
        if isinstance(node.value, ast.Name):
            return node.value.id == "L" and isinstance(index, ast.Constant) and \
                isinstance(index.value, str) and bool(_PLAIN.fullmatch(index.value))
        return isinstance(index, ast.Constant) and type(index.value) is int and \
            isinstance(node.value, ast.Call) and _guard_ok(node.value)
    if isinstance(node, ast.Call):  # L['x'].size()
        func = node.func
        return not node.args and not node.keywords and isinstance(func, ast.Attribute) and \
            func.attr in _GUARD_METHODS and isinstance(func.value, ast.Subscript) and \
            _guard_ok(func.value)
    if not isinstance(node, _GUARD_NODES):
        return False
    return all(_guard_ok(child) for child in ast.iter_child_nodes(node))


def _strings(doc: Any, where: str) -> str | None:
    """The first problem of any string in ``doc``: operators, expressions, names, text."""
    for key, value, in_text in _walk(doc):
        if key in ("target", "as_operator"):
            if not isinstance(value, str) or not _allowed_operator(value):
                return f"its graph calls {value!r}, which is not a known computation"
        elif key == "expr_str":
            problem = expression_problem(value)
            if problem:
                return f"a shape expression in its {where} {problem}"
        elif key in ("as_custom_obj", "custom_obj_values") and value:
            return "its graph holds a custom (TorchScript) object"
        elif isinstance(value, str):
            plain = in_text or key in _TEXT_KEYS
            if _CONTROL.search(value) if plain else not _PLAIN.fullmatch(value):
                return f"its {where} has a name or text edgepack does not accept ({value[:60]!r})"
    return None


def _walk(doc: Any, key: str = "", in_text: bool = False) -> Iterator[tuple[str, Any, bool]]:
    """(key, value, inside free text) for every value under ``doc``; dict keys are yielded as
    values too (they are names)."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield "", k, in_text
            if k in ("target", "as_operator", "expr_str", "as_custom_obj", "custom_obj_values"):
                yield k, v, in_text
            if k not in ("target", "as_operator", "expr_str"):
                yield from _walk(v, k, in_text or k == "metadata")
    elif isinstance(doc, list):
        for v in doc:
            yield from _walk(v, key, in_text)
    else:
        yield key, doc, in_text


def _allowed_operator(target: str) -> bool:
    policy = _policy()
    if target in policy["python_functions"]:
        return True
    parts = target.split(".")
    if len(parts) not in (4, 5) or parts[:2] != ["torch", "ops"]:
        return False
    namespace, op = parts[2], parts[3]
    return (namespace in policy["namespaces"] and f"{namespace}.{op}" not in policy["denied_ops"]
            and all(_PLAIN.fullmatch(p) and p for p in parts))


def expression_problem(expr: Any) -> str | None:
    """Why ``expr`` is not a harmless sympy expression (None when it is): only the names of
    ``_EXPR_NAMES``, quoted plain symbols, short numbers and arithmetic punctuation."""
    if not isinstance(expr, str) or len(expr) > _MAX_EXPR_CHARS:
        return "is too long"
    pos, depth = 0, 0
    while pos < len(expr.rstrip()):
        match = _EXPR_TOKEN.match(expr, pos)
        if match is None:
            return f"holds {expr[pos:pos + 20]!r}, outside the grammar edgepack accepts"
        if match["name"] and match["name"] not in _EXPR_NAMES:
            return f"names {match['name']!r}, which is not a sympy constructor edgepack accepts"
        depth += {"(": 1, ")": -1}.get(match["op"] or "", 0)
        if depth > 50 or depth < 0:
            return "nests too deep or is unbalanced"
        pos = match.end()
    if "**" in expr or "//" in expr:
        return "raises to a power or floor-divides"
    return None
