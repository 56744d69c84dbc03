"""The build report: what was built, by which path and tools, and every measured number.

One object feeds every rendering: ``report.json`` for machines, ``report.md`` for people (and the
terminal table is drawn from the same data), so the numbers can never disagree between them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..validate.accuracy import Accuracy
from ..validate.budget import BudgetVerdict
from ..validate.fidelity import OutputFidelity
from ..validate.latency import LatencyStats
from .formatting import fmt_bytes, fmt_num, fmt_pct

REPORT_SCHEMA_VERSION = 1


@dataclass
class Hop:
    src: str
    dst: str
    tool: str
    tool_version: str
    seconds: float
    #: the new file vs the source on the same samples, right after the hop (worst output)
    check_samples: int = 0
    check_max_abs_error: float | None = None
    check_cosine: float | None = None
    check_top1_agreement: float | None = None
    #: taken from the step cache (an earlier build made and checked the same file from the same
    #: input and settings); ``seconds`` is then what fetching it took
    cached: bool = False


@dataclass
class Artifact:
    role: str  # "deliverable" (what ships) or "reference" (fp32 of the same format, to compare)
    format: str
    precision: str
    file: str  # relative to the build folder
    size_bytes: int
    sha256: str
    path: list[Hop]
    signature: dict[str, Any]
    fidelity: list[OutputFidelity] = field(default_factory=list)
    accuracy: Accuracy | None = None
    latency: LatencyStats | None = None
    budget: BudgetVerdict | None = None
    notes: list[str] = field(default_factory=list)
    #: files that belong to the artifact: OpenVINO's .bin, a TFLite metadata sidecar
    extra_files: list[str] = field(default_factory=list)
    #: the accuracy fallback's attempts: layers kept in float and what each attempt measured
    fallback: list[dict[str, Any]] = field(default_factory=list)
    #: on-device runs (edgepack build --device): latency there and fidelity vs the host
    devices: list[dict[str, Any]] = field(default_factory=list)

    @property
    def conversion_path(self) -> str:
        if not self.path:
            return self.format
        return " -> ".join([self.path[0].src, *(h.dst for h in self.path)])


@dataclass
class Report:
    edgepack_version: str
    created: str
    model: dict[str, Any]
    target: dict[str, Any]
    profile: dict[str, Any]
    eval: dict[str, Any]
    calibration: dict[str, Any] | None
    tools: dict[str, str]
    host: dict[str, Any]
    artifacts: list[Artifact]
    source_accuracy: Accuracy | None = None
    output: str = ""  # the build folder, as the caller named it
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    #: structural passes on the source (structural/stages.py StageReport), the original first
    structural: list[dict[str, Any]] = field(default_factory=list)
    #: what the step cache gave this build: steps (hops, validations) "reused" and "built";
    #: None when it was built without the cache
    step_cache: dict[str, int] | None = None
    schema_version: int = REPORT_SCHEMA_VERSION

    @property
    def passed(self) -> bool:
        return all((a.budget is None or a.budget.passed) and all(d["passed"] for d in a.devices)
                   for a in self.artifacts)

    @property
    def deliverables(self) -> list[Artifact]:
        return [a for a in self.artifacts if a.role == "deliverable"]

    def reference_for(self, artifact: Artifact) -> Artifact | None:
        """The fp32 reference of the same format, which size and speed are compared with."""
        return next((a for a in self.artifacts
                     if a.role == "reference" and a.format == artifact.format), None)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = "passed" if self.passed else "failed"
        for a, src in zip(d["artifacts"], self.artifacts, strict=True):
            a["conversion_path"] = src.conversion_path
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        """The inverse of ``to_dict`` (e.g. report.json read back); see report_load.py."""
        from .load import report_from_dict

        return report_from_dict(d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False, default=_json_default)

    def write(self, folder: Path) -> None:
        from .html import to_html

        (folder / "report.json").write_text(self.to_json() + "\n", encoding="utf-8")
        (folder / "report.md").write_text(to_markdown(self), encoding="utf-8")
        (folder / "report.html").write_text(to_html(self), encoding="utf-8")


def _json_default(value: Any) -> Any:
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# ---------------------------------------------------------------------------------- rendering

def summary_rows(report: Report) -> list[dict[str, str]]:
    """One row per artifact with the headline numbers (shared by markdown and the terminal)."""
    rows = []
    for a in report.artifacts:
        ref = report.reference_for(a)
        fid = a.fidelity[0] if a.fidelity else None
        lat = a.latency
        speedup = "-"
        if ref is not None and ref.latency and lat and lat.p50_ms > 0:
            speedup = f"{ref.latency.p50_ms / lat.p50_ms:.2f}x"
        ratio = f"{ref.size_bytes / a.size_bytes:.2f}x" if ref and a.size_bytes else "-"
        rows.append({
            "artifact": a.file, "role": a.role, "precision": a.precision,
            "size": fmt_bytes(a.size_bytes), "smaller": ratio,
            "max_abs_err": fmt_num(fid.max_abs_error if fid else None),
            "cosine": fmt_num(fid.cosine if fid else None, ".6f"),
            "top1_agree": fmt_pct(fid.top1_agreement if fid else None),
            "top1_acc": fmt_pct(a.accuracy.top1 if a.accuracy else None),
            "p50_ms": fmt_num(lat.p50_ms if lat else None, ".3f"),
            "p90_ms": fmt_num(lat.p90_ms if lat else None, ".3f"),
            "speedup": speedup,
            "budget": "-" if a.budget is None else ("pass" if a.budget.passed else "FAIL"),
        })
    return rows


#: what the fallback's attempts record besides the budget's checks
_ATTEMPT_KEYS = ("change", "kept_float", "order", "passed", "size_bytes", "rejected", "chosen",
                 "p50_ms")


def fallback_table(a: Artifact) -> tuple[list[str], list[list[str]]]:
    """The accuracy fallback's attempts as (headers, rows): what each changed or how many
    layers it kept in float, what it measured against the budget, its size relative to plain
    int8, its host latency where measured (plain int8 and the shipped attempt), and its fate."""
    if not a.fallback:
        return [], []
    checks = list(dict.fromkeys(k for t in a.fallback for k in t if k not in _ATTEMPT_KEYS))
    plain = a.fallback[0].get("size_bytes") or 0
    headers = ["attempt", *checks, "size vs plain int8", "p50_ms", "result"]
    rows = []
    for i, t in enumerate(a.fallback):
        what = "plain int8" if i == 0 else t.get("change") or (
            f"first {len(t['kept_float'])} layer(s) in float" if t.get("order") == "first"
            else f"{len(t['kept_float'])} worst-ranked layer(s) in float")
        size = t.get("size_bytes")
        result = "rejected: " + t["rejected"] if "rejected" in t else \
            "within budget" if t.get("passed") else "over budget"
        rows.append([what, *(fmt_num(t.get(c), ".4f") for c in checks),
                     f"{size / plain:.3f}x" if size and plain else "-",
                     fmt_num(t.get("p50_ms"), ".3f"),
                     result + (" (shipped)" if t.get("chosen") else "")])
    return headers, rows


def to_markdown(report: Report) -> str:
    m, t, p = report.model, report.target, report.profile
    lines = [f"# edgepack build: {m['name']} for {t['name']}", ""]
    lines += [f"**Status: {'PASSED' if report.passed else 'FAILED the accuracy budget'}**", ""]
    for w in report.warnings:
        lines.append(f"> **WARNING:** {w}")
    if report.warnings:
        lines.append("")
    lines += [
        f"- Model: `{m['path']}` ({m['format']}, {m['parameters']:,} parameters, "
        f"{fmt_bytes(m['size_bytes'])}, sha256 `{m['sha256'][:16]}…`)",
        f"- Target: {t['name']} — {t['title']} ({t['arch']})",
        f"- Profile: {p['name']} — {p['title']}",
        f"- Evaluation data: {report.eval['source']} ({report.eval['samples']} samples, "
        f"{'labelled' if report.eval['labelled'] else 'unlabelled'})",
    ]
    if report.calibration:
        c = report.calibration
        lines.append(f"- Calibration data: {c['source']} ({c['samples_used']} of "
                     f"{c['samples_available']} samples, seed {c['seed']})")
    else:
        lines.append("- Calibration data: none")
    if report.source_accuracy and report.source_accuracy.top1 is not None:
        lines.append(f"- Source model top-1 accuracy: {fmt_pct(report.source_accuracy.top1)}")
    if report.source_accuracy and report.source_accuracy.metric:
        lines.append(f"- Source model {report.source_accuracy.metric}: "
                     f"{report.source_accuracy.value:.6g}")
    lines += [f"- Note: {n}" for n in report.notes]
    if report.step_cache is not None:
        lines.append(f"- Step cache: {report.step_cache['reused']} steps reused, "
                     f"{report.step_cache['built']} built")
    lines += _structural_markdown(report.structural)
    lines += ["", "## Artifacts", ""]
    rows = summary_rows(report)
    headers = ["artifact", "role", "precision", "size", "smaller", "max_abs_err", "cosine",
               "top1_agree", "top1_acc", "p50_ms", "p90_ms", "speedup", "budget"]
    lines.append("| " + " | ".join(headers) + " |")
    lines.append("|" + "---|" * len(headers))
    for r in rows:
        lines.append("| " + " | ".join(r[h] for h in headers) + " |")
    lines.append("")
    lines.append("`smaller` and `speedup` are relative to the fp32 reference of the same format; "
                 "fidelity compares each artifact with the source model on the evaluation inputs.")
    for a in report.artifacts:
        lines += ["", f"### {a.file} ({a.role}, {a.precision})", ""]
        lines.append(f"- Conversion path: {a.conversion_path}")
        for h in a.path:
            check = "" if h.check_max_abs_error is None else (
                f", checked vs source on {h.check_samples} samples: max abs error "
                f"{h.check_max_abs_error:.3g}, cosine {h.check_cosine:.6f}"
                + ("" if h.check_top1_agreement is None
                   else f", top-1 agreement {fmt_pct(h.check_top1_agreement)}"))
            lines.append(f"  - {h.src} -> {h.dst}: {h.tool} ({h.tool_version}), "
                         f"{h.seconds:.2f} s{check}" + (" (from the step cache)" if h.cached
                                                        else ""))
        lines.append(f"- Size: {a.size_bytes:,} bytes, sha256 `{a.sha256}`")
        for f in a.fidelity:
            snr = "undefined" if f.snr_db is None else f"{f.snr_db:.1f} dB"
            agree = "" if f.top1_agreement is None else \
                f", top-1 agreement {fmt_pct(f.top1_agreement)}, top-5 overlap " \
                f"{fmt_pct(f.top5_overlap)}"
            lines.append(f"- Fidelity `{f.name}` ({f.samples} samples): max abs error "
                         f"{f.max_abs_error:.3g}, mean abs error {f.mean_abs_error:.3g}, cosine "
                         f"{f.cosine:.6f}, SNR {snr}{agree}")
        if a.accuracy and a.accuracy.top1 is not None:
            lines.append(f"- Accuracy: top-1 {fmt_pct(a.accuracy.top1)}, top-5 "
                         f"{fmt_pct(a.accuracy.top5)} on {a.accuracy.samples} labelled samples")
        if a.accuracy and a.accuracy.metric:
            lines.append(f"- Metric {a.accuracy.metric}: {a.accuracy.value:.6g} on "
                         f"{a.accuracy.samples} labelled samples")
        if a.latency:
            lt = a.latency
            lines.append(
                f"- Host latency ({lt.runtime_version}, {lt.threads} threads, batch {lt.batch}, "
                f"{lt.warmup} warm-up + {lt.runs} runs, own process): p50 {lt.p50_ms:.3f} ms, "
                f"p90 {lt.p90_ms:.3f} ms, p99 {lt.p99_ms:.3f} ms, mean {lt.mean_ms:.3f} ± "
                f"{lt.std_ms:.3f} ms; load {lt.load_ms:.1f} ms, first inference "
                f"{lt.first_inference_ms:.2f} ms"
                + (f", peak RSS {lt.peak_rss_mb:.0f} MB" if lt.peak_rss_mb else "")
                + (" (from the step cache, not measured again)" if lt.cached else ""))
        if a.budget:
            lines.append(f"- Budget ({a.budget.profile}): "
                         f"{'passed' if a.budget.passed else 'FAILED'}")
            for c in a.budget.checks:
                lines.append(f"  - {c.name}: {c.reading()} {c.outcome()}"
                             + (f"; {c.caveat()}" if c.caveat() else ""))
        headers, rows = fallback_table(a)
        if rows:
            lines += ["- Accuracy fallback:", "", "  | " + " | ".join(headers) + " |",
                      "  |" + "---|" * len(headers)]
            lines += ["  | " + " | ".join(r) + " |" for r in rows]
            lines.append("")
        for n in a.notes:
            lines.append(f"- Note: {n}")
    if report.skipped:
        lines += ["", "## Not built", ""]
        lines += [f"- {s['format']} {s['precision']}: {s['reason']}" for s in report.skipped]
    lines += ["", "## Tools", ""]
    lines += [f"- {k}: {v}" for k, v in sorted(report.tools.items())]
    lines += ["", f"Built by edgepack {report.edgepack_version} on {report.created} "
                  f"({report.host.get('platform', '')}, {report.host.get('cpu', '')})", ""]
    return "\n".join(lines)


def _structural_markdown(stages: list[dict[str, Any]]) -> list[str]:
    """The structural passes' stages: what each did to size, accuracy and speed."""
    if not stages:
        return []
    lines = ["", "## Structural passes (on the source, before conversion)", "",
             "| stage | file | params | non-zero | MACs | size | zipped | top1_agree | top1_acc "
             "| p50_ms |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in stages:
        macs = f"{s['macs']:,}" if s.get("macs") is not None else "-"
        zipped = fmt_bytes(s["zipped_bytes"]) if s.get("zipped_bytes") is not None else "-"
        lines.append(f"| {s['stage']} | {s['file']} | {s['parameters']:,} | "
                     f"{s['nonzero_parameters']:,} | {macs} | {fmt_bytes(s['size_bytes'])} | "
                     f"{zipped} | "
                     f"{fmt_pct(s['top1_agreement'])} | {fmt_pct(s['top1_accuracy'])} | "
                     f"{fmt_num(s['p50_ms'], '.3f')} |")
    lines += [f"- Note ({s['stage']}): {n}" for s in stages for n in s["notes"]]
    return lines
