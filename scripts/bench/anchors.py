"""The int8 anchors edgepack is measured against, and the measuring helpers the benchmarks share.

Anchors are the field's plain post-training quantization with every default: ONNX Runtime's
``quantize_static`` (QDQ, MinMax, per-tensor weights) and NNCF's ``nncf.quantize`` on an
OpenVINO model, both calibrated on the samples edgepack gets. Used by ``quantization.py``
(EfficientNet-Lite0, Fashion-MNIST) and ``zoo.py`` (the model zoo), which import this file
from beside them.
"""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from edgepack.quiet import captured

#: one batch-of-one feed: input name -> array
Feed = dict[str, np.ndarray]
#: opens a model file: (run one feed, close)
Opener = Callable[[Path], tuple[Callable[[Any], Any], Callable[[], None]]]


def wilson(k: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n: edgepack's own, as its budget reports it."""
    from edgepack.validate.budget import wilson as share_interval

    return share_interval(k / n, n) if n else (math.nan, math.nan)


def file_size(path: Path) -> int:
    """Bytes of a model, with OpenVINO's .bin beside its .xml."""
    size = path.stat().st_size
    if path.suffix == ".xml":
        size += path.with_suffix(".bin").stat().st_size
    return size


def onnx_feeds(src: Path, calib: np.ndarray | list[Feed]) -> list[Feed]:
    """Batch-of-one feeds: ``calib`` as given, or the rows of one array for the model's only
    input."""
    if not isinstance(calib, np.ndarray):
        return calib
    import onnx

    name = onnx.load(str(src), load_external_data=False).graph.input[0].name
    return [{name: calib[i:i + 1].astype(np.float32)} for i in range(len(calib))]


class Reader:
    """ONNX Runtime CalibrationDataReader over batch-of-one feeds."""

    def __init__(self, feeds: list[Feed]):
        self.feeds, self.i = feeds, 0

    def get_next(self) -> Feed | None:
        if self.i >= len(self.feeds):
            return None
        self.i += 1
        return self.feeds[self.i - 1]

    def rewind(self) -> None:
        self.i = 0

    def __iter__(self):
        return iter(self.get_next, None)


def ort_quant(src: Path, out: Path, calib: np.ndarray | list[Feed], *, pre: bool = False,
              **kwargs: Any) -> Path:
    """``quantize_static(src, out)`` on ``calib`` (kwargs: options beyond the defaults;
    ``pre``: run ``quant_pre_process`` first). Kept when ``out`` exists."""
    if out.exists():
        return out
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    feeds = onnx_feeds(src, calib)
    model = src
    if pre:  # in a scratch folder: symbolic shape inference that gives up leaves
        # sym_shape_infer_temp.onnx (and its .data) in the working directory
        model, whole = out.with_name(out.stem + ".pre.onnx").resolve(), src.resolve()
        with captured(), tempfile.TemporaryDirectory() as scratch, contextlib.chdir(scratch):
            quant_pre_process(str(whole), str(model))
    tmp = out.with_name(out.stem + ".tmp.onnx")
    try:
        with captured():
            quantize_static(str(model), str(tmp), Reader(feeds), **kwargs)
    finally:
        if pre:
            model.unlink(missing_ok=True)
    tmp.rename(out)
    return out


def ort_dynamic(src: Path, out: Path) -> Path:
    """``quantize_dynamic(src, out)`` with its defaults (int8 weights, per tensor, every op
    type it has an integer kernel for): the plain dynamic int8 a dynamic-int8 file edgepack
    ships is held against. Kept when ``out`` exists."""
    if not out.exists():
        from onnxruntime.quantization import quantize_dynamic

        tmp = out.with_name(out.stem + ".tmp.onnx")
        with captured():
            quantize_dynamic(str(src), str(tmp))
        tmp.rename(out)
    return out


def nncf_ov(src: Path, out: Path, calib: np.ndarray | list[Any], **kwargs: Any) -> Path:
    """``nncf.quantize`` of the OpenVINO model ``src`` (an IR or an ONNX file) on ``calib``
    (rows of one array, or what OpenVINO's infer takes per sample: a feed dict); saved as an
    fp32-weight IR. Kept when ``out`` exists."""
    if out.exists():
        return out
    import logging

    import nncf
    import openvino as ov

    nncf.set_log_level(logging.ERROR)
    model = ov.Core().read_model(str(src))
    items = [calib[i:i + 1] for i in range(len(calib))] if isinstance(calib, np.ndarray) \
        else calib
    with captured():
        q = nncf.quantize(model, nncf.Dataset(items), subset_size=len(items), **kwargs)
    ov.save_model(q, str(out), compress_to_fp16=False)
    return out


def time_interleaved(paths: dict[str, Path], x1: Any, rounds: int, runs: int, warmup: int,
                     opener: Opener) -> dict[str, dict[str, Any]]:
    """p50 per model, the median over rounds of its p50 ratio to the first (fp32) model, and
    each round's ratio. In each round every model is opened (one live at a time), warmed up
    and timed on ``x1``, in an order that rotates: a noisy phase slows both sides of a pair."""
    names = list(paths)
    per_round: dict[str, list[float]] = {n: [] for n in names}
    pooled: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            run, close = opener(paths[n])
            with captured():
                for _ in range(warmup):
                    run(x1)
                times = []
                for _ in range(runs):
                    t = time.perf_counter()
                    run(x1)
                    times.append(time.perf_counter() - t)
            close()
            del run
            per_round[n].append(float(np.median(times)))
            pooled[n].extend(times)
    ref = names[0]
    out: dict[str, dict[str, Any]] = {}
    for n in names:
        ratios = np.array(per_round[n]) / np.array(per_round[ref])
        out[n] = {"p50_ms": 1e3 * float(np.median(pooled[n])), "ratio": float(np.median(ratios)),
                  "rounds": [float(r) for r in ratios]}
    return out


# ------------------------------------------------------------------------------- the zoo

def zoo_anchors(folders: list[Path], cells: list[Any], work: Path, evals: dict[str, Path], *,
                runs: int = 50, warmup: int = 5, threads: int = 2) -> list[dict[str, Any]]:
    """Per ONNX-source zoo model: its plain int8 anchors and edgepack's int8 deliverables of
    ``cells`` (zoo.py's rows, built into ``work.parent``), each with its fp32 of the same
    format, measured by ``edgepack compare`` against the source on ``evals[model]`` (its
    eval.npz, or the copy zoo.py made that declares batch axes)."""
    out = []
    for folder in folders:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("format", Path(meta["model"]).suffix[1:]) != "onnx":
            continue
        own = [c for c in cells if c.model == folder.name]
        try:
            out.append(model_anchors(folder, meta, own, work / folder.name, evals[folder.name],
                                     runs=runs, warmup=warmup, threads=threads))
        except Exception as exc:  # a model no anchor can read still gets its line
            out.append({"model": folder.name, "rows": [],
                        "error": f"{type(exc).__name__}: {one_line(exc)}"})
    return out


def model_anchors(folder: Path, meta: dict[str, Any], cells: list[Any], work: Path,
                  evals: Path, *, runs: int, warmup: int, threads: int) -> dict[str, Any]:
    """Make the anchors of one model, then compare them and edgepack's files per format."""
    work.mkdir(parents=True, exist_ok=True)
    src = folder / meta["model"]
    feeds = calibration_feeds(src, folder / "calib.npz", meta)
    made: dict[str, list[tuple[str, Path]]] = {"onnx": [("fp32 source", src)],
                                               "openvino": []}
    notes: list[str] = []
    anchors: list[tuple[str, str, Callable[[], Path]]] = [
        ("ORT quantize_static defaults", "onnx",
         lambda: ort_quant(src, work / "ort-default.int8.onnx", feeds)),
        ("fp32 IR (ov.convert_model)", "openvino",
         lambda: openvino_fp32(src, work / "fp32.xml")),
        ("NNCF defaults", "openvino",
         lambda: nncf_ov(work / "fp32.xml", work / "nncf-default.int8.xml", feeds))]
    if any(d.format == "onnx" and d.precision == "dynamic-int8"
           for cell in cells for d in cell.delivered):  # held against its own kind too
        anchors.insert(1, ("ORT quantize_dynamic defaults", "onnx",
                           lambda: ort_dynamic(src, work / "ort-dynamic.int8.onnx")))
    for name, fmt, make in anchors:
        t = time.perf_counter()
        try:
            made[fmt].append((name, make()))
            notes.append(f"{name}: made in {time.perf_counter() - t:.1f} s")
        except Exception as exc:  # an anchor that fails is a finding, not the end of the run
            notes.append(f"{name}: failed: {type(exc).__name__}: {one_line(exc)}")
    notes.append("onnx2tf int8: not measured (it takes calibration per input in NHWC with a "
                 "mean and std and converts for minutes; quantization.py measures it on "
                 "EfficientNet-Lite0)")
    for cell in cells:
        for d in cell.delivered:
            base = work.parent.parent / f"{cell.model}-{cell.target}"
            if d.precision not in ("int8", "dynamic-int8"):
                continue
            group = made.setdefault(d.format, [])
            ref = fp32_reference(base, d.format)
            if not group and ref:  # no fp32 of this format yet: the build's own
                group.append((f"fp32 ({cell.target} build)", ref))
            group.append((f"edgepack {cell.target}", base / d.file))
    rows = []
    for fmt, entries in made.items():
        if entries:
            rows += compare_rows(src, evals, fmt, entries, runs=runs,
                                 warmup=warmup, threads=threads)
    share_of_plain_speedup(rows)
    return {"model": folder.name, "calibration_samples": len(feeds), "rows": rows,
            "notes": notes}


#: the plain int8 of each format, whose speed-up an edgepack file is held against
PLAIN = {"onnx": "ORT quantize_static defaults", "openvino": "NNCF defaults"}


def share_of_plain_speedup(rows: list[dict[str, Any]]) -> None:
    """Each edgepack row's ``speedup_kept``: its speed-up over the plain int8 anchor's of the
    same format (where that anchor was measured)."""
    for row in rows:
        plain = next((r for r in rows if r["format"] == row["format"]
                      and r["name"] == PLAIN.get(row["format"]) and r.get("speedup")), None)
        if row["name"].startswith("edgepack") and plain and row.get("speedup"):
            row["speedup_kept"] = round(row["speedup"] / plain["speedup"], 3)


def calibration_feeds(src: Path, calib: Path, meta: dict[str, Any],
                      limit: int = 300) -> list[Feed]:
    """Batch-of-one feeds of ``calib`` for the source (batch axes as meta.json says), at most
    ``limit`` rows drawn with seed 0: the anchors' calibration set."""
    from edgepack.data.dataset import load_dataset
    from edgepack.runtimes import RuntimeOptions, get_runtime

    signature = get_runtime("onnxruntime").load(str(src), RuntimeOptions(threads=1)).signature
    axes = {s["name"]: s["batch_axis"] for s in meta["inputs"]
            if s.get("batch_axis") not in (0, None)}
    return load_dataset(calib, signature, batch_axes=axes).take(limit, 0).samples()


def openvino_fp32(src: Path, out: Path) -> Path:
    if not out.exists():
        import openvino as ov

        ov.save_model(ov.convert_model(str(src)), str(out), compress_to_fp16=False)
    return out


def fp32_reference(build: Path, fmt: str) -> Path | None:
    """The fp32 reference file of format ``fmt`` in a build folder (its report.json)."""
    report = build / "report.json"
    if not report.is_file():
        return None
    arts = json.loads(report.read_text())["artifacts"]
    ref = next((a for a in arts if a["role"] == "reference" and a["format"] == fmt
                and a["precision"] == "fp32"), None)
    return build / ref["file"] if ref else None


def compare_rows(src: Path, evals: Path, fmt: str, entries: list[tuple[str, Path]], *,
                 runs: int, warmup: int, threads: int) -> list[dict[str, Any]]:
    """``edgepack compare`` of ``entries`` (the first one fp32) against ``src`` on ``evals``
    (each timed in its own process, batch 1): per entry its fidelity per output (top-1
    agreement with its 95% Wilson interval for classifiers), size and speed-up over the fp32
    entry."""
    from edgepack.measure.compare import compare_artifacts
    from edgepack.progress import Progress

    try:
        with captured():
            comp = compare_artifacts([p for _, p in entries], src, evaluation=evals,
                                     threads=threads, runs=runs, warmup=warmup, seed=0,
                                     progress=Progress())
    except Exception as exc:
        return [{"name": n, "format": fmt, "file": str(p),
                 "error": f"{type(exc).__name__}: {one_line(exc)}"} for n, p in entries]
    base = comp.entries[0]
    rows = []
    for i, ((name, path), e) in enumerate(zip(entries, comp.entries, strict=True)):
        p50 = e.latency.p50_ms if e.latency else None
        fp32_p50 = base.latency.p50_ms if base.latency else None
        precision = "fp32" if i == 0 and e.precision == "?" else e.precision
        rows.append({"name": name, "format": fmt, "file": str(path), "precision": precision,
                     "size_ratio": round(e.size_bytes / base.size_bytes, 4), "p50_ms": p50,
                     "fp32_p50_ms": fp32_p50,
                     "speedup": round(fp32_p50 / p50, 3) if p50 and fp32_p50 else None,
                     "outputs": [output_reading(f) for f in e.fidelity]})
    return rows


def output_reading(f: Any) -> dict[str, Any]:
    """One output's fidelity: role, cosine, SNR, the role's readings, and for a classifier
    its top-1 agreement with the 95% Wilson interval."""
    out = {"output": f.name, "role": f.role, "samples": f.samples, "cosine": f.cosine,
           "snr_db": f.snr_db, "readings": f.readings, "mismatch": f.mismatch}
    if f.top1_agreement is not None:
        k = round(f.top1_agreement * f.samples)
        out["top1_agreement"] = f.top1_agreement
        out["top1_interval"] = wilson(k, f.samples)
    return out


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300]
