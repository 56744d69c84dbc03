"""Self-contained HTML: a build's report.html and ``edgepack compare --html``.

One file that opens in any browser, offline: inline CSS, inline SVG plots (svg.py), no
script and no external URL, so it can be attached to a ticket or archived with a release and
still show the same thing. The numbers come from ``comparison.rows`` (the same rows as the
terminal, JSON and markdown tables), and every text from the report is HTML-escaped: file
names and tool messages are data, not markup.
"""

from __future__ import annotations

from html import escape

from ..validate.attempts import latency_trade
from .comparison import COLUMNS, Comparison, describe_eval, formatted, from_report, rows
from .formatting import fmt_bytes, fmt_pct
from .model import Artifact, Report
from .parts import DeviceRun
from .svg import Point, latency_plot, scatter_plot
from .tables import device_lines, fallback_table, fidelity_lines, output_verdicts

_NUMERIC = set(COLUMNS) - {"artifact", "format", "precision", "runtime"}

_CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1b1b;
       background: #f6f7f9; margin: 0; line-height: 1.45; }
main { max-width: 1240px; margin: 0 auto; padding: 28px 32px 48px; }
h1 { font-size: 1.55rem; margin: 0 0 6px; }
h2 { font-size: 1.15rem; margin: 34px 0 10px; border-bottom: 1px solid #d9dce1;
     padding-bottom: 4px; }
h3 { font-size: 1rem; margin: 20px 0 6px; }
section, figure { background: #fff; border: 1px solid #e1e4e8; border-radius: 8px;
                  padding: 14px 18px; margin: 0 0 14px; }
figure { overflow-x: auto; }
figure svg { display: block; max-width: 100%; height: auto; }
figcaption { font-size: 0.85rem; color: #555; margin-top: 6px; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 12px; font-weight: 600;
         font-size: 0.85rem; vertical-align: middle; margin-left: 8px; }
