"""The package keeps its shape: no import cycles, and nothing imports a layer above its own.

Layers, highest first (docs/design.md). A module may import its own package and any lower
layer; imports inside functions count too (a lazy import is still a dependency). The runtime
adapters ship to devices, so they may import only numpy, the standard library and the few
modules the on-device runner carries.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "toolchain" / "edgepack"

#: highest first; each entry a layer of top-level modules and packages of edgepack
LAYERS: list[set[str]] = [
    {"cli"},
    {"api"},
    {"pipeline"},
    {"measure"},
    {"bundle"},
    {"report"},
    {"devices"},
    {"structural"},
    {"converters"},
    {"compress"},
    {"cache"},
    {"validate"},
    {"runtimes"},
    {"formats"},
    {"data", "config"},
    {"request", "errors", "signature", "quiet", "progress", "trust", "limits", "staging"},
]
#: what a runtime adapter may import at module level (beyond numpy and the stdlib)
RUNTIME_MAY_IMPORT = {"edgepack.runtimes", "edgepack.signature", "edgepack.errors",
                      "edgepack.quiet", "edgepack.limits"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path, module_level_only: bool = False) -> set[str]:
    """The edgepack modules ``name`` imports (resolved to modules that exist)."""
    tree = ast.parse(path.read_text())
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    nodes = list(ast.iter_child_nodes(tree)) if module_level_only else list(ast.walk(tree))
    if module_level_only:  # module level includes if/try blocks, not function bodies
        stack, nodes = nodes, []
        while stack:
            node = stack.pop()
            nodes.append(node)
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                stack.extend(ast.iter_child_nodes(node))
    for node in nodes:
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[:len(package) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{a.name}" for a in node.names]
            if any(t not in MODULES for t in targets):  # names from the module, not submodules
                targets.append(base)
        else:
            continue
        for target in targets:
            while target and target not in MODULES and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in MODULES and target != name and target.startswith("edgepack."):
                found.add(target)
    return found


def _layer(module: str) -> int | None:
    top = module.split(".")[1] if "." in module else None
    return next((i for i, layer in enumerate(LAYERS) if top in layer), None)


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def test_every_module_has_a_layer() -> None:
    missing = sorted({m.split(".")[1] for m in MODULES if m != "edgepack"
                      and _layer(m) is None})
    assert not missing, f"add these to LAYERS (and docs/design.md): {missing}"


def test_at_most_twelve_top_level_modules() -> None:
    top = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert len(top) <= 12, sorted(top)


def test_nothing_imports_upward() -> None:
    upward = sorted(f"{m} -> {t}" for m, targets in GRAPH.items() if m != "edgepack"
                    for t in targets
                    if _layer(t) is not None and _layer(m) is not None
                    and _layer(t) < _layer(m))
    assert not upward, "\n".join(upward)


def test_no_import_cycles() -> None:
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH.get(v, ()):
            if w == "edgepack":
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in GRAPH:
        if name not in index and name != "edgepack":
            visit(name)
    assert not cycles, cycles


@pytest.mark.parametrize("name", sorted(m for m in MODULES if m.startswith("edgepack.runtimes")))
def test_runtime_adapters_import_only_what_a_device_has(name: str) -> None:
    imported = _imports(name, MODULES[name], module_level_only=True)
    extra = {m for m in imported if not any(m == a or m.startswith(a + ".")
                                            for a in RUNTIME_MAY_IMPORT)}
    assert not extra, extra
    third_party = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import) and node.col_offset == 0:
            third_party |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.col_offset == 0 and not node.level:
            third_party.add((node.module or "").split(".")[0])
    allowed = {"numpy", "edgepack", "__future__", *sys.stdlib_module_names}
    assert third_party <= allowed, third_party - allowed


def test_the_runner_carries_every_edgepack_module_its_modules_import() -> None:
    """The board has only the runner zipapp: an edgepack import it does not carry fails there
    alone (a child-process helper moved to edgepack.limits once broke every board run). Module
    level only: the host-only adapters (torch, tensorflow) import their formats inside load."""
    from edgepack.devices.runner import runner_sources

    names = {"edgepack.devices.board" if arc == "__main__.py" else
             arc.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
             for arc in runner_sources()}
    imports = {name: _imports(name, MODULES[name], module_level_only=True) for name in names}
    missing = {name: sorted(imports[name] - names) for name in names if imports[name] - names}
    assert not missing, missing
