"""``MODEL_CARD.md``: the bundle's description for the people who ship and maintain the app.

Rendered from the manifest's description (never from anything else), so every number a person
reads is one the manifest, and so the signature, vouches for.
"""

from __future__ import annotations

from typing import Any

from ..report.formatting import fmt_num, fmt_pct
from .manifest import BUILD_HOST


def render(desc: dict[str, Any]) -> str:
    b, src, target, profile = (desc["bundle"], desc["source_model"], desc["target"],
                               desc["profile"])
    lines = [f"# {b['name']} {b['version']} for {target['title']}", "",
             f"{b['name']} is a {src['format']} model ({src['parameters']:,} parameters, "
             f"sha256 `{src['sha256']}`) converted by edgepack {desc['tools']['edgepack']} for "
             f"{target['title']} ({target['arch']}) with profile {profile['name']}: "
             f"{profile['title']}. Built {b['built']}.", ""]
    lines += _files(desc) + _tensors(desc) + _measured(desc) + _limitations(desc)
    return "\n".join(lines)


def _files(desc: dict[str, Any]) -> list[str]:
    lines = ["## Models", "", "| file | role | format | precision | runtime | needs |",
             "|---|---|---|---|---|---|"]
    for m in desc["models"]:
        validated = ", ".join(m["validated_with"].values()) or m["runtime"]
        needs = ", ".join(f"{rt} >= {v['version']}" for rt, v in
                          m["min_runtime_version"].items()) or "not declared by the format"
        lines.append(f"| `{m['file']}` | {m['role']} | {m['format']} | {m['precision']} | "
                     f"{m['runtime']} (validated with {validated}) | {needs} |")
    lines.append("")
    for m in desc["models"]:
        tools = ", ".join(f"{c['tool']} ({c['version']})" for c in m["converters"])
        lines.append(f"- `{m['file']}`: {m['conversion_path']} via {tools}")
    if any(m["min_runtime_version"] for m in desc["models"]):
        lines.append("- `needs`: the oldest runtime the converter declared in the file; the "
                     "manifest also lists every operator version the file uses.")
    return [*lines, ""]


def _tensors(desc: dict[str, Any]) -> list[str]:
    labels = desc["labels"]
    lines = ["## Inputs and preprocessing", ""]
    for m in desc["models"]:
        lines.append(f"`{m['file']}` takes:")
        for t in m["inputs"]:
            lines.append(f"- {_tensor(t)}")
            n = t["normalization"]
            if n:
                lines.append(f"  - preprocessing: `x = (raw * {n['scale']} - mean) / std` per "
                             f"channel with mean {n['mean']}, std {n['std']}, channels "
                             f"{n['color_order'] or 'as given'}")
        lines.append("and gives:")
        for t in m["outputs"]:
            lines.append(f"- {_tensor(t)}")
        lines.append("")
    if labels:
        lines += [f"Class `i` of a classifier output is line `i + 1` of `{labels['file']}` "
                  f"({labels['count']} labels).", ""]
    return lines


def _tensor(t: dict[str, Any]) -> str:
    shape = " x ".join(str(d) for d in t["shape"]) or "scalar"
    text = f"`{t['name']}`: {shape}, {t['dtype']}" + (f", {t['layout']}" if t["layout"] else "")
    q = t["quantization"]
    if q:
        text += (f", quantized: `q = round(x / {q['scale']}) + {q['zero_point']}` (the edgepack "
                 "runtime adapters do this for you)")
    return text


def _measured(desc: dict[str, Any]) -> list[str]:
    ev = desc["evaluation"]
    lines = ["## Measured", "",
             f"On {ev['samples']} {'labelled' if ev['labelled'] else 'unlabelled'} samples "
             f"from `{ev['data']}`; source model top-1: {fmt_pct(ev['source_top1'])}.", "",
             "| model | top-1 | top-5 | top-1 agreement | cosine | max abs error | budget |",
             "|---|---|---|---|---|---|---|"]
    for m in desc["models"]:
        meas = m["measured"]
        acc, fid, budget = meas["accuracy"] or {}, (meas["fidelity"] or [{}])[0], meas["budget"]
        verdict = "-" if budget is None else ("pass" if budget["passed"] else "FAIL")
        lines.append(f"| `{m['file']}` | {fmt_pct(acc.get('top1'))} | {fmt_pct(acc.get('top5'))}"
                     f" | {fmt_pct(fid.get('top1_agreement'))} | "
                     f"{fmt_num(fid.get('cosine'), '.6f')} | {fmt_num(fid.get('max_abs_error'))}"
                     f" | {verdict} |")
    lines += ["", "Latency per device (batch 1, after warm-up):", "",
              "| model | device | runtime | threads | p50 ms | p90 ms | p99 ms | load ms |",
              "|---|---|---|---|---|---|---|---|"]
    for m in desc["models"]:
        for lat in m["measured"]["latency"]:
            lines.append(f"| `{m['file']}` | {lat['device']} | {lat['runtime_version']} | "
                         f"{lat['threads']} | {lat['p50_ms']:.3f} | {lat['p90_ms']:.3f} | "
                         f"{lat['p99_ms']:.3f} | {lat['load_ms']:.1f} |")
    return [*lines, ""]


def _limitations(desc: dict[str, Any]) -> list[str]:
    ev, calib, target = desc["evaluation"], desc["calibration"], desc["target"]
    lines = ["## Limitations", ""]
    if any(lat["device"].startswith(BUILD_HOST) for m in desc["models"]
           for lat in m["measured"]["latency"]):
        lines.append(f"- Latency was measured on the {BUILD_HOST}, not on {target['title']}: "
                     "expect different numbers on the device; measure there before relying "
                     "on them.")
    lines.append(f"- Accuracy and fidelity come from {ev['samples']} samples of `{ev['data']}`; "
                 "inputs unlike them (other sensors, lighting, classes) may fare worse.")
    if not ev["labelled"]:
        lines.append("- The evaluation data had no labels: accuracy was not measured, only "
                     "agreement with the source model.")
    if calib:
        lines.append(f"- Quantization was calibrated on {calib['samples_used']} samples of "
                     f"`{calib['data']}`; inputs outside their range are clipped.")
    for m in desc["models"]:
        fid = m["measured"]["fidelity"]
        if m["precision"] != "fp32" and fid:
            lines.append(f"- `{m['file']}` ({m['precision']}) does not compute exactly what the "
                         f"source computes: up to {fid[0]['max_abs_error']:.3g} apart on "
                         f"`{fid[0]['output']}`.")
    lines += [f"- Build warning: {w}" for w in desc["warnings"]]
    return [*lines, ""]
