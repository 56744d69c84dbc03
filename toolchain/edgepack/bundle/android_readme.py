"""``README.md`` of an android-layout bundle: how an app loads what is in ``assets/``.

Prose and numbers only, no Kotlin or Java: the app's own code and its choice of LiteRT API
(Interpreter, CompiledModel, a support library) are the app's business; what the bundle owes it
is where each file is, which runtime version it needs, and exactly what goes in and comes out.
Rendered from the manifest's description, like the model card.
"""

from __future__ import annotations

from typing import Any


def render(desc: dict[str, Any]) -> str:
    b, labels = desc["bundle"], desc["labels"]
    deliverables = [m for m in desc["models"] if m["role"] == "deliverable"]
    lines = [f"# {b['name']} {b['version']}: Android assets for {desc['target']['title']}", "",
             "1. Check the bundle before shipping it: `edgepack verify BUNDLE --key PUBLIC_KEY`.",
             "2. Copy the `assets/` folder of this bundle into your app module's `src/main/` "
             "(so the files end up in `app/src/main/assets/`).",
             "3. Keep model files uncompressed in the APK, so the runtime can memory-map them: "
             "list their suffix (" + ", ".join(sorted({f"`{m['format']}`" for m in
                                                       desc["models"]})) +
             ") in the Android Gradle plugin's `androidResources.noCompress`.",
             "4. Open each file through the AssetManager by its path below `assets/`.", ""]
    for m in deliverables:
        asset = m["file"].removeprefix("assets/")
        lines += [f"## `{asset}`", "",
                  f"- Runtime: {m['runtime']}, validated with "
                  f"{', '.join(m['validated_with'].values()) or 'nothing'}."]
        lines += [f"- Needs {rt} >= {v['version']}: {v['source']}."
                  for rt, v in m["min_runtime_version"].items()]
        lines.append(f"- Precision: {m['precision']} ({m['format']}).")
        for t in m["inputs"]:
            lines.append(f"- Input {_tensor(t)}.")
            n = t["normalization"]
            if n:
                lines.append(f"  Before feeding pixels: multiply by {n['scale']}, subtract mean "
                             f"{n['mean']}, divide by std {n['std']}, per channel, channels "
                             f"{n['color_order'] or 'as given'}.")
        for t in m["outputs"]:
            lines.append(f"- Output {_tensor(t)}.")
        lines.append("")
    if labels:
        lines += [f"Labels: `{labels['file'].removeprefix('assets/')}`, one per line; line "
                  f"`i + 1` names class `i` ({labels['count']} classes).", ""]
    lines += ["`manifest.json` at the top of the bundle has every tensor, checksum and measured "
              "number; `MODEL_CARD.md` explains them. Neither needs to go into the app.", ""]
    return "\n".join(lines)


def _tensor(t: dict[str, Any]) -> str:
    shape = "[" + ", ".join(str(d) for d in t["shape"]) + "]"
    text = f"`{t['name']}`: {t['dtype']} {shape}" + (f" ({t['layout']})" if t["layout"] else "")
    q = t["quantization"]
    if q:
        text += (f", quantized with scale {q['scale']} and zero point {q['zero_point']} "
                 f"(real = (q - {q['zero_point']}) * {q['scale']})")
    return text