.pass { background: #dff3e4; color: #1a6b32; } .fail { background: #fbe0e0; color: #a11d1d; }
.warning { background: #fff6db; border: 1px solid #f0d58c; border-radius: 6px;
           padding: 8px 12px; margin: 8px 0; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 3px 18px; margin: 0; }
dl.facts dt { color: #555; } dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 0.84rem; background: #fff; }
th, td { padding: 5px 7px; border-bottom: 1px solid #eceef1; text-align: left;
         white-space: nowrap; }
th { background: #f0f2f5; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafbfc; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.85em;
       background: #f0f2f5; padding: 1px 4px; border-radius: 4px; overflow-wrap: anywhere; }
ul { margin: 4px 0; padding-left: 22px; }
.muted { color: #666; font-size: 0.85rem; }
footer { color: #777; font-size: 0.8rem; margin-top: 28px; }
"""


def to_html(report: Report) -> str:
    """report.html of a build: the comparison table and plots, then how each file was made."""
    c = from_report(report)
    m, t, p = report.model, report.target, report.profile
    passed = report.passed
    badge = ('<span class="badge pass">passed</span>' if passed else
             '<span class="badge fail">FAILED the accuracy budget</span>')
    facts = [("Model", f"<code>{escape(m.path)}</code> ({escape(m.format)}, "
                       f"{m.parameters:,} parameters, {fmt_bytes(m.size_bytes)})"),
             ("Target", escape(f"{t.name} — {t.title} ({t.arch})")),
             ("Profile", escape(f"{p.name} — {p.title}")),
             ("Evaluation data", escape(describe_eval(c))),
             ("Calibration data", escape(_calibration(report)))]
    if report.source_accuracy and report.source_accuracy.top1 is not None:
        facts.append(("Source top-1 accuracy", fmt_pct(report.source_accuracy.top1)))
    if report.input_floor is not None:
        facts.append(("Input-rounding floor", escape(report.input_floor.summary())))
    body = [f"<h1>edgepack build: {escape(m.name)} for {escape(t.name)}{badge}</h1>",
            _warnings(report.warnings), _facts(facts), *_comparison(c),
            "<h2>How each artifact was made</h2>", *(_artifact(a) for a in report.artifacts)]
    if report.skipped:
        body += ["<h2>Not built</h2>", "<section><ul>" + "".join(
            f"<li>{escape(s.format)} {escape(s.precision)}: {escape(s.reason)}</li>"
            for s in report.skipped) + "</ul></section>"]
    body += ["<h2>Tools</h2>", "<section><ul>" + "".join(
        f"<li>{escape(k)}: {escape(v)}</li>" for k, v in sorted(report.tools.items()))
        + "</ul></section>",
        f"<footer>Built by edgepack {escape(report.edgepack_version)} on "
        f"{escape(report.created)} ({escape(str(report.host.get('platform', '')))}, "
        f"{escape(str(report.host.get('cpu', '')))}).</footer>"]
    return _page(f"edgepack build: {m.name} for {t.name}", body)


def comparison_html(c: Comparison) -> str:
    """``edgepack compare --html``: the table and the plots."""
    facts = [("Source model", f"<code>{escape(str(c.source.get('path', '')))}</code> "
                              f"({escape(str(c.source.get('format', '')))})"),
             ("Evaluation data", escape(describe_eval(c)))]
    if c.source_accuracy and c.source_accuracy.top1 is not None:
        facts.append(("Source top-1 accuracy", fmt_pct(c.source_accuracy.top1)))
    body = [f"<h1>edgepack compare: {escape(c.title)}</h1>", _warnings(c.notes), _facts(facts),
            *_comparison(c), "<footer>Written by edgepack compare.</footer>"]
    return _page(f"edgepack compare: {c.title}", body)


# ------------------------------------------------------------------------------------ parts

def _page(title: str, body: list[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(part for part in body if part) + "\n</main>\n</body>\n</html>\n")


def _facts(facts: list[tuple[str, str]]) -> str:
    """Label/value pairs; values are already HTML."""
    items = "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in facts)
    return f'<section><dl class="facts">{items}</dl></section>'


def _warnings(warnings: list[str]) -> str:
    return "".join(f'<div class="warning"><strong>Warning:</strong> {escape(w)}</div>'
                   for w in warnings)


def _comparison(c: Comparison) -> list[str]:
    """The table, then the latency and size plots."""
    head = "".join(f'<th class="num">{k}</th>' if k in _NUMERIC else f"<th>{k}</th>"
                   for k in COLUMNS)
    body = []
    for row in rows(c):
        text = formatted(row)
        body.append("<tr>" + "".join(
            f'<td class="num">{escape(text[k])}</td>' if k in _NUMERIC else
            f"<td>{escape(text[k])}</td>" for k in COLUMNS) + "</tr>")
    parts = ["<h2>Artifacts</h2>",
             '<section><div class="table-wrap"><table id="artifacts"><thead><tr>' + head
             + "</tr></thead><tbody>" + "".join(body) + "</tbody></table></div>"
             '<p class="muted"><b>speedup</b>: p50 of the fp32 artifact timed by the same '
             "runtime / this p50. <b>smaller</b>: size of the fp32 artifact of the same format "
             "/ this size. Fidelity compares each artifact's first output with the source "
             "model's on the evaluation inputs.</p></section>"]
    series = [(e.file, e.latency.samples_ms) for e in c.entries
              if e.latency and e.latency.samples_ms]
    if series:
        lat = c.entries[0].latency
        parts += ['<h2>Latency</h2><figure id="latency-plot">', latency_plot(series),
                  "<figcaption>Every timed run is a dot; box: p25–p75, bar: p50, whiskers: "
                  f"p5–p95. Batch {lat.batch if lat else '?'}, each artifact timed in its own "
                  "process after its warm-up runs.</figcaption></figure>"]
    scatter = _size_scatter(c)
    if scatter:
        parts += ['<h2>Size and accuracy</h2><figure id="size-plot">', scatter[0],
                  f"<figcaption>{escape(scatter[1])}</figcaption></figure>"]
    return parts


def _size_scatter(c: Comparison) -> tuple[str, str] | None:
    """Size against accuracy when labels exist, else against agreement with the source."""
    table = rows(c)
    for key, label, percent in (("top1_acc", "top-1 accuracy", True),
                                ("top1_agree", "top-1 agreement with the source", True),
                                ("cosine", "cosine similarity to the source", False)):
        points = [Point(r["artifact"], r["size"] / 1024, r[key], r["format"])
                  for r in table if r[key] is not None and r["size"]]
        if points:
            source = c.source_accuracy.top1 if key == "top1_acc" and c.source_accuracy \
                else None
            svg = scatter_plot(points, "size, KB", label, percent=percent, baseline=source,
                               baseline_label="source model")
            return svg, (f"Each artifact's size against its {label}"
                         + (" (dashed: the source model's)" if source is not None else "")
                         + "; colour: format. Up and to the left is better.")
    return None


def _artifact(a: Artifact) -> str:
    items = [f"<li>Conversion path: {escape(a.conversion_path)}</li>"]
    for h in a.path:
        check = "" if h.check_max_abs_error is None else \
            f", checked against the source: max abs error {h.check_max_abs_error:.3g}"
        items.append(f"<li>{escape(h.src)} → {escape(h.dst)}: {escape(h.tool)} "
                     f"({escape(h.tool_version)}), {h.seconds:.2f} s{escape(check)}"
                     + (" (from the step cache)" if h.cached else "") + "</li>")
    items.append(f"<li>Size {a.size_bytes:,} bytes, sha256 <code>{escape(a.sha256)}</code></li>")
    lt = a.latency
    if lt:
        text = (f"Host latency: {lt.runtime_version}, {lt.threads or 'default'} threads, batch "
                f"{lt.batch}, {lt.warmup} warm-up + {lt.runs} runs in its own process; load "
                f"{lt.load_ms:.1f} ms, first inference {lt.first_inference_ms:.2f} ms"
                + (f", peak RSS {lt.peak_rss_mb:.0f} MB" if lt.peak_rss_mb else "")
                + (" (from the step cache, not measured again)" if lt.cached else ""))
        items.append(f"<li>{escape(text)}</li>")
    items += [_fidelity(a), _budget(a)]
    headers, rows = fallback_table(a)
    if rows:
        head = "".join(f"<th>{escape(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>"
                       for r in rows)
        trade = latency_trade(a.fallback)
        items.append(f"<li>Accuracy fallback:<div class=\"table-wrap\"><table><tr>{head}</tr>"
                     f"{body}</table></div>"
                     + (f"<p>Shipped attempt: {escape(trade)}</p>" if trade else "") + "</li>")
    items += [_device_run(run) for run in a.devices]
    items += [f"<li>Note: {escape(n)}</li>" for n in a.notes]
    return (f"<section><h3>{escape(a.file)} <span class=\"muted\">({escape(a.role)}, "
            f"{escape(a.precision)})</span></h3><ul>{''.join(items)}</ul></section>")


def _device_run(d: DeviceRun) -> str:
    """One board's run of the artifact, its outputs and failures nested under it."""
    (_, head), *rest = device_lines(d)
    sub = "".join(f"<li>{escape(text)}</li>" for _, text in rest)
    return f"<li>{escape(head)}" + (f"<ul>{sub}</ul>" if sub else "") + "</li>"


def _fidelity(a: Artifact) -> str:
    """Each output's measures, its channel groups nested under it."""
    items = []
    for f in a.fidelity:
        (_, head), *groups = fidelity_lines(f)
        sub = "".join(f"<li>{escape(text)}</li>" for _, text in groups)
        items.append(f"<li>{escape(head)}" + (f"<ul>{sub}</ul>" if sub else "") + "</li>")
    return "".join(items)


def _budget(a: Artifact) -> str:
    """The verdict, each limit's worst reading, then each output's checks when several."""
    b = a.budget
    if b is None:
        return ""
    per_output = output_verdicts(b)
    checks = "".join(f"<li>{escape(ch.name)}: {escape(ch.reading())} "
                     + ("<b>FAIL</b>" if ch.gating and not ch.passed else escape(ch.outcome()))
                     + (f" (worst: <code>{escape(ch.output)}</code>)"
                        if per_output and ch.output else "")
                     + (f"; {escape(ch.caveat())}" if ch.caveat() else "")
                     + "</li>" for ch in b.checks)
    if per_output:
        checks += "<li>Per output:<ul>" + "".join(
            f"<li>{escape(line)}</li>" for line in per_output) + "</ul></li>"
    checks += "".join(f"<li>budget entry <code>{escape(k)}</code> names no output of the "
                      "model and no role</li>" for k in b.unmatched)
    verdict = "passed" if b.passed else "FAILED"
    return f"<li>Budget ({escape(b.profile)}): {verdict}<ul>{checks}</ul></li>"


def _calibration(report: Report) -> str:
    cal = report.calibration
    if not cal:
        return "none"
    return f"{cal.source} ({cal.samples_used} of {cal.samples_available} samples, seed {cal.seed})"
