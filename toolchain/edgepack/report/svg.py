"""Inline SVG plots for the HTML reports, drawn here with the standard library.

A report must open anywhere, offline, years later: so no plotting library, no script, no web
font and no external URL, just SVG elements inside the page. Two plots are needed and both are
simple: latency distributions (one horizontal box plot per artifact with every timed run as a
dot) and a labelled scatter (size against accuracy or fidelity). Colours are the Okabe-Ito
palette, which stays distinguishable for colour-blind readers.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from html import escape

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
           "#000000")
#: a ratio of largest to smallest value above which an axis turns logarithmic, so that a fast
#: artifact is not squashed against zero by a slow one
LOG_RATIO = 8.0
_FONT = 'font-family="system-ui, -apple-system, Segoe UI, sans-serif"'
_CHAR_PX = 6.6  # width of one 12px character, near enough to lay out labels


@dataclass(frozen=True)
class Point:
    label: str
    x: float
    y: float
    group: str  # points of one group share a colour and a legend entry


class Axis:
    """A value -> pixel map, linear or logarithmic, with round tick values."""

    def __init__(self, lo: float, hi: float, px0: float, px1: float, log: bool):
        if log and lo <= 0:
            raise ValueError("a log axis needs positive bounds")
        if hi <= lo:
            hi = lo + (abs(lo) or 1.0)
        self.lo, self.hi, self.px0, self.px1, self.log = lo, hi, px0, px1, log

    def __call__(self, v: float) -> float:
        f = self._f
        t = (f(min(max(v, self.lo), self.hi)) - f(self.lo)) / (f(self.hi) - f(self.lo))
        return self.px0 + t * (self.px1 - self.px0)

    def _f(self, v: float) -> float:
        return math.log10(v) if self.log else v

    def ticks(self) -> list[float]:
        if self.log:
            out = [m * 10 ** e for e in range(math.floor(math.log10(self.lo)),
                                              math.ceil(math.log10(self.hi)) + 1)
                   for m in (1, 2, 5)]
        else:
            step = nice_step((self.hi - self.lo) / 5)
            first = math.ceil(self.lo / step) * step
            out = [first + i * step for i in range(int((self.hi - first) / step + 1e-9) + 1)]
        return [v for v in out if self.lo - 1e-12 <= v <= self.hi + 1e-12]


def nice_step(raw: float) -> float:
    """The 1-2-5 step at or above ``raw``."""
    if raw <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(raw))
    return next(m * exp for m in (1, 2, 5, 10) if m * exp >= raw - 1e-15)


def fmt_tick(v: float) -> str:
    return f"{v:.4g}"


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (as numpy's default), without numpy."""
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo = math.floor(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def latency_plot(series: list[tuple[str, list[float]]], width: int = 1080) -> str:
    """One row per (label, timed runs in ms): box p25-p75, bar at p50, whiskers p5-p95, dots for
    every run. The axis ends a little past the largest p95, so that one stall of the machine
    cannot squash every box against zero; runs beyond it are counted at the row's end."""
    series = [(label, s) for label, s in series if s]
    if not series:
        return ""
    row_h, top, bottom = 40, 12, 46
    left = min(300, 16 + _CHAR_PX * max(len(label) for label, _ in series))
    right = width - 70
    height = top + row_h * len(series) + bottom
    lo = min(min(s) for _, s in series)
    hi = max(percentile(s, 95) for _, s in series) * 1.25
    p50s = [percentile(s, 50) for _, s in series]
    log = max(p50s) / max(min(p50s), 1e-12) > LOG_RATIO
    axis = Axis(lo / 1.25, hi, left, right, True) if log else Axis(0.0, hi, left, right, False)
    parts = [_svg_open(width, height, "latency distribution per artifact")]
    parts += _x_axis(axis, top, top + row_h * len(series),
                     "latency per run, ms" + (" (log scale)" if log else ""))
    jitter = random.Random(0)
    for i, (label, s) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        cy = top + row_h * i + row_h / 2
        parts.append(f'<text x="{left - 10}" y="{cy + 4:.1f}" text-anchor="end" '
                     f'font-size="12" {_FONT}>{escape(label)}</text>')
        beyond = sum(v > axis.hi for v in s)
        for v in s:
            if v <= axis.hi:
                y = cy + jitter.uniform(-row_h * 0.36, row_h * 0.36)
                parts.append(f'<circle cx="{axis(v):.1f}" cy="{y:.1f}" r="1.7" '
                             f'fill="{color}" fill-opacity="0.28"/>')
        p5, p25, p50, p75, p95 = (percentile(s, q) for q in (5, 25, 50, 75, 95))
        x5, x25, x50, x75, x95 = (axis(v) for v in (p5, p25, p50, p75, p95))
        parts += [
            f'<line x1="{x5:.1f}" y1="{cy}" x2="{x25:.1f}" y2="{cy}" stroke="#333"/>',
            f'<line x1="{x75:.1f}" y1="{cy}" x2="{x95:.1f}" y2="{cy}" stroke="#333"/>',
            f'<line x1="{x5:.1f}" y1="{cy - 6}" x2="{x5:.1f}" y2="{cy + 6}" stroke="#333"/>',
            f'<line x1="{x95:.1f}" y1="{cy - 6}" x2="{x95:.1f}" y2="{cy + 6}" stroke="#333"/>',
            f'<rect x="{x25:.1f}" y="{cy - 9}" width="{max(x75 - x25, 1.5):.1f}" height="18" '
            f'fill="{color}" fill-opacity="0.35" stroke="{color}" stroke-width="1.5"/>',
            f'<line x1="{x50:.1f}" y1="{cy - 11}" x2="{x50:.1f}" y2="{cy + 11}" stroke="#111" '
            f'stroke-width="2.5"><title>{escape(label)}: p50 {p50:.4g} ms</title></line>',
        ]
        if beyond:
            parts.append(f'<text x="{right + 6}" y="{cy + 4:.1f}" font-size="11" fill="#555" '
                         f'{_FONT}>+{beyond} &#8594;</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def scatter_plot(points: list[Point], x_label: str, y_label: str, *, percent: bool,
                 baseline: float | None = None, baseline_label: str = "",
                 width: int = 1080) -> str:
    """Labelled points, one colour per group, and an optional dashed horizontal baseline."""
    if not points:
        return ""
    groups = list(dict.fromkeys(p.group for p in points))
    left, right, top, bottom = 76, width - 30, 34, 52
    height = 360
    xs = [p.x for p in points]
    log = min(xs) > 0 and max(xs) / min(xs) > LOG_RATIO
    x_axis = Axis(min(xs) / 1.6, max(xs) * 1.6, left + 10, right - 10, True) if log else \
        Axis(0.0, max(xs) * 1.25, left + 10, right - 10, False)
    ys = [p.y for p in points] + ([baseline] if baseline is not None else [])
    pad = max((max(ys) - min(ys)) * 0.15, 0.002 if percent else 1e-6)
    y_lo, y_hi = min(ys) - pad, max(ys) + pad
    if percent:
        y_lo, y_hi = max(y_lo, 0.0), min(y_hi, 1.0)
        if y_hi - y_lo < 0.01:  # identical values: show a 1-point window around them
            y_lo, y_hi = max(0.0, y_hi - 0.01), min(1.0, y_lo + 0.01)
    y_axis = Axis(y_lo, y_hi, height - bottom, top, False)
    fmt_y = (lambda v: f"{100 * v:.4g}%") if percent else fmt_tick
    parts = [_svg_open(width, height, f"{y_label} against {x_label}")]
    parts += _x_axis(x_axis, top, height - bottom,
                     x_label + (" (log scale)" if log else ""))
    for v in y_axis.ticks():
        y = y_axis(v)
        parts += [f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#e3e3e3"/>',
                  f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
                  f'fill="#444" {_FONT}>{fmt_y(v)}</text>']
    parts.append(f'<text transform="translate(16 {(top + height - bottom) / 2:.0f}) '
                 f'rotate(-90)" text-anchor="middle" font-size="12" {_FONT}>'
                 f'{escape(y_label)}</text>')
    if baseline is not None:
        y = y_axis(baseline)
        parts += [f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#555" '
                  f'stroke-dasharray="5 4"/>',
                  f'<text x="{right - 4}" y="{y - 5:.1f}" text-anchor="end" font-size="11" '
                  f'fill="#555" {_FONT}>{escape(baseline_label)} {fmt_y(baseline)}</text>']
    # boxes labels must not cover: every point, then each label as it is placed
    placed = [(x_axis(p.x) - 7, y_axis(p.y) - 7, x_axis(p.x) + 7, y_axis(p.y) + 7)
              for p in points]
    for p in sorted(points, key=lambda q: (q.x, q.y)):
        color = PALETTE[groups.index(p.group) % len(PALETTE)]
        cx, cy = x_axis(p.x), y_axis(p.y)
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="6" fill="{color}" stroke="#fff" '
                     f'stroke-width="1.5"><title>{escape(p.label)}: {fmt_y(p.y)}, '
                     f'{fmt_tick(p.x)}</title></circle>')
        end = cx > (left + right) / 2  # labels on the right half grow leftwards
        w = 0.92 * _CHAR_PX * len(p.label)
        x0 = cx - 9 - w if end else cx + 9
        ly = _free_row(placed, x0, w, cy)
        placed.append((x0, ly - 10, x0 + w, ly + 3))
        if abs(ly - cy) > 16:  # a label moved away from its point: a leader line joins them
            parts.append(f'<line x1="{cx:.1f}" y1="{cy:.1f}" x2="{x0 + (w if end else 0):.1f}" '
                         f'y2="{ly - 4:.1f}" stroke="#999" stroke-width="0.8"/>')
        parts.append(f'<text x="{x0 + (w if end else 0):.1f}" y="{ly:.1f}" '
                     f'text-anchor="{"end" if end else "start"}" font-size="11" {_FONT}>'
                     f'{escape(p.label)}</text>')
    x = left
    for g in groups:  # legend, above the plot area
        color = PALETTE[groups.index(g) % len(PALETTE)]
        parts += [f'<circle cx="{x + 6}" cy="14" r="6" fill="{color}"/>',
                  f'<text x="{x + 16}" y="18" font-size="12" {_FONT}>{escape(g)}</text>']
        x += 36 + _CHAR_PX * len(g)
    parts.append("</svg>")
    return "\n".join(parts)


