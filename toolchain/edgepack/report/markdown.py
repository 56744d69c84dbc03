"""Markdown: a build's report.md and ``edgepack compare --markdown``.

Plain text that reads well in a terminal, a pull request or a wiki: the headline table first,
then how each artifact was made and what was measured of it. The tables' cells come from
``tables`` and ``comparison``, the same ones the terminal and HTML show.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..validate.attempts import latency_trade
from ..validate.budget import BudgetVerdict
from ..validate.latency import LatencyStats
from .comparison import COLUMNS, Comparison, describe_eval, formatted, rows
from .formatting import fmt_bytes, fmt_num, fmt_pct
from .model import Artifact, Hop, Report
from .tables import device_lines, fallback_table, fidelity_lines, output_verdicts, summary_rows

#: the artifact summary's columns, in order
_SUMMARY = ["artifact", "role", "precision", "size", "smaller", "max_abs_err", "cosine",
            "top1_agree", "top1_acc", "p50_ms", "p90_ms", "speedup", "budget"]
_STRUCTURAL = ["stage", "file", "params", "non-zero", "MACs", "size", "zipped", "top1_agree",
               "top1_acc", "p50_ms"]


def to_markdown(report: Report) -> str:
    """report.md of a build."""
    lines = [*_header(report), *_facts(report), *_structural(report.structural),
             *_summary(report)]
    for a in report.artifacts:
        lines += _artifact(a)
    lines += [*_skipped(report), *_footer(report)]
    return "\n".join(lines)


def comparison_markdown(c: Comparison) -> str:
    """``edgepack compare --markdown``: the table and what it was measured on."""
    lines = [f"# edgepack compare: {c.title}", "",
             f"- Source model: `{c.source.get('path', '')}` ({c.source.get('format', '')})",
             f"- Fidelity and accuracy measured on: {describe_eval(c)}"]
    if c.source_accuracy and c.source_accuracy.top1 is not None:
        lines.append(f"- Source model top-1 accuracy: {fmt_pct(c.source_accuracy.top1)}")
    lines += [f"- Note: {n}" for n in c.notes]
    lines += ["", *_table(COLUMNS, [[t[k] for k in COLUMNS] for t in map(formatted, rows(c))])]
    lines += ["", "`speedup`: p50 of the fp32 artifact timed by the same runtime / this p50. "
                  "`smaller`: size of the fp32 artifact of the same format / this size. "
                  "Fidelity compares each artifact's first output with the source model's.", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ the build

def _table(headers: Sequence[str], cells: list[list[str]], indent: str = "") -> list[str]:
    return [indent + "| " + " | ".join(headers) + " |", indent + "|" + "---|" * len(headers),
            *(indent + "| " + " | ".join(r) + " |" for r in cells)]


def _header(report: Report) -> list[str]:
    """Title, verdict and warnings."""
    m, t = report.model, report.target
    lines = [f"# edgepack build: {m.name} for {t.name}", "",
             f"**Status: {'PASSED' if report.passed else 'FAILED the accuracy budget'}**", ""]
    lines += [f"> **WARNING:** {w}" for w in report.warnings]
    return lines + ([""] if report.warnings else [])


def _facts(report: Report) -> list[str]:
    """What was built from what, for which target, on which data."""
    m, t, p, ev = report.model, report.target, report.profile, report.eval
    lines = [
        f"- Model: `{m.path}` ({m.format}, {m.parameters:,} parameters, "
        f"{fmt_bytes(m.size_bytes)}, sha256 `{m.sha256[:16]}…`)",
        f"- Target: {t.name} — {t.title} ({t.arch})",
        f"- Profile: {p.name} — {p.title}",
        f"- Evaluation data: {ev.source} ({ev.samples} samples, "
        f"{'labelled' if ev.labelled else 'unlabelled'})",
    ]
    c = report.calibration
    lines.append(f"- Calibration data: {c.source} ({c.samples_used} of "
                 f"{c.samples_available} samples, seed {c.seed})" if c
                 else "- Calibration data: none")
    src = report.source_accuracy
    if src and src.top1 is not None:
        lines.append(f"- Source model top-1 accuracy: {fmt_pct(src.top1)}")
    if src and src.metric:
        lines.append(f"- Source model {src.metric}: {src.value:.6g}")
    if report.input_floor is not None:
        lines.append(f"- Input-rounding floor: {report.input_floor.summary()}")
    lines += [f"- Note: {n}" for n in report.notes]
    if report.step_cache is not None:
        lines.append(f"- Step cache: {report.step_cache['reused']} steps reused, "
                     f"{report.step_cache['built']} built")
    return lines


def _structural(stages: list[dict[str, Any]]) -> list[str]:
    """The structural passes' stages: what each did to size, accuracy and speed."""
    if not stages:
        return []
    cells = [[s["stage"], s["file"], f"{s['parameters']:,}", f"{s['nonzero_parameters']:,}",
              f"{s['macs']:,}" if s.get("macs") is not None else "-",
              fmt_bytes(s["size_bytes"]),
              fmt_bytes(s["zipped_bytes"]) if s.get("zipped_bytes") is not None else "-",
              fmt_pct(s["top1_agreement"]), fmt_pct(s["top1_accuracy"]),
              fmt_num(s["p50_ms"], ".3f")] for s in stages]
    return ["", "## Structural passes (on the source, before conversion)", "",
            *_table(_STRUCTURAL, cells),
            *(f"- Note ({s['stage']}): {n}" for s in stages for n in s["notes"])]


