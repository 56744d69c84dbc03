"""The build report's tables as text, shared by its renderings.

The artifact summary (markdown and the terminal), the accuracy fallback's attempts and each
output's verdict and measures (markdown and HTML) are computed once here, so two renderings of
one build show the same cells.
"""

from __future__ import annotations

from ..validate.budget import BudgetVerdict, OutputVerdict
from ..validate.fidelity import OutputFidelity
from .formatting import fmt_bytes, fmt_num, fmt_pct
from .model import Artifact, Report
from .parts import DeviceRun


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


def fallback_table(a: Artifact) -> tuple[list[str], list[list[str]]]:
    """The accuracy fallback's attempts as (headers, rows): what each changed or how many layers it
    kept in float or gave 16-bit activations, what it measured against the budget, its size relative
    to plain int8, its host latency where measured (plain int8 and the shipped attempt), and its
    fate; an attempt that started from cheap fixes that helped names them."""
    if not a.fallback:
        return [], []
    checks = list(dict.fromkeys(k for t in a.fallback for k in t.readings))
    plain = a.fallback[0].size_bytes
    headers = ["attempt", *checks, "size vs plain int8", "p50_ms", "result"]
    rows = []
    for i, t in enumerate(a.fallback):
        what = "plain int8" if i == 0 else ", ".join(
            w for w in (t.change, t.layers_said() if t.kept_float or t.int16_layers else None)
            if w)
        if t.based_on:
            what += f" (with {' and '.join(t.based_on)})"
        result = "rejected: " + t.rejected if t.rejected is not None else \
            "within budget" if t.passed else "over budget"
        rows.append([what, *(fmt_num(t.readings.get(c), ".4f") for c in checks),
                     f"{t.size_bytes / plain:.3f}x" if t.size_bytes and plain else "-",
                     fmt_num(t.p50_ms, ".3f"), result + (" (shipped)" if t.chosen else "")])
    return headers, rows


def output_verdicts(b: BudgetVerdict) -> list[str]:
    """One line per output with its checks and verdict, when the budget judged more than one
    thing (several outputs, or the channel groups of one); [] when the budget's own checks
    already say it all."""
    parts = sum(max(1, len({c.output for c in o.checks})) for o in b.outputs)
    return [_output_verdict(o) for o in b.outputs] if parts > 1 else []


def _output_verdict(o: OutputVerdict) -> str:
    if not o.checks:
        return f"`{o.output}` ({o.role}): no limit applies, measured only"
    checks = "; ".join(
        c.name + ("" if c.output == o.output else " " + (c.output or "")[len(o.output):])
        + f" {c.reading()} {c.outcome()}" for c in o.checks)
    return f"`{o.output}` ({o.role}): {'passed' if o.passed else 'FAILED'}: {checks}"


def device_lines(d: DeviceRun) -> list[tuple[int, str]]:
    """The artifact on one board (``--device``) as (depth, text): the verdict and its latency
    there, then how far each output was from the host's, then what failed."""
    lt = d.latency
    board = ", ".join(v for v in (d.facts.get("cpu"), d.runtime_version) if v)
    lines = [(0, f"On board {d.device} ({board}): {'passed' if d.passed else 'FAILED'}; "
                 f"p50 {lt.p50_ms:.3f} ms, p90 {lt.p90_ms:.3f} ms ({lt.threads} threads, "
                 f"{lt.runs} runs)" + (", EMULATED: not performance" if d.emulated else ""))]
    lines += [(1, f"`{f.name}`: max abs error {f.max_abs_error:.3g} from {d.compared_with} "
                  f"(tolerance {tol:.3g})")
              for f, tol in zip(d.fidelity, d.tolerances, strict=True)]
    return lines + [(1, text) for text in d.notes + d.failures]


def fidelity_lines(f: OutputFidelity) -> list[tuple[int, str]]:
    """An output's measures as (depth, text): the closeness of the whole and its role's
    readings, then each channel group's closeness one level down."""
    if f.mismatch:
        return [(0, f"Fidelity `{f.name}`: FAILED, cannot be compared: {f.mismatch}")]
    snr = "undefined" if f.snr_db is None else f"{f.snr_db:.1f} dB"
    agree = "" if f.top1_agreement is None else (
        f", top-1 agreement {fmt_pct(f.top1_agreement)}, top-5 overlap "
        f"{fmt_pct(f.top5_overlap)}")
    readings = "".join(f", {k.replace('_', ' ')} {v:.4f}" for k, v in f.readings.items())
    flat = f", {f.flat_samples} flat reference sample(s)" if f.flat_samples else ""
    lines = [(0, f"Fidelity `{f.name}` ({f.role + ', ' if f.role else ''}{f.samples} samples): "
             f"max abs error {f.max_abs_error:.3g}, mean abs error {f.mean_abs_error:.3g}, "
             f"cosine {f.cosine:.6f}, SNR {snr}"
             + ("" if f.range_error is None else f", range error {f.range_error:.3g}")
             + f"{flat}{agree}{readings}")]
    for g in f.groups:
        snr = "undefined" if g.snr_db is None else f"{g.snr_db:.1f} dB"
        lines.append((1, f"{g.name} (channels {g.channels}): max abs error "
                         f"{g.max_abs_error:.3g}, cosine {g.cosine:.6f}, SNR {snr}"
                         + ("" if g.range_error is None
                            else f", range error {g.range_error:.3g}")))
    return lines
