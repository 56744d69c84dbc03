"""What this machine can convert and run: every converter edge and runtime adapter, whether
its tool is here (with versions), and what to install where it is not (``edgepack doctor``).

Nothing is imported to find out: modules are looked up (``importlib.util.find_spec``) and
versions read from the installed distributions' metadata, so the answer is instant and a
broken framework cannot stop it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import shlex
from dataclasses import asdict, dataclass
from typing import Any

from ..runtimes import RUNTIMES
from . import EDGES
from .provision import ToolSet, installed_version

READY = "ready"
FIRST_USE = "installed on first use"
MISSING = "missing"

#: the distribution each runtime adapter loads models with (a runtime lists no modules)
RUNTIME_PACKAGES = {"litert": "ai-edge-litert", "onnxruntime": "onnxruntime",
                    "openvino": "openvino", "tensorflow": "tensorflow-cpu", "keras": "keras",
                    "torch": "torch"}
#: modules whose distribution has another name, for one that is not installed
MODULE_DISTS = {"tensorflow": "tensorflow-cpu"}


@dataclass
class EdgeStatus:
    """One converter edge here."""

    src: str
    dst: str
    tool: str
    state: str  # READY, FIRST_USE or MISSING
    versions: list[str]  # "distribution version" of each module the tool needs, when present
    install: str | None  # the command that makes it ready; None when it is

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RuntimeStatus:
    """One runtime adapter here."""

    name: str
    formats: list[str]
    state: str
    version: str | None
    install: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def edge_statuses() -> list[EdgeStatus]:
    """Every edge of the converter graph, in registry order."""
    dists = importlib.metadata.packages_distributions()
    found = []
    for edge in EDGES:
        missing = [m for m in edge.requires if importlib.util.find_spec(m) is None]
        versions = [_version_of(m, dists) for m in edge.requires if m not in missing]
        if not missing:
            state, install = READY, None
        elif edge.tools is not None and _all_provided(missing, edge.tools, dists):
            state, install = FIRST_USE, shlex.join(edge.tools.command(edge.tools.missing()))
        else:
            state, install = MISSING, pip_install([_dist_of(m, dists) for m in missing])
        found.append(EdgeStatus(edge.src, edge.dst, edge.tool, state,
                                [v for v in versions if v], install))
    return found


def runtime_statuses() -> list[RuntimeStatus]:
    """Every runtime adapter, in order of preference."""
    found = []
    for rt in RUNTIMES:
        here = rt.available()
        package = RUNTIME_PACKAGES.get(rt.name, rt.name)
        found.append(RuntimeStatus(rt.name, list(rt.formats), READY if here else MISSING,
                                   (rt.version() or None) if here else None,
                                   None if here else pip_install([package])))
    return found


def pip_install(dists: list[str]) -> str:
    """``pip install`` of ``dists`` at the versions edgepack pins (its own metadata)."""
    pins = _edgepack_pins()
    return shlex.join(["pip", "install", *(pins.get(_norm(d), d) for d in dists)])


def _all_provided(modules: list[str], tools: ToolSet, dists: dict[str, list[str]]) -> bool:
    """Whether installing ``tools`` brings every module in ``modules`` (all of onnx2tf's own:
    a module no pin names is a dependency the user must install)."""
    pinned = {_norm(r.split("==")[0]) for r in tools.requirements}
    return all(_norm(_dist_of(m, dists)) in pinned for m in modules)


def _dist_of(module: str, dists: dict[str, list[str]]) -> str:
    """The distribution that installs ``module`` (its own name when none here does)."""
    return dists.get(module, [MODULE_DISTS.get(module, module)])[0]


def _version_of(module: str, dists: dict[str, list[str]]) -> str | None:
    for dist in dists.get(module, [_dist_of(module, dists)]):
        version = installed_version(dist)
        if version:
            return f"{dist} {version}"
    return None


def _edgepack_pins() -> dict[str, str]:
    """Normalised distribution name -> its requirement as edgepack declares it (extras too)."""
    try:
        declared = importlib.metadata.requires("edgepack") or []
    except importlib.metadata.PackageNotFoundError:
        return {}
    pins = {}
    for req in declared:
        spec = req.split(";")[0].strip()
        name = re.split(r"[<>=!~\[ ]", spec, maxsplit=1)[0]
        pins.setdefault(_norm(name), spec.replace(" ", ""))
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
