"""Terminal rendering with rich: tables for people, drawn from the same objects as --json.

Imported only by CLI commands (never at start-up); nothing below ``cli/`` knows about a terminal.
Tables go to stdout; progress and warnings go to stderr on a duplicate of the original
descriptor, so they stay visible while a framework's own output is being captured (see quiet.py)
and never mix into piped stdout.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..formats.base import ModelInfo
from ..formats.prequantized import DESCRIBED
from ..progress import Progress
from ..report.formatting import fmt_bytes, fmt_num, fmt_pct
from ..report.model import Report
from ..report.tables import summary_rows

# Piped output (CI logs, files) gets a wide fixed width so tables are never cut to 80 columns.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def _stderr_console() -> Console:
    """A console on a duplicate of fd 2: still visible while quiet.py captures fd 2."""
    stream = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    return Console(file=stream, stderr=True, highlight=False)


class ConsoleProgress(Progress):
    """A spinner per long step, then a line with its duration; each exactly one line, so a
    narrow terminal never wraps them into fragments (default: stderr, see above)."""

    def __init__(self, quiet: bool = False, console: Console | None = None):
        self.quiet = quiet
        self.console = console or _stderr_console()

    @contextlib.contextmanager
    def step(self, text: str) -> Iterator[None]:
        if self.quiet:
            yield
            return
        t0 = time.perf_counter()
        with self.console.status(self._one_line(f"{text} …", reserved=2), spinner="dots"):
            yield
        took = f" ({time.perf_counter() - t0:.1f} s)"
        done = Text.assemble(("✓", "green"), " ", self._one_line(text, reserved=2 + len(took)),
                             (took, "dim"))
        self.console.print(done, soft_wrap=True)

    def _one_line(self, text: str, reserved: int) -> Text:
        """``text`` as it is (not markup), cut with an ellipsis on a terminal so that it and
        ``reserved`` cells fit its width; whole in a file or pipe, where nothing redraws."""
        line = Text(text)
        if self.console.is_terminal:
            line.truncate(max(self.console.width - reserved, 1), overflow="ellipsis")
        return line

    def warn(self, text: str) -> None:
        self.console.print(f"[bold yellow]WARNING:[/] {text}")

    def close(self) -> None:
        self.console.file.close()


def targets_table(entries: list[Any]) -> None:
    """``edgepack targets``: one row per target."""
    table = Table(title="edgepack targets", title_justify="left")
    for col in ("target", "aliases", "device", "arch", "formats", "runtimes", "default profile"):
        table.add_column(col)
    for e in entries:
        t = e.item
        table.add_row(t.name, ", ".join(t.aliases), t.title, t.arch, ", ".join(t.formats),
                      ", ".join(f"{r.name} {r.version}" for r in t.runtimes), t.default_profile)
    out.print(table)


def target_detail(entry: Any, catalog: Any) -> None:
    """``edgepack targets show``: everything one target says, and where it is defined."""
    t = entry.item
    profile = catalog.profiles.get(t.default_profile)
    table = Table(show_header=False, title=f"{t.name}: {t.title}", title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    d = t.device
    table.add_row("aliases", ", ".join(t.aliases) or "-")
    table.add_row("device", f"{d.vendor} {d.soc}".strip())
    table.add_row("cpu", f"{d.cpu} ({d.cores} cores)")
    table.add_row("accelerator", d.accelerator)
    table.add_row("arch", f"{t.arch} ({', '.join(t.isa)})" if t.isa else t.arch)
    table.add_row("os", t.os or "-")
    for r in t.runtimes:
        extra = ", ".join(r.delegates + r.devices)
        text = r.version + (f" [{extra}]" if extra else "") + \
            (f" via {', '.join(r.packages)}" if r.packages else "")
        table.add_row(f"runtime {r.name}", escape(text))
    table.add_row("formats", ", ".join(t.formats))
    table.add_row("default profile", f"{t.default_profile} — {profile.title}")
    table.add_row("limits", f"{t.limits.memory_mb} MB RAM, {t.limits.storage_mb} MB storage, "
                            f"models up to {t.limits.max_model_mb} MB")
    table.add_row("constraints", ", ".join(f"{k}={v}" for k, v in
                                           t.constraints.model_dump().items()))
    table.add_row("defined in", str(entry.source))
    out.print(table)


def profiles_table(entries: list[Any]) -> None:
    """``edgepack profiles``: one row per profile."""
    table = Table(title="edgepack profiles", title_justify="left")
    for col in ("profile", "precision", "formats", "calibration", "budget", "title"):
        table.add_column(col)
    for e in entries:
        p = e.item
        cal = "-"
        if p.quantization and p.needs_calibration:
            c = p.quantization.calibration
            cal = f"{c.method}, {c.samples} samples"
        table.add_row(p.name, p.precision, ", ".join(p.formats), cal, _budget(p.budget), p.title)
    out.print(table)


def profile_detail(entry: Any, catalog: Any) -> None:
    """``edgepack profiles show``: one profile's recipe and budget, and where it is defined."""
    p = entry.item
    table = Table(show_header=False, title=f"{p.name}: {p.title}", title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("precision", p.precision)
    table.add_row("formats", ", ".join(p.formats))
    if p.quantization:
        q = p.quantization
        table.add_row("weights", "per-channel" if q.per_channel else "per-tensor")
        table.add_row("model I/O", q.io_dtype)
        table.add_row("activations (ONNX)", q.activations)
        if p.needs_calibration:
            c = q.calibration
            table.add_row("calibration", f"{c.method}, up to {c.samples} samples, seed {c.seed}")
    table.add_row("without calibration", p.fallback_without_calibration or "-")
    table.add_row("accuracy budget", _budget(p.budget))
    table.add_row("defined in", str(entry.source))
    out.print(table)


def _budget(b: Any) -> str:
    """An accuracy budget in one phrase, e.g. "top-1 drop <= 1 pt, cosine >= 0.99", a bound
    stated against the input-rounding floor as "cosine >= min(0.99, floor - 0.005)"."""
    parts = []
    if b.max_top1_drop is not None:
        parts.append(f"top-1 drop <= {100 * b.max_top1_drop:g} pt")
    margins = b.relative_to_floor.model_dump() if b.relative_to_floor else {}
    for name, value, reading in (("agreement", b.min_top1_agreement, "top1_agreement"),
                                 ("cosine", b.min_cosine, "cosine")):
        margin = margins.get(reading)
        if value is not None:
            parts.append(f"{name} >= " + (f"{value:g}" if margin is None
                                          else f"min({value:g}, floor - {margin:g})"))
    return ", ".join(parts) or "-"


#: the renderings of ``edgepack targets`` / ``edgepack profiles`` (a list, then one entry)
CATALOG_TABLES = {"targets": targets_table, "profiles": profiles_table}
CATALOG_DETAILS = {"targets": target_detail, "profiles": profile_detail}


def model_info(info: ModelInfo) -> None:
    """``edgepack inspect``: the summary line, inputs, outputs, operators and details."""
    quantized = f", quantized ({DESCRIBED[info.quantization]})" if info.quantization else ""
    out.print(f"[bold]{info.path}[/]  {info.format}, {info.parameters:,} parameters, "
              f"{fmt_bytes(info.size_bytes)} ({info.size_bytes:,} bytes){quantized}")
    for title, specs in (("inputs", info.signature.inputs), ("outputs", info.signature.outputs)):
        table = Table(title=title, title_justify="left")
        for col in ("name", "shape", "dtype", "layout", "quantization"):
            table.add_column(col)
        for s in specs:
            q = f"scale {s.quantization.scale:.6g}, zero point {s.quantization.zero_point}" \
                if s.quantization else "-"
            table.add_row(s.name, s.shape_str(), s.dtype, s.layout or "-", q)
        out.print(table)
    ops = Table(title="operators", title_justify="left")
    ops.add_column("operator")
    ops.add_column("count", justify="right")
    for name, count in sorted(info.operators.items(), key=lambda kv: (-kv[1], kv[0])):
        ops.add_row(name, str(count))
    out.print(ops)
    for key, value in info.details.items():
        if value not in ({}, [], "", None):
            out.print(f"[bold]{key}[/]: {value}")


def build_summary(report: Report) -> None:
    """``edgepack build``: warnings, one row per artifact, the paths taken and the verdict."""
    for w in report.warnings:
        out.print(f"[bold yellow]WARNING:[/] {w}")
    table = Table(title=f"{report.model.name} for {report.target.name} "
                        f"(profile {report.profile.name})", title_justify="left")
    cols = ["artifact", "role", "size", "smaller", "max_abs_err", "cosine", "top1_agree",
            "top1_acc", "p50_ms", "p90_ms", "speedup", "budget"]
    for col in cols:
        table.add_column(col, justify="left" if col in ("artifact", "role") else "right")
    for row in summary_rows(report):
        table.add_row(*(row[c] for c in cols))
    out.print(table)
    if report.source_accuracy and report.source_accuracy.top1 is not None:
        out.print(f"source model top-1 accuracy: {100 * report.source_accuracy.top1:.2f}%")
    for a in report.deliverables:
        out.print(f"path: {a.conversion_path}")
    for a in report.deliverables:
        for d in a.devices:
            verdict = "[green]outputs agree with the host's[/]" if d.passed \
                else f"[bold red]outputs differ from the host's[/]: {escape('; '.join(d.failures))}"
            out.print(f"on {d.device}: {a.file} p50 {d.latency.p50_ms:.3f} ms"
                      + (" (EMULATED: not performance)" if d.emulated else "")
                      + f", {verdict}")
    if report.step_cache and report.step_cache["reused"]:
        out.print(f"step cache: {report.step_cache['reused']} steps reused, "
                  f"{report.step_cache['built']} built (--no-cache runs every step)")
    if report.passed:
        status = "[green]passed[/]"
    elif all(a.budget is None or a.budget.passed for a in report.artifacts):
        status = "[bold red]FAILED on the device[/]"
    else:
        status = "[bold red]FAILED the accuracy budget[/]"
    out.print(f"{status}; report: {report.output}/report.md")


def bench_table(rows: list[tuple[str, Any]]) -> None:
    """``edgepack bench``: one row per (artifact, LatencyStats), times in milliseconds."""
    table = Table(title="edgepack bench (each artifact in its own process)",
                  title_justify="left")
    cols = ["artifact", "runtime", "device", "threads", "batch", "runs", "p50", "p90", "p99",
            "mean", "std", "min", "samples/s", "load", "first", "peak RSS MB"]
    for col in cols:
        table.add_column(col, justify="left" if col in ("artifact", "runtime", "device")
                         else "right")
    notes = set()
    names = [Path(a).name for a, _ in rows]
    if len(set(names)) == len(names):  # file names say it all; JSON keeps the paths
        rows = [(n, s) for n, (_, s) in zip(names, rows, strict=True)]
    for artifact, s in rows:
        device = s.device + (f" {s.precision}" if s.precision else "")
        if s.precision and not s.precision_hint and s.precision not in ("f32", "float32"):
            notes.add(f"{s.runtime} computed in {s.precision}, its default on this device; "
                      "--precision-hint f32 times the artifact's own precision")
        table.add_row(escape(artifact), escape(s.runtime_version), device,
                      str(s.threads or "default"), str(s.batch), str(s.runs),
                      *(f"{v:.3f}" for v in (s.p50_ms, s.p90_ms, s.p99_ms, s.mean_ms, s.std_ms,
                                              s.min_ms)),
                      f"{s.throughput_per_s:,.0f}", f"{s.load_ms:.1f}",
                      f"{s.first_inference_ms:.2f}", fmt_num(s.peak_rss_mb, ".0f"))
    out.print(table)
    out.print("[dim]times in ms; warm-up runs excluded; load and first inference timed "
              "separately[/]")
    for note in sorted(notes):
        out.print(f"[yellow]note:[/] {note}")


def compare_table(c: Any) -> None:
    """``edgepack compare``: the Comparison's rows (the same as its markdown and HTML)."""
    from ..report.comparison import COLUMNS, describe_eval, formatted, rows

    for note in c.notes:
        out.print(f"[bold yellow]WARNING:[/] {escape(note)}")
    table = Table(title=escape(c.title), title_justify="left")
    for col in COLUMNS:
        table.add_column(col, justify="left" if col in ("artifact", "format", "precision",
                                                        "runtime") else "right")
    for row in rows(c):
        text = formatted(row)
        table.add_row(*(escape(text[k]) for k in COLUMNS))
    out.print(table)
    out.print(f"source: {escape(str(c.source.get('path', '')))}; fidelity on "
              f"{escape(describe_eval(c))}")
    if c.source_accuracy and c.source_accuracy.top1 is not None:
        out.print(f"source model top-1 accuracy: {100 * c.source_accuracy.top1:.2f}%")
    out.print("[dim]speedup: vs the fp32 artifact in the same runtime; smaller: vs the fp32 "
              "artifact of the same format[/]")


def matrix_cell(cell: Any) -> None:
    """One line per finished cell, as they finish (the live view of a matrix build)."""
    mark = {"built": "[green]✓[/]", "cached": "[cyan]↺[/]", "up-to-date": "[cyan]=[/]",
            "over budget": "[yellow]![/]", "failed": "[red]✗[/]"}.get(cell.status, "?")
    err = _stderr_console()
    err.print(f"{mark} {cell.model} × {cell.target}: {cell.status} ({cell.seconds:.1f} s)"
              + (f" — {escape(cell.error)}" if cell.error else ""))
    err.file.flush()


def matrix_table(cells: list[Any]) -> None:
    """A matrix build's summary: one row per deliverable of each (model, target) cell."""
    table = Table(title="build matrix", title_justify="left")
    for col in ("model", "target", "status", "artifact", "size", "top1_agree", "top1_acc",
                "p50_ms", "seconds"):
        table.add_column(col, justify="left" if col in ("model", "target", "status",
                                                         "artifact") else "right")
    for c in cells:
        rows = c.deliverables or [{}]
        for i, d in enumerate(rows):
            table.add_row(
                c.model if i == 0 else "", c.target if i == 0 else "",
                c.status if i == 0 else "", d.get("file", "-"),
                fmt_bytes(d["size_bytes"]) if d.get("size_bytes") else "-",
                fmt_pct(d.get("top1_agreement")), fmt_pct(d.get("top1")),
                "-" if d.get("p50_ms") is None else f"{d['p50_ms']:.3f}",
                f"{c.seconds:.1f}" if i == 0 else "")
    out.print(table)
