"""One table across formats and precisions: size, fidelity, accuracy, latency, speed-up.

A Comparison is what ``edgepack compare`` shows, whether it comes from a build's report.json
(``from_report``) or from artifacts measured against their source model (``measure/compare.py``).
Every rendering -- terminal, JSON, markdown, HTML -- takes its numbers from ``rows``, so they
cannot disagree.

Speed-up is relative to the fp32 artifact timed by the SAME runtime (an int8 TFLite against the
fp32 TFLite, both on LiteRT): across runtimes a ratio would mix the runtime with the precision.
"Smaller" is relative to the fp32 artifact of the same format.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..validate.accuracy import Accuracy
from ..validate.fidelity import OutputFidelity
from ..validate.latency import LatencyStats
from .formatting import fmt_bytes, fmt_num, fmt_pct
from .model import Report

#: the table's columns, in order, for every rendering
COLUMNS = ("artifact", "format", "precision", "runtime", "size", "smaller", "max_abs_err",
           "cosine", "top1_agree", "top1_acc", "p50_ms", "p90_ms", "speedup")


@dataclass
class Entry:
    """One artifact and what was measured of it."""

    file: str  # as the user knows it: relative to the build folder, or the path given
    format: str
    precision: str  # "fp32", "fp16", "int8", "dynamic-int8", or "?" when it cannot be told
    size_bytes: int
    role: str = ""  # in a build: "deliverable" or "reference"
    fidelity: list[OutputFidelity] = field(default_factory=list)
    accuracy: Accuracy | None = None
    latency: LatencyStats | None = None


@dataclass
class Comparison:
    title: str
    source: dict[str, Any]  # name, path, format of the model the artifacts are compared with
    eval: dict[str, Any]  # source, samples, labelled: the inputs fidelity was measured on
    entries: list[Entry]
    source_accuracy: Accuracy | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rows"] = rows(self)
        return d


def from_report(report: Report) -> Comparison:
    """The comparison a build already measured (nothing is run again)."""
    m, t, p = report.model, report.target, report.profile
    entries = [Entry(file=a.file, format=a.format, precision=a.precision,
                     size_bytes=a.size_bytes, role=a.role, fidelity=a.fidelity,
                     accuracy=a.accuracy, latency=a.latency) for a in report.artifacts]
    return Comparison(title=f"{m.name} for {t.name} (profile {p.name})",
                      source={"name": m.name, "path": m.path, "format": m.format},
                      eval=asdict(report.eval), entries=entries,
                      source_accuracy=report.source_accuracy, notes=list(report.warnings))


def speed_baseline(c: Comparison, e: Entry) -> Entry | None:
    """The fp32 entry timed by the same runtime as ``e`` (``e`` itself when it is fp32)."""
    if e.latency is None:
        return None
    return next((o for o in c.entries if o.precision == "fp32" and o.latency is not None
                 and o.latency.runtime == e.latency.runtime), None)


def size_baseline(c: Comparison, e: Entry) -> Entry | None:
    """The fp32 entry of the same format as ``e``."""
    return next((o for o in c.entries if o.precision == "fp32" and o.format == e.format), None)


def rows(c: Comparison) -> list[dict[str, Any]]:
    """One row of numbers per entry (None where not measured), keyed by COLUMNS."""
    out = []
    for e in c.entries:
        fid = e.fidelity[0] if e.fidelity else None  # the primary output
        lat = e.latency
        fast = speed_baseline(c, e)
        big = size_baseline(c, e)
        out.append({
            "artifact": e.file, "format": e.format, "precision": e.precision,
            "runtime": runtime_label(lat), "size": e.size_bytes,
            "smaller": big.size_bytes / e.size_bytes if big and e.size_bytes else None,
            "max_abs_err": fid.max_abs_error if fid else None,
            "cosine": fid.cosine if fid else None,
            "top1_agree": fid.top1_agreement if fid else None,
            "top1_acc": e.accuracy.top1 if e.accuracy else None,
            "p50_ms": lat.p50_ms if lat else None, "p90_ms": lat.p90_ms if lat else None,
            "speedup": fast.latency.p50_ms / lat.p50_ms
            if fast and fast.latency and lat and lat.p50_ms > 0 else None,
        })
    return out


def runtime_label(lat: LatencyStats | None) -> str:
    """"openvino (bf16)" when the runtime chose its own precision, else the runtime's name."""
    if lat is None:
        return "-"
    return lat.runtime + (f" ({lat.precision})" if lat.precision else "")


def formatted(row: dict[str, Any]) -> dict[str, str]:
    """A row of ``rows`` as the text every table shows."""
    return {
        "artifact": row["artifact"], "format": row["format"], "precision": row["precision"],
        "runtime": row["runtime"], "size": fmt_bytes(row["size"]),
        "smaller": "-" if row["smaller"] is None else f"{row['smaller']:.2f}x",
        "max_abs_err": fmt_num(row["max_abs_err"]), "cosine": fmt_num(row["cosine"], ".6f"),
        "top1_agree": fmt_pct(row["top1_agree"]), "top1_acc": fmt_pct(row["top1_acc"]),
        "p50_ms": fmt_num(row["p50_ms"], ".3f"), "p90_ms": fmt_num(row["p90_ms"], ".3f"),
        "speedup": "-" if row["speedup"] is None else f"{row['speedup']:.2f}x",
    }


def describe_eval(c: Comparison) -> str:
    e = c.eval
    labelled = "labelled" if e.get("labelled") else "unlabelled"
    return f"{e.get('source', '?')} ({e.get('samples', '?')} samples, {labelled})"

