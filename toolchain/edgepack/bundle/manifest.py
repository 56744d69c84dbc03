"""``manifest.json``: what a bundle contains, checked against the versioned JSON Schema shipped in
``edgepack/schemas/manifest-v<N>.json``.

The manifest is made from the build's report.json in two steps: ``describe`` states the model,
its tensors, runtime requirements and measured numbers (the documents in the bundle are rendered
from that description, so they cannot disagree with it); ``with_files`` then adds every file's
role, size and sha256, which covers the documents too. The encoding is canonical (sorted keys,
fixed indentation) so the same build always gives the same bytes, and so the same signature.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import IO, Any

MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"
MANIFEST_VERSION = 1
SCHEMA_RESOURCE = f"manifest-v{MANIFEST_VERSION}.json"
#: the device name of latency measured where the build ran (not on the target)
BUILD_HOST = "build host"

_DOCUMENT_FORMATS = {".md": "markdown", ".json": "json", ".html": "html", ".txt": "text"}


@dataclass(frozen=True)
class BundleFile:
    """One file of a bundle: where it goes, what it is, and its bytes (a file or in memory)."""

    path: str
    role: str
    format: str
    precision: str | None = None
    source: Path | None = None
    data: bytes | None = None

    def open(self) -> IO[bytes]:
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.source is not None
        return self.source.open("rb")

    @property
    def size(self) -> int:
        if self.data is not None:
            return len(self.data)
        assert self.source is not None
        return self.source.stat().st_size


def document(path: str, role: str, data: bytes) -> BundleFile:
    """A generated or copied document, its format named after its suffix."""
    return BundleFile(path, role, document_format(path), data=data)


def document_format(path: str, default: str = "text") -> str:
    """markdown, json, html or text after ``path``'s suffix; ``default`` for other suffixes."""
    return _DOCUMENT_FORMATS.get(Path(path).suffix, default)


def describe(report: dict[str, Any], version: str, layout: str, models: list[dict[str, Any]],
             labels_path: str | None) -> dict[str, Any]:
    """Everything the manifest says except the file list."""
    model, target, profile, evals = (report["model"], report["target"], report["profile"],
                                     report["eval"])
    calib = report.get("calibration")
    source_acc = report.get("source_accuracy") or {}
    return {
        "manifest_version": MANIFEST_VERSION,
        "bundle": {"name": model["name"], "version": version, "target": target["name"],
                   "layout": layout, "built": report["created"]},
        "source_model": {k: model[k] for k in ("name", "format", "sha256", "parameters",
                                                 "size_bytes")},
        "target": {"name": target["name"], "title": target["title"], "arch": target["arch"],
                   "runtimes": [{"name": r["name"], "version": str(r["version"])}
                                for r in target.get("runtimes", [])]},
        "profile": {k: profile[k] for k in ("name", "title", "precision", "budget")},
        "evaluation": {"data": evals["source"], "samples": evals["samples"],
                       "labelled": evals["labelled"], "source_top1": source_acc.get("top1")},
        "calibration": None if not calib else {
            "data": calib["source"], "samples_used": calib["samples_used"],
            "seed": calib.get("seed"), "method": calib.get("method")},
        "labels": None if labels_path is None else {"file": labels_path,
                                                    "count": len(model["labels"])},
        "models": models,
        "tools": {"edgepack": report["edgepack_version"], **report["tools"]},
        "warnings": list(report.get("warnings", [])),
    }


def model_entry(report: dict[str, Any], artifact: dict[str, Any], *, file: str, runtime: str,
                min_runtime_version: dict[str, dict[str, str]],
                validated_with: dict[str, str],
                operator_versions: dict[str, list[int]] | None,
                sidecars: list[str] | None = None) -> dict[str, Any]:
    """One model of the bundle: its tensors, its sidecar files, what runs it, and every number
    the build measured."""
    signature = artifact["signature"]
    entry: dict[str, Any] = {
        "file": file, "sidecars": sidecars or [], "role": artifact["role"],
        "format": artifact["format"],
        "precision": artifact["precision"], "runtime": runtime,
        "conversion_path": artifact["conversion_path"],
        "converters": [{"src": h["src"], "dst": h["dst"], "tool": h["tool"],
                        "version": h["tool_version"]} for h in artifact["path"]],
        "inputs": signature["inputs"], "outputs": signature["outputs"],
        "min_runtime_version": min_runtime_version, "validated_with": validated_with,
        "measured": _measured(report, artifact),
    }
    if operator_versions is not None:
        entry["operator_versions"] = operator_versions
    return entry


def _measured(report: dict[str, Any], artifact: dict[str, Any]) -> dict[str, Any]:
    acc, lat, budget = artifact.get("accuracy"), artifact.get("latency"), artifact.get("budget")
    host = report.get("host", {})
    return {
        "fidelity": [{"output": f["name"], "samples": f["samples"],
                      "max_abs_error": f["max_abs_error"], "mean_abs_error": f["mean_abs_error"],
                      "cosine": f["cosine"], "snr_db": f["snr_db"],
                      "top1_agreement": f["top1_agreement"]} for f in artifact["fidelity"]],
        "accuracy": None if not acc else {k: acc[k] for k in ("samples", "top1", "top5")},
        "latency": [] if not lat else [{
            "device": f"{BUILD_HOST}: {host.get('cpu', '?')} ({host.get('machine', '?')})",
            **{k: lat[k] for k in ("runtime_version", "threads", "batch", "runs", "p50_ms",
                                   "p90_ms", "p99_ms", "load_ms", "peak_rss_mb")}}],
        "budget": None if not budget else {
            "profile": budget["profile"], "passed": budget["passed"],
            "checks": [{**{k: c[k] for k in ("name", "limit", "value", "passed")},
                        "gating": c.get("gating", True),
                        **({"basis": c["basis"]} if c.get("basis") else {})}
                       for c in budget["checks"]]},
    }


def with_files(description: dict[str, Any], files: list[BundleFile]) -> dict[str, Any]:
    """The full manifest: the description plus every file's entry, sorted by path."""
    return {**description, "files": [file_entry(f) for f in sorted(files, key=lambda f: f.path)]}


def file_entry(f: BundleFile) -> dict[str, Any]:
    h = hashlib.sha256()
    size = 0
    with f.open() as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return {"path": f.path, "role": f.role, "format": f.format, "precision": f.precision,
            "size": size, "sha256": h.hexdigest()}


def encode(manifest: dict[str, Any]) -> bytes:
    """Canonical bytes: sorted keys, two-space indent, UTF-8, trailing newline."""
    return (json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
            + "\n").encode("utf-8")


@cache
def schema() -> dict[str, Any]:
    """The JSON Schema of this manifest version, as shipped inside the package."""
    text = (resources.files("edgepack") / "schemas" / SCHEMA_RESOURCE).read_text("utf-8")
    return json.loads(text)


def schema_errors(manifest: Any) -> list[str]:
    """Every way ``manifest`` breaks the schema, as ``where: what`` lines (empty: valid)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(map(str, e.path)))
    return [f"{_where(e.path)}: {e.message}" for e in errors]


def _where(path: Any) -> str:
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
    return text.lstrip(".") or "(top level)"