def _summary(report: Report) -> list[str]:
    """The headline table, one row per artifact."""
    cells = [[r[h] for h in _SUMMARY] for r in summary_rows(report)]
    return ["", "## Artifacts", "", *_table(_SUMMARY, cells), "",
            "`smaller` and `speedup` are relative to the fp32 reference of the same format; "
            "fidelity compares each artifact with the source model on the evaluation inputs."]


def _skipped(report: Report) -> list[str]:
    if not report.skipped:
        return []
    return ["", "## Not built", "",
            *(f"- {s.format} {s.precision}: {s.reason}" for s in report.skipped)]


def _footer(report: Report) -> list[str]:
    """Tool versions, and who built it where and when."""
    return ["", "## Tools", "", *(f"- {k}: {v}" for k, v in sorted(report.tools.items())),
            "", f"Built by edgepack {report.edgepack_version} on {report.created} "
                f"({report.host.get('platform', '')}, {report.host.get('cpu', '')})", ""]


# ----------------------------------------------------------------------------- an artifact

def _artifact(a: Artifact) -> list[str]:
    """One artifact: its path, size, fidelity, accuracy, latency, budget and fallback."""
    lines = ["", f"### {a.file} ({a.role}, {a.precision})", "",
             f"- Conversion path: {a.conversion_path}", *(_hop(h) for h in a.path),
             f"- Size: {a.size_bytes:,} bytes, sha256 `{a.sha256}`",
             *("  " * depth + f"- {text}" for f in a.fidelity
               for depth, text in fidelity_lines(f))]
    acc = a.accuracy
    if acc and acc.top1 is not None:
        lines.append(f"- Accuracy: top-1 {fmt_pct(acc.top1)}, top-5 {fmt_pct(acc.top5)} on "
                     f"{acc.samples} labelled samples")
    if acc and acc.metric:
        lines.append(f"- Metric {acc.metric}: {acc.value:.6g} on {acc.samples} labelled samples")
    if a.latency:
        lines.append(_latency(a.latency))
    if a.budget:
        lines += _budget(a.budget)
    lines += _fallback(a)
    lines += ["  " * depth + f"- {text}" for run in a.devices
              for depth, text in device_lines(run)]
    return lines + [f"- Note: {n}" for n in a.notes]



def _hop(h: Hop) -> str:
    """One conversion hop and how its file compared with the source right after it."""
    check = "" if h.check_max_abs_error is None else (
        f", checked vs source on {h.check_samples} samples: max abs error "
        f"{h.check_max_abs_error:.3g}, cosine {h.check_cosine:.6f}"
        + ("" if h.check_top1_agreement is None
           else f", top-1 agreement {fmt_pct(h.check_top1_agreement)}"))
    return (f"  - {h.src} -> {h.dst}: {h.tool} ({h.tool_version}), {h.seconds:.2f} s{check}"
            + (" (from the step cache)" if h.cached else ""))


def _latency(lt: LatencyStats) -> str:
    return (f"- Host latency ({lt.runtime_version}, {lt.threads} threads, batch {lt.batch}, "
            f"{lt.warmup} warm-up + {lt.runs} runs, own process): p50 {lt.p50_ms:.3f} ms, "
            f"p90 {lt.p90_ms:.3f} ms, p99 {lt.p99_ms:.3f} ms, mean {lt.mean_ms:.3f} ± "
            f"{lt.std_ms:.3f} ms; load {lt.load_ms:.1f} ms, first inference "
            f"{lt.first_inference_ms:.2f} ms"
            + (f", peak RSS {lt.peak_rss_mb:.0f} MB" if lt.peak_rss_mb else "")
            + (" (from the step cache, not measured again)" if lt.cached else ""))


def _budget(b: BudgetVerdict) -> list[str]:
    """The verdict, each limit's worst reading, then each output's checks when several."""
    per_output = output_verdicts(b)
    lines = [f"- Budget ({b.profile}): {'passed' if b.passed else 'FAILED'}"]
    for c in b.checks:
        where = f" (worst: `{c.output}`)" if per_output and c.output else ""
        lines.append(f"  - {c.name}: {c.reading()} {c.outcome()}{where}"
                     + (f"; {c.caveat()}" if c.caveat() else ""))
    if per_output:
        lines += ["  - per output:", *(f"    - {line}" for line in per_output)]
    return lines + [f"  - budget entry `{k}` names no output of the model and no role"
                    for k in b.unmatched]


def _fallback(a: Artifact) -> list[str]:
    """The accuracy fallback's attempts, as a table indented under the artifact."""
    headers, cells = fallback_table(a)
    if not cells:
        return []
    trade = latency_trade(a.fallback)
    return ["- Accuracy fallback:", "", *_table(headers, cells, indent="  "), "",
            *([f"  - shipped attempt: {trade}", ""] if trade else [])]