def _free_row(placed: list[tuple[float, float, float, float]], x0: float, w: float,
              cy: float) -> float:
    """The baseline nearest above/below ``cy`` where a label [x0, x0 + w] overlaps none
    placed: close points (fp32 files of several formats are about the same size and accuracy)
    get their labels stacked instead of printed over each other."""
    for k in range(40):
        ly = cy - 8 + (k + 1) // 2 * 14 * (1 if k % 2 else -1)
        box = (x0, ly - 10, x0 + w, ly + 3)
        if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3]
                   for b in placed):
            return ly
    return cy - 8


def _svg_open(width: int, height: int, title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
            f'<title>{escape(title)}</title>'
            f'<rect width="{width}" height="{height}" fill="#fff"/>')


def _x_axis(axis: Axis, top: float, baseline: float, label: str) -> list[str]:
    parts = []
    for v in axis.ticks():
        x = axis(v)
        parts += [f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{baseline}" '
                  f'stroke="#e3e3e3"/>',
                  f'<text x="{x:.1f}" y="{baseline + 16}" text-anchor="middle" font-size="11" '
                  f'fill="#444" {_FONT}>{fmt_tick(v)}</text>']
    parts += [f'<line x1="{axis.px0}" y1="{baseline}" x2="{axis.px1}" y2="{baseline}" '
              f'stroke="#888"/>',
              f'<text x="{(axis.px0 + axis.px1) / 2:.1f}" y="{baseline + 36}" '
              f'text-anchor="middle" font-size="12" {_FONT}>{escape(label)}</text>']
    return parts
